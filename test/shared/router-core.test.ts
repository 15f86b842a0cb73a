// The router's decisions apart from HTTP: the serving region, the read order, the primary of a
// strong prefix, and the quorum read, driven by a hand-fired clock.
import { describe, expect, it } from "vitest";
import { utf8 } from "../../shared/bytes.ts";
import { type Result, fail, ok } from "../../shared/errors.ts";
import { type HlcStamp } from "../../shared/hlc.ts";
import { type RegionId } from "../../shared/regions.ts";
import { type ClusterView, EMPTY_VIEW, type PrimaryState, type RegionHealth } from "../../shared/store/cluster.ts";
import { type KeySnapshot } from "../../shared/store/contract.ts";
import {
  type KeyOp,
  type KeyState,
  applyKeyOp,
  decodeKeyState,
  encodeKeyState,
  mergeKeyState,
} from "../../shared/store/key-state.ts";
import { type PrimaryPrefix } from "../../shared/store/primaries.ts";
import { type QuorumAnswer, chooseRegion, primaryFor, quorumRead, readOrder } from "../../shared/store/router-core.ts";
import { type VersionVector } from "../../shared/version-vector.ts";
import { type Deferred, FakeClock, deferred, observe } from "./fake-clock.ts";

const TIMEOUT_MS = 2_000;

const UNHEALTHY: RegionHealth = { healthy: false, reason: "unreachable" };
const TAKEN_OUT: RegionHealth = { healthy: false, reason: "admin" };

/** A view in which the listed regions have the given health and every other region is healthy. */
function view(
  health: Partial<Record<RegionId, RegionHealth>>,
  primaries: Record<string, PrimaryState> = {},
): ClusterView {
  return { atMs: 1, health, primaries };
}

describe("chooseRegion", () => {
  const preference: RegionId[] = ["weur", "eeur", "enam"];

  it("serves from a healthy pinned region, whatever the preference", () => {
    expect(chooseRegion(preference, EMPTY_VIEW, "enam")).toEqual(ok("enam"));
    expect(chooseRegion(preference, view({ weur: UNHEALTHY }), "apac")).toEqual(ok("apac"));
  });

  it("refuses an unhealthy or taken-out pinned region instead of serving from another, saying why", () => {
    expect(chooseRegion(preference, view({ enam: TAKEN_OUT }), "enam")).toEqual(
      fail("region_unavailable", "region enam is taken out of service; omit ?region= to be routed to a healthy one", {
        region: "enam",
        reason: "admin",
      }),
    );
    expect(chooseRegion(preference, view({ enam: UNHEALTHY }), "enam")).toEqual(
      fail(
        "region_unavailable",
        "region enam is unhealthy (unreachable); omit ?region= to be routed to a healthy one",
        {
          region: "enam",
          reason: "unreachable",
        },
      ),
    );
  });

  it("serves a pinned region that is only bootstrapping (it fetches what it lacks), but routes others away", () => {
    const booting = view({ weur: { healthy: false, reason: "bootstrapping" } });
    expect(chooseRegion(preference, booting, "weur")).toEqual(ok("weur"));
    expect(chooseRegion(preference, booting, undefined)).toEqual(ok("eeur"));
    expect(readOrder(preference, booting, "weur")).toEqual(["weur", "eeur", "enam"]);
    expect(readOrder(preference, booting, undefined)).toEqual(["eeur", "enam"]);
  });

  it("serves a pinned region whose clock is skewed (its writes are held, not lost), but routes others away", () => {
    const skewed = view({ weur: { healthy: false, reason: "clock_skew" } });
    expect(chooseRegion(preference, skewed, "weur")).toEqual(ok("weur"));
    expect(chooseRegion(preference, skewed, undefined)).toEqual(ok("eeur"));
    expect(readOrder(preference, skewed, "weur")[0]).toBe("weur");
    // A region that is down is not tried even when pinned.
    expect(readOrder(preference, view({ weur: UNHEALTHY }), "weur")).toEqual(["eeur", "enam"]);
  });

  it("picks the first healthy region by preference", () => {
    expect(chooseRegion(preference, EMPTY_VIEW, undefined)).toEqual(ok("weur"));
    expect(chooseRegion(preference, view({ weur: UNHEALTHY }), undefined)).toEqual(ok("eeur"));
    expect(chooseRegion(preference, view({ weur: TAKEN_OUT, eeur: UNHEALTHY }), undefined)).toEqual(ok("enam"));
  });

  it("fails with region_unavailable when no preferred region is healthy", () => {
    const down = view({ weur: UNHEALTHY, eeur: TAKEN_OUT, enam: UNHEALTHY });
    expect(chooseRegion(preference, down, undefined)).toEqual(fail("region_unavailable", "no region is healthy"));
    expect(chooseRegion([], EMPTY_VIEW, undefined)).toEqual(fail("region_unavailable", "no region is healthy"));
  });
});

describe("readOrder", () => {
  const preference: RegionId[] = ["weur", "eeur", "enam", "wnam"];

  it("lists healthy regions by preference", () => {
    expect(readOrder(preference, view({ eeur: UNHEALTHY }), undefined)).toEqual(["weur", "enam", "wnam"]);
  });

  it("puts a healthy pinned region first, once", () => {
    expect(readOrder(preference, EMPTY_VIEW, "enam")).toEqual(["enam", "weur", "eeur", "wnam"]);
    expect(readOrder(preference, EMPTY_VIEW, "apac")).toEqual(["apac", ...preference]);
  });

  it("leaves out an unhealthy pinned region", () => {
    expect(readOrder(preference, view({ enam: TAKEN_OUT }), "enam")).toEqual(["weur", "eeur", "wnam"]);
  });
});

describe("primaryFor", () => {
  const strong: PrimaryPrefix = { prefix: "strong/", region: "enam", failover: true };
  const manual: PrimaryPrefix = { prefix: "manual/", region: "wnam", failover: false };

  it("takes the configured primary at epoch 1 when the view names none", () => {
    expect(primaryFor(EMPTY_VIEW, strong)).toEqual(
      ok({ region: "enam", epoch: 1, ready: true, failover: true, recoveredSeqs: [] }),
    );
  });

  it("takes the view's primary after a failover", () => {
    const promoted: PrimaryState = { region: "weur", epoch: 2, ready: true, failover: true, recoveredSeqs: [17] };
    expect(primaryFor(view({ enam: UNHEALTHY }, { "strong/": promoted }), strong)).toEqual(ok(promoted));
  });

  it("fails while an unhealthy primary is being replaced", () => {
    expect(primaryFor(view({ enam: UNHEALTHY }), strong)).toEqual(
      fail(
        "primary_unavailable",
        'the primary of "strong/" (enam) is unavailable: a failover is under way; retry in a few seconds',
        { prefix: "strong/", region: "enam" },
      ),
    );
  });

  it("fails, saying failover is off, when an unhealthy primary will not be replaced", () => {
    expect(primaryFor(view({ wnam: TAKEN_OUT }), manual)).toEqual(
      fail(
        "primary_unavailable",
        'the primary of "manual/" (wnam) is unavailable: automatic failover is off for this prefix',
        { prefix: "manual/", region: "wnam" },
      ),
    );
  });

  it("fails while a new primary is still recovering the prefix", () => {
    const recovering: PrimaryState = { region: "weur", epoch: 3, ready: false, failover: true, recoveredSeqs: [0] };
    expect(primaryFor(view({}, { "strong/": recovering }), strong)).toEqual(
      fail("primary_unavailable", '"strong/" has a new primary (weur) still recovering; retry shortly', {
        prefix: "strong/",
        region: "weur",
      }),
    );
  });
});

function stamp(wallMs: number, region: RegionId): HlcStamp {
  return { wallMs, counter: 0, region };
}

function write(state: KeyState | undefined, op: KeyOp, region: RegionId, wallMs: number): KeyState {
  const result = applyKeyOp(state, op, region, stamp(wallMs, region));
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

const add = (delta: number): KeyOp => ({ type: "counter", delta });
const put = (text: string): KeyOp => ({
  type: "register",
  op: { kind: "put", value: utf8(text), contentType: "text/plain" },
});

function snapshot(state: KeyState | null, epoch: number, seqs: VersionVector = {}): KeySnapshot {
  return { state: state === null ? null : encodeKeyState(state), seqs, epoch };
}

/** A read per region that the test answers by hand. */
function manualReads(regions: readonly RegionId[]) {
  const calls = new Map<RegionId, Deferred<Result<KeySnapshot>>>(
    regions.map((r) => [r, deferred<Result<KeySnapshot>>()]),
  );
  const answer = (region: RegionId): Deferred<Result<KeySnapshot>> =>
    calls.get(region) as Deferred<Result<KeySnapshot>>;
  const read = (region: RegionId): Promise<Result<KeySnapshot>> => answer(region).promise;
  return { read, answer };
}

/** The answer of a quorum read that has settled successfully. */
async function answered(result: Promise<Result<QuorumAnswer>>): Promise<QuorumAnswer> {
  const seen = await observe(result);
  if (seen.state !== "fulfilled") throw new Error(`the quorum read is ${seen.state}`);
  if (!seen.value.ok) throw new Error(`the quorum read failed: ${seen.value.error.message}`);
  return seen.value.value;
}

describe("quorumRead", () => {
  const three: RegionId[] = ["wnam", "enam", "weur"];
  const state = write(undefined, put("v"), "wnam", 10);

  // Regression: the read used to wait for every region, so one region that never answered
  // held every quorum read until the timeout although a majority had long answered.
  it("answers as soon as a majority answered while another region never answers", async () => {
    for (const silent of three) {
      const clock = new FakeClock();
      const { read, answer } = manualReads(three);
      const result = quorumRead(clock, three, 2, TIMEOUT_MS, read);
      const speaking = three.filter((r) => r !== silent);
      answer(speaking[0] as RegionId).resolve(ok(snapshot(state, 0, { wnam: 1 })));
      expect(await observe(result)).toEqual({ state: "pending" });
      answer(speaking[1] as RegionId).resolve(ok(snapshot(state, 0, { wnam: 1 })));
      // No time has passed and the silent region has not answered: the answer is there anyway.
      expect(await answered(result)).toEqual({
        merged: snapshot(state, 0, { wnam: 1 }),
        answered: speaking,
        stale: [],
      });
    }
  });

  it("fails with region_unavailable at the timeout when fewer than the majority answered", async () => {
    const clock = new FakeClock();
    const { read, answer } = manualReads(three);
    const result = quorumRead(clock, three, 2, TIMEOUT_MS, read);
    answer("enam").resolve(ok(snapshot(state, 0)));
    // An operating error or a thrown error is no answer.
    answer("wnam").resolve(fail("region_unavailable", "wnam is taken out"));
    await clock.advance(TIMEOUT_MS - 1);
    expect(await observe(result)).toEqual({ state: "pending" });
    await clock.advance(1);
    expect(await observe(result)).toEqual({
      state: "fulfilled",
      value: fail("region_unavailable", "a quorum read needs 2 regions; only 1 answered", { acked: ["enam"] }),
    });
  });

  it("fails as soon as every region settled without a majority, before the timeout", async () => {
    const clock = new FakeClock();
    const { read, answer } = manualReads(three);
    const result = quorumRead(clock, three, 2, TIMEOUT_MS, read);
    answer("wnam").resolve(ok(snapshot(state, 0)));
    answer("enam").reject(new Error("connection reset"));
    answer("weur").resolve(fail("region_unavailable", "weur is taken out"));
    expect(await observe(result)).toEqual({
      state: "fulfilled",
      value: fail("region_unavailable", "a quorum read needs 2 regions; only 1 answered", { acked: ["wnam"] }),
    });
  });

  it("answers a replica's wrong_shard when no majority answered, so the router retries at the shard it names", async () => {
    const clock = new FakeClock();
    const { read, answer } = manualReads(three);
    const result = quorumRead(clock, three, 2, TIMEOUT_MS, read);
    const moved = fail("wrong_shard", "key k lives in shard 3", { shard: 3 });
    answer("wnam").resolve(ok(snapshot(state, 0)));
    answer("enam").resolve(moved);
    answer("weur").resolve(moved);
    expect(await observe(result)).toEqual({ state: "fulfilled", value: moved });
  });

  it("fails at once, asking no one, when fewer regions are healthy than a majority", async () => {
    const clock = new FakeClock();
    let asked = 0;
    const read = async (): Promise<never> => {
      asked += 1;
      throw new Error("not asked");
    };
    expect(await observe(quorumRead(clock, ["wnam"], 2, TIMEOUT_MS, read))).toEqual({
      state: "fulfilled",
      value: fail("region_unavailable", "a quorum read needs 2 regions; only 1 is healthy", { acked: [] }),
    });
    expect(asked).toBe(0);
  });

  it("lets the higher epoch win, and lists the region holding the older epoch as stale", async () => {
    const older = write(undefined, add(100), "apac", 10);
    const newer = write(undefined, add(1), "enam", 20);
    const clock = new FakeClock();
    const { read, answer } = manualReads(three);
    const result = quorumRead(clock, three, 2, TIMEOUT_MS, read);
    answer("wnam").resolve(ok(snapshot(older, 1, { apac: 4 })));
    answer("enam").resolve(ok(snapshot(newer, 2, { enam: 9 })));
    expect(await answered(result)).toEqual({
      merged: snapshot(newer, 2, { enam: 9, apac: 4 }),
      answered: ["wnam", "enam"],
      stale: ["wnam"],
    });
  });

  it("lists as stale exactly the answering regions whose state or epoch differs from the merge", async () => {
    const five: RegionId[] = ["wnam", "enam", "weur", "eeur", "apac"];
    const base = write(undefined, add(1), "wnam", 10);
    const full = write(base, add(2), "enam", 20);
    const cases: Array<{ replies: Partial<Record<RegionId, KeySnapshot>>; merged: KeySnapshot; stale: RegionId[] }> = [
      {
        // One region has nothing, one holds an ancestor, one holds the merge.
        replies: { wnam: snapshot(null, 0), enam: snapshot(full, 2), eeur: snapshot(base, 2) },
        merged: snapshot(full, 2),
        stale: ["wnam", "eeur"],
      },
      {
        // The same bytes under an older epoch still need a repair to the new epoch.
        replies: { weur: snapshot(full, 1), eeur: snapshot(full, 2), apac: snapshot(full, 2) },
        merged: snapshot(full, 2),
        stale: ["weur"],
      },
      {
        // Everyone already holds the merge.
        replies: { wnam: snapshot(full, 0), enam: snapshot(full, 0), apac: snapshot(full, 0) },
        merged: snapshot(full, 0),
        stale: [],
      },
    ];
    for (const { replies, merged, stale } of cases) {
      const clock = new FakeClock();
      const { read, answer } = manualReads(five);
      const result = quorumRead(clock, five, 3, TIMEOUT_MS, read);
      for (const [region, reply] of Object.entries(replies) as Array<[RegionId, KeySnapshot]>)
        answer(region).resolve(ok(reply));
      const got = await answered(result);
      expect(got.merged).toEqual(merged);
      expect(got.answered).toEqual(five.filter((r) => r in replies));
      expect(got.stale).toEqual(stale);
    }
  });

  it("merges concurrent states of one epoch as CRDTs, and both sides need a repair", async () => {
    const a = write(undefined, add(1), "wnam", 10);
    const b = write(undefined, add(5), "enam", 10);
    const clock = new FakeClock();
    const { read, answer } = manualReads(three);
    const result = quorumRead(clock, three, 2, TIMEOUT_MS, read);
    answer("enam").resolve(ok(snapshot(b, 0, { enam: 1 })));
    answer("wnam").resolve(ok(snapshot(a, 0, { wnam: 1 })));
    const got = await answered(result);
    expect(got.merged.state).not.toBeNull();
    expect(decodeKeyState(got.merged.state as Uint8Array)).toEqual(mergeKeyState(a, b).state);
    expect(got.merged.seqs).toEqual({ wnam: 1, enam: 1 });
    expect(got.answered).toEqual(["wnam", "enam"]);
    expect(got.stale).toEqual(["wnam", "enam"]);
  });

  it("answers an empty state, with nobody stale, when no answering region holds the key", async () => {
    const clock = new FakeClock();
    const { read, answer } = manualReads(three);
    const result = quorumRead(clock, three, 2, TIMEOUT_MS, read);
    answer("weur").resolve(ok(snapshot(null, 0, { weur: 3 })));
    answer("enam").resolve(ok(snapshot(null, 0)));
    expect(await answered(result)).toEqual({
      merged: { state: null, seqs: { weur: 3 }, epoch: 0 },
      answered: ["enam", "weur"],
      stale: [],
    });
  });
});
