#!/usr/bin/env python3
"""Flood a node's peer port with unauthenticated connections while writes go through the API.

Each flooding connection announces a 32 MiB frame and streams junk after it, as fast as the
node takes it, and reconnects whenever the node hangs up. Meanwhile one writer creates a contact
every 20 ms through --api. Prints the node's resident memory (before, highest, after), the
flood's connections and bytes, the writes (ok, failed, p99) and the node's peer-link counters
from /metrics.

    swift run -c release switchboard cluster up
    SWITCHBOARD_ADMIN_TOKEN=local-admin python3 loadtest/peer-flood.py --peer 127.0.0.1:7081 \\
        --api http://127.0.0.1:8080 --metrics http://127.0.0.1:8081/metrics --connections 100 --seconds 60

The admin token comes from SWITCHBOARD_ADMIN_TOKEN (never from the command line).
"""
import argparse
import asyncio
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def listening_pid(port):
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    match = re.search(r"pid=(\d+)", out)
    if not match:
        sys.exit(f"no process listens on port {port} (is the cluster up?)")
    return int(match.group(1))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Flood:
    def __init__(self):
        self.connections = 0
        self.bytes = 0
        self.refused = 0


async def flooder(host, port, stop_at, flood):
    header = struct.pack(">IB", 32 << 20, 1)
    junk = b"\x41" * (64 << 10)
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            flood.refused += 1
            await asyncio.sleep(0.01)
            continue
        flood.connections += 1
        try:
            writer.write(header)
            while time.monotonic() < stop_at:
                writer.write(junk)
                await asyncio.wait_for(writer.drain(), timeout=1)
                flood.bytes += len(junk)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()
        await asyncio.sleep(0.01)


def writer_thread(api, token, stop_at, results):
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        body = json.dumps({"name": f"flood-{os.getpid()}-{n}"}).encode()
        request = urllib.request.Request(f"{api}/v1/contacts", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                ok = answer.status == 201
        except (urllib.error.URLError, OSError):
            ok = False
        results.append((ok, time.monotonic() - started))
        time.sleep(0.02)


def metric(url, name):
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except (urllib.error.URLError, OSError):
        return None
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else None


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", required=True, help="the node's peer address, host:port")
    parser.add_argument("--api", required=True, help="where writes go (the balancer or a node)")
    parser.add_argument("--metrics", help="the flooded node's /metrics URL, for its peer-link counters")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    token = os.environ.get("SWITCHBOARD_ADMIN_TOKEN")
    if not token:
        sys.exit("set SWITCHBOARD_ADMIN_TOKEN to the cluster's admin token")
    host, port = args.peer.rsplit(":", 1)
    pid = listening_pid(int(port))
    before = rss_mib(pid)
    stop_at = time.monotonic() + args.seconds
    flood = Flood()
    results = []
    writer = threading.Thread(target=writer_thread, args=(args.api, token, stop_at, results), daemon=True)
    writer.start()
    tasks = [asyncio.create_task(flooder(host, int(port), stop_at, flood)) for _ in range(args.connections)]
    highest = before
    started = time.monotonic()
    while time.monotonic() < stop_at:
        await asyncio.sleep(1)
        highest = max(highest, rss_mib(pid))
        elapsed = time.monotonic() - started
        ok = sum(1 for r in results if r[0])
        print(f"[{elapsed:4.0f}s] node rss {rss_mib(pid):6.1f} MiB  flood connections {flood.connections}"
              f"  bytes {flood.bytes >> 20} MiB  writes ok {ok} failed {len(results) - ok}", flush=True)
    await asyncio.gather(*tasks)
    writer.join()
    after = rss_mib(pid)
    latencies = sorted(r[1] for r in results if r[0])
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
    ok = sum(1 for r in results if r[0])
    summary = {
        "connections": args.connections, "seconds": args.seconds,
        "rssMiB": {"before": round(before, 1), "highest": round(highest, 1), "after": round(after, 1),
                   "growth": round(highest - before, 1)},
        "flood": {"connectionsOpened": flood.connections, "bytesSent": flood.bytes, "connectFailures": flood.refused},
        "writes": {"ok": ok, "failed": len(results) - ok, "p99Ms": round(p99, 1)},
    }
    if args.metrics:
        summary["node"] = {"peerLinkRefused": metric(args.metrics, "switchboard_peer_link_refused_total"),
                           "peerLinkFailures": metric(args.metrics, "switchboard_peer_link_failures_total")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
