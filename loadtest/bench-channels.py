#!/usr/bin/env python3
"""Channel figures for BENCHMARKS.md (issue 25), on a local three-node cluster with its balancer
(release build, loopback) and the provider simulator (loadtest/provider-sim.py):

  1. Signed WhatsApp webhooks through the balancer, each a new customer's first message, against
     the generic endpoint (POST /v1/channels/whatsapp/messages) in alternating wrk rounds of the
     same length and connections: messages/s, the ratio, and p99.
  2. Reply to provider: from an agent's POST of a reply (through the balancer) to the simulated
     Cloud API receiving it, over N replies, idle and while wrk loads the cluster with new
     customers.

    python3 loadtest/bench-channels.py [rounds, default 3] [replies, default 100] [switchboard binary]
"""
import calendar, hashlib, hmac, json, os, re, statistics, subprocess, sys, tempfile, threading, time, urllib.request

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
replies = int(sys.argv[2]) if len(sys.argv) > 2 else 100
here = os.path.dirname(os.path.abspath(__file__))
os.chdir(os.path.join(here, ".."))
if len(sys.argv) > 3:
    binary = os.path.abspath(sys.argv[3])
else:
    subprocess.run(["swift", "build", "-c", "release", "--product", "switchboard"], check=True, stdout=subprocess.DEVNULL)
    binary = os.path.join(subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], text=True).strip(), "switchboard")
root = tempfile.mkdtemp(prefix="switchboard-channels.")
token = f"channels-admin-{os.getpid()}"
app_secret = "bench-app-secret"
seconds, connections, threads = 10, 32, 2
toml = os.path.join(root, "cluster.toml")
with open(toml, "w") as f:
    f.write(f'[cluster]\nsecret = "channels-{os.getpid()}"\nadmin_token = "{token}"\ndata = "{root}/data"\n')
    for i in (1, 2, 3):
        f.write(f'[[node]]\nid = "n{i}"\napi = "127.0.0.1:1838{i}"\npeer = "127.0.0.1:1738{i}"\ngossip = "127.0.0.1:1739{i}"\n')
    f.write('[balancer]\nlisten = "127.0.0.1:18380"\ngossip = "127.0.0.1:17390"\nadmin = "127.0.0.1:18390"\n')
base = "http://127.0.0.1:18380"


def call(method, path, body=None, bearer=token, timeout=10):
    request = urllib.request.Request(base + path, method=method, data=body and json.dumps(body).encode())
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def wrk(script, environment, duration=seconds):
    output = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", script, base],
        env=dict(os.environ, SWITCHBOARD_ADMIN_TOKEN=token, SWITCHBOARD_WEBHOOK_THREADS=str(threads), **environment),
        capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    p99ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    errors = re.search(r"non-2\d\d responses: (\d+)", output)
    return rate, p99ms, int(errors.group(1)) if errors else 0


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


sim = subprocess.Popen([sys.executable, os.path.join(here, "provider-sim.py"), "--port", "0"], stdout=subprocess.PIPE, text=True)
sim_base = "http://127.0.0.1:" + sim.stdout.readline().split()[1]
subprocess.run([binary, "cluster", "up", toml], check=True, stdout=subprocess.DEVNULL)
try:
    # New customers wait in a queue no agent serves; the latency inbox's queue is Ana's alone.
    queue = call("POST", "/v1/queues", {"name": "ventas", "skills": ["ventas"]})["id"]
    latency_queue = call("POST", "/v1/queues", {"name": "latency", "skills": ["latency"]})["id"]
    inbox = call("POST", "/v1/inboxes", {"name": "wa", "channel": "whatsapp", "queue": queue, "whatsapp": {
        "phoneNumberId": "106540352242922", "accessToken": "sim-access-token", "appSecret": app_secret, "verifyToken": "v",
        "apiBase": sim_base + "/v21.0"}})
    webhook = inbox["webhookUrl"]

    # 1. Pre-signed webhook bodies, enough for every round without a repeat at 10,000/s.
    bodies = os.path.join(root, "bodies.tsv")
    with open(bodies, "w") as f:
        for n in range(rounds * seconds * 10_000 // rounds + 20_000):
            wa_id = f"54911{n:08d}"
            body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": f"Cliente {n}"}, "wa_id": wa_id}],
                "messages": [{"from": wa_id, "id": f"wamid.bench{os.getpid()}x{n}", "timestamp": "1749416383", "type": "text",
                              "text": {"body": "Hola, necesito mi factura"}}]}}]}]}, separators=(",", ":"))
            signature = "sha256=" + hmac.new(app_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
            f.write(f"{signature}\t{body}\n")
    generic, signed, windows = [], [], []
    for number in range(rounds):
        started = time.time()
        generic.append(wrk(os.path.join(here, "inbound.lua"), {}))
        # Each round takes fresh bodies: rotate the file so no round repeats another's ids.
        profiler = None
        if os.environ.get("SWITCHBOARD_PERF") and number == 0:
            # A CPU profile of the whole machine during the first signed round (perf report -i it).
            profiler = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", os.environ["SWITCHBOARD_PERF"], "--", "sleep", str(seconds - 1)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        signed.append(wrk(os.path.join(here, "whatsapp-webhook.lua"), {"SWITCHBOARD_WEBHOOK_BODIES": bodies, "SWITCHBOARD_WEBHOOK_PATH": webhook}))
        if profiler:
            profiler.wait()
        windows.append((started, time.time()))
        with open(bodies) as f:
            lines = f.readlines()
        cut = int(signed[-1][0] * seconds) + 1000
        with open(bodies, "w") as f:
            f.writelines(lines[cut:] + lines[:cut])
        print(f"round {number + 1}: generic {generic[-1][0]:.0f}/s p99 {generic[-1][1]:.1f} ms ({generic[-1][2]} errors); "
              f"signed webhook {signed[-1][0]:.0f}/s p99 {signed[-1][1]:.1f} ms ({signed[-1][2]} errors); "
              f"ratio {signed[-1][0] / generic[-1][0]:.2f}", flush=True)
    ratios = [s[0] / g[0] for s, g in zip(signed, generic)]

    # A Raft snapshot (every 100,000 entries by default: a copy of the state database, seconds
    # of both cores) lands in whichever round crosses the boundary; the pairs it touched are
    # reported apart.
    snapshots = []
    for i in (1, 2, 3):
        for line in open(f"{root}/data/n{i}/node.log", errors="replace"):
            if "took a snapshot" in line:
                stamp = calendar.timegm(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S"))
                took = float(re.search(r"snapshot.ms=(\d+)", line).group(1)) / 1000 if "snapshot.ms=" in line else 0
                snapshots.append((stamp - took - 1, stamp + 1))
    clean = [r for r, (start, end) in zip(ratios, windows) if not any(a < end and b > start for a, b in snapshots)]

    # 2. Reply to provider.
    latency_inbox = call("POST", "/v1/inboxes", {"name": "wa-latency", "channel": "whatsapp", "queue": latency_queue, "whatsapp": {
        "phoneNumberId": "106540352242923", "accessToken": "sim-access-token", "appSecret": app_secret, "verifyToken": "v",
        "apiBase": sim_base + "/v21.0"}})
    call("POST", "/v1/agents", {"name": "Ana", "email": "ana@bench.example", "password": "bench-password", "capacity": 100, "skills": ["latency"]})
    agent = call("POST", "/v1/sessions", {"email": "ana@bench.example", "password": "bench-password"}, bearer=None)["token"]
    call("PUT", "/v1/agents/me/status", {"status": "available"}, bearer=agent)
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Lucía"}, "wa_id": "5491155550000"}],
        "messages": [{"from": "5491155550000", "id": f"wamid.latency{os.getpid()}", "timestamp": "1", "type": "text", "text": {"body": "hola"}}]}}]}]})
    request = urllib.request.Request(base + latency_inbox["webhookUrl"], method="POST", data=body.encode())
    request.add_header("X-Hub-Signature-256", "sha256=" + hmac.new(app_secret.encode(), body.encode(), hashlib.sha256).hexdigest())
    urllib.request.urlopen(request, timeout=10).read()
    time.sleep(0.5)
    conversation = next(c["id"] for c in call("GET", "/v1/conversations?status=assigned", bearer=agent)["items"])

    def reply_latencies(label):
        latencies = []
        for n in range(replies):
            text = f"{label} {n} {time.time()}"
            started = time.time()
            call("POST", f"/v1/conversations/{conversation}/messages", {"text": text}, bearer=agent)
            deadline = started + 30
            while time.time() < deadline:
                with urllib.request.urlopen(sim_base + "/_sim/sent", timeout=5) as answer:
                    found = [s for s in json.load(answer)[-20:] if s.get("text") == text]
                if found:
                    latencies.append((found[0]["receivedAt"] - started) * 1000)
                    break
                time.sleep(0.005)
        return latencies

    idle = reply_latencies("idle")
    load = []
    loader = threading.Thread(target=lambda: load.append(wrk(os.path.join(here, "inbound.lua"), {}, duration=40)))
    loader.start()
    time.sleep(2)
    loaded = reply_latencies("loaded")
    loader.join()
    print()
    print(f"signed WhatsApp webhooks / generic endpoint, through the balancer, {connections} connections, {rounds} x {seconds} s rounds:")
    print(f"  ratio per round {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")
    print(f"  rounds without a snapshot: {', '.join(f'{r:.2f}' for r in clean) or 'none'}"
          + (f"; median {statistics.median(clean):.2f}" if clean else ""))
    print(f"  signed webhook: median {statistics.median(s[0] for s in signed):.0f} messages/s, p99 {statistics.median(s[1] for s in signed):.1f} ms")
    print(f"  generic:        median {statistics.median(g[0] for g in generic):.0f} messages/s, p99 {statistics.median(g[1] for g in generic):.1f} ms")
    for label, values in (("idle", idle), ("under load", loaded)):
        if label == "under load" and load:
            print(f"  (load: {load[0][0]:.0f} new customers/s through the generic endpoint, {connections} connections)")
        print(f"reply to provider, {label}: {len(values)} replies, p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, max {max(values):.1f} ms")
finally:
    subprocess.run([binary, "cluster", "down", toml], stdout=subprocess.DEVNULL)
    sim.kill()
