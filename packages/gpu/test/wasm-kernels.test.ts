import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
// tfjs-core's Node bundle registers no gradients (only the ESM dist does, file by file); vitest
// and tsx load this ESM file, plain Node cannot (tfjs-core is not "type": "module").
import "@tensorflow/tfjs-core/dist/register_all_gradients.js"
import "@tensorflow/tfjs-backend-cpu"
import "@tensorflow/tfjs-backend-wasm"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { beforeAll } from "vitest"
import { makeRng } from "../src/model/Sampling.js"
import { asWasmBackend } from "../src/wasm/WasmBackendAccess.js"
import {
  registerWasmKernels,
  stockWasmBatchMatMul,
  wasmKernelsRegistered,
  wasmMatMul
} from "../src/wasm/WasmKernels.js"

/*
 * The wasm overrides against the cpu backend. tfjs holds one engine per process, so each check
 * switches backends with tf.setBackend and rebuilds its tensors from plain arrays on each side.
 *
 * Accuracy measure, used throughout: the max-norm relative error
 *   max_i |wasm_i - ref_i| / max(max_i |ref_i|, 1e-30)  <  1e-5
 * (float32 sums in a different order differ by a few ulps of the largest magnitude, so an
 * elementwise relative error would be dominated by entries that cancel to near zero).
 */

const tolerance = 1e-5

/** The project's seeded generator (mulberry32), so failures reproduce. */
const random = makeRng

const sizeOf = (shape: ReadonlyArray<number>): number => shape.reduce((n, d) => n * d, 1)

const uniform = (shape: ReadonlyArray<number>, seed: number): Float32Array => {
  const next = random(seed)
  return Float32Array.from({ length: sizeOf(shape) }, () => next() * 2 - 1)
}

const relativeError = (actual: ArrayLike<number>, expected: ArrayLike<number>): number => {
  expect(actual.length).toBe(expected.length)
  let diff = 0
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!))
    scale = Math.max(scale, Math.abs(expected[i]!))
  }
  return diff / Math.max(scale, 1e-30)
}

interface Computed {
  readonly shape: ReadonlyArray<number>
  readonly values: Float32Array | Int32Array | Uint8Array
}

/** Runs `f` on `backend`; everything it makes is disposed, its results come back as arrays. */
const on = async (backend: "cpu" | "wasm", f: () => tf.Tensor | Array<tf.Tensor>): Promise<Array<Computed>> => {
  await tf.setBackend(backend)
  return tf.tidy(() => {
    const out = f()
    return (Array.isArray(out) ? out : [out]).map((t) => ({ shape: t.shape, values: t.dataSync() }))
  })
}

/** Runs `f` on cpu and on wasm (with overrides) and checks shapes and values agree. */
const agrees = async (f: () => tf.Tensor | Array<tf.Tensor>): Promise<number> => {
  const expected = await on("cpu", f)
  const actual = await on("wasm", f)
  expect(actual.length).toBe(expected.length)
  let worst = 0
  for (let i = 0; i < expected.length; i++) {
    expect(actual[i]!.shape).toEqual(expected[i]!.shape)
    worst = Math.max(worst, relativeError(actual[i]!.values, expected[i]!.values))
  }
  return worst
}

interface MatMulCase {
  readonly a: ReadonlyArray<number>
  readonly b: ReadonlyArray<number>
  readonly transposeA: boolean
  readonly transposeB: boolean
}

const label = (c: MatMulCase): string => `[${c.a}]${c.transposeA ? "ᵀ" : ""}·[${c.b}]${c.transposeB ? "ᵀ" : ""}`

const matMulCases: ReadonlyArray<MatMulCase> = [
  // 2-D, all four transpose combinations, odd sizes.
  { a: [7, 13], b: [13, 5], transposeA: false, transposeB: false },
  { a: [13, 7], b: [13, 5], transposeA: true, transposeB: false },
  { a: [7, 13], b: [5, 13], transposeA: false, transposeB: true },
  { a: [13, 7], b: [5, 13], transposeA: true, transposeB: true },
  { a: [64, 96], b: [96, 48], transposeA: false, transposeB: false },
  { a: [96, 64], b: [48, 96], transposeA: true, transposeB: true },
  // 3-D batched, every transpose combination.
  { a: [3, 7, 13], b: [3, 13, 5], transposeA: false, transposeB: false },
  { a: [3, 13, 7], b: [3, 13, 5], transposeA: true, transposeB: false },
  { a: [3, 7, 13], b: [3, 5, 13], transposeA: false, transposeB: true },
  { a: [3, 13, 7], b: [3, 5, 13], transposeA: true, transposeB: true },
  { a: [4, 32, 16], b: [4, 32, 16], transposeA: false, transposeB: true },
  // Broadcast batch: 1 against N on either side, and a missing batch dimension.
  { a: [1, 7, 13], b: [4, 13, 5], transposeA: false, transposeB: false },
  { a: [4, 7, 13], b: [1, 13, 5], transposeA: false, transposeB: false },
  { a: [4, 13, 7], b: [1, 5, 13], transposeA: true, transposeB: true },
  { a: [1, 13, 7], b: [4, 5, 13], transposeA: true, transposeB: true },
  { a: [4, 7, 13], b: [13, 5], transposeA: false, transposeB: false },
  { a: [7, 13], b: [4, 5, 13], transposeA: false, transposeB: true },
  { a: [2, 3, 7, 13], b: [2, 3, 13, 5], transposeA: false, transposeB: false },
  // Degenerate sizes: ones everywhere, vectors, a single row (decode step).
  { a: [1, 1], b: [1, 1], transposeA: false, transposeB: false },
  { a: [1, 1], b: [1, 1], transposeA: true, transposeB: true },
  { a: [1, 13], b: [13, 1], transposeA: false, transposeB: false },
  { a: [13, 1], b: [13, 1], transposeA: true, transposeB: false },
  { a: [1, 13], b: [9, 13], transposeA: false, transposeB: true },
  { a: [13, 1], b: [1, 5], transposeA: false, transposeB: false },
  { a: [5, 1, 13], b: [5, 13, 1], transposeA: false, transposeB: false },
  { a: [1, 1, 1], b: [1, 1, 1], transposeA: true, transposeB: true }
]

const matMulOf = (c: MatMulCase, seed: number) => () =>
  tf.matMul(
    tf.tensor(uniform(c.a, seed), [...c.a]),
    tf.tensor(uniform(c.b, seed + 1), [...c.b]),
    c.transposeA,
    c.transposeB
  )

beforeAll(async () => {
  await tf.setBackend("wasm")
  registerWasmKernels()
  // Idempotent: a second call changes nothing.
  registerWasmKernels()
})

describe("wasm kernel registration", () => {
  it("replaces BatchMatMul and registers UnsortedSegmentSum", () => {
    expect(wasmKernelsRegistered()).toBe(true)
    expect(tf.getKernel(tf.UnsortedSegmentSum, "wasm")).toBeDefined()
    expect(stockWasmBatchMatMul()).toBeDefined()
    expect(stockWasmBatchMatMul()!.kernelFunc).not.toBe(tf.getKernel(tf.BatchMatMul, "wasm")!.kernelFunc)
  })
})

describe("BatchMatMul on wasm equals cpu", () => {
  matMulCases.forEach((c, i) => {
    it(label(c), async () => {
      expect(await agrees(matMulOf(c, 100 + 2 * i))).toBeLessThan(tolerance)
    })
  })

  it("both plans (direct and transposed product) agree with cpu", async () => {
    const cases: ReadonlyArray<MatMulCase> = [
      { a: [13, 7], b: [5, 13], transposeA: true, transposeB: true },
      { a: [7, 13], b: [13, 5], transposeA: false, transposeB: false },
      { a: [3, 7, 13], b: [1, 5, 13], transposeA: false, transposeB: true },
      { a: [1, 13, 7], b: [3, 13, 5], transposeA: true, transposeB: false },
      { a: [1, 13], b: [9, 13], transposeA: false, transposeB: true }
    ]
    for (const [i, c] of cases.entries()) {
      const [expected] = await on("cpu", matMulOf(c, 7 * i))
      for (const plan of ["direct", "swapped"] as const) {
        await tf.setBackend("wasm")
        const backend = asWasmBackend(tf.backend())
        const a = tf.tensor(uniform(c.a, 7 * i), [...c.a])
        const b = tf.tensor(uniform(c.b, 7 * i + 1), [...c.b])
        const info = wasmMatMul(backend, a, b, c.transposeA, c.transposeB, plan)
        const out = tf.engine().makeTensorFromTensorInfo(info)
        expect(out.shape, `${label(c)} ${plan}`).toEqual(expected!.shape)
        expect(relativeError(out.dataSync(), expected!.values), `${label(c)} ${plan}`).toBeLessThan(tolerance)
        tf.dispose([a, b, out])
      }
    }
  })

  it("broadcasts batch dimensions like numpy, including [2,1] against [3]", async () => {
    // The cpu backend indexes broadcast batches modulo their size, which is only right when one
    // side is 1 or both are equal, so this case is checked against a float64 loop instead.
    const aShape = [2, 1, 7, 13]
    const bShape = [3, 13, 5]
    const a = uniform(aShape, 11)
    const b = uniform(bShape, 12)
    const [actual] = await on("wasm", () => tf.matMul(tf.tensor(a, aShape), tf.tensor(b, bShape)))
    expect(actual!.shape).toEqual([2, 3, 7, 5])
    const expected = new Float64Array(2 * 3 * 7 * 5)
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        for (let r = 0; r < 7; r++) {
          for (let c = 0; c < 5; c++) {
            let sum = 0
            for (let k = 0; k < 13; k++) sum += a[i * 91 + r * 13 + k]! * b[j * 65 + k * 5 + c]!
            expected[((i * 3 + j) * 7 + r) * 5 + c] = sum
          }
        }
      }
    }
    expect(relativeError(actual!.values, expected)).toBeLessThan(tolerance)
  })

  it("keeps weights packed by XNNPACK apart when one tensor is reshaped", async () => {
    // Stock tfjs caches the packed operator by tensor id alone, and a reshape keeps the id, so
    // the second product below reused the [6,4] packing for a [4,6] matrix.
    const w = uniform([6, 4], 21)
    const x1 = uniform([2, 6], 22)
    const x2 = uniform([2, 4], 23)
    const worst = await agrees(() => {
      const t = tf.tensor(w, [6, 4])
      return [tf.matMul(tf.tensor(x1, [2, 6]), t), tf.matMul(tf.tensor(x2, [2, 4]), tf.reshape(t, [4, 6]))]
    })
    expect(worst).toBeLessThan(tolerance)
  })

  it("handles empty products", async () => {
    const worst = await agrees(() => [
      tf.matMul(tf.zeros([2, 3, 4]), tf.zeros([4, 0])),
      tf.matMul(tf.ones([3, 0]), tf.ones([0, 4])),
      tf.matMul(tf.ones([0, 3]), tf.ones([3, 4]), false, false)
    ])
    expect(worst).toBe(0)
  })
})

describe("gradients on wasm equal cpu", () => {
  const gradCases: ReadonlyArray<MatMulCase> = [
    { a: [7, 13], b: [13, 5], transposeA: false, transposeB: false },
    { a: [13, 7], b: [13, 5], transposeA: true, transposeB: false },
    { a: [7, 13], b: [5, 13], transposeA: false, transposeB: true },
    { a: [13, 7], b: [5, 13], transposeA: true, transposeB: true },
    { a: [3, 7, 13], b: [3, 13, 5], transposeA: false, transposeB: false },
    { a: [3, 13, 7], b: [3, 5, 13], transposeA: true, transposeB: true },
    { a: [2, 3, 13, 7], b: [2, 3, 13, 5], transposeA: true, transposeB: false }
    // Broadcast batches are left out: tfjs' BatchMatMul gradient does not sum the broadcast
    // dimension back, so tf.grad fails for them on every backend.
  ]
  gradCases.forEach((c, i) => {
    it(`d/da, d/db of sum(matMul · r) for ${label(c)}`, async () => {
      const aValues = uniform(c.a, 300 + 3 * i)
      const bValues = uniform(c.b, 301 + 3 * i)
      const worst = await agrees(() => {
        const a = tf.tensor(aValues, [...c.a])
        const b = tf.tensor(bValues, [...c.b])
        const product = tf.matMul(a, b, c.transposeA, c.transposeB)
        // A fixed random weighting, so the gradient is not a plain sum of rows.
        const r = tf.tensor(uniform(product.shape, 302 + 3 * i), product.shape)
        const grads = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.mul(tf.matMul(x, y, c.transposeA, c.transposeB), r))
        )
        return grads([a, b])
      })
      expect(worst).toBeLessThan(tolerance)
    })
  })

  it("trains a two-layer product: gradient of a squared loss through matMul, transpose and relu", async () => {
    const x = uniform([16, 24], 41)
    const w1 = uniform([32, 24], 42)
    const w2 = uniform([32, 8], 43)
    const worst = await agrees(() => {
      const f = (p: tf.Tensor, q: tf.Tensor) =>
        tf.sum(tf.square(tf.matMul(tf.relu(tf.matMul(tf.tensor(x, [16, 24]), p, false, true)), q)))
      return tf.grads(f)([tf.tensor(w1, [32, 24]), tf.tensor(w2, [32, 8])])
    })
    expect(worst).toBeLessThan(tolerance)
  })
})

describe("fused matMul on wasm equals cpu", () => {
  const fusedCases: ReadonlyArray<
    MatMulCase & { readonly activation: tf.fused.Activation; readonly forwardOnly?: boolean }
  > = [
    { a: [1, 7, 13], b: [1, 13, 5], transposeA: false, transposeB: false, activation: "relu" },
    { a: [7, 13], b: [5, 13], transposeA: false, transposeB: true, activation: "linear" },
    { a: [13, 7], b: [13, 5], transposeA: true, transposeB: false, activation: "elu" },
    { a: [3, 13, 7], b: [3, 5, 13], transposeA: true, transposeB: true, activation: "sigmoid" },
    { a: [3, 13, 7], b: [3, 13, 5], transposeA: true, transposeB: false, activation: "leakyrelu" },
    // Forward only: tfjs' gradient cannot undo a broadcast batch (see above).
    { a: [3, 7, 13], b: [1, 13, 5], transposeA: false, transposeB: false, activation: "relu", forwardOnly: true },
    { a: [3, 7, 13], b: [3, 13, 5], transposeA: false, transposeB: false, activation: "relu6" }
  ]
  fusedCases.forEach((c, i) => {
    it(`${label(c)} + bias, ${c.activation}`, async () => {
      const a = uniform(c.a, 500 + 3 * i)
      const b = uniform(c.b, 501 + 3 * i)
      const n = c.transposeB ? c.b[c.b.length - 2]! : c.b[c.b.length - 1]!
      const bias = uniform([n], 502 + 3 * i)
      const worst = await agrees(() => {
        const at = tf.tensor(a, [...c.a])
        const bt = tf.tensor(b, [...c.b])
        const biasT = tf.tensor(bias, [n])
        const forward = tf.fused.matMul({
          a: at,
          b: bt,
          transposeA: c.transposeA,
          transposeB: c.transposeB,
          bias: biasT,
          activation: c.activation,
          leakyreluAlpha: 0.1
        })
        if (c.forwardOnly === true) return forward
        const grads = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.fused.matMul({ a: x, b: y, transposeA: c.transposeA, transposeB: c.transposeB, bias: biasT }))
        )([at, bt])
        return [forward, ...grads]
      })
      expect(worst).toBeLessThan(tolerance)
    })
  })
})

describe("UnsortedSegmentSum on wasm", () => {
  it("equals cpu, with repeated and out-of-range ids", async () => {
    const data = uniform([9, 6], 61)
    const ids = Int32Array.from([3, 0, 3, 1, 7, -1, 3, 0, 2])
    const worst = await agrees(() => tf.unsortedSegmentSum(tf.tensor(data, [9, 6]), tf.tensor1d(ids, "int32"), 5))
    expect(worst).toBeLessThan(tolerance)
  })

  it("equals cpu on rank-1 and rank-3 data", async () => {
    const worst = await agrees(() => [
      tf.unsortedSegmentSum(tf.tensor1d([1, 2, 3, 4]), tf.tensor1d([1, 2, 0, 1], "int32"), 3),
      tf.unsortedSegmentSum(tf.tensor(uniform([5, 2, 3], 62), [5, 2, 3]), tf.tensor1d([0, 0, 4, 1, 4], "int32"), 6)
    ])
    expect(worst).toBeLessThan(tolerance)
  })

  it("gives tf.gather (an embedding lookup) a gradient equal to cpu's", async () => {
    const vocab = 11
    const dim = 8
    const embedding = uniform([vocab, dim], 71)
    const ids = Int32Array.from([3, 5, 3, 0, 10, 5, 5, 1, 3, 2, 0, 9])
    const weights = uniform([3, 4, dim], 72)
    const worst = await agrees(() => {
      const table = tf.tensor(embedding, [vocab, dim])
      const loss = (e: tf.Tensor) =>
        tf.sum(tf.mul(tf.gather(e, tf.tensor(ids, [3, 4], "int32")), tf.tensor(weights, [3, 4, dim])))
      return tf.grad(loss)(table)
    })
    expect(worst).toBeLessThan(tolerance)
  })
})

describe("memory", () => {
  it("leaves tf.memory().numTensors and the wasm heap unchanged", async () => {
    await tf.setBackend("wasm")
    const backend = asWasmBackend(tf.backend())
    const inputs = tf.tidy(() => ({
      a: tf.randomNormal([4, 64, 32]),
      b: tf.randomNormal([4, 48, 32]),
      w: tf.randomNormal([32, 48]),
      x: tf.randomNormal([20, 48]),
      ids: tf.tensor1d([0, 3, 3, 9, 1, 0, 2, 5, 7, 7, 7, 1, 0, 2, 4, 6, 8, 9, 5, 3], "int32")
    }))
    const work = () =>
      tf.tidy(() => {
        tf.matMul(inputs.a, inputs.b, false, true)
        tf.matMul(inputs.a, inputs.a, true, false)
        tf.matMul(tf.reshape(inputs.a, [256, 32]), inputs.w)
        tf.matMul(inputs.x, inputs.w, false, true)
        tf.unsortedSegmentSum(inputs.x, inputs.ids, 10)
        tf.grad((w: tf.Tensor) => tf.sum(tf.matMul(inputs.x, w, false, true)))(inputs.w)
        tf.fused.matMul({ a: inputs.x, b: inputs.w, transposeB: true, bias: tf.ones([32]), activation: "relu" })
      })
    work()
    const tensors = tf.memory().numTensors
    const dataIds = tf.engine().backend.numDataIds()
    const heapBytes = backend.wasm.HEAPU8.length
    for (let i = 0; i < 50; i++) work()
    expect(tf.memory().numTensors).toBe(tensors)
    expect(tf.engine().backend.numDataIds()).toBe(dataIds)
    // Leaked temporaries (tens of KB per call here) would have grown the heap over 50 rounds.
    expect(backend.wasm.HEAPU8.length).toBe(heapBytes)
    tf.dispose(Object.values(inputs))
  })
})

describe("wasm threads", () => {
  it("runs the threaded binary with 2 threads in a child process and matches a float64 product", async () => {
    // The threaded binary can only be chosen before the wasm backend first starts, so it gets a
    // fresh process; the child checks its own result and prints one JSON line.
    const kernels = fileURLToPath(new URL("../src/wasm/WasmKernels.ts", import.meta.url))
    const script = `
      (async () => {
        const tf = await import("@tensorflow/tfjs-core")
        const k = await import(${JSON.stringify(kernels)})
        const enabled = k.enableWasmThreads(2)
        await tf.setBackend("wasm")
        k.registerWasmKernels()
        const a = Float32Array.from({ length: 96 * 80 }, (_, i) => Math.sin(i))
        const b = Float32Array.from({ length: 72 * 80 }, (_, i) => Math.cos(i))
        const out = tf.matMul(tf.tensor(a, [96, 80]), tf.tensor(b, [72, 80]), false, true).dataSync()
        let diff = 0, scale = 0
        for (let i = 0; i < 96; i++) for (let j = 0; j < 72; j++) {
          let s = 0
          for (let t = 0; t < 80; t++) s += a[i * 80 + t] * b[j * 80 + t]
          diff = Math.max(diff, Math.abs(s - out[i * 72 + j])); scale = Math.max(scale, Math.abs(s))
        }
        console.log(JSON.stringify({ enabled, threads: k.wasmThreadsCount(), error: diff / scale }))
      })()
    `
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", "-e", script],
        { cwd: fileURLToPath(new URL("..", import.meta.url)), stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
      child.on("error", reject)
      child.on("close", (code) => resolve({ code, stdout, stderr }))
    })
    const line = result.stdout.trim().split("\n").at(-1) ?? ""
    expect(result.code, result.stderr.slice(-2000)).toBe(0)
    const parsed = JSON.parse(line) as { enabled: { enabled: boolean }; threads: number; error: number }
    expect(parsed.enabled.enabled).toBe(true)
    expect(parsed.threads).toBe(2)
    expect(parsed.error).toBeLessThan(tolerance)
  })
})
