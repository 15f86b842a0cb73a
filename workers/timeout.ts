/**
 * Bounded calls to other objects: a fan-out (status gathering, view pushes) must not hang on
 * one slow or unreachable region.
 */

/** Resolves to the call's value, or null when it throws or takes longer than `timeoutMs`. */
export async function withTimeout<T>(call: () => Promise<T>, timeoutMs: number): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), timeoutMs);
  });
  try {
    return await Promise.race([call(), timeout]);
  } catch (error) {
    console.error("bounded call failed:", error);
    return null;
  } finally {
    clearTimeout(timer);
  }
}
