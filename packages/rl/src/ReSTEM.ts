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
import { Effect, Layer, Schema } from "effect"
import { Optimizer, roundMetrics, updateEvent } from "./Optimizer.js"
import { mixSeed, sampleAndScore, SamplingConfig, type ScoredSample, scoreSamples } from "./Scoring.js"

const PositiveInt = Schema.Int.pipe(Schema.positive())

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
          const policy = yield* Policy
          const s = config.sampling
          const scored = yield* sampleAndScore({ contexts, journal, round, seed }, s)

          let baselines: ReadonlyArray<number> | undefined
          if (config.selection === "positive-gain") {
            // The empty self-edit, scored once per context (round 0 of the journal).
            const empty = contexts.map((
              c
            ) => [{ contextId: c.id, index: -1, text: "", tokens: 0, finishReason: "eos" as const }])
            const scoredEmpty = yield* scoreSamples(empty, journal, {
              round: 0,
              rewardSeeds: s.rewardSeeds,
              seed,
              evalBatch: s.evalBatch,
              concurrency: s.concurrency
            })
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
