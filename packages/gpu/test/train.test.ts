import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { beforeAll } from "vitest"
import type { LoraAdapter, LoraConfig } from "../src/lora/LoraAdapter.js"
import { createLoraAdapter, disposeDeviceLora, hashWeights, loraHook, uploadLora } from "../src/lora/LoraAdapter.js"
import * as LoraTrainer from "../src/LoraTrainer.js"
import { generate } from "../src/model/Generate.js"
import { initWeights } from "../src/model/InitWeights.js"
import type { ModelConfig, WeightMap } from "../src/model/ModelConfig.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { createTransformerWeights, disposeTransformerWeights, forward } from "../src/model/Transformer.js"
import { charTokenizer, tinyLanguageModel, tinyLlama, useCpuBackend, weightsOnCpu } from "../src/testing/TinyModel.js"
import type { Tokenizer } from "../src/tokenizer/Tokenizer.js"
import {
  adamWUpdate,
  biasCorrections,
  clipFactor,
  createAdamWState,
  defaultAdamW,
  disposeAdamWState
} from "../src/train/AdamW.js"
import { ensureGradients } from "../src/train/Gradients.js"
import type { TokenizedExample } from "../src/train/Loss.js"
import { batchTensors, buildBatch, causalLmLoss, countLabels, tokenizeExample } from "../src/train/Loss.js"
import { learningRateAt } from "../src/train/Schedule.js"
import type { StepProgress } from "../src/train/Trainer.js"
import { planSteps, trainFull, TrainingError, trainLora } from "../src/train/Trainer.js"

const config = tinyLlama()

const lora: LoraConfig = { rank: 4, alpha: 8, dropout: 0, targets: ["q", "k", "v", "o", "gate", "up", "down"] }

const sentences = ["the cat sat.", "a dog ran far.", "we sing.", "moon and sun.", "blue fish swim.", "hi."]
const dataset: Array<TokenizedExample> = sentences.map((text) => tokenizeExample(charTokenizer, { text }))

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!))
  return d
}

const adapterValues = (a: LoraAdapter) => a.modules.flatMap((m) => [...m.a.data, ...m.b.data])

describe("data and loss", () => {
  beforeAll(async () => {
    await useCpuBackend()
    ensureGradients()
  })

  it("tokenizes text (all tokens count) and prompt/completion (completion only, or all)", () => {
    expect(tokenizeExample(charTokenizer, { text: "ab" })).toEqual({ ids: [1, 3, 4], labelMask: [0, 1, 1] })
    const pc = { prompt: "ab ", completion: "cd" }
    expect(tokenizeExample(charTokenizer, pc)).toEqual({ ids: [1, 3, 4, 29, 5, 6], labelMask: [0, 0, 0, 0, 1, 1] })
    expect(tokenizeExample(charTokenizer, pc, { completionOnly: false }).labelMask).toEqual([0, 1, 1, 1, 1, 1])
    expect(tokenizeExample(charTokenizer, pc, { addEos: true })).toEqual({
      ids: [1, 3, 4, 29, 5, 6, 2],
      labelMask: [0, 0, 0, 0, 1, 1, 1]
    })
    expect(tokenizeExample(charTokenizer, pc, { addBos: false }).labelMask).toEqual([0, 0, 0, 1, 1])
    expect(tokenizeExample(charTokenizer, { text: "abcdef" }, { maxLength: 4 }).ids).toEqual([1, 3, 4, 5])
    // A tokenizer whose joint encoding merges across the seam: the split stays exact.
    const merging: Pick<Tokenizer, "encode" | "eosId"> = {
      eosId: 2,
      encode: (text) => (text === "ab" ? [1, 9] : text === "a" ? [1, 3] : [4])
    }
    expect(tokenizeExample(merging, { prompt: "a", completion: "b" })).toEqual({ ids: [1, 3, 4], labelMask: [0, 0, 1] })
  })

  it("builds right-padded batches: padding is never a target and never attended to", () => {
    const batch = buildBatch([{ ids: [1, 5, 6], labelMask: [1, 1, 1] }, { ids: [1, 7], labelMask: [0, 0] }], {
      padId: 0
    })
    expect([batch.rows, batch.steps, batch.inputTokens, batch.labelTokens]).toEqual([2, 3, 5, 2])
    expect([...batch.ids]).toEqual([1, 5, 6, 1, 7, 0])
    expect([...batch.labelMask]).toEqual([0, 1, 1, 0, 0, 0])
    const m = (b: number, t: number) => [...batch.mask.slice((b * 3 + t) * 3, (b * 3 + t + 1) * 3)]
    expect(m(0, 0)).toEqual([0, -1e9, -1e9])
    expect(m(0, 2)).toEqual([0, 0, 0])
    expect(m(1, 2)).toEqual([0, 0, -1e9])
    expect(countLabels({ ids: [1, 5, 6], labelMask: [1, 1, 1] })).toBe(2)
  })

  it("the loss is the mean next-token cross-entropy over counted targets, matching a host reference", () => {
    const [rows, steps, vocab] = [2, 5, 7]
    const values = Float32Array.from({ length: rows * steps * vocab }, (_, i) => Math.sin(i * 1.7) * 3)
    const ids = [1, 4, 2, 6, 0, 3, 3, 5, 0, 0]
    const mask = [0, 1, 1, 0, 1, 0, 1, 1, 0, 0]
    let total = 0
    let count = 0
    for (let b = 0; b < rows; b++) {
      for (let t = 0; t + 1 < steps; t++) {
        if (mask[b * steps + t + 1] === 0) continue
        const row = values.slice((b * steps + t) * vocab, (b * steps + t + 1) * vocab)
        const max = Math.max(...row)
        const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0))
        total += lse - row[ids[b * steps + t + 1]!]!
        count++
      }
    }
    const expected = total / count
    const run = (logitValues: Float32Array, pick: "oneHot" | "gather") =>
      tf.tidy(() =>
        causalLmLoss(
          tf.tensor3d(logitValues, [rows, steps, vocab]),
          tf.tensor2d(ids, [rows, steps], "int32"),
          tf.tensor2d(mask, [rows, steps]),
          pick
        ).dataSync()[0]!
      )
    expect(run(values, "oneHot")).toBeCloseTo(expected, 5)
    expect(run(values, "gather")).toBeCloseTo(expected, 5)
    // Logits at positions whose next token does not count (and at the last position) do not matter.
    const perturbed = Float32Array.from(values)
    for (const [b, t] of [[0, 2], [0, 4], [1, 2], [1, 3], [1, 4]] as const) {
      for (let v = 0; v < vocab; v++) perturbed[(b * steps + t) * vocab + v] = 100 * Math.cos(v)
    }
    expect(run(perturbed, "oneHot")).toBeCloseTo(expected, 5)
  })

  it("the loss gradient through gather equals the one through oneHot", () => {
    const logits = tf.randomNormal([2, 4, 9], 0, 2, "float32", 3) as tf.Tensor3D
    const ids = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], "int32")
    const mask = tf.tensor2d([0, 1, 1, 1, 0, 0, 1, 1], [2, 4])
    const grad = (pick: "oneHot" | "gather") =>
      tf.grad((x: tf.Tensor) => causalLmLoss(x as tf.Tensor3D, ids, mask, pick))(logits).dataSync()
    expect(maxAbsDiff(grad("oneHot"), grad("gather"))).toBeLessThan(1e-6)
    tf.dispose([logits, ids, mask])
  })
})

describe("schedule and optimizer", () => {
  it("warms up linearly, then stays constant or decays linearly or by cosine", () => {
    const lr = (kind: "constant" | "linear" | "cosine", step: number) =>
      learningRateAt({ kind, warmupSteps: 4, minLearningRate: 0.1 }, 1, step, 14)
    expect([0, 1, 2, 3].map((s) => lr("constant", s))).toEqual([0.2, 0.4, 0.6, 0.8])
    expect(lr("constant", 13)).toBe(1)
    expect(lr("linear", 4)).toBe(1)
    expect(lr("linear", 9)).toBeCloseTo(0.5, 12)
    expect(lr("linear", 13)).toBeCloseTo(0.1, 12)
    expect(lr("cosine", 4)).toBe(1)
    expect(lr("cosine", 9)).toBeCloseTo(0.55, 12)
    expect(lr("cosine", 14)).toBeCloseTo(0.1, 12)
    expect(learningRateAt({ kind: "cosine" }, 2, 0, 10)).toBe(2)
  })

  it("AdamW matches PyTorch's update rule computed in float64, with decoupled decay and bias correction", () => {
    const p0 = [0.5, -1.25, 2, 0.001]
    const grads = [[0.1, -0.2, 0.3, 0], [0.05, 0.4, -0.1, 1e-3], [-0.3, 0.1, 0.2, 2]]
    const [lr, wd] = [0.01, 0.1]
    const { beta1, beta2, epsilon } = defaultAdamW
    const p = [...p0]
    const m = [0, 0, 0, 0]
    const v = [0, 0, 0, 0]
    grads.forEach((g, s) => {
      for (let i = 0; i < 4; i++) {
        p[i] = p[i]! * (1 - lr * wd)
        m[i] = beta1 * m[i]! + (1 - beta1) * g[i]!
        v[i] = beta2 * v[i]! + (1 - beta2) * g[i]! ** 2
        const bc1 = 1 - beta1 ** (s + 1)
        const bc2 = 1 - beta2 ** (s + 1)
        p[i] = p[i]! - (lr / bc1) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + epsilon)
      }
    })
    const param = tf.variable(tf.tensor1d(p0))
    const state = createAdamWState([param])
    grads.forEach((g, s) => {
      const gt = tf.tensor1d(g)
      adamWUpdate([param], [gt], state, defaultAdamW, [wd], {
        learningRate: lr,
        ...biasCorrections(defaultAdamW, s + 1)
      })
      gt.dispose()
    })
    expect(maxAbsDiff(param.dataSync(), p)).toBeLessThan(1e-6)
    disposeAdamWState(state)
    param.dispose()
  })

  it("clips by global norm like clip_grad_norm_", () => {
    expect(clipFactor(10, 1)).toBeCloseTo(0.1, 6)
    expect(clipFactor(0.5, 1)).toBe(1)
    expect(clipFactor(10, undefined)).toBe(1)
    expect(clipFactor(10, 0)).toBe(1)
  })

  it("plans epochs as seeded shuffles, each example once per epoch", () => {
    const plan = planSteps(7, { batchSize: 2, gradientAccumulation: 2, epochs: 2, seed: 1 })
    expect(plan.length).toBe(4)
    for (const epoch of [0, 1]) {
      const seen = plan.filter((p) => p.epoch === epoch).flatMap((p) => p.microBatches.flat())
      expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6])
    }
    expect(plan[1]!.microBatches).toHaveLength(2)
    expect(plan[1]!.microBatches[1]).toHaveLength(1)
    expect(planSteps(7, { batchSize: 2, gradientAccumulation: 2, epochs: 2, seed: 1 })).toEqual(plan)
    expect(planSteps(7, { batchSize: 2, gradientAccumulation: 2, epochs: 2, seed: 2 })).not.toEqual(plan)
    expect(planSteps(3, { steps: 5 }).length).toBe(5)
  })
})

describe("LoRA training", () => {
  let host: WeightMap
  let weights: TransformerWeights
  let fresh: (seed: number, patch?: Partial<LoraConfig>) => LoraAdapter
  beforeAll(async () => {
    const tiny = await weightsOnCpu(config, 11, 0.2)
    host = tiny.host
    weights = tiny.weights
    const parentModelHash = hashWeights(host)
    fresh = (seed, patch = {}) => createLoraAdapter(config, { ...lora, ...patch }, { seed, parentModelHash })
    return () => disposeTransformerWeights(weights)
  })

  const meanLoss = (adapter: LoraAdapter | undefined, examples: ReadonlyArray<TokenizedExample>) => {
    const device = adapter === undefined ? undefined : uploadLora(adapter, false)
    try {
      return tf.tidy(() => {
        const t = batchTensors(buildBatch(examples))
        const logits = forward(weights, { ...t, hook: device === undefined ? undefined : loraHook(device) }).logits
        return causalLmLoss(logits, t.ids, t.labelMask).dataSync()[0]!
      })
    } finally {
      if (device !== undefined) disposeDeviceLora(device)
    }
  }

  it("lowers the loss, reports per-step progress and keeps the adapter's identity", () => {
    const adapter = fresh(1)
    const progress: Array<StepProgress> = []
    const result = trainLora(weights, adapter, dataset, {
      learningRate: 1e-2,
      batchSize: 2,
      epochs: 10,
      schedule: { kind: "cosine", warmupSteps: 2 },
      seed: 5,
      onStep: (p) => progress.push(p)
    })
    expect(result.steps).toBe(30)
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
    expect(progress.map((p) => p.loss)).toEqual(result.losses)
    expect(result.learningRates[0]).toBeCloseTo(1e-2 / 3, 8)
    expect(progress[29]!.epoch).toBe(9)
    expect(meanLoss(result.adapter, dataset)).toBeLessThan(meanLoss(undefined, dataset) - 0.5)
    expect(result.adapter.id).toBe(adapter.id)
    expect(result.adapter.trainedSteps).toBe(30)
    expect(result.tokensPerSecond).toBeGreaterThan(0)
    expect(result.labelTokens).toBe(10 * dataset.reduce((n, e) => n + countLabels(e), 0))
    // The input adapter value is untouched.
    expect(adapter.modules.every((m) => m.b.data.every((x) => x === 0))).toBe(true)
  })

  it("same seed gives the same adapter bit for bit; a different seed differs", () => {
    const options = { learningRate: 5e-3, batchSize: 2, epochs: 2, seed: 7, weightDecay: 0.01 }
    const withDropout = fresh(3, { dropout: 0.1 })
    const a = trainLora(weights, withDropout, dataset, options)
    const b = trainLora(weights, withDropout, dataset, options)
    expect(adapterValues(b.adapter)).toEqual(adapterValues(a.adapter))
    expect(b.losses).toEqual(a.losses)
    const c = trainLora(weights, withDropout, dataset, { ...options, seed: 8 })
    expect(maxAbsDiff(adapterValues(c.adapter), adapterValues(a.adapter))).toBeGreaterThan(1e-4)
  })

  it("keeps the live tensor count flat over 200 steps and frees everything at the end", () => {
    const before = tf.memory().numTensors
    const counts: Array<number> = []
    trainLora(weights, fresh(2, { rank: 2, targets: ["q", "v"] }), dataset.slice(0, 2), {
      learningRate: 1e-3,
      steps: 200,
      seed: 1,
      onStep: () => counts.push(tf.memory().numTensors)
    })
    expect(counts).toHaveLength(200)
    expect(new Set(counts).size).toBe(1)
    expect(tf.memory().numTensors).toBe(before)
  })

  it("gradient accumulation over micro-batches equals one batch of the same examples", () => {
    const base = { learningRate: 1e-2, steps: 4, seed: 3 }
    const big = trainLora(weights, fresh(4), dataset, { ...base, batchSize: 4 })
    const accumulated = trainLora(weights, fresh(4), dataset, { ...base, batchSize: 1, gradientAccumulation: 4 })
    expect(maxAbsDiff(accumulated.losses, big.losses)).toBeLessThan(1e-5)
    expect(maxAbsDiff(adapterValues(accumulated.adapter), adapterValues(big.adapter))).toBeLessThan(1e-4)
  })

  it("stops early when asked", () => {
    const result = trainLora(weights, fresh(1), dataset, {
      learningRate: 1e-2,
      steps: 50,
      stopWhen: (p) => p.step === 7
    })
    expect([result.steps, result.stoppedEarly, result.adapter.trainedSteps]).toEqual([7, true, 7])
  })

  it("a non-finite loss stops training with a typed error naming the step, leaking nothing", () => {
    const broken = new Map(host)
    const norm = host.get("model.layers.1.input_layernorm.weight")!
    broken.set("model.layers.1.input_layernorm.weight", { shape: norm.shape, data: norm.data.map(() => Number.NaN) })
    const bad = createTransformerWeights(config, broken)
    const before = tf.memory().numTensors
    try {
      expect.assertions(4)
      try {
        trainLora(bad, fresh(1), dataset, { learningRate: 1e-2, steps: 3 })
      } catch (e) {
        expect(e).toBeInstanceOf(TrainingError)
        expect((e as TrainingError).reason).toBe("NonFinite")
        expect((e as TrainingError).step).toBe(1)
      }
      expect(tf.memory().numTensors).toBe(before)
    } finally {
      disposeTransformerWeights(bad)
    }
  })

  it("rejects bad options and data with typed errors", () => {
    const reasons = (f: () => unknown) => {
      try {
        f()
        return "ok"
      } catch (e) {
        return (e as TrainingError).reason
      }
    }
    expect(reasons(() => trainLora(weights, fresh(1), [], { learningRate: 1e-3 }))).toBe("NoData")
    expect(reasons(() => trainLora(weights, fresh(1), dataset, { learningRate: 1e-3, batchSize: 0 }))).toBe(
      "BadOptions"
    )
    expect(reasons(() => trainLora(weights, fresh(1), [{ ids: [1, 99], labelMask: [0, 1] }], { learningRate: 1e-3 })))
      .toBe("BadData")
    expect(reasons(() => trainLora(weights, fresh(1), [{ ids: [1, 5], labelMask: [0, 0] }], { learningRate: 1e-3 })))
      .toBe("NoData")
  })
})

describe("full fine-tuning", () => {
  it("trains every weight of a tiny model from scratch (tied embeddings) and lowers the loss", () => {
    const tied: ModelConfig = { ...config, tieEmbeddings: true }
    const start = initWeights(tied, 3)
    const before = tf.memory().numTensors
    const text = tokenizeExample(charTokenizer, { text: "the cat sat on the mat." })
    const result = trainFull(tied, start, [text], { learningRate: 3e-2, steps: 60, weightDecay: 0.1, seed: 1 })
    expect(tf.memory().numTensors).toBe(before)
    expect(result.losses[0]).toBeGreaterThan(3)
    expect(result.losses[59]).toBeLessThan(0.5)
    expect([...result.weights.keys()].sort()).toEqual([...start.keys()].sort())
    for (const [name, t] of start) expect(result.weights.get(name)!.shape).toEqual(t.shape)
    // The trained weights reproduce the sentence greedily from its first letters.
    const trained = createTransformerWeights(tied, result.weights)
    try {
      const [row] = generate(trained, [text.ids.slice(0, 5)], { maxTokens: text.ids.length - 5, temperature: 0 })
      expect(charTokenizer.decode([...text.ids.slice(0, 5), ...row!.tokens])).toBe("the cat sat on the mat.")
    } finally {
      disposeTransformerWeights(trained)
    }
  })
})

describe("windowed full training (checkpoint and resume)", () => {
  const texts = ["the cat sat.", "a dog ran far.", "we sat on a mat.", "cats nap."].map((t) =>
    tokenizeExample(charTokenizer, { text: t })
  )
  const options = {
    learningRate: 1e-2,
    weightDecay: 0.1,
    schedule: { kind: "cosine" as const, warmupSteps: 2, minLearningRate: 1e-3 },
    plan: [
      { epoch: 0, microBatches: [[0, 1], [2]] },
      { epoch: 0, microBatches: [[3]] },
      { epoch: 1, microBatches: [[2, 3]] },
      { epoch: 1, microBatches: [[1], [0]] },
      { epoch: 2, microBatches: [[0, 1, 2, 3]] },
      { epoch: 2, microBatches: [[3, 2]] }
    ]
  }

  it("two windows with the moments carried over equal one uninterrupted run, bit for bit", () => {
    for (const tieEmbeddings of [false, true]) {
      const cfg: ModelConfig = { ...config, tieEmbeddings }
      const start = initWeights(cfg, 5)
      const before = tf.memory().numTensors
      const whole = trainFull(cfg, start, texts, options)
      const first = trainFull(cfg, start, texts, { ...options, endStep: 4 })
      expect(first.nextStep).toBe(4)
      expect(first.steps).toBe(4)
      const second = trainFull(cfg, first.weights, texts, { ...options, startStep: 4, moments: first.moments })
      expect(tf.memory().numTensors).toBe(before)
      expect(second.nextStep).toBe(6)
      expect([...first.losses, ...second.losses]).toEqual(whole.losses)
      expect([...first.learningRates, ...second.learningRates]).toEqual(whole.learningRates)
      for (const [name, t] of whole.weights) expect(second.weights.get(name)!.data).toEqual(t.data)
      for (const [name, t] of whole.moments) expect(second.moments.get(name)!.data).toEqual(t.data)
      // Restarting the second window without the moments is a different run.
      const cold = trainFull(cfg, first.weights, texts, { ...options, startStep: 4 })
      expect(cold.losses[1]).not.toBe(whole.losses[5])
    }
  })

  it("rejects plans and windows that do not fit", () => {
    const reason = (f: () => unknown) => {
      try {
        f()
        return "ok"
      } catch (e) {
        return `${(e as TrainingError).reason}: ${(e as TrainingError).message}`
      }
    }
    const start = initWeights(config, 5)
    expect(reason(() => trainFull(config, start, texts, { ...options, plan: [{ epoch: 0, microBatches: [[7]] }] })))
      .toMatch(/BadOptions: .*example 7/)
    expect(reason(() => trainFull(config, start, texts, { ...options, startStep: 6 }))).toMatch(/BadOptions: .*past/)
    expect(reason(() => trainFull(config, start, texts, { ...options, startStep: 2, endStep: 2 }))).toMatch(
      /BadOptions: .*endStep/
    )
    expect(reason(() => trainFull(config, start, texts, { ...options, startStep: 1, moments: new Map() }))).toMatch(
      /BadOptions: .*exp_avg/
    )
  })
})

describe("LoraTrainer service", () => {
  it.effect("creates, tokenizes and trains through the Effect API, with typed failures", () =>
    Effect.gen(function*() {
      const host = initWeights(config, 11, 0.2)
      const program = Effect.gen(function*() {
        const trainer = yield* LoraTrainer.LoraTrainer
        expect(trainer.parentModelHash).toBe(hashWeights(host))
        const adapter = yield* trainer.createAdapter(lora, { seed: 1, createdAtStep: 3 })
        expect(adapter.createdAtStep).toBe(3)
        const bad = yield* Effect.flip(trainer.createAdapter({ ...lora, rank: 0 }, { seed: 1 }))
        expect(bad._tag).toBe("LoraConfigError")
        const data = [{ prompt: "the cat ", completion: "sat." }, { text: "we sing." }]
        const result = yield* trainer.train(adapter, data, { learningRate: 1e-2, steps: 3 })
        expect(result.steps).toBe(3)
        const [one, two] = yield* trainer.trainMany([adapter, adapter], [data, data.slice(1)], {
          learningRate: 1e-2,
          steps: 2
        })
        expect([one!.steps, two!.steps]).toEqual([2, 2])
        const foreign = { ...adapter, parentModelHash: "another-model" }
        const mismatch = yield* Effect.flip(trainer.train(foreign, data, { learningRate: 1e-2, steps: 1 }))
        expect(mismatch._tag === "TrainingError" && mismatch.reason).toBe("Incompatible")
        const empty = yield* Effect.flip(trainer.train(adapter, [], { learningRate: 1e-2 }))
        expect(empty._tag === "TrainingError" && empty.reason).toBe("NoData")
      })
      yield* program.pipe(Effect.provide(LoraTrainer.layer.pipe(Layer.provide(tinyLanguageModel(config, host)))))
    }))

  it.effect("layerTest gives consumers a trainer without tensors", () =>
    Effect.gen(function*() {
      const trainer = yield* LoraTrainer.LoraTrainer
      const adapter = yield* trainer.createAdapter(lora, { seed: 4 })
      const seen: Array<number> = []
      const result = yield* trainer.train(adapter, [{ text: "x" }, { text: "y" }], {
        learningRate: 1e-3,
        epochs: 2,
        onStep: (p) => seen.push(p.loss)
      })
      expect(result.steps).toBe(4)
      expect(seen).toEqual([2, 1, 2 / 3, 0.5])
      expect(result.adapter.trainedSteps).toBe(4)
      expect(result.adapter.parentModelHash).toBe("test-model")
    }).pipe(Effect.provide(LoraTrainer.layerTest())))
})

describe("LoRA training on the wasm backend", () => {
  it("same seed gives the same adapter bit for bit there too", async () => {
    await import("@tensorflow/tfjs-backend-wasm")
    const { registerWasmKernels } = await import("../src/wasm/WasmKernels.js")
    await tf.setBackend("wasm")
    registerWasmKernels()
    const host = initWeights(config, 11, 0.2)
    const weights = createTransformerWeights(config, host)
    try {
      const adapter = createLoraAdapter(config, { ...lora, dropout: 0.1 }, {
        seed: 3,
        parentModelHash: hashWeights(host)
      })
      const options = { learningRate: 5e-3, batchSize: 2, epochs: 2, seed: 7, weightDecay: 0.01 }
      const a = trainLora(weights, adapter, dataset, options)
      const b = trainLora(weights, adapter, dataset, options)
      expect(a.adapter.modules.some((m) => m.b.data.some((x) => x !== 0))).toBe(true)
      expect(adapterValues(b.adapter)).toEqual(adapterValues(a.adapter))
      expect(b.losses).toEqual(a.losses)
    } finally {
      disposeTransformerWeights(weights)
      await useCpuBackend()
    }
  })
})
