/**
 * `GET /`: the live dashboard, one self-contained page (no asset from a CDN). It asks for a token
 * once (kept in the tab's sessionStorage only) and then polls the API every two seconds:
 * `/v1/regions` (health, lag per pair, primaries), `/metrics` (rates, dead letters),
 * `/v1/conflicts`, and with an admin token the dead letters, their replay, and taking a region
 * out of service and back. The world map is Natural Earth's 110m land (world-atlas), projected
 * once per isolate.
 */
import { type Hono } from "hono";
import { feature } from "topojson-client";
import land from "world-atlas/land-110m.json";
import { ROUTES } from "../../shared/api.ts";
import { type AppEnv } from "./env.ts";
import { mount } from "./mount.ts";

/** The map's size in SVG units: an equirectangular projection, 2 units per degree. */
export const MAP_WIDTH = 720;
export const MAP_HEIGHT = 360;

/** x and y of a longitude and latitude on the map. */
function project(lon: number, lat: number): [number, number] {
  return [((lon + 180) / 360) * MAP_WIDTH, ((90 - lat) / 180) * MAP_HEIGHT];
}

/** The land as one SVG path, from world-atlas's TopoJSON. */
function landPath(): string {
  const topology = land as unknown as Parameters<typeof feature>[0];
  const object = (land as unknown as { objects: { land: Parameters<typeof feature>[1] } }).objects.land;
  const geo = feature(topology, object) as unknown as {
    features?: Array<{ geometry: { type: string; coordinates: number[][][] | number[][][][] } }>;
    geometry?: { type: string; coordinates: number[][][] | number[][][][] };
  };
  const geometries = geo.features?.map((f) => f.geometry) ?? (geo.geometry === undefined ? [] : [geo.geometry]);
  const rings: number[][][] = [];
  for (const g of geometries) {
    if (g.type === "Polygon") rings.push(...(g.coordinates as number[][][]));
    else if (g.type === "MultiPolygon") for (const polygon of g.coordinates as number[][][][]) rings.push(...polygon);
  }
  return rings
    .map(
      (ring) =>
        `M${ring
          .map(([lon, lat]) =>
            project(lon ?? 0, lat ?? 0)
              .map((v) => v.toFixed(1))
              .join(","),
          )
          .join("L")}Z`,
    )
    .join("");
}

let page: string | undefined;

/** The page, with the map drawn in. */
export function dashboardPage(): string {
  page ??= PAGE.replace("%LAND%", landPath());
  return page;
}

/** Mounts the dashboard. */
export function mountDashboard(app: Hono<AppEnv>): void {
  mount(app, ROUTES.dashboard, (c) => c.html(dashboardPage()));
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Geo-replicated KV: live</title>
<style>
  :root { --ok: #1a7f37; --warn: #b7791f; --bad: #c62828; --unknown: #6b7280; --line: #d0d7de; --bg: #f6f8fa; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; color: #1f2328; background: #fff; }
  header { display: flex; gap: 16px; align-items: center; padding: 10px 20px; border-bottom: 1px solid var(--line); background: var(--bg); flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  header .status { color: var(--unknown); }
  main { padding: 16px 20px; display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 20px; }
  section { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 15px; margin: 0 0 4px; }
  p.help { margin: 0 0 8px; color: #57606a; font-size: 13px; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-weight: 600; color: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
  .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); } .unknown { color: var(--unknown); }
  td.lag { font-weight: 600; } td.lag.ok { background: #dafbe1; } td.lag.warn { background: #fff8c5; } td.lag.bad { background: #ffebe9; } td.lag.unknown { background: #eaeef2; }
  .pill { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; color: #fff; }
  .pill.ok { background: var(--ok); color: #fff; } .pill.bad { background: var(--bad); color: #fff; } .pill.warn { background: var(--warn); color: #fff; }
  button { font: inherit; padding: 2px 10px; border: 1px solid var(--line); border-radius: 6px; background: #fff; cursor: pointer; }
  button:hover { background: var(--bg); }
  button.danger { color: var(--bad); border-color: #ffcecb; }
  svg { width: 100%; height: auto; background: #eaf2fb; border-radius: 6px; }
  svg .land { fill: #d8dee4; stroke: #afb8c1; stroke-width: .4; }
  svg text { font-size: 11px; font-weight: 600; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
  #login { display: none; }
  #login.shown { display: flex; gap: 8px; align-items: center; }
  .muted { color: #57606a; }
  code { font-size: 12px; }
  .rates { display: flex; gap: 24px; flex-wrap: wrap; }
  .rates div { min-width: 120px; } .rates b { display: block; font-size: 22px; }
</style>
</head>
<body>
<header>
  <h1>Geo-replicated KV &middot; live</h1>
  <form id="login"><label for="token">Token</label><input id="token" type="password" autocomplete="off" placeholder="a read or admin token" size="28"><button type="submit">Show the store</button><span class="muted">kept in this tab only</span></form>
  <span class="status" id="status">not connected</span>
  <button id="logout" type="button" hidden>Forget token</button>
</header>
<main>
  <section>
    <h2>Regions on the map</h2>
    <p class="help">Each dot is a region's replica at its location: green serves, red is out of service (the reason is in the table). A line joins two regions; its colour is the worse of their lags behind each other.</p>
    <svg id="map" viewBox="0 0 ${MAP_WIDTH} ${MAP_HEIGHT}" role="img" aria-label="world map of the regions"><path class="land" d="%LAND%"/><g id="links"></g><g id="dots"></g></svg>
  </section>
  <section>
    <h2>Traffic</h2>
    <p class="help">Requests the router answered per second (this router), and writes every region applied per second (its own and those replicated in), since the last refresh.</p>
    <div class="rates"><div>writes/s<b id="writes">&ndash;</b></div><div>reads/s<b id="reads">&ndash;</b></div><div>errors/s (5xx)<b id="errors">&ndash;</b></div></div>
    <table id="applied"><thead><tr><th>region</th><th>writes applied/s</th><th>keys</th><th>dead letters</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="wide">
    <h2>Regions</h2>
    <p class="help">Health as the router routes by it. Taking a region out (admin token) makes it act as if it were down: nothing is routed to it, and strong prefixes it leads fail over.</p>
    <table id="regions"><thead><tr><th>region</th><th>location</th><th>health</th><th>clock offset</th><th>shards</th><th></th></tr></thead><tbody></tbody></table>
  </section>
  <section class="wide">
    <h2>Replication lag</h2>
    <p class="help">How far the region of each row may be behind the region of each column: writes not yet applied, and milliseconds (green under 1 s, amber under 30 s, red beyond; grey when it cannot be told, e.g. no heartbeat heard yet).</p>
    <table id="lag"></table>
  </section>
  <section>
    <h2>Strong prefixes</h2>
    <p class="help">Keys under these prefixes have one primary region; a failover moves it and raises the epoch (writes of older epochs are fenced).</p>
    <table id="primaries"><thead><tr><th>prefix</th><th>primary</th><th>epoch</th><th>state</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Dead letters</h2>
    <p class="help">Replication messages a region could not apply after every retry. Anti-entropy repairs what they carried; replaying applies them now (admin token).</p>
    <table id="dead"><thead><tr><th>region</th><th>held</th><th></th></tr></thead><tbody></tbody></table>
  </section>
  <section class="wide">
    <h2>Conflicts</h2>
    <p class="help">Concurrent writes to one key that last-writer-wins resolved: every one is logged with both sides. Newest of the region <select id="conflictRegion"></select></p>
    <table id="conflicts"><thead><tr><th>detected</th><th>key</th><th>rule</th><th>winner</th><th>loser</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
"use strict";
const W = ${MAP_WIDTH}, H = ${MAP_HEIGHT};
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
let token = sessionStorage.getItem("kv-token");
let last = null; // the previous metrics sample, for rates
let conflictRegion = null;

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...(init.headers || {}), Authorization: "Bearer " + token } });
  if (res.status === 401) { forget("that token is not accepted"); throw new Error("unauthorized"); }
  return res;
}
function forget(why) {
  token = null; sessionStorage.removeItem("kv-token");
  $("login").classList.add("shown"); $("logout").hidden = true; $("status").textContent = why;
}
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem("kv-token", token);
  $("login").classList.remove("shown"); $("logout").hidden = false;
  refresh();
});
$("logout").addEventListener("click", () => forget("token forgotten"));
$("conflictRegion").addEventListener("change", (e) => { conflictRegion = e.target.value; refresh(); });

function lagClass(l) {
  if (!l || l.ms === null || l.ms === undefined) return "unknown";
  return l.ms < 1000 ? "ok" : l.ms < 30000 ? "warn" : "bad";
}
function lagText(l) {
  if (!l) return "&ndash;";
  const ms = l.ms === null || l.ms === undefined ? "? ms" : (l.ms < 1000 ? Math.round(l.ms) + " ms" : (l.ms / 1000).toFixed(1) + " s");
  return esc(l.entries) + " writes, " + ms + (l.reason ? '<br><span class="muted">' + esc(l.reason) + "</span>" : "");
}
const REASONS = {
  admin: "taken out by an admin",
  silent: "silent: no heartbeat heard lately",
  unreachable: "not answering",
  clock_skew: "clock too far from the others",
  bootstrapping: "bootstrapping: still copying its peers' data",
};
const reasonText = (r) => REASONS[r] || r || "";
const worse = (a, b) => ["ok", "warn", "bad", "unknown"].indexOf(a) > ["ok", "warn", "bad", "unknown"].indexOf(b) ? a : b;
const project = (loc) => [((loc.lon + 180) / 360) * W, ((90 - loc.lat) / 180) * H];

function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][\\w:]*)(?:\\{(.*)\\})? (\\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const p of (m[2] || "").matchAll(/(\\w+)="((?:[^"\\\\]|\\\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}
const sum = (samples, name, pred = () => true) => samples.filter((s) => s.name === name && pred(s.labels)).reduce((n, s) => n + s.value, 0);

function renderRegions(view, samples) {
  const ids = view.regions.map((r) => r.id);
  const byId = Object.fromEntries(view.regions.map((r) => [r.id, r]));
  // Map: links coloured by the worse lag of the pair, then dots.
  let links = "";
  for (let i = 0; i < ids.length; i++) for (let j = i + 1; j < ids.length; j++) {
    const a = byId[ids[i]], b = byId[ids[j]];
    const cls = worse(lagClass(a.lag[b.id]), lagClass(b.lag[a.id]));
    const [x1, y1] = project(a.location), [x2, y2] = project(b.location);
    links += '<line class="link ' + cls + '" data-pair="' + esc(a.id + "-" + b.id) + '" x1="' + x1 + '" y1="' + y1 + '" x2="' + x2 + '" y2="' + y2 + '" stroke="currentColor" stroke-width="1.5" stroke-opacity=".6"/>';
  }
  $("links").innerHTML = links;
  $("dots").innerHTML = view.regions.map((r) => {
    const [x, y] = project(r.location);
    const cls = r.healthy ? "ok" : "bad";
    return '<g class="region ' + cls + '" data-region="' + esc(r.id) + '"><circle cx="' + x + '" cy="' + y + '" r="7" fill="currentColor" stroke="#fff" stroke-width="2"><title>' + esc(r.id + (r.healthy ? " serves" : " is out: " + reasonText(r.reason))) + '</title></circle><text x="' + (x + 10) + '" y="' + (y + 4) + '" fill="currentColor">' + esc(r.id) + (r.id === view.closest ? " (you)" : "") + "</text></g>";
  }).join("");

  $("regions").querySelector("tbody").innerHTML = view.regions.map((r) => {
    const health = r.healthy ? '<span class="pill ok">serves</span>' : '<span class="pill bad">out</span> ' + esc(reasonText(r.reason));
    const boot = r.bootstrapping ? ' <span class="pill warn">bootstrapping</span>' : "";
    const offset = r.clockOffsetMs === null ? "&ndash;" : Math.round(r.clockOffsetMs) + " ms";
    const out = r.healthy || r.reason !== "admin";
    const action = out
      ? '<button class="danger" data-health="' + esc(r.id) + '" data-to="false">Take out</button>'
      : '<button data-health="' + esc(r.id) + '" data-to="true">Put back</button>';
    return '<tr data-region="' + esc(r.id) + '"><td><b>' + esc(r.id) + "</b></td><td>" + r.location.lat.toFixed(1) + ", " + r.location.lon.toFixed(1) + '</td><td class="health">' + health + boot + "</td><td>" + offset + "</td><td>" + view.shards.count + (view.shards.moving ? " (moving)" : "") + "</td><td>" + action + "</td></tr>";
  }).join("");

  let lag = "<thead><tr><th>behind &darr; / of &rarr;</th>" + ids.map((p) => "<th>" + esc(p) + "</th>").join("") + "</tr></thead><tbody>";
  for (const r of view.regions) {
    lag += "<tr><th>" + esc(r.id) + "</th>";
    for (const p of ids) lag += p === r.id ? '<td class="muted">&ndash;</td>' : '<td class="lag ' + lagClass(r.lag[p]) + '" data-pair="' + esc(r.id + ">" + p) + '">' + lagText(r.lag[p]) + "</td>";
    lag += "</tr>";
  }
  $("lag").innerHTML = lag + "</tbody>";

  const prefixes = Object.entries(view.primaries);
  $("primaries").querySelector("tbody").innerHTML = prefixes.length === 0
    ? '<tr><td colspan="4" class="muted">none configured (PRIMARY_PREFIXES)</td></tr>'
    : prefixes.map(([prefix, p]) => "<tr><td><code>" + esc(prefix) + "</code></td><td>" + esc(p.region) + "</td><td>" + esc(p.epoch) + "</td><td>" + (p.ready ? '<span class="ok">ready</span>' : '<span class="warn">recovering</span>') + (p.failover ? "" : ' <span class="muted">(manual failover)</span>') + "</td></tr>").join("");

  const select = $("conflictRegion");
  if (select.options.length !== ids.length) select.innerHTML = ids.map((id) => "<option>" + esc(id) + "</option>").join("");
  conflictRegion = conflictRegion || view.closest;
  select.value = conflictRegion;

  $("dead").querySelector("tbody").innerHTML = ids.map((id) => {
    const held = sum(samples, "replication_dead_letters", (l) => l.region === id);
    return "<tr><td>" + esc(id) + '</td><td class="' + (held > 0 ? "bad" : "ok") + '">' + held + "</td><td>" + (held > 0 ? '<button data-replay="' + esc(id) + '">Replay</button>' : "") + "</td></tr>";
  }).join("");
}

function renderRates(samples, ids, now) {
  const requests = (pred) => sum(samples, "http_request_duration_seconds_count", pred);
  const sample = {
    at: now,
    writes: requests((l) => l.method !== "GET" && l.method !== "HEAD" && l.route.startsWith("/v1/") && !l.route.startsWith("/v1/admin")),
    reads: requests((l) => (l.method === "GET" || l.method === "HEAD") && /^\\/v1\\/(kv|counters|sets)/.test(l.route)),
    errors: requests((l) => l.status.startsWith("5")),
    applied: Object.fromEntries(ids.map((id) => [id, sum(samples, "replica_writes_applied_total", (l) => l.region === id)])),
  };
  const rate = (k) => (last ? Math.max(0, (sample[k] - last[k]) / ((now - last.at) / 1000)) : null);
  const fmt = (x) => (x === null ? "&ndash;" : x.toFixed(1));
  $("writes").innerHTML = fmt(rate("writes"));
  $("reads").innerHTML = fmt(rate("reads"));
  $("errors").innerHTML = fmt(rate("errors"));
  $("applied").querySelector("tbody").innerHTML = ids.map((id) => {
    const r = last ? Math.max(0, (sample.applied[id] - (last.applied[id] || 0)) / ((now - last.at) / 1000)) : null;
    const keys = sum(samples, "store_keys", (l) => l.region === id && l.state === "live");
    const dead = sum(samples, "replication_dead_letters", (l) => l.region === id);
    return "<tr><td>" + esc(id) + "</td><td>" + fmt(r) + "</td><td>" + keys + '</td><td class="' + (dead > 0 ? "bad" : "") + '">' + dead + "</td></tr>";
  }).join("");
  last = sample;
}

async function renderConflicts() {
  const res = await api("/v1/conflicts?limit=20&region=" + encodeURIComponent(conflictRegion));
  if (!res.ok) return;
  const body = await res.json();
  const side = (s) => esc(s && s.region ? s.region + " @ " + (s.stamp || "") : JSON.stringify(s).slice(0, 80));
  const rows = body.conflicts.slice().reverse();
  $("conflicts").querySelector("tbody").innerHTML = rows.length === 0
    ? '<tr><td colspan="5" class="muted">no conflict logged in ' + esc(body.region) + "</td></tr>"
    : rows.map((c) => "<tr><td>" + esc(c.detectedAt) + "</td><td><code>" + esc(c.key) + "</code></td><td>" + esc(c.rule) + "</td><td>" + side(c.winner) + "</td><td>" + side(c.loser) + "</td></tr>").join("");
}

let busy = false;
async function refresh() {
  if (!token || busy) return;
  busy = true;
  try {
    const [regions, metrics] = await Promise.all([api("/v1/regions"), api("/metrics")]);
    if (!regions.ok) throw new Error("/v1/regions answered " + regions.status);
    const view = await regions.json();
    const samples = metrics.ok ? parseMetrics(await metrics.text()) : [];
    renderRegions(view, samples);
    renderRates(samples, view.regions.map((r) => r.id), Date.now());
    await renderConflicts();
    const out = view.regions.filter((r) => !r.healthy).length;
    $("status").textContent = "updated " + new Date().toLocaleTimeString() + " · " + view.regions.length + " regions, " + (out === 0 ? "all serving" : out + " out of service");
  } catch (error) {
    if (token) $("status").textContent = "refresh failed: " + error.message;
  } finally {
    busy = false;
  }
}

document.addEventListener("click", async (e) => {
  const target = e.target.closest("button");
  if (!target) return;
  if (target.dataset.health) {
    const to = target.dataset.to === "true";
    if (!to && !confirm("Take " + target.dataset.health + " out of service? Requests will be routed around it.")) return;
    target.disabled = true;
    const res = await api("/v1/admin/regions/" + target.dataset.health + "/health", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ healthy: to }) });
    if (!res.ok) $("status").textContent = (res.status === 403 ? "taking regions out needs an admin token" : "the store answered " + res.status + ": " + (await res.text()));
    refresh();
  } else if (target.dataset.replay) {
    target.disabled = true;
    const res = await api("/v1/admin/regions/" + target.dataset.replay + "/dead-letters/replay", { method: "POST" });
    $("status").textContent = res.ok ? "replayed: " + JSON.stringify(await res.json()) : res.status === 403 ? "replaying needs an admin token" : "replay failed: " + res.status;
    refresh();
  }
});

if (token) { $("logout").hidden = false; refresh(); } else forget("enter a token to begin");
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
