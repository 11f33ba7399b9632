// Watch an AG-UI SSE stream with @ag-ui/client's own pipeline: its HTTP and SSE parsing
// (runHttpRequest, transformHttpEventStream), then what connectAgent() runs on every event:
// the compatibility boundary, enforceEvents (schemas), transformChunks, verifyEvents (order
// rules) and defaultApplyEvents (messages and state). HttpAgent has no connect() in 1.0.0
// (ag-ui#1852), so this subclass gives it one: a GET of the watch URL (with a
// Last-Event-ID header when given one, as an EventSource reconnecting sends it).
//
//   node agui_watch.mjs <url> [--runs N] [--last-event-id ID] [--timeout S]
//
// Prints one JSON line: {"events", "messages", "state", "warnings", "error"}.
import { HttpAgent, runHttpRequest, transformHttpEventStream } from "@ag-ui/client";
import { takeWhile } from "rxjs";

import {
  ACCEPTED,
  REJECTED,
  errorText,
  exitOnTimeout,
  failureCode,
  finish,
  parseCommandLine,
  usageError,
} from "./cli.mjs";

const USAGE = "node agui_watch.mjs <url> [--runs N] [--last-event-id ID] [--timeout S]";
const RUN_ENDS = new Set(["RUN_FINISHED", "RUN_ERROR"]);

/** An HttpAgent whose connect() watches `url` until `runs` runs have ended. */
class WatchingAgent extends HttpAgent {
  constructor(url, runs, headers) {
    super({ url, headers });
    this.runs = runs;
    this.ended = 0;
    this.response = null;
  }

  connect() {
    const response = runHttpRequest(async () => {
      this.response = await this.fetch(this.url, {
        method: "GET",
        headers: { ...this.headers, Accept: "text/event-stream" },
        signal: this.abortController.signal,
      });
      return this.response;
    });
    return transformHttpEventStream(response, this.debugLogger).pipe(
      takeWhile((event) => !(RUN_ENDS.has(event.type) && ++this.ended >= this.runs), true),
    );
  }
}

/** What the client's apply step built, in the fields a test compares. */
function assembled(message) {
  const { id, role, content, toolCalls, toolCallId } = message;
  return { id, role, content, toolCalls, toolCallId };
}

const { positionals, values } = parseCommandLine(USAGE, 1, {
  runs: { type: "string", default: "1" },
  "last-event-id": { type: "string" },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) usageError("--runs takes a whole number > 0", USAGE);
const lastEventId = values["last-event-id"];
const agent = new WatchingAgent(
  positionals[0],
  runs,
  lastEventId === undefined ? {} : { "Last-Event-ID": lastEventId },
);
const events = [];
const warnings = [];
console.warn = (...parts) => warnings.push(parts.map(String).join(" ")); // enforce's strip notices
console.error = () => {}; // connectAgent logs the error it then throws; the JSON carries it

/** The client's verdict: an error text (null when it accepted the stream) and the exit code. */
async function watch() {
  try {
    await agent.connectAgent({}, { onEvent: ({ event }) => void events.push(event.type) });
  } catch (error) {
    return [errorText(error), failureCode(agent.response)];
  }
  if (agent.ended < runs) return [`the stream ended after ${agent.ended} of ${runs} runs`, REJECTED];
  return [null, ACCEPTED];
}

const report = (error) => ({
  events,
  messages: agent.messages.map(assembled),
  state: agent.state,
  warnings,
  error,
});
exitOnTimeout(Number(values.timeout), () => report(null));
const [error, code] = await watch();
finish(report(error), code);
