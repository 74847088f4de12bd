import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import { Effect } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { beforeAll } from "vitest"
import type { LoadedCheckpoint } from "../src/checkpoint/Checkpoint.js"
import { loadGguf } from "../src/checkpoint/Gguf.js"
import {
  createLoraAdapter,
  disposeDeviceLora,
  hashWeights,
  loraHook,
  mergeLora,
  uploadLora
} from "../src/lora/LoraAdapter.js"
import { generate } from "../src/model/Generate.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { createTransformerWeights, disposeTransformerWeights } from "../src/model/Transformer.js"
import { tokenizeExample } from "../src/train/Loss.js"
import { trainLora } from "../src/train/Trainer.js"

const modelPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../models/stories260K.gguf")

const sentence = "The purple robot named Zibbo sang to the moon every Tuesday."
const promptText = "The purple robot"

describe("LoRA on stories260K", () => {
  let checkpoint: LoadedCheckpoint
  let weights: TransformerWeights
  beforeAll(async () => {
    await tf.setBackend("cpu")
    checkpoint = await Effect.runPromise(loadGguf(modelPath))
    weights = createTransformerWeights(checkpoint.config, checkpoint.weights)
    return () => disposeTransformerWeights(weights)
  })

  it("memorises an unseen sentence: greedy decoding from its first words completes it exactly", () => {
    const { tokenizer, config } = checkpoint
    const example = tokenizeExample(tokenizer, { text: sentence })
    const prompt = tokenizer.encode(promptText)
    expect(example.ids.slice(0, prompt.length)).toEqual(prompt)
    const rest = example.ids.length - prompt.length
    const complete = (hook?: Parameters<typeof generate>[2]["hook"], w = weights) =>
      tokenizer.decode([...prompt, ...generate(w, [prompt], { maxTokens: rest, temperature: 0, hook })[0]!.tokens])

    // The base model has never seen it.
    expect(complete()).not.toBe(sentence)

    const adapter = createLoraAdapter(config, {
      rank: 8,
      alpha: 16,
      dropout: 0,
      targets: ["q", "k", "v", "o", "gate", "up", "down"]
    }, { seed: 1, parentModelHash: hashWeights(checkpoint.weights) })
    const before = tf.memory().numTensors
    const result = trainLora(weights, adapter, [example], { learningRate: 1e-2, steps: 25, seed: 1 })
    expect(tf.memory().numTensors).toBe(before)
    expect(result.losses[result.losses.length - 1]).toBeLessThan(0.05)
    console.log(
      `stories260K LoRA: ${result.steps} steps, loss ${result.losses[0]!.toFixed(3)} -> ` +
        `${result.losses[result.losses.length - 1]!.toFixed(4)}, ${result.seconds.toFixed(2)} s, ` +
        `${result.tokensPerSecond.toFixed(0)} tokens/s`
    )

    const device = uploadLora(result.adapter, false)
    try {
      expect(complete(loraHook(device))).toBe(sentence)
    } finally {
      disposeDeviceLora(device)
    }
    // The same adapter merged into the weights completes it too.
    const merged = createTransformerWeights(config, mergeLora(checkpoint.weights, result.adapter))
    try {
      expect(complete(undefined, merged)).toBe(sentence)
    } finally {
      disposeTransformerWeights(merged)
    }
  })
})
