import type { TensorInfo } from "@tensorflow/tfjs-core"
import { heapFloat32, heapInt32, tensorData, type WasmBackend } from "./WasmBackendAccess.js"

/**
 * `UnsortedSegmentSum` for the wasm backend, which tfjs 4.22 does not register. tfjs needs it for
 * the gradient of `tf.gather` (the embedding lookup): the gradient scatters each gathered row's
 * gradient back onto its row id, summing rows gathered more than once.
 *
 * out[s, ...] = Σ x[i, ...] over every i with segmentIds[i] = s, where `segmentIds` covers the
 * leading dimensions of `x` (rank-1 in the gather gradient) and the output is
 * [numSegments, ...x.shape.slice(rank(segmentIds))], as in TensorFlow. Ids outside
 * [0, numSegments) are dropped, as the cpu backend does.
 *
 * It runs in JavaScript directly on heap views: the work is one pass of adds over `x`, bound by
 * memory rather than arithmetic, so a C++ kernel would gain little.
 */
export const wasmUnsortedSegmentSum = (
  backend: WasmBackend,
  x: TensorInfo,
  segmentIds: TensorInfo,
  numSegments: number
): TensorInfo => {
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum: numSegments must be a non-negative integer, got ${numSegments}`)
  }
  if (x.dtype !== "float32" && x.dtype !== "int32") {
    throw new Error(`UnsortedSegmentSum on wasm supports float32 and int32 data, got ${x.dtype}`)
  }
  if (segmentIds.dtype !== "int32") {
    throw new Error(`UnsortedSegmentSum: segmentIds must be int32, got ${segmentIds.dtype}`)
  }
  const idsRank = segmentIds.shape.length
  const leading = x.shape.slice(0, idsRank)
  if (idsRank > x.shape.length || leading.some((d, i) => d !== segmentIds.shape[i])) {
    throw new Error(
      `UnsortedSegmentSum: segmentIds shape [${segmentIds.shape}] must be a prefix of data shape [${x.shape}]`
    )
  }
  const rowShape = x.shape.slice(idsRank)
  const rows = segmentIds.shape.reduce((n, d) => n * d, 1)
  const width = rowShape.reduce((n, d) => n * d, 1)
  const out = backend.makeOutput([numSegments, ...rowShape], x.dtype)
  // Views only after the output exists: allocating it may grow (and so detach) the heap.
  const xData = tensorData(backend, x)
  const ids = heapInt32(backend, tensorData(backend, segmentIds).memoryOffset, rows)
  const outPointer = tensorData(backend, out).memoryOffset
  const values = x.dtype === "float32"
    ? heapFloat32(backend, xData.memoryOffset, rows * width)
    : heapInt32(backend, xData.memoryOffset, rows * width)
  const sums = x.dtype === "float32"
    ? heapFloat32(backend, outPointer, numSegments * width)
    : heapInt32(backend, outPointer, numSegments * width)
  sums.fill(0)
  for (let i = 0; i < rows; i++) {
    const segment = ids[i]
    if (segment < 0 || segment >= numSegments) continue
    const from = i * width
    const to = segment * width
    for (let j = 0; j < width; j++) sums[to + j] += values[from + j]
  }
  return out
}
