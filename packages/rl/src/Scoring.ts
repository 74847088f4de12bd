/**
 * Scoring sampled self-edits through the `TaskReward`, shared by the optimizers: every (context,
 * sample, reward seed) is one inner loop; finished ones are read back from the journal; the rest
 * run in batches of `evalBatch` requests, at most `concurrency` batches at once (the reward layer
 * trains a batch's adapters together), each batch recorded as soon as it is done.
 */
import type { RunDirectoryError } from "@seal/core/RunDirectory"
import { mixSeed, stringHash } from "@seal/core/Seeds"
import { type SampledSelfEdit, SelfEditSampler } from "@seal/core/SelfEditSampler"
import { TaskReward } from "@seal/core/TaskReward"
import type { RewardError } from "@seal/core/TaskReward"
export { mixSeed } from "@seal/core/Seeds"
import { Effect, Schema } from "effect"
import { type Journal, JournalMismatch, type RewardEvent, rewardKey, textHash } from "./Journal.js"
import type { RoundInput } from "./Optimizer.js"

const PositiveInt = Schema.Int.pipe(Schema.positive())

export const SamplingConfig = Schema.Struct({
  k: Schema.optionalWith(PositiveInt, { default: () => 4 }),
  temperature: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => 1 }),
  topP: Schema.optionalWith(Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(1)), {
    default: () => 1
  }),
  maxTokens: Schema.optionalWith(PositiveInt, { default: () => 96 }),
  /** Inner-loop seeds per sample; the reward is their mean. */
  rewardSeeds: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  /** Requests per `TaskReward.evaluate` call (adapters trained together). */
  evalBatch: Schema.optionalWith(PositiveInt, { default: () => 16 }),
  /** Evaluation batches in flight at once. */
  concurrency: Schema.optionalWith(PositiveInt, { default: () => 1 })
}).annotations({ identifier: "SamplingConfig" })
export type SamplingConfig = typeof SamplingConfig.Type

export interface ScoringOptions {
  readonly round: number
  readonly rewardSeeds: number
  readonly seed: number
  readonly evalBatch: number
  readonly concurrency: number
}

export interface ScoredSample {
  readonly sample: SampledSelfEdit
  /** Mean over reward seeds. */
  readonly reward: number
  readonly events: ReadonlyArray<RewardEvent>
}

/** Scores `samples[i][j]`; returns the same shape. */
export const scoreSamples = (
  samples: ReadonlyArray<ReadonlyArray<SampledSelfEdit>>,
  journal: Journal,
  options: ScoringOptions
): Effect.Effect<Array<Array<ScoredSample>>, RewardError | RunDirectoryError | JournalMismatch, TaskReward> =>
  Effect.gen(function*() {
    const reward = yield* TaskReward
    const jobs = samples.flat().flatMap((sample) =>
      Array.from({ length: options.rewardSeeds }, (_, s) => ({
        sample,
        rewardSeed: s,
        // Common random numbers: every sample of a context is scored with the same inner-loop
        // seeds, so the differences within a group come from the self-edits, not from the
        // adapters' initialisation and data order.
        seed: mixSeed(options.seed, options.round, stringHash(sample.contextId), s),
        hash: textHash(sample.text)
      }))
    )
    const done = new Map<string, RewardEvent>()
    const todo: typeof jobs = []
    for (const job of jobs) {
      const key = rewardKey({
        round: options.round,
        contextId: job.sample.contextId,
        sample: job.sample.index,
        rewardSeed: job.rewardSeed
      })
      const recorded = yield* journal.rewards(key)
      if (recorded === undefined) todo.push(job)
      else if (recorded.hash !== job.hash) {
        return yield* new JournalMismatch({
          detail:
            `round ${options.round}, context ${job.sample.contextId}, sample ${job.sample.index}: the generator ` +
            `wrote a different self-edit than the recorded run (hash ${job.hash} vs ${recorded.hash}); ` +
            "resume needs the same model, backend and seed"
        })
      } else done.set(key, recorded)
    }
    const batches: Array<typeof todo> = []
    for (let i = 0; i < todo.length; i += options.evalBatch) batches.push(todo.slice(i, i + options.evalBatch))
    yield* Effect.forEach(batches, (batch) =>
      Effect.gen(function*() {
        const results = yield* reward.evaluate(
          batch.map((j) => ({ contextId: j.sample.contextId, selfEdit: j.sample.text, seed: j.seed }))
        )
        const events: Array<RewardEvent> = batch.map((j, i) => ({
          type: "reward",
          round: options.round,
          contextId: j.sample.contextId,
          sample: j.sample.index,
          rewardSeed: j.rewardSeed,
          seed: j.seed,
          hash: j.hash,
          selfEdit: j.sample.text,
          tokens: j.sample.tokens,
          reward: results[i]!.reward,
          correct: results[i]!.correct,
          total: results[i]!.total,
          seconds: results[i]!.seconds,
          adapterId: results[i]!.adapterId ?? null
        }))
        yield* journal.record(events)
        for (const e of events) done.set(rewardKey(e), e)
      }), { concurrency: options.concurrency, discard: true })
    return samples.map((row) =>
      row.map((sample) => {
        const events = Array.from({ length: options.rewardSeeds }, (_, s) =>
          done.get(
            rewardKey({ round: options.round, contextId: sample.contextId, sample: sample.index, rewardSeed: s })
          )!)
        return {
          sample,
          reward: events.reduce((a, e) => a + e.reward, 0) / events.length,
          events
        }
      })
    )
  })

/**
 * One round's sampling and scoring, as both optimizers start: k self-edits per context from the
 * current generator (seeded by round), each scored through the journal.
 */
export const sampleAndScore = (
  input: Pick<RoundInput, "contexts" | "journal" | "round" | "seed">,
  s: SamplingConfig
) =>
  Effect.gen(function*() {
    const sampler = yield* SelfEditSampler
    const samples = yield* sampler.sample(input.contexts, {
      k: s.k,
      temperature: s.temperature,
      topP: s.topP,
      maxTokens: s.maxTokens,
      seed: mixSeed(input.seed, input.round)
    })
    return yield* scoreSamples(samples, input.journal, {
      round: input.round,
      rewardSeeds: s.rewardSeeds,
      seed: input.seed,
      evalBatch: s.evalBatch,
      concurrency: s.concurrency
    })
  })
