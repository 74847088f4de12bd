/**
 * Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
 * header mapping tensor names to `{ dtype, shape, data_offsets }` (offsets relative to the end of
 * the header), then the raw tensor bytes.
 *
 * Reads touch only the byte ranges of the tensors asked for, so a caller that wants a handful of
 * tensors from a multi-gigabyte shard pays for those alone.
 */
import { Effect, Either } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { HostTensor } from "../model/ModelConfig.js"
import { CheckpointError } from "./CheckpointError.js"

/** One tensor's entry in a safetensors header. */
export interface SafetensorsTensorInfo {
  readonly name: string
  /** The dtype exactly as the header spells it ("F32", "BF16", "I64", ...). */
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  /** Absolute byte offset of the first byte in the file (the header already accounted for). */
  readonly begin: number
  /** Absolute byte offset one past the last byte. */
  readonly end: number
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  readonly path: string
  readonly fileSize: number
  /** Where the data section starts: 8 + the header length. */
  readonly dataStart: number
  /** In header order. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>
  /** The `__metadata__` entry's string values (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>
}

/** Dtypes this module decodes into float32 host tensors. */
export const decodableDtypes: ReadonlySet<string> = new Set(["F32", "F16", "BF16"])

// Element sizes of every dtype the format defines, so sizes can be checked even for tensors we
// will never decode (an I64 buffer in a header that otherwise lies is still a lying header).
const dtypeSizes: ReadonlyMap<string, number> = new Map([
  ["F64", 8],
  ["F32", 4],
  ["F16", 2],
  ["BF16", 2],
  ["I64", 8],
  ["U64", 8],
  ["I32", 4],
  ["U32", 4],
  ["I16", 2],
  ["U16", 2],
  ["I8", 1],
  ["U8", 1],
  ["BOOL", 1],
  ["F8_E4M3", 1],
  ["F8_E5M2", 1]
])

// The reference implementation refuses headers above 100 MB; a larger length is garbage, and
// honouring it would allocate whatever the file claims.
const maxHeaderBytes = 100_000_000

// Node caps a single read/write at 2 GiB; larger tensors go in pieces.
const maxIoChunk = 1 << 30

const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const metadataKey = "__metadata__"

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

const elementCount = (shape: ReadonlyArray<number>): number => shape.reduce((n, d) => n * d, 1)

const isNonNegativeInt = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** IEEE half -> float32 for all 65536 bit patterns, built on first use (256 KiB). */
let halfTable: Float32Array | undefined
const getHalfTable = (): Float32Array => {
  if (halfTable !== undefined) return halfTable
  const table = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1
    const exponent = (h >> 10) & 0x1f
    const mantissa = h & 0x3ff
    table[h] = exponent === 0
      ? sign * mantissa * 2 ** -24
      : exponent === 0x1f
      ? (mantissa === 0 ? sign * Infinity : NaN)
      : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
  }
  halfTable = table
  return table
}

/** Reverses each `width`-byte group in place: file bytes are little-endian, the host's are not. */
const swapBytes = (bytes: Uint8Array, width: number): void => {
  for (let i = 0; i + width <= bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a]!
      bytes[a] = bytes[b]!
      bytes[b] = t
    }
  }
}

/**
 * Validates a decoded header against the file it came from. Returns the header or the first
 * problem found, naming the tensor at fault.
 */
export const parseSafetensorsHeader = (
  path: string,
  json: unknown,
  fileSize: number,
  dataStart: number
): Either.Either<SafetensorsHeader, CheckpointError> => {
  if (!isRecord(json)) {
    return Either.left(
      new CheckpointError({ file: path, field: "header", reason: "Malformed", detail: "header is not a JSON object" })
    )
  }
  const tensors = new Map<string, SafetensorsTensorInfo>()
  const metadata: Record<string, string> = {}
  for (const [name, entry] of Object.entries(json)) {
    if (name === metadataKey) {
      // Metadata is free-form and never affects decoding; keep the string values, as the format
      // defines, and drop anything else rather than reject a file over it.
      if (isRecord(entry)) {
        for (const [k, v] of Object.entries(entry)) if (typeof v === "string") metadata[k] = v
      }
      continue
    }
    const malformed = (detail: string) =>
      Either.left(new CheckpointError({ file: path, field: name, reason: "Malformed", detail }))
    if (!isRecord(entry)) return malformed("tensor entry is not an object")
    const { data_offsets: offsets, dtype, shape } = entry
    if (typeof dtype !== "string") return malformed("missing or non-string dtype")
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
      return malformed("shape must be an array of non-negative integers")
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
      return malformed("data_offsets must be [begin, end] with non-negative integers")
    }
    const [begin, end] = offsets as [number, number]
    if (end < begin) return malformed(`data_offsets [${begin}, ${end}] end before they begin`)
    const size = dtypeSizes.get(dtype)
    if (size !== undefined) {
      const expected = elementCount(shape) * size
      if (end - begin !== expected) {
        return Either.left(
          new CheckpointError({
            file: path,
            field: name,
            reason: "ShapeMismatch",
            detail: `data_offsets cover ${end - begin} bytes but ${dtype}[${shape.join(", ")}] needs ${expected}`
          })
        )
      }
    }
    if (dataStart + end > fileSize) {
      return Either.left(
        new CheckpointError({
          file: path,
          field: name,
          reason: "Truncated",
          detail: `data ends at byte ${dataStart + end} but the file has ${fileSize}`
        })
      )
    }
    tensors.set(name, { name, dtype, shape, begin: dataStart + begin, end: dataStart + end })
  }
  return Either.right({ path, fileSize, dataStart, tensors, metadata })
}

// ---------------------------------------------------------------------------------------------
// IO
// ---------------------------------------------------------------------------------------------

const ioError = (file: string, doing: string) => (cause: unknown): CheckpointError => {
  const code = (cause as { readonly code?: unknown } | undefined)?.code
  if (code === "ENOENT" || code === "ENOTDIR") {
    return new CheckpointError({ file, reason: "NotFound", detail: "no such file" })
  }
  if (code === "EISDIR") return new CheckpointError({ file, reason: "NotFound", detail: "is a directory, not a file" })
  const message = cause instanceof Error ? cause.message : String(cause)
  return new CheckpointError({ file, reason: "Io", detail: `cannot ${doing}: ${message}` })
}

/** Opens `path`; errors name `reportAs`, so a temporary file's failure names the file the caller asked for. */
const openFile = (path: string, flags: string, doing: string, reportAs: string = path) =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: () => Fs.promises.open(path, flags), catch: ioError(reportAs, doing) }),
    (handle) => Effect.tryPromise(() => handle.close()).pipe(Effect.ignore)
  )

/** Reads `target.length` bytes at `position`, looping over short reads; returns how many arrived. */
const readFully = (handle: Fs.promises.FileHandle, path: string, target: Uint8Array, position: number) =>
  Effect.tryPromise({
    try: async () => {
      let done = 0
      while (done < target.length) {
        const length = Math.min(target.length - done, maxIoChunk)
        const { bytesRead } = await handle.read(target, done, length, position + done)
        if (bytesRead === 0) break
        done += bytesRead
      }
      return done
    },
    catch: ioError(path, "read")
  })

const writeFully = (handle: Fs.promises.FileHandle, path: string, source: Uint8Array, position: number) =>
  Effect.tryPromise({
    try: async () => {
      let done = 0
      while (done < source.length) {
        const length = Math.min(source.length - done, maxIoChunk)
        const { bytesWritten } = await handle.write(source, done, length, position + done)
        done += bytesWritten
      }
    },
    catch: ioError(path, "write")
  })

const readHeaderFrom = (handle: Fs.promises.FileHandle, path: string) =>
  Effect.gen(function*() {
    const stat = yield* Effect.tryPromise({ try: () => handle.stat(), catch: ioError(path, "stat") })
    const fileSize = stat.size
    const truncated = (detail: string) =>
      new CheckpointError({ file: path, field: "header", reason: "Truncated", detail })
    if (fileSize < 8) return yield* truncated(`file has ${fileSize} bytes, fewer than the 8-byte header length`)
    const prefix = new Uint8Array(8)
    if ((yield* readFully(handle, path, prefix, 0)) < 8) return yield* truncated("file ended inside the header length")
    const headerLength = new DataView(prefix.buffer).getBigUint64(0, true)
    if (headerLength > BigInt(fileSize - 8)) {
      return yield* truncated(`header length ${headerLength} runs past the end of the ${fileSize}-byte file`)
    }
    if (headerLength > BigInt(maxHeaderBytes)) {
      return yield* new CheckpointError({
        file: path,
        field: "header",
        reason: "Malformed",
        detail: `header length ${headerLength} exceeds the ${maxHeaderBytes}-byte limit`
      })
    }
    const headerBytes = new Uint8Array(Number(headerLength))
    if ((yield* readFully(handle, path, headerBytes, 8)) < headerBytes.length) {
      return yield* truncated("file ended inside the header")
    }
    const json = yield* Effect.try({
      try: () => JSON.parse(new TextDecoder().decode(headerBytes)) as unknown,
      catch: (e) =>
        new CheckpointError({
          file: path,
          field: "header",
          reason: "Malformed",
          detail: `header is not valid JSON: ${e instanceof Error ? e.message : String(e)}`
        })
    })
    return yield* parseSafetensorsHeader(path, json, fileSize, 8 + headerBytes.length)
  })

const readTensorFrom = (handle: Fs.promises.FileHandle, path: string, info: SafetensorsTensorInfo) =>
  Effect.gen(function*() {
    const count = elementCount(info.shape)
    const byteLength = info.end - info.begin
    const out = new Float32Array(count)
    // F32 lands straight in the output; the 16-bit formats go through a scratch buffer.
    const raw = info.dtype === "F32" ? new Uint8Array(out.buffer) : new Uint8Array(byteLength)
    const got = yield* readFully(handle, path, raw, info.begin)
    if (got < byteLength) {
      return yield* new CheckpointError({
        file: path,
        field: info.name,
        reason: "Truncated",
        detail: `file ended after ${got} of ${byteLength} bytes`
      })
    }
    if (info.dtype === "F32") {
      if (!hostIsLittleEndian) swapBytes(raw, 4)
      return out
    }
    if (!hostIsLittleEndian) swapBytes(raw, 2)
    const halves = new Uint16Array(raw.buffer, 0, count)
    if (info.dtype === "BF16") {
      // bfloat16 is the top half of a float32.
      const bits = new Uint32Array(out.buffer)
      for (let i = 0; i < count; i++) bits[i] = halves[i]! << 16
    } else {
      const table = getHalfTable()
      for (let i = 0; i < count; i++) out[i] = table[halves[i]!]!
    }
    return out
  })

/** Checks the requested names exist and decode, before any data is read. */
const selectTensors = (header: SafetensorsHeader, names: ReadonlySet<string> | undefined) =>
  Effect.gen(function*() {
    const selected: Array<SafetensorsTensorInfo> = []
    for (const name of names ?? header.tensors.keys()) {
      const info = header.tensors.get(name)
      if (info === undefined) {
        return yield* new CheckpointError({
          file: header.path,
          field: name,
          reason: "MissingTensor",
          detail: "no such tensor in the header"
        })
      }
      if (!decodableDtypes.has(info.dtype)) {
        return yield* new CheckpointError({
          file: header.path,
          field: name,
          reason: "UnknownDtype",
          detail: `dtype ${info.dtype} is not one of ${[...decodableDtypes].join(", ")}`
        })
      }
      selected.push(info)
    }
    // File order keeps the reads moving forward through the file.
    return selected.sort((a, b) => a.begin - b.begin)
  })

const readSelected = (
  handle: Fs.promises.FileHandle,
  header: SafetensorsHeader,
  names: ReadonlySet<string> | undefined
) =>
  Effect.gen(function*() {
    const selected = yield* selectTensors(header, names)
    const result = new Map<string, HostTensor>()
    for (const info of selected) {
      const data = yield* readTensorFrom(handle, header.path, info)
      result.set(info.name, { shape: info.shape, data })
    }
    return result
  })

/** Reads and validates only the header of a safetensors file. */
export const readSafetensorsHeader = (path: string): Effect.Effect<SafetensorsHeader, CheckpointError> =>
  Effect.scoped(
    Effect.flatMap(openFile(path, "r", "open"), (handle) => readHeaderFrom(handle, path))
  )

/**
 * Reads the tensors named in `names` (all of them when omitted) from a file whose header was
 * already read, decoding F32/F16/BF16 to float32. Only those tensors' byte ranges are read.
 */
export const readSafetensorsTensors = (
  header: SafetensorsHeader,
  names?: ReadonlySet<string>
): Effect.Effect<Map<string, HostTensor>, CheckpointError> =>
  Effect.scoped(
    Effect.flatMap(openFile(header.path, "r", "open"), (handle) => readSelected(handle, header, names))
  )

/**
 * Reads the tensors named in `names` (all of them when omitted) from a safetensors file. A name
 * the header lacks fails with "MissingTensor"; a dtype other than F32/F16/BF16 with
 * "UnknownDtype"; both before any tensor data is read.
 */
export const readSafetensors = (
  path: string,
  names?: ReadonlySet<string>
): Effect.Effect<Map<string, HostTensor>, CheckpointError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const handle = yield* openFile(path, "r", "open")
      const header = yield* readHeaderFrom(handle, path)
      return yield* readSelected(handle, header, names)
    })
  )

/** Serialises the header: JSON padded with spaces so the data section starts 8-byte aligned. */
const encodeHeader = (
  path: string,
  entries: ReadonlyArray<readonly [string, HostTensor]>,
  metadata: Readonly<Record<string, string>> | undefined
): Either.Either<{ readonly bytes: Uint8Array; readonly dataLength: number }, CheckpointError> => {
  const header: Record<string, unknown> = {}
  if (metadata !== undefined) header[metadataKey] = { ...metadata }
  let offset = 0
  for (const [name, tensor] of entries) {
    if (name === metadataKey) {
      return Either.left(
        new CheckpointError({ file: path, field: name, reason: "Malformed", detail: "reserved name for metadata" })
      )
    }
    if (!tensor.shape.every(isNonNegativeInt) || elementCount(tensor.shape) !== tensor.data.length) {
      return Either.left(
        new CheckpointError({
          file: path,
          field: name,
          reason: "ShapeMismatch",
          detail: `shape [${tensor.shape.join(", ")}] does not hold ${tensor.data.length} elements`
        })
      )
    }
    const end = offset + tensor.data.length * 4
    header[name] = { dtype: "F32", shape: [...tensor.shape], data_offsets: [offset, end] }
    offset = end
  }
  const json = new TextEncoder().encode(JSON.stringify(header))
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20)
  padded.set(json)
  return Either.right({ bytes: padded, dataLength: offset })
}

const tensorBytes = (data: Float32Array): Uint8Array => {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (hostIsLittleEndian) return view
  const copy = view.slice()
  swapBytes(copy, 4)
  return copy
}

/**
 * Writes `tensors` as float32 safetensors at `path`, with optional string `metadata` (PEFT puts
 * `{ format: "pt" }` there). The file appears atomically: it is written to a temporary file in
 * the same directory, synced, then renamed over `path`, so a crash never leaves a half-written
 * adapter where a reader would pick it up.
 */
export const writeSafetensors = (
  path: string,
  tensors: ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>,
  metadata?: Readonly<Record<string, string>>
): Effect.Effect<void, CheckpointError> =>
  Effect.gen(function*() {
    const entries: ReadonlyArray<readonly [string, HostTensor]> = tensors instanceof Map
      ? [...(tensors as ReadonlyMap<string, HostTensor>).entries()]
      : Object.entries(tensors as Readonly<Record<string, HostTensor>>)
    const header = yield* encodeHeader(path, entries, metadata)
    const prefix = new Uint8Array(8)
    new DataView(prefix.buffer).setBigUint64(0, BigInt(header.bytes.length), true)

    const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`
    const temp = Path.join(Path.dirname(path), `.${Path.basename(path)}.${suffix}`)
    const writeTemp = Effect.scoped(
      Effect.gen(function*() {
        const handle = yield* openFile(temp, "wx", "create", path)
        yield* writeFully(handle, path, prefix, 0)
        yield* writeFully(handle, path, header.bytes, 8)
        let position = 8 + header.bytes.length
        for (const [, tensor] of entries) {
          yield* writeFully(handle, path, tensorBytes(tensor.data), position)
          position += tensor.data.byteLength
        }
        yield* Effect.tryPromise({ try: () => handle.sync(), catch: ioError(path, "sync") })
      })
    )
    yield* writeTemp.pipe(
      Effect.zipRight(Effect.tryPromise({ try: () => Fs.promises.rename(temp, path), catch: ioError(path, "rename") })),
      Effect.onError(() => Effect.tryPromise(() => Fs.promises.rm(temp, { force: true })).pipe(Effect.ignore))
    )
  })
