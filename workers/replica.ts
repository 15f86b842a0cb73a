import { DurableObject } from "cloudflare:workers";
export class Replica extends DurableObject<Env> {
  ping(): string {
    return "pong";
  }
}
