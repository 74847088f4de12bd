import * as tf from "@tensorflow/tfjs-core"

/**
 * Recognises the wasm backend running out of heap. Its linear memory stops at 4 GiB; past that
 * Emscripten's malloc returns null, the next kernel writes through it ("memory access out of
 * bounds") and the module aborts, after which every wasm op in the process fails ("Aborted()").
 * Users see this when a batch or an example is too long, so it gets its own error and advice
 * instead of a runtime trace.
 */
export const isWasmHeapExhausted = (error: unknown): boolean => {
  if (tf.getBackend() !== "wasm") return false
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  return /memory access out of bounds|Aborted\(|Cannot enlarge memory|Maximum memory size|out of memory/i.test(text)
}

export const wasmHeapAdvice =
  "the wasm backend ran out of heap (4 GiB at most per process): use a smaller batch size or shorter examples, "
  + "or install @tensorflow/tfjs-node (or -gpu) for a native backend without that ceiling; "
  + "the wasm backend cannot be used again in this process"
