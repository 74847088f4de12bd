import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"
import { beforeAll } from "vitest"
import { encodeError } from "../src/EncodedError.js"
import { initWeights } from "../src/model/InitWeights.js"
import type { ModelConfig } from "../src/model/ModelConfig.js"
import { charTokenizer, tinyLlama, useCpuBackend } from "../src/testing/TinyModel.js"
import {
  dataParallelStepTrainer,
  type FullStepTrainer,
  localStepTrainer,
  type PortableTrainOptions
} from "../src/train/DataParallel.js"
import { ensureGradients } from "../src/train/Gradients.js"
import { tokenizeExample } from "../src/train/Loss.js"
import { makeSharedReduce, ReduceAborted, sharedExchange } from "../src/train/SharedReduce.js"
import { trainFull, TrainingError } from "../src/train/Trainer.js"

const texts = ["the cat sat.", "a dog ran far.", "we sat on a mat.", "cats nap.", "blue fish swim.", "hi.", "moon"]
  .map((text) => tokenizeExample(charTokenizer, { text }))

// Steps of 1 to 3 micro-batches of 1-2 examples: with 2 or 3 replicas, some replicas have no
// micro-batch in some steps.
const options: PortableTrainOptions = {
  learningRate: 1e-2,
  weightDecay: 0.1,
  schedule: { kind: "cosine", warmupSteps: 2, minLearningRate: 1e-3 },
  plan: [
    { epoch: 0, microBatches: [[0, 1], [2], [3, 4]] },
    { epoch: 0, microBatches: [[5, 6], [0]] },
    { epoch: 0, microBatches: [[1]] },
    { epoch: 1, microBatches: [[2, 3], [4, 5], [6]] },
    { epoch: 1, microBatches: [[0], [1, 2]] }
  ]
}

/** Trains the whole plan in windows [0, 2), [2, 5) and returns the losses and the final state. */
const runWindows = (trainer: FullStepTrainer) =>
  Effect.gen(function*() {
    const first = yield* trainer.train(0, 2)
    const second = yield* trainer.train(2, 5)
    expect([first.nextStep, second.nextStep]).toEqual([2, 5])
    const steps = [...first.steps, ...second.steps]
    return { steps, state: yield* trainer.state }
  })

describe("data-parallel full training", () => {
  beforeAll(async () => {
    await useCpuBackend()
    ensureGradients()
  })

  it.scoped(
    "equals one process bit for bit, for 2 and 3 worker threads, windows and moments carried",
    () =>
      Effect.gen(function*() {
        for (const tieEmbeddings of [false, true]) {
          const config: ModelConfig = { ...tinyLlama(), tieEmbeddings }
          const initial = { weights: initWeights(config, 5), moments: undefined }
          const before = tf.memory().numTensors
          const local = yield* runWindows(localStepTrainer({ config, examples: texts, options, initial }))
          expect(tf.memory().numTensors).toBe(before)
          // The windows equal one uninterrupted in-process call.
          const whole = trainFull(config, initial.weights, texts, options)
          expect(local.steps.map((s) => s.loss)).toEqual(whole.losses)
          for (const workers of [2, 3]) {
            const trainer = yield* dataParallelStepTrainer({
              config,
              examples: texts,
              options,
              initial,
              workers,
              backend: "cpu"
            })
            expect(trainer.replicas).toBe(workers)
            const parallel = yield* runWindows(trainer)
            expect(parallel.steps).toEqual(
              local.steps.map((s) => ({ ...s, elapsedMs: parallel.steps[s.step - 1]!.elapsedMs }))
            )
            for (const [name, t] of local.state.weights) {
              expect(parallel.state.weights.get(name)!.data, `${workers} ${name}`).toEqual(t.data)
            }
            for (const [name, t] of local.state.moments!) {
              expect(parallel.state.moments!.get(name)!.data, `${workers} ${name}`).toEqual(t.data)
            }
          }
        }
      }),
    120_000
  )

  it.scoped(
    "a replica's TrainingError comes back as itself; bad worker counts are refused",
    () =>
      Effect.gen(function*() {
        const config = tinyLlama()
        const trainer = yield* dataParallelStepTrainer({
          config,
          examples: texts,
          options,
          // Moments that do not match the model: every replica refuses them before training.
          initial: { weights: initWeights(config, 5), moments: new Map() },
          workers: 2,
          backend: "cpu"
        })
        const error = yield* Effect.flip(trainer.train(1, 3))
        expect(error).toBeInstanceOf(TrainingError)
        expect(error.reason).toBe("BadOptions")
        expect(error.detail).toMatch(/exp_avg/)
        const zero = yield* Effect.flip(dataParallelStepTrainer({
          config,
          examples: texts,
          options,
          initial: { weights: initWeights(config, 5), moments: undefined },
          workers: 0,
          backend: "cpu"
        }))
        expect(zero.reason).toBe("BadOptions")
      }),
    60_000
  )

  // Where @tensorflow/tfjs-node is installed its backend starts, and there is nothing to see.
  const hasTfjsNode = (() => {
    try {
      createRequire(import.meta.url).resolve("@tensorflow/tfjs-node")
      return true
    } catch {
      return false
    }
  })()
  it.scoped.skipIf(hasTfjsNode)(
    "a backend that cannot start in a worker fails the start, naming it",
    () =>
      Effect.gen(function*() {
        const config = tinyLlama()
        const error = yield* Effect.flip(dataParallelStepTrainer({
          config,
          examples: texts,
          options,
          initial: { weights: initWeights(config, 5), moments: undefined },
          workers: 2,
          backend: "node"
        }))
        expect(error.reason).toBe("Backend")
        expect(error.detail).toMatch(/backend node did not start/)
      }),
    60_000
  )
})

describe("SharedReduce", () => {
  it("returns every replica's vectors in micro-batch order, alternating buffers by step", () => {
    // One replica: the barrier passes at once, and what was written comes back in slot order.
    const buffers = makeSharedReduce(1, 3, 4)
    const { exchange } = sharedExchange(buffers)
    const v = (x: number) => Float32Array.from([x, x + 1, x + 2, x + 3])
    const out = exchange(0, new Map([[2, v(20)], [0, v(0)], [1, v(10)]]), 3).map((a) => [...a])
    expect(out).toEqual([[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]])
    // Step 1 writes the other set: step 0's values stay readable.
    exchange(1, new Map([[0, v(100)]]), 1)
    expect([...exchange(2, new Map(), 1)[0]!]).toEqual([0, 1, 2, 3])
    expect(() => exchange(3, new Map([[0, v(1)]]), 4)).toThrow(/4 micro-batches/)
    expect(() => exchange(3, new Map([[0, Float32Array.from([1])]]), 1)).toThrow(/1 values/)
  })

  it("a replica waiting at the barrier stops with ReduceAborted when the coordinator aborts", async () => {
    const buffers = makeSharedReduce(2, 1, 1)
    // The abort comes from another thread: this one blocks in Atomics.wait.
    const aborter = new Worker(
      `const { workerData } = require("node:worker_threads")
       setTimeout(() => {
         const control = new Int32Array(workerData)
         Atomics.store(control, 2, 1); Atomics.add(control, 1, 1); Atomics.notify(control, 1)
       }, 200)`,
      { eval: true, workerData: buffers.control }
    )
    try {
      let thrown: unknown
      try {
        sharedExchange(buffers).exchange(0, new Map([[0, Float32Array.from([1])]]), 1)
      } catch (e) {
        thrown = e
      }
      expect(thrown).toBeInstanceOf(ReduceAborted)
      // The coordinator tells such a replica from the one that failed by this tag, across threads.
      expect(encodeError(thrown)).toMatchObject({ tag: "ReduceAborted", message: /another replica failed/ })
    } finally {
      await aborter.terminate()
    }
  })
})
