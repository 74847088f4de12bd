import { Context, Data, type Effect } from "effect"

/**
 * The inner loop as the outer loop sees it: a self-edit for a context goes in (the task turns it
 * into training data, adapts a model and tests it), a reward comes out. The task owns its
 * contexts and knows them by id.
 */

export interface RewardRequest {
  readonly contextId: string
  readonly selfEdit: string
  /** Seeds the adapter's initialisation and data order. */
  readonly seed: number
}

export interface RewardResult {
  readonly contextId: string
  /** In [0, 1]: the share of the context's questions answered right after adaptation. */
  readonly reward: number
  readonly correct: number
  readonly total: number
  /** Wall time of this evaluation's share of the (possibly batched) inner loop. */
  readonly seconds: number
  readonly adapterId: string | undefined
}

export class RewardError extends Data.TaggedError("RewardError")<{
  readonly reason: "UnknownContext" | "Training" | "Evaluation"
  readonly contextId?: string | undefined
  readonly detail: string
}> {
  override get message(): string {
    return this.contextId === undefined ? this.detail : `context ${this.contextId}: ${this.detail}`
  }
}

export class TaskReward extends Context.Tag("@seal/core/TaskReward")<TaskReward, {
  /**
   * Scores each request; results in request order. The implementation decides how to batch and
   * bound the work (e.g. K adapters trained in one batched pass).
   */
  readonly evaluate: (requests: ReadonlyArray<RewardRequest>) => Effect.Effect<Array<RewardResult>, RewardError>
}>() {}
