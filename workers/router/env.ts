/**
 * The router's Hono environment, in its own module so that route modules and the app that
 * mounts them do not import each other.
 */

/** Hono's environment for this app. */
export interface AppEnv {
  Bindings: Env;
}
