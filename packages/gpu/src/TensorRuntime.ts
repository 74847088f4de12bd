import * as tf from "@tensorflow/tfjs-core"
import { Context, Data, Effect, Layer } from "effect"

/**
 * The tfjs backends this runtime knows, fastest first. `tensorflow` is libtensorflow through
 * `@tensorflow/tfjs-node-gpu` (CUDA) or `@tensorflow/tfjs-node` (CPU); both register under the
 * same tfjs backend name, so the package that provided it is reported separately.
 */
export type BackendChoice = "auto" | "node-gpu" | "node" | "wasm" | "cpu"
export type ResolvedBackend = Exclude<BackendChoice, "auto">

export const backendPreference: ReadonlyArray<ResolvedBackend> = ["node-gpu", "node", "wasm", "cpu"]

const installAdvice: Record<ResolvedBackend, string> = {
  "node-gpu":
    "npm install @tensorflow/tfjs-node-gpu@4.22.0 (needs CUDA 11.8 + cuDNN 8 and network access to download libtensorflow)",
  node: "npm install @tensorflow/tfjs-node@4.22.0 (downloads libtensorflow at install time)",
  wasm: "npm install @tensorflow/tfjs-backend-wasm@4.22.0",
  cpu: "npm install @tensorflow/tfjs-backend-cpu@4.22.0"
}

/** A backend that was asked for but cannot be loaded; `install` says what would fix it. */
export class BackendUnavailable extends Data.TaggedError("BackendUnavailable")<{
  readonly backend: ResolvedBackend
  readonly reason: "NotInstalled" | "InitFailed"
  readonly detail: string
}> {
  get install(): string {
    return installAdvice[this.backend]
  }
  override get message(): string {
    return `tfjs backend "${this.backend}" is unavailable (${this.detail}); to use it: ${this.install}`
  }
}

export interface RuntimeInfo {
  readonly backend: ResolvedBackend
  /** The tfjs backend name (`tensorflow`, `wasm`, `cpu`). */
  readonly tfjsBackend: string
  readonly threads: number
  readonly simd: boolean
  readonly numTensors: number
  readonly numBytes: number
}

export interface RuntimeOptions {
  readonly backend?: BackendChoice | undefined
  /** wasm threads; ignored by backends that manage their own. */
  readonly threads?: number | undefined
}

/**
 * The one place that knows which tfjs backend is loaded. Consumers get the tfjs namespace from
 * here and run tensor work through `tidy`, so tensors never outlive the step that made them.
 */
export class TensorRuntime extends Context.Tag("@seal/gpu/TensorRuntime")<TensorRuntime, {
  readonly backend: ResolvedBackend
  readonly tf: typeof tf
  readonly info: Effect.Effect<RuntimeInfo>
  /** Runs `f` inside `tf.tidy`: every tensor it makes and does not return is disposed, on success or failure. */
  readonly tidy: <A extends tf.TensorContainer>(name: string, f: () => A) => Effect.Effect<A>
}>() {}

const optionalImport = (specifier: string): Promise<unknown> => import(specifier)

/** Loads the module that provides `backend` and makes it the active tfjs backend. */
const activate = (backend: ResolvedBackend, threads: number | undefined) =>
  Effect.gen(function*() {
    switch (backend) {
      case "node-gpu":
      case "node": {
        const pkg = backend === "node-gpu" ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node"
        yield* Effect.tryPromise({
          try: () => optionalImport(pkg),
          catch: (e) =>
            new BackendUnavailable({
              backend,
              reason: "NotInstalled",
              detail: `${pkg} could not be loaded: ${firstLine(e)}`
            })
        })
        yield* setBackend(backend, "tensorflow")
        return
      }
      case "wasm": {
        yield* Effect.tryPromise({
          try: () => import("@tensorflow/tfjs-backend-wasm"),
          catch: (e) => new BackendUnavailable({ backend, reason: "NotInstalled", detail: firstLine(e) })
        })
        const kernels = yield* Effect.promise(() => import("./wasm/WasmKernels.js"))
        // tfjs disables the threaded wasm build in Node; enableWasmThreads works around that and
        // must run before the backend initialises. Off by default: on shared cores it is slower.
        if (threads !== undefined && threads > 1) {
          const result = kernels.enableWasmThreads(threads)
          if (!result.enabled) {
            return yield* new BackendUnavailable({
              backend,
              reason: "InitFailed",
              detail: `wasm threads could not be enabled: ${result.reason ?? "unknown reason"}`
            })
          }
        }
        yield* setBackend(backend, "wasm")
        kernels.registerWasmKernels()
        return
      }
      case "cpu": {
        yield* Effect.tryPromise({
          try: () => import("@tensorflow/tfjs-backend-cpu"),
          catch: (e) => new BackendUnavailable({ backend, reason: "NotInstalled", detail: firstLine(e) })
        })
        yield* setBackend(backend, "cpu")
        return
      }
    }
  })

const setBackend = (backend: ResolvedBackend, tfjsName: string) =>
  Effect.tryPromise({
    try: async () => {
      const ok = await tf.setBackend(tfjsName)
      await tf.ready()
      if (!ok || tf.getBackend() !== tfjsName) throw new Error(`tf.setBackend("${tfjsName}") returned false`)
    },
    catch: (e) => new BackendUnavailable({ backend, reason: "InitFailed", detail: firstLine(e) })
  })

const firstLine = (e: unknown): string => String(e instanceof Error ? e.message : e).split("\n")[0]!

const readInfo = (backend: ResolvedBackend): Effect.Effect<RuntimeInfo> =>
  Effect.promise(async () => {
    const memory = tf.memory()
    const isWasm = tf.getBackend() === "wasm"
    const simd = isWasm ? Boolean(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT")) : false
    let threads = 1
    if (isWasm) {
      const kernels = await import("./wasm/WasmKernels.js")
      threads = kernels.wasmThreadsCount()
    }
    return {
      backend,
      tfjsBackend: tf.getBackend(),
      threads,
      simd,
      numTensors: memory.numTensors,
      numBytes: memory.numBytes
    }
  })

const make = (options: RuntimeOptions) =>
  Effect.gen(function*() {
    const choice = options.backend ?? "auto"
    let backend: ResolvedBackend
    if (choice === "auto") {
      // Try each backend in order; the last one (cpu) ships with the project and always loads.
      let chosen: ResolvedBackend | undefined
      for (const candidate of backendPreference) {
        const ok = yield* activate(candidate, options.threads).pipe(
          Effect.as(true),
          Effect.catchTag("BackendUnavailable", () => Effect.succeed(false))
        )
        if (ok) {
          chosen = candidate
          break
        }
      }
      if (chosen === undefined) {
        return yield* new BackendUnavailable({ backend: "cpu", reason: "InitFailed", detail: "no tfjs backend loaded" })
      }
      backend = chosen
    } else {
      yield* activate(choice, options.threads)
      backend = choice
    }
    return TensorRuntime.of({
      backend,
      tf,
      info: readInfo(backend),
      tidy: (name, f) => Effect.sync(() => tf.tidy(name, f))
    })
  })

/** Selects a backend (`auto`: tfjs-node-gpu > tfjs-node > wasm > cpu) and makes it active. */
export const layer = (options: RuntimeOptions = {}): Layer.Layer<TensorRuntime, BackendUnavailable> =>
  Layer.effect(TensorRuntime, make(options))

/**
 * A runtime for testing consumers without real tensor work: it reports a fake backend, runs
 * `tidy` bodies on the always-present cpu backend (so small tensors still behave), and lets a
 * test read how many tidy scopes were opened.
 */
export const layerTest = (overrides: Partial<RuntimeInfo> = {}): Layer.Layer<TensorRuntime> =>
  Layer.effect(
    TensorRuntime,
    Effect.gen(function*() {
      yield* Effect.promise(async () => {
        await import("@tensorflow/tfjs-backend-cpu")
        await tf.setBackend("cpu")
      })
      const info: RuntimeInfo = {
        backend: "cpu",
        tfjsBackend: "mock",
        threads: 1,
        simd: false,
        numTensors: 0,
        numBytes: 0,
        ...overrides
      }
      return TensorRuntime.of({
        backend: info.backend,
        tf,
        info: Effect.sync(() => ({ ...info, numTensors: tf.memory().numTensors, numBytes: tf.memory().numBytes })),
        tidy: (name, f) => Effect.sync(() => tf.tidy(name, f))
      })
    })
  )
