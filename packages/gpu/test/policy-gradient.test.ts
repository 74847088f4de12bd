import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { afterAll, beforeAll } from "vitest"
import type { LoraAdapter, LoraConfig } from "../src/lora/LoraAdapter.js"
import { createLoraAdapter, disposeDeviceLora, hashWeights, loraHook, uploadLora } from "../src/lora/LoraAdapter.js"
import { makeRng } from "../src/model/Sampling.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { disposeTransformerWeights, forward } from "../src/model/Transformer.js"
import { encodeChars, tinyLlama, weightsOnCpu } from "../src/testing/TinyModel.js"
import { clipFactor } from "../src/train/AdamW.js"
import { ensureGradients } from "../src/train/Gradients.js"
import { batchTensors, buildBatch, nextTokenNll } from "../src/train/Loss.js"
import { type PolicyGradientOptions, type PolicySample, trainPolicyGradient } from "../src/train/PolicyGradient.js"
import { TrainingError } from "../src/train/Trainer.js"

const config = tinyLlama()

/** `charTokenizer` ids: BOS 1, then the prompt and the completion. */
const sample = (prompt: string, completion: string, advantage: number): PolicySample => ({
  ids: [1, ...encodeChars(prompt), ...encodeChars(completion)],
  completionStart: 1 + prompt.length,
  advantage
})

const lora: LoraConfig = { rank: 4, alpha: 8, dropout: 0, targets: ["q", "k", "v", "o", "gate", "up", "down"] }

let weights: TransformerWeights
let parentModelHash: string

beforeAll(async () => {
  const tiny = await weightsOnCpu(config, 11, 0.2)
  ensureGradients()
  parentModelHash = hashWeights(tiny.host)
  weights = tiny.weights
})
afterAll(() => disposeTransformerWeights(weights))

const fresh = (seed: number) => createLoraAdapter(config, lora, { seed, parentModelHash })

/** A fresh adapter with B filled with seeded noise, so it changes the model (and A gets gradients). */
const perturbed = (seed: number, scale = 0.3): LoraAdapter => {
  const adapter = fresh(seed)
  const rng = makeRng(seed + 1000)
  return {
    ...adapter,
    modules: adapter.modules.map((m) => ({
      ...m,
      b: { shape: m.b.shape, data: Float32Array.from(m.b.data, () => (2 * rng() - 1) * scale) }
    }))
  }
}

/** Per-token log-probabilities of each sample's completion (undefined adapter: the base model). */
const tokenLogProbs = (adapter: LoraAdapter | undefined, samples: ReadonlyArray<PolicySample>) => {
  const device = adapter === undefined ? undefined : uploadLora(adapter, false)
  try {
    return samples.map((s) =>
      tf.tidy(() => {
        const t = batchTensors(buildBatch([{ ids: s.ids, labelMask: s.ids.map(() => 1) }]))
        const logits = forward(weights, { ...t, hook: device === undefined ? undefined : loraHook(device) }).logits
        const nll = nextTokenNll(logits, t.ids, t.labelMask).dataSync()
        return Array.from({ length: s.ids.length - s.completionStart }, (_, k) => -nll[s.completionStart + k - 1]!)
      })
    )
  } finally {
    if (device !== undefined) disposeDeviceLora(device)
  }
}
const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
const completionLogProb = (adapter: LoraAdapter | undefined, s: PolicySample) => sum(tokenLogProbs(adapter, [s])[0]!)

const options = (patch: Partial<PolicyGradientOptions> = {}): PolicyGradientOptions => ({
  learningRate: 1e-2,
  passes: 4,
  batchSize: 4,
  seed: 3,
  ...patch
})

const catchTraining = (f: () => unknown): TrainingError => {
  try {
    f()
  } catch (e) {
    if (e instanceof TrainingError) return e
    throw e
  }
  throw new Error("expected a TrainingError")
}

describe("trainPolicyGradient", () => {
  const s = sample("the cat", " sat on it.", 1)

  it("a positive advantage raises the completion's log-probability, a negative one lowers it", () => {
    const before = completionLogProb(undefined, s)
    const adapter = fresh(1)
    expect(completionLogProb(adapter, s)).toBeCloseTo(before, 5) // B = 0: the base model

    const up = trainPolicyGradient(weights, adapter, [s], options())
    const down = trainPolicyGradient(weights, adapter, [{ ...s, advantage: -1 }], options())
    expect(up.steps).toBe(4)
    expect(up.objectives).toHaveLength(4)
    expect(up.adapter.trainedSteps).toBe(4)
    expect(up.adapter.id).toBe(adapter.id)
    const [upLogp, downLogp] = [completionLogProb(up.adapter, s), completionLogProb(down.adapter, s)]
    expect(upLogp).toBeGreaterThan(before + 0.5)
    expect(downLogp).toBeLessThan(before - 0.5)
    // The surrogate objective (before each step) grows.
    expect(up.objectives.at(-1)!).toBeGreaterThan(up.objectives[0]!)
    // A perturbed adapter moves the same way from where it starts.
    const start = perturbed(2)
    const from = completionLogProb(start, s)
    expect(completionLogProb(trainPolicyGradient(weights, start, [s], options()).adapter, s)).toBeGreaterThan(from)
    expect(completionLogProb(trainPolicyGradient(weights, start, [{ ...s, advantage: -2 }], options()).adapter, s))
      .toBeLessThan(from)
  })

  describe("the first step is AdamW's first step on the gradient of the clipped surrogate and k3 penalty", () => {
    const samples = [sample("the cat", " sat.", 1), sample("a dog", " ran far away.", -0.5)]
    const lr = 1e-3

    /**
     * The gradient of `loss = Σ_i 1/B · norm_i · Σ_k [−A_i·logp_ik + β·k3(ref_ik − logp_ik)]` with
     * respect to the adapter's device variables, computed directly (at the first step the ratio is 1
     * and no clip is active).
     */
    const referenceGradient = (
      adapter: LoraAdapter,
      beta: number,
      norm: (i: number, n: number) => number
    ) => {
      const ref = tokenLogProbs(undefined, samples)
      const batch = buildBatch(samples.map((x) => ({ ids: x.ids, labelMask: x.ids.map(() => 1) })))
      const coef = new Float32Array(batch.rows * batch.steps)
      const refAt = new Float32Array(batch.rows * batch.steps)
      const adv = new Float32Array(batch.rows * batch.steps)
      samples.forEach((x, i) => {
        const n = x.ids.length - x.completionStart
        for (let k = 0; k < n; k++) {
          // nextTokenNll's entry t scores target t+1.
          const t = i * batch.steps + x.completionStart + k - 1
          coef[t] = norm(i, n) / samples.length
          refAt[t] = ref[i]![k]!
          adv[t] = x.advantage
        }
      })
      const device = uploadLora(adapter, true)
      try {
        return tf.tidy(() => {
          const t = batchTensors(batch)
          const ones = tf.onesLike(t.labelMask)
          const [c, r, a] = [coef, refAt, adv].map((v) => tf.tensor2d(v, [batch.rows, batch.steps]))
          const { grads } = tf.variableGrads(() => {
            const logits = forward(weights, { ...t, hook: loraHook(device) }).logits
            const logp = tf.neg(nextTokenNll(logits, t.ids, ones))
            const d = tf.sub(r!, logp)
            const k3 = tf.sub(tf.sub(tf.exp(d), d), 1)
            return tf.sum(tf.mul(c!, tf.add(tf.mul(tf.neg(a!), logp), tf.mul(beta, k3)))) as tf.Scalar
          }, device.modules.flatMap((m) => [m.aT, m.bT]))
          return device.modules.flatMap((m) => [grads[m.aT.name]!, grads[m.bT.name]!]).map((g) =>
            g.dataSync() as Float32Array
          )
        })
      } finally {
        disposeDeviceLora(device)
      }
    }

    /** Device-layout values (Aᵀ, Bᵀ per module) of an adapter. */
    const deviceValues = (adapter: LoraAdapter) => {
      const device = uploadLora(adapter, false)
      try {
        return device.modules.flatMap((m) => [m.aT.dataSync() as Float32Array, m.bT.dataSync() as Float32Array])
      } finally {
        disposeDeviceLora(device)
      }
    }

    /** Elements (of those with a clear gradient) where the step disagrees with AdamW's first step on `grads`. */
    const disagreements = (before: LoraAdapter, after: LoraAdapter, grads: ReadonlyArray<Float32Array>) => {
      const flat = grads.flatMap((g) => [...g])
      const norm = Math.sqrt(sum(flat.map((g) => g * g)))
      const scale = clipFactor(norm, 1)
      const largest = Math.max(...flat.map(Math.abs))
      const [b, a] = [deviceValues(before).flatMap((x) => [...x]), deviceValues(after).flatMap((x) => [...x])]
      let compared = 0
      let bad = 0
      flat.forEach((g, i) => {
        const delta = a[i]! - b[i]!
        expect(Math.abs(delta)).toBeLessThanOrEqual(lr * 1.01)
        if (Math.abs(g) < 1e-3 * largest) return
        compared++
        const expected = -lr * (g * scale) / (Math.abs(g * scale) + 1e-8)
        if (Math.abs(delta - expected) > 0.02 * lr) bad++
      })
      return { compared, bad }
    }

    it("sequence normalisation, with a KL penalty", () => {
      const start = perturbed(5)
      const beta = 0.5
      const result = trainPolicyGradient(
        weights,
        start,
        samples,
        options({
          learningRate: lr,
          passes: 1,
          batchSize: 2,
          klCoef: beta
        })
      )
      expect(result.steps).toBe(1)
      const right = disagreements(start, result.adapter, referenceGradient(start, beta, (_, n) => 1 / n))
      expect(right.compared).toBeGreaterThan(500)
      expect(right.bad).toBe(0)
      // The check has teeth: without the KL term, or with Dr. GRPO's normalisation, it fails.
      const noKl = disagreements(start, result.adapter, referenceGradient(start, 0, (_, n) => 1 / n))
      expect(noKl.bad).toBeGreaterThan(0.02 * noKl.compared)
      const constant = disagreements(start, result.adapter, referenceGradient(start, beta, () => 1 / 12))
      expect(constant.bad).toBeGreaterThan(0.02 * constant.compared)
      // At the first step the ratio is 1: the objective is the mean advantage and the KL the k3 mean.
      expect(result.objectives[0]).toBeCloseTo((1 - 0.5) / 2, 5)
      const [logp, ref] = [tokenLogProbs(start, samples), tokenLogProbs(undefined, samples)]
      const k3 = samples.map((_, i) =>
        sum(logp[i]!.map((l, k) => Math.exp(ref[i]![k]! - l) - (ref[i]![k]! - l) - 1)) / logp[i]!.length
      )
      expect(result.kls[0]).toBeCloseTo(sum(k3) / 2, 4)
      expect(result.kls[0]).toBeGreaterThan(0.01)
      expect(result.clippedFraction).toBe(0)
    })

    it("constant (Dr. GRPO) normalisation divides every completion by maxTokens", () => {
      const start = perturbed(6)
      const result = trainPolicyGradient(
        weights,
        start,
        samples,
        options({
          learningRate: lr,
          passes: 1,
          batchSize: 2,
          lengthNorm: "constant",
          maxTokens: 12
        })
      )
      const right = disagreements(start, result.adapter, referenceGradient(start, 0, () => 1 / 12))
      expect(right.compared).toBeGreaterThan(500)
      expect(right.bad).toBe(0)
      const sequence = disagreements(start, result.adapter, referenceGradient(start, 0, (_, n) => 1 / n))
      expect(sequence.bad).toBeGreaterThan(0.02 * sequence.compared)
    })
  })

  it("with zero advantage: no KL leaves the adapter exactly as it was; a KL penalty pulls it back to the base", () => {
    const start = perturbed(7, 0.5)
    const zero = [sample("the cat", " sat.", 0), sample("we sing", " a song.", 0)]
    const still = trainPolicyGradient(weights, start, zero, options({ passes: 3 }))
    expect(still.adapter.modules.map((m) => [...m.a.data, ...m.b.data])).toEqual(
      start.modules.map((m) => [...m.a.data, ...m.b.data])
    )
    expect(still.clippedFraction).toBe(0)
    expect(still.objectives.every((o) => o === 0)).toBe(true)

    const distance = (adapter: LoraAdapter) => {
      const [a, ref] = [tokenLogProbs(adapter, zero), tokenLogProbs(undefined, zero)]
      return sum(a.flatMap((row, i) => row.map((l, k) => Math.abs(l - ref[i]![k]!))))
    }
    const pulled = trainPolicyGradient(weights, start, zero, options({ passes: 6, klCoef: 1 }))
    expect(distance(start)).toBeGreaterThan(1)
    expect(distance(pulled.adapter)).toBeLessThan(0.7 * distance(start))
    // The KL estimate it reports falls too.
    expect(pulled.kls.at(-1)!).toBeLessThan(pulled.kls[0]!)
  })

  it("clips: one pass from the sampling adapter clips nothing; many large steps leave the trust region", () => {
    const samples = [sample("the cat", " sat.", 1), sample("a dog", " ran.", -1)]
    const once = trainPolicyGradient(weights, fresh(3), samples, options({ passes: 1, batchSize: 2 }))
    expect(once.clippedFraction).toBe(0)
    const many = trainPolicyGradient(
      weights,
      fresh(3),
      samples,
      options({ passes: 12, batchSize: 2, learningRate: 5e-2 })
    )
    expect(many.clippedFraction).toBeGreaterThan(0)
    expect(many.clippedFraction).toBeLessThanOrEqual(1)
    // Fully clipped tokens stop pulling: the ratio stays near the trust region instead of running away
    // as it does without clipping (a huge ε never clips).
    const unclipped = trainPolicyGradient(
      weights,
      fresh(3),
      samples,
      options({ passes: 12, batchSize: 2, learningRate: 5e-2, clip: 1e6 })
    )
    expect(unclipped.clippedFraction).toBe(0)
    const gain = (adapter: LoraAdapter) =>
      completionLogProb(adapter, samples[0]!) - completionLogProb(undefined, samples[0]!)
    expect(gain(unclipped.adapter)).toBeGreaterThan(gain(many.adapter))
  })

  it("rejects no samples (NoData) and samples without completion tokens or too long (BadData); leaks nothing", () => {
    const adapter = fresh(1)
    const before = tf.memory().numTensors
    expect(catchTraining(() => trainPolicyGradient(weights, adapter, [], options())).reason).toBe("NoData")
    for (const completionStart of [0, s.ids.length, s.ids.length + 3]) {
      const error = catchTraining(() =>
        trainPolicyGradient(weights, adapter, [s, { ...s, completionStart }], options())
      )
      expect(error.reason).toBe("BadData")
      expect(error.message).toContain("sample 1")
    }
    const long = { ids: Array.from({ length: 65 }, (_, i) => 3 + (i % 26)), completionStart: 10, advantage: 1 }
    expect(catchTraining(() => trainPolicyGradient(weights, adapter, [long], options())).reason).toBe("BadData")
    expect(tf.memory().numTensors).toBe(before)
    trainPolicyGradient(
      weights,
      perturbed(2),
      [s, { ...s, advantage: -1 }],
      options({ klCoef: 0.1, passes: 2, batchSize: 1 })
    )
    expect(tf.memory().numTensors).toBe(before)
  })

  it("is deterministic given its seed", () => {
    const samples = [sample("the cat", " sat.", 1), sample("a dog", " ran.", -1), sample("we", " sing.", 0.5)]
    const run = (seed: number) =>
      trainPolicyGradient(weights, perturbed(4), samples, options({ batchSize: 1, passes: 2, seed })).adapter.modules
        .flatMap((m) => [...m.b.data])
    expect(run(1)).toEqual(run(1))
    expect(run(1)).not.toEqual(run(2))
  })
})
