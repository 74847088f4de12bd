import * as tf from "@tensorflow/tfjs-core"
import { Data } from "effect"
import type { DeviceLora, LoraAdapter } from "../lora/LoraAdapter.js"
import {
  checkAdapterFits,
  deviceLoraVariables,
  disposeDeviceLora,
  downloadLora,
  loraHook,
  uploadLora
} from "../lora/LoraAdapter.js"
import type { HostTensor, ModelConfig, WeightMap } from "../model/ModelConfig.js"
import { expectedWeightShapes, WeightNames } from "../model/ModelConfig.js"
import { deriveSeed, makeRng, shuffleInPlace } from "../model/Sampling.js"
import type { LayerWeights, ProjectionHook, TransformerWeights } from "../model/Transformer.js"
import { createTransformerWeights, forward, gridTableNames, gridTables, projectionNames } from "../model/Transformer.js"
import type { AdamWHyper, AdamWState } from "./AdamW.js"
import {
  adamWUpdate,
  biasCorrections,
  clipFactor,
  createAdamWState,
  defaultAdamW,
  disposeAdamWState,
  squaredNorm
} from "./AdamW.js"
import { ensureGradients } from "./Gradients.js"
import type { Batch, PickMethod, TokenizedExample } from "./Loss.js"
import { batchTensors, buildBatch, countLabels, nextTokenNll } from "./Loss.js"
import type { ScheduleOptions } from "./Schedule.js"
import { learningRateAt } from "./Schedule.js"
import type { Exchange } from "./SharedReduce.js"

/**
 * The training loop, nanoGPT-style: plan the micro-batches up front from a seeded shuffle, then
 * for each optimizer step accumulate gradients over its micro-batches, clip by global norm and
 * take one AdamW step. Every step runs inside `tf.tidy`, so the live tensor count is the
 * parameters plus optimizer moments, whatever the number of steps.
 *
 * The same loop trains a LoRA adapter over a frozen base (`trainLora`) or every weight of a
 * model (`trainFull`, for pretraining small models from scratch).
 */

/** Training stopped: a non-finite loss or gradient norm, unusable options or data. */
export class TrainingError extends Data.TaggedError("TrainingError")<{
  /**
   * NonFinite: a loss or gradient norm that is NaN or infinite; BadOptions / BadData: unusable
   * options or examples; NoData: nothing to train on; Incompatible: an adapter that does not
   * belong to this model or cannot be batched with the others; OutOfMemory: the backend's heap
   * is exhausted (wasm stops at 4 GiB); Backend: tfjs itself failed otherwise.
   */
  readonly reason: "NonFinite" | "BadOptions" | "BadData" | "NoData" | "Incompatible" | "OutOfMemory" | "Backend"
  /** The 1-based optimizer step at fault, when there is one. */
  readonly step?: number
  readonly detail: string
}> {
  override get message(): string {
    return this.step === undefined ? this.detail : `step ${this.step}: ${this.detail}`
  }
}

export interface StepProgress {
  /** Which adapter, in batched training (`trainLoraMany`). */
  readonly adapter?: number
  /** 1-based optimizer step just taken. */
  readonly step: number
  readonly totalSteps: number
  /** 0-based epoch the step's data came from. */
  readonly epoch: number
  /** Mean loss over the step's counted targets, before the update. */
  readonly loss: number
  /** Global gradient norm before clipping. */
  readonly gradNorm: number
  readonly learningRate: number
  /** Targets counted in this step. */
  readonly labelTokens: number
  readonly elapsedMs: number
}

export interface TrainOptions {
  readonly learningRate: number
  /** Examples per micro-batch (default 1). */
  readonly batchSize?: number | undefined
  /** Micro-batches per optimizer step (default 1). */
  readonly gradientAccumulation?: number | undefined
  /** Optimizer steps; when absent, `epochs` passes over the data (default 1 epoch). */
  readonly steps?: number | undefined
  readonly epochs?: number | undefined
  readonly schedule?: ScheduleOptions | undefined
  readonly weightDecay?: number | undefined
  readonly beta1?: number | undefined
  readonly beta2?: number | undefined
  readonly epsilon?: number | undefined
  /** Global-norm gradient clipping (default 1; 0 or Infinity disables it). */
  readonly maxGradNorm?: number | undefined
  /** Seeds the data order and dropout (default 0). */
  readonly seed?: number | undefined
  readonly padId?: number | undefined
  readonly pick?: PickMethod | undefined
  readonly onStep?: ((progress: StepProgress) => void) | undefined
  /** Early stop: checked after each step. */
  readonly stopWhen?: ((progress: StepProgress) => boolean) | undefined
  /**
   * An explicit data order (e.g. length-bucketed batches for pretraining); replaces the plan
   * `planSteps` would make from batchSize, gradientAccumulation, steps, epochs and seed.
   */
  readonly plan?: ReadonlyArray<PlannedStep> | undefined
  /**
   * Run only the plan's steps `[startStep, endStep)` (0-based; defaults: the whole plan). The
   * learning-rate schedule and AdamW's bias corrections still count from the plan's first step,
   * so a run cut into windows, with the weights and optimizer moments carried between them,
   * takes exactly the steps of one uninterrupted run: this is how pretraining checkpoints and
   * resumes.
   */
  readonly startStep?: number | undefined
  readonly endStep?: number | undefined
  /**
   * Data parallelism (`DataParallel.ts`): this replica runs only the micro-batches `i` of each
   * step with `i % replicas === rank`, and `exchange` (`SharedReduce.ts`) returns every
   * micro-batch's flattened gradient and loss; they are summed in micro-batch order, as one
   * process accumulates them, so every replica takes the same step as a single process would.
   */
  readonly shard?: Shard | undefined
}

export interface Shard {
  readonly rank: number
  readonly replicas: number
  readonly exchange: Exchange["exchange"]
}

export interface TrainStats {
  readonly losses: ReadonlyArray<number>
  readonly gradNorms: ReadonlyArray<number>
  readonly learningRates: ReadonlyArray<number>
  /** Optimizer steps taken (fewer than planned after an early stop). */
  readonly steps: number
  readonly stoppedEarly: boolean
  readonly inputTokens: number
  readonly labelTokens: number
  readonly seconds: number
  /** Non-padding tokens pushed through forward and backward per second. */
  readonly tokensPerSecond: number
}

export interface LoraTrainResult extends TrainStats {
  readonly adapter: LoraAdapter
}

export interface FullTrainResult extends TrainStats {
  readonly weights: WeightMap
  /**
   * AdamW's moments after the last step, keyed `{weight}.exp_avg` and `{weight}.exp_avg_sq` in the
   * Hugging Face layout (PyTorch's state names): pass them back as `moments` to continue.
   */
  readonly moments: WeightMap
  /** The plan step the next window starts at. */
  readonly nextStep: number
}

// ---------------------------------------------------------------------------------------------
// Planning

export interface PlannedStep {
  readonly epoch: number
  /** Example indices of each micro-batch. */
  readonly microBatches: ReadonlyArray<ReadonlyArray<number>>
}

/**
 * The whole run's data order: each epoch is a seeded Fisher-Yates shuffle (stream = epoch) cut
 * into micro-batches of `batchSize` (the last may be short); consecutive groups of
 * `gradientAccumulation` micro-batches form an optimizer step. A step never spans two epochs.
 */
export const planSteps = (
  examples: number,
  options: Pick<TrainOptions, "batchSize" | "gradientAccumulation" | "steps" | "epochs" | "seed">
): Array<PlannedStep> => {
  const batchSize = options.batchSize ?? 1
  const accumulation = options.gradientAccumulation ?? 1
  const seed = options.seed ?? 0
  const stepsPerEpoch = Math.ceil(Math.ceil(examples / batchSize) / accumulation)
  const total = options.steps ?? Math.ceil((options.epochs ?? 1) * stepsPerEpoch)
  const plan: Array<PlannedStep> = []
  if (examples === 0) return plan
  for (let epoch = 0; plan.length < total; epoch++) {
    const order = shuffleInPlace(Array.from({ length: examples }, (_, i) => i), makeRng(deriveSeed(seed, epoch)))
    const micro: Array<Array<number>> = []
    for (let i = 0; i < order.length; i += batchSize) micro.push(order.slice(i, i + batchSize))
    for (let i = 0; i < micro.length && plan.length < total; i += accumulation) {
      plan.push({ epoch, microBatches: micro.slice(i, i + accumulation) })
    }
  }
  return plan
}

export const validateTrainOptions = (options: TrainOptions, examples: number): void => {
  const bad = (detail: string) => new TrainingError({ reason: "BadOptions", detail })
  const positiveInt = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw bad(`${name} must be an integer >= 1, got ${v}`)
  }
  if (examples === 0) throw new TrainingError({ reason: "NoData", detail: "no training examples" })
  if (!(Number.isFinite(options.learningRate) && options.learningRate >= 0)) {
    throw bad(`learningRate must be a finite number >= 0, got ${options.learningRate}`)
  }
  positiveInt("batchSize", options.batchSize)
  positiveInt("gradientAccumulation", options.gradientAccumulation)
  positiveInt("steps", options.steps)
  if (options.epochs !== undefined && !(options.epochs > 0)) throw bad(`epochs must be > 0, got ${options.epochs}`)
  if (options.weightDecay !== undefined && !(options.weightDecay >= 0)) throw bad("weightDecay must be >= 0")
  if (options.plan !== undefined) {
    const outside = options.plan.flatMap((s) => s.microBatches.flat()).find((i) => !(i >= 0 && i < examples))
    if (outside !== undefined) throw bad(`the plan refers to example ${outside}; there are ${examples}`)
  }
  const planned = options.plan?.length
  const start = options.startStep ?? 0
  if (!(Number.isInteger(start) && start >= 0)) throw bad(`startStep must be an integer >= 0, got ${start}`)
  const end = options.endStep
  if (end !== undefined && !(Number.isInteger(end) && end > start)) {
    throw bad(`endStep must be an integer > startStep (${start}), got ${end}`)
  }
  if (planned !== undefined && start >= planned) throw bad(`startStep ${start} is past the plan's ${planned} steps`)
}

/** The run's plan: the explicit one, or the seeded shuffle of `planSteps`. */
export const resolvePlan = (examples: number, options: TrainOptions): ReadonlyArray<PlannedStep> =>
  options.plan ?? planSteps(examples, options)

export const adamHyper = (options: TrainOptions): AdamWHyper => ({
  beta1: options.beta1 ?? defaultAdamW.beta1,
  beta2: options.beta2 ?? defaultAdamW.beta2,
  epsilon: options.epsilon ?? defaultAdamW.epsilon
})

// ---------------------------------------------------------------------------------------------
// The loop

interface LoopSpec {
  readonly params: ReadonlyArray<tf.Variable>
  readonly weightDecay: ReadonlyArray<number>
  /** The model to run, built inside the gradient function (full training re-ties the LM head). */
  readonly model: () => TransformerWeights
  /** The projection hook for micro-batch `micro` (seeded dropout), if any. */
  readonly hook: (micro: number) => ProjectionHook | undefined
  /** Moments to start from (same order as `params`); zeros when absent. */
  readonly moments?: { readonly m: ReadonlyArray<tf.Tensor>; readonly v: ReadonlyArray<tf.Tensor> } | undefined
  /** Called with the optimizer state after the last step, before it is disposed. */
  readonly finalState?: ((state: AdamWState) => void) | undefined
}

interface LoopStats extends TrainStats {
  readonly nextStep: number
}

/**
 * Gradients (in `params` order) and the loss, as one vector: what replicas exchange. Copied
 * tensor by tensor: wasm's concat of the ~40 gradients took 400 ms a call (measured), more than
 * half a step.
 */
const flattenGradients = (grads: ReadonlyArray<tf.Tensor>, loss: tf.Tensor): Float32Array => {
  const vector = new Float32Array(grads.reduce((n, g) => n + g.size, 0) + 1)
  let offset = 0
  for (const g of grads) {
    vector.set(g.dataSync() as Float32Array, offset)
    offset += g.size
  }
  vector[offset] = loss.dataSync()[0]!
  return vector
}

/** The gradients of `params` back from `flattenGradients`' layout (the loss is the last value). */
const unflattenGradients = (vector: Float32Array, params: ReadonlyArray<tf.Variable>): Array<tf.Tensor> => {
  let offset = 0
  return params.map((p) => {
    const size = p.size
    const t = tf.tensor(vector.subarray(offset, offset + size), p.shape)
    offset += size
    return t
  })
}

const runLoop = (spec: LoopSpec, examples: ReadonlyArray<TokenizedExample>, options: TrainOptions): LoopStats => {
  validateTrainOptions(options, examples.length)
  ensureGradients()
  const plan = resolvePlan(examples.length, options)
  const firstStep = options.startStep ?? 0
  const lastStep = Math.min(plan.length, options.endStep ?? plan.length)
  const hyper = adamHyper(options)
  const schedule = options.schedule ?? { kind: "constant" }
  const state = createAdamWState(spec.params)
  if (spec.moments !== undefined) {
    state.m.forEach((m, i) => m.assign(spec.moments!.m[i]!))
    state.v.forEach((v, i) => v.assign(spec.moments!.v[i]!))
  }
  const losses: Array<number> = []
  const gradNorms: Array<number> = []
  const learningRates: Array<number> = []
  let inputTokens = 0
  let labelTokens = 0
  let micro = 0
  let stoppedEarly = false
  let nextStep = firstStep
  const start = performance.now()
  try {
    for (let s = firstStep; s < lastStep; s++) {
      const planned = plan[s]!
      const batches = planned.microBatches.map((idx) =>
        buildBatch(idx.map((i) => examples[i]!), { padId: options.padId })
      )
      // Normalise by the step's total target count, so accumulating micro-batches gives the
      // gradient of the mean over the whole step's targets, as one big batch would.
      const stepLabels = batches.reduce((n, b) => n + b.labelTokens, 0)
      const learningRate = learningRateAt(schedule, options.learningRate, s, plan.length)
      const { loss, norm } = tf.tidy(() => {
        /** One micro-batch's loss (its share of the step's mean) and gradients. */
        const microGradients = (batch: Batch, hook: ProjectionHook | undefined) =>
          tf.tidy(() => {
            const t = batchTensors(batch)
            const { value, grads: named } = tf.variableGrads(() => {
              const logits = forward(spec.model(), { ...t, hook }).logits
              const nll = nextTokenNll(logits, t.ids, t.labelMask, options.pick)
              return tf.div(tf.sum(nll), Math.max(1, stepLabels)) as tf.Scalar
            }, [...spec.params])
            return { value, grads: spec.params.map((p) => named[p.name] ?? tf.zerosLike(p)) }
          })
        let grads: Array<tf.Tensor> | undefined
        let lossSum: tf.Tensor = tf.scalar(0)
        const shard = options.shard
        if (shard === undefined) {
          for (const batch of batches) {
            const out = microGradients(batch, spec.hook(micro++))
            lossSum = tf.add(lossSum, out.value)
            grads = grads === undefined ? out.grads : grads.map((g, i) => tf.add(g, out.grads[i]!))
          }
        } else {
          const local = new Map<number, Float32Array>()
          batches.forEach((batch, i) => {
            const hook = spec.hook(micro++)
            if (i % shard.replicas !== shard.rank) return
            const out = microGradients(batch, hook)
            local.set(i, flattenGradients(out.grads, out.value))
          })
          // Float32 sums in micro-batch order: the same roundings as the tf.add chain above.
          const all = shard.exchange(s, local, batches.length)
          const sum = Float32Array.from(all[0]!)
          for (const vector of all.slice(1)) for (let j = 0; j < sum.length; j++) sum[j] += vector[j]!
          grads = unflattenGradients(sum, spec.params)
          lossSum = tf.scalar(sum[sum.length - 1]!)
        }
        const norm = Math.sqrt(squaredNorm(grads!).dataSync()[0]!)
        const loss = lossSum.dataSync()[0]!
        if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
          throw new TrainingError({
            reason: "NonFinite",
            step: s + 1,
            detail: `non-finite ${Number.isFinite(loss) ? "gradient norm" : "loss"} (loss ${loss}, grad norm ${norm})`
          })
        }
        adamWUpdate(spec.params, grads!, state, hyper, spec.weightDecay.map((d) => d * (options.weightDecay ?? 0)), {
          learningRate,
          ...biasCorrections(hyper, s + 1),
          gradScale: clipFactor(norm, options.maxGradNorm ?? 1)
        })
        return { loss, norm }
      })
      losses.push(loss)
      gradNorms.push(norm)
      learningRates.push(learningRate)
      inputTokens += batches.reduce((n, b) => n + b.inputTokens, 0)
      labelTokens += stepLabels
      const progress: StepProgress = {
        step: s + 1,
        totalSteps: plan.length,
        epoch: planned.epoch,
        loss,
        gradNorm: norm,
        learningRate,
        labelTokens: stepLabels,
        elapsedMs: performance.now() - start
      }
      nextStep = s + 1
      options.onStep?.(progress)
      if (options.stopWhen?.(progress) === true && s + 1 < lastStep) {
        stoppedEarly = true
        break
      }
    }
    spec.finalState?.(state)
  } finally {
    disposeAdamWState(state)
  }
  const seconds = (performance.now() - start) / 1000
  return {
    losses,
    gradNorms,
    learningRates,
    steps: losses.length,
    stoppedEarly,
    inputTokens,
    labelTokens,
    seconds,
    tokensPerSecond: seconds > 0 ? inputTokens / seconds : 0,
    nextStep
  }
}

// ---------------------------------------------------------------------------------------------
// LoRA

/**
 * Trains `adapter` on `examples` over the frozen base `weights` and returns the trained adapter
 * (same identity, `trainedSteps` advanced). Throws `TrainingError` (and `LoraConfigError` for an
 * adapter that does not fit the model). Allocates nothing that outlives the call.
 */
export const trainLora = (
  weights: TransformerWeights,
  adapter: LoraAdapter,
  examples: ReadonlyArray<TokenizedExample>,
  options: TrainOptions
): LoraTrainResult => {
  checkAdapterFits(weights.config, adapter)
  checkExamplesFit(weights.config, examples)
  const device: DeviceLora = uploadLora(adapter, true)
  try {
    const seed = options.seed ?? 0
    const stats = runLoop(
      {
        params: deviceLoraVariables(device),
        weightDecay: deviceLoraVariables(device).map(() => 1),
        model: () => weights,
        hook: (micro) => loraHook(device, { seed: deriveSeed(seed ^ 0x5eed, micro) })
      },
      examples,
      options
    )
    return { ...stats, adapter: downloadLora(device, adapter, adapter.trainedSteps + stats.steps) }
  } finally {
    disposeDeviceLora(device)
  }
}

/** Throws `TrainingError` for token ids outside the vocabulary or examples longer than the context. */
export const checkExamplesFit = (config: ModelConfig, examples: ReadonlyArray<TokenizedExample>): void => {
  examples.forEach((e, i) => {
    if (e.ids.length !== e.labelMask.length) {
      throw new TrainingError({ reason: "BadData", detail: `example ${i}: ids and labelMask differ in length` })
    }
    if (e.ids.length > config.maxPositions) {
      throw new TrainingError({
        reason: "BadData",
        detail: `example ${i} has ${e.ids.length} tokens; the context is ${config.maxPositions}`
      })
    }
    const bad = e.ids.find((id) => !(Number.isInteger(id) && id >= 0 && id < config.vocabSize))
    if (bad !== undefined) {
      throw new TrainingError({ reason: "BadData", detail: `example ${i} has token id ${bad} outside the vocabulary` })
    }
  })
  if (examples.every((e) => countLabels(e) === 0)) {
    throw new TrainingError({ reason: "NoData", detail: "no example has a target token" })
  }
}

// ---------------------------------------------------------------------------------------------
// Full fine-tuning

/**
 * Trains every weight of the model (embeddings, norms, projections, biases, LM head) and returns
 * the new weights in the Hugging Face layout. With tied embeddings the LM head is recomputed
 * from the embedding inside each step, so both uses train the one matrix. Weight decay applies
 * to matrices only (nanoGPT's rule: no decay on norms and biases).
 *
 * The embedding lookup's gradient is UnsortedSegmentSum (tfjs's gather gradient): the cpu
 * backend has it; wasm has it only once our kernel override registers it.
 */
export const trainFull = (
  config: ModelConfig,
  weights: WeightMap,
  examples: ReadonlyArray<TokenizedExample>,
  options: TrainOptions & {
    /** AdamW moments from a previous window's `FullTrainResult.moments`; zeros when absent. */
    readonly moments?: WeightMap | undefined
  }
): FullTrainResult => {
  checkExamplesFit(config, examples)
  ensureGradients()
  const base = createTransformerWeights(config, weights)
  const variables: Array<tf.Variable> = []
  /** Canonical name and whether the device copy is transposed, per variable. */
  const names: Array<{ readonly name: string; readonly transposed: boolean }> = []
  const asVariable = <T extends tf.Tensor>(t: T, name: string, transposed: boolean): T => {
    const v = tf.variable(t, true)
    t.dispose()
    variables.push(v)
    names.push({ name, transposed })
    return v as unknown as T
  }
  const uploaded: Array<tf.Tensor> = []
  try {
    const embed = asVariable(base.embed, WeightNames.embed, false)
    const lmHead = config.tieEmbeddings ? undefined : asVariable(base.lmHead, WeightNames.lmHead, true)
    if (config.tieEmbeddings) base.lmHead.dispose()
    const finalNorm = asVariable(base.finalNorm, WeightNames.finalNorm, false)
    const baseGrid = base.grid
    const grid = baseGrid === undefined
      ? undefined
      : gridTables((table, name) => asVariable(baseGrid[table], name, false))
    const layers: Array<LayerWeights> = base.layers.map((l, i) => {
      const n = WeightNames.layer(i)
      const proj = Object.fromEntries(
        projectionNames.map((p) => [p, asVariable(l.proj[p], n[p], true)])
      ) as LayerWeights["proj"]
      return {
        inputNorm: asVariable(l.inputNorm, n.inputNorm, false),
        postAttentionNorm: asVariable(l.postAttentionNorm, n.postAttentionNorm, false),
        proj,
        ...(l.qBias !== undefined && l.kBias !== undefined && l.vBias !== undefined
          ? {
            qBias: asVariable(l.qBias, n.qBias, false),
            kBias: asVariable(l.kBias, n.kBias, false),
            vBias: asVariable(l.vBias, n.vBias, false)
          }
          : {})
      }
    })
    const model = (): TransformerWeights => ({
      ...base,
      embed,
      finalNorm,
      layers,
      grid,
      lmHead: lmHead ?? (tf.transpose(embed) as tf.Tensor2D)
    })
    const upload = (suffix: string) =>
      names.map(({ name, transposed }, i) => {
        const host = options.moments?.get(`${name}.${suffix}`)
        const shape = variables[i]!.shape
        if (host === undefined || host.data.length !== shape.reduce((a, b) => a * b, 1)) {
          throw new TrainingError({ reason: "BadOptions", detail: `moments lack a matching ${name}.${suffix}` })
        }
        const t = tf.tidy(() => {
          const x = tf.tensor(host.data, [...host.shape])
          return transposed ? tf.transpose(x) : x
        })
        uploaded.push(t)
        return t
      })
    const moments = options.moments === undefined ? undefined : { m: upload("exp_avg"), v: upload("exp_avg_sq") }
    let finalMoments: WeightMap = new Map()
    const stats = runLoop(
      {
        params: variables,
        weightDecay: variables.map((v) => (v.rank >= 2 ? 1 : 0)),
        model,
        hook: () => undefined,
        moments,
        finalState: (state) => {
          const out = new Map<string, HostTensor>()
          names.forEach(({ name, transposed }, i) => {
            out.set(`${name}.exp_avg`, toHost(state.m[i]!, transposed))
            out.set(`${name}.exp_avg_sq`, toHost(state.v[i]!, transposed))
          })
          finalMoments = out
        }
      },
      examples,
      options
    )
    return {
      ...stats,
      weights: downloadWeights(config, { ...base, embed, finalNorm, layers, grid, lmHead: lmHead ?? embed }),
      moments: finalMoments
    }
  } finally {
    for (const t of uploaded) t.dispose()
    for (const v of variables) v.dispose()
    base.ropeCos.dispose()
    base.ropeSin.dispose()
  }
}

/** A device tensor on the host, transposed back to the Hugging Face layout when stored `[in, out]`. */
const toHost = (t: tf.Tensor, transposed: boolean): HostTensor => {
  const host = transposed ? tf.transpose(t) : t
  const data = Float32Array.from(host.dataSync() as Float32Array)
  const shape = [...host.shape]
  if (host !== t) host.dispose()
  return { shape, data }
}

/** Device weights back to a host `WeightMap` in the Hugging Face layout (projections `[out, in]`). */
export const downloadWeights = (config: ModelConfig, w: TransformerWeights): WeightMap => {
  const shapes = expectedWeightShapes(config)
  const out = new Map<string, HostTensor>()
  const put = (name: string, t: tf.Tensor, transposed: boolean) => {
    out.set(name, { shape: shapes.get(name)!, data: toHost(t, transposed).data })
  }
  put(WeightNames.embed, w.embed, false)
  put(WeightNames.finalNorm, w.finalNorm, false)
  if (!config.tieEmbeddings) put(WeightNames.lmHead, w.lmHead, true)
  const grid = w.grid
  if (grid !== undefined) { for (const [table, name] of gridTableNames) put(name, grid[table], false) }
  w.layers.forEach((l, i) => {
    const n = WeightNames.layer(i)
    put(n.inputNorm, l.inputNorm, false)
    put(n.postAttentionNorm, l.postAttentionNorm, false)
    for (const p of projectionNames) put(n[p], l.proj[p], true)
    if (l.qBias !== undefined) put(n.qBias, l.qBias, false)
    if (l.kBias !== undefined) put(n.kBias, l.kBias, false)
    if (l.vBias !== undefined) put(n.vBias, l.vBias, false)
  })
  return out
}
