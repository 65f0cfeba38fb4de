// Switchboard web chat: <script src="https://<cluster>/widget.js" data-inbox="ib_..." async></script>
// One file, no external assets. The visitor's token stays in this browser (localStorage, per
// inbox); messages go out over HTTP with an id of their own (a retry is stored once) and come in
// over a WebSocket; after any disconnect the widget reads the conversation again and merges by id,
// so nothing is missed or shown twice. The agent's typing shows for a few seconds; each reply is
// reported back once as delivered (on screen with the chat closed) and once as read (the chat
// open and the page visible).
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.inbox) { console.error("switchboard widget: data-inbox is required"); return; }
  var inbox = script.dataset.inbox;
  var base = new URL(script.src, location.href).origin;
  var api = base + "/v1/webchat/" + encodeURIComponent(inbox);
  var lang = (script.dataset.lang || navigator.language || "es").slice(0, 2) === "en" ? "en" : "es";
  var text = {
    es: { open: "Abrir el chat", close: "Cerrar el chat", placeholder: "Escribe un mensaje…", send: "Enviar", you: "Tú",
          agent: "Agente", bot: "Asistente", sending: "enviando…", sent: "enviado", failed: "no se envió, reintentando",
          reconnecting: "reconectando…", hello: "¡Hola! ¿En qué podemos ayudarte?", typing: "está escribiendo…" },
    en: { open: "Open chat", close: "Close chat", placeholder: "Write a message…", send: "Send", you: "You",
          agent: "Agent", bot: "Assistant", sending: "sending…", sent: "sent", failed: "not sent, retrying",
          reconnecting: "reconnecting…", hello: "Hi! How can we help?", typing: "is typing…" }
  }[lang];
  var key = "switchboard-webchat:" + inbox;
  var state = JSON.parse(localStorage.getItem(key) || "{}");
  var shown = {};          // message id -> element
  var pending = {};        // the widget's id -> {text, element}
  var replies = {};        // a reply's id -> the receipt it has had: "sent" (none), "delivered" or "read"
  var socket = null, conversation = null, retry = 500, opened = false, typingTimer = null;

  var host = document.createElement("div");
  host.setAttribute("data-switchboard-widget", inbox);
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  root.innerHTML =
    "<style>" +
    ":host{all:initial}*{box-sizing:border-box;font:14px/1.4 system-ui,sans-serif}" +
    ".button{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;background:#0b6e4f;color:#fff;font-size:26px;cursor:pointer;box-shadow:0 2px 8px #0004;z-index:2147483646}" +
    ".button:focus-visible,.send:focus-visible,textarea:focus-visible{outline:3px solid #f5a623;outline-offset:2px}" +
    ".panel{position:fixed;right:20px;bottom:88px;width:340px;max-width:calc(100vw - 40px);height:460px;max-height:calc(100vh - 120px);display:none;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 4px 24px #0005;overflow:hidden;z-index:2147483647}" +
    ".panel.open{display:flex}.head{background:#0b6e4f;color:#fff;padding:12px 16px;font-weight:600;display:flex;justify-content:space-between}" +
    ".status{font-weight:400;font-size:12px;opacity:.9}.log{flex:1;overflow-y:auto;padding:12px;background:#f4f6f5}" +
    ".msg{max-width:80%;margin:6px 0;padding:8px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}" +
    ".customer{margin-left:auto;background:#d7f2e3}.agent,.bot,.system{background:#fff;border:1px solid #dde}" +
    ".who{display:block;font-size:11px;color:#557;margin-bottom:2px}.state{display:block;font-size:11px;color:#668;text-align:right}" +
    "form{display:flex;gap:8px;padding:8px;border-top:1px solid #dde}textarea{flex:1;resize:none;height:40px;padding:8px;border:1px solid #bbc;border-radius:8px}" +
    ".send{border:0;border-radius:8px;background:#0b6e4f;color:#fff;padding:0 14px;cursor:pointer}" +
    ".typing{min-height:18px;padding:0 12px;font-size:12px;color:#557;background:#f4f6f5}" +
    "</style>" +
    "<button class='button' type='button' aria-expanded='false'>💬</button>" +
    "<section class='panel' role='dialog'><div class='head'><span class='title'></span><span class='status' aria-live='polite'></span></div>" +
    "<div class='log' role='log' aria-live='polite'></div><div class='typing' aria-live='polite'></div>" +
    "<form><label style='position:absolute;left:-9999px' for='sb-text'></label><textarea id='sb-text' name='message'></textarea>" +
    "<button class='send' type='submit'></button></form></section>";
  var button = root.querySelector(".button"), panel = root.querySelector(".panel"), log = root.querySelector(".log");
  var form = root.querySelector("form"), input = root.querySelector("textarea"), status = root.querySelector(".status");
  var typing = root.querySelector(".typing");
  button.setAttribute("aria-label", text.open);
  input.placeholder = text.placeholder;
  root.querySelector("label").textContent = text.placeholder;
  root.querySelector(".send").textContent = text.send;
  root.querySelector(".title").textContent = script.dataset.title || "Chat";
  (document.body || document.documentElement).appendChild(host);

  function save() { localStorage.setItem(key, JSON.stringify(state)); }
  function newId() {
    return (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));
  }
  function call(method, path, body) {
    return fetch(api + path, {
      method: method, headers: { "Authorization": "Bearer " + state.token, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined
    }).then(function (answer) {
      if (!answer.ok) throw new Error(method + " " + path + ": " + answer.status);
      return answer.json();
    });
  }
  function visitor() {
    if (state.token) return Promise.resolve();
    return fetch(api + "/visitors", { method: "POST" }).then(function (answer) { return answer.json(); })
      .then(function (answer) { state.token = answer.token; save(); });
  }
  function bubble(author, who, body, note) {
    var element = document.createElement("div");
    element.className = "msg " + author;
    element.setAttribute("data-author", author);
    if (who) { var name = document.createElement("span"); name.className = "who"; name.textContent = who; element.appendChild(name); }
    element.appendChild(document.createTextNode(body));
    var mark = document.createElement("span"); mark.className = "state"; mark.textContent = note || ""; element.appendChild(mark);
    log.appendChild(element);
    log.scrollTop = log.scrollHeight;
    return element;
  }
  function show(message) {
    if (shown[message.id]) return;
    var mine = message.author === "customer";
    // A message this widget sent is already on screen as pending: it becomes the stored one.
    for (var id in pending) {
      if (mine && pending[id].text === message.text) {
        shown[message.id] = pending[id].element;
        pending[id].element.querySelector(".state").textContent = text.sent;
        delete pending[id];
        return;
      }
    }
    var who = mine ? text.you : message.author === "agent" ? (message.agentName || text.agent) : text.bot;
    shown[message.id] = bubble(message.author, who, message.text, mine ? text.sent : "");
    shown[message.id].setAttribute("data-message-id", message.id);
    if (!mine) {
      if (message.author === "agent") showTyping(null);
      replies[message.id] = message.status || "sent";
      acknowledge();
    }
  }
  function showTyping(name) {
    clearTimeout(typingTimer);
    typing.textContent = name ? name + " " + text.typing : "";
    if (name) typingTimer = setTimeout(function () { typing.textContent = ""; }, 6000);
  }
  // Each reply on screen is reported delivered once, and read once the chat is open and visible.
  function acknowledge() {
    var seen = opened && document.visibilityState === "visible";
    for (var id in replies) {
      var want = seen ? "read" : "delivered";
      if (replies[id] === "read" || replies[id] === want) continue;
      replies[id] = want;
      call("POST", "/receipts", { messageId: id, status: want }).catch(function () {});
    }
  }
  document.addEventListener("visibilitychange", acknowledge);
  function load() {
    return call("GET", "/conversation").then(function (answer) {
      root.querySelector(".title").textContent = answer.title || "Chat";
      (answer.messages || []).forEach(show);
      if (answer.conversation && answer.conversation.id !== conversation) { conversation = answer.conversation.id; listen(); }
    });
  }
  function listen() {
    if (socket) { socket.onclose = null; socket.close(); }
    if (!conversation) return;
    var url = api.replace(/^http/, "ws") + "/events?token=" + encodeURIComponent(state.token) + "&conversation=" + encodeURIComponent(conversation);
    socket = new WebSocket(url);
    socket.onopen = function () {
      retry = 500;
      status.textContent = "";
      load().catch(function () {});   // what came while the socket was away
    };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.type === "message") show(frame.message);
      else if (frame.type === "typing") showTyping(frame.agentName || text.agent);
    };
    socket.onclose = function () {
      status.textContent = text.reconnecting;
      setTimeout(function () { load().then(listen, listen); }, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  function send(body, id, element) {
    call("POST", "/messages", { text: body, id: id }).then(function (answer) {
      if (answer.conversationId !== conversation) { conversation = answer.conversationId; listen(); }
    }, function () {
      element.querySelector(".state").textContent = text.failed;
      setTimeout(function () { send(body, id, element); }, 2000);
    });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = input.value.trim();
    if (!body) return;
    input.value = "";
    var id = newId();
    var element = bubble("customer", text.you, body, text.sending);
    pending[id] = { text: body, element: element };
    visitor().then(function () { send(body, id, element); });
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit")); }
  });
  button.addEventListener("click", function () {
    opened = !opened;
    panel.classList.toggle("open", opened);
    button.setAttribute("aria-expanded", String(opened));
    button.setAttribute("aria-label", opened ? text.close : text.open);
    if (opened) {
      input.focus();
      if (!log.childNodes.length) bubble("bot", text.bot, text.hello);
      if (state.token) load().catch(function () {});
      acknowledge();
    }
  });
})();
