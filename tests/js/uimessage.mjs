// What the two AI SDK scripts share: the ai package's assembly of a UIMessageChunk stream
// (readUIMessageStream, the reader useChat's state is built by), and the check that a body
// ends with `data: [DONE]`, read with the same SSE parser the package uses.
import { EventSourceParserStream } from "@ai-sdk/provider-utils";
import { readUIMessageStream } from "ai";

import { errorText } from "./cli.mjs";

/** The SSE events of a response body, parsed as the ai package parses them. */
export function sseEvents(body) {
  return body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
}

/** Whether the last event of `body` is `data: [DONE]` (false if the body fails). */
export async function endsWithDone(body) {
  let last = null;
  try {
    for await (const { data } of sseEvents(body)) last = data;
  } catch {
    return false;
  }
  return last === "[DONE]";
}

/**
 * Assemble `chunks` with readUIMessageStream. Returns the chunk types in order, the final
 * UIMessage, the texts of the stream's own `error` chunks (a run that failed says so; the
 * client reports each through onError) and the first error the client raised itself: a
 * chunk its schema refused, a chunk out of order, a broken body.
 */
export async function assemble(chunks) {
  const types = [];
  const runErrors = [];
  const clientErrors = [];
  const recorded = chunks.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        types.push(chunk.type);
        if (chunk.type === "error") runErrors.push(chunk.errorText);
        controller.enqueue(chunk);
      },
    }),
  );
  const reportedByTheRun = (error) => error.name === "Error" && runErrors.includes(error.message);
  let message = null;
  const onError = (error) => reportedByTheRun(error) || clientErrors.push(errorText(error));
  for await (message of readUIMessageStream({ stream: recorded, onError })) {
    // each snapshot replaces the last; the final one is the message
  }
  return {
    chunks: types,
    message: message && { id: message.id, role: message.role, parts: message.parts },
    runErrors,
    error: clientErrors[0] ?? null,
  };
}
