import * as tf from "@tensorflow/tfjs-core"
import type { Tokenizer } from "../tokenizer/Tokenizer.js"

/**
 * Training data and the causal language-modelling loss.
 *
 * An example is token ids plus a label mask: `labelMask[t] = 1` means token t is a target, i.e.
 * the logits at t-1 are scored against it. Position 0 is never a target (nothing precedes it).
 * Batches are right-padded; padding is never a target and never attended to.
 */

export interface TextExample {
  readonly text: string
}

export interface PromptCompletionExample {
  readonly prompt: string
  readonly completion: string
}

export type Example = TextExample | PromptCompletionExample

export interface TokenizedExample {
  readonly ids: ReadonlyArray<number>
  /** 1 where the token is a training target, 0 elsewhere; same length as `ids`. */
  readonly labelMask: ReadonlyArray<number>
}

export interface TokenizeOptions {
  /** Prepend BOS (default true). */
  readonly addBos?: boolean | undefined
  /** Append the tokenizer's EOS as a target (default false). */
  readonly addEos?: boolean | undefined
  /** For prompt/completion examples, count only completion tokens (default true). */
  readonly completionOnly?: boolean | undefined
  /** Keep at most this many tokens (the rest of a long example is cut off). */
  readonly maxLength?: number | undefined
}

/**
 * Tokenizes one example. A prompt/completion pair is encoded as one text, so the tokens at the
 * seam are the ones the model sees at inference; if the seam merges across the boundary (the
 * joint encoding does not start with the prompt's), the two are encoded separately instead so
 * that the prompt/completion split stays exact.
 */
export const tokenizeExample = (
  tokenizer: Pick<Tokenizer, "encode" | "eosId">,
  example: Example,
  options: TokenizeOptions = {}
): TokenizedExample => {
  const addBos = options.addBos ?? true
  let ids: Array<number>
  let firstTarget: number
  if ("text" in example) {
    ids = tokenizer.encode(example.text, { addBos })
    firstTarget = 1
  } else {
    const prompt = tokenizer.encode(example.prompt, { addBos })
    const joint = tokenizer.encode(example.prompt + example.completion, { addBos })
    const prefixMatches = joint.length > prompt.length && prompt.every((id, i) => joint[i] === id)
    ids = prefixMatches ? joint : [...prompt, ...tokenizer.encode(example.completion, { addBos: false })]
    firstTarget = (options.completionOnly ?? true) ? prompt.length : 1
  }
  if (options.addEos === true && tokenizer.eosId !== undefined) ids.push(tokenizer.eosId)
  if (options.maxLength !== undefined && ids.length > options.maxLength) ids = ids.slice(0, options.maxLength)
  return { ids, labelMask: ids.map((_, t) => (t >= Math.max(1, firstTarget) ? 1 : 0)) }
}

/** Targets an example contributes to the loss (labels at positions >= 1). */
export const countLabels = (example: TokenizedExample): number => {
  let n = 0
  for (let t = 1; t < example.ids.length; t++) n += example.labelMask[t]! > 0 ? 1 : 0
  return n
}

/** A right-padded batch on the host, ready to upload. */
export interface Batch {
  readonly rows: number
  readonly steps: number
  /** `[rows, steps]`, padding = `padId`. */
  readonly ids: Int32Array
  /** `[rows, steps]`, 0..steps-1 in every row. */
  readonly positions: Int32Array
  /** `[rows, steps]`, 0 on padding and at position 0. */
  readonly labelMask: Float32Array
  /** `[rows, 1, steps, steps]` additive: 0 where the key is causal and not padding, -1e9 elsewhere. */
  readonly mask: Float32Array
  readonly lengths: Int32Array
  /** Non-padding tokens. */
  readonly inputTokens: number
  /** Counted targets. */
  readonly labelTokens: number
}

const maskedOut = -1e9

/**
 * Stacks examples into one right-padded batch. An `undefined` row is all padding with no
 * targets (a placeholder that keeps row blocks aligned in batched training). `steps` is the
 * longest row, or `minSteps` if larger.
 */
export const buildBatch = (
  rows: ReadonlyArray<TokenizedExample | undefined>,
  options: { readonly padId?: number | undefined; readonly minSteps?: number | undefined } = {}
): Batch => {
  const padId = options.padId ?? 0
  const steps = Math.max(1, options.minSteps ?? 1, ...rows.map((r) => r?.ids.length ?? 0))
  const n = rows.length
  const ids = new Int32Array(n * steps).fill(padId)
  const positions = new Int32Array(n * steps)
  const labelMask = new Float32Array(n * steps)
  const mask = new Float32Array(n * steps * steps).fill(maskedOut)
  const lengths = new Int32Array(n)
  let inputTokens = 0
  let labelTokens = 0
  rows.forEach((row, b) => {
    const length = row?.ids.length ?? 0
    lengths[b] = length
    inputTokens += length
    for (let t = 0; t < steps; t++) {
      positions[b * steps + t] = t
      if (t < length) {
        ids[b * steps + t] = row!.ids[t]!
        if (t > 0 && row!.labelMask[t]! > 0) {
          labelMask[b * steps + t] = 1
          labelTokens++
        }
      }
      // Padding rows (past `length`) still see the real keys so their softmax stays finite.
      const visible = Math.min(t + 1, Math.max(length, 1))
      const base = (b * steps + t) * steps
      for (let s = 0; s < visible; s++) mask[base + s] = 0
    }
  })
  return { rows: n, steps, ids, positions, labelMask, mask, lengths, inputTokens, labelTokens }
}

export interface BatchTensors {
  readonly ids: tf.Tensor2D
  readonly positions: tf.Tensor2D
  readonly labelMask: tf.Tensor2D
  readonly mask: tf.Tensor4D
}

/** Uploads a batch (the caller disposes, or runs this inside `tf.tidy`). */
export const batchTensors = (batch: Batch): BatchTensors => ({
  ids: tf.tensor2d(batch.ids, [batch.rows, batch.steps], "int32"),
  positions: tf.tensor2d(batch.positions, [batch.rows, batch.steps], "int32"),
  labelMask: tf.tensor2d(batch.labelMask, [batch.rows, batch.steps], "float32"),
  mask: tf.tensor4d(batch.mask, [batch.rows, 1, batch.steps, batch.steps], "float32")
})

/**
 * How the target's log-probability is picked out of `[N, V]`: `oneHot` multiplies by a one-hot
 * matrix and sums (runs on every backend, costs one extra `[N, V]` tensor); `gather` gathers the
 * N entries from the flattened log-probabilities (less memory, but its gradient is
 * UnsortedSegmentSum, which the wasm backend only has once our kernel override registers it).
 */
export type PickMethod = "oneHot" | "gather"

/**
 * `[B, T]` weighted negative log-likelihoods: entry (b, t) is `-log p(ids[b, t+1] | ids[b, ..t])`
 * times `labelMask[b, t+1]`; the last column is 0 (there is no next token). The shift happens
 * on the integer inputs, so the gradient flows through the logits untouched by slicing.
 */
export const nextTokenNll = (
  logits: tf.Tensor3D,
  ids: tf.Tensor2D,
  labelMask: tf.Tensor2D,
  pick: PickMethod = "oneHot"
): tf.Tensor2D =>
  tf.tidy(() => {
    const [rows, steps, vocab] = logits.shape
    if (steps < 2) return tf.zeros([rows, steps]) as tf.Tensor2D
    const shift = <T extends tf.Tensor2D>(x: T) =>
      tf.concat([tf.slice(x, [0, 1], [rows, steps - 1]), tf.zeros([rows, 1], x.dtype)], 1)
    const targets = tf.reshape(shift(ids), [-1])
    const weights = shift(labelMask)
    const logp = tf.logSoftmax(tf.reshape(logits, [rows * steps, vocab]))
    const picked = pick === "oneHot"
      ? tf.sum(tf.mul(logp, tf.oneHot(targets as tf.Tensor1D, vocab)), -1)
      : tf.gather(
        tf.reshape(logp, [-1]),
        tf.add(tf.mul(tf.range(0, rows * steps, 1, "int32"), tf.scalar(vocab, "int32")), targets)
      )
    return tf.mul(tf.neg(tf.reshape(picked, [rows, steps])), weights) as tf.Tensor2D
  })

/** Mean next-token cross-entropy over the counted targets (0 when nothing counts). */
export const causalLmLoss = (
  logits: tf.Tensor3D,
  ids: tf.Tensor2D,
  labelMask: tf.Tensor2D,
  pick: PickMethod = "oneHot"
): tf.Scalar =>
  tf.tidy(() => {
    const count = tf.sum(tf.slice(labelMask, [0, 1], [-1, -1]))
    return tf.div(tf.sum(nextTokenNll(logits, ids, labelMask, pick)), tf.maximum(count, 1)) as tf.Scalar
  })
