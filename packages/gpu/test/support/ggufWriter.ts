/**
 * A small GGUF writer for tests: enough of the format (version 3, little-endian) to make
 * synthetic checkpoints, including malformed, truncated and quantised ones, without shipping
 * binary fixtures.
 */
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { GgmlType, permuteRopeRows, Q8_0_BLOCK } from "../../src/checkpoint/Gguf.js"
import { makeRng } from "../../src/model/Sampling.js"

/** GGUF metadata value types (`gguf_type`). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12
} as const

/** A metadata value with its wire type spelled out. */
export interface TypedValue {
  readonly type: number
  readonly value: number | bigint | string | boolean | ReadonlyArray<number | bigint | string | boolean>
  /** Element type, for arrays. */
  readonly itemType?: number
}

/**
 * A metadata value: strings, booleans, bigints (uint64) and integers (uint32, or int32 when
 * negative) are typed by their JavaScript type, other numbers are float32; arrays of them
 * likewise. Use `TypedValue` to force a type (e.g. a float32 array whose values happen to be whole).
 */
export type MetadataInput =
  | string
  | boolean
  | number
  | bigint
  | ReadonlyArray<string>
  | ReadonlyArray<number>
  | TypedValue

export const f32 = (value: number): TypedValue => ({ type: GgufValueType.FLOAT32, value })
export const f32Array = (values: ReadonlyArray<number>): TypedValue => ({
  type: GgufValueType.ARRAY,
  itemType: GgufValueType.FLOAT32,
  value: values
})
export const i32Array = (values: ReadonlyArray<number>): TypedValue => ({
  type: GgufValueType.ARRAY,
  itemType: GgufValueType.INT32,
  value: values
})

export interface TensorInput {
  readonly name: string
  /** GGUF order: innermost dimension first (a `[out, in]` matrix is `[in, out]`). */
  readonly dims: ReadonlyArray<number>
  /** ggml type id (`GgmlType`, or anything else to test rejection). */
  readonly type: number
  readonly data: Uint8Array
}

export interface GgufInput {
  readonly metadata: ReadonlyArray<readonly [string, MetadataInput]>
  readonly tensors: ReadonlyArray<TensorInput>
  /** Defaults to "GGUF"; tests override it to make a file with bad magic. */
  readonly magic?: string
  readonly version?: number
  readonly alignment?: number
}

const typeOf = (value: number | bigint | string | boolean): number =>
  typeof value === "string"
    ? GgufValueType.STRING
    : typeof value === "boolean"
    ? GgufValueType.BOOL
    : typeof value === "bigint"
    ? GgufValueType.UINT64
    : Number.isInteger(value)
    ? value < 0 ? GgufValueType.INT32 : GgufValueType.UINT32
    : GgufValueType.FLOAT32

const toTyped = (input: MetadataInput): TypedValue => {
  if (typeof input === "object" && !Array.isArray(input)) return input as TypedValue
  if (Array.isArray(input)) {
    const values = input as ReadonlyArray<string | number>
    const itemType = values.every((v) => typeof v === "string")
      ? GgufValueType.STRING
      : values.every((v) => Number.isInteger(v))
      ? GgufValueType.INT32
      : GgufValueType.FLOAT32
    return { type: GgufValueType.ARRAY, itemType, value: values }
  }
  return {
    type: typeOf(input as number | bigint | string | boolean),
    value: input as number | bigint | string | boolean
  }
}

/** A growable little-endian byte buffer. */
class ByteWriter {
  private bytes = new Uint8Array(1024)
  private view = new DataView(this.bytes.buffer)
  length = 0

  private reserve(n: number): number {
    if (this.length + n > this.bytes.length) {
      const bigger = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n))
      bigger.set(this.bytes)
      this.bytes = bigger
      this.view = new DataView(bigger.buffer)
    }
    const at = this.length
    this.length += n
    return at
  }

  u8(v: number) {
    const at = this.reserve(1)
    this.view.setUint8(at, v)
  }
  i8(v: number) {
    const at = this.reserve(1)
    this.view.setInt8(at, v)
  }
  u16(v: number) {
    const at = this.reserve(2)
    this.view.setUint16(at, v, true)
  }
  i16(v: number) {
    const at = this.reserve(2)
    this.view.setInt16(at, v, true)
  }
  u32(v: number) {
    const at = this.reserve(4)
    this.view.setUint32(at, v, true)
  }
  i32(v: number) {
    const at = this.reserve(4)
    this.view.setInt32(at, v, true)
  }
  f32(v: number) {
    const at = this.reserve(4)
    this.view.setFloat32(at, v, true)
  }
  f64(v: number) {
    const at = this.reserve(8)
    this.view.setFloat64(at, v, true)
  }
  u64(v: number | bigint) {
    const at = this.reserve(8)
    this.view.setBigUint64(at, BigInt(v), true)
  }
  i64(v: number | bigint) {
    const at = this.reserve(8)
    this.view.setBigInt64(at, BigInt(v), true)
  }
  raw(data: Uint8Array) {
    const at = this.reserve(data.length)
    this.bytes.set(data, at)
  }
  string(s: string) {
    const encoded = new TextEncoder().encode(s)
    this.u64(encoded.length)
    this.raw(encoded)
  }
  padTo(alignment: number) {
    while (this.length % alignment !== 0) this.u8(0)
  }
  result(): Uint8Array {
    return this.bytes.slice(0, this.length)
  }
}

const writeScalar = (w: ByteWriter, type: number, value: number | bigint | string | boolean) => {
  switch (type) {
    case GgufValueType.UINT8:
      return w.u8(Number(value))
    case GgufValueType.INT8:
      return w.i8(Number(value))
    case GgufValueType.UINT16:
      return w.u16(Number(value))
    case GgufValueType.INT16:
      return w.i16(Number(value))
    case GgufValueType.UINT32:
      return w.u32(Number(value))
    case GgufValueType.INT32:
      return w.i32(Number(value))
    case GgufValueType.FLOAT32:
      return w.f32(Number(value))
    case GgufValueType.BOOL:
      return w.u8(value ? 1 : 0)
    case GgufValueType.STRING:
      return w.string(String(value))
    case GgufValueType.UINT64:
      return w.u64(typeof value === "bigint" ? value : Number(value))
    case GgufValueType.INT64:
      return w.i64(typeof value === "bigint" ? value : Number(value))
    case GgufValueType.FLOAT64:
      return w.f64(Number(value))
    default:
      throw new Error(`cannot write scalar of type ${type}`)
  }
}

/** Serialises a GGUF file. Tensor data is laid out in order, each aligned. */
export const encodeGguf = (input: GgufInput): Uint8Array => {
  const alignment = input.alignment ?? 32
  const w = new ByteWriter()
  w.raw(new TextEncoder().encode(input.magic ?? "GGUF"))
  w.u32(input.version ?? 3)
  w.u64(input.tensors.length)
  w.u64(input.metadata.length)
  for (const [key, raw] of input.metadata) {
    const typed = toTyped(raw)
    w.string(key)
    w.u32(typed.type)
    if (typed.type === GgufValueType.ARRAY) {
      const values = typed.value as ReadonlyArray<number | bigint | string | boolean>
      w.u32(typed.itemType!)
      w.u64(values.length)
      for (const v of values) writeScalar(w, typed.itemType!, v)
    } else {
      writeScalar(w, typed.type, typed.value as number | bigint | string | boolean)
    }
  }
  let offset = 0
  const offsets: Array<number> = []
  for (const t of input.tensors) {
    offsets.push(offset)
    offset += Math.ceil(t.data.length / alignment) * alignment
  }
  input.tensors.forEach((t, i) => {
    w.string(t.name)
    w.u32(t.dims.length)
    for (const d of t.dims) w.u64(d)
    w.u32(t.type)
    w.u64(offsets[i]!)
  })
  w.padTo(alignment)
  for (const t of input.tensors) {
    w.raw(t.data)
    w.padTo(alignment)
  }
  return w.result()
}

const tempDirs: Array<string> = []

/** Writes `bytes` to a fresh file under the OS temp folder and returns its path. */
export const writeTempFile = async (name: string, bytes: Uint8Array): Promise<string> => {
  const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "seal-gguf-"))
  tempDirs.push(dir)
  const file = Path.join(dir, name)
  await Fs.writeFile(file, bytes)
  return file
}

/** Deletes every folder `writeTempFile` made. */
export const removeTempFiles = async (): Promise<void> => {
  const dirs = tempDirs.splice(0)
  await Promise.all(dirs.map((dir) => Fs.rm(dir, { recursive: true, force: true })))
}

// ---------------------------------------------------------------------------------------------
// Encoding tensor data
// ---------------------------------------------------------------------------------------------

export const f32Bytes = (values: Float32Array): Uint8Array => new Uint8Array(values.slice().buffer)

/** float → IEEE binary16 bits, rounding to nearest even (handles subnormals, overflow → ∞). */
export const floatToHalf = (value: number): number => {
  const f = new Float32Array([value])
  const x = new Uint32Array(f.buffer)[0]!
  const sign = (x >>> 16) & 0x8000
  const exponent = (x >>> 23) & 0xff
  const mantissa = x & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0)
  const e = exponent - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    // Subnormal: shift the full significand (with its implicit 1) into place, rounding.
    const full = mantissa | 0x800000
    const shift = 14 - e
    const half = full >>> shift
    const rest = full & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    return sign | (half + (rest > halfway || (rest === halfway && (half & 1) === 1) ? 1 : 0))
  }
  const half = (e << 10) | (mantissa >>> 13)
  const rest = mantissa & 0x1fff
  // A carry out of the mantissa correctly bumps the exponent.
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1) ? 1 : 0))
}

export const f16Bytes = (values: Float32Array): Uint8Array => {
  const out = new Uint8Array(values.length * 2)
  const view = new DataView(out.buffer)
  values.forEach((v, i) => view.setUint16(i * 2, floatToHalf(v), true))
  return out
}

export const bf16Bytes = (values: Float32Array): Uint8Array => {
  const bits = new Uint32Array(values.slice().buffer)
  const out = new Uint8Array(values.length * 2)
  const view = new DataView(out.buffer)
  // Truncation is enough for tests that compare against the truncated value.
  bits.forEach((b, i) => view.setUint16(i * 2, b >>> 16, true))
  return out
}

/** ggml's Q8_0 quantisation: per 32-value block, scale = max|x| / 127 stored as f16, q = round(x / scale). */
export const q8_0Bytes = (values: Float32Array): Uint8Array => {
  if (values.length % Q8_0_BLOCK !== 0) throw new Error("Q8_0 needs whole 32-value blocks")
  const blocks = values.length / Q8_0_BLOCK
  const out = new Uint8Array(blocks * (2 + Q8_0_BLOCK))
  const view = new DataView(out.buffer)
  for (let b = 0; b < blocks; b++) {
    let amax = 0
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(values[b * Q8_0_BLOCK + j]!))
    const scale = amax / 127
    const inverse = scale === 0 ? 0 : 1 / scale
    const at = b * (2 + Q8_0_BLOCK)
    view.setUint16(at, floatToHalf(scale), true)
    for (let j = 0; j < Q8_0_BLOCK; j++) view.setInt8(at + 2 + j, Math.round(values[b * Q8_0_BLOCK + j]! * inverse))
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Synthetic models
// ---------------------------------------------------------------------------------------------

/** A deterministic pseudo-random stream (the project's mulberry32), so failures reproduce. */
export const random = makeRng

export const randomTensor = (count: number, next: () => number, scale = 1): Float32Array =>
  Float32Array.from({ length: count }, () => (next() * 2 - 1) * scale)

export interface SyntheticModelOptions {
  readonly architecture?: string
  readonly hiddenSize?: number
  readonly intermediateSize?: number
  readonly numLayers?: number
  readonly numHeads?: number
  readonly numKvHeads?: number
  readonly vocab?: ReadonlyArray<string>
  readonly tieEmbeddings?: boolean
  /** How every tensor is stored. */
  readonly type?: number
  readonly seed?: number
}

export interface SyntheticModel {
  /** Canonical (Hugging Face) name → the float values the file encodes, in Hugging Face order. */
  readonly hf: Map<string, { readonly shape: ReadonlyArray<number>; readonly data: Float32Array }>
  readonly input: GgufInput
}

/** A tiny byte-level vocabulary: specials, 256 byte pieces, then a few words. */
export const tinyVocab: ReadonlyArray<string> = [
  "<unk>",
  "<s>",
  "</s>",
  ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`),
  "\u2581",
  "\u2581a",
  "\u2581b"
]

const encodeAs = (type: number, values: Float32Array): Uint8Array => {
  switch (type) {
    case GgmlType.F16:
      return f16Bytes(values)
    case GgmlType.BF16:
      return bf16Bytes(values)
    case GgmlType.Q8_0:
      return q8_0Bytes(values)
    default:
      return f32Bytes(values)
  }
}

/**
 * A complete, valid GGUF model (llama-like or qwen2) with random weights, in the layout
 * llama.cpp's converter writes (llama q/k rows permuted, dims reversed). Tests edit `input`
 * (drop a tensor, change a shape or type) to make broken files.
 */
export const syntheticModel = (options: SyntheticModelOptions = {}): SyntheticModel => {
  const arch = options.architecture ?? "llama"
  const d = options.hiddenSize ?? 32
  const f = options.intermediateSize ?? 64
  const layers = options.numLayers ?? 2
  const heads = options.numHeads ?? 4
  const kvHeads = options.numKvHeads ?? 2
  const headDim = d / heads
  const vocab = options.vocab ?? tinyVocab
  const type = options.type ?? GgmlType.F32
  const next = random(options.seed ?? 1)

  const hf = new Map<string, { shape: ReadonlyArray<number>; data: Float32Array }>()
  const tensors: Array<TensorInput> = []
  const add = (hfName: string, ggufName: string, shape: ReadonlyArray<number>, ropeHeads?: number) => {
    const count = shape.reduce((a, b) => a * b, 1)
    const data = randomTensor(count, next, 0.5)
    hf.set(hfName, { shape, data })
    const cols = shape.length === 2 ? shape[1]! : 1
    const stored = ropeHeads === undefined ? data : permuteRopeRows(data, ropeHeads, cols)
    // Norms and biases are 1-D; ggml keeps those F32 even in quantised files.
    const tensorType = shape.length === 1 ? GgmlType.F32 : type
    tensors.push({ name: ggufName, dims: [...shape].reverse(), type: tensorType, data: encodeAs(tensorType, stored) })
  }

  add("model.embed_tokens.weight", "token_embd.weight", [vocab.length, d])
  add("model.norm.weight", "output_norm.weight", [d])
  if (options.tieEmbeddings !== true) add("lm_head.weight", "output.weight", [vocab.length, d])
  const permuted = arch === "llama"
  for (let i = 0; i < layers; i++) {
    const hfp = `model.layers.${i}`
    const blk = `blk.${i}`
    add(`${hfp}.input_layernorm.weight`, `${blk}.attn_norm.weight`, [d])
    add(`${hfp}.self_attn.q_proj.weight`, `${blk}.attn_q.weight`, [heads * headDim, d], permuted ? heads : undefined)
    add(
      `${hfp}.self_attn.k_proj.weight`,
      `${blk}.attn_k.weight`,
      [kvHeads * headDim, d],
      permuted ? kvHeads : undefined
    )
    add(`${hfp}.self_attn.v_proj.weight`, `${blk}.attn_v.weight`, [kvHeads * headDim, d])
    add(`${hfp}.self_attn.o_proj.weight`, `${blk}.attn_output.weight`, [d, heads * headDim])
    if (arch === "qwen2") {
      add(`${hfp}.self_attn.q_proj.bias`, `${blk}.attn_q.bias`, [heads * headDim])
      add(`${hfp}.self_attn.k_proj.bias`, `${blk}.attn_k.bias`, [kvHeads * headDim])
      add(`${hfp}.self_attn.v_proj.bias`, `${blk}.attn_v.bias`, [kvHeads * headDim])
    }
    add(`${hfp}.post_attention_layernorm.weight`, `${blk}.ffn_norm.weight`, [d])
    add(`${hfp}.mlp.gate_proj.weight`, `${blk}.ffn_gate.weight`, [f, d])
    add(`${hfp}.mlp.up_proj.weight`, `${blk}.ffn_up.weight`, [f, d])
    add(`${hfp}.mlp.down_proj.weight`, `${blk}.ffn_down.weight`, [d, f])
  }

  const tokenTypes = vocab.map((t, id) => id === 0 ? 2 : id <= 2 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1)
  const metadata: Array<readonly [string, MetadataInput]> = [
    ["general.architecture", arch],
    ["general.name", "synthetic"],
    [`${arch}.context_length`, 128],
    [`${arch}.embedding_length`, d],
    [`${arch}.feed_forward_length`, f],
    [`${arch}.block_count`, layers],
    [`${arch}.attention.head_count`, heads],
    [`${arch}.attention.head_count_kv`, kvHeads],
    [`${arch}.rope.dimension_count`, headDim],
    [`${arch}.rope.freq_base`, f32(arch === "qwen2" ? 1000000 : 10000)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(1e-6)],
    ["tokenizer.ggml.model", "llama"],
    ["tokenizer.ggml.tokens", vocab],
    ["tokenizer.ggml.scores", f32Array(vocab.map((_, id) => -id))],
    ["tokenizer.ggml.token_type", i32Array(tokenTypes)],
    ["tokenizer.ggml.unknown_token_id", 0],
    ["tokenizer.ggml.bos_token_id", 1],
    ["tokenizer.ggml.eos_token_id", 2]
  ]
  return { hf, input: { metadata, tensors } }
}
