import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { loadCheckpoint } from "../src/checkpoint/Checkpoint.js"
import { generate } from "../src/model/Generate.js"
import { createTransformerWeights, disposeTransformerWeights } from "../src/model/Transformer.js"
import { tempDir, writeTinyHfCheckpoint } from "../src/testing/HfFixture.js"
import { encodeGguf, syntheticModel } from "./support/ggufWriter.js"

describe("the same weights through GGUF and a Hugging Face directory", () => {
  for (const architecture of ["llama", "qwen2"] as const) {
    it.effect(`${architecture}: identical weights and identical generations`, () =>
      Effect.gen(function*() {
        yield* Effect.promise(() => tf.setBackend("cpu"))
        const dir = yield* tempDir("seal-cross-")
        const model = syntheticModel({ architecture, seed: 5, tieEmbeddings: architecture === "qwen2" })
        const ggufPath = path.join(dir, "model.gguf")
        fs.writeFileSync(ggufPath, encodeGguf(model.input))
        const fromGguf = yield* loadCheckpoint(ggufPath)
        const hfDir = path.join(dir, "hf")
        yield* writeTinyHfCheckpoint(hfDir, { config: fromGguf.config, seed: 0, weights: model.hf })
        const fromHf = yield* loadCheckpoint(hfDir)

        expect(fromHf.config).toEqual(fromGguf.config)
        expect([...fromHf.weights.keys()].sort()).toEqual([...fromGguf.weights.keys()].sort())
        for (const [name, tensor] of fromGguf.weights) {
          // GGUF stores llama q/k rows permuted; after loading both must be the HF layout, bit for bit.
          expect(fromHf.weights.get(name)!.data, name).toEqual(tensor.data)
          expect(tensor.data, name).toEqual(model.hf.get(name)!.data)
        }

        const run = (weights: typeof fromGguf.weights) => {
          const device = createTransformerWeights(fromGguf.config, weights)
          const rows = generate(device, [[1, 5, 9], [3]], { maxTokens: 12, temperature: 0 })
          disposeTransformerWeights(device)
          return rows.map((r) => r.tokens)
        }
        expect(run(fromHf.weights)).toEqual(run(fromGguf.weights))
      }).pipe(Effect.scoped))
  }
})
