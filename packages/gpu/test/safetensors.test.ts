import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterEach, vi } from "vitest"
import {
  readSafetensors,
  readSafetensorsHeader,
  readSafetensorsTensors,
  writeSafetensors
} from "../src/checkpoint/Safetensors.js"
import type { HostTensor } from "../src/model/ModelConfig.js"
import { mulberry32, tempDir } from "../src/testing/HfFixture.js"

const tensor = (shape: ReadonlyArray<number>, values: ArrayLike<number>): HostTensor => ({
  shape,
  data: Float32Array.from(values)
})

const randomTensor = (shape: ReadonlyArray<number>, seed: number): HostTensor => {
  const random = mulberry32(seed)
  return { shape, data: Float32Array.from({ length: shape.reduce((n, d) => n * d, 1) }, () => random() - 0.5) }
}

/** Builds a safetensors file by hand: `header` verbatim (unpadded), then `data`. */
const rawFile = (path: string, header: string | object, data: Uint8Array = new Uint8Array()) =>
  Effect.promise(() => {
    const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header))
    const prefix = Buffer.alloc(8)
    prefix.writeBigUInt64LE(BigInt(json.length))
    return Fs.promises.writeFile(path, Buffer.concat([prefix, json, data]))
  })

const u16le = (values: ReadonlyArray<number>): Uint8Array => {
  const bytes = Buffer.alloc(values.length * 2)
  values.forEach((v, i) => bytes.writeUInt16LE(v, i * 2))
  return bytes
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe("safetensors", () => {
  it.effect("round-trips float32 tensors and metadata exactly", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("safetensors")
      const path = Path.join(dir, "adapter.safetensors")
      const tensors = new Map<string, HostTensor>([
        ["a.weight", randomTensor([3, 5], 1)],
        ["b.bias", tensor([4], [1, -2, Infinity, -0])],
        ["scalar", tensor([], [42.5])],
        ["empty", tensor([0, 3], [])]
      ])
      yield* writeSafetensors(path, tensors, { format: "pt", note: "hello" })

      const read = yield* readSafetensors(path)
      expect([...read.keys()].sort()).toEqual([...tensors.keys()].sort())
      for (const [name, t] of tensors) {
        expect(read.get(name)!.shape).toEqual(t.shape)
        expect(read.get(name)!.data).toEqual(t.data)
      }
      expect(Object.is(read.get("b.bias")!.data[3], -0)).toBe(true)

      const header = yield* readSafetensorsHeader(path)
      expect(header.metadata).toEqual({ format: "pt", note: "hello" })
      expect(header.dataStart % 8).toBe(0)
      expect(header.tensors.get("a.weight")!.dtype).toBe("F32")
      // Padding is spaces, so other readers see plain JSON.
      const bytes = yield* Effect.promise(() => Fs.promises.readFile(path))
      const raw = bytes.subarray(8, header.dataStart).toString("utf8")
      expect(raw).toMatch(/^\{.*\} *$/s)
      expect(JSON.parse(raw).__metadata__).toEqual({ format: "pt", note: "hello" })
      // No temporary file is left beside it.
      expect(yield* Effect.promise(() => Fs.promises.readdir(dir))).toEqual(["adapter.safetensors"])
    })))

  it.effect("accepts a record and replaces an existing file", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("safetensors")
      const path = Path.join(dir, "x.safetensors")
      yield* writeSafetensors(path, { old: tensor([1], [1]) })
      yield* writeSafetensors(path, { x: tensor([2, 2], [1, 2, 3, 4]) })
      const read = yield* readSafetensors(path)
      expect([...read.keys()]).toEqual(["x"])
      expect(Array.from(read.get("x")!.data)).toEqual([1, 2, 3, 4])
      expect((yield* readSafetensorsHeader(path)).metadata).toEqual({})
    })))

  it.effect("decodes F16 and BF16 to float32", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("safetensors")
      const path = Path.join(dir, "half.safetensors")
      // F16: 1, -2, 0.5, 65504 (max), 2^-24 (smallest subnormal), -0, +inf, NaN
      const half = u16le([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00])
      // BF16: 1, -2, 3.140625, 1e-38-ish (0x006d), -inf
      const brain = u16le([0x3f80, 0xc000, 0x4049, 0x006d, 0xff80])
      yield* rawFile(
        path,
        {
          h: { dtype: "F16", shape: [2, 4], data_offsets: [0, 16] },
          b: { dtype: "BF16", shape: [5], data_offsets: [16, 26] }
        },
        Buffer.concat([half, brain])
      )
      const read = yield* readSafetensors(path)
      expect(read.get("h")!.shape).toEqual([2, 4])
      expect(Array.from(read.get("h")!.data)).toEqual([1, -2, 0.5, 65504, 2 ** -24, -0, Infinity, NaN])
      expect(Object.is(read.get("h")!.data[5], -0)).toBe(true)
      const bf = read.get("b")!.data
      expect(Array.from(bf.subarray(0, 3))).toEqual([1, -2, 3.140625])
      expect(bf[3]).toBe(new Float32Array(new Uint32Array([0x006d << 16]).buffer)[0])
      expect(bf[4]).toBe(-Infinity)
    })))

  it.effect("reads only the byte ranges of the tensors asked for", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("safetensors")
      const path = Path.join(dir, "big.safetensors")
      const big = randomTensor([256, 1024], 2) // 1 MiB
      const small = randomTensor([8], 3)
      yield* writeSafetensors(path, new Map([["big", big], ["small", small]]))

      let bytesRead = 0
      const open = Fs.promises.open
      vi.spyOn(Fs.promises, "open").mockImplementation(async (...args: Parameters<typeof open>) => {
        const handle = await open(...args)
        const read = handle.read.bind(handle) as (...a: Array<unknown>) => Promise<Fs.promises.FileReadResult<never>>
        handle.read = (async (...a: Array<unknown>) => {
          const result = await read(...a)
          bytesRead += result.bytesRead
          return result
        }) as typeof handle.read
        return handle
      })

      const read = yield* readSafetensors(path, new Set(["small"]))
      expect([...read.keys()]).toEqual(["small"])
      expect(read.get("small")!.data).toEqual(small.data)
      const header = yield* readSafetensorsHeader(path)
      expect(bytesRead).toBe(2 * header.dataStart + 8 * 4)

      // Same through an already-read header: only the tensor's bytes.
      bytesRead = 0
      const again = yield* readSafetensorsTensors(header, new Set(["small"]))
      expect(again.get("small")!.data).toEqual(small.data)
      expect(bytesRead).toBe(8 * 4)
    })))

  describe("failures", () => {
    const flipRead = (setup: (path: string) => Effect.Effect<void>, names?: ReadonlySet<string>) =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("safetensors")
        const path = Path.join(dir, "bad.safetensors")
        yield* setup(path)
        const error = yield* Effect.flip(readSafetensors(path, names))
        return { error, path }
      }))

    it.effect("a missing file is NotFound", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(readSafetensors("/nonexistent/dir/x.safetensors"))
        expect(error._tag).toBe("CheckpointError")
        expect(error.reason).toBe("NotFound")
        expect(error.file).toBe("/nonexistent/dir/x.safetensors")
      }))

    it.effect("a file shorter than the length prefix is Truncated at the header", () =>
      Effect.gen(function*() {
        const { error, path } = yield* flipRead((p) => Effect.promise(() => Fs.promises.writeFile(p, "abc")))
        expect(error.reason).toBe("Truncated")
        expect(error.field).toBe("header")
        expect(error.file).toBe(path)
      }))

    it.effect("a header length beyond the file is Truncated at the header", () =>
      Effect.gen(function*() {
        const { error } = yield* flipRead((p) =>
          Effect.promise(() => {
            const prefix = Buffer.alloc(8)
            prefix.writeBigUInt64LE(1000n)
            return Fs.promises.writeFile(p, Buffer.concat([prefix, Buffer.from("{}")]))
          })
        )
        expect(error.reason).toBe("Truncated")
        expect(error.field).toBe("header")
      }))

    it.effect("a header that is not JSON is Malformed", () =>
      Effect.gen(function*() {
        const { error } = yield* flipRead((p) => rawFile(p, "{\"a\": {\"dtype\": "))
        expect(error.reason).toBe("Malformed")
        expect(error.field).toBe("header")
      }))

    it.effect("a tensor entry without data_offsets is Malformed, naming the tensor", () =>
      Effect.gen(function*() {
        const { error } = yield* flipRead((p) => rawFile(p, { w: { dtype: "F32", shape: [1] } }, new Uint8Array(4)))
        expect(error.reason).toBe("Malformed")
        expect(error.field).toBe("w")
      }))

    it.effect("data_offsets that disagree with the shape are a ShapeMismatch", () =>
      Effect.gen(function*() {
        const { error, path } = yield* flipRead((p) =>
          rawFile(p, { w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 16] } }, new Uint8Array(24))
        )
        expect(error.reason).toBe("ShapeMismatch")
        expect(error.field).toBe("w")
        expect(error.file).toBe(path)
      }))

    it.effect("a tensor running past the end of the file is Truncated, naming the tensor", () =>
      Effect.gen(function*() {
        const { error } = yield* flipRead((p) =>
          rawFile(p, { w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] } }, new Uint8Array(20))
        )
        expect(error.reason).toBe("Truncated")
        expect(error.field).toBe("w")
      }))

    it.effect("an undecodable dtype is UnknownDtype when asked for, and harmless otherwise", () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("safetensors")
        const path = Path.join(dir, "ints.safetensors")
        yield* rawFile(
          path,
          {
            ids: { dtype: "I64", shape: [2], data_offsets: [0, 16] },
            w: { dtype: "F32", shape: [1], data_offsets: [16, 20] }
          },
          Buffer.concat([new Uint8Array(16), Buffer.from(new Float32Array([7]).buffer)])
        )
        const error = yield* Effect.flip(readSafetensors(path))
        expect(error.reason).toBe("UnknownDtype")
        expect(error.field).toBe("ids")
        const subset = yield* readSafetensors(path, new Set(["w"]))
        expect(Array.from(subset.get("w")!.data)).toEqual([7])
      })))

    it.effect("asking for a tensor the file lacks is MissingTensor", () =>
      Effect.gen(function*() {
        const { error } = yield* flipRead(
          (p) => writeSafetensors(p, { w: tensor([1], [1]) }).pipe(Effect.orDie),
          new Set(["w", "nope"])
        )
        expect(error.reason).toBe("MissingTensor")
        expect(error.field).toBe("nope")
      }))

    it.effect("writing a tensor whose data does not fill its shape is a ShapeMismatch", () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("safetensors")
        const path = Path.join(dir, "w.safetensors")
        const error = yield* Effect.flip(writeSafetensors(path, { w: tensor([2, 2], [1, 2, 3]) }))
        expect(error.reason).toBe("ShapeMismatch")
        expect(error.field).toBe("w")
        expect(yield* Effect.promise(() => Fs.promises.readdir(dir))).toEqual([])
      })))

    it.effect("writing into a missing directory is NotFound and names the target", () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* tempDir("safetensors")
        const path = Path.join(dir, "missing", "w.safetensors")
        const error = yield* Effect.flip(writeSafetensors(path, { w: tensor([1], [1]) }))
        expect(error.reason).toBe("NotFound")
        expect(error.file).toBe(path)
      })))
  })
})
