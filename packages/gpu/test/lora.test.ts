import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import { beforeAll } from "vitest"
import type { LoraAdapter, LoraConfig } from "../src/lora/LoraAdapter.js"
import {
  createLoraAdapter,
  disposeDeviceLora,
  hashDeviceWeights,
  hashWeights,
  LoraConfigError,
  loraHook,
  loraScale,
  mergeLora,
  unmergeLora,
  uploadLora,
  validateLoraConfig
} from "../src/lora/LoraAdapter.js"
import { generate } from "../src/model/Generate.js"
import { fillNormal, initWeights } from "../src/model/InitWeights.js"
import type { ModelConfig, WeightMap } from "../src/model/ModelConfig.js"
import { makeRng } from "../src/model/Sampling.js"
import type { ProjectionHook, TransformerWeights } from "../src/model/Transformer.js"
import {
  createTransformerWeights,
  disposeTransformerWeights,
  forward,
  projectionNames
} from "../src/model/Transformer.js"
import { tinyQwen2, weightsOnCpu } from "../src/testing/TinyModel.js"

const config = tinyQwen2({ hiddenSize: 32, intermediateSize: 48, headDim: 8 })

const allTargets: LoraConfig = { rank: 4, alpha: 8, dropout: 0, targets: projectionNames }

/** All-position logits of one sequence, flattened. */
const logits = (w: TransformerWeights, ids: ReadonlyArray<number>, hook?: ProjectionHook): Float32Array => {
  const out = tf.tidy(() => {
    const steps = ids.length
    const mask = new Float32Array(steps * steps)
    for (let t = 0; t < steps; t++) for (let s = 0; s < steps; s++) mask[t * steps + s] = s <= t ? 0 : -1e9
    return forward(w, {
      ids: tf.tensor2d([...ids], [1, steps], "int32"),
      positions: tf.tensor2d(Array.from({ length: steps }, (_, i) => i), [1, steps], "int32"),
      mask: tf.tensor4d(mask, [1, 1, steps, steps]),
      hook
    }).logits
  })
  const values = out.dataSync() as Float32Array
  out.dispose()
  return values
}

/** The same adapter with B drawn from N(0, std), standing in for a trained one. */
const withRandomB = (adapter: LoraAdapter, seed: number, std: number): LoraAdapter => ({
  ...adapter,
  modules: adapter.modules.map((m, i) => {
    const data = new Float32Array(m.b.data.length)
    fillNormal(data, makeRng(seed + i), std)
    return { ...m, b: { shape: m.b.shape, data } }
  })
})

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!))
  return d
}

describe("LoRA adapter", () => {
  let host: WeightMap
  let weights: TransformerWeights
  beforeAll(async () => {
    const tiny = await weightsOnCpu(config, 7, 0.3)
    host = tiny.host
    weights = tiny.weights
    return () => disposeTransformerWeights(weights)
  })

  it("rejects invalid configs with a typed error naming the field", () => {
    const cases: Array<[Partial<LoraConfig>, string, string]> = [
      [{ rank: 0 }, "InvalidRank", "rank"],
      [{ rank: 2.5 }, "InvalidRank", "rank"],
      [{ alpha: 0 }, "InvalidAlpha", "alpha"],
      [{ alpha: Number.NaN }, "InvalidAlpha", "alpha"],
      [{ dropout: 1 }, "InvalidDropout", "dropout"],
      [{ targets: [] }, "NoTargets", "targets"],
      [{ targets: ["q", "qkv" as never] }, "UnknownTarget", "targets"],
      [{ targets: ["q", "q"] }, "DuplicateTarget", "targets"]
    ]
    for (const [patch, reason, field] of cases) {
      const result = validateLoraConfig({ ...allTargets, ...patch })
      expect(Either.isLeft(result)).toBe(true)
      const error = Either.getLeft(result).pipe((o) => (o._tag === "Some" ? o.value : undefined))!
      expect(error).toBeInstanceOf(LoraConfigError)
      expect([error.reason, error.field]).toEqual([reason, field])
    }
    expect(() => createLoraAdapter(config, { ...allTargets, rank: 0 }, { seed: 1, parentModelHash: "x" })).toThrow(
      LoraConfigError
    )
    expect(Either.isRight(validateLoraConfig(allTargets))).toBe(true)
  })

  it("initialises A with PEFT's kaiming-uniform bound and B with zeros, deterministically", () => {
    const a = createLoraAdapter(config, { ...allTargets, targets: ["q", "down"] }, { seed: 3, parentModelHash: "p" })
    expect(a.modules.map((m) => `${m.layer}.${m.target}`)).toEqual(["0.q", "0.down", "1.q", "1.down"])
    const down = a.modules[1]!
    expect(down.a.shape).toEqual([4, 48])
    expect(down.b.shape).toEqual([32, 4])
    expect(Math.max(...down.a.data.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(48))
    expect(Math.max(...down.a.data.map(Math.abs))).toBeGreaterThan(0.8 / Math.sqrt(48))
    expect(down.b.data.every((v) => v === 0)).toBe(true)
    const again = createLoraAdapter(config, { ...allTargets, targets: ["q", "down"] }, {
      seed: 3,
      parentModelHash: "p"
    })
    expect(again).toEqual(a)
    // The q modules do not depend on which other targets were chosen.
    const qOnly = createLoraAdapter(config, { ...allTargets, targets: ["q"] }, { seed: 3, parentModelHash: "p" })
    expect(qOnly.modules[0]!.a.data).toEqual(a.modules[0]!.a.data)
    const other = createLoraAdapter(config, { ...allTargets, targets: ["q", "down"] }, {
      seed: 4,
      parentModelHash: "p"
    })
    expect(other.modules[0]!.a.data).not.toEqual(a.modules[0]!.a.data)
    expect(other.id).not.toBe(a.id)
  })

  it("scales by alpha / r, or alpha / sqrt(r) with rsLoRA", () => {
    expect(loraScale({ ...allTargets, rank: 16, alpha: 32 })).toBe(2)
    expect(loraScale({ ...allTargets, rank: 16, alpha: 32, rsLora: true })).toBe(8)
  })

  it("hashes weights from the host and from the device to the same fingerprint", () => {
    const h = hashWeights(host)
    expect(h).toMatch(/^[0-9a-f]{64}$/)
    expect(hashDeviceWeights(weights)).toBe(h)
    const changed = new Map(host)
    const norm = host.get("model.norm.weight")!
    const data = Float32Array.from(norm.data)
    data[5] = 1.5
    changed.set("model.norm.weight", { shape: norm.shape, data })
    expect(hashWeights(changed)).not.toBe(h)
    // Llama layout too (tied embeddings, no biases), and a large tensor sampled by stride.
    const llama: ModelConfig = {
      ...config,
      architecture: "llama",
      tieEmbeddings: true,
      attentionBias: false,
      vocabSize: 300
    }
    const llamaHost = initWeights(llama, 2)
    const llamaDevice = createTransformerWeights(llama, llamaHost)
    try {
      expect(hashDeviceWeights(llamaDevice)).toBe(hashWeights(llamaHost))
    } finally {
      disposeTransformerWeights(llamaDevice)
    }
  })

  it("a fresh adapter changes nothing: logits and generation equal the base model's", () => {
    const adapter = createLoraAdapter(config, allTargets, { seed: 1, parentModelHash: hashWeights(host) })
    const device = uploadLora(adapter, false)
    try {
      const hook = loraHook(device)
      const ids = [1, 5, 9, 3, 7, 2]
      expect(logits(weights, ids, hook)).toEqual(logits(weights, ids))
      const prompts = [[1, 2, 3], [4, 5]]
      expect(generate(weights, prompts, { maxTokens: 8, temperature: 0, hook })).toEqual(
        generate(weights, prompts, { maxTokens: 8, temperature: 0 })
      )
    } finally {
      disposeDeviceLora(device)
    }
  })

  it("with nonzero B, the attached adapter equals the adapter merged into the weights", () => {
    const adapter = withRandomB(createLoraAdapter(config, allTargets, { seed: 2, parentModelHash: "p" }), 9, 0.2)
    const mergedHost = mergeLora(host, adapter)
    const merged = createTransformerWeights(config, mergedHost)
    const device = uploadLora(adapter, false)
    try {
      const hook = loraHook(device)
      const ids = [3, 1, 4, 1, 5, 9, 2, 6]
      const attached = logits(weights, ids, hook)
      expect(maxAbsDiff(attached, logits(weights, ids))).toBeGreaterThan(0.1)
      expect(maxAbsDiff(attached, logits(merged, ids))).toBeLessThan(1e-4)
      const prompts = [[1, 2, 3], [7]]
      const viaHook = generate(weights, prompts, { maxTokens: 10, temperature: 0, hook })
      expect(viaHook).toEqual(generate(merged, prompts, { maxTokens: 10, temperature: 0 }))
      expect(viaHook).not.toEqual(generate(weights, prompts, { maxTokens: 10, temperature: 0 }))
    } finally {
      disposeDeviceLora(device)
      disposeTransformerWeights(merged)
    }
  })

  it("unmerging restores the base weights (to float32 rounding) and shares untouched tensors", () => {
    const adapter = withRandomB(createLoraAdapter(config, allTargets, { seed: 5, parentModelHash: "p" }), 1, 0.5)
    const merged = mergeLora(host, adapter)
    expect(merged.get("model.embed_tokens.weight")).toBe(host.get("model.embed_tokens.weight"))
    const q = "model.layers.1.self_attn.q_proj.weight"
    expect(maxAbsDiff(merged.get(q)!.data, host.get(q)!.data)).toBeGreaterThan(0.1)
    const restored = unmergeLora(merged, adapter)
    for (const [name, t] of host) expect(maxAbsDiff(restored.get(name)!.data, t.data)).toBeLessThan(1e-6)
  })

  it("dropout applies only in training, reproducibly per seed", () => {
    const adapter = withRandomB(
      createLoraAdapter(config, { ...allTargets, dropout: 0.5 }, { seed: 2, parentModelHash: "p" }),
      3,
      0.2
    )
    const device = uploadLora(adapter, false)
    try {
      const ids = [1, 2, 3, 4]
      const evalMode = logits(weights, ids, loraHook(device))
      expect(logits(weights, ids, loraHook(device))).toEqual(evalMode)
      const trainA = logits(weights, ids, loraHook(device, { seed: 1 }))
      expect(maxAbsDiff(trainA, evalMode)).toBeGreaterThan(1e-3)
      expect(logits(weights, ids, loraHook(device, { seed: 1 }))).toEqual(trainA)
      expect(maxAbsDiff(logits(weights, ids, loraHook(device, { seed: 2 })), trainA)).toBeGreaterThan(1e-3)
    } finally {
      disposeDeviceLora(device)
    }
  })

  it("upload and dispose leave no tensors behind", () => {
    const before = tf.memory().numTensors
    const device = uploadLora(createLoraAdapter(config, allTargets, { seed: 1, parentModelHash: "p" }))
    expect(tf.memory().numTensors).toBe(before + 2 * 7 * 2)
    logits(weights, [1, 2], loraHook(device, { seed: 3 }))
    disposeDeviceLora(device)
    expect(tf.memory().numTensors).toBe(before)
  })
})
