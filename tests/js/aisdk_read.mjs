// Read a UI message stream (e.g. GET /sse/<channel>?protocol=aisdk) with the ai package's
// own parts, composed as DefaultChatTransport.processResponseStream composes them
// (parseJsonEventStream: TextDecoderStream, EventSourceParserStream, safeParseJSON against
// uiMessageChunkSchema, a refused chunk failing the stream), except that `data: [DONE]`
// ends the read: a channel's watch stays open after its run. Assembled by readUIMessageStream.
//
//   node aisdk_read.mjs <url> [--timeout S]
//
// Prints one JSON line: {"chunks", "message", "runErrors", "done", "error"}.
import { safeParseJSON } from "@ai-sdk/provider-utils";
import { uiMessageChunkSchema } from "ai";

import {
  ACCEPTED,
  REJECTED,
  errorText,
  exitOnTimeout,
  failureCode,
  finish,
  parseCommandLine,
} from "./cli.mjs";
import { assemble, sseEvents } from "./uimessage.mjs";

const USAGE = "node aisdk_read.mjs <url> [--timeout S]";
const { positionals, values } = parseCommandLine(USAGE, 1, {});
let done = false;
let response = null;

/** The events' data up to `[DONE]`, which ends the stream (and cancels the body). */
const untilDone = new TransformStream({
  transform({ data }, controller) {
    if (data === "[DONE]") {
      done = true;
      controller.terminate();
    } else {
      controller.enqueue(data);
    }
  },
});

/** Each event's JSON checked against the package's chunk schema, as processResponseStream does. */
const checked = new TransformStream({
  async transform(data, controller) {
    const chunk = await safeParseJSON({ text: data, schema: uiMessageChunkSchema });
    if (!chunk.success) throw chunk.error;
    controller.enqueue(chunk.value);
  },
});

async function read() {
  response = await fetch(positionals[0], { headers: { Accept: "text/event-stream" } });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  return assemble(sseEvents(response.body).pipeThrough(untilDone).pipeThrough(checked));
}

exitOnTimeout(Number(values.timeout), () => ({ chunks: [], message: null, runErrors: [], done }));
try {
  const result = await read();
  finish({ ...result, done }, result.error === null ? ACCEPTED : REJECTED);
} catch (error) {
  const nothing = { chunks: [], message: null, runErrors: [], done };
  finish({ ...nothing, error: errorText(error) }, failureCode(response));
}
