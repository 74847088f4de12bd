import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TensorRuntime } from "../src/TensorRuntime.js"
import * as Runtime from "../src/TensorRuntime.js"

describe("TensorRuntime", () => {
  it.effect("auto selects the fastest installed backend (wasm here) and reports it", () =>
    Effect.gen(function*() {
      const runtime = yield* TensorRuntime
      const info = yield* runtime.info
      // tfjs-node(-gpu) cannot be installed on CI machines, so auto falls through to wasm.
      expect(info.backend).toBe("wasm")
      expect(info.tfjsBackend).toBe("wasm")
      expect(info.threads).toBeGreaterThanOrEqual(1)
      expect(typeof info.numBytes).toBe("number")
    }).pipe(Effect.provide(Runtime.layer({ backend: "auto" }))))

  it.effect("asking for a backend that is not installed is a typed error naming the package", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(TensorRuntime, Runtime.layer({ backend: "node" })))
      expect(error._tag).toBe("BackendUnavailable")
      expect(error.reason).toBe("NotInstalled")
      expect(error.message).toMatch(/npm install @tensorflow\/tfjs-node@/)
      const gpu = yield* Effect.flip(Effect.provide(TensorRuntime, Runtime.layer({ backend: "node-gpu" })))
      expect(gpu.message).toMatch(/npm install @tensorflow\/tfjs-node-gpu@/)
    }))

  it.effect("tidy frees intermediates on success and on failure", () =>
    Effect.gen(function*() {
      const { tf, tidy } = yield* TensorRuntime
      const before = tf.memory().numTensors
      const sum = yield* tidy("sum", () => tf.sum(tf.mul(tf.ones([4, 4]), 2)))
      expect(sum.dataSync()[0]).toBe(32)
      sum.dispose()
      expect(tf.memory().numTensors).toBe(before)
      const failed = yield* Effect.exit(tidy("boom", () => {
        tf.ones([8])
        throw new Error("boom")
      }))
      expect(failed._tag).toBe("Failure")
      expect(tf.memory().numTensors).toBe(before)
    }).pipe(Effect.provide(Runtime.layer({ backend: "cpu" }))))

  it.effect("layerTest reports the overrides it was given", () =>
    Effect.gen(function*() {
      const runtime = yield* TensorRuntime
      const info = yield* runtime.info
      expect(info.tfjsBackend).toBe("mock")
      expect(info.threads).toBe(8)
    }).pipe(Effect.provide(Runtime.layerTest({ threads: 8 }))))
})
