import { Context, Data, type Effect } from "effect"

/**
 * The generator being taught to write better self-edits: the outer loop's learner. Its current
 * state is what the `SelfEditSampler` samples from; `supervised` is ReST-EM's update
 * (fine-tuning on kept (prompt, self-edit) pairs, loss on the self-edit only).
 */

export interface PolicyExample {
  readonly prompt: string
  readonly completion: string
}

export interface SupervisedOptions {
  readonly learningRate: number
  readonly epochs: number
  readonly batchSize: number
  readonly seed: number
}

export interface PolicyUpdate {
  readonly steps: number
  readonly firstLoss: number | undefined
  readonly finalLoss: number | undefined
  readonly seconds: number
  readonly tokensPerSecond: number
}

export interface PolicyGradientSample {
  readonly prompt: string
  readonly completion: string
  /** Whether the completion ended with the model's EOS (then EOS is one of its tokens). */
  readonly endsWithEos: boolean
  readonly advantage: number
}

export interface PolicyGradientOptions {
  readonly learningRate: number
  /** Optimisation passes over the batch. */
  readonly passes: number
  readonly batchSize: number
  /** ε of the clipped importance ratio. */
  readonly clip: number
  /** β of the KL penalty to the frozen base generator (0: none). */
  readonly klCoef: number
  /** `sequence`: GRPO's per-completion mean; `constant`: Dr. GRPO's division by `maxTokens`. */
  readonly lengthNorm: "sequence" | "constant"
  readonly maxTokens: number
  readonly seed: number
}

export interface PolicyGradientUpdate extends PolicyUpdate {
  readonly clippedFraction: number
  readonly meanKl: number
}

export class PolicyError extends Data.TaggedError("PolicyError")<{
  readonly reason: "Training" | "Io" | "BadState"
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

export class Policy extends Context.Tag("@seal/core/Policy")<Policy, {
  /** An id for the current state ("base" before any update). */
  readonly current: Effect.Effect<string>
  readonly supervised: (
    examples: ReadonlyArray<PolicyExample>,
    options: SupervisedOptions
  ) => Effect.Effect<PolicyUpdate, PolicyError>
  /** GRPO's update: clipped policy gradient on sampled completions with their advantages. */
  readonly policyGradient: (
    samples: ReadonlyArray<PolicyGradientSample>,
    options: PolicyGradientOptions
  ) => Effect.Effect<PolicyGradientUpdate, PolicyError>
  /** Back to the base generator (ReST-EM's restart-from-base variant). */
  readonly reset: Effect.Effect<void>
  /** Saves the current state into `dir` (created), atomically per file. */
  readonly save: (dir: string) => Effect.Effect<void, PolicyError>
  /** Restores a state `save` wrote. */
  readonly load: (dir: string) => Effect.Effect<void, PolicyError>
}>() {}
