// The transport seam under local WAN emulation (`workers/stubs.ts`, `workers/router/routing.ts`):
// a call waits a hop there and a hop back, also when it fails; hops last half the measured round
// trip, vary within the configured jitter and not at all within a region; the router's edge
// follows X-Client-Location only while emulation is on, and a malformed header is refused.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { StoreError } from "../../shared/errors.ts";
import { WAN_RTT_MS } from "../../shared/wan-rtt.ts";
import { loadConfig } from "../../workers/config.ts";
import { edgeRegion, regionPreference } from "../../workers/router/routing.ts";
import { delayedCalls, hopMs } from "../../workers/stubs.ts";
import { api } from "./helpers.ts";

const wanOn = (extra: Partial<Env> = {}): Env => ({ ...env, WAN_EMULATION: "on", ...extra }) as Env;

function located(header?: string): Request {
  return new Request(
    "https://kv.test/v1/kv/a",
    header === undefined ? {} : { headers: { "X-Client-Location": header } },
  );
}

describe("delayed calls", () => {
  it("wait a hop before the call and a hop after it, around the call itself", async () => {
    const log: string[] = [];
    const target = {
      name: "stub",
      async echo(value: string): Promise<string> {
        log.push(`call ${value}`);
        return value;
      },
    };
    const wait = async (ms: number): Promise<void> => {
      log.push(`wait ${ms}`);
    };
    const delayed = delayedCalls(
      target,
      () => 30,
      () => 40,
      wait,
    );
    expect(await delayed.echo("x")).toBe("x");
    expect(log).toEqual(["wait 30", "call x", "wait 40"]);
    // Plain properties pass through untouched.
    expect(delayed.name).toBe("stub");
  });

  it("wait the hop back before a failure reaches the caller", async () => {
    const log: string[] = [];
    const failing = {
      async fail(): Promise<never> {
        log.push("call");
        throw new Error("unreachable");
      },
    };
    const delayed = delayedCalls(
      failing,
      () => 5,
      () => 7,
      async (ms) => {
        log.push(`wait ${ms}`);
      },
    );
    await expect(delayed.fail()).rejects.toThrow("unreachable");
    expect(log).toEqual(["wait 5", "call", "wait 7"]);
  });
});

/** 50 successive wnam→weur hops with ±20 ms jitter under `seed`. */
function draws(seed: string): number[] {
  return Array.from({ length: 50 }, () => hopMs(wanOn({ WAN_JITTER_MS: "20", WAN_SEED: seed }), "wnam", "weur"));
}

describe("hop delays", () => {
  it("are zero with emulation off and within a region, else half the measured round trip", () => {
    expect(hopMs(env, "enam", "apac")).toBe(0);
    const on = wanOn();
    expect(hopMs(on, "enam", "enam")).toBe(0);
    expect(hopMs(on, "enam", "apac")).toBe((WAN_RTT_MS.enam.apac as number) / 2);
    expect(hopMs(on, "apac", "enam")).toBe(hopMs(on, "enam", "apac"));
    expect(hopMs(on, "weur", "eeur")).toBe(11.5);
  });

  it("vary within the jitter, as a function of the seed", () => {
    const base = (WAN_RTT_MS.wnam.weur as number) / 2;
    const first = draws("7");
    for (const ms of first) {
      expect(ms).toBeGreaterThanOrEqual(base - 20);
      expect(ms).toBeLessThanOrEqual(base + 20);
    }
    expect(new Set(first).size).toBeGreaterThan(10);
    // The same seed gives the same sequence again.
    draws("8");
    expect(draws("7")).toEqual(first);
  });
});

describe("the router's edge", () => {
  it("follows X-Client-Location under emulation, to the nearest location hint", () => {
    const config = loadConfig(wanOn());
    expect(edgeRegion(config, located("-33.87,151.21"))).toBe("oc");
    expect(edgeRegion(config, located(" 1.35 , 103.82 "))).toBe("apac");
    expect(edgeRegion(config, located())).toBe(config.defaultRegion);
    // Serving prefers the configured region nearest the client.
    expect(regionPreference(config, located("48.86,2.35"))[0]).toBe("weur");
  });

  it("ignores the header with emulation off", () => {
    const config = loadConfig(env);
    expect(edgeRegion(config, located("-33.87,151.21"))).toBe(config.defaultRegion);
    expect(regionPreference(config, located("48.86,2.35"))[0]).toBe(config.defaultRegion);
    expect(regionPreference(config, located("not a place"))[0]).toBe(config.defaultRegion);
  });

  it("refuses a malformed header under emulation with invalid_header", () => {
    const config = loadConfig(wanOn());
    const refused = ["", "48.86", "48.86,2.35,1", "north,east", "91,0", "0,181", "NaN,1", ","].filter((bad) => {
      try {
        edgeRegion(config, located(bad));
        return false;
      } catch (error) {
        return error instanceof StoreError && error.code === "invalid_header";
      }
    });
    expect(refused).toHaveLength(8);
  });

  it("serves as before through the API when emulation is off, whatever the header says", async () => {
    const res = await api("/v1/kv/transport-probe", { headers: { "X-Client-Location": "garbage" } });
    expect(res.status).toBe(404);
    expect(res.headers.get("X-Served-By")).toBe(loadConfig(env).defaultRegion);
  });
});
