/**
 * The API's description, served: `GET /openapi.json` (generated from `shared/api.ts`) and
 * `GET /docs`, Swagger UI over it. Swagger UI's files are bundled into the Worker, so the
 * reference works with no network beyond the store itself.
 */
import { type Hono } from "hono";
import swaggerBundle from "swagger-ui-dist/swagger-ui-bundle.js";
import swaggerCss from "swagger-ui-dist/swagger-ui.css";
import { ROUTES, openApiDocument } from "../../shared/api.ts";
import { StoreError } from "../../shared/errors.ts";
import { type AppEnv } from "./env.ts";
import { mount } from "./mount.ts";

/** The document, generated once per isolate. */
let documentText: string | undefined;

/** The files `/docs` loads, by name. */
export const DOCS_ASSETS: Readonly<Record<string, { readonly body: string; readonly type: string }>> = {
  "swagger-ui-bundle.js": { body: swaggerBundle, type: "text/javascript; charset=utf-8" },
  "swagger-ui.css": { body: swaggerCss, type: "text/css; charset=utf-8" },
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Geo-replicated KV: API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
// No validator badge: it would be fetched from the network.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true, validatorUrl: null });
</script>
</body>
</html>
`;

/** Mounts `/openapi.json`, `/docs` and its files. */
export function mountDocs(app: Hono<AppEnv>): void {
  mount(app, ROUTES.openapi, (c) => {
    documentText ??= JSON.stringify(openApiDocument());
    return c.body(documentText, 200, { "Content-Type": "application/json" });
  });
  mount(app, ROUTES.docs, (c) => c.html(PAGE));
  mount(app, ROUTES.docsAsset, (c) => {
    const asset = DOCS_ASSETS[c.req.param("asset") ?? ""];
    if (asset === undefined) throw new StoreError("not_found", "no such file of the API reference");
    return c.body(asset.body, 200, { "Content-Type": asset.type, "Cache-Control": "public, max-age=86400" });
  });
}
