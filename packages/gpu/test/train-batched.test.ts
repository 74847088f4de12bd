import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll } from "vitest"
import type { LoraAdapter, LoraConfig } from "../src/lora/LoraAdapter.js"
import { createLoraAdapter } from "../src/lora/LoraAdapter.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { disposeTransformerWeights } from "../src/model/Transformer.js"
import { tinyQwen2, weightsOnCpu } from "../src/testing/TinyModel.js"
import { trainLoraMany } from "../src/train/BatchedTrainer.js"
import type { TokenizedExample } from "../src/train/Loss.js"
import type { TrainOptions } from "../src/train/Trainer.js"
import { TrainingError, trainLora } from "../src/train/Trainer.js"

const config = tinyQwen2()

const lora: LoraConfig = { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v", "o", "up", "down"] }

/** Seeded token sequences of varying length; the first `prompt` tokens do not count. */
const makeData = (seed: number, count: number): Array<TokenizedExample> => {
  const out: Array<TokenizedExample> = []
  let state = seed
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648)
  for (let i = 0; i < count; i++) {
    const length = 4 + (next() % 9)
    const ids = [1, ...Array.from({ length: length - 1 }, () => 3 + (next() % 35))]
    const prompt = i % 2 === 0 ? 1 : 3
    out.push({ ids, labelMask: ids.map((_, t) => (t >= prompt ? 1 : 0)) })
  }
  return out
}

const maxAbsDiff = (a: LoraAdapter, b: LoraAdapter) => {
  let d = 0
  a.modules.forEach((m, i) => {
    const n = b.modules[i]!
    m.a.data.forEach((v, j) => (d = Math.max(d, Math.abs(v - n.a.data[j]!))))
    m.b.data.forEach((v, j) => (d = Math.max(d, Math.abs(v - n.b.data[j]!))))
  })
  return d
}

describe("batched training of K adapters", () => {
  let weights: TransformerWeights
  beforeAll(async () => {
    weights = (await weightsOnCpu(config, 21, 0.2)).weights
    return () => disposeTransformerWeights(weights)
  })

  it("K = 3 adapters trained in one batch end where 3 separate trainings do (within 1e-4)", () => {
    const adapters = [1, 2, 3].map((seed) =>
      createLoraAdapter(config, { ...lora, alpha: 4 * seed }, { seed, parentModelHash: "p" })
    )
    const datasets = [makeData(1, 5), makeData(2, 3), makeData(3, 7)]
    // Different seeds, learning rates, schedules, batch sizes, accumulation and numbers of
    // steps; adapter 2 also stops early. Finished adapters' rows are masked out of later steps.
    const options: Array<TrainOptions> = [
      { learningRate: 1e-2, batchSize: 2, epochs: 3, seed: 11, weightDecay: 0.01 },
      { learningRate: 2e-2, batchSize: 1, gradientAccumulation: 2, steps: 4, seed: 12, schedule: { kind: "linear" } },
      {
        learningRate: 5e-3,
        batchSize: 2,
        steps: 12,
        seed: 13,
        schedule: { kind: "cosine", warmupSteps: 2 },
        maxGradNorm: 0.5,
        stopWhen: (p) => p.step === 10
      }
    ]
    const before = tf.memory().numTensors
    const batched = trainLoraMany(weights, adapters, datasets, options)
    expect(tf.memory().numTensors).toBe(before)
    const separate = adapters.map((a, k) => trainLora(weights, a, datasets[k]!, options[k]!))
    expect(batched.map((r) => r.steps)).toEqual([9, 4, 10])
    expect(separate.map((r) => r.steps)).toEqual([9, 4, 10])
    expect(batched[2]!.stoppedEarly).toBe(true)
    batched.forEach((r, k) => {
      const s = separate[k]!
      expect(r.adapter.trainedSteps).toBe(s.adapter.trainedSteps)
      expect(r.labelTokens).toBe(s.labelTokens)
      r.losses.forEach((loss, i) => expect(Math.abs(loss - s.losses[i]!)).toBeLessThan(1e-5))
      r.learningRates.forEach((lr, i) => expect(lr).toBe(s.learningRates[i]))
      expect(maxAbsDiff(r.adapter, s.adapter)).toBeLessThan(1e-4)
      // Training moved every adapter well beyond that tolerance.
      expect(maxAbsDiff(r.adapter, adapters[k]!)).toBeGreaterThan(1e-2)
    })
  })

  it("reports progress per adapter and rejects adapters that cannot be stacked", () => {
    const a = createLoraAdapter(config, lora, { seed: 1, parentModelHash: "p" })
    const b = createLoraAdapter(config, { ...lora, rank: 2 }, { seed: 2, parentModelHash: "p" })
    const seen: Array<string> = []
    trainLoraMany(weights, [a, a], [makeData(4, 2), makeData(5, 2)], {
      learningRate: 1e-3,
      steps: 2,
      onStep: (p) => seen.push(`${p.adapter}:${p.step}`)
    })
    expect(seen).toEqual(["0:1", "1:1", "0:2", "1:2"])
    expect(() => trainLoraMany(weights, [a, b], [makeData(4, 2), makeData(5, 2)], { learningRate: 1e-3 })).toThrow(
      TrainingError
    )
    expect(trainLoraMany(weights, [], [], { learningRate: 1e-3 })).toEqual([])
  })
})
