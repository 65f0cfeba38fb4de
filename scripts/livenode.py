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


def chromium(lang: str = "es-AR"):
    """Debian's chromium, headless, through chromium-driver, with the browser's language set; exits
    with what to install when either is missing."""
    import shutil
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        sys.exit("browser tests need chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800", f"--lang={lang}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": f"{lang},{lang.split('-')[0]}"})
    return webdriver.Chrome(service=Service(driver), options=options)


def wait(what, predicate, seconds=10):
    """The predicate's first truthy value, polled every 20 ms, or an AssertionError naming `what`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {what}")


def fail(name: str, error: Exception, browser, shots, log: str):
    """A browser test's failure: a screenshot, the error, the node's log's end, exit 1."""
    if browser is not None:
        shots.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(shots / "failure.png"))
        print(f"screenshot: {shots / 'failure.png'}")
    print(f"{name} failed: {error!r}")
    print(open(log).read()[-3000:])
    sys.exit(1)


def stop(node, data: str, browser=None):
    """Ends a browser test: the browser, the node, its data."""
    import shutil
    if browser is not None:
        browser.quit()
    node.terminate()
    node.wait(timeout=10)
    shutil.rmtree(data, ignore_errors=True)


def caller(base: str, admin_token: str):
    """call(method, path, body=None, token=admin_token): a JSON request to `base`, its JSON
    answer (an HTTPError for a 4xx or 5xx)."""
    def call(method, path, body=None, token=admin_token):
        request = urllib.request.Request(base + path, method=method, data=body and json.dumps(body).encode())
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")
    return call
