import * as tf from "@tensorflow/tfjs-core"
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-wasm"
import { asWasmBackend, type WasmBackend } from "./WasmBackendAccess.js"
import { claimWeightsLayout, matMulShapes, wasmMatMul } from "./WasmMatMul.js"
import { wasmUnsortedSegmentSum } from "./WasmSegmentSum.js"

export { type MatMulPlan, planMatMul, wasmMatMul } from "./WasmMatMul.js"
export { enableWasmThreads, wasmThreadsCount, type WasmThreadsResult } from "./WasmThreads.js"

/*
 * Kernel overrides for tfjs-backend-wasm 4.22.0, where the stock backend is slow or incomplete
 * for transformer work:
 *   - BatchMatMul / _FusedMatMul: every transposed or batched product ran a scalar loop; they now
 *     reach XNNPACK in every case (WasmMatMul.ts). tfjs' gradients of matMul are matMuls with
 *     transposeA or transposeB, so training used the slow loop for every weight gradient.
 *   - UnsortedSegmentSum: not registered at all, so `tf.grad` through `tf.gather` (embeddings)
 *     threw on wasm (WasmSegmentSum.ts).
 *   - Threads: tfjs turns its threaded binary off in Node. It does run in Node 20 once three
 *     loader problems are patched around (WasmThreads.ts: `enableWasmThreads(n)`, called before
 *     `tf.setBackend("wasm")`, replaces `setThreadsCount`). On 2 idle cores it nearly doubles
 *     products from 64³ up, but tiny products and any competition for the cores make it slower
 *     than one thread, so it is opt-in.
 *
 * The kernel registry is global to the tfjs-core instance and outlives this module (test runners
 * may load several copies of it), so the stock kernels are remembered on `globalThis` and our
 * kernels carry a marker: registering twice, from any copy, is a no-op.
 */

const marker = Symbol.for("@seal/gpu/wasm/WasmKernels")

interface Registration {
  readonly stockBatchMatMul: KernelConfig
  readonly stockFusedMatMul: KernelConfig
}

type Marked = KernelFunc & { [marker]?: true }

const registration = (): Registration | undefined => (globalThis as { [marker]?: Registration })[marker]

const mark = (f: KernelFunc): KernelFunc => Object.assign(f, { [marker]: true as const })

const isOurs = (config: KernelConfig | undefined): boolean =>
  config !== undefined && (config.kernelFunc as Marked)[marker] === true

const boolAttr = (attrs: NamedAttrMap | undefined, name: string): boolean => attrs?.[name] === true

const input = (inputs: Record<string, TensorInfo | undefined>, name: string): TensorInfo => {
  const t = inputs[name]
  if (t === undefined) throw new Error(`missing input ${name}`)
  return t
}

const batchMatMul: KernelFunc = ({ inputs, backend, attrs }) => {
  const a = input(inputs, "a")
  const b = input(inputs, "b")
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    throw new Error("BatchMatMul for non non-float32 tensors not yet supported.")
  }
  return wasmMatMul(asWasmBackend(backend), a, b, boolAttr(attrs, "transposeA"), boolAttr(attrs, "transposeB"))
}

/** Runs a stock wasm kernel by name on backend tensors. */
const runWasmKernel = (
  backend: WasmBackend,
  kernelName: string,
  inputs: Record<string, TensorInfo>,
  attrs: NamedAttrMap = {}
): TensorInfo => {
  const config = tf.getKernel(kernelName, "wasm")
  if (config === undefined) throw new Error(`the wasm backend has no ${kernelName} kernel`)
  return config.kernelFunc({ inputs, backend, attrs }) as TensorInfo
}

/** The element-wise activations of `tf.fused.matMul`, as stock wasm kernels. */
const activate = (
  backend: WasmBackend,
  x: TensorInfo,
  activation: string,
  preluWeights: TensorInfo | undefined,
  leakyreluAlpha: number
): TensorInfo | undefined => {
  switch (activation) {
    case "linear":
      return undefined
    case "relu":
      return runWasmKernel(backend, tf.Relu, { x })
    case "relu6":
      return runWasmKernel(backend, tf.Relu6, { x })
    case "elu":
      return runWasmKernel(backend, tf.Elu, { x })
    case "sigmoid":
      return runWasmKernel(backend, tf.Sigmoid, { x })
    case "leakyrelu":
      return runWasmKernel(backend, tf.LeakyRelu, { x }, { alpha: leakyreluAlpha })
    case "prelu": {
      if (preluWeights === undefined) throw new Error("prelu activation needs preluActivationWeights")
      return runWasmKernel(backend, tf.Prelu, { x, alpha: preluWeights })
    }
    default:
      throw new Error(`${activation} activation not yet supported for _FusedMatMul in the wasm backend.`)
  }
}

/**
 * `tf.fused.matMul`: the stock kernel (XNNPACK with bias and clamp fused) when it would take its
 * fast path; otherwise our product followed by the stock Add and activation kernels.
 */
const fusedMatMul: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args
  const a = input(inputs, "a")
  const b = input(inputs, "b")
  const bias = inputs["bias"] ?? undefined
  const preluWeights = inputs["preluActivationWeights"] ?? undefined
  const transposeA = boolAttr(attrs, "transposeA")
  const transposeB = boolAttr(attrs, "transposeB")
  const activation = typeof attrs?.["activation"] === "string" ? attrs["activation"] : "linear"
  const leakyreluAlpha = typeof attrs?.["leakyreluAlpha"] === "number" ? attrs["leakyreluAlpha"] : 0
  const stock = registration()?.stockFusedMatMul
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    throw new Error("_FusedMatMul for non non-float32 tensors not yet supported.")
  }
  const shapes = matMulShapes(a.shape, b.shape, transposeA, transposeB)
  const stockIsFast = stock !== undefined && !transposeA && !transposeB &&
    shapes.batchShapeA.every((d) => d === 1) && shapes.batchShapeB.every((d) => d === 1) &&
    a.shape.length === 3 && b.shape.length === 3 && (bias === undefined || bias.shape.length === 1) &&
    shapes.k > 0 && shapes.m > 0 && shapes.n > 0 && claimWeightsLayout(b.dataId, shapes.k, shapes.n)
  if (stockIsFast) return stock.kernelFunc(args)
  const wasm = asWasmBackend(backend)
  let out = wasmMatMul(wasm, a, b, transposeA, transposeB)
  const replace = (next: TensorInfo | undefined): void => {
    if (next === undefined) return
    wasm.disposeData(out.dataId)
    out = next
  }
  try {
    if (bias !== undefined) replace(runWasmKernel(wasm, tf.Add, { a: out, b: bias }))
    replace(activate(wasm, out, activation, preluWeights, leakyreluAlpha))
  } catch (error) {
    wasm.disposeData(out.dataId)
    throw error
  }
  return out
}

const unsortedSegmentSum: KernelFunc = ({ inputs, backend, attrs }) =>
  wasmUnsortedSegmentSum(
    asWasmBackend(backend),
    input(inputs, "x"),
    input(inputs, "segmentIds"),
    Number(attrs?.["numSegments"])
  )

const replaceKernel = (stock: KernelConfig, kernelFunc: KernelFunc): void => {
  tf.unregisterKernel(stock.kernelName, "wasm")
  // The stock setup binds its C++ entry point per backend instance; keeping it means a wasm
  // backend created later (after tf.removeBackend) still initialises the stock kernel we call.
  const config: KernelConfig = { kernelName: stock.kernelName, backendName: "wasm", kernelFunc: mark(kernelFunc) }
  tf.registerKernel(
    stock.setupFunc === undefined ? config : { ...config, setupFunc: stock.setupFunc }
  )
}

/**
 * Registers the wasm kernel overrides (BatchMatMul, _FusedMatMul, UnsortedSegmentSum).
 * Idempotent; call after `await tf.setBackend("wasm")`.
 */
export const registerWasmKernels = (): void => {
  const currentBatchMatMul = tf.getKernel(tf.BatchMatMul, "wasm")
  const currentFusedMatMul = tf.getKernel(tf._FusedMatMul, "wasm")
  if (currentBatchMatMul === undefined || currentFusedMatMul === undefined) {
    throw new Error("registerWasmKernels: the tfjs wasm backend's kernels are not registered")
  }
  if (!isOurs(currentBatchMatMul) || !isOurs(currentFusedMatMul)) {
    const previous = registration()
    const state: Registration = {
      stockBatchMatMul: isOurs(currentBatchMatMul) ? previous!.stockBatchMatMul : currentBatchMatMul,
      stockFusedMatMul: isOurs(currentFusedMatMul) ? previous!.stockFusedMatMul : currentFusedMatMul
    }
    ;(globalThis as { [marker]?: Registration })[marker] = state
    if (!isOurs(currentBatchMatMul)) replaceKernel(currentBatchMatMul, batchMatMul)
    if (!isOurs(currentFusedMatMul)) replaceKernel(currentFusedMatMul, fusedMatMul)
  }
  if (tf.getKernel(tf.UnsortedSegmentSum, "wasm") === undefined) {
    tf.registerKernel({ kernelName: tf.UnsortedSegmentSum, backendName: "wasm", kernelFunc: mark(unsortedSegmentSum) })
  }
}

/** Whether `registerWasmKernels` has replaced the stock matMul kernels in this tfjs instance. */
export const wasmKernelsRegistered = (): boolean => isOurs(tf.getKernel(tf.BatchMatMul, "wasm"))

/** The stock tfjs BatchMatMul kernel for wasm, for benchmarks and tests that compare against it. */
export const stockWasmBatchMatMul = (): KernelConfig | undefined =>
  wasmKernelsRegistered() ? registration()?.stockBatchMatMul : tf.getKernel(tf.BatchMatMul, "wasm")
