"""The agent console in a real browser: Debian's chromium, headless, driven by Selenium through
chromium-driver, against a live node. An agent signs in through the form, a customer's WhatsApp
message (the Cloud API's webhook, signed as Meta signs it) appears in the console (timed: p50
and p99 over the messages sent), the agent replies from the textarea with Enter, the reply is
stored, reaches the simulated Cloud API (loadtest/provider-sim.py) once, and shows sent, then
delivered when the provider says so; a note stays a note; the conversation is resolved, reopened
and transferred to a colleague; every view is checked for labels, a visible keyboard focus and
a phone's width; the language switch changes the page, and logging out returns to the form. A supervisor sees
the queues, the agents' load and the rules in order, and reassigns a conversation; the admin
token opens the operations view (the member and its leader). Then, on a local
three-node cluster behind its balancer, the node holding the console's events socket is killed
with kill -9 while customers keep writing: the console shows "reconnecting", resumes through the
balancer from its cursor, and shows every message exactly once; the operations view lists the
cluster with that node down, and disabling the agent returns its console to the form with the
reason. Screenshots of failures go to
.build/console-test/.

  scripts/console-browser-test.py [--binary .build/debug/switchboard] [--messages 100]
"""
import argparse, hashlib, hmac, json, os, pathlib, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.error, urllib.request

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

root = pathlib.Path(__file__).resolve().parent.parent
shots = root / ".build/console-test"
sys.path.insert(0, str(root / "scripts"))
import livenode  # noqa: E402
embed = __import__("embed-assets")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(root / ".build/debug/switchboard"))
    parser.add_argument("--messages", type=int, default=100, help="customer messages timed from the webhook to the console")
    parser.add_argument("--screenshots", help="save the agent view here as console-agent.png (README's picture)")
    arguments = parser.parse_args()
    if embed.console_source() != (root / "Sources/AgentAPI/ConsoleAssets.swift").read_text():
        sys.exit("Sources/AgentAPI/ConsoleAssets.swift is not Console/: run scripts/embed-assets.py")
    node, base, data, log = livenode.start(arguments.binary, "console-admin", "switchboard-console-")

    call = livenode.caller(base, "console-admin")

    browser = None
    # The simulated WhatsApp Cloud API the replies go to (loadtest/provider-sim.py).
    sim = subprocess.Popen([sys.executable, str(root / "loadtest/provider-sim.py"), "--port", "0"], stdout=subprocess.PIPE, text=True)
    sim_base = "http://127.0.0.1:" + sim.stdout.readline().split()[1]
    app_secret = "console-app-secret"
    try:
        call("POST", "/v1/queues", {"name": "ventas"})
        ana = call("POST", "/v1/agents", {"name": "Ana Gómez", "email": "ana@tienda.example", "password": "ana-password"})["id"]
        carlos = call("POST", "/v1/agents", {"name": "Carlos Díaz", "email": "carlos@tienda.example", "password": "carlos-password"})["id"]
        webhook = base + call("POST", "/v1/inboxes", {"name": "Tienda WhatsApp", "channel": "whatsapp", "whatsapp": {
            "phoneNumberId": "106540352242922", "accessToken": "sim-access-token", "appSecret": app_secret, "verifyToken": "v",
            "apiBase": sim_base + "/v21.0"}})["webhookUrl"]

        browser = livenode.chromium("es-AR")
        started = time.time()
        browser.get(base + "/")

        wait = livenode.wait

        js = browser.execute_script
        wait("the sign-in form", lambda: js("return !document.getElementById('login').hidden && document.querySelector('input[name=email]') !== null"))
        interactive_ms = js("return performance.timing.domInteractive - performance.timing.navigationStart")
        transferred = js("return performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, 0) + performance.getEntriesByType('navigation')[0].transferSize")
        assert js("return document.querySelector('button[type=submit]').textContent") == "Entrar", "Spanish first"
        for control in js("return [...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels || !e.labels.length).map(e => e.id || e.name)"):
            raise AssertionError(f"a control without a label: {control}")
        sign_in(browser, "ana@tienda.example", "ana-password")
        wait("the agent's view", lambda: js("return !document.getElementById('agent').hidden && document.getElementById('who').textContent === 'Ana Gómez'"))
        go_available(browser)
        wait("the agent available", lambda: call("GET", "/v1/agents?limit=10")["items"][0]["status"] == "available")

        def meta(value):
            """A webhook as Meta posts it: the Cloud API's payload, signed with the app secret."""
            body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}, **value}}]}]})
            request = urllib.request.Request(webhook, method="POST", data=body.encode())
            request.add_header("Content-Type", "application/json")
            request.add_header("X-Hub-Signature-256", "sha256=" + hmac.new(app_secret.encode(), body.encode(), hashlib.sha256).hexdigest())
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200, answer.status

        def customer(text, external):
            meta({"contacts": [{"profile": {"name": "Lucía"}, "wa_id": "5491155550000"}],
                  "messages": [{"from": "5491155550000", "id": "wamid." + external, "timestamp": "1749416383", "type": "text", "text": {"body": text}}]})

        # Record in the page when each message is painted.
        js("window.painted = {}; new MutationObserver(() => { for (const li of document.querySelectorAll('#messages li, #list li')) {"
           " const key = li.dataset.messageId || li.dataset.conversationId; if (!(key in window.painted)) window.painted[key] = Date.now(); } })"
           ".observe(document.body, {subtree: true, childList: true})")
        sent_at = time.time() * 1000
        customer("Hola, ¿tienen talle M?", "api-1")
        item = wait("the new conversation in the list", lambda: js("return document.querySelector('#list li[data-conversation-id]')"), 5)
        conversation = item.get_attribute("data-conversation-id")
        first_ms = js(f"return window.painted['{conversation}']") - sent_at
        assert first_ms < 1000, f"a customer's message appears within 1 s: {first_ms:.0f} ms"
        assert js("return document.title").startswith("("), f"the tab's title counts the new assignment: {js('return document.title')}"
        assert "Nueva conversación asignada" in js("return document.getElementById('notice').textContent"), "a visible notice"
        item.send_keys(Keys.ENTER)  # the keyboard opens it
        wait("the open conversation", lambda: js("return document.getElementById('contact-name').textContent === 'Lucía'"))
        usable_at_both_widths(browser, "the agent's view", 10)
        for part in ("list", "reply"):
            box = js(f"const r = document.getElementById('{part}').getBoundingClientRect(); return [r.left, r.right, r.width]")
            assert box[0] >= 0 and box[1] <= 390 and box[2] > 200, f"the {part} fits a phone's width: {box}"
        if arguments.screenshots:
            browser.save_screenshot(str(pathlib.Path(arguments.screenshots) / "console-phone.png"))
        browser.set_window_size(1280, 800)

        latencies = []
        sent = ([f"mensaje {n}" for n in range(arguments.messages - 2)] + ["¿Me lo envían a Córdoba?", "Pago con tarjeta."])[:arguments.messages]
        for n, text in enumerate(sent):
            before = set(js("return Object.keys(window.painted)"))
            at = time.time() * 1000
            customer(text, f"api-m{n}")
            key = wait(f"message {n} painted", lambda: next(iter(set(js("return Object.keys(window.painted)")) - before), None), 5)
            latencies.append(js(f"return window.painted['{key}']") - at)
        # Attachments by kind: a photo with its caption, and a place.
        meta({"contacts": [{"profile": {"name": "Lucía"}, "wa_id": "5491155550000"}], "messages": [
            {"from": "5491155550000", "id": "wamid.photo", "timestamp": "1749416384", "type": "image",
             "image": {"id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "aGFzaA==", "caption": "¿Este modelo?"}},
            {"from": "5491155550000", "id": "wamid.place", "timestamp": "1749416385", "type": "location",
             "location": {"latitude": -31.4201, "longitude": -64.1888, "name": "Córdoba", "address": "Plaza San Martín"}}]})
        # One webhook, one time: their order between them is the ids'.
        kinds = dict(wait("the photo and the place shown", lambda: (lambda k: k if len(k) == 2 else None)(
            js("return [...document.querySelectorAll('#messages .attachment')].map(a => [a.dataset.kind, a.textContent])"))))
        assert kinds.get("image") == "🖼 Imagen (image/jpeg)", f"the photo by its kind: {kinds}"
        assert kinds.get("location", "").startswith("📍 Ubicación -31.4201, -64.1888"), f"the place: {kinds}"
        assert js("return document.querySelector('#messages .attachment[data-kind=location] a').href").startswith("https://www.openstreetmap.org/?mlat=-31.4201")
        texts = js("return [...document.querySelectorAll('#messages li.customer:not(:has(.attachment))')].map(li => li.childNodes[1].textContent)")
        assert texts == ["Hola, ¿tienen talle M?"] + sent, f"each message once, in order: {texts[:5]}...{texts[-3:]}"

        reply = browser.find_element(By.NAME, "reply")
        reply.send_keys("¡Hola Lucía! Sí,")
        reply.send_keys(Keys.SHIFT, Keys.ENTER)
        reply.send_keys("tenemos talle M." + Keys.ENTER)
        stored = wait("the reply stored", lambda: [m for m in call("GET", f"/v1/conversations/{conversation}")["messages"] if m["author"] == "agent"])
        assert stored[0]["text"] == "¡Hola Lucía! Sí,\ntenemos talle M.", f"Shift+Enter breaks the line, Enter sends: {stored[0]['text']!r}"
        wait("the reply in the console", lambda: js(f"return document.querySelector('#messages li[data-message-id=\"{stored[0]['id']}\"]') !== null"))
        # The reply reaches the customer's WhatsApp (the simulated Cloud API), and its delivery
        # state moves in the console as the provider reports it.
        taken = wait("the reply at the Cloud API", lambda: [m for m in json.load(urllib.request.urlopen(sim_base + "/_sim/sent", timeout=5))
                                                            if m["text"] == "¡Hola Lucía! Sí,\ntenemos talle M."])
        assert len(taken) == 1 and taken[0]["to"] == "5491155550000", f"sent once, to the customer's number: {taken}"
        state = f"#messages li[data-message-id=\"{stored[0]['id']}\"] .state"
        wait("shown sent", lambda: js(f"return document.querySelector('{state}').dataset.delivery") == "sent")
        meta({"statuses": [{"id": taken[0]["id"], "status": "delivered", "timestamp": "1749416390", "recipient_id": "5491155550000"}]})
        wait("shown delivered", lambda: js(f"return document.querySelector('{state}').textContent") == "entregado")
        js("document.getElementById('private').checked = true")
        reply.send_keys("cliente frecuente" + Keys.ENTER)
        notes = wait("the note stored", lambda: [m for m in call("GET", f"/v1/conversations/{conversation}")["messages"] if m["private"]])
        assert notes[0]["text"] == "cliente frecuente"
        wait("the note marked", lambda: js("return document.querySelectorAll('#messages li.private').length === 1"))
        if arguments.screenshots:
            js("document.getElementById('messages').scrollTop = 1e9")
            shoot(browser, arguments.screenshots, "console-agent.png")

        browser.find_element(By.ID, "resolve").click()
        wait("resolved", lambda: call("GET", f"/v1/conversations/{conversation}")["status"] == "resolved")
        wait("reopen offered", lambda: js("return !document.getElementById('reopen').hidden"))
        browser.find_element(By.ID, "reopen").click()
        wait("reopened and routed back to her", lambda: (lambda c: c["status"] == "assigned" and c["assignee"] == ana)(call("GET", f"/v1/conversations/{conversation}")))
        wait("the transfer choices", lambda: js(f"return document.querySelector('#transfer option[value=\"agent:{carlos}\"]') !== null"))
        Select(browser.find_element(By.ID, "transfer")).select_by_value(f"agent:{carlos}")
        wait("transferred to Carlos", lambda: call("GET", f"/v1/conversations/{conversation}")["assignee"] == carlos)
        wait("gone from her list", lambda: js(f"return document.querySelector('#list li[data-conversation-id=\"{conversation}\"]') === null"))
        assert "Conversación transferida" in js("return document.getElementById('notice').textContent"), "the transfer is confirmed"
        call("POST", f"/v1/conversations/{conversation}/resolve")

        js("const s = document.getElementById('language'); s.value = 'en'; s.dispatchEvent(new Event('change'))")
        assert js("return document.getElementById('logout').textContent") == "Log out", "the switch overrides the browser's language"
        browser.find_element(By.ID, "logout").click()
        wait("the sign-in form again", lambda: js("return !document.getElementById('login').hidden && document.getElementById('agent').hidden"))

        views(browser, call, customer, wait, arguments.screenshots)
        failover(browser, arguments.binary, wait)

        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        print(f"console first load: {transferred} bytes, interactive in {interactive_ms} ms (loopback)")
        print(f"customer message at the webhook -> painted in the console, {len(latencies)} messages: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms")
        assert transferred < 200 * 1024, f"first load under 200 KiB: {transferred} bytes"
        print(f"console browser test: sign-in, live assignment and WhatsApp messages, a reply at the provider shown sent then delivered, note, resolve, reopen, "
              f"transfer to a colleague, labels, keyboard focus and a phone's width, language, logout, supervisor and operations views, "
              f"the socket's node killed; passed in {time.time() - started:.1f} s")
    except Exception as error:
        livenode.fail("console browser test", error, browser, shots, log)
    finally:
        sim.kill()
        livenode.stop(node, data, browser)


def usable(browser, where, least):
    """Every visible control has a label or a name; Tab reaches at least `least` of them, each
    with a visible focus ring; the page is no wider than the window."""
    js = browser.execute_script
    unnamed = js("""return [...document.querySelectorAll('input, select, textarea, button, [role=button], [tabindex]')]
        .filter(e => e.getClientRects().length > 0)
        .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')
                       || (!['INPUT', 'SELECT', 'TEXTAREA'].includes(e.tagName) && e.textContent.trim())))
        .map(e => e.outerHTML.slice(0, 100))""")
    assert not unnamed, f"{where}: controls without a label: {unnamed}"
    js("document.querySelectorAll('[data-tabbed]').forEach(e => delete e.dataset.tabbed); document.activeElement && document.activeElement.blur()")
    reached, unringed, outside = [], [], 0
    for _ in range(80):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused = js("""const e = document.activeElement;
            if (!e || e === document.body) return 'outside';
            if (e.dataset.tabbed) return null;
            e.dataset.tabbed = '1';
            const s = getComputedStyle(e);
            return [e.id || e.name || e.dataset.conversationId || e.tagName, s.outlineStyle, s.outlineWidth]""")
        if focused == "outside":
            # Past the last control focus leaves the page, then comes back to the first.
            outside += 1
            if outside > 3:
                break
            continue
        if focused is None:
            break
        reached.append(focused[0])
        if focused[1] == "none" or focused[2] == "0px":
            unringed.append(focused)
    assert len(reached) >= least, f"{where}: Tab reaches {len(reached)} controls, expected at least {least}: {reached}"
    assert not unringed, f"{where}: focus not visible on {unringed}"
    width = js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"{where}: the page is {width[0]} px wide in a {width[1]} px window"


def sign_in(browser, email, password):
    browser.find_element(By.NAME, "email").send_keys(email)
    browser.find_element(By.NAME, "password").send_keys(password + Keys.ENTER)


def sign_in_with_token(browser, token):
    browser.execute_script("document.querySelector('#login details').open = true")
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.ID, "token-sign-in").click()


def log_out(browser):
    browser.find_element(By.ID, "logout").click()
    livenode.wait("the sign-in form", lambda: browser.execute_script("return !document.getElementById('login').hidden"))


def go_available(browser):
    browser.execute_script("const s = document.getElementById('presence'); s.value = 'available'; s.dispatchEvent(new Event('change'))")


def usable_at_both_widths(browser, where, least):
    """`usable` at 1280x800 and at a phone's 390x844 (the window is left at the phone's width)."""
    usable(browser, where, least)
    browser.set_window_size(390, 844)
    usable(browser, where + " at a phone's width", least)


def shoot(browser, folder, name):
    """README's picture of the current view, at 1024x640 (the window is put back at 1280x800)."""
    browser.set_window_size(1024, 640)
    browser.save_screenshot(str(pathlib.Path(folder) / name))
    browser.set_window_size(1280, 800)


def views(browser, call, customer, wait, screenshots):
    """The supervisor's view (a supervisor's session) and the operator's (the admin token)."""
    js = browser.execute_script
    queue = call("GET", "/v1/queues")["items"][0]
    call("POST", "/v1/agents", {"name": "Sofía Paz", "email": "sofia@tienda.example", "password": "sofia-password", "role": "supervisor"})
    call("POST", "/v1/rules", {"name": "envíos", "keywords": ["envío"], "action": "route", "queue": queue["id"], "order": 2})
    call("POST", "/v1/rules", {"name": "saludo", "keywords": ["horario"], "action": "reply", "reply": "Abrimos de 9 a 18.", "order": 1})
    customer("¿Cuánto tarda el envío?", "api-views-1")
    conversation = wait("the new conversation", lambda: next(
        (c for c in call("GET", "/v1/conversations?limit=100")["items"] if c["status"] in ("queued", "assigned")), None))
    agents = {a["name"]: a["id"] for a in call("GET", "/v1/agents?limit=10")["items"]}
    call("POST", f"/v1/conversations/{conversation['id']}/assign", {"agent": agents["Carlos Díaz"]})

    sign_in(browser, "sofia@tienda.example", "sofia-password")
    wait("the supervisor's tabs", lambda: js("return !document.getElementById('tabs').hidden && !document.getElementById('tab-supervisor').hidden"))
    assert js("return document.getElementById('tab-operations').hidden"), "a supervisor does not see the operations view"
    assert js("return [...document.querySelectorAll('#transfer option')].filter(o => o.value.startsWith('agent:')).length") == 2, \
        "a supervisor may transfer to either other agent"
    assert js("return document.getElementById('presence').value") == "offline", "a presence shown as it is"
    browser.find_element(By.ID, "tab-supervisor").click()
    wait("the queue's row", lambda: js(f"return document.querySelector('#queues tr[data-queue-id=\"{queue['id']}\"]') !== null"))
    rows = wait("both agents with their load", lambda: (lambda r: r if len(r) >= 3 else None)(
        js("return [...document.querySelectorAll('#agents tbody tr')].map(r => r.textContent)")))
    assert any("Carlos Díaz" in r and "1 / " in r for r in rows), f"presence and load per agent: {rows}"
    rules = js("return [...document.querySelectorAll('#rules li')].map(li => li.textContent)")
    assert len(rules) == 2 and rules[0].startswith("saludo") and rules[1].startswith("envíos"), f"the rules in their order: {rules}"
    usable_at_both_widths(browser, "the supervisor's view", 8)
    browser.set_window_size(1280, 800)
    target = "Ana Gómez"
    browser.find_element(By.NAME, "conversation").send_keys(conversation["id"])
    js(f"const s = document.querySelector('#reassign select'); s.value = '{agents[target]}'")
    browser.find_element(By.CSS_SELECTOR, "#reassign button[type=submit]").click()
    wait("the conversation reassigned", lambda: call("GET", f"/v1/conversations/{conversation['id']}")["assignee"] == agents[target])
    if screenshots:
        shoot(browser, screenshots, "console-supervisor.png")
    log_out(browser)

    sign_in_with_token(browser, "console-admin")
    wait("the operations view", lambda: js("return !document.getElementById('operations').hidden && document.querySelector('#members tbody tr[data-member-id=n1]') !== null"))
    member = js("return document.querySelector('#members tbody tr[data-member-id=n1]').textContent")
    assert "leader" in member, f"the member with its role: {member}"
    assert js("return document.getElementById('leader').textContent") == "n1"
    changes = js("return [...document.querySelectorAll('#changes li')].map(li => li.textContent)")
    assert any("n1" in change for change in changes), f"the node's own history names its leader: {changes}"
    assert js("return document.getElementById('balancer').hidden"), "no balancer page link when the node has none"
    usable_at_both_widths(browser, "the operations view", 3)
    browser.set_window_size(1280, 800)
    if screenshots:
        shoot(browser, screenshots, "console-operations.png")
    log_out(browser)
    print("views: the supervisor saw queues, agents' presence and load, the rules in order, and reassigned a conversation; the operator saw the member and its leader")


def failover(browser, binary, wait):
    """A three-node cluster and its balancer; the node under the console's socket is killed."""
    work = tempfile.mkdtemp(prefix="switchboard-console-cluster-")
    ports = [livenode.free_port() for _ in range(12)]
    lines = ['[cluster]', 'secret = "console-cluster-secret"', 'admin_token = "console-admin"', f'data = "{work}/data"', 'password_memory_kib = 64', '']
    for n in range(3):
        lines += ['[[node]]', f'id = "n{n + 1}"', f'api = "127.0.0.1:{ports[n * 3]}"', f'peer = "127.0.0.1:{ports[n * 3 + 1]}"',
                  f'gossip = "127.0.0.1:{ports[n * 3 + 2]}"', '']
    lines += ['[balancer]', f'listen = "127.0.0.1:{ports[9]}"', f'gossip = "127.0.0.1:{ports[10]}"', f'admin = "127.0.0.1:{ports[11]}"', '']
    cluster_file = os.path.join(work, "cluster.toml")
    pathlib.Path(cluster_file).write_text("\n".join(lines))
    base = f"http://127.0.0.1:{ports[9]}"
    nodes = {f"n{n + 1}": f"http://127.0.0.1:{ports[n * 3]}" for n in range(3)}
    js = browser.execute_script

    call = livenode.caller(base, "console-admin")

    try:
        subprocess.run([binary, "cluster", "up", cluster_file], check=True, capture_output=True, timeout=120)
        call("POST", "/v1/queues", {"name": "ventas"})
        call("POST", "/v1/agents", {"name": "Beto Ruiz", "email": "beto@tienda.example", "password": "beto-password"})
        created = call("POST", "/v1/inboxes", {"name": "Tienda API", "channel": "api"})

        def customer(text, external):
            # As a provider would: the same message again until it is taken (stored once by its id).
            for _ in range(100):
                try:
                    call("POST", f"/v1/inboxes/{created['id']}/webhook", {"from": "+5491166660000", "text": text, "externalId": external}, token=created["token"])
                    return
                except urllib.error.HTTPError as error:
                    if error.code < 500:
                        raise  # the request is wrong: another try will not take it
                    time.sleep(0.1)
                except (urllib.error.URLError, OSError):
                    time.sleep(0.1)
            raise AssertionError(f"{external} was never taken")

        browser.get(base + "/")
        wait("the sign-in form", lambda: js("return !document.getElementById('login').hidden"))
        sign_in(browser, "beto@tienda.example", "beto-password")
        wait("the agent's view", lambda: js("return document.getElementById('who').textContent === 'Beto Ruiz'"), 20)
        go_available(browser)
        js("window.states = []; new MutationObserver(() => window.states.push(document.getElementById('connection').textContent))"
           ".observe(document.getElementById('connection'), {childList: true, characterData: true, subtree: true})")

        def socket_holder():
            for node, url in nodes.items():
                try:
                    metrics = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
                except OSError:
                    continue
                found = re.search(r"^switchboard_websocket_sessions (\d+)", metrics, re.M)
                if found and int(found.group(1)) > 0:
                    return node
            return None

        # The agent is available (and gets the conversation) once its socket holds its presence.
        wait("the console's events socket on a node", socket_holder, 60)
        customer("antes 0", "before-0")
        item = wait("the conversation", lambda: js("return document.querySelector('#list li[data-conversation-id]')"), 20)
        item.click()
        for n in range(1, 5):
            customer(f"antes {n}", f"before-{n}")
        wait("the messages before", lambda: js("return document.querySelectorAll('#messages li.customer').length") == 5)

        holder = socket_holder()
        assert holder, "some node holds the console's socket"
        subprocess.run([binary, "cluster", "kill", holder, cluster_file], check=True, capture_output=True, timeout=30)
        for n in range(20):
            customer(f"después {n}", f"after-{n}")
        expected = [f"antes {n}" for n in range(5)] + [f"después {n}" for n in range(20)]
        wait("every message after the kill", lambda: js("return document.querySelectorAll('#messages li.customer').length") >= 25, 30)
        time.sleep(1)  # a duplicate would come now, if it came
        texts = js("return [...document.querySelectorAll('#messages li.customer')].map(li => li.childNodes[1].textContent)")
        assert texts == expected, f"every message exactly once, in order, after {holder} died: {texts}"
        states = js("return window.states")
        assert any(state in ("Reconectando…", "Reconnecting…") for state in states), f"the console said it was reconnecting: {states}"
        assert js("return document.getElementById('connection').textContent") == "", "and then that it was back"
        # A session the server ends (here the agent disabled by an admin) closes the socket with
        # 4401: the console returns to the form and says why.
        beto = next(a["id"] for a in call("GET", "/v1/agents?limit=10")["items"] if a["email"] == "beto@tienda.example")
        call("PATCH", f"/v1/agents/{beto}", {"disabled": True})
        reason = wait("the sign-in form with the reason", lambda: js(
            "return !document.getElementById('login').hidden && document.getElementById('login-reason').textContent"), 20)
        assert reason in ("La sesión se cerró: la cuenta fue deshabilitada", "The session was closed: the account was disabled"), f"the reason shown: {reason!r}"
        # The operations view while that node is still down.
        sign_in_with_token(browser, "console-admin")
        wait("every member listed with a leader, one of them down", lambda: js(
            "return document.querySelectorAll('#members tbody tr[data-member-id^=n]').length === 3 && document.getElementById('leader').textContent.startsWith('n')"), 20)
        members = js("return [...document.querySelectorAll('#members tbody tr')].map(r => r.textContent)")
        assert any(row.startswith(holder) for row in members), f"the dead member is still listed: {members}"
        wait("the dead member marked", lambda: js(f"return document.querySelector('#members tr[data-member-id=\"{holder}\"]').className === 'down'"), 20)
        rows = js("return Object.fromEntries([...document.querySelectorAll('#members tbody tr')].map(r => [r.dataset.memberId, [...r.cells].map(c => c.textContent)]))")
        for member in nodes:
            term, applied = rows[member][3], rows[member][5]
            if member == holder:
                assert term == "—", f"the dead member has no account of itself: {rows[member]}"
            else:
                assert term.isdigit() and applied.isdigit(), f"{member} reports its own term and applied index: {rows[member]}"
        wait("its death among the recent changes", lambda: js(
            f"return [...document.querySelectorAll('#changes li')].some(li => /{holder}: gossip .*→ (sospechoso|caído|suspect|dead)$/.test(li.textContent))"), 20)
        link = js("return document.getElementById('balancer-link').href")
        assert link == f"http://127.0.0.1:{ports[11]}/", f"the balancer's status page from the cluster file: {link}"
        browser.find_element(By.ID, "logout").click()
        print(f"failover: {holder} (holding the console's socket) killed with kill -9; 20 later messages shown exactly once after a reconnect through the balancer; the operations view listed the cluster with {holder} down; disabling the agent ended its console with {reason!r}")
    except Exception:
        for node in nodes:
            log = pathlib.Path(work, "data", node, "node.log")
            if log.exists():
                print(f"--- {node} node.log, last 3,000 bytes:\n{log.read_text()[-3000:]}")
        raise
    finally:
        subprocess.run([binary, "cluster", "down", cluster_file], capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
