/**
 * The run's memory of finished work, backed by its `events.jsonl`: reward evaluations are looked
 * up here before being run, and appended (synced) as soon as they finish. A resumed run therefore
 * redoes nothing that was recorded, and a sample whose text differs from the recorded one (a
 * non-deterministic generator) is an error rather than a silent mix of two runs.
 */
import * as EventLog from "@seal/core/EventLog"
import type { RunDirectoryError } from "@seal/core/RunDirectory"
import { Data, Effect, Ref } from "effect"
import { createHash } from "node:crypto"

export interface RewardEvent {
  readonly type: "reward"
  readonly round: number
  readonly contextId: string
  readonly sample: number
  readonly rewardSeed: number
  readonly seed: number
  /** sha256 of the self-edit text, first 16 hex digits. */
  readonly hash: string
  readonly selfEdit: string
  readonly tokens: number
  readonly reward: number
  readonly correct: number
  readonly total: number
  readonly seconds: number
  readonly adapterId: string | null
}

export interface UpdateEvent {
  readonly type: "update"
  readonly round: number
  readonly examples: number
  readonly steps: number
  readonly firstLoss: number | null
  readonly finalLoss: number | null
  readonly seconds: number
  readonly tokensPerSecond: number
  /** GRPO only. */
  readonly clippedFraction?: number
  readonly meanKl?: number
}

export type RunEvent = RewardEvent | UpdateEvent | { readonly type: string; readonly round?: number }

export class JournalMismatch extends Data.TaggedError("JournalMismatch")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

export const textHash = (text: string): string => createHash("sha256").update(text).digest("hex").slice(0, 16)

export const rewardKey = (e: Pick<RewardEvent, "round" | "contextId" | "sample" | "rewardSeed">): string =>
  `${e.round}|${e.contextId}|${e.sample}|${e.rewardSeed}`

export interface Journal {
  readonly rewards: (key: string) => Effect.Effect<RewardEvent | undefined>
  /**
   * Appends `events`. An update event for a round that already has one is not written again: a
   * resumed run may redo a round's (deterministic) update, and each round has one update.
   */
  readonly record: (events: ReadonlyArray<RunEvent>) => Effect.Effect<void, RunDirectoryError>
  readonly events: Effect.Effect<ReadonlyArray<RunEvent>>
}

/** Opens (or starts) the journal at `path`. */
export const open = (path: string): Effect.Effect<Journal, RunDirectoryError> =>
  Effect.gen(function*() {
    const existing = (yield* EventLog.read(path)) as Array<RunEvent>
    const all = yield* Ref.make<ReadonlyArray<RunEvent>>(existing)
    const byKey = new Map<string, RewardEvent>()
    const updated = new Set<number>()
    const index = (e: RunEvent) => {
      if (e.type === "reward") byKey.set(rewardKey(e as RewardEvent), e as RewardEvent)
      if (e.type === "update") updated.add((e as UpdateEvent).round)
    }
    existing.forEach(index)
    return {
      rewards: (key) => Effect.sync(() => byKey.get(key)),
      record: (events) =>
        Effect.gen(function*() {
          const fresh = events.filter((e) => !(e.type === "update" && updated.has((e as UpdateEvent).round)))
          yield* EventLog.append(path, fresh)
          fresh.forEach(index)
          yield* Ref.update(all, (xs) => [...xs, ...fresh])
        }),
      events: Ref.get(all)
    }
  })

/** An in-memory journal (tests, and runs that keep no directory). */
export const inMemory = (): Effect.Effect<Journal> =>
  Effect.gen(function*() {
    const all = yield* Ref.make<ReadonlyArray<RunEvent>>([])
    const byKey = new Map<string, RewardEvent>()
    return {
      rewards: (key) => Effect.sync(() => byKey.get(key)),
      record: (events) =>
        Effect.gen(function*() {
          for (const e of events) if (e.type === "reward") byKey.set(rewardKey(e as RewardEvent), e as RewardEvent)
          yield* Ref.update(all, (xs) => [...xs, ...events])
        }),
      events: Ref.get(all)
    }
  })
