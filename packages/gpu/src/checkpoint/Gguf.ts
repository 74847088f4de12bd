/**
 * Loading llama.cpp's GGUF files into the canonical (Hugging Face) weight layout.
 *
 * The header (metadata and tensor table) is parsed by `@huggingface/gguf`, which reads it in
 * chunks from the front of the file; each tensor's bytes are then read from its own byte range,
 * so the file is never held in memory whole. Tensors are dequantised to float32, renamed to the
 * Hugging Face names, and llama's q/k rows are put back into the `rotate_half` order (see
 * `unpermuteRopeRows`).
 */
import { gguf } from "@huggingface/gguf"
import { Effect } from "effect"
import * as Fs from "node:fs/promises"
import type { HostTensor, ModelConfig } from "../model/ModelConfig.js"
import { expectedWeightShapes, WeightNames } from "../model/ModelConfig.js"
import { bpeTokenizerFromGgufMetadata } from "../tokenizer/GgufBpe.js"
import { SentencePieceTokenizer } from "../tokenizer/SentencePiece.js"
import type { LoadedCheckpoint } from "./Checkpoint.js"
import { CheckpointError } from "./CheckpointError.js"
import { asNumber, describe, type Metadata, metadataReader, vocabularyTokens } from "./GgufMetadata.js"

/** The ggml tensor types this loader decodes (ids from ggml's `ggml_type`). */
export const GgmlType = {
  F32: 0,
  F16: 1,
  Q8_0: 8,
  BF16: 30
} as const

/** Q8_0 stores blocks of 32 values as one f16 scale followed by 32 int8s. */
export const Q8_0_BLOCK = 32
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK

// Names of the ggml types we refuse, so the error says "Q4_K" rather than "type 12".
const ggmlTypeNames: ReadonlyArray<string> = [
  "F32",
  "F16",
  "Q4_0",
  "Q4_1",
  "Q4_2",
  "Q4_3",
  "Q5_0",
  "Q5_1",
  "Q8_0",
  "Q8_1",
  "Q2_K",
  "Q3_K",
  "Q4_K",
  "Q5_K",
  "Q6_K",
  "Q8_K",
  "IQ2_XXS",
  "IQ2_XS",
  "IQ3_XXS",
  "IQ1_S",
  "IQ4_NL",
  "IQ3_S",
  "IQ2_S",
  "IQ4_XS",
  "I8",
  "I16",
  "I32",
  "I64",
  "F64",
  "IQ1_M",
  "BF16"
]
const ggmlTypeName = (type: number): string => ggmlTypeNames[type] ?? `type ${type}`

type SupportedArchitecture = ModelConfig["architecture"]
const supportedArchitectures: ReadonlyArray<SupportedArchitecture> = ["llama", "qwen2"]

interface TensorInfo {
  readonly name: string
  /** GGUF order: innermost (contiguous) dimension first. */
  readonly dims: ReadonlyArray<number>
  readonly type: number
  /** Absolute byte offset in the file. */
  readonly begin: number
  readonly byteLength: number
}

interface GgufHeader {
  readonly fileSize: number
  readonly metadata: Metadata
  readonly tensors: ReadonlyMap<string, TensorInfo>
}

// ---------------------------------------------------------------------------------------------
// RoPE row order
// ---------------------------------------------------------------------------------------------

/**
 * Hugging Face → GGUF order of the rows of a llama q or k projection (`[nHeads * headDim, cols]`,
 * row-major), as llama.cpp's converter does it: within each head, row `i` of the first half goes
 * to `2i` and row `i` of the second half to `2i + 1`, so llama.cpp can rotate adjacent pairs where
 * Hugging Face rotates halves. That is `w.reshape(nHeads, 2, headDim / 2, cols).swapaxes(1, 2)`.
 * Also works on a bias (`cols = 1`).
 */
export const permuteRopeRows = (data: Float32Array, nHeads: number, cols: number): Float32Array =>
  reorderRopeRows(data, nHeads, cols, true)

/**
 * GGUF → Hugging Face order, the inverse of `permuteRopeRows`:
 * `w.reshape(nHeads, headDim / 2, 2, cols).swapaxes(1, 2)`.
 */
export const unpermuteRopeRows = (data: Float32Array, nHeads: number, cols: number): Float32Array =>
  reorderRopeRows(data, nHeads, cols, false)

const reorderRopeRows = (data: Float32Array, nHeads: number, cols: number, toGguf: boolean): Float32Array => {
  const rows = data.length / cols
  const headDim = rows / nHeads
  if (!Number.isInteger(rows) || !Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new RangeError(`cannot split ${data.length} values into ${nHeads} heads of even size with ${cols} columns`)
  }
  const half = headDim / 2
  const out = new Float32Array(data.length)
  for (let h = 0; h < nHeads; h++) {
    const base = h * headDim
    for (let i = 0; i < half; i++) {
      for (let side = 0; side < 2; side++) {
        const hfRow = base + side * half + i
        const ggufRow = base + 2 * i + side
        const [from, to] = toGguf ? [hfRow, ggufRow] : [ggufRow, hfRow]
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols)
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Decoding tensor data
// ---------------------------------------------------------------------------------------------

let halfTable: Float32Array | undefined

/** Every f16 bit pattern's float32 value; 256 KiB, built on first use. */
const halfToFloatTable = (): Float32Array => {
  if (halfTable !== undefined) return halfTable
  const table = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h)
  halfTable = table
  return table
}

/** IEEE 754 binary16 bits → number. */
export const halfToFloat = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}

/** The number of bytes `count` values of ggml type `type` occupy, or undefined if unsupported. */
export const ggmlByteLength = (type: number, count: number): number | undefined => {
  switch (type) {
    case GgmlType.F32:
      return count * 4
    case GgmlType.F16:
    case GgmlType.BF16:
      return count * 2
    case GgmlType.Q8_0:
      return (count / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES
    default:
      return undefined
  }
}

/**
 * Decodes little-endian ggml tensor data to float32. `bytes` must hold exactly
 * `ggmlByteLength(type, count)` bytes.
 */
export const decodeGgmlData = (type: number, bytes: Uint8Array, count: number): Float32Array => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out = new Float32Array(count)
  switch (type) {
    case GgmlType.F32: {
      if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, count).slice()
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true)
      return out
    }
    case GgmlType.F16: {
      const table = halfToFloatTable()
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)]!
      return out
    }
    case GgmlType.BF16: {
      // bfloat16 is the top half of a float32.
      const bits = new Uint32Array(out.buffer)
      for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true) << 16
      return out
    }
    case GgmlType.Q8_0: {
      const table = halfToFloatTable()
      const blocks = count / Q8_0_BLOCK
      for (let b = 0; b < blocks; b++) {
        const at = b * Q8_0_BLOCK_BYTES
        const scale = table[view.getUint16(at, true)]!
        for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = scale * view.getInt8(at + 2 + j)
      }
      return out
    }
    default:
      throw new RangeError(`ggml type ${ggmlTypeName(type)} is not decodable`)
  }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/** Canonical (Hugging Face) name → GGUF tensor name for every weight `config` needs. */
export const ggufTensorNames = (config: ModelConfig): Map<string, string> => {
  const names = new Map<string, string>([
    [WeightNames.embed, "token_embd.weight"],
    [WeightNames.finalNorm, "output_norm.weight"],
    [WeightNames.lmHead, "output.weight"]
  ])
  for (let i = 0; i < config.numLayers; i++) {
    const hf = WeightNames.layer(i)
    const blk = `blk.${i}`
    names.set(hf.inputNorm, `${blk}.attn_norm.weight`)
    names.set(hf.postAttentionNorm, `${blk}.ffn_norm.weight`)
    names.set(hf.q, `${blk}.attn_q.weight`)
    names.set(hf.k, `${blk}.attn_k.weight`)
    names.set(hf.v, `${blk}.attn_v.weight`)
    names.set(hf.o, `${blk}.attn_output.weight`)
    names.set(hf.qBias, `${blk}.attn_q.bias`)
    names.set(hf.kBias, `${blk}.attn_k.bias`)
    names.set(hf.vBias, `${blk}.attn_v.bias`)
    names.set(hf.gate, `${blk}.ffn_gate.weight`)
    names.set(hf.up, `${blk}.ffn_up.weight`)
    names.set(hf.down, `${blk}.ffn_down.weight`)
  }
  return names
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

const readConfig = (
  file: string,
  metadata: Metadata,
  tensors: ReadonlyMap<string, TensorInfo>
): Effect.Effect<ModelConfig, CheckpointError> =>
  Effect.gen(function*() {
    const rawArchitecture = metadata["general.architecture"]
    const architecture = supportedArchitectures.find((a) => a === rawArchitecture)
    if (architecture === undefined) {
      return yield* new CheckpointError({
        file,
        field: "general.architecture",
        reason: "UnknownArchitecture",
        detail: `architecture ${JSON.stringify(rawArchitecture ?? null)} is not supported (supported: ${
          supportedArchitectures.join(", ")
        })`
      })
    }
    const read = metadataReader(file, metadata)
    const key = (suffix: string) => `${architecture}.${suffix}`

    const hiddenSize = yield* read.positiveInt(key("embedding_length"))
    const numLayers = yield* read.positiveInt(key("block_count"))
    const intermediateSize = yield* read.positiveInt(key("feed_forward_length"))
    const numHeads = yield* read.positiveInt(key("attention.head_count"))
    const numKvHeads = yield* read.positiveInt(key("attention.head_count_kv"), numHeads)
    const rmsNormEps = yield* read.number(key("attention.layer_norm_rms_epsilon"))
    const ropeTheta = yield* read.number(key("rope.freq_base"), 10000)
    const maxPositions = yield* read.positiveInt(key("context_length"))
    // key_length is the real head size when present; rope.dimension_count equals it for the
    // architectures we accept (both rotate the whole head).
    const headDim = yield* read.positiveInt(
      key("attention.key_length"),
      asNumber(metadata[key("rope.dimension_count")]) ?? hiddenSize / numHeads
    )
    if (numHeads % numKvHeads !== 0) {
      return yield* read.malformed(
        key("attention.head_count_kv"),
        `${numKvHeads} key/value heads do not divide ${numHeads} heads`
      )
    }
    if (headDim % 2 !== 0) {
      return yield* read.malformed(key("rope.dimension_count"), `head size ${headDim} is odd; RoPE needs pairs`)
    }

    const embedding = tensors.get("token_embd.weight")
    const tokens = metadata["tokenizer.ggml.tokens"]
    const vocabSize = embedding !== undefined && embedding.dims.length === 2
      ? embedding.dims[1]!
      : Array.isArray(tokens)
      ? tokens.length
      : undefined
    if (vocabSize === undefined) {
      return yield* new CheckpointError({
        file,
        field: "token_embd.weight",
        reason: "MissingTensor",
        detail: "no token embedding (and no tokenizer.ggml.tokens) to take the vocabulary size from"
      })
    }

    return {
      architecture,
      vocabSize,
      hiddenSize,
      intermediateSize,
      numLayers,
      numHeads,
      numKvHeads,
      headDim,
      maxPositions,
      rmsNormEps,
      ropeTheta,
      tieEmbeddings: !tensors.has("output.weight"),
      attentionBias: architecture === "qwen2"
    }
  })

/**
 * The SentencePiece tokenizer described by `tokenizer.ggml.*` metadata. Only llama.cpp's "llama"
 * (SPM) tokenizer model is handled here.
 */
export const sentencePieceFromGgufMetadata = (
  file: string,
  metadata: Readonly<Record<string, unknown>>
): Effect.Effect<SentencePieceTokenizer, CheckpointError> =>
  Effect.gen(function*() {
    const md = metadata as Metadata
    const tokens = yield* vocabularyTokens(file, md)
    const model = md["tokenizer.ggml.model"]
    if (model !== "llama") {
      return yield* new CheckpointError({
        file,
        field: "tokenizer.ggml.model",
        reason: "MissingTokenizer",
        detail: `tokenizer model ${
          JSON.stringify(model ?? null)
        } is not supported; only "llama" (SentencePiece) and "gpt2" (byte-level BPE) vocabularies can be read from GGUF`
      })
    }
    const read = metadataReader(file, md)
    const numberArray = (key: string): Effect.Effect<ReadonlyArray<number> | undefined, CheckpointError> => {
      const raw = md[key]
      if (raw === undefined) return Effect.succeed(undefined)
      const values = Array.isArray(raw) ? raw.map(asNumber) : []
      return values.length === tokens.length && values.every((v) => v !== undefined)
        ? Effect.succeed(values as Array<number>)
        : Effect.fail(read.malformed(key, `expected ${tokens.length} numbers, found ${describe(raw)}`))
    }
    const n = tokens.length
    return new SentencePieceTokenizer({
      tokens: tokens as ReadonlyArray<string>,
      scores: yield* numberArray("tokenizer.ggml.scores"),
      tokenTypes: yield* numberArray("tokenizer.ggml.token_type"),
      bosId: yield* read.optionalId("tokenizer.ggml.bos_token_id", n),
      eosId: yield* read.optionalId("tokenizer.ggml.eos_token_id", n),
      unkId: yield* read.optionalId("tokenizer.ggml.unknown_token_id", n),
      addBos: yield* read.optionalBool("tokenizer.ggml.add_bos_token", true),
      addSpacePrefix: yield* read.optionalBool("tokenizer.ggml.add_space_prefix", true)
    })
  })

// ---------------------------------------------------------------------------------------------
// File access
// ---------------------------------------------------------------------------------------------

const GGUF_MAGIC = "GGUF"
// Magic, version, tensor count and key/value count: the fixed part in front of the metadata.
const PREAMBLE_BYTES = 24

const openFile = (file: string): Effect.Effect<Fs.FileHandle, CheckpointError> =>
  Effect.tryPromise({
    try: () => Fs.open(file, "r"),
    catch: (cause) =>
      new CheckpointError({
        file,
        reason: "NotFound",
        detail: (cause as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : String(cause)
      })
  })

/** Reads `target.length` bytes at `position`; fails `Truncated` when the file ends first. */
const readExactly = (
  file: string,
  handle: Fs.FileHandle,
  target: Uint8Array,
  position: number,
  field: string
): Effect.Effect<void, CheckpointError> =>
  Effect.tryPromise({
    try: async () => {
      let done = 0
      while (done < target.length) {
        // Node caps one read at 2 GiB.
        const length = Math.min(target.length - done, 1 << 30)
        const { bytesRead } = await handle.read(target, done, length, position + done)
        if (bytesRead === 0) return done
        done += bytesRead
      }
      return done
    },
    catch: (cause) => new CheckpointError({ file, field, reason: "Malformed", detail: `read failed: ${String(cause)}` })
  }).pipe(
    Effect.flatMap((done) =>
      done === target.length ? Effect.void : Effect.fail(
        new CheckpointError({
          file,
          field,
          reason: "Truncated",
          detail: `the file ends ${target.length - done} bytes short of the end of ${field}`
        })
      )
    )
  )

const readHeader = (file: string, handle: Fs.FileHandle): Effect.Effect<GgufHeader, CheckpointError> =>
  Effect.gen(function*() {
    const fileSize = yield* Effect.tryPromise({
      try: () => handle.stat().then((s) => s.size),
      catch: (cause) => new CheckpointError({ file, reason: "NotFound", detail: String(cause) })
    })

    // Check the fixed preamble ourselves: @huggingface/gguf zero-fills past the end of a short
    // file, so it cannot tell a truncated file from a malformed one.
    const preamble = new Uint8Array(Math.min(PREAMBLE_BYTES, fileSize))
    yield* readExactly(file, handle, preamble, 0, "header")
    const magic = String.fromCharCode(...preamble.subarray(0, 4))
    if (preamble.length < 4 || magic !== GGUF_MAGIC) {
      if (preamble.length < 4 && GGUF_MAGIC.startsWith(magic)) {
        return yield* new CheckpointError({
          file,
          field: "header",
          reason: "Truncated",
          detail: "the file ends inside the magic"
        })
      }
      return yield* new CheckpointError({
        file,
        field: "magic",
        reason: "Malformed",
        detail: `not a GGUF file: starts with ${JSON.stringify(magic)} instead of "GGUF"`
      })
    }
    if (preamble.length < PREAMBLE_BYTES) {
      return yield* new CheckpointError({
        file,
        field: "header",
        reason: "Truncated",
        detail: `the file is ${fileSize} bytes, shorter than the ${PREAMBLE_BYTES}-byte GGUF preamble`
      })
    }
    const version = new DataView(preamble.buffer).getUint32(4, true)
    if (version !== 2 && version !== 3) {
      return yield* new CheckpointError({
        file,
        field: "version",
        reason: "Malformed",
        detail: (version & 0xffff) === 0
          ? "big-endian GGUF files are not supported"
          : `GGUF version ${version} is not supported (2 and 3 are)`
      })
    }

    const parsed = yield* Effect.tryPromise({
      try: () => gguf(file, { allowLocalFile: true }),
      catch: (cause) =>
        new CheckpointError({
          file,
          field: "header",
          reason: "Malformed",
          detail: `unreadable header: ${String(cause)}`
        })
    })
    const headerEnd = parsed.tensorInfoByteRange[1]
    if (headerEnd > fileSize) {
      return yield* new CheckpointError({
        file,
        field: "header",
        reason: "Truncated",
        detail: `the header needs ${headerEnd} bytes but the file has ${fileSize}`
      })
    }

    const dataStart = Number(parsed.tensorDataOffset)
    const tensors = new Map<string, TensorInfo>()
    for (const info of parsed.tensorInfos) {
      const dims = info.shape.map(Number)
      const count = dims.reduce((a, b) => a * b, 1)
      if (tensors.has(info.name)) {
        return yield* new CheckpointError({
          file,
          field: info.name,
          reason: "Malformed",
          detail: "duplicate tensor name"
        })
      }
      if (info.dtype === GgmlType.Q8_0 && (dims[0] ?? 0) % Q8_0_BLOCK !== 0) {
        return yield* new CheckpointError({
          file,
          field: info.name,
          reason: "Malformed",
          detail: `Q8_0 rows of ${dims[0]} values are not whole ${Q8_0_BLOCK}-value blocks`
        })
      }
      tensors.set(info.name, {
        name: info.name,
        dims,
        type: info.dtype,
        begin: dataStart + Number(info.offset),
        // Unsupported types get 0 here; they fail as UnknownDtype before anything is read.
        byteLength: ggmlByteLength(info.dtype, count) ?? 0
      })
    }
    return { fileSize, metadata: parsed.metadata as unknown as Metadata, tensors }
  })

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

interface PlannedTensor {
  readonly hfName: string
  readonly info: TensorInfo
  readonly shape: ReadonlyArray<number>
  /** Heads to un-permute the rows with (llama q/k), if any. */
  readonly ropeHeads: number | undefined
}

/** Matches every needed tensor to the file's table and checks names, shapes, types and extents. */
const planTensors = (
  file: string,
  config: ModelConfig,
  header: GgufHeader
): Effect.Effect<ReadonlyArray<PlannedTensor>, CheckpointError> =>
  Effect.gen(function*() {
    const names = ggufTensorNames(config)
    // Only llama's converter permutes q/k; qwen2 is stored in the rotate_half order already.
    const ropeHeads = new Map<string, number>()
    if (config.architecture === "llama") {
      for (let i = 0; i < config.numLayers; i++) {
        ropeHeads.set(WeightNames.layer(i).q, config.numHeads)
        ropeHeads.set(WeightNames.layer(i).k, config.numKvHeads)
      }
    }
    const plan: Array<PlannedTensor> = []
    for (const [hfName, shape] of expectedWeightShapes(config)) {
      const ggufName = names.get(hfName)!
      const info = header.tensors.get(ggufName)
      if (info === undefined) {
        return yield* new CheckpointError({
          file,
          field: ggufName,
          reason: "MissingTensor",
          detail: `tensor ${ggufName} (${hfName}) is not in the file`
        })
      }
      // GGUF lists dimensions innermost first; reversed they are the row-major shape.
      const actual = [...info.dims].reverse()
      if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
        return yield* new CheckpointError({
          file,
          field: ggufName,
          reason: "ShapeMismatch",
          detail: `expected shape [${shape.join(", ")}] for ${hfName}, found [${actual.join(", ")}] (GGUF dims [${
            info.dims.join(", ")
          }])`
        })
      }
      if (ggmlByteLength(info.type, 0) === undefined) {
        return yield* new CheckpointError({
          file,
          field: ggufName,
          reason: "UnknownDtype",
          detail: `tensor type ${ggmlTypeName(info.type)} is not supported (F32, F16, BF16 and Q8_0 are)`
        })
      }
      if (info.begin + info.byteLength > header.fileSize) {
        return yield* new CheckpointError({
          file,
          field: ggufName,
          reason: "Truncated",
          detail: `the tensor's data ends at byte ${info.begin + info.byteLength} but the file has ${header.fileSize}`
        })
      }
      plan.push({ hfName, info, shape, ropeHeads: ropeHeads.get(hfName) })
    }
    return plan
  })

/**
 * Loads a GGUF checkpoint (architectures "llama" and "qwen2"; tensor types F32, F16, BF16 and
 * Q8_0) with its SentencePiece or byte-level BPE vocabulary into host memory, in the Hugging Face
 * layout.
 */
export const loadGguf = (path: string): Effect.Effect<LoadedCheckpoint, CheckpointError> =>
  Effect.acquireUseRelease(
    openFile(path),
    (handle) =>
      Effect.gen(function*() {
        const header = yield* readHeader(path, handle)
        const config = yield* readConfig(path, header.metadata, header.tensors)
        const plan = yield* planTensors(path, config, header)
        const tokenizer = header.metadata["tokenizer.ggml.model"] === "gpt2"
          ? yield* bpeTokenizerFromGgufMetadata(path, header.metadata)
          : yield* sentencePieceFromGgufMetadata(path, header.metadata)

        const weights = new Map<string, HostTensor>()
        for (const { hfName, info, ropeHeads, shape } of plan) {
          const bytes = new Uint8Array(info.byteLength)
          yield* readExactly(path, handle, bytes, info.begin, info.name)
          const count = shape.reduce((a, b) => a * b, 1)
          const decoded = decodeGgmlData(info.type, bytes, count)
          // llama.cpp's converter interleaved the halves of each llama q/k head; undo it.
          const data = ropeHeads === undefined ? decoded : unpermuteRopeRows(decoded, ropeHeads, count / shape[0]!)
          weights.set(hfName, { shape, data })
        }
        return { config, weights, tokenizer, source: { format: "gguf", path } } satisfies LoadedCheckpoint
      }),
    (handle) => Effect.promise(() => handle.close())
  )
