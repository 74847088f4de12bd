import { Context, Data, type Effect } from "effect"

/**
 * The generator's side of SEAL: given contexts, write self-edits. The outer loop samples k per
 * context and learns which help; the task decides what a context's prompt is.
 */

/** A context as the generator sees it: an id the task knows it by, and the self-edit prompt. */
export interface SelfEditContext {
  readonly id: string
  readonly prompt: string
}

export interface SamplingParams {
  /** Self-edits per context. */
  readonly k: number
  /** 0 is greedy (then the k samples are equal). */
  readonly temperature: number
  readonly topP?: number | undefined
  readonly maxTokens: number
  /** Sample j of a context draws from a stream derived from (seed, context id, j): reproducible, order-free. */
  readonly seed: number
}

export interface SampledSelfEdit {
  readonly contextId: string
  /** 0-based sample index within its context. */
  readonly index: number
  readonly text: string
  /** Generated tokens (without EOS). */
  readonly tokens: number
  readonly finishReason: "length" | "eos" | "stop" | "context"
}

export class SamplingError extends Data.TaggedError("SamplingError")<{
  readonly reason: "BadRequest" | "OutOfMemory" | "Backend"
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

export class SelfEditSampler extends Context.Tag("@seal/core/SelfEditSampler")<SelfEditSampler, {
  /** `result[i][j]` is sample j for `contexts[i]`. */
  readonly sample: (
    contexts: ReadonlyArray<SelfEditContext>,
    params: SamplingParams
  ) => Effect.Effect<Array<Array<SampledSelfEdit>>, SamplingError>
}>() {}
