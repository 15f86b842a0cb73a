/**
 * The Worker's entry points: the HTTP router, the queue consumers, and the replica class.
 */
import { createApp } from "./router/app.ts";
import { DEAD_LETTER_QUEUE, consumeDeadLetters, consumeReplication } from "./queue/consumer.ts";

export { Control } from "./control/control.ts";
export { Replica } from "./replica/replica.ts";
export { Watchers } from "./watch/watchers.ts";

const app = createApp();

export default {
  fetch: app.fetch,
  async queue(batch, env) {
    if (batch.queue === DEAD_LETTER_QUEUE) await consumeDeadLetters(batch, env);
    else await consumeReplication(batch, env);
  },
} satisfies ExportedHandler<Env>;
