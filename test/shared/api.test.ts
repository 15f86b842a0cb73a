// The OpenAPI document generated from the route definitions: valid OpenAPI 3.1 by the official
// schema, and complete: every error code, every route's errors by status, and the Bearer scheme.
import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import { type ApiRoute, ROUTES, errorsOf, openApiDocument } from "../../shared/api.ts";
import { ERROR_STATUS } from "../../shared/errors.ts";

const document = openApiDocument();
const routes = Object.values(ROUTES) as ApiRoute[];

interface Operation {
  operationId: string;
  security: Array<Record<string, string[]>>;
  parameters?: Array<{ name: string; in: string }>;
  responses: Record<string, { content?: Record<string, { schema: { properties?: Record<string, unknown> } }> }>;
}

function operation(route: ApiRoute): Operation {
  const op = (document.paths?.[route.path] as Record<string, Operation> | undefined)?.[route.method];
  if (op === undefined) throw new Error(`${route.method} ${route.path} is not in the document`);
  return op;
}

/** The codes an error answer's schema allows. */
function codesOf(op: Operation, status: string): string[] {
  const body = op.responses[status]?.content?.["application/json"]?.schema;
  const error = body?.properties?.error as { properties: { code: { enum: string[] } } } | undefined;
  return error?.properties.code.enum ?? [];
}

describe("the OpenAPI document", () => {
  it("validates against the OpenAPI 3.1 schema", async () => {
    const result = await new Validator().validate(JSON.parse(JSON.stringify(document)) as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(document.openapi).toBe("3.1.0");
  });

  it("has every route, with its operation id and path parameters", () => {
    for (const route of routes) {
      const op = operation(route);
      expect(op.operationId).toBe(route.operationId);
      for (const name of route.path.match(/\{(\w+)\}/g) ?? []) {
        expect(op.parameters).toContainEqual(expect.objectContaining({ name: name.slice(1, -1), in: "path" }));
      }
    }
    const operations = Object.values(document.paths ?? {}).flatMap((p) => Object.keys(p as object));
    expect(operations).toHaveLength(routes.length);
  });

  it("names every error code, and each route's codes under their own status", () => {
    const all = Object.keys(ERROR_STATUS);
    const component = document.components?.schemas?.ErrorCode as { enum: string[] };
    expect(component.enum).toEqual(all);
    const answered = new Set<string>();
    for (const route of routes) {
      const op = operation(route);
      for (const code of errorsOf(route)) {
        expect(codesOf(op, String(ERROR_STATUS[code]))).toContain(code);
        answered.add(code);
      }
    }
    expect(all.filter((code) => !answered.has(code))).toEqual([]);
  });

  it("asks for the Bearer token on every route but the open ones", () => {
    expect(document.components?.securitySchemes?.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    for (const route of routes) {
      const op = operation(route);
      expect(op.security).toEqual(route.auth === null ? [] : [{ bearer: [] }]);
      expect(Object.keys(op.responses).includes("401")).toBe(route.auth !== null);
    }
  });

  it("describes the Workers KV extras of PUT and the listing", () => {
    const put = operation(ROUTES.putKey);
    const names = (put.parameters ?? []).map((p) => `${p.in}:${p.name}`);
    expect(names).toEqual(
      expect.arrayContaining(["query:expiration", "query:expiration_ttl", "header:x-kv-metadata", "query:ack"]),
    );
    expect(JSON.stringify(operation(ROUTES.listKeys).responses["200"])).toContain('"metadata"');
  });
});
