// Switchboard's agent console: plain JavaScript, no build step, no external assets (served by every
// node at /). One events WebSocket holds the last cursor; when its node dies the console reconnects
// through the balancer with ?since=<cursor> and the node replays what it missed, so every message
// shows once. Spanish first; the browser's language picks, the switch overrides.
const T = {
  es: {
    language: "Idioma", presence: "Estado", available: "Disponible", away: "Ausente", logout: "Salir", signIn: "Entrar",
    email: "Correo", password: "Contraseña", inbox: "Mis conversaciones", empty: "Nada asignado por ahora.", reply: "Respuesta",
    replyHint: "Escribe una respuesta (Enter envía, Mayús+Enter salta de línea)", note: "Nota privada", send: "Enviar",
    resolve: "Resolver", reopen: "Reabrir", transfer: "Transferir a", choose: "elegir…", queue: "Cola", waiting: "espera",
    newAssignment: "Nueva conversación asignada", reconnecting: "Reconectando…", expired: "La sesión terminó; vuelve a entrar.",
    sessionEnded: "La sesión se cerró",
    kinds: { image: "Imagen", audio: "Audio", voice: "Nota de voz", video: "Video", document: "Documento", sticker: "Sticker", location: "Ubicación",
      reply: "Respuesta", unsupported: "Tipo no admitido", file: "Archivo" }, map: "ver en el mapa",
    endedBecause: { logout: "se cerró en otro lugar", evicted: "se abrieron demasiadas sesiones", expired: "venció", password_changed: "cambió la contraseña",
      disabled: "la cuenta fue deshabilitada", role_changed: "cambió el rol" }, you: "Tú", customer: "Cliente", bot: "Asistente", noteLabel: "nota",
    delivery: { queued: "en cola", sent: "enviado", delivered: "entregado", read: "leído", failed: "falló" },
    status: { bot: "asistente", queued: "en cola", assigned: "asignada", resolved: "resuelta" }, minutes: "min", failed: "No se pudo",
    transferred: "Conversación transferida", agentView: "Agente", supervisorView: "Supervisión", operationsView: "Operaciones", withToken: "Entrar con el token de administración",
    adminToken: "Token de administración", queues: "Colas", waitingCount: "En espera", longestWait: "Espera más larga",
    agentsAvailable: "Agentes disponibles", assigned: "Asignadas", agents: "Agentes", name: "Nombre", load: "Carga",
    reassign: "Reasignar", conversationId: "Conversación (id)", toAgent: "A", rules: "Reglas por palabra clave (en orden)",
    leader: "Líder", term: "término", commit: "commit", balancerPage: "Estado del balanceador", role: "Rol", voter: "Votante",
    applied: "Aplicado", match: "Replicado", lag: "Retraso", lastContact: "Último contacto", gossip: "Gossip", changes: "Cambios recientes", seenBy: "vistos por", termColumn: "Término", commitColumn: "Commit", leads: "es líder",
    states: { none: "fuera", learner: "aprendiz", voter: "votante", alive: "vivo", suspect: "sospechoso", dead: "caído", left: "salió" },
    unreachable: "Sin respuesta del clúster; reintentando", reassigned: "Conversación reasignada", none: "ninguno", offline: "desconectado",
  },
  en: {
    language: "Language", presence: "Status", available: "Available", away: "Away", logout: "Log out", signIn: "Sign in",
    email: "Email", password: "Password", inbox: "My conversations", empty: "Nothing assigned yet.", reply: "Reply",
    replyHint: "Write a reply (Enter sends, Shift+Enter breaks the line)", note: "Private note", send: "Send",
    resolve: "Resolve", reopen: "Reopen", transfer: "Transfer to", choose: "choose…", queue: "Queue", waiting: "waiting",
    newAssignment: "New conversation assigned", reconnecting: "Reconnecting…", expired: "The session ended; sign in again.",
    sessionEnded: "The session was closed",
    kinds: { image: "Image", audio: "Audio", voice: "Voice note", video: "Video", document: "Document", sticker: "Sticker", location: "Location",
      reply: "Reply", unsupported: "Unsupported type", file: "File" }, map: "see on the map",
    endedBecause: { logout: "signed out elsewhere", evicted: "too many sessions were opened", expired: "it expired", password_changed: "the password changed",
      disabled: "the account was disabled", role_changed: "the role changed" }, you: "You", customer: "Customer", bot: "Assistant", noteLabel: "note",
    delivery: { queued: "queued", sent: "sent", delivered: "delivered", read: "read", failed: "failed" },
    status: { bot: "bot", queued: "queued", assigned: "assigned", resolved: "resolved" }, minutes: "min", failed: "Could not",
    transferred: "Conversation transferred", agentView: "Agent", supervisorView: "Supervisor", operationsView: "Operations", withToken: "Sign in with the admin token",
    adminToken: "Admin token", queues: "Queues", waitingCount: "Waiting", longestWait: "Longest wait",
    agentsAvailable: "Agents available", assigned: "Assigned", agents: "Agents", name: "Name", load: "Load",
    reassign: "Reassign", conversationId: "Conversation (id)", toAgent: "To", rules: "Keyword rules (in order)",
    leader: "Leader", term: "term", commit: "commit", balancerPage: "Balancer status", role: "Role", voter: "Voter",
    applied: "Applied", match: "Replicated", lag: "Lag", lastContact: "Last contact", gossip: "Gossip", changes: "Recent changes", seenBy: "seen by", termColumn: "Term", commitColumn: "Commit", leads: "leads",
    states: { none: "out", learner: "learner", voter: "voter", alive: "alive", suspect: "suspect", dead: "dead", left: "left" },
    unreachable: "The cluster does not answer; retrying", reassigned: "Conversation reassigned", none: "none", offline: "offline",
  },
};
const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("switchboard-lang") || ((navigator.language || "es").toLowerCase().startsWith("en") ? "en" : "es");
const state = {
  token: sessionStorage.getItem("switchboard-token"), me: null, socket: null, cursor: null, retry: 500,
  conversations: new Map(), // id -> {conversation, contact, messages: Map, older, unread, activity}
  open: null, fresh: 0, typingAt: 0, admin: sessionStorage.getItem("switchboard-admin") === "1", timer: null,
};
const t = (key) => T[lang][key] ?? key;

function translate() {
  document.documentElement.lang = lang;
  for (const element of document.querySelectorAll("[data-t]")) element.textContent = t(element.dataset.t);
  $("language").value = lang;
  $("reply").placeholder = t("replyHint");
  renderList();
  renderConversation();
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  // A key per call: the balancer may then repeat the POST on another node if this one dies.
  if (method === "POST") headers["Idempotency-Key"] = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
  const answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await answer.text();
  const json = text ? JSON.parse(text) : {};
  if (answer.status === 401 && state.me) signOut(t("expired"));
  if (!answer.ok) throw new Error((json.error && json.error.message) || "HTTP " + answer.status);
  return json;
}

function notice(text) {
  $("notice").textContent = text;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { $("notice").textContent = ""; }, 6000);
}

function updateTitle() {
  let unread = state.fresh;
  for (const entry of state.conversations.values()) unread += entry.unread;
  document.title = (unread > 0 ? "(" + unread + ") " : "") + "Switchboard";
}

// MARK: session

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const session = await api("POST", "/v1/sessions", { email: form.get("email"), password: form.get("password") });
    state.token = session.token;
    sessionStorage.setItem("switchboard-token", state.token);
    event.target.reset();
    await start();
  } catch (error) {
    $("login-reason").textContent = error.message;
  }
});

$("token-sign-in").addEventListener("click", async () => {
  const input = $("login").querySelector("input[name=token]");
  state.token = input.value.trim();
  state.admin = true;
  try {
    await api("GET", "/v1/cluster");
    sessionStorage.setItem("switchboard-token", state.token);
    sessionStorage.setItem("switchboard-admin", "1");
    input.value = "";
    await start();
  } catch (error) {
    Object.assign(state, { token: null, admin: false });
    $("login-reason").textContent = error.message;
  }
});

/** Which views the signed-in principal may see: the agent's own, a supervisor's, the operator's. */
function allowed() {
  const role = state.admin ? "admin" : state.me && state.me.role;
  return { agent: !!state.me, supervisor: role === "admin" || role === "supervisor", operations: role === "admin" };
}

function showView(view) {
  for (const name of ["agent", "supervisor", "operations"]) {
    $(name).hidden = name !== view;
    $("tab-" + name).setAttribute("aria-pressed", String(name === view));
  }
  stopRefresh();
  const refresh = view === "supervisor" ? refreshSupervisor : view === "operations" ? refreshOperations : null;
  if (!refresh) return;
  // The next round starts a pause after this one ends: a slow answer (a member down makes
  // `members=ask` wait) never stacks rounds.
  const round = (state.round = {});
  const tick = async () => {
    await refresh().catch(() => {});
    if (state.round === round) state.timer = setTimeout(tick, view === "operations" ? 1000 : 2000);
  };
  tick();
}

function stopRefresh() {
  state.round = null;
  clearTimeout(state.timer);
}
for (const tab of document.querySelectorAll("#tabs button")) tab.addEventListener("click", () => showView(tab.dataset.view));

async function start() {
  $("login").hidden = true;
  $("login-reason").textContent = "";
  if (!state.admin) state.me = await api("GET", "/v1/agents/me");
  for (const id of state.me ? ["who", "presence-label", "logout", "tabs"] : ["logout", "tabs"]) $(id).hidden = false;
  for (const [name, visible] of Object.entries(allowed())) $("tab-" + name).hidden = !visible;
  // The admin token is no agent: it has the operator's view only.
  if (!state.me) return showView("operations");
  showView("agent");
  $("who").textContent = state.me.name;
  $("presence").value = state.me.status;
  const queues = await api("GET", "/v1/queues").catch(() => ({ items: [] }));
  const transfer = $("transfer");
  transfer.replaceChildren(new Option(t("choose"), ""));
  for (const queue of queues.items || []) transfer.add(new Option(t("queue") + ": " + queue.name, "queue:" + queue.id));
  const agents = await api("GET", "/v1/agents?limit=500").catch(() => ({ items: [] }));
  for (const agent of agents.items || []) {
    if (agent.id !== state.me.id && !agent.disabled) transfer.add(new Option(t("agentView") + ": " + agent.name, "agent:" + agent.id));
  }
  // The socket first: an assignment made while the list is read still arrives as an event.
  connect();
  await loadAssigned();
}

/** Reads every conversation assigned to the agent, whole, and forgets the others (but the
 *  open one): after a `reset` the list is what the node says, not what piled up. */
async function loadAssigned() {
  const page = await api("GET", "/v1/conversations?assignee=me&status=assigned&limit=100");
  const assigned = new Set(page.items.map((conversation) => conversation.id));
  for (const id of state.conversations.keys()) if (!assigned.has(id) && id !== state.open) state.conversations.delete(id);
  await Promise.all(page.items.map((conversation) => track(conversation)));
  renderList();
}

function signOut(reason) {
  const socket = state.socket;
  state.socket = null;
  if (socket) socket.close(1000, "signed out");
  clearTimeout(state.reconnect);
  sessionStorage.removeItem("switchboard-token");
  sessionStorage.removeItem("switchboard-admin");
  stopRefresh();
  $("notice").textContent = "";
  $("reply").value = "";
  Object.assign(state, { token: null, me: null, cursor: null, open: null, fresh: 0, admin: false });
  state.conversations.clear();
  renderList();
  $("login").hidden = false;
  for (const id of ["agent", "supervisor", "operations", "tabs", "who", "presence-label", "logout"]) $(id).hidden = true;
  $("conversation").hidden = true;
  $("connection").textContent = "";
  $("login-reason").textContent = reason || "";
  updateTitle();
  $("login").querySelector("input[name=email]").focus();
}

$("logout").addEventListener("click", async () => {
  if (!state.admin) await api("DELETE", "/v1/sessions/current").catch(() => {});
  signOut("");
});
$("presence").addEventListener("change", (event) => {
  api("PUT", "/v1/agents/me/status", { status: event.target.value }).catch((error) => notice(t("failed") + ": " + error.message));
});
$("language").addEventListener("change", (event) => {
  lang = event.target.value;
  localStorage.setItem("switchboard-lang", lang);
  translate();
});

// MARK: conversations

/** Reads a conversation with its contact and newest messages, and keeps it. */
async function track(conversation) {
  const detail = await api("GET", "/v1/conversations/" + encodeURIComponent(conversation.id));
  const entry = state.conversations.get(detail.id) || { messages: new Map(), unread: 0 };
  entry.conversation = detail;
  entry.contact = typeof detail.contact === "object" ? detail.contact : null;
  entry.older = detail.olderMessages;
  entry.activity = entry.activity || detail.createdAt || "";
  for (const message of detail.messages || []) keep(entry, message);
  state.conversations.set(detail.id, entry);
  return entry;
}

const deliveryRank = { queued: 0, sent: 1, delivered: 2, read: 3, failed: 4 };

/** Stores `message` unless a copy further along is known: a reply's answer, or a page read
 *  before an event, can arrive after the event that moved its delivery (delivery only moves
 *  forward, failed is final). */
function keep(entry, message) {
  const rank = (m) => (m && m.delivery ? deliveryRank[m.delivery.status] ?? 0 : -1);
  const known = entry.messages.get(message.id);
  if (known && rank(known) > rank(message)) return;
  entry.messages.set(message.id, message);
  if (!(entry.activity >= message.createdAt)) entry.activity = message.createdAt;
}

/** Minutes since the customer's last message that no reply followed, or null. */
function waitingMinutes(entry) {
  const ordered = [...entry.messages.values()].filter((m) => !m.private).sort(byTime);
  const last = ordered[ordered.length - 1];
  if (!last || last.author !== "customer") return null;
  return Math.max(0, Math.floor((Date.now() - Date.parse(last.createdAt)) / 60000));
}

const byTime = (a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1);

function renderList() {
  const list = $("list");
  if (!state.me) return list.replaceChildren();
  const entries = [...state.conversations.values()].sort((a, b) => (a.activity < b.activity ? 1 : -1));
  list.replaceChildren(...entries.map((entry) => {
    const item = document.createElement("li");
    item.dataset.conversationId = entry.conversation.id;
    item.tabIndex = 0;
    item.setAttribute("role", "button");
    if (entry.conversation.id === state.open) item.setAttribute("aria-current", "true");
    const name = document.createElement("strong");
    name.textContent = entry.contact ? entry.contact.name : entry.conversation.id;
    const badge = document.createElement("span");
    badge.className = "badge unread";
    badge.textContent = entry.unread;
    badge.hidden = entry.unread === 0;
    const meta = document.createElement("span");
    meta.className = "meta";
    const waiting = waitingMinutes(entry);
    meta.textContent = entry.conversation.channel + " · " + (T[lang].status[entry.conversation.status] || entry.conversation.status) +
      (waiting === null ? "" : " · " + t("waiting") + " " + waiting + " " + t("minutes"));
    item.append(name, badge, meta);
    item.addEventListener("click", () => openConversation(entry.conversation.id));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); openConversation(entry.conversation.id); } });
    return item;
  }));
  $("empty").hidden = entries.length > 0;
  updateTitle();
}

function openConversation(id) {
  state.open = id;
  const entry = state.conversations.get(id);
  if (entry) entry.unread = 0;
  state.fresh = 0;
  $("conversation").hidden = false;
  renderList();
  renderConversation(true);
  $("reply").focus();
}

function renderConversation(scrollToEnd) {
  const entry = state.open && state.conversations.get(state.open);
  if (!entry) return;
  const contact = entry.contact;
  $("contact-name").textContent = contact ? contact.name : entry.conversation.id;
  const attributes = $("contact-attributes");
  attributes.replaceChildren();
  for (const [key, value] of Object.entries(Object.assign({}, contact && contact.identifiers, contact && contact.attributes))) {
    const term = document.createElement("dt");
    term.textContent = key;
    const detail = document.createElement("dd");
    detail.textContent = value;
    attributes.append(term, detail);
  }
  $("conversation-status").textContent = T[lang].status[entry.conversation.status] || entry.conversation.status;
  $("resolve").hidden = entry.conversation.status === "resolved";
  $("reopen").hidden = entry.conversation.status !== "resolved";
  const list = $("messages");
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...[...entry.messages.values()].sort(byTime).map(renderMessage));
  if (scrollToEnd || atEnd) list.scrollTop = list.scrollHeight;
}

/** One attachment by its kind (the caption or place name is the message's text already). */
function renderAttachment(attachment) {
  const line = document.createElement("span");
  line.className = "attachment";
  const kind = attachment.kind || "file";
  line.dataset.kind = kind;
  const name = T[lang].kinds[kind] || kind;
  if (kind === "location") {
    line.textContent = "📍 " + name + " " + attachment.latitude + ", " + attachment.longitude + " · ";
    const map = document.createElement("a");
    map.href = "https://www.openstreetmap.org/?mlat=" + encodeURIComponent(attachment.latitude) + "&mlon=" + encodeURIComponent(attachment.longitude);
    map.target = "_blank";
    map.rel = "noopener noreferrer";
    map.textContent = t("map");
    line.append(map);
  } else if (kind === "reply") {
    line.textContent = "↩ " + name + ": " + (attachment.title || "");
  } else if (kind === "unsupported") {
    line.textContent = "⚠ " + name + (attachment.type ? ": " + attachment.type : "");
  } else {
    const icon = { image: "🖼", video: "🎞", audio: "🔊", voice: "🎤", sticker: "🏷" }[kind] || "📎";
    line.textContent = icon + " " + name + (attachment.filename ? ": " + attachment.filename : "") + (attachment.mimeType ? " (" + attachment.mimeType + ")" : "");
  }
  return line;
}

function renderMessage(message) {
  const item = document.createElement("li");
  item.dataset.messageId = message.id;
  item.className = message.author + (message.private ? " private" : "");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = message.private ? t("noteLabel") : message.author === "customer" ? t("customer") : message.author === "bot" ? t("bot") : t("you");
  item.append(who, document.createTextNode(message.text));
  for (const attachment of message.attachments || []) item.append(renderAttachment(attachment));
  if (message.delivery) {
    const delivery = document.createElement("span");
    delivery.className = "state";
    delivery.dataset.delivery = message.delivery.status;
    delivery.textContent = (T[lang].delivery[message.delivery.status] || message.delivery.status) + (message.delivery.reason && message.delivery.status === "failed" ? ": " + message.delivery.reason : "");
    item.append(delivery);
  }
  return item;
}

$("messages").addEventListener("scroll", async () => {
  const entry = state.open && state.conversations.get(state.open);
  if (!entry || !entry.older || $("messages").scrollTop > 0 || entry.loading) return;
  entry.loading = true;
  try {
    const page = await api("GET", "/v1/conversations/" + encodeURIComponent(entry.conversation.id) + "/messages?limit=50&before=" + encodeURIComponent(entry.older));
    for (const message of page.items) keep(entry, message);
    entry.older = page.nextCursor;
    const list = $("messages"), before = list.scrollHeight;
    renderConversation();
    list.scrollTop = list.scrollHeight - before;
  } finally {
    entry.loading = false;
  }
});

// MARK: composer

$("reply").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("reply").addEventListener("input", () => {
  // The assignee's visitor sees "typing"; the node coalesces, this only avoids a call per key.
  if (!state.open || $("private").checked || Date.now() - state.typingAt < 2000) return;
  state.typingAt = Date.now();
  api("POST", "/v1/conversations/" + encodeURIComponent(state.open) + "/typing").catch(() => {});
});
$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("reply").value.trim();
  const entry = state.open && state.conversations.get(state.open);
  if (!text || !entry) return;
  try {
    const message = await api("POST", "/v1/conversations/" + encodeURIComponent(entry.conversation.id) + "/messages", { text, private: $("private").checked });
    $("reply").value = "";
    $("private").checked = false;
    keep(entry, message);
    renderConversation(true);
    renderList();
  } catch (error) {
    notice(t("failed") + ": " + error.message);
  }
});
for (const action of ["resolve", "reopen"]) {
  $(action).addEventListener("click", async () => {
    const entry = state.open && state.conversations.get(state.open);
    if (!entry) return;
    try {
      const conversation = await api("POST", "/v1/conversations/" + encodeURIComponent(entry.conversation.id) + "/" + action);
      updateConversation(conversation);
    } catch (error) {
      notice(t("failed") + ": " + error.message);
    }
  });
}
$("transfer").addEventListener("change", async (event) => {
  const [kind, id] = event.target.value.split(":");
  event.target.value = "";
  if (!id || !state.open) return;
  try {
    const conversation = await api("POST", "/v1/conversations/" + encodeURIComponent(state.open) + "/transfer", kind === "queue" ? { queue: id } : { agent: id });
    if (conversation.assignee !== state.me.id) {
      // Handed on: it leaves this agent's list and screen.
      state.conversations.delete(conversation.id);
      state.open = null;
      $("conversation").hidden = true;
      renderList();
      return notice(t("transferred"));
    }
    updateConversation(conversation);
  } catch (error) {
    notice(t("failed") + ": " + error.message);
  }
});

// MARK: events

function connect() {
  clearTimeout(state.reconnect);
  if (!state.token) return;
  const url = location.origin.replace(/^http/, "ws") + "/v1/events?token=" + encodeURIComponent(state.token) + (state.cursor ? "&since=" + encodeURIComponent(state.cursor) : "");
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onopen = () => {
    state.retry = 500;
    $("connection").textContent = "";
  };
  socket.onmessage = (event) => {
    if (state.socket !== socket) return;
    const frame = JSON.parse(event.data);
    if (frame.cursor) state.cursor = frame.cursor;
    handle(frame).catch(() => {});
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (event.code === 4401) return signOut(endedMessage(event.reason));
    $("connection").textContent = t("reconnecting");
    state.reconnect = setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 5000);
  };
}

/** Why the server ended the session (`session.ended`'s reason, or the 4401 close's), in words. */
function endedMessage(reason) {
  return t("sessionEnded") + (reason ? ": " + (T[lang].endedBecause[reason] || reason) : "");
}

function updateConversation(conversation) {
  const entry = state.conversations.get(conversation.id);
  if (!entry) return;
  if (conversation.assignee !== state.me.id && conversation.id !== state.open) {
    state.conversations.delete(conversation.id);
  } else {
    entry.conversation = Object.assign({}, entry.conversation, conversation, { contact: entry.conversation.contact });
  }
  renderList();
  renderConversation();
}

async function handle(frame) {
  const data = frame.data || {};
  switch (frame.type) {
  case "conversation.assigned": {
    if (data.agent !== state.me.id) return updateConversation(data.conversation);
    const known = state.conversations.has(data.conversation.id);
    await track(data.conversation);
    if (!known) {
      state.fresh += 1;
      notice(t("newAssignment"));
    }
    renderList();
    renderConversation();
    return;
  }
  case "conversation.updated":
    return updateConversation(data.conversation);
  case "message.created":
  case "message.updated": {
    const message = data.message;
    const entry = message && state.conversations.get(message.conversationId);
    if (!entry) return;
    const isNew = !entry.messages.has(message.id);
    keep(entry, message);
    if (isNew && message.author === "customer" && (message.conversationId !== state.open || document.hidden)) entry.unread += 1;
    renderList();
    if (message.conversationId === state.open) renderConversation();
    return;
  }
  case "session.ended":
    if (data.agent === state.me.id) signOut(endedMessage(data.reason));
    return;
  case "reset": {
    // Events were skipped (the cursor fell out of the node's history): read everything again.
    await loadAssigned();
    renderConversation();
  }
  }
}

// MARK: supervisor

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
  return td;
}

function ago(timestamp) {
  if (!timestamp) return "—";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(timestamp)) / 1000));
  return seconds < 120 ? seconds + " s" : Math.round(seconds / 60) + " " + t("minutes");
}

async function refreshSupervisor() {
  try {
    const [queues, agents, rules] = await Promise.all([
      api("GET", "/v1/queues"), api("GET", "/v1/agents?limit=500"), api("GET", "/v1/rules"),
    ]);
    const counts = await Promise.all((queues.items || []).slice(0, 50).map((queue) =>
      api("GET", "/v1/conversations?status=assigned&limit=500&queue=" + encodeURIComponent(queue.id)).then((page) => page.items.length, () => null)));
    const available = (agents.items || []).filter((agent) => agent.status === "available" && !agent.disabled).length;
    $("queues").tBodies[0].replaceChildren(...(queues.items || []).map((queue, index) => {
      const row = document.createElement("tr");
      row.dataset.queueId = queue.id;
      cell(row, queue.name);
      cell(row, String(queue.waiting ?? 0)).dataset.waiting = queue.waiting ?? 0;
      cell(row, ago(queue.oldestWaitingSince));
      cell(row, String(available));
      cell(row, counts[index] === null || counts[index] === undefined ? "—" : String(counts[index]));
      return row;
    }));
    $("agents").tBodies[0].replaceChildren(...(agents.items || []).map((agent) => {
      const row = document.createElement("tr");
      row.dataset.agentId = agent.id;
      cell(row, agent.name);
      cell(row, T[lang][agent.status] || agent.status);
      cell(row, agent.openConversations + " / " + agent.capacity);
      return row;
    }));
    const select = $("reassign").elements.agent;
    const chosen = select.value;
    select.replaceChildren(...(agents.items || []).filter((agent) => !agent.disabled).map((agent) => new Option(agent.name, agent.id)));
    if (chosen) select.value = chosen;
    $("rules").replaceChildren(...(rules.items || []).slice().sort((a, b) => a.order - b.order).map((rule) => {
      const item = document.createElement("li");
      item.dataset.ruleId = rule.id;
      item.textContent = rule.name + " — " + rule.keywords.join(", ") + " → " + rule.action + (rule.queue ? " (" + rule.queue + ")" : "");
      return item;
    }));
  } catch (error) {
    notice(t("failed") + ": " + error.message);
  }
}

$("reassign").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    await api("POST", "/v1/conversations/" + encodeURIComponent(form.elements.conversation.value.trim()) + "/assign", { agent: form.elements.agent.value });
    form.elements.conversation.value = "";
    notice(t("reassigned"));
    refreshSupervisor();
  } catch (error) {
    notice(t("failed") + ": " + error.message);
  }
});

// MARK: operations

async function refreshOperations() {
  let view;
  try {
    view = await api("GET", "/v1/cluster?members=ask");
    $("connection").textContent = "";
  } catch (error) {
    // Through the balancer another node answers; until one does, the last view stays.
    $("connection").textContent = t("unreachable");
    return;
  }
  $("leader").textContent = view.leader || t("none");
  $("term").textContent = view.term;
  $("commit").textContent = view.commitIndex;
  const link = $("balancer-link");
  $("balancer").hidden = !view.balancerPage;
  if (view.balancerPage) link.href = view.balancerPage;
  $("members").tBodies[0].replaceChildren(...(view.nodes || []).map((node) => {
    const raft = node.raft || {};
    // Each member's own account when it answered (members=ask), else this node's view of it.
    const own = raft.reported || null;
    const row = document.createElement("tr");
    row.dataset.memberId = node.id;
    cell(row, node.id + (node.id === view.self ? " *" : ""));
    cell(row, (own ? own.role : raft.role) || "—");
    cell(row, raft.voter ? "✓" : "—");
    cell(row, own ? own.term : "—");
    cell(row, own ? own.commitIndex : "—");
    cell(row, raft.appliedIndex ?? "—");
    cell(row, raft.matchIndex ?? "—");
    cell(row, raft.appliedIndex == null ? "—" : String(Math.max(0, view.commitIndex - raft.appliedIndex)));
    cell(row, raft.lastContactMs == null ? "—" : raft.lastContactMs + " ms");
    const gossip = typeof node.gossip === "object" && node.gossip ? (node.gossip.status || "?") + " · " + (node.gossip.address || "") : "—";
    cell(row, gossip);
    cell(row, node.api || "—");
    if (["dead", "suspect"].includes(node.gossip && node.gossip.status)) row.className = "down";
    return row;
  }));
  // Each node keeps what it saw since it started; the one answering is named.
  $("changes-seen-by").textContent = view.self;
  $("changes").replaceChildren(...(view.recentChanges || []).map((change) => {
    const item = document.createElement("li");
    const when = new Date(change.at).toLocaleTimeString();
    const word = (value) => (value ? T[lang].states[value] || value : "—");
    item.textContent = when + " — " + (change.kind === "leader"
      ? change.member + " " + t("leads") + ", " + t("term") + " " + change.to
      : change.member + ": " + (change.kind === "gossip" ? "gossip " : "") + word(change.from) + " → " + word(change.to));
    return item;
  }));
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden || !state.open) return;
  const entry = state.conversations.get(state.open);
  if (entry) entry.unread = 0;
  state.fresh = 0;
  renderList();
});

translate();
if (state.token) start().catch(() => signOut(t("expired")));
