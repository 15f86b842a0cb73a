// Rotating SESSION_SECRET: tokens name their signing key, the previous secret still verifies
// during the grace period, `s1` tokens issued before key ids keep working, and anything signed
// with a secret the router does not hold, or tampered with, is refused.
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { toBase64Url, utf8 } from "../../shared/bytes.ts";
import { StoreError } from "../../shared/errors.ts";
import { type SessionSeen, encodeSessionPayload } from "../../shared/store/session.ts";
import { type VersionVector, formatVv } from "../../shared/version-vector.ts";
import { createApp } from "../../workers/router/app.ts";
import { type SessionSecrets, sessionSecrets, signSession, verifySession } from "../../workers/router/session.ts";
import { ADMIN, api, uniqueKey } from "./helpers.ts";

const OLD = "old-secret";
const NEW = "new-secret";
const OTHER = "some-other-store-secret";

// Key ids computed outside the Worker: base64url(SHA-256("kv-session-kid:" + secret)), first 8
// characters. Pinned, because changing the derivation would refuse every client's token on deploy.
const KID_OLD = "VK3BkZyp";
const KID_NEW = "Fxc7b6fl";
const KID_TEST = "yk8jj2Yv";

/** What a session has seen: writes of wnam and apac in shard 1, and of enam in shard 0. */
const SEEN: SessionSeen = new Map([
  [0, { enam: 2 }],
  [1, { wnam: 3, apac: 7 }],
]);
/** The one vector an `s1` token carries: it reads as shard 0's. */
const SEEN_V1: VersionVector = { wnam: 3, apac: 7 };

const BEFORE: SessionSecrets = { current: OLD };
const DURING: SessionSecrets = { current: NEW, previous: OLD };
const AFTER: SessionSecrets = { current: NEW };

/** The error a verification failed with, or "ok" with the vector it returned. */
async function outcome(secrets: SessionSecrets, token: string): Promise<string> {
  try {
    return `ok ${JSON.stringify([...(await verifySession(secrets, token))])}`;
  } catch (error) {
    if (error instanceof StoreError) return error.code;
    throw error;
  }
}

/** A token in the first format, `s1.<payload>.<mac>`, whose MAC covers the payload alone. */
async function legacyToken(secret: string, seen: VersionVector): Promise<string> {
  const key = await crypto.subtle.importKey("raw", utf8(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const payload = formatVv(seen);
  const mac = await crypto.subtle.sign("HMAC", key, utf8(payload));
  return `s1.${payload}.${toBase64Url(new Uint8Array(mac))}`;
}

/** Calls a fresh router whose environment carries these session secrets. */
async function routed(
  secrets: { SESSION_SECRET: string; SESSION_SECRET_PREVIOUS?: string },
  path: string,
  init: RequestInit = {},
) {
  const ctx = createExecutionContext();
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${ADMIN}`);
  const res = await createApp().fetch(
    new Request(`http://kv.test${path}`, { ...init, headers }),
    { ...env, ...secrets },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe("session secrets from the environment", () => {
  it("reads the previous secret only when it is set, non-empty and differs from the current one", () => {
    expect(sessionSecrets({ ...env, SESSION_SECRET: NEW })).toEqual({ current: NEW });
    expect(sessionSecrets({ ...env, SESSION_SECRET: NEW, SESSION_SECRET_PREVIOUS: OLD } as Env)).toEqual(DURING);
    expect(sessionSecrets({ ...env, SESSION_SECRET: NEW, SESSION_SECRET_PREVIOUS: "" } as Env)).toEqual(AFTER);
    expect(sessionSecrets({ ...env, SESSION_SECRET: NEW, SESSION_SECRET_PREVIOUS: NEW } as Env)).toEqual(AFTER);
  });
});

describe("signing", () => {
  it("issues s3 tokens naming the current secret's key id", async () => {
    expect((await signSession(BEFORE, SEEN)).split(".").slice(0, 2)).toEqual(["s3", KID_OLD]);
    expect((await signSession(DURING, SEEN)).split(".").slice(0, 2)).toEqual(["s3", KID_NEW]);
    expect((await signSession(AFTER, SEEN)).split(".").slice(0, 2)).toEqual(["s3", KID_NEW]);
  });

  it("signs router answers with SESSION_SECRET", async () => {
    const res = await api(`/v1/kv/${uniqueKey("kid")}?region=enam`, { method: "PUT", body: "v" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-session-token")).toMatch(
      new RegExp(`^s3\\.${KID_TEST}\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$`),
    );
  });
});

describe("rotation", () => {
  it("accepts a token signed with the old secret while it is the previous secret, and refuses it after", async () => {
    const token = await signSession(BEFORE, SEEN);
    expect(await outcome(BEFORE, token)).toBe(`ok ${JSON.stringify([...SEEN])}`);
    expect(await outcome(DURING, token)).toBe(`ok ${JSON.stringify([...SEEN])}`);
    expect(await outcome(AFTER, token)).toBe("invalid_session_token");
  });

  it("tells a retired key apart from a forgery in the message, with the same code", async () => {
    const token = await signSession(BEFORE, SEEN);
    await expect(verifySession(AFTER, token)).rejects.toMatchObject({
      code: "invalid_session_token",
      message: expect.stringContaining("does not hold"),
    });
  });

  it("accepts tokens signed with the new secret before, during and after the grace period", async () => {
    const token = await signSession(DURING, SEEN);
    expect(await outcome(DURING, token)).toBe(`ok ${JSON.stringify([...SEEN])}`);
    expect(await outcome(AFTER, token)).toBe(`ok ${JSON.stringify([...SEEN])}`);
    expect(await outcome(BEFORE, token)).toBe("invalid_session_token");
  });

  it("keeps s1 tokens valid under either secret of the rotation", async () => {
    const token = await legacyToken(OLD, SEEN_V1);
    const asShard0 = `ok ${JSON.stringify([[0, SEEN_V1]])}`;
    expect(await outcome(BEFORE, token)).toBe(asShard0);
    expect(await outcome(DURING, token)).toBe(asShard0);
    expect(await outcome(AFTER, token)).toBe("invalid_session_token");
    const signedWithNew = await legacyToken(NEW, SEEN_V1);
    expect(await outcome(DURING, signedWithNew)).toBe(asShard0);
    expect(await outcome(BEFORE, signedWithNew)).toBe("invalid_session_token");
  });

  it("refuses a token from a secret the router does not hold, even during a rotation", async () => {
    const token = await signSession({ current: OTHER }, SEEN);
    expect(await outcome(DURING, token)).toBe("invalid_session_token");
    expect(await outcome(DURING, await legacyToken(OTHER, SEEN_V1))).toBe("invalid_session_token");
  });
});

describe("tampering", () => {
  it("refuses a token whose key id was swapped for another held key's", async () => {
    const [version, kid, payload, mac] = (await signSession(BEFORE, SEEN)).split(".");
    expect(kid).toBe(KID_OLD);
    // The MAC is genuine under OLD but covers KID_OLD, so naming NEW (or nothing) must not pass.
    expect(await outcome(DURING, `${version}.${KID_NEW}.${payload}.${mac}`)).toBe("invalid_session_token");
    expect(await outcome(DURING, `s1.${payload}.${mac}`)).toBe("invalid_session_token");
    expect(await outcome(DURING, `${version}.${kid}.${payload}.${mac}`)).toBe(`ok ${JSON.stringify([...SEEN])}`);
  });

  it("refuses a token whose key id is unknown or malformed", async () => {
    const [version, , payload, mac] = (await signSession(DURING, SEEN)).split(".");
    for (const kid of ["AAAAAAAA", `${KID_NEW}x`, KID_NEW.slice(1), "Fxc7b6f.", ""]) {
      expect(await outcome(DURING, `${version}.${kid}.${payload}.${mac}`)).toBe("invalid_session_token");
    }
  });

  it("refuses a token whose payload or MAC changed", async () => {
    const [version, kid, payload, mac] = (await signSession(DURING, SEEN)).split(".");
    const other = encodeSessionPayload(new Map([[1, { wnam: 4, apac: 7 }]]));
    expect(await outcome(DURING, `${version}.${kid}.${other}.${mac}`)).toBe("invalid_session_token");
    const flipped = `${mac!.slice(0, -2)}${mac!.endsWith("AA") ? "BA" : "AA"}`;
    expect(await outcome(DURING, `${version}.${kid}.${payload}.${flipped}`)).toBe("invalid_session_token");
  });
});

describe("through the router", () => {
  it("serves a session read with an old token after rotation only while SESSION_SECRET_PREVIOUS is set", async () => {
    const key = uniqueKey("rotate");
    const write = await routed({ SESSION_SECRET: OLD }, `/v1/kv/${key}?region=wnam`, { method: "PUT", body: "before" });
    expect(write.status).toBe(200);
    const token = write.headers.get("x-session-token")!;
    expect(token.split(".").slice(0, 2)).toEqual(["s3", KID_OLD]);
    const session = { headers: { "X-Session-Token": token } };

    const during = await routed(
      { SESSION_SECRET: NEW, SESSION_SECRET_PREVIOUS: OLD },
      `/v1/kv/${key}?region=apac&consistency=session`,
      session,
    );
    expect(during.status).toBe(200);
    expect(await during.text()).toBe("before");
    // The answer carries a token under the new secret, so the client moves off the old one.
    expect(during.headers.get("x-session-token")!.split(".").slice(0, 2)).toEqual(["s3", KID_NEW]);

    const after = await routed({ SESSION_SECRET: NEW }, `/v1/kv/${key}?region=apac&consistency=session`, session);
    expect(after.status).toBe(400);
    expect(await errorCode(after)).toBe("invalid_session_token");
    // The test Worker's own secret is yet another one, and it has no previous secret.
    const elsewhere = await api(`/v1/kv/${key}?region=apac&consistency=session`, session);
    expect(elsewhere.status).toBe(400);
    expect(await errorCode(elsewhere)).toBe("invalid_session_token");
  });

  it("accepts an s1 token on writes and reads during the rotation", async () => {
    const key = uniqueKey("legacy");
    const session = { headers: { "X-Session-Token": await legacyToken(OLD, {}) } };
    const rotating = { SESSION_SECRET: NEW, SESSION_SECRET_PREVIOUS: OLD };
    const write = await routed(rotating, `/v1/kv/${key}?region=enam`, { method: "PUT", body: "v", ...session });
    expect(write.status).toBe(200);
    expect(write.headers.get("x-session-token")!.split(".").slice(0, 2)).toEqual(["s3", KID_NEW]);
    expect((await routed(rotating, `/v1/kv/${key}?region=enam&consistency=session`, session)).status).toBe(200);
    const refused = await routed({ SESSION_SECRET: NEW }, `/v1/kv/${key}?region=enam`, {
      method: "PUT",
      body: "w",
      ...session,
    });
    expect(refused.status).toBe(400);
    expect(await errorCode(refused)).toBe("invalid_session_token");
  });

  it("joins the tokens of answers that crossed in flight, and refuses the list if one is bad", async () => {
    const a = await signSession(
      DURING,
      new Map([
        [0, { enam: 2 }],
        [1, { wnam: 3 }],
      ]),
    );
    const b = await signSession(DURING, new Map([[1, { wnam: 1, apac: 7 }]]));
    const joined = await verifySession(DURING, `${a}, ${b}`);
    expect([...joined].sort(([x], [y]) => x - y)).toEqual([...SEEN]);
    // The old secret's token still verifies beside the new one's during the rotation.
    const old = await signSession(BEFORE, new Map([[2, { oc: 1 }]]));
    expect(await outcome(DURING, `${a},${old}`)).toBe(
      `ok ${JSON.stringify([
        [0, { enam: 2 }],
        [1, { wnam: 3 }],
        [2, { oc: 1 }],
      ])}`,
    );
    expect(await outcome(AFTER, `${a},${old}`)).toBe("invalid_session_token");
    expect(await outcome(DURING, `${a},garbage`)).toBe("invalid_session_token");
    expect(await outcome(DURING, Array.from({ length: 17 }, () => a).join(","))).toBe("invalid_session_token");
    expect(await outcome(DURING, Array.from({ length: 16 }, () => a).join(","))).toMatch(/^ok /);
  });
});
