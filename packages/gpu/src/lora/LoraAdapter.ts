import * as tf from "@tensorflow/tfjs-core"
import { Data, Either } from "effect"
import { createHash } from "node:crypto"
import type { HostTensor, ModelConfig, WeightMap } from "../model/ModelConfig.js"
import { WeightNames } from "../model/ModelConfig.js"
import { deriveSeed, makeRng } from "../model/Sampling.js"
import type { ProjectionHook, ProjectionName, TransformerWeights } from "../model/Transformer.js"
import { gridTableNames, projectionNames } from "../model/Transformer.js"

/**
 * LoRA adapters (Hu et al. 2021) as plain values: `W x + scale · B A x` for a chosen subset of
 * each layer's seven projections, with PEFT's layout (A `[r, in]`, B `[out, r]`) and PEFT's
 * initialisation, so an adapter trained here saves and loads as a PEFT `adapter_model`.
 *
 * The host value (`LoraAdapter`) is what callers pass around, hash and save; training and
 * inference upload it as `DeviceLora`, whose variables are stored transposed (Aᵀ `[in, r]`,
 * Bᵀ `[r, out]`) so the hook's two matmuls are plain `x @ W` products.
 */

export interface LoraConfig {
  readonly rank: number
  readonly alpha: number
  /** Dropout on the adapter's input while training (PEFT's `lora_dropout`); 0 disables it. */
  readonly dropout: number
  readonly targets: ReadonlyArray<ProjectionName>
  /** rsLoRA scaling `alpha / sqrt(rank)` instead of `alpha / rank`. */
  readonly rsLora?: boolean | undefined
}

/** A LoRA config that cannot be used; `field` names the offending entry. */
export class LoraConfigError extends Data.TaggedError("LoraConfigError")<{
  readonly reason:
    | "InvalidRank"
    | "InvalidAlpha"
    | "InvalidDropout"
    | "UnknownTarget"
    | "DuplicateTarget"
    | "NoTargets"
    | "ShapeMismatch"
  readonly field: string
  readonly detail: string
}> {
  override get message(): string {
    return `LoRA ${this.field}: ${this.detail}`
  }
}

export const validateLoraConfig = (config: LoraConfig): Either.Either<LoraConfig, LoraConfigError> => {
  const fail = (reason: LoraConfigError["reason"], field: string, detail: string) =>
    Either.left(new LoraConfigError({ reason, field, detail }))
  if (!Number.isInteger(config.rank) || config.rank < 1) {
    return fail("InvalidRank", "rank", `rank must be an integer >= 1, got ${config.rank}`)
  }
  if (!(Number.isFinite(config.alpha) && config.alpha > 0)) {
    return fail("InvalidAlpha", "alpha", `alpha must be a finite number > 0, got ${config.alpha}`)
  }
  if (!(config.dropout >= 0 && config.dropout < 1)) {
    return fail("InvalidDropout", "dropout", `dropout must be in [0, 1), got ${config.dropout}`)
  }
  if (config.targets.length === 0) return fail("NoTargets", "targets", "at least one target projection is needed")
  const seen = new Set<string>()
  for (const target of config.targets) {
    if (!(projectionNames as ReadonlyArray<string>).includes(target)) {
      return fail("UnknownTarget", "targets", `unknown projection "${target}" (known: ${projectionNames.join(", ")})`)
    }
    if (seen.has(target)) return fail("DuplicateTarget", "targets", `projection "${target}" is listed twice`)
    seen.add(target)
  }
  return Either.right(config)
}

/** The factor on `B A x`: `alpha / r`, or `alpha / sqrt(r)` for rsLoRA. */
export const loraScale = (config: LoraConfig): number =>
  config.rsLora === true ? config.alpha / Math.sqrt(config.rank) : config.alpha / config.rank

/** Input and output width of a projection under `config`. */
export const projectionDims = (config: ModelConfig, target: ProjectionName): { in: number; out: number } => {
  const d = config.hiddenSize
  const q = config.numHeads * config.headDim
  const kv = config.numKvHeads * config.headDim
  switch (target) {
    case "q":
      return { in: d, out: q }
    case "k":
    case "v":
      return { in: d, out: kv }
    case "o":
      return { in: q, out: d }
    case "gate":
    case "up":
      return { in: d, out: config.intermediateSize }
    case "down":
      return { in: config.intermediateSize, out: d }
  }
}

/** The Hugging Face weight a module adapts. */
export const projectionWeightName = (layer: number, target: ProjectionName): string => WeightNames.layer(layer)[target]

/** One adapted projection: A `[r, in]`, B `[out, r]` (PEFT's `lora_A` / `lora_B`). */
export interface LoraModule {
  readonly layer: number
  readonly target: ProjectionName
  readonly a: HostTensor
  readonly b: HostTensor
}

export interface LoraIdentity {
  readonly id: string
  /** `hashWeights` of the base model the adapter was made for. */
  readonly parentModelHash: string
  readonly config: LoraConfig
  /** The caller's step counter when the adapter was created (e.g. a SEAL outer-loop iteration). */
  readonly createdAtStep: number
}

export interface LoraAdapter extends LoraIdentity {
  /** Optimizer steps applied to this adapter so far. */
  readonly trainedSteps: number
  /** Ordered by layer, then by `projectionNames` order. */
  readonly modules: ReadonlyArray<LoraModule>
}

export interface CreateLoraOptions {
  readonly seed: number
  readonly parentModelHash: string
  readonly createdAtStep?: number | undefined
  /** Defaults to a hash of the parent, config, seed and step, so the same inputs give the same id. */
  readonly id?: string | undefined
}

/**
 * A fresh adapter: A from PEFT's `kaiming_uniform_(a=sqrt(5))`, i.e. U(-1/sqrt(in), 1/sqrt(in)),
 * B zeros, so it changes nothing until trained. Each module draws from its own stream keyed by
 * (layer, projection), so adding a target does not reshuffle the others' initial values.
 * Throws `LoraConfigError` for an invalid config.
 */
export const createLoraAdapter = (
  modelConfig: ModelConfig,
  config: LoraConfig,
  options: CreateLoraOptions
): LoraAdapter => {
  const valid = Either.getOrThrowWith(validateLoraConfig(config), (e) => e)
  const createdAtStep = options.createdAtStep ?? 0
  const modules: Array<LoraModule> = []
  for (let layer = 0; layer < modelConfig.numLayers; layer++) {
    for (const target of projectionNames) {
      if (!valid.targets.includes(target)) continue
      const dims = projectionDims(modelConfig, target)
      const a = new Float32Array(valid.rank * dims.in)
      const bound = 1 / Math.sqrt(dims.in)
      const rng = makeRng(deriveSeed(options.seed, layer * projectionNames.length + projectionNames.indexOf(target)))
      for (let i = 0; i < a.length; i++) a[i] = (2 * rng() - 1) * bound
      modules.push({
        layer,
        target,
        a: { shape: [valid.rank, dims.in], data: a },
        b: { shape: [dims.out, valid.rank], data: new Float32Array(dims.out * valid.rank) }
      })
    }
  }
  const id = options.id ??
    `lora-${
      sha256Hex(JSON.stringify([options.parentModelHash, canonicalConfig(valid), options.seed, createdAtStep])).slice(
        0,
        16
      )
    }`
  return { id, parentModelHash: options.parentModelHash, config: valid, createdAtStep, trainedSteps: 0, modules }
}

const canonicalConfig = (config: LoraConfig) => ({
  rank: config.rank,
  alpha: config.alpha,
  dropout: config.dropout,
  targets: projectionNames.filter((p) => config.targets.includes(p)),
  rsLora: config.rsLora === true
})

const sha256Hex = (text: string): string => createHash("sha256").update(text).digest("hex")

/** Throws `LoraConfigError` unless every module's shapes fit `modelConfig`. */
export const checkAdapterFits = (modelConfig: ModelConfig, adapter: LoraAdapter): void => {
  for (const m of adapter.modules) {
    const field = `modules[${m.layer}.${m.target}]`
    if (m.layer < 0 || m.layer >= modelConfig.numLayers) {
      throw new LoraConfigError({
        reason: "ShapeMismatch",
        field,
        detail: `the model has ${modelConfig.numLayers} layers`
      })
    }
    const dims = projectionDims(modelConfig, m.target)
    const r = adapter.config.rank
    if (m.a.shape.join(",") !== `${r},${dims.in}` || m.b.shape.join(",") !== `${dims.out},${r}`) {
      throw new LoraConfigError({
        reason: "ShapeMismatch",
        field,
        detail: `A [${m.a.shape}] and B [${m.b.shape}] do not fit [${r}, ${dims.in}] and [${dims.out}, ${r}]`
      })
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Hashing a base model

/** Values hashed per tensor: all of a small tensor, a strided sample of a large one. */
const hashSamples = 4096

/**
 * Which flat (row-major, Hugging Face layout) indices of a tensor of `size` values are hashed:
 * every one up to `hashSamples`, else an even stride from the first value that ends on the last.
 */
const sampleIndices = (size: number): Int32Array => {
  if (size <= hashSamples) return Int32Array.from({ length: size }, (_, i) => i)
  const out = new Int32Array(hashSamples)
  for (let i = 0; i < hashSamples; i++) out[i] = Math.floor((i * (size - 1)) / (hashSamples - 1))
  return out
}

const hashEntries = (entries: ReadonlyArray<{ name: string; shape: ReadonlyArray<number>; sample: Float32Array }>) => {
  const hash = createHash("sha256")
  for (const e of [...entries].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))) {
    hash.update(`${e.name}:${e.shape.join("x")};`)
    hash.update(new Uint8Array(e.sample.buffer, e.sample.byteOffset, e.sample.byteLength))
  }
  return hash.digest("hex")
}

/**
 * A fingerprint of a model's weights: sha256 over every name and shape and up to 4096 values of
 * each tensor (all of a small one, an even stride across a large one). Reading a few thousand
 * values per tensor keeps it milliseconds even for billion-parameter models, while any retrained
 * or differently quantised checkpoint changes sampled values in practically every tensor.
 */
export const hashWeights = (weights: WeightMap): string =>
  hashEntries(
    [...weights].map(([name, t]) => {
      const idx = sampleIndices(t.data.length)
      const sample = new Float32Array(idx.length)
      for (let i = 0; i < idx.length; i++) sample[i] = t.data[idx[i]!]!
      return { name, shape: t.shape, sample }
    })
  )

/**
 * `hashWeights` of the host weights that `createTransformerWeights` uploaded, computed from the
 * device: it gathers only the sampled values (mapping Hugging Face indices onto the transposed
 * projections), so a loaded model is fingerprinted without downloading it.
 */
export const hashDeviceWeights = (w: TransformerWeights): string => {
  const { config } = w
  const entries: Array<{ name: string; tensor: tf.Tensor; transposed: boolean }> = [
    { name: WeightNames.embed, tensor: w.embed, transposed: false },
    { name: WeightNames.finalNorm, tensor: w.finalNorm, transposed: false }
  ]
  if (!config.tieEmbeddings) entries.push({ name: WeightNames.lmHead, tensor: w.lmHead, transposed: true })
  const grid = w.grid
  if (grid !== undefined) {
    for (const [table, name] of gridTableNames) entries.push({ name, tensor: grid[table], transposed: false })
  }
  w.layers.forEach((layer, i) => {
    const n = WeightNames.layer(i)
    entries.push({ name: n.inputNorm, tensor: layer.inputNorm, transposed: false })
    entries.push({ name: n.postAttentionNorm, tensor: layer.postAttentionNorm, transposed: false })
    for (const p of projectionNames) entries.push({ name: n[p], tensor: layer.proj[p], transposed: true })
    if (layer.qBias !== undefined) entries.push({ name: n.qBias, tensor: layer.qBias, transposed: false })
    if (layer.kBias !== undefined) entries.push({ name: n.kBias, tensor: layer.kBias, transposed: false })
    if (layer.vBias !== undefined) entries.push({ name: n.vBias, tensor: layer.vBias, transposed: false })
  })
  return hashEntries(entries.map(({ name, tensor, transposed }) => {
    // Device tensors of projections are [in, out]; the hashed (HF) shape is [out, in].
    const shape = transposed ? [tensor.shape[1]!, tensor.shape[0]!] : tensor.shape
    const idx = sampleIndices(tensor.size)
    if (transposed) {
      const [out, inner] = [shape[0]!, shape[1]!]
      for (let i = 0; i < idx.length; i++) {
        const row = Math.floor(idx[i]! / inner)
        idx[i] = (idx[i]! % inner) * out + row
      }
    }
    const sample = tf.tidy(() => tf.gather(tf.reshape(tensor, [-1]), tf.tensor1d(idx, "int32"))).dataSync()
    return { name, shape, sample: Float32Array.from(sample) }
  }))
}

// ---------------------------------------------------------------------------------------------
// Merging into base weights

/**
 * `W + sign · scale · B A` for every adapted projection, computed in float64 per entry. Returns a
 * new map sharing the untouched tensors; `sign = -1` removes a merged adapter again (exact up to
 * float32 rounding of the sum).
 */
export const mergeLora = (weights: WeightMap, adapter: LoraAdapter, sign: 1 | -1 = 1): WeightMap => {
  const merged = new Map(weights)
  const scale = sign * loraScale(adapter.config)
  const r = adapter.config.rank
  for (const m of adapter.modules) {
    const name = projectionWeightName(m.layer, m.target)
    const base = weights.get(name)
    if (base === undefined) {
      throw new LoraConfigError({
        reason: "ShapeMismatch",
        field: name,
        detail: "the base weights have no such tensor"
      })
    }
    const [out, inner] = [base.shape[0]!, base.shape[1]!]
    if (m.b.shape[0] !== out || m.a.shape[1] !== inner) {
      throw new LoraConfigError({
        reason: "ShapeMismatch",
        field: name,
        detail: `[${base.shape}] does not match B [${m.b.shape}] A [${m.a.shape}]`
      })
    }
    const data = new Float32Array(base.data)
    const a = m.a.data
    const b = m.b.data
    const row = new Float64Array(inner)
    for (let o = 0; o < out; o++) {
      row.fill(0)
      for (let k = 0; k < r; k++) {
        const bok = b[o * r + k]!
        if (bok === 0) continue
        const offset = k * inner
        for (let j = 0; j < inner; j++) row[j]! += bok * a[offset + j]!
      }
      for (let j = 0; j < inner; j++) data[o * inner + j] = base.data[o * inner + j]! + scale * row[j]!
    }
    merged.set(name, { shape: base.shape, data })
  }
  return merged
}

export const unmergeLora = (weights: WeightMap, adapter: LoraAdapter): WeightMap => mergeLora(weights, adapter, -1)

// ---------------------------------------------------------------------------------------------
// On the device

export interface DeviceLoraModule {
  readonly layer: number
  readonly target: ProjectionName
  /** Aᵀ `[in, r]` */
  readonly aT: tf.Variable
  /** Bᵀ `[r, out]` */
  readonly bT: tf.Variable
}

export interface DeviceLora {
  readonly config: LoraConfig
  readonly scale: number
  readonly modules: ReadonlyArray<DeviceLoraModule>
  readonly module: (layer: number, target: ProjectionName) => DeviceLoraModule | undefined
}

const transposeHost = (t: HostTensor): Float32Array => {
  const [rows, cols] = [t.shape[0]!, t.shape[1]!]
  const out = new Float32Array(t.data.length)
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = t.data[i * cols + j]!
  return out
}

/** A variable holding `data`; the staging tensor is freed so only the variable stays alive. */
export const hostVariable = (data: Float32Array, shape: ReadonlyArray<number>, trainable = true): tf.Variable =>
  tf.tidy(() => tf.variable(tf.tensor(data, [...shape], "float32"), trainable))

/** Uploads an adapter as (trainable) variables; free them with `disposeDeviceLora`. */
export const uploadLora = (adapter: LoraAdapter, trainable = true): DeviceLora => {
  const modules: Array<DeviceLoraModule> = []
  try {
    for (const m of adapter.modules) {
      const [r, inner] = [m.a.shape[0]!, m.a.shape[1]!]
      const out = m.b.shape[0]!
      const aT = hostVariable(transposeHost(m.a), [inner, r], trainable)
      const bT = hostVariable(transposeHost(m.b), [r, out], trainable)
      modules.push({ layer: m.layer, target: m.target, aT, bT })
    }
  } catch (e) {
    for (const m of modules) {
      m.aT.dispose()
      m.bT.dispose()
    }
    throw e
  }
  return fromDeviceModules(adapter.config, modules)
}

export const fromDeviceModules = (config: LoraConfig, modules: ReadonlyArray<DeviceLoraModule>): DeviceLora => {
  const byKey = new Map(modules.map((m) => [`${m.layer}.${m.target}`, m]))
  return { config, scale: loraScale(config), modules, module: (layer, target) => byKey.get(`${layer}.${target}`) }
}

export const disposeDeviceLora = (device: DeviceLora): void => {
  for (const m of device.modules) {
    m.aT.dispose()
    m.bT.dispose()
  }
}

/** The device variables in a fixed order (A then B per module), as optimizers see them. */
export const deviceLoraVariables = (device: DeviceLora): Array<tf.Variable> =>
  device.modules.flatMap((m) => [m.aT, m.bT])

/** Reads the variables back into a host adapter carrying `identity`. */
export const downloadLora = (device: DeviceLora, identity: LoraIdentity, trainedSteps: number): LoraAdapter => ({
  id: identity.id,
  parentModelHash: identity.parentModelHash,
  config: identity.config,
  createdAtStep: identity.createdAtStep,
  trainedSteps,
  modules: device.modules.map((m) => {
    const [inner, r] = [m.aT.shape[0]!, m.aT.shape[1]!]
    const out = m.bT.shape[1]!
    return {
      layer: m.layer,
      target: m.target,
      a: { shape: [r, inner], data: transposeHost({ shape: [inner, r], data: m.aT.dataSync() as Float32Array }) },
      b: { shape: [out, r], data: transposeHost({ shape: [r, out], data: m.bT.dataSync() as Float32Array }) }
    }
  })
})

/**
 * A `[rows, cols]` keep-mask scaled by 1/keep (inverted dropout), drawn from our own PRNG so a
 * training run is reproducible on every backend.
 */
export const dropoutMask = (shape: ReadonlyArray<number>, rate: number, seed: number): tf.Tensor => {
  const size = shape.reduce((a, b) => a * b, 1)
  const keep = 1 - rate
  const data = new Float32Array(size)
  const rng = makeRng(seed)
  for (let i = 0; i < size; i++) data[i] = rng() < keep ? 1 / keep : 0
  return tf.tensor(data, [...shape], "float32")
}

/**
 * The hook that adds `dropout(x) @ Aᵀ @ Bᵀ · scale` to each adapted projection. Dropout applies
 * only when `training` is given; each call of the hook then draws a fresh mask from the stream
 * (`training.seed`, call index), so a forward pass is reproducible given its seed.
 */
export const loraHook = (device: DeviceLora, training?: { readonly seed: number } | undefined): ProjectionHook => {
  let calls = 0
  return (layer, projection, x) => {
    const m = device.module(layer, projection)
    if (m === undefined) return undefined
    const inner = x.shape[x.shape.length - 1]!
    let flat: tf.Tensor = tf.reshape(x, [-1, inner])
    if (training !== undefined && device.config.dropout > 0) {
      flat = tf.mul(flat, dropoutMask(flat.shape, device.config.dropout, deriveSeed(training.seed, calls++)))
    }
    const low = tf.matMul(flat as tf.Tensor2D, m.aT)
    const y = tf.mul(tf.matMul(low, m.bT), device.scale)
    return tf.reshape(y, [...x.shape.slice(0, -1), m.bT.shape[1]!])
  }
}
