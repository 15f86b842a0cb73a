import { Hono } from "hono";
export { Replica } from "./replica.ts";

const app = new Hono<{ Bindings: Env }>();
app.get("/healthz", (c) => c.json({ status: "ok", regions: c.env.REGIONS.split(",") }));

export default { fetch: app.fetch } satisfies ExportedHandler<Env>;
