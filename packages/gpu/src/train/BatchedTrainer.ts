import * as tf from "@tensorflow/tfjs-core"
import type { LoraAdapter, LoraModule } from "../lora/LoraAdapter.js"
import { checkAdapterFits, hostVariable, loraScale } from "../lora/LoraAdapter.js"
import { deriveSeed, makeRng } from "../model/Sampling.js"
import type { ProjectionHook, ProjectionName, TransformerWeights } from "../model/Transformer.js"
import { forward } from "../model/Transformer.js"
import { adamWUpdate, clipFactor, createAdamWState, disposeAdamWState, squaredNorm } from "./AdamW.js"
import { ensureGradients } from "./Gradients.js"
import type { TokenizedExample } from "./Loss.js"
import { batchTensors, buildBatch, nextTokenNll } from "./Loss.js"
import { learningRateAt } from "./Schedule.js"
import type { LoraTrainResult, PlannedStep, StepProgress, TrainOptions } from "./Trainer.js"
import { adamHyper, checkExamplesFit, planSteps, TrainingError, validateTrainOptions } from "./Trainer.js"

/**
 * K independent LoRA adapters trained in one forward/backward over the shared frozen base, the
 * way SEAL's inner loop wants it (many self-edits, one adapter each).
 *
 * Each module's adapters are stacked as Aᵀ `[K, in, r]` and Bᵀ `[K, r, out]`. The batch is K
 * blocks of rows, block k holding adapter k's micro-batch (short blocks padded with empty rows),
 * so the hook reshapes the projection input to `[K, rows·T, in]` and applies all adapters with
 * one batched matmul. The objective is the sum of the K per-adapter mean losses; since the
 * adapters share no parameters, each one's gradient is exactly that of its own loss. AdamW
 * keeps per-adapter moments in the same stacked layout, with per-adapter step size, clip factor
 * and an active flag, so adapters with fewer planned steps (or an early stop) freeze while the
 * rest continue. With dropout 0 every adapter ends where a separate `trainLora` run with the same
 * options and data would (up to float32 summation order); dropout masks differ from a separate
 * run's because they are drawn over the stacked layout.
 */

interface StackedModule {
  readonly layer: number
  readonly target: ProjectionName
  /** `[K, in, r]` */
  readonly aT: tf.Variable
  /** `[K, r, out]` */
  readonly bT: tf.Variable
}

const transposeInto = (t: LoraModule["a"], out: Float32Array, offset: number) => {
  const [rows, cols] = [t.shape[0]!, t.shape[1]!]
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[offset + j * rows + i] = t.data[i * cols + j]!
}

const transposeOut = (data: Float32Array, offset: number, rows: number, cols: number): Float32Array => {
  // `data[offset..]` holds a `[rows, cols]` matrix; returns its `[cols, rows]` transpose.
  const out = new Float32Array(rows * cols)
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[offset + i * cols + j]!
  return out
}

const checkCompatible = (adapters: ReadonlyArray<LoraAdapter>): void => {
  const first = adapters[0]!
  const layout = (a: LoraAdapter) => a.modules.map((m) => `${m.layer}.${m.target}`).join(",")
  adapters.forEach((a, k) => {
    if (a.config.rank !== first.config.rank || layout(a) !== layout(first)) {
      throw new TrainingError({
        reason: "Incompatible",
        detail: `adapter ${k} (${a.id}) has a different rank or module set from adapter 0 (${first.id}); ` +
          "batched training stacks them, so rank and targets must match"
      })
    }
  })
}

/** Adapter k's rows of a step's micro-batch j, or none. */
const microRows = (plan: ReadonlyArray<PlannedStep>, step: number, micro: number) =>
  plan[step]?.microBatches[micro] ?? []

/**
 * Trains `adapters[k]` on `datasets[k]` with `options[k]` (or one options value for all), in
 * lockstep; returns one result per adapter, as `trainLora` would. Per adapter: learning rate,
 * schedule, steps / epochs, batch size, accumulation, seed (data order), weight decay, clipping,
 * callbacks and early stop. Shared, taken from the first options: `padId`, `pick`, the dropout
 * seed; and beta1 / beta2 / epsilon must agree. Throws `TrainingError`.
 */
export const trainLoraMany = (
  weights: TransformerWeights,
  adapters: ReadonlyArray<LoraAdapter>,
  datasets: ReadonlyArray<ReadonlyArray<TokenizedExample>>,
  options: TrainOptions | ReadonlyArray<TrainOptions>
): Array<LoraTrainResult> => {
  const K = adapters.length
  if (K === 0) return []
  if (datasets.length !== K) {
    throw new TrainingError({ reason: "BadOptions", detail: `${K} adapters but ${datasets.length} datasets` })
  }
  const opts: ReadonlyArray<TrainOptions> = Array.isArray(options)
    ? options as ReadonlyArray<TrainOptions>
    : adapters.map(() => options as TrainOptions)
  if (opts.length !== K) {
    throw new TrainingError({ reason: "BadOptions", detail: `${K} adapters but ${opts.length} options` })
  }
  checkCompatible(adapters)
  adapters.forEach((a, k) => {
    checkAdapterFits(weights.config, a)
    validateTrainOptions(opts[k]!, datasets[k]!.length)
    checkExamplesFit(weights.config, datasets[k]!)
  })

  ensureGradients()
  const plans = opts.map((o, k) => planSteps(datasets[k]!.length, o))
  const hypers = opts.map(adamHyper)
  if (hypers.some((h) => JSON.stringify(h) !== JSON.stringify(hypers[0]))) {
    throw new TrainingError({
      reason: "Incompatible",
      detail: "beta1, beta2 and epsilon must be the same for every adapter (their moments are stacked)"
    })
  }
  const blockRows = Math.max(...opts.map((o) => o.batchSize ?? 1))
  const rank = adapters[0]!.config.rank
  const stepsPerAdapter = plans.map((p) => p.length)

  const modules: Array<StackedModule> = []
  let state: ReturnType<typeof createAdamWState> | undefined
  try {
    adapters[0]!.modules.forEach((m0, i) => {
      const inner = m0.a.shape[1]!
      const out = m0.b.shape[0]!
      const a = new Float32Array(K * inner * rank)
      const b = new Float32Array(K * rank * out)
      adapters.forEach((adapter, k) => {
        transposeInto(adapter.modules[i]!.a, a, k * inner * rank)
        transposeInto(adapter.modules[i]!.b, b, k * rank * out)
      })
      modules.push({
        layer: m0.layer,
        target: m0.target,
        aT: hostVariable(a, [K, inner, rank]),
        bT: hostVariable(b, [K, rank, out])
      })
    })
    const params = modules.flatMap((m) => [m.aT, m.bT])
    state = createAdamWState(params)
    const byKey = new Map(modules.map((m) => [`${m.layer}.${m.target}`, m]))
    const scales = tf.tensor3d(adapters.map((a) => loraScale(a.config)), [K, 1, 1])
    const hook = (seed: number): ProjectionHook => {
      let calls = 0
      return (layer, projection, x) => {
        const m = byKey.get(`${layer}.${projection}`)
        if (m === undefined) return undefined
        const inner = x.shape[x.shape.length - 1]!
        const rows = x.size / inner
        let stacked: tf.Tensor = tf.reshape(x, [K, rows / K, inner])
        const rates = adapters.map((a) => a.config.dropout)
        if (rates.some((r) => r > 0)) stacked = tf.mul(stacked, stackedDropout(rates, rows / K, inner, seed, calls++))
        const y = tf.mul(tf.matMul(tf.matMul(stacked as tf.Tensor3D, m.aT), m.bT), scales)
        return tf.reshape(y, [...x.shape.slice(0, -1), m.bT.shape[2]!])
      }
    }

    const losses: Array<Array<number>> = adapters.map(() => [])
    const gradNorms: Array<Array<number>> = adapters.map(() => [])
    const learningRates: Array<Array<number>> = adapters.map(() => [])
    const inputTokens = new Array<number>(K).fill(0)
    const labelTokens = new Array<number>(K).fill(0)
    const stopped = new Array<boolean>(K).fill(false)
    const start = performance.now()
    let micro = 0
    try {
      for (let s = 0;; s++) {
        const active = adapters.map((_, k) => !stopped[k] && s < stepsPerAdapter[k]!)
        if (!active.some(Boolean)) break
        const microCount = Math.max(
          ...plans.map((p, k) => (active[k] ? p[s]!.microBatches.length : 0))
        )
        const batches = Array.from({ length: microCount }, (_, j) =>
          buildBatch(
            adapters.flatMap((_, k) => {
              const rows = active[k] ? microRows(plans[k]!, s, j).map((i) => datasets[k]![i]!) : []
              return Array.from({ length: blockRows }, (_, r) => rows[r])
            }),
            { padId: opts[0]!.padId }
          ))
        // Per-adapter target counts of this step, over all its micro-batches.
        const stepLabels = adapters.map((_, k) =>
          batches.reduce((n, b) => {
            let c = 0
            for (let r = k * blockRows; r < (k + 1) * blockRows; r++) {
              for (let t = 0; t < b.steps; t++) c += b.labelMask[r * b.steps + t]!
            }
            return n + c
          }, 0)
        )
        const rowWeights = new Float32Array(K * blockRows)
        for (let k = 0; k < K; k++) {
          for (let r = 0; r < blockRows; r++) {
            rowWeights[k * blockRows + r] = active[k]
              ? 1 / Math.max(1, stepLabels[k]!)
              : 0
          }
        }
        const lrs = opts.map((o, k) =>
          active[k] ? learningRateAt(o.schedule ?? { kind: "constant" }, o.learningRate, s, stepsPerAdapter[k]!) : 0
        )

        const { lossValues, normValues } = tf.tidy(() => {
          let grads: Array<tf.Tensor> | undefined
          let lossSum: tf.Tensor = tf.zeros([K])
          for (const batch of batches) {
            const seed = deriveSeed(opts[0]!.seed ?? 0, 0x5eed + micro++)
            const out = tf.tidy(() => {
              const t = batchTensors(batch)
              const weightsPerRow = tf.tensor2d(rowWeights, [K * blockRows, 1])
              // variableGrads keeps only its scalar result, so the per-adapter sums computed on
              // the way are kept by hand and freed right after.
              let perAdapter: tf.Tensor | undefined
              const { grads: named } = tf.variableGrads(() => {
                const logits = forward(weights, { ...t, hook: hook(seed) }).logits
                const weighted = tf.mul(nextTokenNll(logits, t.ids, t.labelMask, opts[0]!.pick), weightsPerRow)
                perAdapter = tf.keep(tf.sum(tf.reshape(weighted, [K, -1]), 1))
                return tf.sum(weighted) as tf.Scalar
              }, params)
              const kept = perAdapter!
              const result = { losses: tf.clone(kept), grads: params.map((p) => named[p.name] ?? tf.zerosLike(p)) }
              kept.dispose()
              return result
            })
            lossSum = tf.add(lossSum, out.losses)
            grads = grads === undefined ? out.grads : grads.map((g, i) => tf.add(g, out.grads[i]!))
          }
          const normValues = Array.from(tf.sqrt(squaredNorm(grads!, true)).dataSync())
          const lossValues = Array.from(lossSum.dataSync())
          for (let k = 0; k < K; k++) {
            if (active[k] && (!Number.isFinite(lossValues[k]!) || !Number.isFinite(normValues[k]!))) {
              throw new TrainingError({
                reason: "NonFinite",
                step: s + 1,
                detail: `adapter ${k} (${adapters[k]!.id}): non-finite loss or gradient norm ` +
                  `(loss ${lossValues[k]}, grad norm ${normValues[k]})`
              })
            }
          }
          const perSlice = (values: ReadonlyArray<number>) => tf.tensor3d(values as Array<number>, [K, 1, 1])
          const corrections = hypers.map((h, k) =>
            active[k]
              ? { bc1: 1 - Math.pow(h.beta1, s + 1), bc2: 1 - Math.pow(h.beta2, s + 1) }
              : { bc1: 1, bc2: 1 }
          )
          adamWUpdate(
            params,
            grads!,
            state!,
            hypers[0]!,
            params.map(() => perSlice(opts.map((o) => o.weightDecay ?? 0))),
            {
              learningRate: perSlice(lrs),
              biasCorrection1: perSlice(corrections.map((c) => c.bc1)),
              biasCorrection2: perSlice(corrections.map((c) => c.bc2)),
              gradScale: perSlice(opts.map((o, k) => active[k] ? clipFactor(normValues[k]!, o.maxGradNorm ?? 1) : 1)),
              active: perSlice(active.map((a) => (a ? 1 : 0)))
            }
          )
          return { lossValues, normValues }
        })

        for (let k = 0; k < K; k++) {
          if (!active[k]) continue
          losses[k]!.push(lossValues[k]!)
          gradNorms[k]!.push(normValues[k]!)
          learningRates[k]!.push(lrs[k]!)
          labelTokens[k]! += stepLabels[k]!
          for (const b of batches) {
            for (let r = k * blockRows; r < (k + 1) * blockRows; r++) inputTokens[k]! += b.lengths[r]!
          }
          const progress: StepProgress = {
            adapter: k,
            step: s + 1,
            totalSteps: stepsPerAdapter[k]!,
            epoch: plans[k]![s]!.epoch,
            loss: lossValues[k]!,
            gradNorm: normValues[k]!,
            learningRate: lrs[k]!,
            labelTokens: stepLabels[k]!,
            elapsedMs: performance.now() - start
          }
          opts[k]!.onStep?.(progress)
          if (opts[k]!.stopWhen?.(progress) === true && s + 1 < stepsPerAdapter[k]!) stopped[k] = true
        }
      }
    } finally {
      scales.dispose()
    }
    const seconds = (performance.now() - start) / 1000
    const aValues = modules.map((m) => m.aT.dataSync() as Float32Array)
    const bValues = modules.map((m) => m.bT.dataSync() as Float32Array)
    return adapters.map((adapter, k) => {
      const trained: Array<LoraModule> = adapter.modules.map((m, i) => {
        const inner = m.a.shape[1]!
        const out = m.b.shape[0]!
        return {
          layer: m.layer,
          target: m.target,
          a: { shape: [rank, inner], data: transposeOut(aValues[i]!, k * inner * rank, inner, rank) },
          b: { shape: [out, rank], data: transposeOut(bValues[i]!, k * rank * out, rank, out) }
        }
      })
      const steps = losses[k]!.length
      return {
        adapter: { ...adapter, trainedSteps: adapter.trainedSteps + steps, modules: trained },
        losses: losses[k]!,
        gradNorms: gradNorms[k]!,
        learningRates: learningRates[k]!,
        steps,
        stoppedEarly: stopped[k]!,
        inputTokens: inputTokens[k]!,
        labelTokens: labelTokens[k]!,
        seconds,
        tokensPerSecond: seconds > 0 ? inputTokens[k]! / seconds : 0
      }
    })
  } finally {
    if (state !== undefined) disposeAdamWState(state)
    for (const m of modules) {
      m.aT.dispose()
      m.bT.dispose()
    }
  }
}

/** Inverted-dropout masks `[K, rows, in]`, block k at adapter k's rate, from our own PRNG. */
const stackedDropout = (
  rates: ReadonlyArray<number>,
  rows: number,
  inner: number,
  seed: number,
  call: number
): tf.Tensor => {
  const K = rates.length
  const block = rows * inner
  const data = new Float32Array(K * block)
  for (let k = 0; k < K; k++) {
    const keep = 1 - rates[k]!
    if (rates[k] === 0) {
      data.fill(1, k * block, (k + 1) * block)
      continue
    }
    const rng = makeRng(deriveSeed(deriveSeed(seed, call), k))
    for (let i = 0; i < block; i++) data[k * block + i] = rng() < keep ? 1 / keep : 0
  }
  return tf.tensor3d(data, [K, rows, inner])
}
