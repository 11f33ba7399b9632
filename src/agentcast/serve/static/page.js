// agentcast's live page: one connection to the server that served it, one agent at a time.
// By default a WebSocket in agentcast's native protocol (?protocol=agentcast), which also
// carries the lines typed here; or, read only, an EventSource on /sse/{agent} in any of the
// server's SSE encodings (/?transport=sse&protocol=agentcast|agui|aisdk|letta), each decoded
// into the calls the native events make. Each run of the agent is a card: its messages
// grow delta by delta as the tokens arrive, its tool calls are collapsible cards (name,
// arguments as they stream, result), and a footer says how the run ended. A line typed
// here and the run answering it are one card, a step; a run that names the line it
// answers (run_start's `prompt`, as AgentServer's steps do) is shown as the same step to
// every other page watching the agent, live or from its history.
// Server text is only ever set as text (textContent, Text nodes; never innerHTML): it is
// client and agent input. After a drop the page resumes with `since` = the last seq it
// applied (EventSource by itself, with Last-Event-ID) and drops any event it has applied
// already, so nothing is missing or doubled.
"use strict";

const BACKOFF_FIRST = 0.5; // seconds before the first reconnect, doubled per failure
const BACKOFF_MAX = 15;
const STATUS_EVERY = 5000; // ms between /status polls (the client count)
const RECENT_AGENTS = 8;
const LOG_KEEP = 1000; // the newest cards and notices kept in the log
// A run_start this soon (ms) after a subscribe may be history replayed, or the snapshot of
// a run under way: how long that run took is not the page's to tell.
const REPLAY_WINDOW = 250;
// Notices that part of the stream never comes (agentcast.notices.GAP_CODES).
const GAP_CODES = ["history_trimmed", "channel_restarted", "backplane_gap", "broadcasts_lost"];

const $ = (id) => document.getElementById(id);

// The page's ways to watch: "ws", or "sse <protocol>" (the select's values).
const SSE_LABELS = { agentcast: "agentcast", agui: "AG-UI", aisdk: "AI SDK", letta: "Letta" };

const view = {
  log: $("log"),
  empty: $("empty"),
  agent: $("agent"),
  watch: $("watch"),
  recent: $("recent-agents"),
  tryDemo: $("try-demo"),
  tokenForm: $("token-form"),
  token: $("token"),
  message: $("message"),
  send: $("send"),
  state: $("state"),
  statusAgent: $("status-agent"),
  lastSeq: $("last-seq"),
  clients: $("clients"),
};

const query = new URLSearchParams(location.search);

const session = {
  token: new URLSearchParams(location.hash.slice(1)).get("token") || "",
  agent: query.get("agent") || "",
  transport: query.get("transport") === "sse" ? "sse" : "ws",
  protocol: Object.hasOwn(SSE_LABELS, query.get("protocol")) ? query.get("protocol") : "agentcast",
  socket: null,
  source: null, // the EventSource, over SSE
  watching: false, // over SSE: whether a stream should be open (the server answered)
  attempt: 0, // counts connects; one overtaken by a newer one (or a switch) gives up
  lastSeq: 0, // the last seq of the agent applied; a resume asks for what follows it
  subscribedAt: 0, // performance.now() when the last subscribe went out
  failures: 0,
  retryTimer: null,
  countdown: null,
  steps: [], // lines typed here, oldest first, until answered (agent_response_end)
  run: null, // the agent's open run
  messages: new Map(), // message_id -> an open message
  tools: new Map(), // tool_call_id -> a tool call waiting for its end or result
  ending: null, // over SSE: how the open run ends, told before its last event
  refused: "", // why the token may not have this agent (forbidden); cleared by another
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

// Change the log with `change`, keeping it scrolled to the end if it was.
function following(change) {
  const follow = atBottom();
  change();
  if (follow) view.log.scrollTop = view.log.scrollHeight;
}

function append(node, parent) {
  following(() => {
    view.empty.hidden = true;
    (parent || view.log).append(node);
    while (view.log.childElementCount > LOG_KEEP + 1) view.log.children[1].remove(); // [0]: empty
  });
}

function notice(kind, text) {
  const node = element("div", `notice ${kind}`, text);
  node.dataset.kind = kind;
  return node;
}

// Where the agent's output goes now: its open run, else the step in flight, else the log.
function container() {
  if (session.run) return session.run.body;
  const step = session.steps.find((s) => s.started && !s.run);
  return step ? step.body : view.log;
}

function show(node) {
  append(node, container());
}

const KIND_LABELS = { reasoning: "thinking" };
const ROLE_LABELS = { assistant: "assistant", user: "user", tool: "tool", system: "system" };

// A message entry: {node, text, seq}; `text` is the Text node its deltas are appended to.
function messageEntry(kind, role, content, seq) {
  const node = element("article", `entry message kind-${kind}`);
  node.dataset.kind = kind;
  node.dataset.role = role;
  const label = KIND_LABELS[kind] || ROLE_LABELS[role] || String(role);
  const seqLabel = element("span", "seq", `#${seq}`);
  const meta = element("div", "meta");
  meta.append(element("span", "label", label), seqLabel);
  const body = element("div", "text");
  const text = document.createTextNode(content);
  body.append(text);
  node.append(meta, body);
  node.dataset.seq = String(seq);
  return { node, text, seqLabel, firstSeq: seq };
}

function userEntry(text) {
  const node = element("article", "entry user");
  node.dataset.role = "you";
  const meta = element("div", "meta");
  meta.append(element("span", "label", "you"));
  node.append(meta, element("div", "text", text));
  return node;
}

// A collapsible card for a value the run carries (state, a patch, a custom event).
function dataCard(kind, title, value) {
  const node = element("details", "data"); // (a class named after the kind could clash)
  node.dataset.kind = kind;
  const summary = element("summary");
  summary.append(element("span", "label", kind.replace("_", " ")), element("span", "name", title));
  node.append(summary, element("pre", "value", JSON.stringify(value, null, 2)));
  return node;
}

function stepMark(text) {
  return element("div", "step-mark", text);
}

function operations(count) {
  return count === 1 ? "1 operation" : `${count} operations`;
}

function seqRange(first, last) {
  return first === last ? `#${first}` : `#${first}–${last}`;
}

function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function usageText(usage) {
  if (!usage || typeof usage !== "object") return JSON.stringify(usage);
  return Object.entries(usage)
    .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

// ---- state shown in the status bar ---------------------------------------------

function setState(state, text) {
  view.state.dataset.state = state;
  view.state.textContent = text || state;
  const usable =
    state === "open" && session.agent !== "" && session.transport === "ws" && !session.refused;
  view.message.disabled = !usable;
  view.send.disabled = !usable;
  view.message.placeholder = composerHint();
}

// What the message field says: how to send, or what to do first.
function composerHint() {
  if (session.transport === "sse") return "Watching over SSE: pick WebSocket to send messages";
  if (!session.agent) return "Pick an agent above first (new here? try demo)";
  if (session.refused) return `${session.refused}: open another agent`;
  return "Message the agent (Enter sends)";
}

function refreshState() {
  setState(view.state.dataset.state, view.state.textContent);
}

function setLastSeq(seq) {
  session.lastSeq = seq;
  view.lastSeq.textContent = seq > 0 ? String(seq) : "none";
}

// ---- the connection ----------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = session.token ? `&token=${encodeURIComponent(session.token)}` : "";
  return `${scheme}//${location.host}/?protocol=agentcast${token}`;
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
  const attempt = ++session.attempt;
  setState("connecting", "connecting");
  const answer = await probe();
  if (attempt !== session.attempt) return; // switched, or redialed, meanwhile
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
  if (session.transport === "sse") {
    session.watching = true;
    watchStream();
    return;
  }
  const socket = new WebSocket(socketUrl());
  session.socket = socket;
  socket.onopen = () => {
    session.failures = 0;
    setState("open", "open");
    if (session.run) session.run.node.classList.remove("paused");
    subscribe();
    sendNextLine();
    probe();
  };
  socket.onmessage = (event) => receive(event.data);
  socket.onclose = (event) => {
    session.socket = null;
    connectionLost();
    const reason = event.reason ? ` ${event.reason}` : "";
    scheduleReconnect(`closed ${event.code}${reason}`);
  };
}

// Leave the connection at once and dial again (no backoff): a new one resumes in order.
function redial() {
  if (!session.socket) return;
  disconnect();
  connectionLost();
  connect();
}

// Leave the connection (and any connect or retry under way) without a reconnect.
function disconnect() {
  clearRetry();
  session.attempt += 1;
  const socket = session.socket;
  if (socket) {
    socket.onmessage = socket.onclose = null; // what it still delivers is not applied
    socket.close();
    session.socket = null;
  }
  closeStream();
  session.watching = false;
}

// ---- over SSE ------------------------------------------------------------------------

function streamUrl() {
  const params = new URLSearchParams({ protocol: session.protocol, since: session.lastSeq });
  if (session.token) params.set("token", session.token);
  return `/sse/${encodeURIComponent(session.agent)}?${params}`;
}

// One EventSource on the agent's stream. After a drop the browser reconnects by itself,
// sending the last id it got as Last-Event-ID; only a stream it gave up on (refused, or
// not a stream) is the page's to dial again, resuming with ?since=.
function watchStream() {
  closeStream();
  if (!session.agent) {
    setState("idle", "pick an agent to watch");
    return;
  }
  const source = new EventSource(streamUrl());
  session.source = source;
  source.onopen = () => {
    session.failures = 0;
    session.subscribedAt = performance.now();
    setState("open", "open");
    if (session.run) session.run.node.classList.remove("paused");
    probe();
  };
  source.onmessage = (event) => receiveSse(event);
  source.onerror = () => {
    connectionLost();
    if (source.readyState === EventSource.CLOSED) {
      session.source = null;
      scheduleReconnect("the stream failed");
    } else {
      setState("reconnecting", "stream dropped · the browser resumes it");
    }
  };
}

function closeStream() {
  if (!session.source) return;
  session.source.onmessage = session.source.onerror = null;
  session.source.close();
  session.source = null;
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
  if (session.transport === "sse") {
    if (session.watching) watchStream(); // a stream names its agent: a new one
    return;
  }
  if (!session.agent) return;
  session.subscribedAt = performance.now();
  sendJson({ type: "subscribe", channel: session.agent, since: session.lastSeq });
}

// The connection is gone: an open run goes on (the resume replays the rest of it); the
// line in flight, if no run came of it, is cut off; lines still queued go on the next one.
function connectionLost() {
  if (session.run) session.run.node.classList.add("paused");
  for (const step of session.steps.filter((s) => s.sent && !s.run)) {
    step.node.classList.remove("running");
    step.node.classList.add("cut");
    append(footer("cut", "cut off by the disconnect"), step.node);
  }
  session.steps = session.steps.filter((s) => !s.sent);
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
  if (isEvent(frame)) {
    streamEvent(frame);
    return;
  }
  switch (frame.type) {
    case "subscribed":
    case "unsubscribed":
      break; // the status bar says the connection is open
    case "agent_response":
      wholeMessage(frame);
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

// An event of a stream names its channel and seq; a notice names neither.
function isEvent(frame) {
  return (
    frame.type !== "server_error" &&
    typeof frame.channel === "string" &&
    Number.isInteger(frame.seq)
  );
}

// Whether an event numbered `seq` is new (and if so, counted as applied); `shared`: the
// encoding's events may share a seq (several for one event of the model).
function fresh(seq, shared = false) {
  if (seq < session.lastSeq || (seq === session.lastSeq && !shared)) return false; // a replay
  setLastSeq(seq);
  return true;
}

function streamEvent(frame) {
  if (frame.channel !== session.agent || !fresh(frame.seq)) return;
  const handle = EVENTS[frame.type];
  if (handle) handle(frame);
  else show(notice("info", `unknown event type ${JSON.stringify(frame.type)}`));
}

const EVENTS = {
  run_start: startRun,
  run_end: (e) => endRun(e, e.outcome, e.usage),
  run_error: (e) => endRun(e, "error", undefined, e.message),
  step_start: (e) => show(stepMark(`step ${e.step}`)),
  step_end: (e) => show(stepMark(`step ${e.step} done`)),
  message_start: startMessage,
  message_delta: messageDelta,
  message_end: endMessage,
  message: (e) => show(messageEntry(e.kind, e.role, e.content, e.seq).node),
  tool_call_start: startToolCall,
  tool_call_delta: toolCallDelta,
  tool_call_end: endToolCall,
  tool_result: toolResult,
  state_snapshot: (e) => show(dataCard("state", "snapshot", e.snapshot)),
  state_patch: (e) => show(dataCard("state_patch", operations(e.patch.length), e.patch)),
  custom: (e) => show(dataCard("custom", e.name, e.value === undefined ? null : e.value)),
};

// A MemGPT whole message (the server relays those published as raw JSON to every client).
const MEMGPT_TYPES = {
  internal_monologue: ["reasoning", "assistant"],
  assistant_message: ["text", "assistant"],
  function_message: ["text", "tool"],
};

function wholeMessage(frame) {
  if (frame.agent_id !== undefined && frame.agent_id !== session.agent) return;
  const seq = Number.isInteger(frame.seq) ? frame.seq : null;
  if (seq !== null && !fresh(seq)) return;
  const [kind, role] = MEMGPT_TYPES[frame.message_type] || ["text", String(frame.message_type)];
  show(messageEntry(kind, role, frame.message, seq === null ? "?" : seq).node);
}

// ---- the SSE encodings ------------------------------------------------------------------
// Each event's SSE id is its seq. One event of the model may be several of an encoding's,
// all with its seq: an event is old only when its seq is below the last applied.

function receiveSse(event) {
  const seq = Number(event.lastEventId);
  if (event.data === "[DONE]") {
    if (session.protocol === "letta" && fresh(seq, true)) lettaDone(seq);
    return; // the AI SDK's: its run ended at "finish"
  }
  let body;
  try {
    body = JSON.parse(event.data);
  } catch (error) {
    show(notice("error", "the server sent an event that is not JSON"));
    return;
  }
  if (session.protocol === "agentcast") {
    if (isEvent(body)) streamEvent(body);
    return;
  }
  const [kind, decoders] = DECODERS[session.protocol];
  const type = String(body[kind]);
  const decode = own(decoders, type) || (type.startsWith("data-") && decoders["data-"]);
  if (type === RUN_STARTS[session.protocol]) {
    decode(body, seq); // may come again with an old seq: runStarted tells
  } else if (fresh(seq, true)) {
    if (decode) decode(body, seq);
    else show(notice("info", `unknown event type ${JSON.stringify(type)}`));
  }
}

// A run's start: a new run; or, for the run open here, that run from its start again (AG-UI's
// and the AI SDK's streams restart the open run on a resume): its card starts over.
function runStarted(runId, seq) {
  const run = session.run;
  if (run && run.id === runId) {
    run.body.replaceChildren();
    session.messages.clear();
    session.tools.clear();
    run.firstSeq = seq;
    session.ending = null;
    setLastSeq(seq);
  } else if (fresh(seq, true)) {
    startRun({ run_id: runId, seq });
  }
}

// table[key] if the table has it (not a name every object has, like "constructor").
function own(table, key) {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

function openRunId() {
  return session.run ? session.run.id : "";
}

// A tool result or output as the card shows it: text as it is, anything else as JSON.
function asText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// AG-UI's outcomes; a RUN_FINISHED without one is agentcast's "interrupted".
const AGUI_OUTCOMES = { success: "success", cancelled: "cancelled" };

const aguiStart = (kind) => (e, seq) =>
  startMessage({ message_id: e.messageId, kind, role: e.role, seq });
const aguiContent = (e) => messageDelta({ message_id: e.messageId, delta: e.delta });
const aguiEnd = (e, seq) => endMessage({ message_id: e.messageId, seq });

const AGUI = {
  RUN_STARTED: (e, seq) => runStarted(e.runId, seq),
  RUN_FINISHED: (e, seq) => {
    const outcome = own(AGUI_OUTCOMES, e.outcome && e.outcome.type) || "interrupted";
    endRun({ run_id: e.runId, seq }, outcome, Array.isArray(e.usage) ? e.usage[0] : undefined);
  },
  RUN_ERROR: (e, seq) => endRun({ run_id: openRunId(), seq }, "error", undefined, e.message),
  STEP_STARTED: (e) => show(stepMark(`step ${e.stepName}`)),
  STEP_FINISHED: (e) => show(stepMark(`step ${e.stepName} done`)),
  TEXT_MESSAGE_START: aguiStart("text"),
  TEXT_MESSAGE_CONTENT: aguiContent,
  TEXT_MESSAGE_END: aguiEnd,
  REASONING_MESSAGE_START: aguiStart("reasoning"),
  REASONING_MESSAGE_CONTENT: aguiContent,
  REASONING_MESSAGE_END: aguiEnd,
  TOOL_CALL_START: (e) => startToolCall({ tool_call_id: e.toolCallId, name: e.toolCallName }),
  TOOL_CALL_ARGS: (e) => toolCallDelta({ tool_call_id: e.toolCallId, delta: e.delta }),
  TOOL_CALL_END: (e) => endToolCall({ tool_call_id: e.toolCallId }),
  TOOL_CALL_RESULT: (e) => toolResult({ tool_call_id: e.toolCallId, content: asText(e.content) }),
  STATE_SNAPSHOT: (e) => EVENTS.state_snapshot(e),
  STATE_DELTA: (e) => EVENTS.state_patch({ patch: e.delta }),
  CUSTOM: (e) => EVENTS.custom(e),
};

// The AI SDK's finish reasons for agentcast's outcomes ("other": cancelled or interrupted).
const AISDK_OUTCOMES = { stop: "success", error: "error" };

const aisdkStart = (kind) => (c, seq) =>
  startMessage({ message_id: c.id, kind, role: "assistant", seq });
const aisdkDelta = (c) => messageDelta({ message_id: c.id, delta: c.delta });
const aisdkEnd = (c, seq) => endMessage({ message_id: c.id, seq });

const AISDK = {
  start: (c, seq) => runStarted(c.messageId, seq),
  finish: (c, seq) => {
    const outcome = own(AISDK_OUTCOMES, c.finishReason) || String(c.finishReason);
    const message = session.ending && session.ending.message;
    endRun({ run_id: openRunId(), seq }, outcome, undefined, message);
  },
  error: (c) => (session.ending = { message: c.errorText }),
  "start-step": () => show(stepMark("step")),
  "finish-step": () => show(stepMark("step done")),
  "text-start": aisdkStart("text"),
  "text-delta": aisdkDelta,
  "text-end": aisdkEnd,
  "reasoning-start": aisdkStart("reasoning"),
  "reasoning-delta": aisdkDelta,
  "reasoning-end": aisdkEnd,
  "tool-input-start": (c) => startToolCall({ tool_call_id: c.toolCallId, name: c.toolName }),
  "tool-input-delta": (c) => toolCallDelta({ tool_call_id: c.toolCallId, delta: c.inputTextDelta }),
  "tool-input-available": (c) => endToolCall({ tool_call_id: c.toolCallId }),
  "tool-input-error": (c) => {
    endToolCall({ tool_call_id: c.toolCallId });
    show(notice("error", `${c.toolName}: ${c.errorText}`));
  },
  "tool-output-available": (c) =>
    toolResult({ tool_call_id: c.toolCallId, content: asText(c.output) }),
  "data-agentcast-state": (c) => EVENTS.state_snapshot({ snapshot: c.data }),
  "data-agentcast-state-patch": (c) => EVENTS.state_patch({ patch: c.data }),
  "data-": (c) => EVENTS.custom({ name: c.type.slice(5), value: c.data }),
};

// Letta's message types with text: [kind, role, the field holding the text].
const LETTA_TEXTS = {
  reasoning_message: ["reasoning", "assistant", "reasoning"],
  assistant_message: ["text", "assistant", "content"],
  user_message: ["text", "user", "content"],
  system_message: ["text", "system", "content"],
};
const LETTA_OUTCOMES = { end_turn: "success", error: "error", cancelled: "cancelled" };

// Letta has no starts or ends: a chunk of a run not open here starts it, a chunk of a
// message (or call) not open starts it, and [DONE] ends the run as its stop_reason said.
function lettaRun(m, seq) {
  if (m.run_id !== undefined && m.run_id !== openRunId()) startRun({ run_id: m.run_id, seq });
}

function lettaText(m, seq) {
  lettaRun(m, seq);
  const [kind, role, field] = LETTA_TEXTS[m.message_type];
  if (!session.messages.has(m.id)) {
    lettaEndMessages();
    startMessage({ message_id: m.id, kind, role, seq });
  }
  messageDelta({ message_id: m.id, delta: m[field] });
  session.messages.get(m.id).lastSeq = seq;
}

// A Letta message ends when the next message or call starts.
function lettaEndMessages() {
  for (const [id, message] of session.messages) {
    endMessage({ message_id: id, seq: message.lastSeq });
  }
}

function lettaDone(seq) {
  const ending = session.ending || { outcome: "success" };
  endRun({ run_id: openRunId(), seq }, ending.outcome, ending.usage, ending.message);
}

const LETTA = {
  reasoning_message: lettaText,
  assistant_message: lettaText,
  user_message: lettaText,
  system_message: lettaText,
  tool_call_message: (m, seq) => {
    lettaRun(m, seq);
    const call = { tool_call_id: m.tool_call.tool_call_id, name: m.tool_call.name };
    if (!session.tools.has(call.tool_call_id)) {
      lettaEndMessages();
      startToolCall(call);
    }
    toolCallDelta({ ...call, delta: m.tool_call.arguments });
  },
  tool_return_message: (m) =>
    toolResult({ tool_call_id: m.tool_call_id, content: asText(m.tool_return) }),
  stop_reason: (m) =>
    (session.ending = { outcome: own(LETTA_OUTCOMES, m.stop_reason) || String(m.stop_reason) }),
  usage_statistics: (m) => {
    const { message_type: _, ...usage } = m;
    if (session.ending) session.ending.usage = usage;
  },
  error_message: (m) => {
    if (session.ending) session.ending.message = m.message;
  },
};

// protocol -> [the field naming an event's type, its decoders]
const DECODERS = { agui: ["type", AGUI], aisdk: ["type", AISDK], letta: ["message_type", LETTA] };
// The event that may come again with an old seq: a run's start, replayed on a resume.
const RUN_STARTS = { agui: "RUN_STARTED", aisdk: "start" };

// ---- runs --------------------------------------------------------------------------

function startRun(event) {
  if (session.run) finishRun(session.run, event.seq - 1, "cut", "cut off: a new run started");
  const now = performance.now();
  const step = session.steps.find((s) => s.started && !s.run);
  let node;
  let body;
  if (step) {
    step.run = event.run_id;
    ({ node, body } = step);
  } else {
    node = element("section", "run");
    body = element("div", "run-body");
    if (typeof event.prompt === "string") node.append(userEntry(event.prompt)); // as a step
    node.append(body);
    append(node);
  }
  node.classList.add("running");
  node.dataset.runId = event.run_id;
  session.run = {
    id: event.run_id,
    node,
    body,
    firstSeq: event.seq,
    startedAt: step ? step.sentAt : now,
    timed: Boolean(step) || now - session.subscribedAt > REPLAY_WINDOW,
  };
}

function endRun(event, outcome, usage, message) {
  let run = session.run;
  if (!run || run.id !== event.run_id) {
    startRun({ run_id: event.run_id, seq: event.seq }); // its start was not kept
    run = session.run;
    run.timed = false;
  }
  const parts = [outcome];
  if (message) parts.push(message);
  if (usage !== undefined) parts.push(`usage: ${usageText(usage)}`);
  parts.push(
    run.timed
      ? `took ${seconds(performance.now() - run.startedAt)}`
      : "not timed: it may have begun before the page joined",
  );
  finishRun(run, event.seq, outcome, parts.join(" · "));
}

// A card's footer: how it ended, and the seqs it spans if it was a run.
function footer(outcome, text, firstSeq, lastSeq) {
  const foot = element("div", "run-foot");
  foot.dataset.outcome = outcome;
  foot.append(element("span", "outcome", text));
  if (firstSeq !== undefined) {
    foot.dataset.seqs = `${firstSeq} ${lastSeq}`;
    foot.append(element("span", "seq", seqRange(firstSeq, lastSeq)));
  }
  return foot;
}

function finishRun(run, lastSeq, outcome, text) {
  append(footer(outcome, text, run.firstSeq, lastSeq), run.node);
  run.node.classList.remove("running", "paused");
  run.node.classList.add("done", `outcome-${outcome}`);
  for (const open of run.body.querySelectorAll(".streaming")) open.classList.remove("streaming");
  for (const tool of run.body.querySelectorAll("details.tool[open]")) tool.open = false;
  for (const tool of session.tools.values()) tool.status.textContent = "no result";
  session.messages.clear();
  session.tools.clear();
  session.ending = null;
  if (session.run === run) session.run = null;
}

// ---- messages ----------------------------------------------------------------------

function startMessage(event) {
  const message = messageEntry(event.kind, event.role, "", event.seq);
  message.node.classList.add("streaming");
  message.node.dataset.messageId = event.message_id;
  session.messages.set(event.message_id, message);
  show(message.node);
}

// A delta, or several merged into one (from_seq..seq): appended the same way.
function messageDelta(event) {
  let message = session.messages.get(event.message_id);
  if (!message) {
    startMessage({ message_id: event.message_id, kind: "text", role: "assistant", seq: event.seq });
    message = session.messages.get(event.message_id);
  }
  following(() => message.text.appendData(String(event.delta)));
}

function endMessage(event) {
  const message = session.messages.get(event.message_id);
  if (!message) return;
  message.node.classList.remove("streaming");
  message.seqLabel.textContent = seqRange(message.firstSeq, event.seq);
  session.messages.delete(event.message_id);
}

// ---- tool calls --------------------------------------------------------------------

function startToolCall(event) {
  const node = element("details", "tool streaming");
  node.dataset.toolCallId = event.tool_call_id;
  node.dataset.name = event.name;
  node.open = true;
  const summary = element("summary");
  const preview = document.createTextNode("");
  const status = element("span", "status", "calling");
  const previewNode = element("span", "preview");
  previewNode.append(preview);
  summary.append(element("span", "label", "tool"), element("span", "name", event.name));
  summary.append(previewNode, status);
  const args = document.createTextNode("");
  const argsNode = element("pre", "args");
  argsNode.append(args);
  const result = element("pre", "result");
  const resultPart = element("div", "part result-part");
  resultPart.append(element("div", "caption", "result"), result);
  resultPart.hidden = true;
  const argsPart = element("div", "part");
  argsPart.append(element("div", "caption", "arguments"), argsNode);
  node.append(summary, argsPart, resultPart);
  const tool = { node, args: [args, preview], status, result, resultPart, touched: false };
  summary.addEventListener("click", () => (tool.touched = true));
  session.tools.set(event.tool_call_id, tool);
  show(node);
}

function toolCallDelta(event) {
  const tool = session.tools.get(event.tool_call_id);
  if (tool) following(() => tool.args.forEach((t) => t.appendData(String(event.delta))));
}

function endToolCall(event) {
  const tool = session.tools.get(event.tool_call_id);
  if (!tool) return;
  tool.node.classList.remove("streaming");
  tool.status.textContent = "waiting for the result";
}

function toolResult(event) {
  const tool = session.tools.get(event.tool_call_id);
  if (!tool) {
    show(notice("info", `a tool call's result: ${event.content}`)); // its call was not kept
    return;
  }
  tool.node.classList.remove("streaming");
  tool.node.classList.add("done");
  tool.status.textContent = String(event.content); // the summary says it when closed
  following(() => {
    tool.result.textContent = String(event.content);
    tool.resultPart.hidden = false;
    if (!tool.touched) tool.node.open = false; // done: the summary says enough
  });
  session.tools.delete(event.tool_call_id);
}

// ---- notices -----------------------------------------------------------------------

function serverError(frame) {
  if (GAP_CODES.includes(frame.code)) {
    gap(frame);
  } else if (frame.code === "skipped") {
    skipped(frame);
  } else if (frame.code === "forbidden") {
    forbidden(frame);
  } else {
    show(notice("error", frame.code ? `${frame.code}: ${frame.message}` : frame.message));
  }
}

// The token does not allow the page this agent (to read it, or to talk to it): the lines
// not yet answered are refused, and the field stays off until another agent is opened.
function forbidden(frame) {
  const channel = noticeChannel(frame);
  const about = channel === null || channel === undefined ? "" : ` (${channel})`;
  show(notice("error", `forbidden: ${frame.message}${about}`));
  if (channel !== session.agent) return;
  session.refused = String(frame.message);
  for (const step of session.steps.filter((s) => !s.started)) {
    step.node.classList.remove("queued");
    step.node.classList.add("refused");
    append(footer("refused", `refused · ${session.refused}`), step.node);
  }
  session.steps = session.steps.filter((s) => s.started);
  refreshState();
}

function noticeChannel(frame) {
  return frame.channel !== undefined ? frame.channel : frame.agent_id;
}

// The server left events out (we fell behind). The notice comes before the live tail,
// so a new connection resuming after the last seq applied gets them, then the tail, in
// order (a resubscribe on this one would get them after the tail).
function skipped(frame) {
  show(notice("warning", frame.message));
  const ranges = Array.isArray(frame.ranges) ? frame.ranges : [];
  if (ranges.some((r) => noticeChannel(r) === session.agent)) redial();
}

// A notice that part of the stream never comes (codes: agentcast.notices).
function gap(frame) {
  const channel = noticeChannel(frame);
  if (channel !== null && channel !== session.agent) return;
  if (frame.code !== "channel_restarted" || channel === null) {
    show(notice("warning", `gap: ${frame.message}`)); // broadcasts are not numbered here
    return;
  }
  if (session.run) {
    finishRun(session.run, session.lastSeq, "cut", "cut off: the server's numbering started again");
  }
  const first = Number.isInteger(frame.first_seq) ? frame.first_seq : 1;
  show(
    notice(
      "warning",
      `the server's numbering of ${session.agent} started again (it was at seq ` +
        `${session.lastSeq}); counting from ${first}`,
    ),
  );
  setLastSeq(first - 1);
}

// ---- the lines typed here ---------------------------------------------------------------
// One at a time: the next goes once the last is answered. Two runs at once on one agent's
// channel would interleave their events, and a channel has one open run.

function queueLine(text) {
  const node = element("section", "run queued");
  const body = element("div", "run-body");
  node.append(userEntry(text), body);
  append(node);
  session.steps.push({ text, node, body, sent: false, started: false, run: null, sentAt: 0 });
  sendNextLine();
}

function sendNextLine() {
  const step = session.steps[0];
  if (!step || step.sent) return; // none queued, or one in flight
  if (!sendJson({ type: "user_message", channel: session.agent, message: step.text })) return;
  step.sent = true;
  step.sentAt = performance.now();
  step.node.classList.remove("queued");
}

function stepStarted() {
  const step = session.steps[0];
  if (step && step.sent) {
    step.started = true;
    step.node.classList.add("running");
  }
}

// The server answered the line: its run (if it made one) ends with its own footer.
function stepEnded() {
  const step = session.steps[0];
  if (!step || !step.sent) return;
  session.steps.shift();
  if (!step.run) {
    step.node.classList.remove("running");
    step.node.classList.add("done");
    const count = step.body.querySelectorAll(".entry").length;
    const took = seconds(performance.now() - step.sentAt);
    append(footer("done", `done · ${count} messages · took ${took}`), step.node);
  }
  sendNextLine();
}

// ---- the user's actions ------------------------------------------------------------

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
    sendJson({ type: "unsubscribe", channel: session.agent });
  }
  session.agent = agent;
  session.refused = "";
  session.steps = [];
  session.run = null;
  session.messages.clear();
  session.tools.clear();
  setLastSeq(0);
  view.log.replaceChildren(view.empty);
  view.empty.hidden = false;
  view.empty.textContent =
    session.transport === "ws"
      ? `Say something to ${agent}.`
      : `Watching ${agent} over SSE (${SSE_LABELS[session.protocol]}).`;
  view.agent.value = agent;
  view.statusAgent.textContent = agent;
  const url = new URL(location.href);
  url.searchParams.set("agent", agent);
  history.replaceState(null, "", url);
  document.title = `${agent} · agentcast`;
  rememberAgent(agent);
  refreshState();
  subscribe();
}

$("agent-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const agent = view.agent.value.trim();
  if (agent && agent !== session.agent) openAgent(agent);
  view.message.focus();
});

view.tryDemo.addEventListener("click", () => {
  openAgent("demo");
  view.message.focus();
});

// How the page watches: the select's value, kept in the URL (?transport=sse&protocol=...).
function showWatch() {
  const sse = session.transport === "sse";
  view.watch.value = sse ? `sse ${session.protocol}` : "ws";
  refreshState();
  const url = new URL(location.href);
  url.searchParams.delete("transport");
  url.searchParams.delete("protocol");
  if (sse) {
    url.searchParams.set("transport", "sse");
    url.searchParams.set("protocol", session.protocol);
  }
  history.replaceState(null, "", url);
}

view.watch.addEventListener("change", () => {
  const [transport, protocol] = view.watch.value.split(" ");
  disconnect();
  session.transport = transport;
  session.protocol = protocol || "agentcast";
  showWatch();
  if (session.agent) openAgent(session.agent);
  connect();
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  session.token = view.token.value.trim();
  session.refused = ""; // the new token may allow the agent: the server says
  view.tokenForm.hidden = true;
  session.failures = 0;
  connect();
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = view.message.value;
  if (!text.trim()) return;
  queueLine(text);
  view.message.value = "";
});

setInterval(() => {
  if (session.socket || session.source) probe();
}, STATUS_EVERY);

showRecentAgents(recentAgents());
showWatch();
if (session.agent) {
  openAgent(session.agent);
} else {
  view.agent.focus();
}
connect();
