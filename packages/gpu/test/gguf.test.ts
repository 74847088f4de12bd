import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import { GgmlType, halfToFloat, loadGguf, permuteRopeRows, unpermuteRopeRows } from "../src/checkpoint/Gguf.js"
import type { HostTensor, ModelConfig, WeightMap } from "../src/model/ModelConfig.js"
import { WeightNames } from "../src/model/ModelConfig.js"
import type { GgufInput, MetadataInput, SyntheticModel } from "./support/ggufWriter.js"
import {
  encodeGguf,
  floatToHalf,
  random,
  randomTensor,
  removeTempFiles,
  syntheticModel,
  writeTempFile
} from "./support/ggufWriter.js"

const storiesPath = fileURLToPath(new URL("../../../models/stories260K.gguf", import.meta.url))
const greedy = JSON.parse(
  Fs.readFileSync(new URL("./fixtures/stories260K.once-upon-a-time.greedy64.json", import.meta.url), "utf8")
) as { prompt: string; prompt_tokens: Array<number>; generated_tokens: Array<number>; first_logits: Array<number> }

afterAll(() => removeTempFiles())

const writeGguf = (name: string, input: GgufInput) => Effect.promise(() => writeTempFile(name, encodeGguf(input)))

/** Loads `input` from a temp file and returns the error it must fail with. */
const loadError = (input: GgufInput) =>
  Effect.gen(function*() {
    const path = yield* writeGguf("model.gguf", input)
    const error = yield* Effect.flip(loadGguf(path))
    return { error, path }
  })

const withMetadata = (input: GgufInput, key: string, value: MetadataInput | undefined): GgufInput => ({
  ...input,
  metadata: value === undefined
    ? input.metadata.filter(([k]) => k !== key)
    : input.metadata.map(([k, v]) => [k, k === key ? value : v] as const)
})

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let max = 0
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!))
  return max
}

/**
 * A plain float64 forward pass in the Hugging Face convention (rotate_half RoPE, GQA), returning
 * the logits at the last position. It exists to prove the loader's layout: it reproduces
 * llama2.c's logits only if the q/k rows were un-permuted and every tensor landed in its place.
 */
const referenceLogits = (config: ModelConfig, weights: WeightMap, tokens: ReadonlyArray<number>): Float64Array => {
  const w = (name: string): HostTensor => weights.get(name)!
  const d = config.hiddenSize
  const hd = config.headDim
  const matvec = (m: HostTensor, x: Float64Array): Float64Array => {
    const [rows, cols] = m.shape as [number, number]
    const out = new Float64Array(rows)
    for (let r = 0; r < rows; r++) {
      let s = 0
      for (let c = 0; c < cols; c++) s += m.data[r * cols + c]! * x[c]!
      out[r] = s
    }
    return out
  }
  const rmsNorm = (x: Float64Array, g: HostTensor): Float64Array => {
    let ss = 0
    for (const v of x) ss += v * v
    const scale = 1 / Math.sqrt(ss / x.length + config.rmsNormEps)
    return x.map((v, i) => v * scale * g.data[i]!)
  }
  const rope = (v: Float64Array, heads: number, pos: number) => {
    const half = hd / 2
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const angle = pos * config.ropeTheta ** (-(2 * i) / hd)
        const a = v[h * hd + i]!
        const b = v[h * hd + i + half]!
        v[h * hd + i] = a * Math.cos(angle) - b * Math.sin(angle)
        v[h * hd + i + half] = b * Math.cos(angle) + a * Math.sin(angle)
      }
    }
  }
  const keys: Array<Array<Float64Array>> = Array.from({ length: config.numLayers }, () => [])
  const values: Array<Array<Float64Array>> = Array.from({ length: config.numLayers }, () => [])
  let x = new Float64Array(d)
  tokens.forEach((token, pos) => {
    x = Float64Array.from(w(WeightNames.embed).data.subarray(token * d, (token + 1) * d))
    for (let l = 0; l < config.numLayers; l++) {
      const n = WeightNames.layer(l)
      const h = rmsNorm(x, w(n.inputNorm))
      const q = matvec(w(n.q), h)
      const k = matvec(w(n.k), h)
      rope(q, config.numHeads, pos)
      rope(k, config.numKvHeads, pos)
      keys[l]!.push(k)
      values[l]!.push(matvec(w(n.v), h))
      const attended = new Float64Array(config.numHeads * hd)
      const group = config.numHeads / config.numKvHeads
      for (let head = 0; head < config.numHeads; head++) {
        const kv = Math.floor(head / group)
        const scores = keys[l]!.map((key) => {
          let s = 0
          for (let i = 0; i < hd; i++) s += q[head * hd + i]! * key[kv * hd + i]!
          return s / Math.sqrt(hd)
        })
        const top = Math.max(...scores)
        const e = scores.map((s) => Math.exp(s - top))
        const total = e.reduce((a, b) => a + b, 0)
        values[l]!.forEach((value, t) => {
          for (let i = 0; i < hd; i++) attended[head * hd + i] += (e[t]! / total) * value[kv * hd + i]!
        })
      }
      const o = matvec(w(n.o), attended)
      x = x.map((v, i) => v + o[i]!)
      const h2 = rmsNorm(x, w(n.postAttentionNorm))
      const gate = matvec(w(n.gate), h2)
      const up = matvec(w(n.up), h2)
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!)
      const down = matvec(w(n.down), act)
      x = x.map((v, i) => v + down[i]!)
    }
  })
  const head = config.tieEmbeddings ? w(WeightNames.embed) : w(WeightNames.lmHead)
  return matvec(head, rmsNorm(x, w(WeightNames.finalNorm)))
}

describe("loadGguf on stories260K", () => {
  it.effect("reads the config, every weight and the vocabulary", () =>
    Effect.gen(function*() {
      const { config, weights, tokenizer, source } = yield* loadGguf(storiesPath)
      expect(config).toEqual({
        architecture: "llama",
        vocabSize: 512,
        hiddenSize: 64,
        intermediateSize: 172,
        numLayers: 5,
        numHeads: 8,
        numKvHeads: 4,
        headDim: 8,
        maxPositions: 2048,
        rmsNormEps: Math.fround(1e-5),
        ropeTheta: 10000,
        tieEmbeddings: false,
        attentionBias: false
      })
      expect(source).toEqual({ format: "gguf", path: storiesPath })
      expect(weights.size).toBe(3 + 5 * 9)
      expect(weights.get(WeightNames.embed)!.shape).toEqual([512, 64])
      expect(weights.get(WeightNames.layer(4).k)!.shape).toEqual([32, 64])
      expect(weights.get(WeightNames.layer(0).down)!.shape).toEqual([64, 172])
      expect(tokenizer.vocabSize).toBe(512)
      expect(tokenizer.bosId).toBe(1)
      expect(tokenizer.eosId).toBe(2)
    }))

  it.effect("tokenizes the reference prompt like llama.cpp and decodes it back", () =>
    Effect.gen(function*() {
      const { tokenizer } = yield* loadGguf(storiesPath)
      const ids = tokenizer.encode(greedy.prompt)
      expect(ids).toEqual(greedy.prompt_tokens)
      expect(tokenizer.decode(ids)).toBe(greedy.prompt)
      expect(tokenizer.encode(greedy.prompt, { addBos: false })).toEqual(greedy.prompt_tokens.slice(1))
    }))

  it.effect("gives llama2.c's logits, which needs the q/k rows un-permuted", () =>
    Effect.gen(function*() {
      const { config, weights } = yield* loadGguf(storiesPath)
      const logits = referenceLogits(config, weights, greedy.prompt_tokens)
      expect(maxAbsDiff(logits, greedy.first_logits)).toBeLessThan(1e-3)
      expect(logits.indexOf(Math.max(...logits))).toBe(greedy.generated_tokens[0])

      // The same weights left in GGUF's interleaved order give different logits: the check above
      // really does see the row order.
      const interleaved = new Map(weights)
      for (let l = 0; l < config.numLayers; l++) {
        for (
          const [name, heads] of [[WeightNames.layer(l).q, config.numHeads], [
            WeightNames.layer(l).k,
            config.numKvHeads
          ]] as const
        ) {
          const t = weights.get(name)!
          interleaved.set(name, { shape: t.shape, data: permuteRopeRows(t.data, heads, config.hiddenSize) })
        }
      }
      expect(maxAbsDiff(referenceLogits(config, interleaved, greedy.prompt_tokens), greedy.first_logits))
        .toBeGreaterThan(
          1e-2
        )
    }))
})

describe("RoPE row permutation", () => {
  it("maps Hugging Face halves to GGUF's interleaved pairs", () => {
    // One head of 4 rows, 2 columns: HF rows [r0, r1 | r2, r3] become [r0, r2, r1, r3].
    const hf = Float32Array.from([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5])
    expect(Array.from(permuteRopeRows(hf, 1, 2))).toEqual([0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5])
    // Two heads of 4 rows, 1 column (a bias): each head is reordered on its own.
    expect(Array.from(permuteRopeRows(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 1))).toEqual([
      0,
      2,
      1,
      3,
      4,
      6,
      5,
      7
    ])
    expect(Array.from(unpermuteRopeRows(Float32Array.from([0, 2, 1, 3, 4, 6, 5, 7]), 2, 1))).toEqual([
      0,
      1,
      2,
      3,
      4,
      5,
      6,
      7
    ])
  })

  it("is undone by unpermuteRopeRows on random data", () => {
    const next = random(7)
    for (const [heads, headDim, cols] of [[8, 8, 64], [4, 16, 3], [1, 2, 1], [14, 64, 5]] as const) {
      const data = randomTensor(heads * headDim * cols, next)
      const permuted = permuteRopeRows(data, heads, cols)
      // With two rows per head there is only one pair, already in place.
      if (headDim > 2) expect(permuted).not.toEqual(data)
      expect(unpermuteRopeRows(permuted, heads, cols)).toEqual(data)
      expect(permuteRopeRows(unpermuteRopeRows(data, heads, cols), heads, cols)).toEqual(data)
    }
  })

  it("rejects rows that do not split into even heads", () => {
    expect(() => permuteRopeRows(new Float32Array(12), 2, 2)).toThrow(RangeError)
  })
})

describe("loadGguf on synthetic files", () => {
  const expectWeights = (weights: WeightMap, model: SyntheticModel, tolerance: (v: Float32Array) => number) => {
    expect(new Set(weights.keys())).toEqual(new Set(model.hf.keys()))
    for (const [name, expected] of model.hf) {
      const actual = weights.get(name)!
      expect(actual.shape, name).toEqual(expected.shape)
      expect(maxAbsDiff(actual.data, expected.data), name).toBeLessThanOrEqual(tolerance(expected.data))
    }
  }

  it.effect("F32 llama: exact weights in Hugging Face order, tokenizer from metadata", () =>
    Effect.gen(function*() {
      const model = syntheticModel()
      const path = yield* writeGguf("f32.gguf", model.input)
      const { config, weights, tokenizer } = yield* loadGguf(path)
      expect(config).toMatchObject({
        architecture: "llama",
        vocabSize: 262,
        hiddenSize: 32,
        numHeads: 4,
        numKvHeads: 2,
        headDim: 8,
        tieEmbeddings: false,
        attentionBias: false,
        maxPositions: 128,
        ropeTheta: 10000
      })
      expectWeights(weights, model, () => 0)
      expect(tokenizer.encode(" a b")).toEqual([1, 259, 260, 261])
      expect(tokenizer.decode([1, 259, 260, 261, 2])).toBe(" a b")
    }))

  it.effect("qwen2: biases, no row permutation, tied embeddings", () =>
    Effect.gen(function*() {
      const model = syntheticModel({ architecture: "qwen2", tieEmbeddings: true })
      const path = yield* writeGguf("qwen2.gguf", model.input)
      const { config, weights } = yield* loadGguf(path)
      expect(config).toMatchObject({ architecture: "qwen2", attentionBias: true, tieEmbeddings: true, ropeTheta: 1e6 })
      expect(weights.has(WeightNames.lmHead)).toBe(false)
      expect(weights.get(WeightNames.layer(1).kBias)!.shape).toEqual([16])
      expectWeights(weights, model, () => 0)
    }))

  it.effect("F16 dequantises to the nearest half of each original", () =>
    Effect.gen(function*() {
      const model = syntheticModel({ type: GgmlType.F16 })
      const path = yield* writeGguf("f16.gguf", model.input)
      const { weights } = yield* loadGguf(path)
      // |x| ≤ 0.5 here, so half precision is good to 2^-12.
      expectWeights(weights, model, () => 2 ** -12)
      const q = weights.get(WeightNames.layer(0).q)!.data
      const original = model.hf.get(WeightNames.layer(0).q)!.data
      expect(Array.from(q)).toEqual(Array.from(original, (v) => halfToFloat(floatToHalf(v))))
    }))

  it.effect("BF16 keeps the top half of each float", () =>
    Effect.gen(function*() {
      const model = syntheticModel({ type: GgmlType.BF16 })
      const path = yield* writeGguf("bf16.gguf", model.input)
      const { weights } = yield* loadGguf(path)
      expectWeights(weights, model, () => 2 ** -8)
    }))

  it.effect("Q8_0 dequantises within half a quantisation step", () =>
    Effect.gen(function*() {
      const model = syntheticModel({ type: GgmlType.Q8_0, seed: 3 })
      const path = yield* writeGguf("q8.gguf", model.input)
      const { weights } = yield* loadGguf(path)
      // Per block the step is max|x| / 127 (≤ 0.5 / 127 here); rounding the scale to f16 adds
      // a relative 2^-11 on top of half a step.
      expectWeights(weights, model, () => 0.5 * (0.5 / 127) + 0.5 * 2 ** -11)
      // And it is really quantised: not exact.
      const original = model.hf.get(WeightNames.layer(0).up)!.data
      expect(maxAbsDiff(weights.get(WeightNames.layer(0).up)!.data, original)).toBeGreaterThan(0)
    }))
})

describe("loadGguf failures", () => {
  it.effect("a missing file is NotFound", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(loadGguf("/nonexistent/model.gguf"))
      expect(error._tag).toBe("CheckpointError")
      expect(error).toMatchObject({ reason: "NotFound", file: "/nonexistent/model.gguf" })
    }))

  it.effect("a copy of stories260K cut inside the tensor data is Truncated at that tensor", () =>
    Effect.gen(function*() {
      const bytes = Fs.readFileSync(storiesPath)
      const path = yield* Effect.promise(() => writeTempFile("cut.gguf", bytes.subarray(0, bytes.length - 1000)))
      const error = yield* Effect.flip(loadGguf(path))
      expect(error).toMatchObject({ reason: "Truncated", file: path })
      // The last tensor in the file is the one that no longer fits.
      expect(error.field).toMatch(/^blk\.4\./)
    }))

  it.effect("a copy of stories260K cut inside the header is Truncated at the header", () =>
    Effect.gen(function*() {
      const bytes = Fs.readFileSync(storiesPath)
      for (const length of [0, 3, 20, 1000, 12000]) {
        const path = yield* Effect.promise(() => writeTempFile("cut.gguf", bytes.subarray(0, length)))
        const error = yield* Effect.flip(loadGguf(path))
        expect(error, `cut at ${length}`).toMatchObject({ reason: "Truncated", field: "header", file: path })
      }
    }))

  it.effect("bad magic is Malformed", () =>
    Effect.gen(function*() {
      const { error, path } = yield* loadError({ ...syntheticModel().input, magic: "GGML" })
      expect(error).toMatchObject({ reason: "Malformed", field: "magic", file: path })
    }))

  it.effect("an unsupported version is Malformed", () =>
    Effect.gen(function*() {
      const { error } = yield* loadError({ ...syntheticModel().input, version: 7 })
      expect(error).toMatchObject({ reason: "Malformed", field: "version" })
    }))

  it.effect("an unknown architecture names general.architecture", () =>
    Effect.gen(function*() {
      const { error, path } = yield* loadError(syntheticModel({ architecture: "gpt2" }).input)
      expect(error).toMatchObject({ reason: "UnknownArchitecture", field: "general.architecture", file: path })
      expect(error.detail).toContain("gpt2")
    }))

  it.effect("a missing tensor names the GGUF tensor", () =>
    Effect.gen(function*() {
      const input = syntheticModel().input
      const { error } = yield* loadError({
        ...input,
        tensors: input.tensors.filter((t) => t.name !== "blk.1.ffn_up.weight")
      })
      expect(error).toMatchObject({ reason: "MissingTensor", field: "blk.1.ffn_up.weight" })
    }))

  it.effect("qwen2 without its q bias is a missing tensor", () =>
    Effect.gen(function*() {
      const input = syntheticModel({ architecture: "qwen2" }).input
      const { error } = yield* loadError({
        ...input,
        tensors: input.tensors.filter((t) => t.name !== "blk.0.attn_q.bias")
      })
      expect(error).toMatchObject({ reason: "MissingTensor", field: "blk.0.attn_q.bias" })
    }))

  it.effect("a wrong shape is ShapeMismatch", () =>
    Effect.gen(function*() {
      const input = syntheticModel().input
      const { error } = yield* loadError({
        ...input,
        tensors: input.tensors.map((t) => t.name === "blk.0.attn_v.weight" ? { ...t, dims: [16, 32] } : t // [in, out] swapped
        )
      })
      expect(error).toMatchObject({ reason: "ShapeMismatch", field: "blk.0.attn_v.weight" })
      expect(error.detail).toContain("[16, 32]")
    }))

  it.effect("an unsupported tensor type is UnknownDtype", () =>
    Effect.gen(function*() {
      const input = syntheticModel().input
      const { error } = yield* loadError({
        ...input,
        // 12 is Q4_K.
        tensors: input.tensors.map((t) => t.name === "blk.1.ffn_down.weight" ? { ...t, type: 12 } : t)
      })
      expect(error).toMatchObject({ reason: "UnknownDtype", field: "blk.1.ffn_down.weight" })
      expect(error.detail).toContain("Q4_K")
    }))

  it.effect("no vocabulary is MissingTokenizer", () =>
    Effect.gen(function*() {
      const { error } = yield* loadError(withMetadata(syntheticModel().input, "tokenizer.ggml.tokens", undefined))
      expect(error).toMatchObject({ reason: "MissingTokenizer", field: "tokenizer.ggml.tokens" })
    }))

  it.effect("a BPE vocabulary is MissingTokenizer naming the tokenizer model", () =>
    Effect.gen(function*() {
      const { error } = yield* loadError(withMetadata(syntheticModel().input, "tokenizer.ggml.model", "gpt2"))
      expect(error).toMatchObject({ reason: "MissingTokenizer", field: "tokenizer.ggml.model" })
    }))

  it.effect("a missing required hyperparameter is Malformed naming the key", () =>
    Effect.gen(function*() {
      const { error } = yield* loadError(withMetadata(syntheticModel().input, "llama.block_count", undefined))
      expect(error).toMatchObject({ reason: "Malformed", field: "llama.block_count" })
    }))
})
