// The documentation's examples against the store's real answers, so the two cannot drift.
//
// Every `sh` block of README.md and docs/*.md is run in document order, one file after another,
// against a store of its own (started as `npm start` starts it, with fault injection on, since
// docs/operations.md rehearses dead letters). Inside a block:
//
// - `NAME='value'` sets a shell variable; `NAME=$(curl … | grep -i '^<header>:' …)` runs the
//   curl and sets NAME to that answer header; `sleep N` waits N seconds;
// - a `curl` command (continued over lines ending in `\`) is sent with its method (`-X`),
//   headers (`-H`) and body (`--data`), `$NAME` expanded; a pipe or a trailing `#` ends it;
// - the lines right after it that start with `#` and an answer (`{…}` JSON, or plain text) are
//   what the docs say it answers. JSON is compared by shape: the answer must be JSON, every
//   field name the docs show must be in it (values may differ: versions, tokens, times), and an
//   `{"error":…}` example must come with an error status and the same `code`; otherwise the
//   status must be 2xx. Plain text must equal the answer's body. Documented JSON may elide with
//   `…`. Commands with `-i`, `-I`, `-D`, `-N` or `-o` show headers or timings, not a body: they
//   are sent (they may set up state) but only a 5xx fails them.
// - Commands that start a store (`npm start`) are not run.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningStore, startStore } from "./store.ts";

/** One documented request, and what the docs say it answers (null: nothing shown). */
interface Example {
  readonly file: string;
  readonly line: number;
  readonly kind: "curl" | "capture" | "assign" | "sleep";
  /** The command's words, after the shell's quoting is undone (variables still unexpanded). */
  readonly words: string[];
  readonly answer: string | null;
  /** For `capture` and `assign`: the variable set. */
  readonly name?: string;
  /** For `capture`: the answer header read; for `assign`: the value; for `sleep`: seconds. */
  readonly value?: string;
}

/** The documentation files, in the order they are run. */
const FILES = [
  "README.md",
  ...readdirSync("docs")
    .map((f) => `docs/${f}`)
    .sort(),
];

/** Splits a command line as a POSIX shell would (quotes, escapes), up to a pipe or a comment. */
function words(command: string): { words: string[]; rest: string } {
  const out: string[] = [];
  let word: string | null = null;
  let i = 0;
  const push = () => {
    if (word !== null) out.push(word);
    word = null;
  };
  for (; i < command.length; i += 1) {
    const c = command[i] as string;
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      word = (word ?? "") + command.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      let text = "";
      for (; j < command.length && command[j] !== '"'; j += 1) {
        if (command[j] === "\\" && j + 1 < command.length) j += 1;
        text += command[j];
      }
      word = (word ?? "") + text;
      i = j;
    } else if (c === " " || c === "\t") push();
    else if ((c === "|" || c === "#") && word === null) break;
    else word = (word ?? "") + c;
  }
  push();
  return { words: out, rest: command.slice(i) };
}

/** Every example in `file`'s `sh` blocks, in order. */
export function examplesOf(file: string, text: string): Example[] {
  const lines = text.split("\n");
  const examples: Example[] = [];
  let inBlock = false;
  for (let n = 0; n < lines.length; n += 1) {
    const line = lines[n] as string;
    if (line.startsWith("```")) {
      inBlock = !inBlock && line.trim() === "```sh";
      continue;
    }
    if (!inBlock) continue;
    // A command continued over lines ending in a backslash.
    let command = line;
    const first = n;
    while (command.endsWith("\\") && n + 1 < lines.length) {
      n += 1;
      command = `${command.slice(0, -1)} ${(lines[n] as string).trim()}`;
    }
    // The answer: the comment lines right after, starting with JSON or plain text.
    const answer: string[] = [];
    while (n + 1 < lines.length && /^#\s/.test(lines[n + 1] as string)) {
      const shown = (lines[n + 1] as string).replace(/^#\s+/, "");
      // A sentence (capitalised, or ending in a full stop) is a comment, not an answer.
      if (/^[A-Z]/.test(shown) || shown.endsWith(".")) break;
      answer.push(shown);
      n += 1;
    }
    const shown = answer.length === 0 ? null : answer.join("");
    const assign = /^([A-Z]+)='([^']*)'$/.exec(command);
    const capture = /^([A-Z]+)=\$\((curl .*?)\|\s*grep -i '\^([A-Za-z-]+):'/.exec(command);
    const sleep = /^sleep (\d+)$/.exec(command.trim());
    if (assign !== null)
      examples.push({
        file,
        line: first + 1,
        kind: "assign",
        words: [],
        answer: null,
        name: assign[1],
        value: assign[2],
      });
    else if (capture !== null)
      examples.push({
        file,
        line: first + 1,
        kind: "capture",
        words: words(capture[2] as string).words,
        answer: null,
        name: capture[1],
        value: (capture[3] as string).toLowerCase(),
      });
    else if (sleep !== null)
      examples.push({ file, line: first + 1, kind: "sleep", words: [], answer: null, value: sleep[1] });
    else if (command.startsWith("curl "))
      examples.push({ file, line: first + 1, kind: "curl", words: words(command).words, answer: shown });
  }
  return examples;
}

/** The request a curl command makes. */
function requestOf(
  argv: readonly string[],
  vars: ReadonlyMap<string, string>,
  baseUrl: string,
): { url: string; init: RequestInit; bodyShown: boolean } {
  const expand = (s: string) => s.replaceAll(/\$([A-Z]+)/g, (_, name: string) => vars.get(name) ?? "");
  const headers = new Headers();
  let method: string | undefined;
  let body: string | undefined;
  let url: string | undefined;
  let bodyShown = true;
  for (let i = 1; i < argv.length; i += 1) {
    const word = argv[i] as string;
    if (word === "-X") method = argv[(i += 1)];
    else if (word === "-H") {
      const header = expand(argv[(i += 1)] as string);
      const colon = header.indexOf(":");
      headers.set(header.slice(0, colon), header.slice(colon + 1).trim());
    } else if (word === "--data" || word === "-d" || word === "--data-binary") body = expand(argv[(i += 1)] as string);
    else if (word === "-w") i += 1;
    else if (word === "-o" || word === "-D") {
      i += 1;
      bodyShown = false;
    } else if (/^-[a-zA-Z]+$/.test(word)) {
      if (/[iIN]/.test(word)) bodyShown = false;
    } else url = expand(word);
  }
  if (url === undefined) throw new Error(`no URL in ${argv.join(" ")}`);
  if (body !== undefined && !headers.has("content-type"))
    headers.set("content-type", "application/x-www-form-urlencoded");
  return {
    url: url.replace(/^(http:\/\/)?(localhost|127\.0\.0\.1):8787/, baseUrl),
    init: { method: method ?? (body === undefined ? "GET" : "POST"), headers, body },
    bodyShown,
  };
}

/** Every field name a JSON value holds, at any depth. */
function fieldNames(value: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const v of value) fieldNames(v, into);
  else if (value !== null && typeof value === "object")
    for (const [k, v] of Object.entries(value)) {
      into.add(k);
      fieldNames(v, into);
    }
  return into;
}

/** What is wrong with `res` given the documented `answer` (empty: nothing). */
async function mismatches(res: Response, answer: string | null, bodyShown: boolean): Promise<string[]> {
  if (!bodyShown || answer === null) {
    // A stream (the change feed) never ends: only its status is looked at.
    await res.body?.cancel();
    return res.status >= 500 ? [`answered ${res.status}`] : [];
  }
  const text = await res.text();
  if (res.status >= 500 && !answer.startsWith('{"error"')) return [`answered ${res.status}: ${text.slice(0, 200)}`];
  if (!answer.startsWith("{")) return text.trim() === answer.trim() ? [] : [`body ${JSON.stringify(text)}`];
  let real: unknown;
  try {
    real = JSON.parse(text);
  } catch {
    return [`not JSON (${res.status}): ${text.slice(0, 200)}`];
  }
  const problems: string[] = [];
  const documentedError = answer.startsWith('{"error"');
  if (documentedError !== res.status >= 400) problems.push(`status ${res.status}`);
  const code = /"code":"([a-z_]+)"/.exec(answer)?.[1];
  const realCode = (real as { error?: { code?: string } }).error?.code;
  if (code !== undefined && code !== realCode) problems.push(`code ${String(realCode)}, not ${code}`);
  const have = fieldNames(real);
  for (const [, name] of answer.matchAll(/"([A-Za-z_][A-Za-z0-9_]*)"\s*:/g))
    if (!have.has(name as string)) problems.push(`no field "${name}" in ${text.slice(0, 300)}`);
  return problems;
}

describe("the documentation's examples", () => {
  it("are found in every file that shows answers (a parser that finds nothing cannot pass)", () => {
    const counted = new Map(
      FILES.map((file) => {
        const examples = examplesOf(file, readFileSync(file, "utf8"));
        return [file, examples.filter((e) => e.kind === "curl" && e.answer !== null).length];
      }),
    );
    expect(counted.get("README.md")).toBeGreaterThanOrEqual(5);
    expect(counted.get("docs/api.md")).toBeGreaterThanOrEqual(5);
    expect(counted.get("docs/consistency.md")).toBeGreaterThanOrEqual(3);
    expect(counted.get("docs/operations.md")).toBeGreaterThanOrEqual(2);
  });

  describe("against a store", () => {
    let store: RunningStore | undefined;
    let dir: string | undefined;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "kv-e2e-docs-"));
      store = await startStore({ FAULTS: "on" }, dir);
    }, 120_000);
    afterAll(async () => {
      await store?.stop();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    it("answer what the docs say, in document order", async () => {
      const vars = new Map<string, string>();
      const problems: string[] = [];
      let checked = 0;
      for (const file of FILES) {
        for (const example of examplesOf(file, readFileSync(file, "utf8"))) {
          const where = `${example.file}:${example.line}`;
          if (example.kind === "assign") vars.set(example.name as string, example.value as string);
          else if (example.kind === "sleep") await new Promise((r) => setTimeout(r, Number(example.value) * 1000));
          else {
            const { url, init, bodyShown } = requestOf(example.words, vars, store!.baseUrl);
            const res = await fetch(url, init);
            if (example.kind === "capture") {
              vars.set(example.name as string, res.headers.get(example.value as string) ?? "");
              await res.body?.cancel();
              continue;
            }
            if (example.answer !== null && bodyShown) checked += 1;
            for (const problem of await mismatches(res, example.answer, bodyShown))
              problems.push(`${where}: ${init.method} ${url.replace(store!.baseUrl, "")}: ${problem}`);
          }
        }
      }
      expect(problems).toEqual([]);
      expect(checked).toBeGreaterThanOrEqual(15);
    }, 180_000);
  });
});
