// A process in the simulation: it can crash (its in-memory state is lost, its pending work
// never resumes, calls it was serving fail) and restart as a new incarnation over the same
// storage. Everything an incarnation awaits goes through `guard`, so a dead incarnation's code
// simply stops, as a crashed isolate's does.

/** A caller's view of a call served by a host that crashed meanwhile. */
export class CrashError extends Error {
  override readonly name = "CrashError";
}

/** One life of a process. */
export class Incarnation {
  alive = true;
  private readonly serving = new Set<(error: Error) => void>();

  /** Settles `promise` for this incarnation only if it is still alive then (else never). */
  guard<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      promise.then(
        (value) => {
          if (this.alive) resolve(value);
        },
        (error: unknown) => {
          if (this.alive) reject(error);
        },
      );
    });
  }

  /** Runs a call this incarnation serves: if it crashes first, the caller sees a failure. */
  serve<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (error: Error): void => reject(error);
      this.serving.add(fail);
      run().then(
        (value) => {
          this.serving.delete(fail);
          if (this.alive) resolve(value);
        },
        (error: unknown) => {
          this.serving.delete(fail);
          if (this.alive) reject(error);
        },
      );
    });
  }

  /** Ends this life: pending awaits never resume, calls being served fail. */
  crash(): void {
    this.alive = false;
    for (const fail of this.serving) fail(new CrashError("the callee crashed"));
    this.serving.clear();
  }
}

/**
 * Wraps a storage-like object so that every method refuses once `incarnation` is dead: a
 * crashed process writes nothing more, even from code that was already running.
 */
export function guardedStorage<T extends object>(storage: T, incarnation: Incarnation): T {
  const proxies = new WeakMap<object, object>();
  const wrap = (target: object): object => {
    const known = proxies.get(target);
    if (known !== undefined) return known;
    const proxy = new Proxy(target, {
      get(obj, prop, receiver) {
        const value: unknown = Reflect.get(obj, prop, receiver);
        if (typeof value === "function") {
          return (...args: unknown[]) => {
            if (!incarnation.alive) throw new CrashError("storage used after a crash");
            return (value as (...a: unknown[]) => unknown).apply(obj, args);
          };
        }
        if (typeof value === "object" && value !== null && !(value instanceof Uint8Array)) return wrap(value);
        return value;
      },
    });
    proxies.set(target, proxy);
    return proxy;
  };
  return wrap(storage) as T;
}
