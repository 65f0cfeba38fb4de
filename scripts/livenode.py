"""One live `switchboard node` on loopback for the Python checks (contract-test.py,
widget-browser-test.py): a fresh data directory, a bootstrap, and /readyz awaited."""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(binary: str, admin_token: str, prefix: str):
    """Starts a bootstrapped node with a cheap password hash; returns (process, base URL, data
    directory, log path) once it is ready, or exits with its log."""
    port = free_port()
    data = tempfile.mkdtemp(prefix=prefix)
    log = os.path.join(data, "node.log")
    # The checks do not depend on the hashing cost; a cheap one keeps agent creations quick.
    node = subprocess.Popen([binary, "node", "--id", "n1", "--api", f"127.0.0.1:{port}", "--data", data + "/n1", "--bootstrap",
                             "--password-memory-kib", "64"],
                            env=dict(os.environ, SWITCHBOARD_ADMIN_TOKEN=admin_token), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1) as answer:
                if json.load(answer).get("ready"):
                    return node, base, data, log
        except OSError:
            pass
        if time.time() > deadline or node.poll() is not None:
            node.kill()
            sys.exit(f"the node did not become ready; its log: {open(log).read()[-2000:]}")
        time.sleep(0.2)
