// Workers KV conformance: cases written from Workers KV's documented behaviour, run against a real
// local Workers KV namespace (miniflare, in the workers project) and against `GeoKVNamespace`
// (over a service binding there, and over `npm start` in the e2e project). Both must pass.
import { describe, expect, it } from "vitest";

/** Seconds since the epoch now. */
const nowSeconds = () => Math.floor(Date.now() / 1000);

async function streamText(stream: ReadableStream | null): Promise<string> {
  return stream === null ? "(null)" : new Response(stream).text();
}

/** Runs the suite against the namespace `make` answers; `label` names it. */
export function kvConformance(label: string, make: () => KVNamespace): void {
  describe(`Workers KV conformance: ${label}`, () => {
    const kv = make;
    let n = 0;
    const run = Math.random().toString(36).slice(2, 8);
    /** A key of its own per case, under this run's prefix. */
    const fresh = (name: string): string => {
      n += 1;
      return `conf-${run}/${n}/${name}`;
    };

    it("answers null for a missing key, in every type, and with metadata", async () => {
      const key = fresh("missing");
      expect(await kv().get(key)).toBeNull();
      expect(await kv().get(key, "json")).toBeNull();
      expect(await kv().get(key, "arrayBuffer")).toBeNull();
      expect(await kv().get(key, { type: "stream" })).toBeNull();
      expect(await kv().getWithMetadata(key)).toEqual({ value: null, metadata: null, cacheStatus: null });
    });

    it("round-trips text, JSON, bytes and streams, and reads them in every type", async () => {
      const key = fresh("value");
      await kv().put(key, JSON.stringify({ a: 1, b: ["ü", "✓"] }));
      expect(await kv().get(key)).toBe('{"a":1,"b":["ü","✓"]}');
      expect(await kv().get(key, "text")).toBe('{"a":1,"b":["ü","✓"]}');
      expect(await kv().get(key, { type: "json", cacheTtl: 60 })).toEqual({ a: 1, b: ["ü", "✓"] });
      const buffer = await kv().get(key, "arrayBuffer");
      expect(new TextDecoder().decode(buffer!)).toBe('{"a":1,"b":["ü","✓"]}');
      expect(await streamText(await kv().get(key, "stream"))).toBe('{"a":1,"b":["ü","✓"]}');

      const bytes = fresh("bytes");
      await kv().put(bytes, new Uint8Array([0, 255, 1, 254]).buffer);
      expect(new Uint8Array((await kv().get(bytes, "arrayBuffer"))!)).toEqual(new Uint8Array([0, 255, 1, 254]));
      await kv().put(bytes, new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 3));
      expect(new Uint8Array((await kv().get(bytes, "arrayBuffer"))!)).toEqual(new Uint8Array([8, 7]));
      await kv().put(bytes, new Blob(["from a ", "stream"]).stream());
      expect(await kv().get(bytes)).toBe("from a stream");

      const large = fresh("large");
      const text = "0123456789abcdef".repeat(64 * 1024);
      await kv().put(large, text);
      expect(await kv().get(large)).toBe(text);
    });

    it("overwrites and deletes, and deleting a missing key succeeds", async () => {
      const key = fresh("cycle");
      await kv().put(key, "one");
      await kv().put(key, "two");
      expect(await kv().get(key)).toBe("two");
      await kv().delete(key);
      expect(await kv().get(key)).toBeNull();
      await expect(kv().delete(fresh("never"))).resolves.toBeUndefined();
    });

    it("keeps metadata with the value, and a plain put drops it", async () => {
      const key = fresh("meta");
      await kv().put(key, "v", { metadata: { owner: "ada", tags: ["x", "ÿ"], n: 1.5 } });
      expect(await kv().getWithMetadata(key)).toEqual({
        value: "v",
        metadata: { owner: "ada", tags: ["x", "ÿ"], n: 1.5 },
        cacheStatus: null,
      });
      expect(
        await kv()
          .getWithMetadata<{ n: number }>(key, "json")
          .catch((e: unknown) => String(e)),
      ).toMatch(/SyntaxError|JSON/);
      await kv().put(key, "w");
      expect(await kv().getWithMetadata(key)).toEqual({ value: "w", metadata: null, cacheStatus: null });
      await kv().put(key, "x", { metadata: "x".repeat(1022) });
      expect((await kv().getWithMetadata(key)).metadata).toBe("x".repeat(1022));
    });

    it("lists by prefix in key order, pages with a cursor, and shows expiration and metadata", async () => {
      const prefix = fresh("list") + "/";
      const names = ["b", "a", "c/d", "c", "é", "z"].map((s) => prefix + s);
      for (const name of names) await kv().put(name, "v");
      const expiresAt = nowSeconds() + 3600;
      await kv().put(prefix + "m", "v", { expiration: expiresAt, metadata: { m: true } });
      await kv().put(prefix + "t", "v", { expirationTtl: 600 });
      const sorted = [...names, prefix + "m", prefix + "t"].sort();

      const all = await kv().list({ prefix });
      expect(all.list_complete).toBe(true);
      expect(all.keys.map((k) => k.name)).toEqual(sorted);
      const plain = all.keys.find((k) => k.name === prefix + "a");
      expect(plain).toEqual({ name: prefix + "a" });
      expect(all.keys.find((k) => k.name === prefix + "m")).toEqual({
        name: prefix + "m",
        expiration: expiresAt,
        metadata: { m: true },
      });
      const ttl = all.keys.find((k) => k.name === prefix + "t")?.expiration ?? 0;
      expect(ttl).toBeGreaterThanOrEqual(nowSeconds() + 590);
      expect(ttl).toBeLessThanOrEqual(nowSeconds() + 600);

      const pages: string[][] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await kv().list({ prefix, limit: 3, ...(cursor === undefined ? {} : { cursor }) });
        pages.push(page.keys.map((k) => k.name));
        if (page.list_complete) break;
        expect(typeof page.cursor).toBe("string");
        cursor = page.cursor;
      }
      expect(pages.flat()).toEqual(sorted);
      expect(pages[0]).toHaveLength(3);
      expect((await kv().list({ prefix: prefix + "nothing" })).keys).toEqual([]);
    });

    it("reads many keys at once, in their order, as text or JSON", async () => {
      const a = fresh("bulk-a");
      const b = fresh("bulk-b");
      await kv().put(a, '{"n":1}', { metadata: { k: "a" } });
      await kv().put(b, '{"n":2}');
      const missing = fresh("bulk-missing");
      expect([...(await kv().get([b, missing, a]))]).toEqual([
        [b, '{"n":2}'],
        [missing, null],
        [a, '{"n":1}'],
      ]);
      expect([...(await kv().get([a, b], "json"))]).toEqual([
        [a, { n: 1 }],
        [b, { n: 2 }],
      ]);
      expect([...(await kv().getWithMetadata([a, missing]))]).toEqual([
        [a, { value: '{"n":1}', metadata: { k: "a" } }],
        [missing, null],
      ]);
    });

    it("takes keys of any text up to 512 bytes", async () => {
      for (const name of [
        "with space",
        "slash/and/more",
        "question?mark#hash",
        "percent%20",
        "emoji 🗝️",
        "ü".repeat(200),
      ]) {
        const key = fresh(name);
        await kv().put(key, name);
        expect(await kv().get(key)).toBe(name);
      }
      const longest = "k".repeat(512);
      await kv().put(longest, "512");
      expect(await kv().get(longest)).toBe("512");
      await kv().delete(longest);
    });

    it("refuses bad keys as Workers KV does: TypeError for empty, '.' and '..'; 414 over 512 bytes", async () => {
      for (const bad of ["", ".", ".."]) {
        await expect(kv().get(bad)).rejects.toThrow(TypeError);
        await expect(kv().put(bad, "v")).rejects.toThrow(TypeError);
        await expect(kv().delete(bad)).rejects.toThrow(TypeError);
      }
      await expect(kv().get("k".repeat(513))).rejects.toThrow(/^KV GET failed: 414 /);
      await expect(kv().put("é".repeat(300), "v")).rejects.toThrow(/^KV PUT failed: 414 /);
    });

    it("refuses expirations under a minute away, bad TTLs, large metadata and large pages", async () => {
      const key = fresh("refused");
      await expect(kv().put(key, "v", { expirationTtl: 59 })).rejects.toThrow(/^KV PUT failed: 400 .*at least 60/);
      await expect(kv().put(key, "v", { expirationTtl: 0 })).rejects.toThrow(/^KV PUT failed: 400 /);
      await expect(kv().put(key, "v", { expiration: 100 })).rejects.toThrow(/^KV PUT failed: 400 /);
      await expect(kv().put(key, "v", { expiration: nowSeconds() + 30 })).rejects.toThrow(
        /^KV PUT failed: 400 .*at least 60 seconds/,
      );
      await expect(kv().put(key, "v", { metadata: "x".repeat(1023) })).rejects.toThrow(/^KV PUT failed: 413 /);
      await expect(kv().list({ limit: 1001 })).rejects.toThrow(/^KV GET failed: 400 /);
      await expect(kv().get(key, { type: "text", cacheTtl: 10 })).rejects.toThrow(/^KV GET failed: 400 /);
      await expect(kv().get(Array.from({ length: 101 }, (_, i) => `${key}${i}`))).rejects.toThrow(
        /^KV GET_BULK failed: 400 /,
      );
      await expect(kv().get([key], "arrayBuffer" as "text")).rejects.toThrow(/^KV GET_BULK failed: 400 /);
      // Nothing refused was stored.
      expect(await kv().get(key)).toBeNull();
      await kv().put(key, "v", { expirationTtl: 60 });
      expect(await kv().get(key)).toBe("v");
      // An unknown type: a TypeError once there is a value to decode (a missing key is null).
      await expect(kv().get(key, "blob" as "text")).rejects.toThrow(TypeError);
    });
  });
}
