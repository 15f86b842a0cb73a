// The documentation's examples against the store's real answers, so the two cannot drift.
//
// Every page (README.md, docs/*.md) is parsed; its examples run in document order against one
// store (started as `npm start` starts it, with FAULTS on for the fault-injection examples), and
// then all again on the same store, as a reader who pastes them twice would. Variables and
// placeholders carry over within a page. Two forms of example are understood:
//
// - An `http` block holds one or more request/answer pairs:
//
//       PUT /v1/kv/greeting?region=enam&ack=all        request line
//       Content-Type: text/plain                       request headers (optional)
//                                                      blank line, then the body (optional)
//       hello
//       HTTP/1.1 200 OK                                the answer's status
//       ETag: "{{etag}}"                               answer headers that matter (optional)
//                                                      blank line, then the body (optional)
//       {"key":"greeting","region":"enam","version":"AQEB","acked":["enam",…]}
//
//   A request without an `Authorization` header is sent with `Bearer dev-token` (admin).
// - An `sh` block: `NAME='value'` sets `$NAME` (`$T` starts as the admin `Authorization`
//   header); `sleep N` waits; `curl …` (over `\`-continued lines) is sent with its `-X`, `-H`
//   and `--data`; the `#` lines right after it are its answer. `NAME=$(curl … | grep -i
//   '^header:' …)` sets NAME to that answer header. Without a status, a shown error must come
//   with an error status, anything else with a 2xx; a command with no answer shown must not
//   answer 5xx. A command that prints no body (`-i`, `-I`, `-o`, `-D`, `-N`, a pipe) may show
//   no answer: use an `http` block for headers.
//
// What is checked: the status; every header named (its value is not compared); a JSON body by
// shape: the same field names at every depth, at least the array elements shown, each alike
// (values may differ, except an error's `code`); `…` outside a string allows more fields or
// elements. Other text must match, `…` standing for any text; a `text/event-stream` is read
// until the events shown have arrived, each compared as above. `{{name}}` in an answer (a
// header's value, or a JSON string) captures the real value; in a later request it is replaced
// by it, as `$NAME` is in sh.
import { readFileSync, readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, READ_TOKEN, call, ownStore } from "./client.ts";
import {
  type DocAnswer,
  type DocExample,
  type DocStep,
  answerProblems,
  expand,
  parseDoc,
  parseDocumentedJson,
  shapeProblems,
  splitHeader,
  sseEvents,
} from "./doc-examples.ts";

/** Every page the test covers, in the order it runs them. */
const PAGES = [
  "README.md",
  ...readdirSync("docs")
    .filter((name) => name.endsWith(".md"))
    .sort()
    .map((name) => `docs/${name}`),
];

/** The fewest examples with a shown answer each page must yield: a parser that finds nothing fails. */
const ANSWERS_MIN: Readonly<Record<string, number>> = {
  "README.md": 5,
  "docs/api.md": 25,
  "docs/consistency.md": 3,
  "docs/operations.md": 2,
};

/** How long a stream is read for the events an example shows. */
const STREAM_WAIT_MS = 10_000;
/** The longest `sleep` an example may ask for. */
const SLEEP_SECONDS_MAX = 30;

const stepsOf = (page: string): DocStep[] => parseDoc(page, readFileSync(page, "utf8"));

/** The docs' local tokens, as the store under test knows them. */
function localToken(value: string): string {
  return value
    .replace(/Bearer dev-read-token\b/, `Bearer ${READ_TOKEN}`)
    .replace(/Bearer dev-token\b/, `Bearer ${ADMIN_TOKEN}`);
}

/** The body of `res`: all of it, or of a stream what arrives until the events `answer` shows have. */
async function bodyOf(res: Response, answer: DocAnswer | null): Promise<string> {
  if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) return res.text();
  const wanted = answer?.body === null || answer === null ? 0 : sseEvents(answer.body).length;
  const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
  const deadline = performance.now() + STREAM_WAIT_MS;
  let text = "";
  while (sseEvents(text).length < wanted && performance.now() < deadline) {
    const chunk = await Promise.race([
      reader.read(),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), deadline - performance.now())),
    ]);
    if (chunk === null || chunk.done) break;
    text += chunk.value;
  }
  await reader.cancel();
  return text;
}

/** Sends one example's request; what is wrong with the answer (empty: nothing). */
async function runExample(example: DocExample, vars: Map<string, string>): Promise<string[]> {
  const { request, form } = example;
  const headers = new Headers(request.headers.map((line) => splitHeader(localToken(expand(line, vars, form)))));
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  const res = await call(expand(request.path, vars, form), {
    method: request.method,
    headers,
    body: request.body === null ? undefined : expand(request.body, vars, form),
    token: null,
  });
  const body = await bodyOf(res, example.answer);
  if (example.capture !== undefined) {
    const value = res.headers.get(example.capture.header);
    if (value === null) return [`no ${example.capture.header} header to set ${example.capture.name} from`];
    vars.set(example.capture.name, value);
  }
  if (example.answer === null) return res.status >= 500 ? [`status ${res.status}: ${body.slice(0, 300)}`] : [];
  return answerProblems(example.answer, { status: res.status, headers: res.headers, body }, vars);
}

/** Runs a page's examples in order; every problem, each with its line. */
async function runPage(page: string): Promise<string[]> {
  const vars = new Map([["T", `Authorization: Bearer ${ADMIN_TOKEN}`]]);
  const problems: string[] = [];
  for (const step of stepsOf(page)) {
    if (step.kind === "set") vars.set(step.name, step.value);
    else if (step.kind === "sleep") {
      if (step.seconds > SLEEP_SECONDS_MAX)
        problems.push(`${page}:${step.line}: sleep ${step.seconds}: at most ${SLEEP_SECONDS_MAX} s, please`);
      else await new Promise((resolve) => setTimeout(resolve, step.seconds * 1000));
    } else {
      const { example } = step;
      const where = `${page}:${example.line} ${example.request.method} ${example.request.path}`;
      try {
        for (const problem of await runExample(example, vars)) problems.push(`${where}: ${problem}`);
      } catch (error) {
        problems.push(`${where}: ${String(error)}`);
      }
    }
  }
  return problems;
}

/** The answers a sample example is checked against, in the unit tests of the checker. */
function judge(answer: DocAnswer, status: number, body: string, headers: Record<string, string> = {}): string[] {
  return answerProblems(answer, { status, headers: new Headers(headers), body }, new Map());
}

describe("the documentation's examples are parsed", () => {
  it.each(PAGES)("%s yields at least its share of examples with answers, and parses", (page) => {
    const answered = stepsOf(page).filter((s) => s.kind === "example" && s.example.answer !== null);
    expect(answered.length).toBeGreaterThanOrEqual(ANSWERS_MIN[page] ?? 0);
  });

  it("covers the pages the minimums name", () => {
    for (const page of Object.keys(ANSWERS_MIN)) expect(PAGES).toContain(page);
  });

  it("reads both forms: an http pair with headers and a body, a curl with its shown answer", () => {
    const text = [
      "```http",
      "PUT /v1/kv/k?ack=all",
      "Content-Type: text/plain",
      "",
      "v",
      "HTTP/1.1 200 OK",
      'ETag: "{{etag}}"',
      "",
      '{"key":"k","acked":["enam",…]}',
      "",
      "GET /v1/kv/k",
      'If-None-Match: "{{etag}}"',
      "HTTP/1.1 304",
      "```",
      "```sh",
      "curl -s -X POST 'localhost:8787/v1/counters/c' -H \"$T\" \\",
      "  --data '{\"delta\":1}'",
      '#   {"key":"c",',
      '#    "value":1}',
      "```",
    ].join("\n");
    const examples = parseDoc("t.md", text).flatMap((s) => (s.kind === "example" ? [s.example] : []));
    expect(examples.map((e) => [e.line, e.form, e.request.method, e.request.path, e.request.body])).toEqual([
      [2, "http", "PUT", "/v1/kv/k?ack=all", "v"],
      [11, "http", "GET", "/v1/kv/k", null],
      [16, "sh", "POST", "/v1/counters/c", '{"delta":1}'],
    ]);
    expect(examples[0]?.answer).toEqual({
      status: 200,
      headers: [["ETag", '"{{etag}}"']],
      body: '{"key":"k","acked":["enam",…]}',
    });
    expect(examples[1]?.request.headers).toEqual(['If-None-Match: "{{etag}}"']);
    expect(examples[2]?.answer?.body).toBe('{"key":"c","value":1}');
  });

  it("refuses an http request without an answer, and a shown answer of a command that prints none", () => {
    expect(() => parseDoc("t.md", "```http\nGET /v1/kv/k\n```")).toThrow(/no "HTTP\/1.1 <status>"/);
    expect(() => parseDoc("t.md", "```sh\ncurl -si 'localhost:8787/v1/kv/k'\n# hello\n```")).toThrow(/http block/);
  });
});

describe("the checker of an answer", () => {
  const put: DocAnswer = {
    status: 200,
    headers: [["X-Session-Token", "{{token}}"]],
    body: '{"key":"k","version":"AQEB","acked":["enam",…]}',
  };
  const good = '{"key":"k","version":"AgEC","acked":["enam","wnam"]}';

  it("accepts other values, elided elements, and captures placeholders", () => {
    const captures = new Map<string, string>();
    const problems = answerProblems(
      put,
      { status: 200, headers: new Headers({ "x-session-token": "s3.x" }), body: good },
      captures,
    );
    expect(problems).toEqual([]);
    expect(captures.get("token")).toBe("s3.x");
  });

  it("finds a wrong status, a missing header, a missing field and an unshown field", () => {
    const headers = { "x-session-token": "s" };
    expect(judge(put, 201, good, headers)).toEqual(["status 201, the docs show 200"]);
    expect(judge(put, 200, good)).toEqual(["no X-Session-Token header in the answer"]);
    expect(judge(put, 200, '{"key":"k","acked":[]}', headers)[0]).toMatch(/no field "version"/);
    expect(judge(put, 200, '{"key":"k","version":"A","acked":["enam"],"extra":1}', headers)[0]).toMatch(/"extra"/);
    expect(judge(put, 200, '{"key":"k","version":"A","acked":{}}', headers)[0]).toMatch(/show array/);
  });

  it("holds an error to its code, and a statusless sh answer to success or failure as shown", () => {
    const error: DocAnswer = { status: null, headers: [], body: '{"error":{"code":"not_found","message":"…"}}' };
    expect(judge(error, 404, '{"error":{"code":"not_found","message":"x"}}')).toEqual([]);
    expect(judge(error, 400, '{"error":{"code":"invalid_key","message":"x"}}')[0]).toMatch(/error code invalid_key/);
    expect(judge(error, 200, '{"error":{"code":"not_found","message":"x"}}')[0]).toMatch(/shows? an error/);
    expect(judge({ status: null, headers: [], body: "hello" }, 404, "hello")[0]).toMatch(/success/);
  });

  it("matches text with … as any text, and events by their fields and data", () => {
    const text: DocAnswer = { status: 200, headers: [], body: "replication_lag_seconds{…} …" };
    expect(judge(text, 200, 'replication_lag_seconds{from="a"} 0.1')).toEqual([]);
    expect(judge(text, 200, "other 1")[0]).toMatch(/^body/);
    const stream: DocAnswer = { status: 200, headers: [], body: 'id: w.1.0\ndata: {"key":"k","origin":"enam"}' };
    const sse = { "content-type": "text/event-stream" };
    expect(judge(stream, 200, 'retry: 1\n\nid: w.2.0\ndata: {"key":"j","origin":"wnam"}\n\n', sse)).toEqual([]);
    expect(judge(stream, 200, 'id: w.2.0\ndata: {"key":"j"}\n\n', sse)[0]).toMatch(/no field "origin"/);
  });

  it("reads … in documented JSON as more fields or elements", () => {
    expect(parseDocumentedJson('{"a":[1,…],…,"b":{…}}')).toEqual({ a: [1, "…"], "…": null, b: { "…": null } });
    expect(shapeProblems(parseDocumentedJson('{"a":{…}}'), { a: { x: 1 } }, new Map())).toEqual([]);
    expect(shapeProblems(parseDocumentedJson('{"a":{}}'), { a: { x: 1 } }, new Map())).toHaveLength(1);
  });
});

describe("the documentation's examples answer what they show", () => {
  const store = ownStore("kv-e2e-doc-examples");
  beforeAll(() => store.start({ FAULTS: "on" }));
  afterAll(() => store.cleanup());

  // The second pass is a reader pasting the examples again into the same store: examples must
  // not depend on a fresh store (unique keys, or idempotent requests).
  describe.each(["once", "twice"])("run %s", () => {
    it.each(PAGES)(
      "%s",
      async (page) => {
        const problems = await runPage(page);
        // A store-side failure (a 500) is explained by what the store logged.
        const logged =
          problems.length === 0
            ? ""
            : store
                .log()
                .split("\n")
                .filter((l) => /rror/.test(l))
                .slice(-20);
        expect(problems, `the store logged:\n${logged === "" ? "" : logged.join("\n")}`).toEqual([]);
      },
      120_000,
    );
  });
});
