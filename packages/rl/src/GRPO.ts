/**
 * GRPO over self-edits: each context's k samples form a group; a sample's advantage is its
 * reward minus the group mean, divided by the group's std (`scaleByStd`, GRPO) or not (Dr. GRPO);
 * the generator takes clipped policy-gradient steps on them (several passes per batch), with an
 * optional KL penalty to the base generator.
 *
 * Groups whose rewards all tie carry no signal (every advantage is 0). Their share is logged as
 * `zeroVarianceGroups`: when it reaches 1 the update is skipped, visibly, instead of running
 * steps that cannot move anything.
 */
import { Policy } from "@seal/core/Policy"
import { Effect, Layer, Schema } from "effect"
import { isTied, mean, Optimizer, roundMetrics, std, updateEvent } from "./Optimizer.js"
import { mixSeed, sampleAndScore, SamplingConfig } from "./Scoring.js"

export const PolicyGradientConfig = Schema.Struct({
  learningRate: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 5e-4 }),
  passes: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 2 }),
  batchSize: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 8 }),
  clip: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 0.2 }),
  klCoef: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => 0 }),
  lengthNorm: Schema.optionalWith(Schema.Literal("sequence", "constant"), { default: () => "sequence" as const })
}).annotations({ identifier: "PolicyGradientConfig" })

export const GRPOConfig = Schema.Struct({
  sampling: Schema.optionalWith(
    SamplingConfig.pipe(Schema.filter((s) => s.k >= 2 || "GRPO needs k >= 2 samples per group")),
    {
      default: () => Schema.decodeSync(SamplingConfig)({})
    }
  ),
  /** Divide advantages by the group's reward std (GRPO); false is Dr. GRPO's unscaled advantage. */
  scaleByStd: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  update: Schema.optionalWith(PolicyGradientConfig, { default: () => Schema.decodeSync(PolicyGradientConfig)({}) })
}).annotations({ identifier: "GRPOConfig" })
export type GRPOConfig = typeof GRPOConfig.Type

/** Group-normalised advantages of one group's rewards (all 0 for a tied group). */
export const advantages = (rewards: ReadonlyArray<number>, scaleByStd: boolean): Array<number> => {
  if (isTied(rewards)) return rewards.map(() => 0)
  const m = mean(rewards)
  const s = std(rewards)
  return rewards.map((r) => (scaleByStd ? (r - m) / (s + 1e-6) : r - m))
}

export const layer = (config: GRPOConfig): Layer.Layer<Optimizer> =>
  Layer.succeed(
    Optimizer,
    Optimizer.of({
      name: "grpo",
      round: ({ contexts, journal, round, seed }) =>
        Effect.gen(function*() {
          const policy = yield* Policy
          const s = config.sampling
          const scored = yield* sampleAndScore({ contexts, journal, round, seed }, s)
          const batch = scored.flatMap((group, i) => {
            const adv = advantages(group.map((x) => x.reward), config.scaleByStd)
            return group.map((x, j) => ({
              prompt: contexts[i]!.prompt,
              completion: x.sample.text,
              endsWithEos: x.sample.finishReason === "eos",
              advantage: adv[j]!
            }))
          }).filter((x) => x.advantage !== 0 || config.update.klCoef > 0)
          const informative = batch.filter((x) => x.advantage !== 0).length
          const update = informative === 0 ? undefined : yield* policy.policyGradient(batch, {
            ...config.update,
            maxTokens: s.maxTokens,
            seed: mixSeed(seed, round, 0x6270)
          })
          yield* journal.record([
            updateEvent(round, batch.length, update, {
              clippedFraction: update?.clippedFraction ?? 0,
              meanKl: update?.meanKl ?? 0
            })
          ])
          return roundMetrics(round, scored, informative, update)
        })
    })
  )
