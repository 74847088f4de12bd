import * as tf from "@tensorflow/tfjs-core"
import type { LoraAdapter } from "../lora/LoraAdapter.js"
import {
  checkAdapterFits,
  deviceLoraVariables,
  disposeDeviceLora,
  downloadLora,
  loraHook,
  uploadLora
} from "../lora/LoraAdapter.js"
import { deriveSeed, makeRng, shuffleInPlace } from "../model/Sampling.js"
import type { ProjectionHook, TransformerWeights } from "../model/Transformer.js"
import { forward } from "../model/Transformer.js"
import { adamWUpdate, biasCorrections, clipFactor, createAdamWState, disposeAdamWState, squaredNorm } from "./AdamW.js"
import { ensureGradients } from "./Gradients.js"
import { batchTensors, buildBatch, nextTokenNll } from "./Loss.js"
import { TrainingError } from "./Trainer.js"

/**
 * GRPO's update of a LoRA generator (Shao et al. 2024, with the options of Dr. GRPO, Liu et al.
 * 2025): for sampled completions with group-normalised advantages A, maximise the clipped
 * surrogate `min(r·A, clip(r, 1-ε, 1+ε)·A)` per completion token, r = π(t)/π_old(t), minus β
 * times the k3 estimate of KL(π || π_ref), `e^(ref-logp) - (ref-logp) - 1`.
 *
 * Both terms are applied through their exact gradients with respect to each token's
 * log-probability, as weights on the next-token NLL: the clipped surrogate's gradient is
 * `A·r·∇logp` where the clip is inactive and 0 where it is active, and the k3 term's is
 * `(1 - e^(ref-logp))·∇logp`. So each step is a no-gradient forward pass (to get r and the KL
 * weights) and one weighted NLL backward pass; no op beyond the trainer's own needs a gradient.
 *
 * π_old is the adapter as given (the one the completions were sampled from), π_ref the base model
 * without the adapter.
 */

export interface PolicySample {
  /** Prompt and completion token ids (BOS first; the completion may end with EOS). */
  readonly ids: ReadonlyArray<number>
  /** Index of the completion's first token in `ids`. */
  readonly completionStart: number
  readonly advantage: number
}

export interface PolicyGradientOptions {
  readonly learningRate: number
  /** Optimisation passes over the samples (each a seeded shuffle into mini-batches). */
  readonly passes: number
  readonly batchSize: number
  /** ε of the clipped ratio (default 0.2). */
  readonly clip?: number | undefined
  /** β of the KL penalty to the base model (default 0: no penalty, no reference pass). */
  readonly klCoef?: number | undefined
  /**
   * `sequence` (GRPO): each completion's token terms are averaged over its length, then over the
   * batch. `constant` (Dr. GRPO): token terms are summed and divided by `maxTokens` per
   * completion, which removes GRPO's bias toward short right answers and long wrong ones.
   */
  readonly lengthNorm?: "sequence" | "constant" | undefined
  /** The generation budget, for `constant` normalisation. */
  readonly maxTokens?: number | undefined
  readonly maxGradNorm?: number | undefined
  readonly seed: number
  readonly padId?: number | undefined
}

export interface PolicyGradientResult {
  readonly adapter: LoraAdapter
  readonly steps: number
  /** Mean surrogate objective (before each step) and mean KL estimate per step. */
  readonly objectives: ReadonlyArray<number>
  readonly kls: ReadonlyArray<number>
  /** Share of completion tokens whose ratio was clipped, over all steps. */
  readonly clippedFraction: number
  readonly seconds: number
}

/** Per-token log-probabilities of the completion tokens under `hook` (no gradient). */
const completionLogProbs = (
  weights: TransformerWeights,
  samples: ReadonlyArray<PolicySample>,
  hook: ProjectionHook | undefined,
  padId: number
): Array<Float32Array> =>
  samples.map((sample) => {
    const batch = buildBatch([{ ids: sample.ids, labelMask: sample.ids.map(() => 1) }], { padId })
    const nll = tf.tidy(() => {
      const t = batchTensors(batch)
      return nextTokenNll(forward(weights, { ...t, hook }).logits, t.ids, t.labelMask).dataSync() as Float32Array
    })
    // nll[t] scores target t+1; keep targets completionStart..end.
    const out = new Float32Array(sample.ids.length - sample.completionStart)
    for (let i = 0; i < out.length; i++) out[i] = -nll[sample.completionStart + i - 1]!
    return out
  })

export const trainPolicyGradient = (
  weights: TransformerWeights,
  adapter: LoraAdapter,
  samples: ReadonlyArray<PolicySample>,
  options: PolicyGradientOptions
): PolicyGradientResult => {
  checkAdapterFits(weights.config, adapter)
  if (samples.length === 0) throw new TrainingError({ reason: "NoData", detail: "no samples" })
  for (const [i, s] of samples.entries()) {
    if (!(s.completionStart >= 1 && s.completionStart < s.ids.length)) {
      throw new TrainingError({ reason: "BadData", detail: `sample ${i} has no completion tokens` })
    }
    if (s.ids.length > weights.config.maxPositions) {
      throw new TrainingError({ reason: "BadData", detail: `sample ${i} is longer than the context` })
    }
  }
  ensureGradients()
  const start = performance.now()
  const padId = options.padId ?? 0
  const clip = options.clip ?? 0.2
  const beta = options.klCoef ?? 0
  const lengthNorm = options.lengthNorm ?? "sequence"
  const device = uploadLora(adapter, true)
  const params = deviceLoraVariables(device)
  const state = createAdamWState(params)
  const objectives: Array<number> = []
  const kls: Array<number> = []
  let clipped = 0
  let counted = 0
  try {
    const old = completionLogProbs(weights, samples, loraHook(device), padId)
    const ref = beta > 0 ? completionLogProbs(weights, samples, undefined, padId) : undefined
    let step = 0
    for (let pass = 0; pass < options.passes; pass++) {
      const order = shuffleInPlace(samples.map((_, i) => i), makeRng(deriveSeed(options.seed, pass)))
      for (let b = 0; b < order.length; b += options.batchSize) {
        const rows = order.slice(b, b + options.batchSize)
        const current = completionLogProbs(weights, rows.map((i) => samples[i]!), loraHook(device), padId)
        const batch = buildBatch(rows.map((i) => ({ ids: samples[i]!.ids, labelMask: samples[i]!.ids.map(() => 1) })), {
          padId
        })
        const tokenWeights = new Float32Array(batch.rows * batch.steps)
        let objective = 0
        let kl = 0
        rows.forEach((i, r) => {
          const s = samples[i]!
          const n = s.ids.length - s.completionStart
          const norm = (lengthNorm === "sequence" ? 1 / n : 1 / Math.max(1, options.maxTokens ?? n)) / rows.length
          for (let k = 0; k < n; k++) {
            const logp = current[r]![k]!
            const ratio = Math.exp(logp - old[i]![k]!)
            const a = s.advantage
            const active = a > 0 ? ratio < 1 + clip : a < 0 ? ratio > 1 - clip : false
            if (a !== 0) {
              counted++
              if (!active) clipped++
            }
            objective += norm * Math.min(ratio * a, Math.min(Math.max(ratio, 1 - clip), 1 + clip) * a)
            let w = active ? a * ratio : 0
            if (ref !== undefined) {
              const d = ref[i]![k]! - logp
              kl += norm * (Math.exp(d) - d - 1)
              w -= beta * (1 - Math.exp(d))
            }
            // The NLL at target position t is weighted by tokenWeights[t].
            tokenWeights[r * batch.steps + s.completionStart + k] = norm * w
          }
        })
        step++
        tf.tidy(() => {
          const t = batchTensors(batch)
          const w = tf.tensor2d(tokenWeights, [batch.rows, batch.steps])
          const { grads: named } = tf.variableGrads(() => {
            const logits = forward(weights, { ...t, hook: loraHook(device) }).logits
            return tf.sum(nextTokenNll(logits, t.ids, w)) as tf.Scalar
          }, [...params])
          const grads = params.map((p) => named[p.name] ?? tf.zerosLike(p))
          const norm = Math.sqrt(squaredNorm(grads).dataSync()[0]!)
          if (!Number.isFinite(norm)) {
            throw new TrainingError({ reason: "NonFinite", step, detail: `non-finite gradient norm ${norm}` })
          }
          adamWUpdate(params, grads, state, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }, params.map(() => 0), {
            learningRate: options.learningRate,
            ...biasCorrections({ beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }, step),
            gradScale: clipFactor(norm, options.maxGradNorm ?? 1)
          })
        })
        objectives.push(objective)
        kls.push(kl)
      }
    }
    return {
      adapter: downloadLora(device, adapter, adapter.trainedSteps + step),
      steps: step,
      objectives,
      kls,
      clippedFraction: counted === 0 ? 0 : clipped / counted,
      seconds: (performance.now() - start) / 1000
    }
  } finally {
    disposeAdamWState(state)
    disposeDeviceLora(device)
  }
}
