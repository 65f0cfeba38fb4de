#!/usr/bin/env python3
"""SWIM figures for BENCHMARKS.md on a 5-node loopback cluster (release build, gossip on).

  loadtest/bench-gossip.py detect [trials=20]
      kill -9 a node, time until every survivor's /v1/cluster says it is dead (gossip status),
      restart it, wait until it is alive everywhere again; repeat. Prints median, p90, worst.
  loadtest/bench-gossip.py soak [minutes=10] [busy processes=one per core]
      no faults, the cores saturated by busy processes (nice 0) for the whole run;
      counts suspicions and deaths the nodes logged about live members (false positives).
"""
import json, os, random, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-admin"

def build():
    subprocess.run(["swift", "build", "-c", "release", "--product", "switchboard"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    path = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    return path + "/switchboard"

def cluster_file(directory, nodes=5):
    lines = ['[cluster]', 'secret = "bench-gossip-secret"', f'admin_token = "{TOKEN}"', f'data = "{directory}/data"']
    for i in range(1, nodes + 1):
        lines += ['[[node]]', f'id = "n{i}"', f'api = "127.0.0.1:{18280 + i}"', f'peer = "127.0.0.1:{17280 + i}"', f'gossip = "127.0.0.1:{17380 + i}"']
    path = directory + "/cluster.toml"
    open(path, "w").write("\n".join(lines) + "\n")
    return path

def view(node):
    request = urllib.request.Request(f"http://127.0.0.1:{18280 + node}/v1/cluster", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        nodes = json.load(urllib.request.urlopen(request, timeout=1))["nodes"]
    except Exception:
        return {}
    return {n["id"]: (n["gossip"] or {}).get("status") for n in nodes}

def wait(condition, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False

def pid_of(directory, node):
    return int(open(f"{directory}/data/n{node}/pid").read().strip())

def everyone_sees(status, victim, observers):
    return all(view(o).get(f"n{victim}") == status for o in observers)

def detect(binary, directory, toml, trials):
    times = []
    for trial in range(trials):
        victim = random.randint(1, 5)
        survivors = [n for n in range(1, 6) if n != victim]
        if not wait(lambda: all(everyone_sees("alive", v, range(1, 6)) for v in range(1, 6)), 30):
            sys.exit(f"trial {trial + 1}: the cluster is not all alive in gossip before the kill")
        start = time.time()
        os.kill(pid_of(directory, victim), signal.SIGKILL)
        if not wait(lambda: everyone_sees("dead", victim, survivors), 10):
            sys.exit(f"trial {trial + 1}: n{victim} not dead everywhere after 10 s")
        elapsed = time.time() - start
        times.append(elapsed)
        print(f"trial {trial + 1:2}/{trials}: kill -9 n{victim} -> dead on all 4 survivors in {elapsed * 1000:.0f} ms", flush=True)
        subprocess.run([binary, "cluster", "restart", f"n{victim}", toml], check=True, stdout=subprocess.DEVNULL)
        time.sleep(1)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * len(times))) - 1)]
    print(f"detection over {len(times)} trials: median {statistics.median(times) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, worst {times[-1] * 1000:.0f} ms")

def soak(directory, minutes, busy):
    if not wait(lambda: all(everyone_sees("alive", v, range(1, 6)) for v in range(1, 6)), 30):
        sys.exit("the cluster is not all alive in gossip before the soak")
    marks = {n: os.path.getsize(f"{directory}/data/n{n}/node.log") for n in range(1, 6)}
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    print(f"soak: {minutes} min, {len(burners)} busy processes saturating the cores", flush=True)
    try:
        end = time.time() + minutes * 60
        while time.time() < end:
            time.sleep(min(30, max(0, end - time.time())))
            print(f"  {int((minutes * 60 - (end - time.time())))} s", flush=True)
    finally:
        for burner in burners:
            burner.kill()
    suspicions = deaths = 0
    for n in range(1, 6):
        with open(f"{directory}/data/n{n}/node.log") as log:
            log.seek(marks[n])
            for line in log:
                if "[SWIMShell] member suspect" in line:
                    suspicions += 1
                if "[SWIMShell] member dead" in line:
                    deaths += 1
                    print("  false death:", line.strip())
    print(f"soak over {minutes} min with saturated cores: {deaths} members declared dead (false positives), {suspicions} suspicions raised and refuted")

def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "detect"
    amount = int(sys.argv[2]) if len(sys.argv) > 2 else (20 if mode == "detect" else 10)
    binary = build()
    directory = tempfile.mkdtemp(prefix="switchboard-gossip-bench-")
    toml = cluster_file(directory)
    subprocess.run([binary, "cluster", "up", toml], check=True, stdout=subprocess.DEVNULL)
    try:
        if mode == "detect":
            detect(binary, directory, toml, amount)
        else:
            soak(directory, amount, int(sys.argv[3]) if len(sys.argv) > 3 else (os.cpu_count() or 2))
    finally:
        subprocess.run([binary, "cluster", "down", toml], stdout=subprocess.DEVNULL)

if __name__ == "__main__":
    main()
