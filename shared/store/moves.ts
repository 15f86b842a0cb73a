/**
 * A replica's part in moving keys between shards (`layout.ts`): refusing keys that live in
 * another shard, pulling a key from its old shard before serving it in its new one, handing an
 * old shard's moving keys over, and dropping the copies an old shard keeps once the move is done.
 */
import { type Result, fail, ok } from "../errors.ts";
import { MERKLE_BUCKETS, bucketOf } from "../merkle.ts";
import { shardOf } from "../shards.ts";
import { EMPTY_VV, type VersionVector } from "../version-vector.ts";
import { mergeMoved } from "./apply.ts";
import { type KeySnapshot, type MoveState } from "./contract.ts";
import { movesAway, moveId, placement } from "./layout.ts";
import { type ReplicaPorts, bounded } from "./ports.ts";
import { type ReplicaMachine } from "./replica-machine.ts";
import { type KeyRow } from "./storage.ts";
import { dropKey } from "./tree.ts";

/** Rows read per page of a hand-over or a clean-up. */
export const MOVE_PAGE_ROWS = 200;
/** Pages one hand-over step reads (a step is one control-object call). */
export const HANDOVER_PAGES_PER_STEP = 10;
/** Pages one clean-up step reads (one per tick). */
export const CLEANUP_PAGES_PER_TICK = 2;

/**
 * Before serving `key` here: refused (`wrong_shard`) when it lives in another shard under the
 * layout this replica follows; pulled from its old shard first while it moves in, caught up
 * with what the session saw there (`movedSession`).
 */
export async function placeKey(
  machine: ReplicaMachine,
  ports: ReplicaPorts,
  key: string,
  movedSession: VersionVector | undefined,
  timeoutMs: number,
): Promise<Result<null>> {
  // With several shards configured and no layout heard from the control object yet (a new
  // object whose first view did not arrive), this replica cannot tell whether keys are moving:
  // serving a key it would otherwise pull could give it a second writer in this region.
  if (!machine.layoutKnown && (machine.settings.shards ?? 1) > 1)
    return fail(
      "region_unavailable",
      `replica ${machine.region}:${machine.shard} has not heard the shard layout from the control object yet; retry`,
      { region: machine.region },
    );
  const layout = machine.layout;
  const where = placement(key, layout, machine.shard);
  if (where.kind === "home") return ok(null);
  if (where.kind === "elsewhere")
    return fail(
      "wrong_shard",
      `key "${key}" lives in shard ${where.shard} of ${layout.shards}, not ${machine.shard}: the caller's shard layout is out of date; retry`,
      { shard: where.shard },
    );
  const sibling = ports.sibling;
  const pulled =
    sibling === undefined
      ? null
      : await bounded(
          ports,
          () => sibling(where.from).pullMoved(key, movedSession),
          timeoutMs,
          (error) => ports.warn(`replica ${machine.region}:${machine.shard}: shard ${where.from} unreachable`, error),
        );
  if (pulled === null || !pulled.ok)
    return fail(
      "region_unavailable",
      `key "${key}" is moving to another shard and its old shard in ${machine.region} did not answer; retry`,
      { region: machine.region },
    );
  mergeMoved(machine, key, pulled.value, ports.now());
  return ok(null);
}

/** Merges rows an old shard hands over (only keys that live here); how many changed a key. */
export function takeMoved(machine: ReplicaMachine, rows: readonly KeyRow[], nowMs: number): number {
  let merged = 0;
  for (const row of rows) {
    if (placement(row.key, machine.layout, machine.shard).kind === "elsewhere") continue;
    // The row's stream positions are the old shard's: mergeMoved keeps none of them.
    const snapshot: KeySnapshot = { state: row.encoded, seqs: EMPTY_VV, epoch: row.epoch };
    if (mergeMoved(machine, row.key, snapshot, nowMs)) merged += 1;
  }
  return merged;
}

/** Where a page of rows ends, to resume after it. */
function pageEnd(rows: readonly KeyRow[]): { bucket: number; key: string } | null {
  const last = rows.at(-1);
  return last === undefined ? null : { bucket: bucketOf(last.key), key: last.key };
}

/**
 * One bounded step of handing this old shard's moving keys to their new shards in its region,
 * for move `id`, resuming where the last step stopped. `done` once every key is handed over.
 */
export async function handOverStep(
  machine: ReplicaMachine,
  ports: ReplicaPorts,
  id: string,
  timeoutMs: number,
): Promise<Result<{ done: boolean; moved: number }>> {
  const layout = machine.layout;
  const move = machine.move;
  if (move === null || move.id !== id || moveId(layout) !== id)
    return fail("region_unavailable", `replica ${machine.region}:${machine.shard} has not recorded move ${id} yet`);
  if (move.handedOver) return ok({ done: true, moved: 0 });
  const sibling = ports.sibling;
  if (sibling === undefined) return fail("region_unavailable", "no other shard is reachable from here");
  let after = move.after;
  let moved = 0;
  for (let page = 0; page < HANDOVER_PAGES_PER_STEP; page += 1) {
    const rows = machine.storage.kv.bucketRows(0, MERKLE_BUCKETS, after, MOVE_PAGE_ROWS);
    const byShard = new Map<number, KeyRow[]>();
    for (const row of rows)
      if (movesAway(row.key, layout, machine.shard)) {
        const to = shardOf(row.key, layout.shards);
        const group = byShard.get(to) ?? [];
        group.push(row);
        byShard.set(to, group);
      }
    for (const [to, group] of byShard) {
      const taken = await bounded(ports, () => sibling(to).takeMoved(group), timeoutMs);
      if (taken === null || !taken.ok)
        return fail("region_unavailable", `shard ${to} in ${machine.region} did not take the keys handed over; retry`);
      moved += group.length;
    }
    const done = rows.length < MOVE_PAGE_ROWS;
    after = done ? null : pageEnd(rows);
    machine.storage.transaction(() => machine.recordMove({ ...move, handedOver: done, after }));
    if (done) return ok({ done: true, moved });
  }
  return ok({ done: false, moved });
}

/**
 * Once a move is done, a bounded step of forgetting the keys this shard handed over (they live
 * in their new shards now); a no-op when there is nothing left to drop.
 */
export function cleanUpStep(machine: ReplicaMachine): void {
  if (!machine.cleaning) return;
  const layout = machine.layout;
  const move = machine.move as MoveState;
  // After the hand-over, `after` is null and then walks the clean-up; a finished clean-up is
  // recorded with the cursor past every bucket.
  let after = move.after;
  for (let page = 0; page < CLEANUP_PAGES_PER_TICK; page += 1) {
    const rows = machine.storage.kv.bucketRows(0, MERKLE_BUCKETS, after, MOVE_PAGE_ROWS);
    machine.storage.transaction(() => {
      for (const row of rows)
        if (placement(row.key, layout, machine.shard).kind === "elsewhere") {
          const stored = machine.storage.kv.get(row.key);
          if (stored !== null) dropKey(machine.storage, row.key, stored);
        }
    });
    const done = rows.length < MOVE_PAGE_ROWS;
    after = done ? CLEANED : pageEnd(rows);
    machine.storage.transaction(() => machine.recordMove({ ...move, after }));
    if (done) return;
  }
}

/** The clean-up cursor of a finished clean-up: past every bucket. */
const CLEANED = { bucket: MERKLE_BUCKETS, key: "" };
