import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import { beforeAll } from "vitest"
import type { LoraAdapter, LoraModule } from "../src/lora/LoraAdapter.js"
import {
  createLoraAdapter,
  deviceLoraVariables,
  disposeDeviceLora,
  loraHook,
  loraScale,
  projectionWeightName,
  uploadLora
} from "../src/lora/LoraAdapter.js"
import { fillNormal, initWeights } from "../src/model/InitWeights.js"
import type { HostTensor, ModelConfig, WeightMap } from "../src/model/ModelConfig.js"
import { WeightNames } from "../src/model/ModelConfig.js"
import { makeRng } from "../src/model/Sampling.js"
import type { ProjectionName, TransformerWeights } from "../src/model/Transformer.js"
import {
  createTransformerWeights,
  disposeTransformerWeights,
  forward,
  projectionNames
} from "../src/model/Transformer.js"
import { tinyQwen2 } from "../src/testing/TinyModel.js"
import { ensureGradients } from "../src/train/Gradients.js"
import type { TokenizedExample } from "../src/train/Loss.js"
import { batchTensors, buildBatch, causalLmLoss } from "../src/train/Loss.js"

/**
 * Gradient check against a float64 reference. tfjs has no float64, so the reference is a small
 * pure-JS transformer in float64 (written independently of Transformer.ts from the Llama/Qwen2
 * definitions), and the finite differences are central differences of its loss with h = 1e-5:
 * truncation error O(h²) ≈ 1e-10 and rounding error ≈ 1e-16 / h ≈ 1e-11, so the reference
 * derivatives are exact to ~1e-9. The tfjs gradients are float32: they must agree within
 * 1e-4 × (largest reference derivative checked) + 1e-6 absolute. Observed: worst error 3e-7
 * (LoRA, largest derivative 0.53) and 9e-7 (full training, largest 1.5), i.e. float32 rounding.
 */

const h = 1e-5

type Params = Map<string, Float64Array>

/** Loss of the float64 reference model; parameter names are HF names plus `lora.<layer>.<target>.A|B`. */
const referenceLoss = (
  config: ModelConfig,
  params: Params,
  scale: number,
  examples: ReadonlyArray<TokenizedExample>
): number => {
  const { hiddenSize: d, numHeads, numKvHeads, headDim: hd, rmsNormEps: eps, vocabSize: V } = config
  const groups = numHeads / numKvHeads
  const get = (name: string) => params.get(name)!
  const matVec = (w: Float64Array, x: Float64Array, out: number): Float64Array => {
    const inner = x.length
    const y = new Float64Array(out)
    for (let o = 0; o < out; o++) {
      let s = 0
      for (let j = 0; j < inner; j++) s += w[o * inner + j]! * x[j]!
      y[o] = s
    }
    return y
  }
  const project = (layer: number, target: ProjectionName, x: Float64Array, out: number, bias?: string) => {
    const y = matVec(get(WeightNames.layer(layer)[target]), x, out)
    if (bias !== undefined && params.has(bias)) {
      const b = get(bias)
      for (let o = 0; o < out; o++) y[o]! += b[o]!
    }
    const a = params.get(`lora.${layer}.${target}.A`)
    if (a !== undefined) {
      const rank = a.length / x.length
      const low = matVec(a, x, rank)
      const delta = matVec(get(`lora.${layer}.${target}.B`), low, out)
      for (let o = 0; o < out; o++) y[o]! += scale * delta[o]!
    }
    return y
  }
  const rmsNorm = (x: Float64Array, w: Float64Array) => {
    let ms = 0
    for (const v of x) ms += v * v
    const r = 1 / Math.sqrt(ms / x.length + eps)
    return x.map((v, i) => v * r * w[i]!)
  }
  const rope = (x: Float64Array, heads: number, pos: number) => {
    const out = new Float64Array(x.length)
    const half = hd / 2
    for (let head = 0; head < heads; head++) {
      for (let i = 0; i < half; i++) {
        const angle = pos / Math.pow(config.ropeTheta, (2 * i) / hd)
        const [c, s] = [Math.cos(angle), Math.sin(angle)]
        const x1 = x[head * hd + i]!
        const x2 = x[head * hd + i + half]!
        out[head * hd + i] = x1 * c - x2 * s
        out[head * hd + i + half] = x2 * c + x1 * s
      }
    }
    return out
  }
  const embed = get(WeightNames.embed)
  const lmHead = config.tieEmbeddings ? embed : get(WeightNames.lmHead)
  let total = 0
  let count = 0
  for (const example of examples) {
    const T = example.ids.length
    let hidden = example.ids.map((id) => embed.slice(id * d, (id + 1) * d))
    for (let layer = 0; layer < config.numLayers; layer++) {
      const n = WeightNames.layer(layer)
      const xs = hidden.map((x) => rmsNorm(x, get(n.inputNorm)))
      const q = xs.map((x, t) => rope(project(layer, "q", x, numHeads * hd, n.qBias), numHeads, t))
      const k = xs.map((x, t) => rope(project(layer, "k", x, numKvHeads * hd, n.kBias), numKvHeads, t))
      const v = xs.map((x) => project(layer, "v", x, numKvHeads * hd, n.vBias))
      const merged = q.map((qt, t) => {
        const out = new Float64Array(numHeads * hd)
        for (let head = 0; head < numHeads; head++) {
          const kv = Math.floor(head / groups)
          const scores = Array.from({ length: t + 1 }, (_, s) => {
            let dot = 0
            for (let i = 0; i < hd; i++) dot += qt[head * hd + i]! * k[s]![kv * hd + i]!
            return dot / Math.sqrt(hd)
          })
          const max = Math.max(...scores)
          const e = scores.map((x) => Math.exp(x - max))
          const z = e.reduce((a, b) => a + b, 0)
          for (let s = 0; s <= t; s++) {
            for (let i = 0; i < hd; i++) out[head * hd + i]! += (e[s]! / z) * v[s]![kv * hd + i]!
          }
        }
        return out
      })
      hidden = hidden.map((x, t) => {
        const o = project(layer, "o", merged[t]!, d)
        return x.map((xi, i) => xi + o[i]!)
      })
      hidden = hidden.map((x) => {
        const x2 = rmsNorm(x, get(n.postAttentionNorm))
        const gate = project(layer, "gate", x2, config.intermediateSize)
        const up = project(layer, "up", x2, config.intermediateSize)
        const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!)
        const down = project(layer, "down", act, d)
        return x.map((xi, i) => xi + down[i]!)
      })
    }
    for (let t = 0; t + 1 < T; t++) {
      if (!(example.labelMask[t + 1]! > 0)) continue
      const logits = matVec(lmHead, rmsNorm(hidden[t]!, get(WeightNames.finalNorm)), V)
      const max = Math.max(...logits)
      const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0))
      total += lse - logits[example.ids[t + 1]!]!
      count++
    }
  }
  return total / count
}

const toParams = (weights: WeightMap, adapter?: LoraAdapter): Params => {
  const params: Params = new Map([...weights].map(([name, t]) => [name, Float64Array.from(t.data)]))
  for (const m of adapter?.modules ?? []) {
    params.set(`lora.${m.layer}.${m.target}.A`, Float64Array.from(m.a.data))
    params.set(`lora.${m.layer}.${m.target}.B`, Float64Array.from(m.b.data))
  }
  return params
}

/** Central difference of the reference loss in parameter `name` at flat index `index`. */
const numericGrad = (
  config: ModelConfig,
  params: Params,
  scale: number,
  examples: ReadonlyArray<TokenizedExample>,
  name: string,
  index: number
): number => {
  const p = params.get(name)!
  const saved = p[index]!
  p[index] = saved + h
  const up = referenceLoss(config, params, scale, examples)
  p[index] = saved - h
  const down = referenceLoss(config, params, scale, examples)
  p[index] = saved
  return (up - down) / (2 * h)
}

const examples: Array<TokenizedExample> = [
  { ids: [1, 5, 9, 3, 7, 2, 11], labelMask: [0, 1, 1, 1, 1, 1, 1] },
  // Shorter row (right padding in the batch) with a prompt that does not count.
  { ids: [1, 4, 4, 8, 13], labelMask: [0, 0, 0, 1, 1] }
]

/** d = 8 with two heads sharing one KV head (GQA), q/k/v biases. */
const tinyQwen = tinyQwen2({
  vocabSize: 24,
  hiddenSize: 8,
  intermediateSize: 16,
  numHeads: 2,
  numKvHeads: 1,
  maxPositions: 16
})

/** Random but non-trivial host weights (norm weights and biases perturbed too). */
const randomWeights = (config: ModelConfig, seed: number): WeightMap => {
  const weights = new Map(initWeights(config, seed, 0.5))
  let stream = 100
  for (const [name, t] of weights) {
    if (name.endsWith("norm.weight") || name.endsWith(".bias")) {
      const noise = new Float32Array(t.data.length)
      fillNormal(noise, makeRng(seed + stream++), 0.2)
      weights.set(name, { shape: t.shape, data: t.data.map((v, i) => v + noise[i]!) })
    }
  }
  return weights
}

const randomB = (adapter: LoraAdapter, seed: number): LoraAdapter => ({
  ...adapter,
  modules: adapter.modules.map((m, i): LoraModule => {
    const data = new Float32Array(m.b.data.length)
    fillNormal(data, makeRng(seed + i), 0.3)
    return { ...m, b: { shape: m.b.shape, data } as HostTensor }
  })
})

const lossOf = (weights: TransformerWeights, hookFactory?: () => ReturnType<typeof loraHook>) => () => {
  const t = batchTensors(buildBatch(examples))
  const logits = forward(weights, { ...t, hook: hookFactory?.() }).logits
  return causalLmLoss(logits, t.ids, t.labelMask)
}

describe("gradient check against float64 finite differences", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu")
    ensureGradients()
  })

  it("LoRA gradients of A and B match central differences on a tiny Qwen2 model (d = 8, GQA, biases)", () => {
    const host = randomWeights(tinyQwen, 3)
    const adapter = randomB(
      createLoraAdapter(tinyQwen, { rank: 2, alpha: 4, dropout: 0, targets: projectionNames }, {
        seed: 5,
        parentModelHash: "p"
      }),
      9
    )
    const scale = loraScale(adapter.config)
    const params = toParams(host, adapter)
    const weights = createTransformerWeights(tinyQwen, host)
    const device = uploadLora(adapter)
    try {
      const variables = deviceLoraVariables(device)
      const { value, grads } = tf.tidy(() =>
        tf.variableGrads(lossOf(weights, () => loraHook(device)) as () => tf.Scalar, variables)
      )
      const tfLoss = value.dataSync()[0]!
      expect(Math.abs(tfLoss - referenceLoss(tinyQwen, params, scale, examples))).toBeLessThan(1e-5)

      const checks: Array<{ analytic: number; numeric: number }> = []
      const rng = makeRng(17)
      for (const [layer, target] of [[0, "q"], [0, "v"], [1, "o"], [1, "gate"], [0, "down"], [1, "k"]] as const) {
        const m = device.module(layer, target)!
        const aT = grads[m.aT.name]!.dataSync() // [in, r]
        const bT = grads[m.bT.name]!.dataSync() // [r, out]
        const [inner, rank] = m.aT.shape
        const out = m.bT.shape[1]!
        for (let n = 0; n < 3; n++) {
          const k = Math.floor(rng() * rank)
          const j = Math.floor(rng() * inner)
          checks.push({
            analytic: aT[j * rank + k]!,
            numeric: numericGrad(tinyQwen, params, scale, examples, `lora.${layer}.${target}.A`, k * inner + j)
          })
          const o = Math.floor(rng() * out)
          checks.push({
            analytic: bT[k * out + o]!,
            numeric: numericGrad(tinyQwen, params, scale, examples, `lora.${layer}.${target}.B`, o * rank + k)
          })
        }
      }
      const largest = Math.max(...checks.map((c) => Math.abs(c.numeric)))
      expect(largest).toBeGreaterThan(1e-3)
      for (const c of checks) expect(Math.abs(c.analytic - c.numeric)).toBeLessThan(1e-4 * largest + 1e-6)
      tf.dispose([value, ...Object.values(grads)])
    } finally {
      disposeDeviceLora(device)
      disposeTransformerWeights(weights)
    }
  })

  it("full-training gradients (embedding lookup, tied LM head, norms, biases, projections) match too", () => {
    for (
      const config of [tinyQwen, { ...tinyQwen, architecture: "llama", tieEmbeddings: true, attentionBias: false }]
    ) {
      const host = randomWeights(config as ModelConfig, 4)
      const params = toParams(host)
      const base = createTransformerWeights(config as ModelConfig, host)
      const embed = tf.variable(base.embed)
      const finalNorm = tf.variable(base.finalNorm)
      const q = tf.variable(base.layers[1]!.proj.q)
      const norm = tf.variable(base.layers[0]!.postAttentionNorm)
      const qBias = base.layers[0]!.qBias === undefined ? undefined : tf.variable(base.layers[0]!.qBias)
      const lmHead = config.tieEmbeddings ? undefined : tf.variable(base.lmHead)
      try {
        const model = (): TransformerWeights => ({
          ...base,
          embed,
          finalNorm,
          lmHead: lmHead ?? tf.transpose(embed),
          layers: base.layers.map((l, i) =>
            i === 0
              ? { ...l, postAttentionNorm: norm, ...(qBias === undefined ? {} : { qBias }) }
              : { ...l, proj: { ...l.proj, q } }
          )
        })
        const variables = [
          embed,
          finalNorm,
          q,
          norm,
          ...(qBias === undefined ? [] : [qBias]),
          ...(lmHead === undefined ? [] : [lmHead])
        ]
        const { value, grads } = tf.tidy(() =>
          tf.variableGrads(() => {
            const t = batchTensors(buildBatch(examples))
            return causalLmLoss(forward(model(), t).logits, t.ids, t.labelMask)
          }, variables)
        )
        expect(Math.abs(value.dataSync()[0]! - referenceLoss(config as ModelConfig, params, 0, examples))).toBeLessThan(
          1e-5
        )
        const checks: Array<{ analytic: number; numeric: number }> = []
        const d = config.hiddenSize
        const check = (v: tf.Variable, name: string, hfIndex: number, deviceIndex = hfIndex) =>
          checks.push({
            analytic: grads[v.name]!.dataSync()[deviceIndex]!,
            numeric: numericGrad(config as ModelConfig, params, 0, examples, name, hfIndex)
          })
        // Embedding rows of tokens that occur (5 appears as input; 13 only as a target, which
        // reaches the embedding only through a tied LM head).
        for (const [row, col] of [[5, 2], [4, 7], [13, 1]] as const) check(embed, WeightNames.embed, row * d + col)
        check(finalNorm, WeightNames.finalNorm, 3)
        check(norm, WeightNames.layer(0).postAttentionNorm, 6)
        // q is stored transposed on the device: HF (o, j) is device (j, o).
        const qOut = config.numHeads * config.headDim
        for (const [o, j] of [[1, 2], [6, 5]] as const) check(q, WeightNames.layer(1).q, o * d + j, j * qOut + o)
        if (qBias !== undefined) check(qBias, WeightNames.layer(0).qBias, 5)
        if (lmHead !== undefined) check(lmHead, WeightNames.lmHead, 13 * d + 4, 4 * config.vocabSize + 13)
        const largest = Math.max(...checks.map((c) => Math.abs(c.numeric)))
        expect(largest).toBeGreaterThan(1e-3)
        for (const c of checks) expect(Math.abs(c.analytic - c.numeric)).toBeLessThan(1e-4 * largest + 1e-6)
        tf.dispose([value, ...Object.values(grads)])
      } finally {
        tf.dispose([
          embed,
          finalNorm,
          q,
          norm,
          ...(qBias === undefined ? [] : [qBias]),
          ...(lmHead === undefined ? [] : [lmHead])
        ])
        disposeTransformerWeights(base)
      }
    }
  })

  it("the projection weight names line up with the reference's", () => {
    expect(projectionWeightName(1, "gate")).toBe("model.layers.1.mlp.gate_proj.weight")
  })
})
