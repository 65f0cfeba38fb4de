#!/usr/bin/env python3
"""A node's memory and CPU per console session, build against build, in one run.

Each agent's console holds one events WebSocket (`/v1/events?token=...`, the same socket the
load tester's agents hold). For each binary in turn (repeat binaries to alternate them) this
starts one fresh node, creates AGENTS agents (capacity 5) with a queue, signs each in, makes it
available and opens its events socket, then measures:

  idle     the node's RSS before and after the sockets open: KiB per session; and its CPU
           (user + system, /proc) over HOLD seconds with every socket open and nothing
           happening: microseconds of CPU per session per second;
  traffic  RATE new customers' messages a second for SECONDS seconds (each assigned to an
           agent, whose socket gets the assignment and the message): CPU per message, and the
           frames the sockets received (two per message while the agents have room).

Usage:
  python3 loadtest/bench-console-sockets.py [--agents 1000] [--seconds 20] [--rate 100] BINARY [BINARY...]
  python3 loadtest/bench-console-sockets.py /tmp/base/switchboard .build/release/switchboard \\
      /tmp/base/switchboard .build/release/switchboard

Needs: python3 `websockets` (pip install websockets).
"""
import argparse
import asyncio
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from event_sockets import rss_kib  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PORT = 18481
TOKEN = f"bench-console-{os.getpid()}"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Client:
    """One keep-alive HTTP connection per thread."""

    local = threading.local()

    @classmethod
    def call(cls, method, path, body=None, token=TOKEN, expect=(200, 201, 202, 204)):
        # A keep-alive connection the node closed while idle fails on reuse: the same request
        # again on a new connection, under the same Idempotency-Key.
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": os.urandom(12).hex()}
        for attempt in range(3):
            connection = getattr(cls.local, "connection", None)
            if connection is None:
                connection = cls.local.connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            try:
                connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                cls.local.connection = None
                if attempt == 2:
                    raise
        if response.status not in expect:
            raise RuntimeError(f"{method} {path} answered {response.status}: {data[:200]!r}")
        return json.loads(data) if data else None


def start_node(binary, data):
    env = dict(os.environ, SWITCHBOARD_ADMIN_TOKEN=TOKEN)
    node = subprocess.Popen(
        [binary, "node", "--id", "n1", "--data", data, "--api", f"127.0.0.1:{PORT}", "--bootstrap",
         "--log-level", "warning", "--password-memory-kib", "64", "--password-passes", "1",
         "--logins-per-address", "100000"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "..", "node.log"), "ab"))
    for _ in range(300):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return node
        except OSError:
            pass
        time.sleep(0.1)
    node.kill()
    raise RuntimeError(f"{binary} did not become ready on port {PORT}")


def sign_in(index):
    email = f"agent{index}@bench.example"
    Client.call("POST", "/v1/agents", {"name": f"Agente {index}", "email": email, "password": "bench-password", "capacity": 5})
    session = Client.call("POST", "/v1/sessions", {"email": email, "password": "bench-password"}, token="")
    Client.call("PUT", "/v1/agents/me/status", {"status": "available"}, token=session["token"])
    return session["token"]


async def hold(url, counts, index, opened, release):
    async with websockets.connect(url, max_size=2**20, open_timeout=60, ping_interval=None) as socket:
        opened.append(index)
        receiver = asyncio.ensure_future(count_frames(socket, counts, index))
        await release.wait()
        receiver.cancel()


async def count_frames(socket, counts, index):
    async for frame in socket:
        counts[index] += 1


def post_messages(rate, seconds, prefix):
    """RATE new customers' messages a second for SECONDS, from 4 threads; returns (sent, failed)."""
    sent, failed = [0], [0]
    lock = threading.Lock()
    total = int(rate * seconds)
    start = time.monotonic()

    def one(n):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            Client.call("POST", "/v1/channels/whatsapp/messages",
                        {"from": f"+{prefix}{n:07d}", "text": "Hola, necesito mi factura", "externalId": f"wamid.{prefix}.{n}"})
            with lock:
                sent[0] += 1
        except Exception:
            with lock:
                failed[0] += 1

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(total)))
    return sent[0], failed[0]


async def measure(binary, args, run):
    root = tempfile.mkdtemp(prefix="switchboard-bench-console.")
    data = os.path.join(root, "data")
    os.makedirs(data)
    node = start_node(binary, data)
    try:
        Client.call("POST", "/v1/queues", {"name": "support", "channels": ["whatsapp"]})
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            tokens = list(pool.map(sign_in, range(args.agents)))
        setup = time.monotonic() - started
        await asyncio.sleep(2)
        rss_before = rss_kib(node.pid)[0]

        base = f"ws://127.0.0.1:{PORT}/v1/events?token="
        counts = [0] * args.agents
        opened, release = [], asyncio.Event()
        tasks = []
        for start in range(0, args.agents, 100):
            tasks += [asyncio.ensure_future(hold(base + tokens[i], counts, i, opened, release))
                      for i in range(start, min(args.agents, start + 100))]
            await asyncio.sleep(0.2)
        for _ in range(600):
            if len(opened) + sum(1 for task in tasks if task.done()) >= args.agents:
                break
            await asyncio.sleep(0.1)
        failed = [task for task in tasks if task.done() and task.exception()]
        if failed:
            print(f"  first socket failure: {failed[0].exception()!r}", file=sys.stderr)

        await asyncio.sleep(2)
        rss_open = rss_kib(node.pid)[0]
        cpu_before = cpu_seconds(node.pid)
        await asyncio.sleep(args.hold)
        idle_cpu = cpu_seconds(node.pid) - cpu_before
        frames_before = sum(counts)

        cpu_before = cpu_seconds(node.pid)
        sent, post_failed = await asyncio.get_running_loop().run_in_executor(
            None, post_messages, args.rate, args.seconds, f"{run:02d}{os.getpid() % 1000:03d}")
        await asyncio.sleep(1)
        traffic_cpu = cpu_seconds(node.pid) - cpu_before
        frames = sum(counts) - frames_before
        rss_after = rss_kib(node.pid)[0]

        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        sessions = len(opened)
        return {
            "binary": binary, "sessions": sessions, "socketFailures": len(failed), "setupSeconds": round(setup, 1),
            "rssBeforeMiB": rss_before / 1024, "rssOpenMiB": rss_open / 1024, "rssAfterTrafficMiB": rss_after / 1024,
            "kibPerSession": (rss_open - rss_before) / max(sessions, 1),
            "idleMicrosPerSessionSecond": idle_cpu * 1e6 / max(sessions, 1) / args.hold,
            "messages": sent, "messagesFailed": post_failed, "framesReceived": frames,
            "cpuMicrosPerMessage": traffic_cpu * 1e6 / max(sent, 1),
        }
    finally:
        node.kill()
        node.wait()
        shutil.rmtree(root, ignore_errors=True)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", nargs="+", metavar="BINARY")
    parser.add_argument("--agents", type=int, default=1000, help="consoles (agents, each with one events socket); default 1000")
    parser.add_argument("--hold", type=float, default=10, help="seconds of idle CPU measured with every socket open; default 10")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of customer traffic; default 20")
    parser.add_argument("--rate", type=float, default=100, help="new customers' messages a second; default 100")
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args()
    for binary in args.binaries:
        if not os.access(binary, os.X_OK):
            parser.error(f"{binary} is not an executable")

    print(f"{args.agents} consoles' event sockets on one node; idle {args.hold:g} s, then {args.rate:g} new customers/s for {args.seconds:g} s")
    print(f"{'binary':<40} {'sessions':>8} {'KiB/session':>11} {'idle us/session/s':>17} {'us/message':>10} {'frames':>7} {'RSS MiB before/open/after':>26}")
    results = []
    for run, binary in enumerate(args.binaries):
        result = await measure(binary, args, run)
        results.append(result)
        print(f"{binary[-40:]:<40} {result['sessions']:>8} {result['kibPerSession']:>11.1f} "
              f"{result['idleMicrosPerSessionSecond']:>17.2f} {result['cpuMicrosPerMessage']:>10.0f} "
              f"{result['framesReceived']:>7} {result['rssBeforeMiB']:>8.1f}/{result['rssOpenMiB']:.1f}/{result['rssAfterTrafficMiB']:.1f}"
              + (f"  ({result['socketFailures']} sockets failed, {result['messagesFailed']} messages failed)"
                 if result['socketFailures'] or result['messagesFailed'] else ""), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    if any(result["sessions"] < args.agents or result["messagesFailed"] for result in results):
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
