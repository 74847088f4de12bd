/**
 * A `SelfEditSampler` over the loaded `LanguageModel`: each context's prompt, k samples each,
 * generated in batches of rows. Sample j of a context draws from a stream derived from the
 * request's seed, the context's id and j, so it does not depend on batching or on the order of
 * the contexts.
 */
import { stringHash } from "@seal/core/Seeds"
import type { SampledSelfEdit, SamplingParams, SelfEditContext } from "@seal/core/SelfEditSampler"
import { SamplingError, SelfEditSampler } from "@seal/core/SelfEditSampler"
import { LanguageModel } from "@seal/gpu/LanguageModel"
import type { LogitMask } from "@seal/gpu/model/Generate"
import { deriveSeed } from "@seal/gpu/model/Sampling"
import type { ProjectionHook } from "@seal/gpu/model/Transformer"
import { type Context, Effect, Layer } from "effect"

export const sampleSeed = (seed: number, contextId: string, index: number): number =>
  deriveSeed(deriveSeed(seed, stringHash(contextId)), index)

export interface SamplerOptions {
  /** Rows per generation batch (default 32). */
  readonly batchRows?: number | undefined
  /** Stop strings applied to every sample. */
  readonly stop?: ReadonlyArray<string> | undefined
  /** Constrained decoding (e.g. a tool config's grammar): applied to every sample. */
  readonly logitMask?: LogitMask | undefined
}

/**
 * Samples `params.k` self-edits per context from `model`, with `hook` applied (a generator's
 * adapter) when given; `result[i][j]` is sample j of context i.
 */
export const sampleFrom = (
  model: Context.Tag.Service<LanguageModel>,
  contexts: ReadonlyArray<SelfEditContext>,
  params: SamplingParams,
  options: SamplerOptions = {},
  hook?: ProjectionHook | undefined
): Effect.Effect<Array<Array<SampledSelfEdit>>, SamplingError> =>
  Effect.gen(function*() {
    if (!(Number.isInteger(params.k) && params.k >= 1)) {
      return yield* new SamplingError({ reason: "BadRequest", detail: `k must be an integer >= 1, got ${params.k}` })
    }
    const batchRows = options.batchRows ?? 32
    const rows = contexts.flatMap((c) => Array.from({ length: params.k }, (_, j) => ({ context: c, index: j })))
    const out: Array<SampledSelfEdit> = []
    for (let start = 0; start < rows.length; start += batchRows) {
      const batch = rows.slice(start, start + batchRows)
      const generated = yield* model.generate(batch.map((r) => r.context.prompt), {
        maxTokens: params.maxTokens,
        temperature: params.temperature,
        topP: params.topP,
        stop: options.stop,
        logitMask: options.logitMask,
        hook,
        rowSeeds: batch.map((r) => sampleSeed(params.seed, r.context.id, r.index))
      }).pipe(Effect.mapError((e) => new SamplingError({ reason: e.reason, detail: e.detail })))
      generated.forEach((g, i) =>
        out.push({
          contextId: batch[i]!.context.id,
          index: batch[i]!.index,
          text: g.text,
          tokens: g.tokens.length,
          finishReason: g.finishReason
        })
      )
    }
    return contexts.map((_, i) => out.slice(i * params.k, (i + 1) * params.k))
  })

export const make = (options: SamplerOptions = {}) =>
  Effect.gen(function*() {
    const model = yield* LanguageModel
    return SelfEditSampler.of({ sample: (contexts, params) => sampleFrom(model, contexts, params, options) })
  })

/** The sampler over the `LanguageModel` in context. */
export const layer = (options: SamplerOptions = {}): Layer.Layer<SelfEditSampler, never, LanguageModel> =>
  Layer.effect(SelfEditSampler, make(options))

/**
 * A sampler for testing consumers without a model: `write(contextId, index, seed)` is the text.
 */
export const layerTest = (
  write: (contextId: string, index: number, seed: number) => string
): Layer.Layer<SelfEditSampler> =>
  Layer.succeed(
    SelfEditSampler,
    SelfEditSampler.of({
      sample: (contexts, params) =>
        Effect.succeed(contexts.map((c) =>
          Array.from({ length: params.k }, (_, j) => {
            const text = write(c.id, j, sampleSeed(params.seed, c.id, j))
            return {
              contextId: c.id,
              index: j,
              text,
              tokens: text.split(/\s+/).filter((w) => w !== "").length,
              finishReason: "eos" as const
            }
          })
        ))
    })
  )
