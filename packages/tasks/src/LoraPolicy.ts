/**
 * The generator as a LoRA adapter over the loaded `LanguageModel`: one layer provides both the
 * `SelfEditSampler` (sampling with the current adapter) and the `Policy` (ReST-EM's supervised
 * update trains that adapter). Before the first update the generator is the base model.
 *
 * The adapter lives on the host between calls and is uploaded for each sampling call, so no
 * tensor outlives the call that made it.
 */
import { Policy, PolicyError } from "@seal/core/Policy"
import { SelfEditSampler } from "@seal/core/SelfEditSampler"
import { LanguageModel } from "@seal/gpu/LanguageModel"
import type { LoraAdapter } from "@seal/gpu/lora/LoraAdapter"
import { disposeDeviceLora, loraHook, uploadLora } from "@seal/gpu/lora/LoraAdapter"
import { loadAdapter, saveAdapter } from "@seal/gpu/lora/PeftIo"
import { LoraTrainer } from "@seal/gpu/LoraTrainer"
import { tokenizeExample } from "@seal/gpu/train/Loss"
import { trainPolicyGradient } from "@seal/gpu/train/PolicyGradient"
import { Context, Effect, Layer, Ref, Schema } from "effect"
import { LoraTargets } from "./knowledge/InnerLoop.js"
import { sampleFrom, type SamplerOptions } from "./SelfEditSampling.js"

export const PolicyAdapterConfig = Schema.Struct({
  rank: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 16 }),
  alpha: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 32 }),
  targets: LoraTargets
}).annotations({ identifier: "PolicyAdapterConfig" })
export type PolicyAdapterConfig = typeof PolicyAdapterConfig.Type

export const make = (config: PolicyAdapterConfig, samplerOptions: SamplerOptions = {}) =>
  Effect.gen(function*() {
    const model = yield* LanguageModel
    const trainer = yield* LoraTrainer
    const state = yield* Ref.make<LoraAdapter | undefined>(undefined)

    /** The generator's adapter, or a fresh one (seeded) before the first update. */
    const currentOrNew = (seed: number) =>
      Effect.flatMap(Ref.get(state), (existing) =>
        existing !== undefined ? Effect.succeed(existing) : trainer.createAdapter(
          { rank: config.rank, alpha: config.alpha, dropout: 0, targets: [...config.targets] },
          { seed }
        ))

    const sampler = SelfEditSampler.of({
      sample: (contexts, params) =>
        Effect.gen(function*() {
          const adapter = yield* Ref.get(state)
          if (adapter === undefined) {
            return yield* sampleFrom(model, contexts, params, samplerOptions)
          }
          return yield* Effect.acquireUseRelease(
            Effect.sync(() =>
              uploadLora(adapter, false)
            ),
            (device) => sampleFrom(model, contexts, params, samplerOptions, loraHook(device)),
            (device) => Effect.sync(() => disposeDeviceLora(device))
          )
        })
    })

    const policy = Policy.of({
      current: Effect.map(Ref.get(state), (a) => a?.id ?? "base"),
      supervised: (examples, options) =>
        Effect.gen(function*() {
          const adapter = yield* currentOrNew(options.seed)
          const result = yield* trainer.train(
            adapter,
            examples.map((e) => ({ prompt: e.prompt, completion: e.completion })),
            {
              learningRate: options.learningRate,
              epochs: options.epochs,
              batchSize: options.batchSize,
              seed: options.seed,
              tokenize: { addEos: true, completionOnly: true }
            }
          )
          yield* Ref.set(state, result.adapter)
          return {
            steps: result.steps,
            firstLoss: result.losses[0],
            finalLoss: result.losses[result.losses.length - 1],
            seconds: result.seconds,
            tokensPerSecond: result.tokensPerSecond
          }
        }).pipe(
          Effect.catchTags({
            TrainingError: (e) => Effect.fail(new PolicyError({ reason: "Training", detail: e.message })),
            LoraConfigError: (e) => Effect.fail(new PolicyError({ reason: "Training", detail: e.message }))
          })
        ),
      policyGradient: (samples, options) =>
        Effect.gen(function*() {
          const adapter = yield* currentOrNew(options.seed)
          const tokenizer = model.tokenizer
          // The trainers' own prompt/completion tokenization: the completion starts at the first target.
          const encoded = samples.map((s) => {
            const { ids, labelMask } = tokenizeExample(tokenizer, s, { addEos: s.endsWithEos })
            return { ids, completionStart: labelMask.indexOf(1), advantage: s.advantage }
          }).filter((s) => s.completionStart >= 1)
          if (encoded.length === 0) {
            return {
              steps: 0,
              firstLoss: undefined,
              finalLoss: undefined,
              seconds: 0,
              tokensPerSecond: 0,
              clippedFraction: 0,
              meanKl: 0
            }
          }
          const result = yield* Effect.try({
            try: () =>
              trainPolicyGradient(model.weights, adapter, encoded, {
                learningRate: options.learningRate,
                passes: options.passes,
                batchSize: options.batchSize,
                clip: options.clip,
                klCoef: options.klCoef,
                lengthNorm: options.lengthNorm,
                maxTokens: options.maxTokens,
                seed: options.seed,
                padId: 0
              }),
            catch: (e) => new PolicyError({ reason: "Training", detail: e instanceof Error ? e.message : String(e) })
          })
          yield* Ref.set(state, result.adapter)
          const tokens = encoded.reduce((n, s) => n + s.ids.length, 0) * options.passes * 2
          return {
            steps: result.steps,
            firstLoss: result.objectives[0],
            finalLoss: result.objectives[result.objectives.length - 1],
            seconds: result.seconds,
            tokensPerSecond: result.seconds > 0 ? tokens / result.seconds : 0,
            clippedFraction: result.clippedFraction,
            meanKl: result.kls.length === 0 ? 0 : result.kls.reduce((a, b) => a + b, 0) / result.kls.length
          }
        }).pipe(
          Effect.catchTag("LoraConfigError", (e) =>
            Effect.fail(new PolicyError({ reason: "Training", detail: e.message })))
        ),
      reset: Ref.set(state, undefined),
      save: (dir) =>
        Effect.gen(function*() {
          const adapter = yield* Ref.get(state)
          if (adapter === undefined) {
            return
          }
          yield* saveAdapter(dir, adapter).pipe(
            Effect.mapError((e) =>
              new PolicyError({ reason: "Io", detail: e.message })
            )
          )
        }),
      load: (dir) =>
        loadAdapter(dir, { parentModelHash: trainer.parentModelHash, modelConfig: model.config }).pipe(
          Effect.flatMap((adapter) => Ref.set(state, adapter)),
          Effect.mapError((e) => new PolicyError({ reason: "Io", detail: e.message }))
        )
    })
    return { sampler, policy }
  })

/** `SelfEditSampler` and `Policy` over one shared adapter on the `LanguageModel` in context. */
export const layer = (
  config: PolicyAdapterConfig,
  samplerOptions: SamplerOptions = {}
): Layer.Layer<SelfEditSampler | Policy, never, LanguageModel | LoraTrainer> =>
  Layer.effectContext(
    Effect.map(
      make(config, samplerOptions),
      ({ policy, sampler }) => Context.make(Policy, policy).pipe(Context.add(SelfEditSampler, sampler))
    )
  )
