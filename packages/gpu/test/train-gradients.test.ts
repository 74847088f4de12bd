import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import { beforeAll } from "vitest"
import { makeRng } from "../src/model/Sampling.js"
import { differentiableKernels, ensureGradients, reduceTo } from "../src/train/Gradients.js"

/**
 * Each registered backward function against central differences of its own forward. The
 * functions are smooth and the inputs O(1), so float32 differences with h = 1e-2 are accurate to
 * ~1e-4 (truncation h² · f''' and rounding 1e-7 / h); the tolerance is 2e-3 · max(1, |g|).
 */

const h = 1e-2

const random = (shape: Array<number>, seed: number, offset = 0) => {
  const rng = makeRng(seed)
  const size = shape.reduce((a, b) => a * b, 1)
  return tf.tensor(Float32Array.from({ length: size }, () => offset + 2 * rng() - 1), shape)
}

/** Checks d f / d inputs[i] for every input i and every element. */
const check = (f: (...xs: Array<tf.Tensor>) => tf.Tensor, inputs: Array<tf.Tensor>) => {
  // Contract the output with fixed random weights so every output element matters.
  const outShape = tf.tidy(() => f(...inputs).shape)
  const w = random(outShape, 99)
  const scalar = (...xs: Array<tf.Tensor>) => tf.sum(tf.mul(f(...xs), w)) as tf.Scalar
  const grads = tf.grads(scalar)(inputs)
  inputs.forEach((x, i) => {
    const analytic = grads[i]!.dataSync()
    const base = x.dataSync()
    for (let j = 0; j < x.size; j++) {
      const at = (delta: number) =>
        tf.tidy(() => {
          const data = Float32Array.from(base)
          data[j]! += delta
          const moved = inputs.map((y, k) => (k === i ? tf.tensor(data, x.shape) : y))
          return scalar(...moved).dataSync()[0]!
        })
      const numeric = (at(h) - at(-h)) / (2 * h)
      expect(Math.abs(analytic[j]! - numeric)).toBeLessThan(2e-3 * Math.max(1, Math.abs(numeric)))
    }
  })
  tf.dispose([w, ...grads])
}

describe("registered gradients", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu")
    ensureGradients()
  })

  it("cover the kernels of the transformer and the loss", () => {
    for (const k of ["BatchMatMul", "Softmax", "Rsqrt", "Tile", "GatherV2", "SplitV", "Concat", "Mean"]) {
      expect(differentiableKernels).toContain(k)
      expect(tf.getGradient(k)).toBeDefined()
    }
  })

  it("broadcasting binary ops reduce to each input's shape", () => {
    const a = random([2, 3, 4], 1)
    const b = random([3, 1], 2)
    const c = random([1, 4], 3, 3)
    check((x, y) => tf.add(x, y), [a, b])
    check((x, y) => tf.sub(x, y), [a, c])
    check((x, y) => tf.mul(x, y), [a, b])
    check((x, y) => tf.div(x, y), [a, c])
    check((x, y) => tf.div(x, y), [c, random([4], 4, 3)])
    check((x) => tf.mul(x, 3), [b])
    const summed = tf.tidy(() => reduceTo(tf.ones([2, 3, 4]), [3, 1]))
    expect([...summed.dataSync()]).toEqual([8, 8, 8])
    tf.dispose([a, b, c, summed])
  })

  it("matMul in every transpose combination, 2-D, batched and broadcast over the batch", () => {
    const a = random([3, 4], 5)
    const b = random([4, 2], 6)
    check((x, y) => tf.matMul(x, y), [a, b])
    check((x, y) => tf.matMul(x, y, true, false), [random([4, 3], 7), b])
    check((x, y) => tf.matMul(x, y, false, true), [a, random([2, 4], 8)])
    check((x, y) => tf.matMul(x, y, true, true), [random([4, 3], 9), random([2, 4], 10)])
    check((x, y) => tf.matMul(x, y), [random([2, 3, 4], 11), random([2, 4, 2], 12)])
    check((x, y) => tf.matMul(x, y, false, true), [random([2, 2, 3, 4], 13), random([2, 2, 5, 4], 14)])
    check((x, y) => tf.matMul(x, y), [random([1, 3, 4], 15), random([2, 4, 2], 16)])
    tf.dispose([a, b])
  })

  it("unary ops, reductions and softmax", () => {
    const x = random([2, 5], 17)
    const positive = random([2, 5], 18, 2)
    check((v) => tf.neg(v), [x])
    check((v) => tf.square(v), [x])
    check((v) => tf.rsqrt(v), [positive])
    check((v) => tf.exp(v), [x])
    check((v) => tf.log(v), [positive])
    check((v) => tf.sigmoid(v), [x])
    check((v) => tf.softmax(v), [x])
    check((v) => tf.logSoftmax(v), [x])
    check((v) => tf.sum(v, 1), [x])
    check((v) => tf.sum(v), [x])
    check((v) => tf.mean(v, -1, true), [x])
    check((v) => tf.mean(tf.reshape(v, [2, 1, 5]), [0, 2], true), [x])
    check((v) => tf.clone(v), [x])
    check((v, w) => tf.addN([v, w, v]), [x, positive])
    tf.dispose([x, positive])
  })

  it("shape ops: reshape, expandDims, transpose, concat, split, slice, tile, gather", () => {
    const x = random([2, 3, 4], 19)
    check((v) => tf.reshape(v, [6, 4]), [x])
    check((v) => tf.expandDims(v, 1), [x])
    check((v) => tf.transpose(v, [1, 2, 0]), [x])
    check((v, w) => tf.concat([v, w], 1), [x, random([2, 2, 4], 20)])
    check((v) => {
      const [p, q] = tf.split(v, [1, 3], 2)
      return tf.add(tf.sum(p!), tf.sum(tf.square(q!)))
    }, [x])
    check((v) => tf.slice(v, [0, 1, 0], [-1, 2, 3]), [x])
    check((v) => tf.tile(v, [2, 1, 3]), [x])
    check((v) => tf.tile(tf.reshape(v, [2, 3, 1, 4]), [1, 1, 2, 1]), [x])
    const indices = tf.tensor1d([2, 0, 2, 1], "int32")
    check((v) => tf.gather(v, indices), [random([3, 4], 21)])
    check((v) => tf.gather(v, tf.tensor2d([[1, 1], [0, 2]], [2, 2], "int32")), [random([3, 2], 22)])
    tf.dispose([x, indices])
  })
})
