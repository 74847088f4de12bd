import { deriveSeed, makeRng, shuffleInPlace } from "../model/Sampling.js"
import type { PlannedStep } from "./Trainer.js"

/**
 * Length-bucketed batching for pretraining on documents of very different lengths: padding every
 * row of a batch to its longest wastes most of the compute when a 10-token question shares a
 * batch with a 120-token passage read twice.
 *
 * Per pass: a seeded shuffle, cut into pools of `poolBatches` batches; each pool is sorted by
 * length and cut into batches of `batchSize` documents; the batches of the whole pass are then
 * shuffled, so the model does not see all short documents first. Within a batch, micro-batches
 * hold at most `microBatchTokens` padded tokens (at least one document), which bounds memory.
 */
export interface LengthBucketOptions {
  /** Documents per optimizer step. */
  readonly batchSize: number
  /** Padded tokens per micro-batch (rows × longest row). */
  readonly microBatchTokens: number
  /** Batches per sorting pool (default 32): larger pools pad less but vary batches less. */
  readonly poolBatches?: number | undefined
  readonly seed: number
}

/**
 * One pass over documents `indices` (ids into the training set, whose lengths are `lengths[id]`),
 * as optimizer steps tagged with `epoch`. The seed stream is derived from `options.seed` and
 * `epoch`, so every pass is a different, reproducible order.
 */
export const lengthBucketedPass = (
  indices: ReadonlyArray<number>,
  lengths: ReadonlyArray<number>,
  epoch: number,
  options: LengthBucketOptions
): Array<PlannedStep> => {
  const rng = makeRng(deriveSeed(options.seed, epoch))
  const order = shuffleInPlace([...indices], rng)
  const poolSize = options.batchSize * (options.poolBatches ?? 32)
  const batches: Array<Array<number>> = []
  for (let p = 0; p < order.length; p += poolSize) {
    const pool = order.slice(p, p + poolSize).sort((a, b) => lengths[a]! - lengths[b]! || a - b)
    for (let b = 0; b < pool.length; b += options.batchSize) batches.push(pool.slice(b, b + options.batchSize))
  }
  shuffleInPlace(batches, rng)
  return batches.map((batch) => {
    const microBatches: Array<Array<number>> = []
    let current: Array<number> = []
    let longest = 0
    for (const id of batch) {
      const next = Math.max(longest, lengths[id]!)
      if (current.length > 0 && next * (current.length + 1) > options.microBatchTokens) {
        microBatches.push(current)
        current = []
        longest = 0
      }
      current.push(id)
      longest = Math.max(longest, lengths[id]!)
    }
    if (current.length > 0) microBatches.push(current)
    return { epoch, microBatches }
  })
}

/** Padded tokens a plan pushes through the model (rows × longest row, summed over micro-batches). */
export const paddedTokens = (plan: ReadonlyArray<PlannedStep>, lengths: ReadonlyArray<number>): number =>
  plan.reduce(
    (n, step) =>
      n + step.microBatches.reduce((m, micro) => m + micro.length * Math.max(...micro.map((i) => lengths[i]!)), 0),
    0
  )
