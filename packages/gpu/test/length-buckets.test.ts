import { describe, expect, it } from "@effect/vitest"
import { makeRng } from "../src/model/Sampling.js"
import { lengthBucketedPass, paddedTokens } from "../src/train/LengthBuckets.js"
import type { PlannedStep } from "../src/train/Trainer.js"

/**
 * A skewed length distribution, like the pretraining corpus: mostly short documents (questions,
 * restatements) and a fifth long ones (passages, repeats). Ids 0..count-1.
 */
const skewedLengths = (count: number, seed: number): Array<number> => {
  const rng = makeRng(seed)
  return Array.from({ length: count }, () => rng() < 0.8 ? 4 + Math.floor(rng() * 12) : 80 + Math.floor(rng() * 41))
}

const lengths = skewedLengths(1200, 3)
/** A subset that is not 0..n-1, so a pass that ignored `indices` would show. */
const indices = Array.from({ length: 1000 }, (_, i) => i + 150)

const ids = (plan: ReadonlyArray<PlannedStep>) => plan.flatMap((s) => s.microBatches.flat())
const batchSizes = (plan: ReadonlyArray<PlannedStep>) => plan.map((s) => s.microBatches.flat().length)
const longest = (micro: ReadonlyArray<number>) => Math.max(...micro.map((i) => lengths[i]!))

/** Padding of plain random batching: shuffle, cut into batches, pad each batch to its longest. */
const randomBatchingPadded = (docs: ReadonlyArray<number>, batchSize: number, seed: number): number => {
  const rng = makeRng(seed)
  const order = [...docs]
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  let padded = 0
  for (let b = 0; b < order.length; b += batchSize) {
    const batch = order.slice(b, b + batchSize)
    padded += batch.length * longest(batch)
  }
  return padded
}

describe("lengthBucketedPass", () => {
  const options = { batchSize: 16, microBatchTokens: 512, seed: 7 }

  it("uses every document of the pass exactly once, and only those", () => {
    for (const batchSize of [1, 7, 16, 1000, 5000]) {
      const plan = lengthBucketedPass(indices, lengths, 0, { ...options, batchSize })
      expect([...ids(plan)].sort((a, b) => a - b)).toEqual(indices)
    }
    // Duplicated indices (a document listed twice) are kept twice: the pass is over `indices`.
    const twice = lengthBucketedPass([3, 3, 4], lengths, 0, options)
    expect([...ids(twice)].sort((a, b) => a - b)).toEqual([3, 3, 4])
    expect(lengthBucketedPass([], lengths, 0, options)).toEqual([])
  })

  it("makes batches of batchSize documents, at most one of them short", () => {
    for (const [batchSize, poolBatches] of [[16, undefined], [16, 4], [7, 3], [64, 1]] as const) {
      const plan = lengthBucketedPass(indices, lengths, 2, { ...options, batchSize, poolBatches })
      expect(plan).toHaveLength(Math.ceil(indices.length / batchSize))
      const sizes = batchSizes(plan)
      expect(sizes.every((n) => n <= batchSize)).toBe(true)
      const short = sizes.filter((n) => n < batchSize)
      expect(short.length).toBeLessThanOrEqual(1)
      // 1000 is not a multiple of 7 nor 64, so those passes do have the one short batch.
      if (indices.length % batchSize !== 0) expect(short).toEqual([indices.length % batchSize])
      expect(plan.every((s) => s.epoch === 2)).toBe(true)
    }
  })

  it("keeps every micro-batch within microBatchTokens unless it is a single document", () => {
    for (const microBatchTokens of [1, 50, 200, 512, 4096]) {
      const plan = lengthBucketedPass(indices, lengths, 1, { ...options, microBatchTokens })
      let multiRow = 0
      for (const step of plan) {
        expect(step.microBatches.length).toBeGreaterThan(0)
        for (const micro of step.microBatches) {
          expect(micro.length).toBeGreaterThan(0)
          if (micro.length > 1) {
            multiRow++
            expect(micro.length * longest(micro), `${microBatchTokens}: ${micro}`).toBeLessThanOrEqual(
              microBatchTokens
            )
          }
        }
      }
      // A budget below the shortest document leaves one document per micro-batch.
      if (microBatchTokens === 1) expect(multiRow).toBe(0)
      else expect(multiRow).toBeGreaterThan(0)
      // A budget that holds any whole batch leaves one micro-batch per step.
      if (microBatchTokens === 4096) expect(plan.every((s) => s.microBatches.length === 1)).toBe(true)
    }
    // The budget splits batches: 512 tokens cannot hold 16 long documents.
    const tight = lengthBucketedPass(indices, lengths, 1, options)
    expect(tight.some((s) => s.microBatches.length > 1)).toBe(true)
  })

  it("is reproducible per seed and epoch, and differs across epochs and seeds", () => {
    const a = lengthBucketedPass(indices, lengths, 3, options)
    expect(lengthBucketedPass(indices, lengths, 3, options)).toEqual(a)
    const otherEpoch = lengthBucketedPass(indices, lengths, 4, options)
    expect(ids(otherEpoch)).not.toEqual(ids(a))
    expect(otherEpoch.every((s) => s.epoch === 4)).toBe(true)
    expect(ids(lengthBucketedPass(indices, lengths, 3, { ...options, seed: 8 }))).not.toEqual(ids(a))
    // Not just a reordering of the same batches either.
    const batchSet = (plan: ReadonlyArray<PlannedStep>) =>
      new Set(plan.map((s) => [...s.microBatches.flat()].sort((x, y) => x - y).join(",")))
    const shared = [...batchSet(otherEpoch)].filter((b) => batchSet(a).has(b))
    expect(shared.length).toBeLessThan(a.length / 2)
    // The input is not mutated.
    expect(indices[0]).toBe(150)
    expect(indices[999]).toBe(1149)
  })

  it("does not put all the short documents first", () => {
    const plan = lengthBucketedPass(indices, lengths, 0, { ...options, microBatchTokens: 1 << 20 })
    const means = plan.map((s) => s.microBatches.flat().reduce((n, i) => n + lengths[i]!, 0) / batchSizes([s])[0]!)
    const half = Math.floor(means.length / 2)
    const firstHalfLong = means.slice(0, half).filter((m) => m > 50).length
    const secondHalfLong = means.slice(half).filter((m) => m > 50).length
    expect(firstHalfLong).toBeGreaterThan(0)
    expect(secondHalfLong).toBeGreaterThan(0)
    // Nor sorted by length overall.
    const sorted = [...means].sort((x, y) => x - y)
    expect(means).not.toEqual(sorted)
  })

  it("pads far less than random batching on skewed lengths", () => {
    const batchSize = 16
    const real = indices.reduce((n, i) => n + lengths[i]!, 0)
    // One micro-batch per step, so padding is batch rows x longest, as in random batching.
    const bucketed = paddedTokens(
      lengthBucketedPass(indices, lengths, 0, { batchSize, microBatchTokens: 1 << 20, seed: 1 }),
      lengths
    )
    const random = [1, 2, 3].map((seed) => randomBatchingPadded(indices, batchSize, seed))
    expect(bucketed).toBeGreaterThanOrEqual(real)
    for (const r of random) expect(bucketed).toBeLessThan(0.5 * r)
    // Tiny sorting pools (one batch each) are random batching again: most of the gain is gone.
    const unsorted = paddedTokens(
      lengthBucketedPass(indices, lengths, 0, { batchSize, microBatchTokens: 1 << 20, seed: 1, poolBatches: 1 }),
      lengths
    )
    expect(unsorted).toBeGreaterThan(1.5 * bucketed)
    // Micro-batching never pads more than the whole batch would.
    const micro = paddedTokens(
      lengthBucketedPass(indices, lengths, 0, { batchSize, microBatchTokens: 256, seed: 1 }),
      lengths
    )
    expect(micro).toBeLessThanOrEqual(bucketed)
    expect(micro).toBeGreaterThanOrEqual(real)
  })
})

describe("paddedTokens", () => {
  it("sums rows x longest row over every micro-batch", () => {
    const ls = [3, 5, 7, 2]
    expect(paddedTokens([], ls)).toBe(0)
    expect(paddedTokens([{ epoch: 0, microBatches: [[0, 1], [2]] }], ls)).toBe(2 * 5 + 7)
    expect(
      paddedTokens([{ epoch: 0, microBatches: [[3]] }, { epoch: 1, microBatches: [[3, 0, 2], [1, 3]] }], ls)
    ).toBe(2 + 3 * 7 + 2 * 5)
  })
})
