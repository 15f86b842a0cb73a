// Consistency choices through the router: write acks (with a region out), session reads
// across regions, quorum reads with read repair, and their parameter errors.
import { afterEach, describe, expect, it, vi } from "vitest";
import { type RegionId } from "../../shared/regions.ts";
import { signSession } from "../../workers/router/session.ts";
import { api, okValue, registerText, replica, shardOfKey, uniqueKey, writeHeldBack } from "./helpers.ts";

const REGIONS: RegionId[] = ["wnam", "enam", "weur", "apac"];

async function setHealth(region: RegionId, healthy: boolean): Promise<void> {
  const res = await api(`/v1/admin/regions/${region}/health`, { method: "POST", body: JSON.stringify({ healthy }) });
  expect(res.status).toBe(200);
}

afterEach(async () => {
  for (const region of REGIONS) await setHealth(region, true);
});

describe("write acks", () => {
  it("acknowledges after 1, k, a majority, or every region has applied the write", async () => {
    for (const [ack, least] of [
      ["local", 1],
      ["2", 2],
      ["quorum", 3],
      ["all", 4],
    ] as const) {
      const res = await api(`/v1/kv/${uniqueKey("ack")}?region=weur&ack=${ack}`, { method: "PUT", body: "v" });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { acked: string[] };
      expect(body.acked[0]).toBe("weur");
      expect(new Set(body.acked).size).toBe(body.acked.length);
      expect(body.acked.length).toBeGreaterThanOrEqual(least);
    }
  });

  it("has every acked region hold the write durably", async () => {
    const key = uniqueKey("ack-durable");
    const body = (await (
      await api(`/v1/kv/${key}?region=apac&ack=all`, { method: "PUT", body: "everywhere" })
    ).json()) as { acked: RegionId[] };
    expect([...body.acked].sort()).toEqual([...REGIONS].sort());
    for (const region of body.acked) expect(registerText(await replica(region, key).read(key))).toBe("everywhere");
  });

  it("refuses unknown ack values and timeouts", async () => {
    for (const ack of ["0", "5", "most", "-1", "1.5"]) {
      const res = await api(`/v1/kv/${uniqueKey("bad")}?ack=${ack}`, { method: "PUT", body: "v" });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_ack");
    }
    const res = await api(`/v1/kv/${uniqueKey("bad")}?ack=all&timeout_ms=0`, { method: "PUT", body: "v" });
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_query");
  });

  it("answers 504 ack_timeout at once, naming the region out of service, and delivers once it is back", async () => {
    const key = uniqueKey("ack-out");
    await setHealth("weur", false);
    // A long timeout: the region known to be out is not waited for.
    const res = await api(`/v1/kv/${key}?region=enam&ack=all&timeout_ms=60000`, { method: "PUT", body: "eventually" });
    expect(res.status).toBe(504);
    const body = (await res.json()) as {
      error: { code: string; message: string; acked: string[]; unavailable: string[]; version: string };
    };
    expect(body.error.code).toBe("ack_timeout");
    expect([...body.error.acked].sort()).toEqual(["apac", "enam", "wnam"]);
    expect(body.error.unavailable).toEqual(["weur"]);
    // The message tells what happened: which region is out, not a timeout that did not occur.
    expect(body.error.message).toContain("weur is out of service");
    expect(body.error.message).not.toContain("within");
    // Not rolled back: the other regions have it; nothing is routed to weur meanwhile.
    expect(registerText(await replica("apac", key).read(key))).toBe("eventually");
    expect((await api(`/v1/kv/${key}?region=weur`)).status).toBe(503);
    await setHealth("weur", true);
    await vi.waitFor(async () => expect(registerText(await replica("weur", key).read(key))).toBe("eventually"), {
      timeout: 15_000,
      interval: 100,
    });
  });

  it("routes unpinned requests around an unhealthy region", async () => {
    await setHealth("enam", false);
    const res = await api(`/v1/kv/${uniqueKey("around")}`, { method: "PUT", body: "v" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).not.toBe("enam");
  });
});

describe("session reads", () => {
  it("read-your-writes from another region, every time", async () => {
    for (let i = 0; i < 25; i += 1) {
      const key = uniqueKey("ryw");
      const write = await api(`/v1/kv/${key}?region=wnam`, { method: "PUT", body: `v${i}` });
      const token = write.headers.get("x-session-token");
      expect(token).toMatch(/^s3\./);
      const read = await api(`/v1/kv/${key}?region=apac&consistency=session`, {
        headers: { "X-Session-Token": token! },
      });
      expect(read.status).toBe(200);
      expect(await read.text()).toBe(`v${i}`);
      expect(read.headers.get("x-served-by")).toBe("apac");
    }
  });

  it("fetches what the serving replica lacks when replication does not arrive in time", async () => {
    const key = uniqueKey("fetch");
    await writeHeldBack("wnam", key, "only in wnam");
    // The token a client of that write holds: it has seen wnam's newest write.
    const seen = await signSession(
      { current: "test-session-secret" },
      new Map([[shardOfKey(key), { wnam: (await replica("wnam", key).status()).seq }]]),
    );
    // Without the session, weur answers its own (older) state: it does not have the write.
    expect((await api(`/v1/kv/${key}?region=weur`)).status).toBe(404);
    const read = await api(`/v1/kv/${key}?region=weur&consistency=session`, { headers: { "X-Session-Token": seen } });
    expect(read.status).toBe(200);
    expect(read.headers.get("x-served-by")).toBe("weur");
    expect(await read.text()).toBe("only in wnam");
    // It fetched the state from wnam and merged it: weur holds it now.
    expect(registerText(await replica("weur", key).read(key))).toBe("only in wnam");
  });

  it("never goes back in time after reading a state that arrived outside the ordered stream", async () => {
    const key = uniqueKey("monotonic");
    await writeHeldBack("wnam", key, "repaired into apac only");
    // apac gets the state by read repair, not through wnam's stream.
    const snapshot = await replica("wnam", key).snapshot(key);
    await replica("apac", key).repair(key, okValue(snapshot));
    const first = await api(`/v1/kv/${key}?region=apac&consistency=session`);
    expect(await first.text()).toBe("repaired into apac only");
    const token = first.headers.get("x-session-token")!;
    const second = await api(`/v1/kv/${key}?region=enam&consistency=session`, {
      headers: { "X-Session-Token": token },
    });
    expect(second.status).toBe(200);
    expect(await second.text()).toBe("repaired into apac only");
  });

  it("gives a token to clients that never wrote, and refuses garbled or forged tokens", async () => {
    const key = uniqueKey("tokens");
    await api(`/v1/kv/${key}?region=enam`, { method: "PUT", body: "v" });
    const fresh = await api(`/v1/kv/${key}?region=enam&consistency=session`);
    const token = fresh.headers.get("x-session-token")!;
    expect(
      (await api(`/v1/kv/${key}?region=enam&consistency=session`, { headers: { "X-Session-Token": token } })).status,
    ).toBe(200);
    const [version, payload] = token.split(".");
    for (const bad of [
      "garbage",
      `${version}.${payload}.AAAA`,
      `${version}.${payload}x.${token.split(".")[2]}`,
      "s1..",
      "s2.a.b",
    ]) {
      const res = await api(`/v1/kv/${key}?consistency=session`, { headers: { "X-Session-Token": bad } });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_session_token");
    }
  });

  it("refuses unknown consistency levels", async () => {
    const res = await api(`/v1/kv/x?consistency=linearizable`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_consistency");
    const missing = await api(`/v1/kv/x?consistency=bounded`);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe("invalid_consistency");
  });
});

describe("quorum reads", () => {
  it("answer from the first majority, and repair the stale regions among it", async () => {
    const key = uniqueKey("repair");
    await writeHeldBack("apac", key, "from apac");
    // With wnam out, the healthy regions are exactly a majority, so all three must answer.
    await setHealth("wnam", false);
    for (const region of ["enam", "weur"] as const)
      expect(okValue(await replica(region, key).read(key)).view).toBeNull();
    const read = await api(`/v1/kv/${key}?region=enam&consistency=quorum`);
    expect(read.status).toBe(200);
    expect(await read.text()).toBe("from apac");
    for (const region of ["enam", "weur"] as const) {
      await vi.waitFor(async () => expect(registerText(await replica(region, key).read(key))).toBe("from apac"), {
        timeout: 5000,
        interval: 20,
      });
    }
  });

  it("include every write a quorum acknowledged, whichever majority answers", async () => {
    const key = uniqueKey("quorum-acked");
    const written = await api(`/v1/kv/${key}?region=weur&ack=quorum`, { method: "PUT", body: "acked" });
    expect(written.status).toBe(200);
    const acked = ((await written.json()) as { acked: RegionId[] }).acked;
    expect(acked.length).toBeGreaterThanOrEqual(3);
    // Whatever the first majority to answer is, it shares a region with the acknowledging one.
    for (const region of REGIONS) {
      const read = await api(`/v1/kv/${key}?region=${region}&consistency=quorum`);
      expect(await read.text()).toBe("acked");
    }
  });

  it("merge counters across regions exactly", async () => {
    const key = uniqueKey("qcounter");
    await api(`/v1/counters/${key}?region=wnam&ack=all`, { method: "POST", body: '{"delta":5}' });
    const read = await api(`/v1/counters/${key}?region=weur&consistency=quorum`);
    expect(await read.json()).toEqual({ key, value: 5 });
  });

  it("need a majority of healthy regions", async () => {
    await setHealth("wnam", false);
    await setHealth("enam", false);
    const res = await api(`/v1/kv/${uniqueKey("q")}?consistency=quorum`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("region_unavailable");
  });
});
