import * as tfWasm from "@tensorflow/tfjs-backend-wasm"
import * as tf from "@tensorflow/tfjs-core"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"

/*
 * Multi-threaded wasm in Node (tfjs-backend-wasm 4.22.0, Node 20).
 *
 * tfjs ships a threaded+SIMD binary whose Emscripten glue does support Node (pthreads become
 * worker_threads), but three things keep it off:
 *   1. `WASM_HAS_MULTITHREAD_SUPPORT` answers false whenever `IS_NODE` (tfjs issue #3830), so the
 *      single-threaded binary is loaded and `setThreadsCount` has no effect.
 *   2. With the flag forced on, init hands Emscripten the pthread worker script as a `blob:` URL
 *      and the main script as a `Blob`. Node's `new Worker()` takes file paths only (a blob: URL
 *      throws ERR_WORKER_PATH), and the worker's Node shim loads scripts with `fs.readFileSync`,
 *      which cannot read a Blob. (The worker script text also sits in a template literal, so it
 *      must be re-escaped before it is written out, as tfjs does for its Blob.)
 *   3. The C++ side caps the pool at `emscripten_num_logical_cores() / 2` (it assumes two
 *      hyper-threads per core); in Node that is `os.cpus().length / 2`, so a 2-core machine gets
 *      one thread whatever `setThreadsCount` says.
 *
 * `enableWasmThreads` works around all three, only for the duration of the backend's init:
 *   - forces the flag on and calls `setThreadsCount`;
 *   - writes the worker script to a temporary file, prefixed so that the worker defines the
 *     module factory itself (`require` of the threaded glue) and skips the Blob import;
 *   - while the wasm factory runs, answers the worker-script `URL.createObjectURL` call with that
 *     file's path and reports `os.cpus()` as at least 2 × threads, so the cap is the request;
 *   - afterwards unrefs the pthread workers, which otherwise keep Node from exiting (they only
 *     ever run while the main thread waits for them inside a kernel).
 *
 * Verdict, measured on a 2-core machine (tools/bench/matmul.ts and square products), 2 threads:
 *   - on otherwise idle cores it nearly doubles every product from [64×64]·[64×64] up: the
 *     [1024×128]·[128×384] projection 47 → 91 GFLOP/s, [n×n]² for n = 128..512 ~45 → ~90, the
 *     per-head attention products 31-33 → 39-48; tiny ones lose (n = 32: 17 → ~1 GFLOP/s), likely because
 *     each call wakes pool workers that sleep between calls (pthreadpool on Atomics.wait);
 *   - when other processes compete for the cores the pool stalls on its slowest thread: the same
 *     shapes then measured 0.5-25 GFLOP/s, often below one thread, and swung from run to run.
 *   So threads stay off by default; turn them on where cores are dedicated to the process.
 * Everything it touches is version-pinned text in tfjs' bundle; if the worker script no longer
 * contains the expected shim it reports `enabled: false` with the reason instead of guessing.
 */

export interface WasmThreadsResult {
  readonly enabled: boolean
  /** Threads asked for; the pool size is read back after init with `wasmThreadsCount()`. */
  readonly requested: number
  readonly reason?: string
}

const require = createRequire(import.meta.url)

/** The Node shim's script loader inside tfjs' worker script; the patch makes it ignore Blobs. */
const importScriptsShim = "importScripts:function(f){"

let workerFile: string | undefined

const writeWorkerScript = (): string | { readonly error: string } => {
  if (workerFile !== undefined) return workerFile
  const gluePath = require.resolve("@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js")
  const { wasmWorkerContents } = require(
    "@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js"
  ) as { wasmWorkerContents: string }
  if (!wasmWorkerContents.includes(importScriptsShim)) {
    return { error: "the threaded worker script has no Node importScripts shim to patch (tfjs version changed?)" }
  }
  // The script sits in a JS template literal in tfjs' bundle, so its `\n` escapes arrived as real
  // newlines inside string literals; escape them back, as tfjs does before making its Blob.
  const body = wasmWorkerContents.replace(/\n/g, "\\n").replace(
    importScriptsShim,
    `${importScriptsShim}if(typeof f!=="string"||f.startsWith("blob:"))return;`
  )
  const prelude = `globalThis.WasmBackendModuleThreadedSimd = require(${JSON.stringify(gluePath)});\n`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seal-tfjs-wasm-"))
  const file = path.join(dir, "tfjs-backend-wasm-threaded-simd.worker.cjs")
  fs.writeFileSync(file, prelude + body)
  process.once("exit", () => fs.rmSync(dir, { recursive: true, force: true }))
  workerFile = file
  return file
}

interface PThreadWorker {
  unref(): void
}
interface PThreadRuntime {
  readonly unusedWorkers: ReadonlyArray<PThreadWorker>
  readonly runningWorkers: ReadonlyArray<PThreadWorker>
}

/** Runs `f` with the worker-script URL and the core count answered as the threaded init needs. */
const withInitPatches = async <A>(file: string, threads: number, f: () => Promise<A>): Promise<A> => {
  const createObjectURL = URL.createObjectURL
  const cpus = os.cpus
  // `node:os` as seen through require is the same object Emscripten's glue requires.
  const osModule = require("node:os") as { cpus: typeof os.cpus }
  URL.createObjectURL = (blob) =>
    blob instanceof Blob && blob.type === "application/javascript" ? file : createObjectURL(blob)
  osModule.cpus = () => {
    const list = cpus()
    while (list.length > 0 && list.length < 2 * threads) list.push(list[0]!)
    return list
  }
  try {
    return await f()
  } finally {
    URL.createObjectURL = createObjectURL
    osModule.cpus = cpus
  }
}

/**
 * Makes the next `tf.setBackend("wasm")` load the threaded SIMD binary with a pool of `threads`
 * (at most 8, tfjs' pre-created worker count). Call it before the wasm backend is first
 * initialised; `threads <= 1` leaves the default single-threaded build.
 */
export const enableWasmThreads = (threads: number): WasmThreadsResult => {
  const requested = Math.max(1, Math.min(8, Math.floor(threads)))
  if (requested <= 1) return { enabled: false, requested, reason: "one thread requested" }
  const engine = tf.engine()
  if (engine.registry["wasm"] !== undefined) {
    return { enabled: false, requested, reason: "the wasm backend is already initialised; call before tf.setBackend" }
  }
  const entry = engine.registryFactory["wasm"]
  if (entry === undefined) return { enabled: false, requested, reason: "the wasm backend is not registered" }
  if (typeof SharedArrayBuffer === "undefined") {
    return { enabled: false, requested, reason: "SharedArrayBuffer is unavailable" }
  }
  const file = writeWorkerScript()
  if (typeof file !== "string") return { enabled: false, requested, reason: file.error }
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true)
  tfWasm.setThreadsCount(requested)
  const factory = entry.factory
  entry.factory = async () => {
    try {
      return await withInitPatches(file, requested, async () => {
        const backend = await factory()
        const pthread = (backend as unknown as { wasm?: { PThread?: PThreadRuntime } }).wasm?.PThread
        if (pthread !== undefined) {
          for (const worker of [...pthread.unusedWorkers, ...pthread.runningWorkers]) worker.unref()
        }
        return backend
      })
    } catch (error) {
      // A failed threaded start should cost speed, not the backend: retry single-threaded.
      const reason = (error as { message?: unknown } | null)?.message ?? error
      console.warn(`tfjs wasm: threaded start failed (${String(reason)}); using one thread`)
      tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false)
      return factory()
    }
  }
  return { enabled: true, requested }
}

/** Threads in the wasm backend's XNNPACK pool (1 for the single-threaded build), once initialised. */
export const wasmThreadsCount = (): number => tfWasm.getThreadsCount()
