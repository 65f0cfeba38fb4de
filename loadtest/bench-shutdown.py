#!/usr/bin/env python3
"""Graceful-stop figure for BENCHMARKS.md: SIGTERM on a node of a 3-node cluster (release build,
loopback), idle and holding N event WebSockets, over a few trials each.

    python3 loadtest/bench-shutdown.py [sockets, default 5000] [trials, default 3] [switchboard binary] [silent]

With `silent` the clients never answer the node's close frame (gone quiet, or hostile).

Without a binary it builds and uses this checkout's release build.

Each trial: the cluster is up and settled. "idle": SIGTERM to the leader with no client. "sockets":
N event WebSockets (the admin token, so no per-agent cap) are opened on the leader, each upgrade
answered 101, then the leader gets SIGTERM. The figure is the time from the signal to the
process's exit; the trial also reports how many sockets the node closed before it exited, and
whether another member led within the time. The stopped node is restarted before the next trial.
The node's own log lines after the signal are printed once, to show each step.
"""
import base64, json, os, resource, selectors, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

sockets_wanted = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
trials = int(sys.argv[2]) if len(sys.argv) > 2 else 3
given = os.path.abspath(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
silent = len(sys.argv) > 4 and sys.argv[4] == "silent"
root = tempfile.mkdtemp(prefix="switchboard-shutdown.")
token = f"shutdown-admin-{os.getpid()}"
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, sockets_wanted + 1000)), hard))
if given:
    binary = given
else:
    subprocess.run(["swift", "build", "-c", "release", "--product", "switchboard"], check=True, stdout=subprocess.DEVNULL)
    binary = os.path.join(subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], text=True).strip(), "switchboard")
nodes = {f"n{i}": (f"127.0.0.1:1838{i}", f"127.0.0.1:1738{i}") for i in (1, 2, 3)}
toml = os.path.join(root, "cluster.toml")
with open(toml, "w") as f:
    f.write(f'[cluster]\nsecret = "shutdown-{os.getpid()}"\nadmin_token = "{token}"\ndata = "{root}/data"\n')
    for node, (api, peer) in nodes.items():
        f.write(f'[[node]]\nid = "{node}"\napi = "{api}"\npeer = "{peer}"\n')


def call(node, method, path, timeout=2):
    request = urllib.request.Request(f"http://{nodes[node][0]}{path}", method=method)
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except Exception:
        return 0, {}


def cluster(*args):
    subprocess.run([binary, "cluster", *args, toml], check=True, stdout=subprocess.DEVNULL)


def leader(excluding=None):
    for node in nodes:
        if node == excluding:
            continue
        status, view = call(node, "GET", "/v1/cluster", timeout=1)
        if status == 200 and view.get("leader") and view["leader"] != excluding:
            return view["leader"]
    return None


def wait(condition, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    return None


def settled():
    if not leader():
        return False
    return all(call(node, "GET", "/readyz", timeout=1)[0] == 200 for node in nodes)


def pid_of(node):
    return int(open(f"{root}/data/{node}/pid").read().strip())


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def open_sockets(node, count):
    host, port = nodes[node][0].split(":")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    opened = []
    for number in range(count):
        connection = socket.create_connection((host, int(port)), timeout=10)
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
        if not answer.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"socket {number + 1} of {count} on {node} was not upgraded: {answer[:200]!r}")
        connection.setblocking(False)
        opened.append(connection)
        if (number + 1) % 1000 == 0:
            print(f"  {number + 1} event sockets open on {node}", flush=True)
    return opened


class Clients:
    """The event sockets' client side after the signal: each answers the node's close frame with
    its own (as a browser or the load tester does) and counts the connection closed at EOF."""

    def __init__(self, opened):
        self.selector = selectors.DefaultSelector()
        self.open = len(opened)
        self.codes = {}
        for connection in opened:
            self.selector.register(connection, selectors.EVENT_READ, bytearray())

    def poll(self, timeout):
        for key, _ in self.selector.select(timeout):
            connection, pending = key.fileobj, key.data
            try:
                data = connection.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.selector.unregister(connection)
                self.open -= 1
                continue
            pending += data
            # Frames from the server are unmasked: opcode in byte 0, 7-bit length in byte 1.
            while len(pending) >= 2 and (pending[1] & 0x7F) < 126 and len(pending) >= 2 + (pending[1] & 0x7F):
                opcode, length = pending[0] & 0x0F, pending[1] & 0x7F
                payload = bytes(pending[2:2 + length])
                del pending[:2 + length]
                if opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big") if length >= 2 else 1005
                    self.codes[code] = self.codes.get(code, 0) + 1
                    if silent:
                        continue
                    try:
                        connection.sendall(bytes([0x88, 0x80]) + os.urandom(4))
                    except OSError:
                        pass


def trial(kind, show_log):
    assert wait(settled, 30), "the cluster did not settle"
    victim = leader()
    opened = open_sockets(victim, sockets_wanted) if kind == "sockets" else []
    pid = pid_of(victim)
    log = f"{root}/data/{victim}/node.log"
    offset = os.path.getsize(log)
    clients = Clients(opened)
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while alive(pid) and time.monotonic() - started < 30:
        clients.poll(0.005) if opened else time.sleep(0.005)
    took = time.monotonic() - started
    clients.poll(0.2) if opened else None
    closed = len(opened) - clients.open
    successor = wait(lambda: leader(excluding=victim), 5)
    for connection in opened:
        connection.close()
    if show_log:
        with open(log) as f:
            f.seek(offset)
            print(f"  {victim}'s log after SIGTERM:")
            for line in f.read().splitlines():
                print("    " + line[:200])
    print(f"{kind:7} trial: SIGTERM to leader {victim} -> exited after {took * 1000:.0f} ms"
          + (f", {closed}/{len(opened)} sockets closed by the node (close codes {clients.codes})" if opened else "")
          + f", new leader {successor}", flush=True)
    cluster("restart", victim)
    return took


try:
    cluster("up")
    results = {"idle": [], "sockets": []}
    for number in range(trials):
        results["idle"].append(trial("idle", show_log=number == 0))
        results["sockets"].append(trial("sockets", show_log=number == 0))
    for kind, times in results.items():
        label = "idle" if kind == "idle" else f"{sockets_wanted} event sockets" + (" (silent clients)" if silent else "")
        print(f"SIGTERM to exit, {label}: median {statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms over {len(times)} trials")
finally:
    subprocess.run([binary, "cluster", "down", toml], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
