#!/usr/bin/env python3
"""The web chat widget in a real browser: Debian's chromium, headless, driven by Selenium through
chromium-driver. A business's page on another origin embeds the widget with one <script> tag; a
visitor opens it and writes; the agent (through the API) sees the message and replies; the
visitor sees the agent typing, then the reply live with the agent's name, once; the open widget
reports the reply read, which the agent sees on the message; a reload restores the conversation.
Screenshots of failures go to .build/widget-test/.

  scripts/widget-browser-test.py [--binary .build/debug/switchboard]
"""
import argparse, http.server, pathlib, sys, tempfile, threading


root = pathlib.Path(__file__).resolve().parent.parent
shots = root / ".build/widget-test"
sys.path.insert(0, str(root / "scripts"))
import livenode  # noqa: E402
embed = __import__("embed-assets")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(root / ".build/debug/switchboard"))
    arguments = parser.parse_args()
    if embed.swift_source() != (root / "Sources/AgentAPI/WidgetScript.swift").read_text():
        sys.exit("Sources/AgentAPI/WidgetScript.swift is not Widget/widget.js: run scripts/embed-assets.py")
    site_port = livenode.free_port()
    node, base, data, log = livenode.start(arguments.binary, "widget-admin", "switchboard-widget-")

    call = livenode.caller(base, "widget-admin")

    browser = None
    try:
        call("POST", "/v1/queues", {"name": "web"})
        call("POST", "/v1/agents", {"name": "Ana Gómez", "email": "ana@tienda.example", "password": "ana-password"})
        agent = call("POST", "/v1/sessions", {"email": "ana@tienda.example", "password": "ana-password"}, token="")["token"]
        call("PUT", "/v1/agents/me/status", {"status": "available"}, token=agent)
        inbox = call("POST", "/v1/inboxes", {"name": "Sitio", "channel": "webchat", "webchat": {"title": "Tienda Sol"}})["id"]

        # The business's own site, on another origin, with the one <script> tag.
        site = tempfile.mkdtemp(prefix="switchboard-site-")
        pathlib.Path(site, "index.html").write_text(
            f'<!doctype html><html lang="es"><head><meta charset="utf-8"><title>Tienda Sol</title></head>'
            f'<body><h1>Tienda Sol</h1><script src="{base}/widget.js" data-inbox="{inbox}" data-lang="es" async></script></body></html>')
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=site, **k)
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", site_port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        browser = livenode.chromium()
        browser.get(f"http://127.0.0.1:{site_port}/index.html")

        def widget(js):
            return browser.execute_script(
                "const host = document.querySelector('[data-switchboard-widget]'); if (!host) return null; const root = host.shadowRoot;" + js)

        wait = livenode.wait

        wait("the widget's button", lambda: widget("return root.querySelector('.button') !== null"))
        label = widget("return root.querySelector('.button').getAttribute('aria-label')")
        assert label == "Abrir el chat", f"Spanish first: the button says {label!r}"
        widget("root.querySelector('.button').click()")
        assert widget("return root.querySelector('.panel').classList.contains('open')"), "the panel opens"
        assert widget("return root.activeElement && root.activeElement.tagName") == "TEXTAREA", "focus goes to the message box"
        widget("const t = root.querySelector('textarea'); t.value = 'Hola, ¿hacen envíos a Rosario?';"
               "t.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}))")
        wait("the visitor's message to be stored", lambda: widget("return [...root.querySelectorAll('.customer .state')].some(e => e.textContent === 'enviado')"))

        conversations = wait("the agent's conversation", lambda: call("GET", "/v1/conversations?status=assigned", token=agent)["items"])
        conversation = conversations[0]["id"]
        call("POST", f"/v1/conversations/{conversation}/messages", {"text": "nota: cliente de Rosario", "private": True}, token=agent)
        call("POST", f"/v1/conversations/{conversation}/typing", token=agent)
        wait("the agent typing in the widget", lambda: widget("return root.querySelector('.typing').textContent === 'Ana Gómez está escribiendo…'"))
        reply = call("POST", f"/v1/conversations/{conversation}/messages", {"text": "¡Hola! Sí, enviamos a Rosario en 48 h."}, token=agent)
        assert reply["delivery"]["status"] == "sent", f"a web chat reply starts as sent: {reply['delivery']}"
        wait("the agent's reply in the widget", lambda: widget("return [...root.querySelectorAll('.agent')].some(e => e.textContent.includes('48 h'))"))
        assert widget("return root.querySelector('.typing').textContent") == "", "the reply ends the typing notice"
        read = wait("the reply reported read by the open widget", lambda: next(
            (m for m in call("GET", f"/v1/conversations/{conversation}", token=agent)["messages"] if m["id"] == reply["id"] and m["delivery"]["status"] == "read"), None))
        assert read["delivery"]["possibleDuplicate"] is False
        agents = widget("return [...root.querySelectorAll('.agent')].map(e => e.textContent)")
        assert len(agents) == 1 and "Ana Gómez" in agents[0], f"the reply once, with the agent's name: {agents}"
        assert "nota" not in widget("return root.querySelector('.log').textContent"), "a private note never reaches the visitor"

        # A reload restores the conversation from the visitor's token: every message once.
        browser.refresh()
        wait("the widget after a reload", lambda: widget("return root.querySelector('.button') !== null"))
        widget("root.querySelector('.button').click()")
        texts = wait("the restored conversation", lambda: (lambda t: t if t and len(t) >= 2 else None)(
            widget("return [...root.querySelectorAll('.customer, .agent')].map(e => e.textContent)")))
        assert len(texts) == 2 and "Rosario?" in texts[0] and "48 h" in texts[1], f"restored once each: {texts}"
        print("widget browser test: the visitor wrote, saw the agent typing and the reply live with the agent's name, the reply came back read, a reload restored it; passed")
    except Exception as error:
        livenode.fail("widget browser test", error, browser, shots, log)
    finally:
        livenode.stop(node, data, browser)


if __name__ == "__main__":
    main()
