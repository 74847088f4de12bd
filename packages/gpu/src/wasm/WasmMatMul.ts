import * as tf from "@tensorflow/tfjs-core"
import type { TensorInfo } from "@tensorflow/tfjs-core"
import {
  allocateRegion,
  heapFloat32,
  type HeapRegion,
  registerView,
  releaseRegion,
  tensorData,
  type WasmBackend,
  writeInts
} from "./WasmBackendAccess.js"

/*
 * Matrix products on the wasm backend, routed so that every case reaches XNNPACK's
 * fully-connected operator.
 *
 * Stock tfjs-backend-wasm 4.22 uses XNNPACK only for `a·b` with rank-3 inputs whose batch is 1
 * and neither side transposed; every transposed or batched product falls to a scalar triple loop
 * (measured on this machine: ~1-3.5 GFLOP/s against ~35-45 GFLOP/s, see tools/bench/matmul.ts).
 * That fast entry point is still reachable with any tensor id, so this module:
 *   1. lays both operands out row-major as the fast path wants them, with the wasm Transpose
 *      kernel where a transpose really moves memory (a [r, c] array with r or c equal to 1 is its
 *      own transpose), and
 *   2. calls the fast path once per batch slice, handing C++ each slice as a separately
 *      registered id that points into the operand (no copies), or once for the whole batch when
 *      the right operand is broadcast and the slices of the left one are contiguous.
 * When the estimate in `planMatMul` says so, it computes the transposed product instead,
 * `(a·b)ᵀ = bᵀ·aᵀ`, in which a transposed operand is read in place: for a one-row `h·Eᵀ` (a decode
 * step against a tied embedding) that avoids copying all of E to get a 1-row product.
 * A hand-written JavaScript kernel over heap views was measured too and topped out at ~6 GFLOP/s
 * (4×4 register blocking), far from XNNPACK's SIMD kernels, so every path ends in XNNPACK.
 *
 * XNNPACK packs the right operand ("weights") when it builds an operator and tfjs caches that
 * operator under the weights' tensor id until the tensor is disposed, so a weight matrix used as
 * the right operand more than once costs its packing only once. That cache is keyed by id alone:
 * the same buffer reinterpreted with another shape (two reshapes of one tensor share an id)
 * would silently reuse an operator built for the old shape. `weightsLayout` remembers the layout
 * each tensor was first packed with and gives other layouts a fresh alias id.
 */

const weightsLayout = new WeakMap<object, string>()
const layoutKey = (rows: number, cols: number): string => `${rows}x${cols}`

/**
 * Records that `dataId` is about to be packed by XNNPACK as [rows, cols] weights under its own
 * id; false when it was already packed with another layout (then its own id must not be used).
 */
export const claimWeightsLayout = (dataId: object, rows: number, cols: number): boolean => {
  const key = layoutKey(rows, cols)
  const seen = weightsLayout.get(dataId)
  if (seen === undefined) weightsLayout.set(dataId, key)
  return seen === undefined || seen === key
}

/** A row-major [batch, rows, cols] float32 array on the heap. */
interface Operand {
  readonly region: HeapRegion
  readonly batch: number
  readonly rows: number
  readonly cols: number
  /** Set when `region` is the caller's tensor itself: only then can XNNPACK's operator cache help. */
  readonly dataId: object | undefined
}

const sizeOf = (shape: ReadonlyArray<number>): number => shape.reduce((n, d) => n * d, 1)

/** For each flat index of the broadcast batch shape, the flat batch index into `shape`. */
const batchIndexMap = (shape: ReadonlyArray<number>, outShape: ReadonlyArray<number>): Int32Array => {
  const total = sizeOf(outShape)
  const map = new Int32Array(total)
  const rank = outShape.length
  const padded = [...new Array<number>(rank - shape.length).fill(1), ...shape]
  const strides = new Array<number>(rank)
  let stride = 1
  for (let d = rank - 1; d >= 0; d--) {
    strides[d] = stride
    stride *= padded[d]!
  }
  for (let i = 0; i < total; i++) {
    let rest = i
    let index = 0
    for (let d = rank - 1; d >= 0; d--) {
      const coord = rest % outShape[d]!
      rest = (rest - coord) / outShape[d]!
      if (padded[d]! > 1) index += coord * strides[d]!
    }
    map[i] = index
  }
  return map
}

/** Copies `src` ([batch, rows, cols]) into `dst` as [batch, cols, rows] with the wasm Transpose kernel. */
const transposeInto = (
  backend: WasmBackend,
  src: number,
  batch: number,
  rows: number,
  cols: number,
  dst: number
): void => {
  const float32 = 0
  if (batch === 1) {
    backend.wasm._Transpose(src, writeInts(backend, 0, [rows, cols]), 2, float32, dst, writeInts(backend, 1, [1, 0]), 2)
  } else {
    backend.wasm._Transpose(
      src,
      writeInts(backend, 0, [batch, rows, cols]),
      3,
      float32,
      dst,
      writeInts(backend, 1, [0, 2, 1]),
      3
    )
  }
}

/** Whether transposing a [rows, cols] matrix moves any memory. */
const moves = (rows: number, cols: number): boolean => rows > 1 && cols > 1

/**
 * The caller's tensor, read as [batch, storedRows, storedCols] and wanted as
 * [batch, storedCols, storedRows] when `transposed`, as a row-major operand; the transpose is
 * materialised into a temporary (recorded in `temps`) only when it moves memory.
 */
const operandOf = (
  backend: WasmBackend,
  tensor: TensorInfo,
  batch: number,
  storedRows: number,
  storedCols: number,
  transposed: boolean,
  temps: Array<HeapRegion>
): Operand => {
  const data = tensorData(backend, tensor)
  const own: HeapRegion = { id: data.id, pointer: data.memoryOffset, owned: false }
  if (!transposed) return { region: own, batch, rows: storedRows, cols: storedCols, dataId: tensor.dataId }
  if (!moves(storedRows, storedCols)) {
    return { region: own, batch, rows: storedCols, cols: storedRows, dataId: tensor.dataId }
  }
  const region = allocateRegion(backend, batch * storedRows * storedCols)
  temps.push(region)
  transposeInto(backend, own.id, batch, storedRows, storedCols, region.id)
  return { region, batch, rows: storedCols, cols: storedRows, dataId: undefined }
}

/** The id to give XNNPACK for a batch-1 right operand, guarding the id-keyed operator cache. */
const weightsId = (backend: WasmBackend, rhs: Operand, temps: Array<HeapRegion>): number => {
  if (rhs.dataId === undefined || claimWeightsLayout(rhs.dataId, rhs.rows, rhs.cols)) return rhs.region.id
  const alias = registerView(backend, rhs.region.pointer, rhs.rows * rhs.cols)
  temps.push(alias)
  return alias.id
}

/** One call of the fast path: out[rows, cols] = lhs[rows, inner] · rhs[inner, cols], all ids. */
const fastMatMul = (
  backend: WasmBackend,
  lhsId: number,
  rows: number,
  inner: number,
  rhsId: number,
  cols: number,
  outId: number
): void => {
  const lhsShape = writeInts(backend, 2, [1, rows, inner])
  const rhsShape = writeInts(backend, 3, [1, inner, cols])
  backend.wasm._BatchMatMul(lhsId, lhsShape, 3, rhsId, rhsShape, 3, 0, 0, outId)
}

/** out[i] = lhs[lhsMap[i]] · rhs[rhsMap[i]] for every i < batch; out is [batch, lhs.rows, rhs.cols]. */
const batchedMatMul = (
  backend: WasmBackend,
  lhs: Operand,
  rhs: Operand,
  out: HeapRegion,
  batch: number,
  lhsMap: Int32Array,
  rhsMap: Int32Array,
  temps: Array<HeapRegion>
): void => {
  const rows = lhs.rows
  const inner = lhs.cols
  const cols = rhs.cols
  const rhsSharedId = rhs.batch === 1 ? weightsId(backend, rhs, temps) : 0
  if (batch === 1) {
    fastMatMul(backend, lhs.region.id, rows, inner, rhsSharedId, cols, out.id)
    return
  }
  if (rhs.batch === 1 && lhs.batch === batch) {
    // The left slices are contiguous and in output order: one product with batch·rows rows.
    fastMatMul(backend, lhs.region.id, batch * rows, inner, rhsSharedId, cols, out.id)
    return
  }
  const lhsSize = rows * inner
  const rhsSize = inner * cols
  const outSize = rows * cols
  for (let i = 0; i < batch; i++) {
    const lhsView = lhs.batch === 1
      ? undefined
      : registerView(backend, lhs.region.pointer + 4 * lhsMap[i]! * lhsSize, lhsSize)
    const rhsView = rhs.batch === 1
      ? undefined
      : registerView(backend, rhs.region.pointer + 4 * rhsMap[i]! * rhsSize, rhsSize)
    const outView = registerView(backend, out.pointer + 4 * i * outSize, outSize)
    try {
      fastMatMul(
        backend,
        lhsView?.id ?? lhs.region.id,
        rows,
        inner,
        rhsView?.id ?? rhsSharedId,
        cols,
        outView.id
      )
    } finally {
      if (lhsView !== undefined) releaseRegion(backend, lhsView)
      if (rhsView !== undefined) releaseRegion(backend, rhsView)
      releaseRegion(backend, outView)
    }
  }
}

export interface MatMulShapes {
  readonly m: number
  readonly k: number
  readonly n: number
  readonly batchShapeA: ReadonlyArray<number>
  readonly batchShapeB: ReadonlyArray<number>
  readonly batchShape: ReadonlyArray<number>
  readonly outShape: Array<number>
}

/** Shapes of `op(a)·op(b)` with tfjs' broadcasting of the leading (batch) dimensions. */
export const matMulShapes = (
  aShape: ReadonlyArray<number>,
  bShape: ReadonlyArray<number>,
  transposeA: boolean,
  transposeB: boolean
): MatMulShapes => {
  const ar = aShape.length
  const br = bShape.length
  if (ar < 2 || br < 2) throw new Error(`matMul needs rank >= 2 inputs, got [${aShape}] and [${bShape}]`)
  const m = transposeA ? aShape[ar - 1]! : aShape[ar - 2]!
  const k = transposeA ? aShape[ar - 2]! : aShape[ar - 1]!
  const kb = transposeB ? bShape[br - 1]! : bShape[br - 2]!
  const n = transposeB ? bShape[br - 2]! : bShape[br - 1]!
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${aShape} and ${bShape} and ` +
        `transposeA=${transposeA} and transposeB=${transposeB} must match.`
    )
  }
  const batchShapeA = aShape.slice(0, -2)
  const batchShapeB = bShape.slice(0, -2)
  const batchShape = tf.broadcast_util.assertAndGetBroadcastShape([...batchShapeA], [...batchShapeB])
  return { m, k, n, batchShapeA, batchShapeB, batchShape, outShape: [...batchShape, m, n] }
}

/** Which of the two equivalent computations to run; exported for the benchmark and tests. */
export type MatMulPlan = "direct" | "swapped"

/**
 * Direct computes op(a)·op(b); swapped computes (op(b)ᵀ·op(a)ᵀ)ᵀ. The estimate counts floats
 * moved outside the product itself: transposes that move memory, XNNPACK's packing of the right
 * operand (free when a cached operator already holds it) and, for swapped, the transpose of the
 * result back.
 */
export const planMatMul = (
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  shapes: MatMulShapes
): MatMulPlan => {
  const { k, m, n } = shapes
  const batchA = sizeOf(shapes.batchShapeA)
  const batchB = sizeOf(shapes.batchShapeB)
  const aSize = batchA * m * k
  const bSize = batchB * k * n
  const outSize = sizeOf(shapes.batchShape) * m * n
  const directMoveA = transposeA && moves(k, m) ? aSize : 0
  const directMoveB = transposeB && moves(n, k) ? bSize : 0
  const directPack = batchB === 1 && directMoveB === 0 && weightsLayout.get(b.dataId) === layoutKey(k, n) ? 0 : bSize
  const direct = directMoveA + directMoveB + directPack
  const swappedMoveB = !transposeB && moves(k, n) ? bSize : 0
  const swappedMoveA = !transposeA && moves(m, k) ? aSize : 0
  const swappedPack = batchA === 1 && swappedMoveA === 0 && weightsLayout.get(a.dataId) === layoutKey(k, m) ? 0 : aSize
  const swappedOut = moves(m, n) ? outSize : 0
  const swapped = swappedMoveB + swappedMoveA + swappedPack + swappedOut
  return swapped < direct ? "swapped" : "direct"
}

/**
 * op(a)·op(b) for float32 tensors on the wasm backend, batch dimensions broadcast as in
 * `tf.matMul`. Returns a new backend tensor of shape [...batch, m, n].
 */
export const wasmMatMul = (
  backend: WasmBackend,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  plan?: MatMulPlan
): TensorInfo => {
  const shapes = matMulShapes(a.shape, b.shape, transposeA, transposeB)
  const { k, m, n } = shapes
  const out = backend.makeOutput(shapes.outShape, "float32")
  const outData = tensorData(backend, out)
  const batch = sizeOf(shapes.batchShape)
  const outSize = batch * m * n
  if (outSize === 0) return out
  if (k === 0) {
    heapFloat32(backend, outData.memoryOffset, outSize).fill(0)
    return out
  }
  const batchA = sizeOf(shapes.batchShapeA)
  const batchB = sizeOf(shapes.batchShapeB)
  const mapA = batchIndexMap(shapes.batchShapeA, shapes.batchShape)
  const mapB = batchIndexMap(shapes.batchShapeB, shapes.batchShape)
  const outRegion: HeapRegion = { id: outData.id, pointer: outData.memoryOffset, owned: false }
  const temps: Array<HeapRegion> = []
  try {
    if ((plan ?? planMatMul(a, b, transposeA, transposeB, shapes)) === "direct") {
      // a stored [m, k] (or [k, m] when transposed), b stored [k, n] (or [n, k]).
      const lhs = transposeA
        ? operandOf(backend, a, batchA, k, m, true, temps)
        : operandOf(backend, a, batchA, m, k, false, temps)
      const rhs = transposeB
        ? operandOf(backend, b, batchB, n, k, true, temps)
        : operandOf(backend, b, batchB, k, n, false, temps)
      batchedMatMul(backend, lhs, rhs, outRegion, batch, mapA, mapB, temps)
    } else {
      // bᵀ as [n, k] and aᵀ as [k, m]; the product is outᵀ, [n, m] per batch.
      const lhs = transposeB
        ? operandOf(backend, b, batchB, n, k, false, temps)
        : operandOf(backend, b, batchB, k, n, true, temps)
      const rhs = transposeA
        ? operandOf(backend, a, batchA, k, m, false, temps)
        : operandOf(backend, a, batchA, m, k, true, temps)
      if (moves(m, n)) {
        const outT = allocateRegion(backend, outSize)
        temps.push(outT)
        batchedMatMul(backend, lhs, rhs, outT, batch, mapB, mapA, temps)
        transposeInto(backend, outT.id, batch, n, m, outRegion.id)
      } else {
        batchedMatMul(backend, lhs, rhs, outRegion, batch, mapB, mapA, temps)
      }
    }
  } catch (error) {
    backend.disposeData(out.dataId)
    throw error
  } finally {
    for (const region of temps) releaseRegion(backend, region)
  }
  return out
}
