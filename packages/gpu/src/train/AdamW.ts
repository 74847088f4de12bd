import * as tf from "@tensorflow/tfjs-core"

/**
 * AdamW (Loshchilov & Hutter) exactly as PyTorch's `torch.optim.AdamW` steps it:
 *
 *     p ← p · (1 − lr·wd)
 *     m ← β1·m + (1 − β1)·g            v ← β2·v + (1 − β2)·g²
 *     p ← p − (lr / (1 − β1ᵗ)) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + ε)
 *
 * Coefficients may be numbers (one model) or tensors broadcastable to a parameter, e.g.
 * `[K, 1, 1]` for K adapters stacked along the first axis, each at its own step, learning rate
 * and clip factor. A stacked slice whose `active` entry is 0 is left exactly as it was
 * (parameter and both moments), so a finished adapter stops while the others go on.
 */

export interface AdamWHyper {
  readonly beta1: number
  readonly beta2: number
  readonly epsilon: number
}

export const defaultAdamW: AdamWHyper = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }

export interface AdamWState {
  readonly m: ReadonlyArray<tf.Variable>
  readonly v: ReadonlyArray<tf.Variable>
}

export const createAdamWState = (params: ReadonlyArray<tf.Tensor>): AdamWState => ({
  m: params.map((p) => tf.tidy(() => tf.variable(tf.zerosLike(p), false))),
  v: params.map((p) => tf.tidy(() => tf.variable(tf.zerosLike(p), false)))
})

export const disposeAdamWState = (state: AdamWState): void => {
  for (const t of state.m) t.dispose()
  for (const t of state.v) t.dispose()
}

export type Coefficient = number | tf.Tensor

export interface AdamWStep {
  readonly learningRate: Coefficient
  /** `1 − β1ᵗ` and `1 − β2ᵗ` for the step `t` (1-based) being taken. */
  readonly biasCorrection1: Coefficient
  readonly biasCorrection2: Coefficient
  /** Multiplies every gradient first (global-norm clipping); 1 when absent. */
  readonly gradScale?: Coefficient | undefined
  /** 1 for slices that step, 0 for slices to leave untouched; all step when absent. */
  readonly active?: tf.Tensor | undefined
}

/** Bias corrections for 1-based step `t`, computed in float64 on the host. */
export const biasCorrections = (hyper: AdamWHyper, t: number) => ({
  biasCorrection1: 1 - Math.pow(hyper.beta1, t),
  biasCorrection2: 1 - Math.pow(hyper.beta2, t)
})

const scale = (x: tf.Tensor, c: Coefficient | undefined): tf.Tensor =>
  c === undefined || (typeof c === "number" && c === 1) ? x : tf.mul(x, c)

/** `next` where active, `previous` elsewhere; exact on both sides when values are finite. */
const blend = (next: tf.Tensor, previous: tf.Tensor, active: tf.Tensor | undefined): tf.Tensor =>
  active === undefined ? next : tf.add(tf.mul(next, active), tf.mul(previous, tf.sub(1, active)))

/**
 * One AdamW step over `params` with `grads` (same order); `weightDecay[i]` is the decay of
 * parameter i (0 for norms and biases in full training). Assigns the new parameters and moments.
 */
export const adamWUpdate = (
  params: ReadonlyArray<tf.Variable>,
  grads: ReadonlyArray<tf.Tensor>,
  state: AdamWState,
  hyper: AdamWHyper,
  weightDecay: ReadonlyArray<Coefficient>,
  step: AdamWStep
): void => {
  tf.tidy(() => {
    const { beta1, beta2, epsilon } = hyper
    const stepSize = typeof step.learningRate === "number" && typeof step.biasCorrection1 === "number"
      ? step.learningRate / step.biasCorrection1
      : tf.div(step.learningRate, step.biasCorrection1)
    const sqrtBc2 = typeof step.biasCorrection2 === "number"
      ? Math.sqrt(step.biasCorrection2)
      : tf.sqrt(step.biasCorrection2)
    params.forEach((p, i) => {
      const g = scale(grads[i]!, step.gradScale)
      const m = state.m[i]!
      const v = state.v[i]!
      const mNext = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1))
      const vNext = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2))
      const wd = weightDecay[i]!
      const decayed = typeof wd === "number" && wd === 0
        ? p
        : typeof wd === "number" && typeof step.learningRate === "number"
        ? tf.mul(p, 1 - step.learningRate * wd)
        : tf.mul(p, tf.sub(1, tf.mul(step.learningRate, wd)))
      const denominator = tf.add(tf.div(tf.sqrt(vNext), sqrtBc2), epsilon)
      const pNext = tf.sub(decayed, tf.mul(tf.div(mNext, denominator), stepSize))
      p.assign(blend(pNext, p, step.active))
      m.assign(blend(mNext, m, step.active))
      v.assign(blend(vNext, v, step.active))
    })
  })
}

/**
 * Sum of squares of all gradients; with `sliceAxes` (e.g. 1 and 2 of `[K, in, r]`) one sum per
 * leading slice, i.e. one per stacked adapter.
 */
export const squaredNorm = (grads: ReadonlyArray<tf.Tensor>, perSlice = false): tf.Tensor =>
  tf.tidy(() => {
    const parts = grads.map((g) =>
      perSlice
        ? tf.sum(tf.square(g), Array.from({ length: g.rank - 1 }, (_, i) => i + 1))
        : tf.sum(tf.square(g))
    )
    return parts.length === 1 ? parts[0]! : tf.addN(parts)
  })

/**
 * PyTorch's `clip_grad_norm_` factor: `min(1, maxNorm / (norm + 1e-6))`; 1 when clipping is off
 * (`maxNorm` undefined, 0 or infinite).
 */
export const clipFactor = (norm: number, maxNorm: number | undefined): number =>
  maxNorm === undefined || !(maxNorm > 0) || !Number.isFinite(maxNorm) ? 1 : Math.min(1, maxNorm / (norm + 1e-6))
