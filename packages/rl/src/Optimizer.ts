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
import type { Journal, JournalMismatch } from "./Journal.js"

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
