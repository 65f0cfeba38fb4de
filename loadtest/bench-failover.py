#!/usr/bin/env python3
"""Failover figure for BENCHMARKS.md: kill -9 of the leader of a 3-node cluster to the first
successful write through a surviving node, over N trials (release build, loopback).

    python3 loadtest/bench-failover.py [trials, default 20] [switchboard binary]

Without a binary it builds and uses this checkout's release build (an older build, given as
the binary, measures a change before and after).

Each trial: four writers post inbound messages through one survivor without pause; the leader is
killed with SIGKILL; the figure is the time from the kill to the first 202 of a request that was
*sent after* the kill (a write in flight before the kill does not count). The killed node is then
restarted and the next trial waits until all three nodes are ready and caught up.
"""
import json, os, signal, statistics, subprocess, sys, tempfile, threading, time, urllib.request

trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
given = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
root = tempfile.mkdtemp(prefix="switchboard-failover.")
token = f"failover-admin-{os.getpid()}"
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
if given:
    binary = given
else:
    subprocess.run(["swift", "build", "-c", "release", "--product", "switchboard"], check=True, stdout=subprocess.DEVNULL)
    binary = os.path.join(subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], text=True).strip(), "switchboard")
nodes = {f"n{i}": (f"127.0.0.1:1828{i}", f"127.0.0.1:1728{i}") for i in (1, 2, 3)}
toml = os.path.join(root, "cluster.toml")
with open(toml, "w") as f:
    f.write(f'[cluster]\nsecret = "failover-{os.getpid()}"\nadmin_token = "{token}"\ndata = "{root}/data"\n')
    for node, (api, peer) in nodes.items():
        f.write(f'[[node]]\nid = "{node}"\napi = "{api}"\npeer = "{peer}"\n')


def call(node, method, path, body=None, timeout=5):
    request = urllib.request.Request(f"http://{nodes[node][0]}{path}", method=method, data=body and json.dumps(body).encode())
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}
    except Exception:
        return 0, {}


def cluster(*args):
    subprocess.run([binary, "cluster", *args, toml], check=True, stdout=subprocess.DEVNULL)


def leader():
    for node in nodes:
        status, view = call(node, "GET", "/v1/cluster", timeout=1)
        if status == 200 and view.get("leader"):
            return view["leader"]
    return None


def settled():
    indexes = []
    for node in nodes:
        status, ready = call(node, "GET", "/readyz", timeout=1)
        if status != 200:
            return False
        indexes.append(ready["appliedIndex"])
    return len(set(indexes)) == 1


cluster("up")
results = []
try:
    for trial in range(trials):
        deadline = time.time() + 60
        while not (settled() and leader()) and time.time() < deadline:
            time.sleep(0.05)
        old = leader()
        survivor = next(node for node in nodes if node != old)
        killed_at = [None]
        first_ok = []
        stop = threading.Event()
        lock = threading.Lock()

        def writer(number):
            n = 0
            while not stop.is_set():
                n += 1
                sent = time.monotonic()
                status, _ = call(survivor, "POST", "/v1/channels/sms/messages",
                                 {"from": f"+{trial}{number}{n}", "text": "hi", "externalId": f"t{trial}-w{number}-{n}"})
                done = time.monotonic()
                with lock:
                    if status == 202 and killed_at[0] is not None and sent > killed_at[0]:
                        first_ok.append(done)
                        stop.set()
                if status != 202:
                    time.sleep(0.005)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        pid = int(open(f"{root}/data/{old}/pid").read())
        with lock:
            killed_at[0] = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        stop.wait(10)
        stop.set()
        for thread in threads:
            thread.join()
        if not first_ok:
            print(f"trial {trial + 1}: no successful write within 10 s", flush=True)
            results.append(10.0)
        else:
            results.append(min(first_ok) - killed_at[0])
            print(f"trial {trial + 1}: killed leader {old}, first write through {survivor} after {results[-1] * 1000:.0f} ms", flush=True)
        cluster("restart", old)
finally:
    cluster("down")
ms = sorted(r * 1000 for r in results)
print(f"failover over {len(ms)} trials: median {statistics.median(ms):.0f} ms, p90 {ms[int(len(ms) * 0.9) - 1]:.0f} ms, worst {ms[-1]:.0f} ms, best {ms[0]:.0f} ms")
