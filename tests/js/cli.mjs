// What the three client scripts share: their arguments, the one JSON line they print, and
// their exit codes: 0 the client accepted the stream, 1 it rejected it, 2 there was no
// stream to judge (bad usage, no connection, a non-2xx answer) or no verdict in time.
import { parseArgs } from "node:util";

export const ACCEPTED = 0;
export const REJECTED = 1;
export const UNUSABLE = 2;

/** Print `result` as one JSON line on stdout, then exit with `code` once it is written. */
export function finish(result, code) {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
}

/** Exit 2, saying what was wrong and how to call the script. */
export function usageError(problem, usage) {
  process.stderr.write(`${problem}\nusage: ${usage}\n`);
  process.exit(UNUSABLE);
}

/** The positional arguments and options of `usage` (every script takes `--timeout S`). */
export function parseCommandLine(usage, positionals, options) {
  let parsed;
  try {
    parsed = parseArgs({
      options: { ...options, timeout: { type: "string", default: "10" } },
      allowPositionals: true,
    });
  } catch (error) {
    usageError(error.message, usage);
  }
  if (parsed.positionals.length !== positionals) usageError("wrong number of arguments", usage);
  if (!(Number(parsed.values.timeout) > 0)) usageError("--timeout takes seconds > 0", usage);
  return parsed;
}

/** After `seconds`, print what `partial()` holds with the timeout as its error, exit 2. */
export function exitOnTimeout(seconds, partial) {
  setTimeout(() => {
    finish({ ...partial(), error: `timeout: no verdict after ${seconds} s` }, UNUSABLE);
  }, seconds * 1000);
}

/** The exit code for an error a client threw: a rejection if a 2xx stream was being read. */
export function failureCode(response) {
  return response?.ok ? REJECTED : UNUSABLE;
}

/** The text of whatever a client threw. */
export function errorText(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
