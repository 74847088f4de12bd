import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import "@tensorflow/tfjs-backend-wasm"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { loadGguf } from "../src/checkpoint/Gguf.js"
import { generate } from "../src/model/Generate.js"
import { createTransformerWeights, disposeTransformerWeights } from "../src/model/Transformer.js"
import { registerWasmKernels } from "../src/wasm/WasmKernels.js"

const modelPath = fileURLToPath(new URL("../../../models/stories260K.gguf", import.meta.url))
const fixture = JSON.parse(
  readFileSync(new URL("./fixtures/stories260K.once-upon-a-time.greedy64.json", import.meta.url), "utf8")
) as { prompt: string; prompt_tokens: Array<number>; generated_tokens: Array<number>; first_logits: Array<number> }

describe("parity with llama2.c / llama.cpp on stories260K", () => {
  for (const backend of ["cpu", "wasm"] as const) {
    it.effect(`${backend}: greedy 64 tokens from "Once upon a time" match the reference ids and first logits`, () =>
      Effect.gen(function*() {
        yield* Effect.promise(() => tf.setBackend(backend))
        if (backend === "wasm") registerWasmKernels()
        const checkpoint = yield* loadGguf(modelPath)
        const promptTokens = checkpoint.tokenizer.encode(fixture.prompt)
        expect(promptTokens).toEqual(fixture.prompt_tokens)
        const before = tf.memory().numTensors
        const weights = createTransformerWeights(checkpoint.config, checkpoint.weights)
        let first: Float32Array | undefined
        const [row] = generate(weights, [promptTokens], {
          maxTokens: 64,
          temperature: 0,
          onLogits: (step, _row, logits) => {
            if (step === 0) first = logits.slice()
          }
        })
        disposeTransformerWeights(weights)
        expect(tf.memory().numTensors).toBe(before)
        expect(row!.tokens).toEqual(fixture.generated_tokens)
        const maxDiff = Math.max(...fixture.first_logits.map((v, i) => Math.abs(v - first![i]!)))
        console.log(
          `stories260K parity on ${backend}: 64/64 ids equal, max first-logit diff ${maxDiff.toExponential(2)}`
        )
        expect(maxDiff).toBeLessThan(1e-3)
      }))
  }
})
