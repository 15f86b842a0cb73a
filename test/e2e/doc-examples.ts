// The documentation's request/answer examples as data, and how a real answer is judged against
// one. The convention is described at the top of doc-examples.test.ts, which runs them.

/** A request an example makes; placeholders (`{{name}}`, `$NAME`) are still unexpanded. */
export interface DocRequest {
  readonly method: string;
  /** Path and query, e.g. `/v1/kv/greeting?region=enam`. */
  readonly path: string;
  /** `Name: value` lines, split once placeholders are expanded (`-H "$T"` is a whole header). */
  readonly headers: readonly string[];
  readonly body: string | null;
}

/** What an example says the store answers; null fields are not shown, so not checked. */
export interface DocAnswer {
  readonly status: number | null;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string | null;
}

/** One documented request and (when shown) its answer. */
export interface DocExample {
  readonly file: string;
  /** 1-based line of the request. */
  readonly line: number;
  readonly form: "http" | "sh";
  readonly request: DocRequest;
  readonly answer: DocAnswer | null;
  /** sh only: `NAME=$(curl … | grep -i '^header:' …)` sets NAME to that answer header. */
  readonly capture?: { readonly name: string; readonly header: string };
}

/** A step of a page, in document order. */
export type DocStep =
  | { readonly kind: "example"; readonly example: DocExample }
  | { readonly kind: "set"; readonly line: number; readonly name: string; readonly value: string }
  | { readonly kind: "sleep"; readonly line: number; readonly seconds: number };

/** The most lines one example may span: a bound on every scan below. */
const EXAMPLE_LINES_MAX = 200;
/** Stands in for a `$` inside single quotes, which the shell does not expand. */
const LITERAL_DOLLAR = "\u0001";
/** Marks "more fields or elements than shown" in parsed documented JSON. */
export const ELIDED = "…";

const REQUEST_LINE = /^(GET|HEAD|PUT|POST|DELETE|PATCH|OPTIONS) (\/\S*)(?: HTTP\/1\.1)?$/;
const STATUS_LINE = /^HTTP\/1\.1 (\d{3})(?: .*)?$/;
const HEADER_LINE = /^([A-Za-z0-9-]+):\s?(.*)$/;

/** Every step of one markdown page: its `http` blocks and its `sh` blocks' curl commands. */
export function parseDoc(file: string, text: string): DocStep[] {
  const lines = text.split("\n");
  const steps: DocStep[] = [];
  for (let n = 0; n < lines.length; n += 1) {
    const fence = /^\s*```(\w*)\s*$/.exec(lines[n] as string);
    if (fence === null) continue;
    const start = n + 1;
    let end = start;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end] as string)) end += 1;
    const block = lines.slice(start, end);
    if (fence[1] === "http") steps.push(...parseHttp(file, start + 1, block));
    else if (fence[1] === "sh" || fence[1] === "bash" || fence[1] === "shell")
      steps.push(...parseSh(file, start + 1, block));
    n = end;
  }
  return steps;
}

/** An `http` block: request line, headers, blank, body; status line, headers, blank, body; again. */
function parseHttp(file: string, firstLine: number, block: readonly string[]): DocStep[] {
  const steps: DocStep[] = [];
  const at = (i: number): string => `${file}:${firstLine + i}`;
  let i = 0;
  const skipBlank = (): void => {
    while (i < block.length && (block[i] as string).trim() === "") i += 1;
  };
  const headers = (): Array<[string, string]> => {
    const out: Array<[string, string]> = [];
    for (; i < block.length; i += 1) {
      const line = block[i] as string;
      if (line.trim() === "" || REQUEST_LINE.test(line) || STATUS_LINE.test(line)) break;
      const header = HEADER_LINE.exec(line);
      if (header === null) throw new Error(`${at(i)}: not a header line: ${line}`);
      out.push([header[1] as string, header[2] as string]);
    }
    return out;
  };
  const body = (until: RegExp): string | null => {
    const out: string[] = [];
    for (; i < block.length && !until.test(block[i] as string); i += 1) out.push(block[i] as string);
    const text = out.join("\n").trim();
    return text === "" ? null : text;
  };
  for (skipBlank(); i < block.length; skipBlank()) {
    const request = REQUEST_LINE.exec(block[i] as string);
    if (request === null) throw new Error(`${at(i)}: expected a request line such as "GET /v1/kv/k"`);
    const line = firstLine + i;
    i += 1;
    const requestHeaders = headers();
    const requestBody = body(STATUS_LINE);
    const status = STATUS_LINE.exec(block[i] ?? "");
    if (status === null) throw new Error(`${file}:${line}: the request has no "HTTP/1.1 <status>" answer`);
    i += 1;
    const answerHeaders = headers();
    const answerBody = body(REQUEST_LINE);
    if (i - (line - firstLine) > EXAMPLE_LINES_MAX) throw new Error(`${file}:${line}: example too long`);
    steps.push({
      kind: "example",
      example: {
        file,
        line,
        form: "http",
        request: {
          method: request[1] as string,
          path: request[2] as string,
          headers: requestHeaders.map(([name, value]) => `${name}: ${value}`),
          body: requestBody,
        },
        answer: { status: Number(status[1]), headers: answerHeaders, body: answerBody },
      },
    });
  }
  return steps;
}

/** The step of one curl command of an `sh` block. */
function shStep(
  file: string,
  line: number,
  request: DocRequest,
  answer: DocAnswer | null,
  capture?: DocExample["capture"],
): DocStep {
  return { kind: "example", example: { file, line, form: "sh", request, answer, ...(capture ? { capture } : {}) } };
}

/** An `sh` block: variable assignments, `sleep`, and curl commands with the answers shown after them. */
function parseSh(file: string, firstLine: number, block: readonly string[]): DocStep[] {
  const steps: DocStep[] = [];
  for (let i = 0; i < block.length; i += 1) {
    const line = firstLine + i;
    let command = (block[i] as string).trim();
    for (let more = 0; command.endsWith("\\") && i + 1 < block.length && more < EXAMPLE_LINES_MAX; more += 1) {
      i += 1;
      command = `${command.slice(0, -1).trimEnd()} ${(block[i] as string).trim()}`;
    }
    const shown: string[] = [];
    while (i + 1 < block.length && /^\s*#/.test(block[i + 1] as string) && shown.length < EXAMPLE_LINES_MAX) {
      i += 1;
      shown.push((block[i] as string).replace(/^\s*#\s*/, ""));
    }
    const assign = /^([A-Z_]+)=(?:'([^']*)'|"([^"]*)")$/.exec(command);
    const sleep = /^sleep (\d+)$/.exec(command);
    const capture = /^([A-Z_]+)=\$\((curl .*)\)$/.exec(command);
    if (assign !== null)
      steps.push({ kind: "set", line, name: assign[1] as string, value: assign[2] ?? assign[3] ?? "" });
    else if (sleep !== null) steps.push({ kind: "sleep", line, seconds: Number(sleep[1]) });
    else if (capture !== null) {
      const header = /\|\s*grep -i '\^([A-Za-z0-9-]+):'/.exec(capture[2] as string);
      if (header === null) throw new Error(`${file}:${line}: a $(curl …) must grep one header: grep -i '^name:'`);
      const { request } = curlRequest(file, line, capture[2] as string);
      steps.push(shStep(file, line, request, null, { name: capture[1] as string, header: header[1] as string }));
    } else if (command.startsWith("curl ")) {
      const { request, bodyShown } = curlRequest(file, line, command);
      if (shown.length > 0 && !bodyShown)
        throw new Error(
          `${file}:${line}: an answer is shown, but the command does not print the body (use an http block)`,
        );
      const json = /^[[{]/.test(shown[0] ?? "");
      const body = shown.length === 0 ? null : shown.join(json ? "" : "\n");
      steps.push(shStep(file, line, request, body === null ? null : { status: null, headers: [], body }));
    }
  }
  return steps;
}

/** The words of a shell command line (quotes undone), up to an unquoted `|` or `#`. */
function shellWords(command: string): { words: string[]; piped: boolean } {
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < command.length; i += 1) {
    const c = command[i] as string;
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unbalanced quote in: ${command}`);
      word = (word ?? "") + command.slice(i + 1, end).replaceAll("$", LITERAL_DOLLAR);
      i = end;
    } else if (c === '"') {
      let text = "";
      let j = i + 1;
      for (; j < command.length && command[j] !== '"'; j += 1) {
        if (command[j] === "\\" && /["\\$`]/.test(command[j + 1] ?? "")) j += 1;
        text += command[j];
      }
      if (j >= command.length) throw new Error(`unbalanced quote in: ${command}`);
      word = (word ?? "") + text;
      i = j;
    } else if (c === " " || c === "\t") {
      if (word !== null) words.push(word);
      word = null;
    } else if ((c === "|" || c === "#") && word === null) return { words, piped: c === "|" };
    else word = (word ?? "") + c;
  }
  if (word !== null) words.push(word);
  return { words, piped: false };
}

/** The request a curl command sends, and whether what it prints is the answer's body. */
function curlRequest(file: string, line: number, command: string): { request: DocRequest; bodyShown: boolean } {
  const { words, piped } = shellWords(command);
  const headers: string[] = [];
  let method: string | null = null;
  let body: string | null = null;
  let url: string | null = null;
  let bodyShown = !piped;
  for (let i = 1; i < words.length; i += 1) {
    const word = words[i] as string;
    const next = (): string => {
      i += 1;
      if (i >= words.length) throw new Error(`${file}:${line}: ${word} takes a value`);
      return words[i] as string;
    };
    if (word === "-X" || word === "--request") method = next();
    else if (word === "-H" || word === "--header") headers.push(next());
    else if (["-d", "--data", "--data-binary", "--data-raw"].includes(word)) body = next();
    else if (word === "-w" || word === "--write-out") next();
    else if (word === "-o" || word === "--output" || word === "-D" || word === "--dump-header") {
      next();
      bodyShown = false;
    } else if (word === "--head") method = "HEAD";
    else if (/^-[a-zA-Z]+$/.test(word)) {
      if (word.includes("I")) method = "HEAD";
      if (/[iIN]/.test(word)) bodyShown = false;
    } else if (word.startsWith("-")) throw new Error(`${file}:${line}: curl option ${word} is not understood`);
    else url = word;
  }
  const path = /^(?:https?:\/\/)?(?:localhost|127\.0\.0\.1)(?::\d+)?(\/.*)$/.exec(url ?? "")?.[1];
  if (path === undefined) throw new Error(`${file}:${line}: no localhost URL in: ${command}`);
  // curl sends --data as a form unless told otherwise.
  if (body !== null && !headers.some((header) => /^content-type:/i.test(header)))
    headers.push("Content-Type: application/x-www-form-urlencoded");
  return { request: { method: method ?? (body === null ? "GET" : "POST"), path, headers, body }, bodyShown };
}

/**
 * Replaces `{{name}}` (and in sh, `$NAME` and `${NAME}`) with the values captured so far;
 * unknown names throw.
 */
export function expand(text: string, vars: ReadonlyMap<string, string>, form: DocExample["form"]): string {
  const value = (name: string): string => {
    const v = vars.get(name);
    if (v === undefined) throw new Error(`"${name}" is used before an earlier example sets it`);
    return v;
  };
  const done = text.replaceAll(/\{\{(\w+)\}\}/g, (_, name: string) => value(name));
  if (form === "http") return done;
  return done.replaceAll(/\$\{?([A-Za-z_]\w*)\}?/g, (_, name: string) => value(name)).replaceAll(LITERAL_DOLLAR, "$");
}

/** A header line split into name and value; throws when it is not one. */
export function splitHeader(line: string): [string, string] {
  const header = HEADER_LINE.exec(line);
  if (header === null) throw new Error(`not a header: ${line}`);
  return [header[1] as string, header[2] as string];
}

/**
 * Documented JSON, where `…` stands for more fields (in an object) or more elements (in an
 * array): each `…` outside a string becomes the member `"…": null` or the element `"…"`.
 */
export function parseDocumentedJson(text: string): unknown {
  let out = "";
  const stack: string[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i] as string;
    if (inString) {
      out += c;
      if (c === "\\") out += text[(i += 1)] ?? "";
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === ELIDED) out += stack.at(-1) === "{" ? `"${ELIDED}":null` : `"${ELIDED}"`;
    else {
      if (c === "{" || c === "[") stack.push(c);
      if (c === "}" || c === "]") stack.pop();
      out += c;
    }
  }
  return JSON.parse(out);
}

const PLACEHOLDER = /^\{\{(\w+)\}\}$/;

/** Whether a JSON value is an array, an object, or a value (string, number, boolean, null). */
function kind(value: unknown): string {
  if (Array.isArray(value)) return "array";
  return value !== null && typeof value === "object" ? "object" : "value";
}

/**
 * How `real` differs in shape from `documented` (empty: it does not): the same field names at
 * every depth (`…` allows more), at least as many array elements as shown, each of them alike,
 * and objects or arrays where the docs show them. Values may differ. A string `"{{name}}"`
 * captures the real value into `captures`.
 */
export function shapeProblems(documented: unknown, real: unknown, captures: Map<string, string>, path = "$"): string[] {
  if (typeof documented === "string") {
    const name = PLACEHOLDER.exec(documented)?.[1];
    if (name !== undefined) captures.set(name, typeof real === "string" ? real : JSON.stringify(real));
  }
  if (kind(documented) !== kind(real))
    return [`${path}: the docs show ${kind(documented)}, the store answers ${kind(real)}`];
  if (Array.isArray(documented)) {
    const shown = documented.filter((e) => e !== ELIDED);
    const answered = real as unknown[];
    if (answered.length < shown.length)
      return [`${path}: the docs show ${shown.length} elements, the store answers ${answered.length}`];
    return shown.flatMap((e, i) => shapeProblems(e, answered[i], captures, `${path}[${i}]`));
  }
  if (kind(documented) !== "object") return [];
  const shown = documented as Record<string, unknown>;
  const answered = real as Record<string, unknown>;
  const problems: string[] = [];
  for (const name of Object.keys(shown))
    if (name !== ELIDED && !(name in answered)) problems.push(`${path}: no field "${name}" in the answer`);
  if (!(ELIDED in shown))
    for (const name of Object.keys(answered))
      if (!(name in shown)) problems.push(`${path}: field "${name}" is answered but not shown (or add …)`);
  for (const name of Object.keys(shown))
    if (name !== ELIDED && name in answered)
      problems.push(...shapeProblems(shown[name], answered[name], captures, `${path}.${name}`));
  return problems;
}

/** Whether `real` text matches documented text, where `…` stands for any text. */
export function textMatches(documented: string, real: string): boolean {
  const pattern = documented
    .trim()
    .split(ELIDED)
    .map((part) => part.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join("[\\s\\S]*");
  return new RegExp(`^${pattern}$`).test(real.trim());
}

/** The events of a Server-Sent Events text that carry data: field name to value. */
export function sseEvents(text: string): Array<Map<string, string>> {
  return text
    .split(/\r?\n\r?\n/)
    .map((event) => {
      const fields = new Map<string, string>();
      for (const line of event.split(/\r?\n/)) {
        const field = /^([a-z]+): ?(.*)$/.exec(line);
        if (field !== null) fields.set(field[1] as string, field[2] as string);
      }
      return fields;
    })
    .filter((fields) => fields.has("data"));
}

/** The error code a documented JSON body shows, if it is an error. */
export function errorCode(value: unknown): string | undefined {
  const code = (value as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * What is wrong with a real answer given the documented one (empty: nothing). `body` is the
 * real body's text (for a stream, what arrived of it). Captures `{{name}}` placeholders.
 */
export function answerProblems(
  answer: DocAnswer,
  real: { status: number; headers: Headers; body: string },
  captures: Map<string, string>,
): string[] {
  const problems: string[] = [];
  const contentType = real.headers.get("content-type") ?? "";
  let documentedJson: unknown;
  const shownJson = answer.body !== null && /^[[{]/.test(answer.body) && !contentType.startsWith("text/event-stream");
  if (shownJson) documentedJson = parseDocumentedJson(answer.body as string);
  if (answer.status !== null) {
    if (real.status !== answer.status) problems.push(`status ${real.status}, the docs show ${answer.status}`);
  } else if (errorCode(documentedJson) !== undefined) {
    if (real.status < 400) problems.push(`status ${real.status}, the docs show an error`);
  } else if (real.status < 200 || real.status > 299) problems.push(`status ${real.status}, the docs show a success`);
  for (const [name, value] of answer.headers) {
    const got = real.headers.get(name);
    if (got === null) problems.push(`no ${name} header in the answer`);
    const placeholder = PLACEHOLDER.exec(value)?.[1];
    if (placeholder !== undefined && got !== null) captures.set(placeholder, got);
  }
  if (answer.body === null) return problems;
  if (contentType.startsWith("text/event-stream")) {
    const shown = sseEvents(answer.body);
    const got = sseEvents(real.body);
    if (got.length < shown.length) return [...problems, `${shown.length} events shown, ${got.length} arrived`];
    shown.forEach((event, i) => {
      const gotEvent = got[i] as Map<string, string>;
      if (fieldNames(event) !== fieldNames(gotEvent))
        problems.push(`event ${i}: fields ${fieldNames(gotEvent)}, shown ${fieldNames(event)}`);
      const data = event.get("data") as string;
      const gotData = gotEvent.get("data") ?? "";
      if (/^[[{]/.test(data)) problems.push(...sseDataProblems(data, gotData, captures, i));
      else if (!textMatches(data, gotData)) problems.push(`event ${i}: data ${gotData}`);
    });
    return problems;
  }
  if (!shownJson) {
    if (!textMatches(answer.body, real.body)) problems.push(`body ${JSON.stringify(real.body.slice(0, 300))}`);
    return problems;
  }
  let realJson: unknown;
  try {
    realJson = JSON.parse(real.body);
  } catch {
    return [...problems, `the answer is not JSON: ${real.body.slice(0, 300)}`];
  }
  const code = errorCode(documentedJson);
  if (code !== undefined && errorCode(realJson) !== code)
    problems.push(`error code ${String(errorCode(realJson))}, the docs show ${code}`);
  const shape = shapeProblems(documentedJson, realJson, captures);
  if (shape.length > 0) problems.push(...shape, `the answer: ${real.body.slice(0, 600)}`);
  return problems;
}

/** An event's field names, sorted. */
function fieldNames(event: Map<string, string>): string {
  return [...event.keys()].sort().join(",");
}

/** The shape problems of one event's JSON data. */
function sseDataProblems(data: string, got: string, captures: Map<string, string>, i: number): string[] {
  try {
    return shapeProblems(parseDocumentedJson(data), JSON.parse(got), captures, `event ${i} data`);
  } catch {
    return [`event ${i}: data is not JSON: ${got}`];
  }
}
