import type { DataType, TensorInfo } from "@tensorflow/tfjs-core"

/**
 * The parts of tfjs-backend-wasm 4.22.0 that the kernel overrides reach into. tfjs types these
 * loosely (or keeps them private), so they are spelled out here, checked once at run time by
 * `asWasmBackend`, and nothing else in this folder touches the backend untyped.
 *
 * Every pointer is a byte offset into the wasm heap. Ids name tensors on the C++ side: the C++
 * kernels look a tensor up by id (`register_tensor(id, size, pointer)`), never by pointer, which is
 * what lets a kernel here hand C++ a slice of a tensor by registering a second id for it.
 */
export interface WasmModule {
  readonly HEAP32: Int32Array
  readonly HEAPU8: Uint8Array
  _malloc(bytes: number): number
  _free(pointer: number): void
  /** `BatchMatMul(aId, aShape*, aRank, bId, bShape*, bRank, transposeA, transposeB, outId)`, shapes rank 3. */
  _BatchMatMul(
    aId: number,
    aShape: number,
    aRank: number,
    bId: number,
    bShape: number,
    bRank: number,
    transposeA: number,
    transposeB: number,
    outId: number
  ): void
  /** `Transpose(xId, xShape*, rank, cppDtype, outId, perm*, permLength)`. */
  _Transpose(
    xId: number,
    xShape: number,
    rank: number,
    dtype: number,
    outId: number,
    perm: number,
    permLength: number
  ): void
  readonly tfjs: {
    registerTensor(id: number, size: number, pointer: number): void
    /** Forgets the id on the C++ side and runs its disposal callbacks (e.g. frees cached XNNPACK operators); never frees memory. */
    disposeData(id: number): void
    getThreadsCount(): number
  }
}

export interface WasmTensorData {
  readonly id: number
  readonly memoryOffset: number
  readonly shape: ReadonlyArray<number>
  readonly dtype: DataType
}

export interface WasmBackend {
  readonly wasm: WasmModule
  readonly dataIdMap: { get(dataId: object): WasmTensorData | undefined }
  makeOutput(shape: Array<number>, dtype: DataType): TensorInfo
  disposeData(dataId: object, force?: boolean): boolean
}

/** The backend's id counter is private in the typings; reserving ids from it keeps ours from colliding. */
interface WasmBackendCounter {
  dataIdNextNumber: number
}

export const asWasmBackend = (backend: unknown): WasmBackend => {
  const b = backend as Partial<WasmBackend & WasmBackendCounter> | null
  if (
    b === null || typeof b !== "object" || b.wasm === undefined || b.dataIdMap === undefined ||
    typeof b.dataIdNextNumber !== "number" || typeof b.wasm._BatchMatMul !== "function" ||
    typeof b.wasm._Transpose !== "function"
  ) {
    throw new Error("expected the tfjs wasm backend (tfjs-backend-wasm 4.22.x internals)")
  }
  return b as WasmBackend
}

/** A fresh tensor id that the backend will never hand out itself. */
export const reserveId = (backend: WasmBackend): number => (backend as unknown as WasmBackendCounter).dataIdNextNumber++

export const tensorData = (backend: WasmBackend, t: TensorInfo): WasmTensorData => {
  const data = backend.dataIdMap.get(t.dataId)
  if (data === undefined) throw new Error("tensor is not on the wasm backend (was it disposed?)")
  return data
}

/** A float32 or int32 view of a tensor's heap memory; taken fresh each time because heap growth detaches old views. */
export const heapFloat32 = (backend: WasmBackend, pointer: number, size: number): Float32Array =>
  new Float32Array(backend.wasm.HEAPU8.buffer, pointer, size)

export const heapInt32 = (backend: WasmBackend, pointer: number, size: number): Int32Array =>
  new Int32Array(backend.wasm.HEAPU8.buffer, pointer, size)

/** Scratch heap memory for the small int arrays (shapes, perms) the C++ entry points take by pointer. */
const scratchByModule = new WeakMap<WasmModule, number>()
const scratchInts = 16

export const scratch = (backend: WasmBackend): number => {
  let pointer = scratchByModule.get(backend.wasm)
  if (pointer === undefined) {
    pointer = backend.wasm._malloc(scratchInts * 4) >>> 0
    scratchByModule.set(backend.wasm, pointer)
  }
  return pointer
}

/** Writes `values` into scratch slot `slot` (0..3, four ints each) and returns its pointer. */
export const writeInts = (backend: WasmBackend, slot: number, values: ReadonlyArray<number>): number => {
  const pointer = scratch(backend) + slot * 16
  const heap = backend.wasm.HEAP32
  for (let i = 0; i < values.length; i++) heap[(pointer >> 2) + i] = values[i]!
  return pointer
}

/**
 * An id registered over `size` floats at `pointer`: either a view into an existing tensor or a
 * temporary buffer that this module owns (`owned`). `release` undoes it.
 */
export interface HeapRegion {
  readonly id: number
  readonly pointer: number
  readonly owned: boolean
}

export const registerView = (backend: WasmBackend, pointer: number, size: number): HeapRegion => {
  const id = reserveId(backend)
  backend.wasm.tfjs.registerTensor(id, size, pointer)
  return { id, pointer, owned: false }
}

export const allocateRegion = (backend: WasmBackend, size: number): HeapRegion => {
  // At least one float, so that malloc never returns the null pointer for an empty region.
  const pointer = backend.wasm._malloc(Math.max(size, 1) * 4) >>> 0
  if (pointer === 0) throw new Error(`wasm heap exhausted allocating ${size} floats`)
  const id = reserveId(backend)
  backend.wasm.tfjs.registerTensor(id, size, pointer)
  return { id, pointer, owned: true }
}

export const releaseRegion = (backend: WasmBackend, region: HeapRegion): void => {
  backend.wasm.tfjs.disposeData(region.id)
  if (region.owned) backend.wasm._free(region.pointer)
}
