// The pure half of session tokens: their two shapes, the text a MAC covers, key ids, and which
// keys a token may be checked against. The MACs themselves are tested inside workerd
// (test/workers/session-rotation.test.ts).
import { createHash } from "node:crypto";
import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../shared/assert.ts";
import { LOCATION_HINTS, type RegionId } from "../../shared/regions.ts";
import {
  SESSION_KID_LENGTH,
  SESSION_TOKEN_VERSION,
  SESSION_TOKEN_VERSION_V1,
  type SessionSeen,
  decodeSessionPayload,
  seeAlso,
  seenIn,
  encodeSessionPayload,
  joinSessionToken,
  sessionCandidates,
  sessionKidInput,
  sessionKidOf,
  sessionLagging,
  sessionSignedText,
  splitSessionToken,
} from "../../shared/store/session.ts";
import { SHARDS_MAX } from "../../shared/shards.ts";
import { type VersionVector, formatVv, vvFrom } from "../../shared/version-vector.ts";

// A fixed seed makes every property run reproducible; fast-check prints it with any counterexample.
const SEED = 0x5e_5510;

const KID = "Fxc7b6fl";
const MAC = "bWFjLWJ5dGVz";

const vvArb: fc.Arbitrary<VersionVector> = fc
  .array(fc.tuple(fc.constantFrom(...LOCATION_HINTS), fc.oneof(fc.maxSafeNat(), fc.integer({ min: 0, max: 9 }))), {
    maxLength: 8,
  })
  .map(vvFrom);
/** What a session has seen: a vector per shard, empty ones left out (as the encoding does). */
const seenArb: fc.Arbitrary<SessionSeen> = fc
  .array(fc.tuple(fc.integer({ min: 0, max: SHARDS_MAX - 1 }), vvArb), { maxLength: 6 })
  .map((pairs) => new Map(pairs.filter(([, vv]) => Object.keys(vv).length > 0)));
/** `vv` seen in shard 0. */
const inShard0 = (vv: VersionVector): SessionSeen => new Map([[0, vv]]);
const base64UrlArb = (length: number) =>
  fc.string({
    unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
    minLength: length,
    maxLength: length,
  });

function kidOfSecret(secret: string): string {
  return sessionKidOf(new Uint8Array(createHash("sha256").update(sessionKidInput(secret)).digest()));
}

describe("key ids", () => {
  it("are the first characters of base64url(SHA-256(context + secret))", () => {
    // Computed independently; a change here would refuse every client's token on deploy.
    expect(kidOfSecret("test-session-secret")).toBe("yk8jj2Yv");
    expect(kidOfSecret("new-secret")).toBe(KID);
    expect(sessionKidInput("x")).toBe("kv-session-kid:x");
    expect(kidOfSecret("new-secret")).toHaveLength(SESSION_KID_LENGTH);
  });

  it("refuse a digest too short to give a full id", () => {
    expect(sessionKidOf(Uint8Array.from([0xff, 0, 0, 0, 0, 0]))).toBe("_wAAAAAA");
    expect(() => sessionKidOf(Uint8Array.from([1, 2, 3, 4, 5]))).toThrow(AssertionError);
  });
});

describe("token shape", () => {
  it("signs version, key id and payload together, and joins the MAC after them", () => {
    const payload = encodeSessionPayload(inShard0({ wnam: 3 }));
    expect(sessionSignedText(KID, payload)).toBe(`s3.${KID}.${payload}`);
    expect(joinSessionToken(KID, payload, MAC)).toBe(`s3.${KID}.${payload}.${MAC}`);
    expect(SESSION_TOKEN_VERSION).toBe("s3");
  });

  it("splits an s3 token, and an s2 one from before shards, into its fields and the text its MAC covers", () => {
    const current = encodeSessionPayload(inShard0({ apac: 7 }));
    expect(splitSessionToken(`s3.${KID}.${current}.${MAC}`)).toEqual({
      version: "s3",
      kid: KID,
      payload: current,
      mac: MAC,
      signed: `s3.${KID}.${current}`,
    });
    const payload = encodeSessionPayload(inShard0({ apac: 7 }));
    expect(splitSessionToken(`s2.${KID}.${payload}.${MAC}`)).toEqual({
      version: "s2",
      kid: KID,
      payload,
      mac: MAC,
      signed: `s2.${KID}.${payload}`,
    });
  });

  it("splits an s1 token, whose MAC covers the payload alone and which names no key", () => {
    const payload = encodeSessionPayload(inShard0({ apac: 7 }));
    expect(splitSessionToken(`s1.${payload}.${MAC}`)).toEqual({
      version: SESSION_TOKEN_VERSION_V1,
      kid: undefined,
      payload,
      mac: MAC,
      signed: payload,
    });
  });

  it("refuses every other shape", () => {
    const payload = encodeSessionPayload(inShard0({ enam: 1 }));
    const malformed = [
      "",
      "garbage",
      "s1..",
      `s1.${payload}`,
      `s1.${KID}.${payload}.${MAC}`,
      `s2.${payload}.${MAC}`,
      `s2.${KID}.${payload}.${MAC}.extra`,
      `s4.${KID}.${payload}.${MAC}`,
      `S2.${KID}.${payload}.${MAC}`,
      `s2.${KID.slice(1)}.${payload}.${MAC}`,
      `s2.${KID}A.${payload}.${MAC}`,
      `s2.Fxc7b6f+.${payload}.${MAC}`,
      `s2..${payload}.${MAC}`,
      `s2.${KID}..${MAC}`,
      `s2.${KID}.${payload}.`,
      `s1.${payload}.`,
    ];
    // Listing the accepted ones names the offending token in a failure.
    expect(malformed.filter((token) => splitSessionToken(token) !== undefined)).toEqual([]);
  });

  it("asserts that a key id it signs has the key id shape", () => {
    expect(() => sessionSignedText("short", "AA")).toThrow(AssertionError);
    expect(() => joinSessionToken("Fxc7b6f.", "AA", MAC)).toThrow(AssertionError);
  });

  it("round-trips every session through join, split and decode", () => {
    fc.assert(
      fc.property(seenArb, base64UrlArb(SESSION_KID_LENGTH), base64UrlArb(43), (seen, kid, mac) => {
        const payload = encodeSessionPayload(seen);
        const parts = splitSessionToken(joinSessionToken(kid, payload, mac));
        expect(parts).toEqual({ version: "s3", kid, payload, mac, signed: sessionSignedText(kid, payload) });
        expect(decodeSessionPayload(parts!.payload, parts!.version)).toEqual(seen);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("reads the one vector of an s1 or s2 payload as shard 0's", () => {
    fc.assert(
      fc.property(vvArb, (vv) => {
        const expected = new Map([[0, vv]]);
        expect(decodeSessionPayload(formatVv(vv), "s2")).toEqual(expected);
        expect(decodeSessionPayload(formatVv(vv), "s1")).toEqual(expected);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("decodes no malformed payload", () => {
    expect(decodeSessionPayload("not base64!")).toBeUndefined();
    expect(decodeSessionPayload(`${encodeSessionPayload(inShard0({ wnam: 1 }))}AA`)).toBeUndefined();
    // Not canonical: shards out of order, a shard past SHARDS_MAX, an empty vector.
    const twoShards = encodeSessionPayload(
      new Map([
        [0, { wnam: 1 }],
        [1, { enam: 1 }],
      ]),
    );
    const bytes = Buffer.from(twoShards, "base64url");
    // [n=2, shard 0, vv(1 entry), shard 1, vv(1 entry)]: swap the shard numbers.
    const swapped = Uint8Array.from(bytes);
    swapped[1] = 1;
    swapped[5] = 0;
    expect(decodeSessionPayload(Buffer.from(swapped).toString("base64url"))).toBeUndefined();
    expect(decodeSessionPayload(Buffer.from([1, SHARDS_MAX, 1, 0, 1]).toString("base64url"))).toBeUndefined();
    expect(decodeSessionPayload(Buffer.from([1, 0, 0]).toString("base64url"))).toBeUndefined();
  });

  it("keeps what a session saw in each shard apart", () => {
    const seen = seeAlso(seeAlso(new Map(), 1, { wnam: 4 }), 0, { enam: 2 });
    expect(seenIn(seeAlso(seen, 1, { wnam: 2, apac: 1 }), 1)).toEqual({ wnam: 4, apac: 1 });
    expect(seenIn(seen, 0)).toEqual({ enam: 2 });
    expect(seenIn(seen, 5)).toEqual({});
  });
});

describe("candidate keys", () => {
  const current = { kid: KID, name: "current" };
  const previous = { kid: "VK3BkZyp", name: "previous" };
  const keys = [current, previous];
  const payload = encodeSessionPayload(new Map());

  it("are the keys whose id an s2 token names", () => {
    expect(sessionCandidates(splitSessionToken(`s2.${KID}.${payload}.${MAC}`)!, keys)).toEqual([current]);
    expect(sessionCandidates(splitSessionToken(`s2.VK3BkZyp.${payload}.${MAC}`)!, keys)).toEqual([previous]);
  });

  it("are none for a key id the router does not hold", () => {
    expect(sessionCandidates(splitSessionToken(`s2.AAAAAAAA.${payload}.${MAC}`)!, keys)).toEqual([]);
    expect(sessionCandidates(splitSessionToken(`s2.VK3BkZyp.${payload}.${MAC}`)!, [current])).toEqual([]);
  });

  it("are every key, current first, for an s1 token", () => {
    expect(sessionCandidates(splitSessionToken(`s1.${payload}.${MAC}`)!, keys)).toEqual([current, previous]);
    expect(sessionCandidates(splitSessionToken(`s1.${payload}.${MAC}`)!, [current])).toEqual([current]);
  });
});

describe("sessionLagging", () => {
  it("lists the regions whose writes the session has seen beyond what the replica applied", () => {
    const seen: VersionVector = { wnam: 3, enam: 1, apac: 2 };
    const applied: VersionVector = { wnam: 3, weur: 9, apac: 1 };
    expect(sessionLagging(applied, seen)).toEqual(["enam", "apac"] satisfies RegionId[]);
    expect(sessionLagging(seen, seen)).toEqual([]);
  });
});
