import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll } from "vitest"
import { generate } from "../src/model/Generate.js"
import { targetNll } from "../src/model/Score.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { disposeTransformerWeights } from "../src/model/Transformer.js"
import { tinyQwen2, weightsOnCpu } from "../src/testing/TinyModel.js"

const config = tinyQwen2({ hiddenSize: 32, intermediateSize: 48, headDim: 8 })

const logSoftmaxAt = (logits: Float32Array, index: number): number => {
  const max = Math.max(...logits)
  const sum = logits.reduce((a, x) => a + Math.exp(x - max), 0)
  return logits[index]! - max - Math.log(sum)
}

describe("targetNll", () => {
  let weights: TransformerWeights
  beforeAll(async () => {
    weights = (await weightsOnCpu(config, 11, 0.3)).weights
    return () => disposeTransformerWeights(weights)
  })

  it("is the sum of the generator's own -log p over the targets, whatever the batching", () => {
    const prompts = [[1, 5, 9, 3], [1, 7], [1, 2, 4, 8, 16, 3]]
    // Sampled continuations, with the logits each token was drawn from.
    const recorded = new Map<string, Float32Array>()
    const rows = generate(weights, prompts, {
      maxTokens: 6,
      temperature: 1,
      seed: 3,
      onLogits: (step, row, logits) => void recorded.set(`${row}/${step}`, logits.slice())
    })
    const truth = rows.map((row, r) =>
      row.tokens.reduce((a, token, step) => a - logSoftmaxAt(recorded.get(`${r}/${step}`)!, token), 0)
    )
    const examples = prompts.map((prompt, r) => ({
      ids: [...prompt, ...rows[r]!.tokens],
      labelMask: [...prompt.map(() => 0), ...rows[r]!.tokens.map(() => 1)]
    }))
    const before = tf.memory().numTensors
    const together = targetNll(weights, examples)
    const oneByOne = targetNll(weights, examples, { rowsPerPass: 1 })
    expect(tf.memory().numTensors).toBe(before)
    together.forEach((nll, r) => {
      expect(rows[r]!.tokens.length).toBeGreaterThan(0)
      expect(nll).toBeCloseTo(truth[r]!, 3)
      expect(oneByOne[r]!).toBeCloseTo(nll, 4)
    })
    // No targets, no loss; a longer target list costs more.
    expect(targetNll(weights, [{ ids: [1, 2, 3], labelMask: [0, 0, 0] }])[0]).toBe(0)
  })

  it("refuses an example longer than the context and a bad rowsPerPass", () => {
    const long = Array.from({ length: config.maxPositions + 1 }, () => 3)
    expect(() => targetNll(weights, [{ ids: long, labelMask: long.map(() => 1) }])).toThrow(/context holds/)
    expect(() => targetNll(weights, [], { rowsPerPass: 0 })).toThrow(/rowsPerPass/)
  })
})
