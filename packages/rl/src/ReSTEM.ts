/**
 * ReST-EM as SEAL runs it: per round, sample k self-edits per context, score each by the inner
 * loop (averaged over reward seeds), keep the good ones, and fine-tune the generator on
 * (prompt, kept self-edit) with the loss on the self-edit only.
 *
 * Selection: `best` keeps each context's best sample (when its reward exceeds `minReward`);
 * `threshold` keeps every sample with reward >= `threshold`; `positive-gain` keeps every sample
 * that beats the context's empty self-edit (for knowledge: training on the passage alone).
 * `restartFromBase` fine-tunes the base generator on each round's data (the original ReST-EM)
 * instead of continuing from the previous round.
 */
import { Policy } from "@seal/core/Policy"
import { SelfEditSampler } from "@seal/core/SelfEditSampler"
import { Effect, Layer, Schema } from "effect"
import { Optimizer, roundMetrics, updateEvent } from "./Optimizer.js"
import { mixSeed, type ScoredSample, scoreSamples } from "./Scoring.js"

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

export const SupervisedConfig = Schema.Struct({
  learningRate: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 1e-3 }),
  epochs: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 2 }),
  batchSize: Schema.optionalWith(PositiveInt, { default: () => 4 })
}).annotations({ identifier: "SupervisedConfig" })

export const ReSTEMConfig = Schema.Struct({
  sampling: Schema.optionalWith(SamplingConfig, { default: () => Schema.decodeSync(SamplingConfig)({}) }),
  selection: Schema.optionalWith(Schema.Literal("best", "threshold", "positive-gain"), {
    default: () => "best" as const
  }),
  /** `best`: a context's best sample is kept only above this reward. */
  minReward: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  /** `threshold`: keep samples with reward >= this. */
  threshold: Schema.optionalWith(Schema.Number, { default: () => 0.5 }),
  restartFromBase: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  update: Schema.optionalWith(SupervisedConfig, { default: () => Schema.decodeSync(SupervisedConfig)({}) })
}).annotations({ identifier: "ReSTEMConfig" })
export type ReSTEMConfig = typeof ReSTEMConfig.Type

/** Which samples of one context's group `select` keeps. */
export const select = (
  config: Pick<ReSTEMConfig, "selection" | "minReward" | "threshold">,
  group: ReadonlyArray<ScoredSample>,
  baseline: number | undefined
): Array<ScoredSample> => {
  switch (config.selection) {
    case "best": {
      let best: ScoredSample | undefined
      for (const s of group) if (best === undefined || s.reward > best.reward) best = s
      return best !== undefined && best.reward > config.minReward ? [best] : []
    }
    case "threshold":
      return group.filter((s) => s.reward >= config.threshold)
    case "positive-gain":
      return group.filter((s) => s.reward > (baseline ?? 0))
  }
}

export const layer = (config: ReSTEMConfig): Layer.Layer<Optimizer> =>
  Layer.succeed(
    Optimizer,
    Optimizer.of({
      name: "rest-em",
      round: ({ contexts, journal, round, seed }) =>
        Effect.gen(function*() {
          const sampler = yield* SelfEditSampler
          const policy = yield* Policy
          const s = config.sampling
          const scoring = {
            rewardSeeds: s.rewardSeeds,
            seed,
            evalBatch: s.evalBatch,
            concurrency: s.concurrency
          }
          const samples = yield* sampler.sample(contexts, {
            k: s.k,
            temperature: s.temperature,
            topP: s.topP,
            maxTokens: s.maxTokens,
            seed: mixSeed(seed, round)
          })
          const scored = yield* scoreSamples(samples, journal, { ...scoring, round })

          let baselines: ReadonlyArray<number> | undefined
          if (config.selection === "positive-gain") {
            // The empty self-edit, scored once per context (round 0 of the journal).
            const empty = contexts.map((
              c
            ) => [{ contextId: c.id, index: -1, text: "", tokens: 0, finishReason: "eos" as const }])
            const scoredEmpty = yield* scoreSamples(empty, journal, { ...scoring, round: 0 })
            baselines = scoredEmpty.map((row) => row[0]!.reward)
          }
          const kept = scored.flatMap((group, i) =>
            select(config, group, baselines?.[i]).map((k) => ({
              prompt: contexts[i]!.prompt,
              completion: k.sample.text
            }))
          )
          if (config.restartFromBase) yield* policy.reset
          const update = kept.length === 0
            ? undefined
            : yield* policy.supervised(kept, { ...config.update, seed: mixSeed(seed, round, 0x5f7) })
          yield* journal.record([updateEvent(round, kept.length, update)])
          return roundMetrics(round, scored, kept.length, update)
        })
    })
  )
