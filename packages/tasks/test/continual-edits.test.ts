import { describe, expect, it } from "@effect/vitest"
import { hashWeights } from "@seal/gpu/lora/LoraAdapter"
import { initWeights } from "@seal/gpu/model/InitWeights"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import { memoryCheckpoint, tinyLlama } from "@seal/gpu/testing/TinyModel"
import { Effect, Schema } from "effect"
import { backwardTransfer, continualEdits } from "../src/knowledge/ContinualEdits.js"
import type { KnowledgeContext } from "../src/knowledge/InnerLoop.js"
import { InnerLoopConfig } from "../src/knowledge/InnerLoop.js"
import { charFormat } from "./support/CharFormat.js"

describe("backwardTransfer", () => {
  it("is the mean over earlier passages of (final - just edited)", () => {
    expect(backwardTransfer([])).toBe(0)
    expect(backwardTransfer([[0.75]])).toBe(0)
    expect(backwardTransfer([[1], [0.5, 1]])).toBe(-0.5)
    expect(backwardTransfer([[0], [1, 0]])).toBe(1)
    // Only the last row and the diagonal count: ((0 - 1) + (1 - 0.5)) / 2.
    expect(backwardTransfer([[1], [0.5, 0.5], [0, 1, 0.25]])).toBe(-0.25)
    expect(backwardTransfer([[1], [0, 0.5], [0.5, 0.5, 0.25], [0.25, 1, 0, 1]])).toBeCloseTo(
      ((0.25 - 1) + (1 - 0.5) + (0 - 0.25)) / 3,
      12
    )
  })
})

const config = tinyLlama({ hiddenSize: 32, intermediateSize: 64, headDim: 8 })

const contexts: ReadonlyArray<KnowledgeContext> = [
  { title: "zed", context: "zed is blue.", questions: [{ question: "zed is ", answer: "blue" }] },
  {
    title: "pair",
    context: "ann got gold. bob got tin.",
    questions: [{ question: "ann got ", answer: "gold" }, { question: "bob got ", answer: "tin" }]
  },
  { title: "kim", context: "kim has six.", questions: [{ question: "kim has ", answer: "six" }] }
]

// A question is asked at the start of a sequence, so each fact needs a sequence of its own.
const selfEdits = ["", "ann got gold.\nbob got tin.", ""]

const innerLoop = Schema.decodeSync(InnerLoopConfig)({ rank: 4, alpha: 8, learningRate: 1e-2, steps: 30 })

const numTensors = Effect.map(Effect.flatMap(TensorRuntime.TensorRuntime, (r) => r.info), (i) => i.numTensors)

describe("continualEdits on a real tiny model", () => {
  it.effect("returns a lower-triangular accuracy matrix with its summaries, leaving no tensors behind", () =>
    Effect.gen(function*() {
      const weights = initWeights(config, 3, 0.2)
      const checkpoint = memoryCheckpoint(config, weights)
      const hash = hashWeights(weights)
      const before = yield* numTensors
      const result = yield* continualEdits(checkpoint, contexts, selfEdits, charFormat, innerLoop, 11)
      expect(yield* numTensors).toBe(before)
      // The checkpoint's weights are not modified in place.
      expect(hashWeights(checkpoint.weights)).toBe(hash)
      expect(checkpoint.weights).toBe(weights)

      const { matrix } = result
      expect(matrix.map((row) => row.length)).toEqual([1, 2, 3])
      for (const row of matrix) {
        row.forEach((value, j) => {
          expect(value).toBeGreaterThanOrEqual(0)
          expect(value).toBeLessThanOrEqual(1)
          // A share of the passage's questions.
          const total = contexts[j]!.questions.length
          expect(Math.abs(value * total - Math.round(value * total))).toBeLessThan(1e-9)
        })
      }
      // Each edit taught its passage.
      const diagonal = matrix.map((row, i) => row[i]!)
      expect(diagonal).toEqual([1, 1, 1])
      expect(result.meanJustEdited).toBeCloseTo(diagonal.reduce((a, b) => a + b, 0) / 3, 12)
      const last = matrix[2]!
      expect(result.meanFinal).toBeCloseTo(last.reduce((a, b) => a + b, 0) / 3, 12)
      expect(result.backwardTransfer).toBeCloseTo(backwardTransfer(matrix), 12)
      expect(result.backwardTransfer).toBeCloseTo(((last[0]! - diagonal[0]!) + (last[1]! - diagonal[1]!)) / 2, 12)
      expect(result.seconds).toBeGreaterThan(0)

      // The same seed reproduces the run; a single passage has no backward transfer.
      const again = yield* continualEdits(checkpoint, contexts, selfEdits, charFormat, innerLoop, 11)
      expect(again.matrix).toEqual(matrix)
      const one = yield* continualEdits(checkpoint, contexts.slice(0, 1), [""], charFormat, innerLoop, 11)
      expect(one.matrix).toEqual([[matrix[0]![0]!]])
      expect([one.backwardTransfer, one.meanJustEdited, one.meanFinal]).toEqual([0, 1, 1])
      expect(yield* numTensors).toBe(before)
    }).pipe(Effect.provide(TensorRuntime.layer({ backend: "cpu" }))))

  it.effect("without learning the matrix is what the base model knows: nothing", () =>
    Effect.gen(function*() {
      const checkpoint = memoryCheckpoint(config, initWeights(config, 3, 0.2))
      // A learning rate too small to move anything: the 1s above come from the edits.
      const frozen = Schema.decodeSync(InnerLoopConfig)({ ...innerLoop, learningRate: 1e-12, steps: 1 })
      const untouched = yield* continualEdits(checkpoint, contexts, ["", "", ""], charFormat, frozen, 11)
      expect(untouched.matrix).toEqual([[0], [0, 0], [0, 0, 0]])
      expect([untouched.meanJustEdited, untouched.meanFinal, untouched.backwardTransfer]).toEqual([0, 0, 0])
    }).pipe(Effect.provide(TensorRuntime.layer({ backend: "cpu" }))))
})
