#!/usr/bin/env python3
"""Balancer figures for BENCHMARKS.md (release build, loopback).

  loadtest/bench-balancer.py eject [trials=20]
      3 nodes with gossip and the balancer (admin port on). kill -9 a random node with no client
      traffic (the worst case: no failed request ejects it, only checks and gossip do), time until
      the balancer's /metrics says it no longer takes requests (switchboard_balancer_backend_up 0),
      restart it, wait until it is back; repeat. Prints median, p99 (the worst of 20) and worst.
"""
import os, random, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN = 18390

def build():
    subprocess.run(["swift", "build", "-c", "release", "--product", "switchboard"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    return path + "/switchboard"

def cluster_file(directory):
    lines = ['[cluster]', 'secret = "bench-balancer-secret"', 'admin_token = "bench-admin"', f'data = "{directory}/data"']
    for i in range(1, 4):
        lines += ['[[node]]', f'id = "n{i}"', f'api = "127.0.0.1:{18380 + i}"', f'peer = "127.0.0.1:{17480 + i}"', f'gossip = "127.0.0.1:{17580 + i}"']
    lines += ['[balancer]', 'listen = "127.0.0.1:18380"', 'gossip = "127.0.0.1:17590"', f'admin = "127.0.0.1:{ADMIN}"']
    path = directory + "/cluster.toml"
    open(path, "w").write("\n".join(lines) + "\n")
    return path

def up(node):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=1).read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith(f'switchboard_balancer_backend_up{{backend="n{node}"}}'):
            return float(line.split()[-1]) == 1
    return False

def wait(condition, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False

def main():
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    binary = build()
    directory = tempfile.mkdtemp(prefix="switchboard-balancer-bench-")
    toml = cluster_file(directory)
    subprocess.run([binary, "cluster", "up", toml], check=True, stdout=subprocess.DEVNULL)
    times = []
    try:
        for trial in range(trials):
            if not wait(lambda: all(up(n) for n in (1, 2, 3)), 30):
                sys.exit(f"trial {trial + 1}: not every node is up in the balancer before the kill")
            victim = random.randint(1, 3)
            pid = int(open(f"{directory}/data/n{victim}/pid").read().strip())
            start = time.time()
            os.kill(pid, signal.SIGKILL)
            if not wait(lambda: up(victim) is False, 10):
                sys.exit(f"trial {trial + 1}: n{victim} still chosen 10 s after kill -9")
            elapsed = time.time() - start
            times.append(elapsed)
            print(f"trial {trial + 1:2}/{trials}: kill -9 n{victim} -> no longer chosen after {elapsed * 1000:.0f} ms", flush=True)
            subprocess.run([binary, "cluster", "restart", f"n{victim}", toml], check=True, stdout=subprocess.DEVNULL)
    finally:
        subprocess.run([binary, "cluster", "down", toml], stdout=subprocess.DEVNULL)
    times.sort()
    print(f"ejection over {len(times)} trials, no client traffic: median {statistics.median(times) * 1000:.0f} ms, "
          f"p99 {times[min(len(times) - 1, int(0.99 * len(times)))] * 1000:.0f} ms, worst {times[-1] * 1000:.0f} ms")

if __name__ == "__main__":
    main()
