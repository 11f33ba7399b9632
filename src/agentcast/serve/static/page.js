// agentcast's live page: one WebSocket to the server that served it, one agent at a time.
// Server text is only ever set with textContent (never innerHTML): it is client and agent
// input. The connection resumes after a drop with `since` = the last seq it showed, and
// drops any frame it has shown already, so nothing is missing and nothing is doubled.
"use strict";

const BACKOFF_FIRST = 0.5; // seconds before the first reconnect, doubled per failure
const BACKOFF_MAX = 15;
const STATUS_EVERY = 5000; // ms between /status polls (the client count)
const RECENT_AGENTS = 8;
// Notices that part of the stream never comes (agentcast.notices.GAP_CODES).
const GAP_CODES = ["history_trimmed", "channel_restarted", "backplane_gap", "broadcasts_lost"];

const $ = (id) => document.getElementById(id);

const view = {
  log: $("log"),
  empty: $("empty"),
  agent: $("agent"),
  recent: $("recent-agents"),
  tokenForm: $("token-form"),
  token: $("token"),
  message: $("message"),
  send: $("send"),
  state: $("state"),
  statusAgent: $("status-agent"),
  lastSeq: $("last-seq"),
  clients: $("clients"),
};

const session = {
  token: new URLSearchParams(location.hash.slice(1)).get("token") || "",
  agent: new URLSearchParams(location.search).get("agent") || "",
  socket: null,
  lastSeq: 0, // the last seq of the agent shown; a resume asks for what follows it
  missing: [], // {from, to} seqs the server skipped (we fell behind), awaited from a replay
  failures: 0,
  retryTimer: null,
  countdown: null,
  steps: [], // steps sent from this page, oldest first, waiting for agent_response_end
};

// ---- rendering -------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function atBottom() {
  const log = view.log;
  return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
}

function append(node, parent) {
  const follow = atBottom();
  view.empty.hidden = true;
  (parent || view.log).append(node);
  if (follow) view.log.scrollTop = view.log.scrollHeight;
}

const LABELS = {
  internal_monologue: "thinking",
  function_message: "function",
  assistant_message: "assistant",
  user: "you",
};

function entry(type, text, seq) {
  const node = element("article", `entry ${type}`);
  node.dataset.type = type;
  const meta = element("div", "meta");
  meta.append(element("span", "label", LABELS[type] || type));
  if (seq !== undefined && seq !== null) {
    node.dataset.seq = String(seq);
    meta.append(element("span", "seq", `#${seq}`));
  }
  node.append(meta, element("div", "text", text));
  return node;
}

function notice(kind, text) {
  const node = element("div", `notice ${kind}`, text);
  node.dataset.kind = kind;
  return node;
}

function currentStep() {
  return session.steps.find((step) => step.started && !step.ended) || null;
}

function show(node) {
  const step = currentStep();
  append(node, step ? step.body : null);
}

// ---- state shown in the status bar ---------------------------------------------

function setState(state, text) {
  view.state.dataset.state = state;
  view.state.textContent = text || state;
  const usable = state === "open" && session.agent !== "";
  view.message.disabled = !usable;
  view.send.disabled = !usable;
}

function setLastSeq(seq) {
  session.lastSeq = seq;
  view.lastSeq.textContent = seq > 0 ? String(seq) : "none";
}

// ---- the connection ----------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = session.token ? `?token=${encodeURIComponent(session.token)}` : "";
  return `${scheme}//${location.host}/${query}`;
}

function authHeaders() {
  return session.token ? { Authorization: `Bearer ${session.token}` } : {};
}

// GET /status: the client count, and whether the server takes our token (it answers
// 401 as the WebSocket upgrade would, which a browser's WebSocket cannot see).
async function probe() {
  try {
    const response = await fetch("/status", { headers: authHeaders(), cache: "no-store" });
    if (response.status === 401 || response.status === 403) return "refused";
    if (!response.ok) return "down";
    const status = await response.json();
    view.clients.textContent = String(status.clients);
    return "ok";
  } catch (error) {
    return "down";
  }
}

async function connect() {
  clearRetry();
  setState("connecting", "connecting");
  const answer = await probe();
  if (answer === "refused") {
    view.tokenForm.hidden = false;
    setState(
      "unauthorized",
      session.token ? "token refused: enter a valid token" : "token needed: enter a token",
    );
    view.token.focus();
    return;
  }
  if (answer === "down") {
    scheduleReconnect("server unreachable");
    return;
  }
  const socket = new WebSocket(socketUrl());
  session.socket = socket;
  socket.onopen = () => {
    session.failures = 0;
    setState("open", "open");
    subscribe();
    probe();
  };
  socket.onmessage = (event) => receive(event.data);
  socket.onclose = (event) => {
    session.socket = null;
    endOpenSteps();
    const reason = event.reason ? ` ${event.reason}` : "";
    scheduleReconnect(`closed ${event.code}${reason}`);
  };
}

function clearRetry() {
  clearTimeout(session.retryTimer);
  clearInterval(session.countdown);
  session.retryTimer = session.countdown = null;
}

// Exponential backoff with jitter: many pages dropped at once do not come back at once.
function scheduleReconnect(why) {
  clearRetry();
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** session.failures);
  const delay = ceiling * (0.5 + Math.random() / 2);
  session.failures += 1;
  view.state.dataset.retryMs = String(Math.round(delay * 1000)); // what the wait is, for tests
  const due = Date.now() + delay * 1000;
  const tick = () => {
    const left = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    setState("reconnecting", `${why} · reconnecting in ${left}s`);
  };
  tick();
  session.countdown = setInterval(tick, 250);
  session.retryTimer = setTimeout(connect, delay * 1000);
}

function sendJson(body) {
  const socket = session.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(body));
  return true;
}

function subscribe() {
  if (!session.agent) return;
  sendJson({ type: "subscribe", agent_id: session.agent, since: session.lastSeq });
}

// ---- frames from the server ---------------------------------------------------------

function receive(data) {
  let frame;
  try {
    frame = JSON.parse(data);
  } catch (error) {
    show(notice("error", "the server sent a frame that is not JSON"));
    return;
  }
  switch (frame.type) {
    case "agent_response":
      agentResponse(frame);
      break;
    case "agent_response_start":
      stepStarted();
      break;
    case "agent_response_end":
      stepEnded();
      break;
    case "agent_response_error":
      show(notice("error", `agent error: ${frame.message}`));
      break;
    case "command_response":
      show(notice("info", frame.status));
      break;
    case "server_error":
      serverError(frame);
      break;
    default:
      show(notice("info", `unknown frame type ${JSON.stringify(frame.type)}`));
  }
}

function agentResponse(frame) {
  if (frame.agent_id !== undefined && frame.agent_id !== session.agent) return;
  const seq = typeof frame.seq === "number" ? frame.seq : null;
  const node = entry(frame.message_type, frame.message, seq);
  if (seq === null) {
    show(node);
  } else if (seq > session.lastSeq) {
    setLastSeq(seq);
    show(node);
  } else if (takeMissing(seq)) {
    showInOrder(node, seq); // a skipped one, replayed after later ones came live
  } // else shown already: a replay overlapping what the page holds
}

// Whether `seq` was skipped and not shown yet; if so it is no longer awaited.
function takeMissing(seq) {
  const range = session.missing.find((r) => r.from <= seq && seq <= r.to);
  if (!range) return false;
  session.missing = session.missing
    .flatMap((r) => (r === range ? [{ from: r.from, to: seq - 1 }, { from: seq + 1, to: r.to }] : [r]))
    .filter((r) => r.from <= r.to);
  return true;
}

// Before the run of entries at the end whose seqs are above `seq`.
function showInOrder(node, seq) {
  let before = null;
  const shown = view.log.querySelectorAll(".entry[data-seq]");
  for (let i = shown.length - 1; i >= 0 && Number(shown[i].dataset.seq) > seq; i -= 1) {
    before = shown[i];
  }
  if (before) before.before(node);
  else show(node);
}

function serverError(frame) {
  if (GAP_CODES.includes(frame.code)) {
    gap(frame);
  } else if (frame.code === "skipped") {
    show(notice("warning", frame.message));
    fetchSkipped(frame.ranges || []);
  } else if (frame.code === "forbidden") {
    show(notice("error", `forbidden: ${frame.message}`));
  } else {
    show(notice("error", frame.code ? `${frame.code}: ${frame.message}` : frame.message));
  }
}

// Resubscribe from before the first skipped seq: the server replays those it still keeps.
function fetchSkipped(ranges) {
  const ours = ranges.filter((r) => r.agent_id === session.agent);
  if (ours.length === 0) return;
  session.missing.push(...ours.map((r) => ({ from: r.from_seq, to: r.to_seq })));
  const since = Math.min(...ours.map((r) => r.from_seq)) - 1;
  sendJson({ type: "subscribe", agent_id: session.agent, since });
}

// A notice that part of the stream never comes (codes: agentcast.notices).
function gap(frame) {
  if (frame.agent_id !== null && frame.agent_id !== session.agent) return;
  if (frame.code === "channel_restarted") {
    const first = typeof frame.first_seq === "number" ? frame.first_seq : 1;
    show(
      notice(
        "warning",
        `the server's numbering of ${session.agent} started again (it was at seq ` +
          `${session.lastSeq}); counting from ${first}`,
      ),
    );
    setLastSeq(first - 1);
    session.missing = [];
  } else {
    show(notice("warning", `gap: ${frame.message}`));
    if (frame.agent_id === null) return; // broadcasts: not numbered on the page
    const first = typeof frame.first_seq === "number" ? frame.first_seq : 0;
    session.missing = session.missing.filter((r) => r.to >= first); // those never come
  }
}

function stepStarted() {
  const step = session.steps.find((s) => !s.started);
  if (step) {
    step.started = true;
    step.node.classList.add("running");
  }
}

function stepEnded() {
  const step = currentStep();
  if (!step) return;
  step.ended = true;
  step.node.classList.remove("running");
  step.node.classList.add("done");
  const count = step.body.querySelectorAll(".entry").length;
  const took = Math.round(performance.now() - step.sentAt);
  append(element("div", "step-foot", `step done · ${count} messages · ${took} ms`), step.node);
  session.steps = session.steps.filter((s) => s !== step);
}

function endOpenSteps() {
  for (const step of session.steps) {
    step.node.classList.remove("running");
    step.node.classList.add("cut");
    append(element("div", "step-foot", "cut off by the disconnect"), step.node);
  }
  session.steps = [];
}

// ---- the user's actions ------------------------------------------------------------

function sendMessage(text) {
  if (!sendJson({ type: "user_message", message: text, agent_id: session.agent })) return;
  const node = element("section", "step");
  const body = element("div", "step-body");
  node.append(entry("user", text), body);
  append(node);
  session.steps.push({ node, body, started: false, ended: false, sentAt: performance.now() });
}

function recentAgents() {
  try {
    const recent = JSON.parse(localStorage.getItem("agentcast.recent") || "[]");
    return Array.isArray(recent) ? recent.filter((a) => typeof a === "string") : [];
  } catch (error) {
    return [];
  }
}

function showRecentAgents(recent) {
  view.recent.replaceChildren(...recent.map((a) => Object.assign(element("option"), { value: a })));
}

function rememberAgent(agent) {
  const recent = [agent, ...recentAgents().filter((a) => a !== agent)].slice(0, RECENT_AGENTS);
  try {
    localStorage.setItem("agentcast.recent", JSON.stringify(recent));
  } catch (error) {
    // storage off (private mode): the list lives for this page only
  }
  showRecentAgents(recent);
}

function openAgent(agent) {
  if (session.agent && session.agent !== agent) {
    sendJson({ type: "unsubscribe", agent_id: session.agent });
  }
  session.agent = agent;
  session.steps = [];
  session.missing = [];
  setLastSeq(0);
  view.log.replaceChildren(view.empty);
  view.empty.hidden = false;
  view.empty.textContent = `Say something to ${agent}.`;
  view.agent.value = agent;
  view.statusAgent.textContent = agent;
  const url = new URL(location.href);
  url.searchParams.set("agent", agent);
  history.replaceState(null, "", url);
  document.title = `${agent} · agentcast`;
  rememberAgent(agent);
  setState(view.state.dataset.state, view.state.textContent);
  subscribe();
}

$("agent-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const agent = view.agent.value.trim();
  if (agent && agent !== session.agent) openAgent(agent);
  view.message.focus();
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  session.token = view.token.value.trim();
  view.tokenForm.hidden = true;
  session.failures = 0;
  connect();
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = view.message.value;
  if (!text.trim()) return;
  sendMessage(text);
  view.message.value = "";
});

setInterval(() => {
  if (session.socket) probe();
}, STATUS_EVERY);

showRecentAgents(recentAgents());
if (session.agent) {
  openAgent(session.agent);
} else {
  view.agent.focus();
}
connect();
