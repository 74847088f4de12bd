import { Context, Effect, Layer } from "effect"
import { isWasmHeapExhausted, wasmHeapAdvice } from "./BackendFailure.js"
import { LanguageModel } from "./LanguageModel.js"
import type { LoraAdapter, LoraConfig } from "./lora/LoraAdapter.js"
import { createLoraAdapter, hashDeviceWeights, LoraConfigError, validateLoraConfig } from "./lora/LoraAdapter.js"
import { trainLoraMany } from "./train/BatchedTrainer.js"
import type { Example, TokenizedExample, TokenizeOptions } from "./train/Loss.js"
import { tokenizeExample } from "./train/Loss.js"
import type { LoraTrainResult, TrainOptions } from "./train/Trainer.js"
import { resolvePlan, TrainingError, trainLora } from "./train/Trainer.js"

/**
 * LoRA training on the loaded `LanguageModel`, as an Effect service: the numeric work is the
 * plain `trainLora` / `trainLoraMany`; this edge adds tokenization with the model's tokenizer,
 * the parent-model check and typed failures.
 */

/** Text examples are tokenized with the model's tokenizer; tokenized ones are used as they are. */
export type TrainingData = ReadonlyArray<Example | TokenizedExample>

export interface TrainRequest extends TrainOptions {
  readonly tokenize?: TokenizeOptions | undefined
}

export interface CreateAdapterRequest {
  readonly seed: number
  readonly createdAtStep?: number | undefined
  readonly id?: string | undefined
}

export class LoraTrainer extends Context.Tag("@seal/gpu/LoraTrainer")<LoraTrainer, {
  /** `hashWeights` of the model being adapted; new adapters carry it as `parentModelHash`. */
  readonly parentModelHash: string
  readonly createAdapter: (
    config: LoraConfig,
    request: CreateAdapterRequest
  ) => Effect.Effect<LoraAdapter, LoraConfigError>
  readonly tokenize: (data: TrainingData, options?: TokenizeOptions) => Effect.Effect<Array<TokenizedExample>>
  /** Trains one adapter; the input adapter value is untouched. */
  readonly train: (
    adapter: LoraAdapter,
    data: TrainingData,
    request: TrainRequest
  ) => Effect.Effect<LoraTrainResult, TrainingError | LoraConfigError>
  /**
   * Trains K adapters in one batched forward/backward per step (adapter k on `datasets[k]` with
   * `requests[k]`, or one request for all); results in the same order.
   */
  readonly trainMany: (
    adapters: ReadonlyArray<LoraAdapter>,
    datasets: ReadonlyArray<TrainingData>,
    request: TrainRequest | ReadonlyArray<TrainRequest>
  ) => Effect.Effect<Array<LoraTrainResult>, TrainingError | LoraConfigError>
}>() {}

const isTokenized = (e: Example | TokenizedExample): e is TokenizedExample => "ids" in e

const asTrainingFailure = (e: unknown): TrainingError | LoraConfigError =>
  e instanceof TrainingError || e instanceof LoraConfigError
    ? e
    : isWasmHeapExhausted(e)
    ? new TrainingError({ reason: "OutOfMemory", detail: wasmHeapAdvice })
    : new TrainingError({ reason: "Backend", detail: e instanceof Error ? e.message : String(e) })

const requests = (request: TrainRequest | ReadonlyArray<TrainRequest>, count: number): ReadonlyArray<TrainRequest> =>
  Array.isArray(request)
    ? request as ReadonlyArray<TrainRequest>
    : Array.from({ length: count }, () => request as TrainRequest)

export const make = Effect.gen(function*() {
  const model = yield* LanguageModel
  const parentModelHash = hashDeviceWeights(model.weights)
  const tokenizeAll = (data: TrainingData, options?: TokenizeOptions) =>
    data.map((e) => (isTokenized(e) ? e : tokenizeExample(model.tokenizer, e, options)))
  const checkParent = (adapter: LoraAdapter) =>
    adapter.parentModelHash === parentModelHash
      ? Effect.void
      : Effect.fail(
        new TrainingError({
          reason: "Incompatible",
          detail: `adapter ${adapter.id} was made for model ${adapter.parentModelHash.slice(0, 12)}, ` +
            `not the loaded ${parentModelHash.slice(0, 12)}`
        })
      )
  return LoraTrainer.of({
    parentModelHash,
    createAdapter: (config, request) =>
      Effect.try({
        try: () => createLoraAdapter(model.config, config, { ...request, parentModelHash }),
        catch: (e) =>
          e instanceof LoraConfigError
            ? e
            : new LoraConfigError({ reason: "ShapeMismatch", field: "config", detail: String(e) })
      }),
    tokenize: (data, options) => Effect.sync(() => tokenizeAll(data, options)),
    train: (adapter, data, request) =>
      Effect.gen(function*() {
        yield* checkParent(adapter)
        const examples = tokenizeAll(data, request.tokenize)
        return yield* Effect.try({
          try: () => trainLora(model.weights, adapter, examples, request),
          catch: asTrainingFailure
        })
      }),
    trainMany: (adapters, datasets, request) =>
      Effect.gen(function*() {
        for (const adapter of adapters) yield* checkParent(adapter)
        const all = requests(request, adapters.length)
        const examples = datasets.map((d, k) => tokenizeAll(d, all[k]?.tokenize))
        return yield* Effect.try({
          try: () => trainLoraMany(model.weights, adapters, examples, all),
          catch: asTrainingFailure
        })
      })
  })
})

/** The trainer over the `LanguageModel` in context. */
export const layer: Layer.Layer<LoraTrainer, never, LanguageModel> = Layer.effect(LoraTrainer, make)

export interface TestTrainerOptions {
  readonly parentModelHash?: string | undefined
  /** Loss reported at step i (default `2 / (i + 1)`). */
  readonly lossAt?: ((step: number) => number) | undefined
  /** Make every training call fail with this error. */
  readonly failWith?: TrainingError | undefined
}

/**
 * A trainer for testing consumers without a model or tensors. Adapters have no modules;
 * "training" runs the planned number of steps, calls `onStep` per step with `lossAt(step)` and
 * returns the adapter with `trainedSteps` advanced. Config validation is the real one.
 */
export const layerTest = (options: TestTrainerOptions = {}): Layer.Layer<LoraTrainer> => {
  const parentModelHash = options.parentModelHash ?? "test-model"
  const lossAt = options.lossAt ?? ((step: number) => 2 / (step + 1))
  const fakeTrain = (adapter: LoraAdapter, data: TrainingData, request: TrainRequest): LoraTrainResult => {
    if (options.failWith !== undefined) throw options.failWith
    const plan = resolvePlan(data.length, request)
    const losses: Array<number> = []
    for (let s = 0; s < plan.length; s++) {
      losses.push(lossAt(s))
      const progress = {
        step: s + 1,
        totalSteps: plan.length,
        epoch: plan[s]!.epoch,
        loss: losses[s]!,
        gradNorm: 1,
        learningRate: request.learningRate,
        labelTokens: 1,
        elapsedMs: 0
      }
      request.onStep?.(progress)
      if (request.stopWhen?.(progress) === true) break
    }
    return {
      adapter: { ...adapter, trainedSteps: adapter.trainedSteps + losses.length },
      losses,
      gradNorms: losses.map(() => 1),
      learningRates: losses.map(() => request.learningRate),
      steps: losses.length,
      stoppedEarly: losses.length < plan.length,
      inputTokens: 0,
      labelTokens: losses.length,
      seconds: 0,
      tokensPerSecond: 0
    }
  }
  return Layer.succeed(
    LoraTrainer,
    LoraTrainer.of({
      parentModelHash,
      createAdapter: (config, request) =>
        Effect.map(validateLoraConfig(config), (valid) => ({
          id: request.id ?? `lora-test-${request.seed}`,
          parentModelHash,
          config: valid,
          createdAtStep: request.createdAtStep ?? 0,
          trainedSteps: 0,
          modules: []
        })),
      tokenize: (data) =>
        Effect.succeed(data.map((e) => (isTokenized(e) ? e : { ids: [1, 2, 3], labelMask: [0, 1, 1] }))),
      train: (adapter, data, request) =>
        Effect.try({ try: () => fakeTrain(adapter, data, request), catch: asTrainingFailure }),
      trainMany: (adapters, datasets, request) =>
        Effect.try({
          try: () => {
            const all = requests(request, adapters.length)
            return adapters.map((a, k) => fakeTrain(a, datasets[k] ?? [], all[k]!))
          },
          catch: asTrainingFailure
        })
    })
  )
}

/** Re-exported so consumers can validate a config without the service. */
export const checkLoraConfig = (config: LoraConfig): Effect.Effect<LoraConfig, LoraConfigError> =>
  validateLoraConfig(config)
