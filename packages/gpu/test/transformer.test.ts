import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll } from "vitest"
import { generate } from "../src/model/Generate.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { disposeTransformerWeights, forward } from "../src/model/Transformer.js"
import { tinyQwen2, weightsOnCpu } from "../src/testing/TinyModel.js"

const config = tinyQwen2({ hiddenSize: 32, intermediateSize: 48, headDim: 8 })

const causalMask = (steps: number) => {
  const mask = new Float32Array(steps * steps)
  for (let t = 0; t < steps; t++) for (let s = 0; s < steps; s++) mask[t * steps + s] = s <= t ? 0 : -1e9
  return tf.tensor4d(mask, [1, 1, steps, steps])
}

/** All-position logits of one sequence without a cache. */
const fullLogits = (w: TransformerWeights, ids: ReadonlyArray<number>): Array<Float32Array> =>
  tf.tidy(() => {
    const steps = ids.length
    const out = forward(w, {
      ids: tf.tensor2d([...ids], [1, steps], "int32"),
      positions: tf.tensor2d(Array.from({ length: steps }, (_, i) => i), [1, steps], "int32"),
      mask: causalMask(steps)
    })
    const values = out.logits.dataSync()
    return Array.from({ length: steps }, (_, t) => values.slice(t * config.vocabSize, (t + 1) * config.vocabSize))
  }) as unknown as Array<Float32Array>

describe("Transformer", () => {
  let weights: TransformerWeights
  beforeAll(async () => {
    // std 0.3 so the random model has sharp, non-uniform logits and greedy choices are stable.
    weights = (await weightsOnCpu(config, 7, 0.3)).weights
    return () => disposeTransformerWeights(weights)
  })

  it("greedy generation with the KV cache matches recomputing every prefix without it", () => {
    const prompt = [1, 5, 9, 3]
    const [row] = generate(weights, [prompt], { maxTokens: 10, temperature: 0 })
    const sequence = [...prompt]
    for (let i = 0; i < 10; i++) {
      const logits = fullLogits(weights, sequence)
      const last = logits[logits.length - 1]!
      sequence.push(last.indexOf(Math.max(...last)))
    }
    expect(row!.tokens).toEqual(sequence.slice(prompt.length))
  })

  it("the cached step's logits equal the full forward's within 1e-5", () => {
    const prompt = [2, 4, 6, 8, 10]
    const seen: Array<Float32Array> = []
    const [row] = generate(weights, [prompt], {
      maxTokens: 3,
      temperature: 0,
      onLogits: (_step, _row, logits) => seen.push(logits.slice())
    })
    const full = fullLogits(weights, [...prompt, ...row!.tokens])
    for (let i = 0; i < 3; i++) {
      const expected = full[prompt.length - 1 + i]!
      const diff = Math.max(...expected.map((v, j) => Math.abs(v - seen[i]![j]!)))
      expect(diff).toBeLessThan(1e-5)
    }
  })

  it("batched generation over prompts of different lengths equals one prompt at a time", () => {
    const prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    const options = { maxTokens: 8, temperature: 0.8, topK: 10, seed: 3 }
    // Rows of a sampled batch draw from their own streams, so compare greedy rows to single prompts.
    const greedyBatch = generate(weights, prompts, { maxTokens: 8, temperature: 0 })
    prompts.forEach((prompt, i) => {
      const [single] = generate(weights, [prompt], { maxTokens: 8, temperature: 0 })
      expect(greedyBatch[i]!.tokens).toEqual(single!.tokens)
    })
    const batched = generate(weights, prompts, options)
    expect(generate(weights, prompts, options)).toEqual(batched)
  })

  it("sampling is reproducible with a seed and varies across seeds", () => {
    const run = (seed: number) =>
      generate(weights, [[1, 2, 3]], { maxTokens: 12, temperature: 1.5, topP: 0.95, seed })[0]!.tokens
    expect(run(11)).toEqual(run(11))
    const distinct = new Set([11, 12, 13, 14, 15].map((s) => run(s).join(",")))
    expect(distinct.size).toBeGreaterThan(1)
  })

  it("the logit mask constrains every chosen token", () => {
    const allowed = new Set([3, 7, 11])
    const [row] = generate(weights, [[1, 2]], {
      maxTokens: 15,
      temperature: 1,
      seed: 5,
      logitMask: ({ logits }) => {
        for (let i = 0; i < logits.length; i++) if (!allowed.has(i)) logits[i] = -Infinity
      }
    })
    expect(row!.tokens.length).toBe(15)
    expect(row!.tokens.every((t) => allowed.has(t))).toBe(true)
  })

  it("stops at EOS, at stop strings and at max tokens", () => {
    const [free] = generate(weights, [[1, 2]], { maxTokens: 6, temperature: 0 })
    expect(free!.finishReason).toBe("length")
    const eos = free!.tokens[2]!
    const [stopped] = generate(weights, [[1, 2]], { maxTokens: 6, temperature: 0, eosId: eos })
    expect(stopped!.finishReason).toBe("eos")
    expect(stopped!.tokens).toEqual(free!.tokens.slice(0, free!.tokens.indexOf(eos)))
    const decode = (ids: ReadonlyArray<number>) => ids.map((i) => `<${i}>`).join("")
    const [cut] = generate(weights, [[1, 2]], {
      maxTokens: 6,
      temperature: 0,
      decode,
      stop: [`<${free!.tokens[1]}>`]
    })
    expect(cut!.finishReason).toBe("stop")
    expect(cut!.text).toBe(`<${free!.tokens[0]}>`)
  })

  it("frees every tensor it makes, after generation and after an error", () => {
    const before = tf.memory().numTensors
    generate(weights, [[1, 2, 3], [4]], { maxTokens: 5, temperature: 0 })
    expect(tf.memory().numTensors).toBe(before)
    expect(() =>
      generate(weights, [[1, 2]], {
        maxTokens: 5,
        temperature: 0,
        logitMask: ({ logits }) => logits.fill(-Infinity)
      })
    ).toThrow(/masked/)
    expect(tf.memory().numTensors).toBe(before)
  })
})
