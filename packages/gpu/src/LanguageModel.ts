import { Context, Data, Effect, Layer } from "effect"
import { isWasmHeapExhausted, wasmHeapAdvice } from "./BackendFailure.js"
import type { LoadedCheckpoint } from "./checkpoint/Checkpoint.js"
import { loadCheckpoint } from "./checkpoint/Checkpoint.js"
import type { CheckpointError } from "./checkpoint/CheckpointError.js"
import type { GenerateOptions, RowGeneration } from "./model/Generate.js"
import { generate } from "./model/Generate.js"
import type { ModelConfig } from "./model/ModelConfig.js"
import type { TransformerWeights } from "./model/Transformer.js"
import { createTransformerWeights, disposeTransformerWeights } from "./model/Transformer.js"
import { TensorRuntime } from "./TensorRuntime.js"
import type { Tokenizer } from "./tokenizer/Tokenizer.js"

/** Generation failed (bad request, or the backend threw); `reason` says which. */
export class GenerationError extends Data.TaggedError("GenerationError")<{
  readonly reason: "BadRequest" | "OutOfMemory" | "Backend"
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

export interface GenerationRequest extends Omit<GenerateOptions, "decode" | "eosId"> {
  /** Prepend BOS (default true). */
  readonly addBos?: boolean | undefined
  /** Stop at the tokenizer's EOS (default true). */
  readonly stopAtEos?: boolean | undefined
}

export interface Generation extends RowGeneration {
  readonly prompt: string
  readonly promptTokens: ReadonlyArray<number>
  readonly text: string
}

/**
 * A loaded model on the active tensor runtime. Its device weights live as long as the layer's
 * scope; `generate` runs a batch of prompts to completion.
 */
export class LanguageModel extends Context.Tag("@seal/gpu/LanguageModel")<LanguageModel, {
  readonly config: ModelConfig
  readonly tokenizer: Tokenizer
  readonly weights: TransformerWeights
  readonly source: LoadedCheckpoint["source"]
  readonly generate: (
    prompts: ReadonlyArray<string>,
    request: GenerationRequest
  ) => Effect.Effect<Array<Generation>, GenerationError>
}>() {}

/** Uploads a loaded checkpoint's weights; they are freed when the scope closes. */
export const fromCheckpoint = (checkpoint: LoadedCheckpoint) =>
  Effect.gen(function*() {
    yield* TensorRuntime
    const weights = yield* Effect.acquireRelease(
      Effect.try({
        try: () => createTransformerWeights(checkpoint.config, checkpoint.weights),
        catch: (e) => new GenerationError({ reason: "Backend", detail: `uploading weights failed: ${String(e)}` })
      }),
      (w) => Effect.sync(() => disposeTransformerWeights(w))
    )
    const { tokenizer } = checkpoint
    return LanguageModel.of({
      config: checkpoint.config,
      tokenizer,
      weights,
      source: checkpoint.source,
      generate: (prompts, request) =>
        Effect.gen(function*() {
          if (!Number.isInteger(request.maxTokens) || request.maxTokens < 0) {
            return yield* new GenerationError({
              reason: "BadRequest",
              detail: "maxTokens must be a non-negative integer"
            })
          }
          if (!(request.temperature >= 0)) {
            return yield* new GenerationError({ reason: "BadRequest", detail: "temperature must be >= 0" })
          }
          if (request.topP !== undefined && !(request.topP > 0 && request.topP <= 1)) {
            return yield* new GenerationError({ reason: "BadRequest", detail: "topP must be in (0, 1]" })
          }
          const encoded = prompts.map((p) => tokenizer.encode(p, { addBos: request.addBos ?? true }))
          // Decode continuations in the context of their prompt: tokenizers drop a leading space
          // at the start of a text, which would glue the first generated word to the prompt.
          const promptTexts = encoded.map((ids) => tokenizer.decode(ids))
          const continuation = (ids: ReadonlyArray<number>, row: number) =>
            tokenizer.decode([...encoded[row]!, ...ids]).slice(promptTexts[row]!.length)
          const rows = yield* Effect.try({
            try: () =>
              generate(weights, encoded, {
                ...request,
                eosId: (request.stopAtEos ?? true) ? tokenizer.eosId : undefined,
                decode: continuation
              }),
            catch: (e) =>
              isWasmHeapExhausted(e)
                ? new GenerationError({ reason: "OutOfMemory", detail: wasmHeapAdvice })
                : new GenerationError({ reason: "Backend", detail: e instanceof Error ? e.message : String(e) })
          })
          return rows.map((row, i) => ({
            ...row,
            prompt: prompts[i]!,
            promptTokens: encoded[i]!,
            text: row.text ?? continuation(row.tokens, i)
          }))
        })
    })
  })

/** Loads the checkpoint at `path` (GGUF file or Hugging Face directory) onto the runtime. */
export const layer = (path: string): Layer.Layer<LanguageModel, CheckpointError | GenerationError, TensorRuntime> =>
  Layer.scoped(LanguageModel, Effect.flatMap(loadCheckpoint(path), fromCheckpoint))
