/**
 * The outer loop's optimizer: one round takes contexts, samples self-edits from the generator,
 * scores them through the inner loop and updates the generator. ReST-EM and GRPO are layers of
 * this one service, so an experiment swaps them without touching the task.
 */
import type { Policy, PolicyError } from "@seal/core/Policy"
import type { RunDirectoryError } from "@seal/core/RunDirectory"
import type { SamplingError, SelfEditContext, SelfEditSampler } from "@seal/core/SelfEditSampler"
import type { RewardError, TaskReward } from "@seal/core/TaskReward"
import { Context, type Effect } from "effect"
import type { Journal, JournalMismatch, UpdateEvent } from "./Journal.js"
import type { ScoredSample } from "./Scoring.js"

export interface RoundInput {
  /** 1-based. */
  readonly round: number
  readonly contexts: ReadonlyArray<SelfEditContext>
  readonly journal: Journal
  readonly seed: number
}

export interface RoundMetrics {
  readonly round: number
  readonly contexts: number
  readonly samples: number
  readonly rewardMean: number
  readonly rewardStd: number
  /** Share of samples kept for the update (ReST-EM) or with a non-zero advantage (GRPO). */
  readonly acceptance: number
  /** Share of contexts whose k rewards all tie: no learning signal there. */
  readonly zeroVarianceGroups: number
  /** Mean generated tokens per self-edit. */
  readonly selfEditTokens: number
  readonly secondsPerEvaluation: number
  readonly updateSteps: number
  readonly updateLoss: number | null
  readonly updateTokensPerSecond: number
}

/** A round's metrics without its timings: what a deterministic `results.json` records. */
export const roundResult = (
  { secondsPerEvaluation: _s, updateTokensPerSecond: _t, ...metrics }: RoundMetrics
): Omit<RoundMetrics, "secondsPerEvaluation" | "updateTokensPerSecond"> => metrics

export type OptimizerFailure = SamplingError | RewardError | PolicyError | RunDirectoryError | JournalMismatch

export class Optimizer extends Context.Tag("@seal/rl/Optimizer")<Optimizer, {
  readonly name: string
  readonly round: (
    input: RoundInput
  ) => Effect.Effect<RoundMetrics, OptimizerFailure, SelfEditSampler | TaskReward | Policy>
}>() {}

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length)

/** Population standard deviation. */
export const std = (xs: ReadonlyArray<number>) => {
  const m = mean(xs)
  return Math.sqrt(mean(xs.map((x) => (x - m) ** 2)))
}

export { mean }

/** Whether all of a group's rewards are equal (within float noise). */
export const isTied = (rewards: ReadonlyArray<number>): boolean =>
  rewards.every((r) => Math.abs(r - rewards[0]!) < 1e-12)

/** What an update reports, as both optimizers record it. */
export interface UpdateSummary {
  readonly steps: number
  readonly firstLoss: number | undefined
  readonly finalLoss: number | undefined
  readonly seconds: number
  readonly tokensPerSecond: number
}

/** The journal's record of a round's update (`undefined`: the update was skipped). */
export const updateEvent = (
  round: number,
  examples: number,
  update: UpdateSummary | undefined,
  extra: Partial<Pick<UpdateEvent, "clippedFraction" | "meanKl">> = {}
): UpdateEvent => ({
  type: "update",
  round,
  examples,
  steps: update?.steps ?? 0,
  firstLoss: update?.firstLoss ?? null,
  finalLoss: update?.finalLoss ?? null,
  seconds: update?.seconds ?? 0,
  tokensPerSecond: update?.tokensPerSecond ?? 0,
  ...extra
})

/** A round's metrics from its scored groups; `accepted` counts kept (or informative) samples. */
export const roundMetrics = (
  round: number,
  scored: ReadonlyArray<ReadonlyArray<ScoredSample>>,
  accepted: number,
  update: UpdateSummary | undefined
): RoundMetrics => {
  const rewards = scored.flat().map((x) => x.reward)
  const evaluations = scored.flat().flatMap((x) => x.events)
  return {
    round,
    contexts: scored.length,
    samples: rewards.length,
    rewardMean: mean(rewards),
    rewardStd: std(rewards),
    acceptance: rewards.length === 0 ? 0 : accepted / rewards.length,
    zeroVarianceGroups: mean(scored.map((g) => (isTied(g.map((x) => x.reward)) ? 1 : 0))),
    selfEditTokens: mean(scored.flat().map((x) => x.sample.tokens)),
    secondsPerEvaluation: mean(evaluations.map((e) => e.seconds)),
    updateSteps: update?.steps ?? 0,
    updateLoss: update?.finalLoss ?? null,
    updateTokensPerSecond: update?.tokensPerSecond ?? 0
  }
}
