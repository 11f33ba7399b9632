// Resume a chat the way useChat({resume: true}) does: the ai package's
// DefaultChatTransport.reconnectToStream({chatId}) (GET <api>/<chatId>/stream; null on a
// 204), its chunks parsed and checked by the transport, assembled by readUIMessageStream.
// The transport never sees `[DONE]` (its parser skips it), so a tee of the body reports
// whether the response ended with it.
//
//   node aisdk_resume.mjs <baseUrl> <chatId> [--api /api/chat] [--timeout S]
//
// Prints one JSON line: {"status": "none"|"message", "chunks", "message", "runErrors",
// "done", "error"}.
import { DefaultChatTransport } from "ai";

import {
  ACCEPTED,
  REJECTED,
  errorText,
  exitOnTimeout,
  failureCode,
  finish,
  parseCommandLine,
} from "./cli.mjs";
import { assemble, endsWithDone } from "./uimessage.mjs";

const USAGE = "node aisdk_resume.mjs <baseUrl> <chatId> [--api /api/chat] [--timeout S]";
const { positionals, values } = parseCommandLine(USAGE, 2, {
  api: { type: "string", default: "/api/chat" },
});
const [baseUrl, chatId] = positionals;
let done = Promise.resolve(false);
let response = null;

/** fetch, with the body teed so that whether it ends with `[DONE]` is known. */
async function teeingFetch(url, init) {
  response = await fetch(url, init);
  if (response.body === null) return response;
  const [forTransport, forDone] = response.body.tee();
  done = endsWithDone(forDone);
  const { status, statusText, headers } = response;
  return new Response(forTransport, { status, statusText, headers });
}

async function resume() {
  const transport = new DefaultChatTransport({ api: baseUrl + values.api, fetch: teeingFetch });
  const chunks = await transport.reconnectToStream({ chatId });
  if (chunks === null) {
    return { status: "none", chunks: [], message: null, runErrors: [], error: null };
  }
  return { status: "message", ...(await assemble(chunks)) };
}

const nothing = { status: null, chunks: [], message: null, runErrors: [], done: false };
exitOnTimeout(Number(values.timeout), () => nothing);
try {
  const result = await resume();
  if (result.error === null) {
    finish({ ...result, done: await done }, ACCEPTED);
  } else {
    finish({ ...result, done: false }, REJECTED); // the tee may wait on a body that stays open
  }
} catch (error) {
  finish({ ...nothing, error: errorText(error) }, failureCode(response));
}
