/**
 * Tiny in-memory models for tests: a small Llama/Qwen2 config, a character tokenizer over a-z,
 * space and '.', and the cpu-backend setup that builds tensors or a `LanguageModel` from seeded
 * random weights. Nothing here touches the disk; for checkpoints written to a directory see
 * `HfFixture`.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Layer } from "effect"
import type { LoadedCheckpoint } from "../checkpoint/Checkpoint.js"
import { fromCheckpoint, LanguageModel } from "../LanguageModel.js"
import { initWeights } from "../model/InitWeights.js"
import type { ModelConfig, WeightMap } from "../model/ModelConfig.js"
import type { TransformerWeights } from "../model/Transformer.js"
import { createTransformerWeights } from "../model/Transformer.js"
import * as TensorRuntime from "../TensorRuntime.js"
import type { Tokenizer } from "../tokenizer/Tokenizer.js"

/**
 * A 2-layer Llama with a 40-token vocabulary (room for `charTokenizer`), hidden size 16,
 * 4 heads of 4 sharing 2 KV heads (GQA), MLP 32 and 64 positions; `overrides` replace fields.
 */
export const tinyLlama = (overrides: Partial<ModelConfig> = {}): ModelConfig => ({
  architecture: "llama",
  vocabSize: 40,
  hiddenSize: 16,
  intermediateSize: 32,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 4,
  maxPositions: 64,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: false,
  attentionBias: false,
  ...overrides
})

/** `tinyLlama` as Qwen2: the same shape with q/k/v biases; `overrides` replace fields. */
export const tinyQwen2 = (overrides: Partial<ModelConfig> = {}): ModelConfig =>
  tinyLlama({ architecture: "qwen2", attentionBias: true, ...overrides })

/** The `charTokenizer` ids of `text` without BOS: a-z are 3..28, space 29 and '.' 30. */
export const encodeChars = (text: string): Array<number> =>
  [...text].map((c) => (c === " " ? 29 : c === "." ? 30 : c.charCodeAt(0) - 97 + 3))

/**
 * Characters a-z, space and '.' as ids 3..30 (31..39 decode past 'z'); BOS 1, EOS 2; vocabulary 40.
 * Decoding drops ids 0..2.
 */
export const charTokenizer: Tokenizer = {
  vocabSize: 40,
  bosId: 1,
  eosId: 2,
  encode: (text, options) => [...((options?.addBos ?? true) ? [1] : []), ...encodeChars(text)],
  decode: (ids) =>
    ids.filter((i) => i > 2).map((i) => (i === 29 ? " " : i === 30 ? "." : String.fromCharCode(i - 3 + 97))).join("")
}

/** A checkpoint that lives only in memory (source `hf`, path `memory`). */
export const memoryCheckpoint = (
  config: ModelConfig,
  weights: WeightMap,
  tokenizer: Tokenizer = charTokenizer
): LoadedCheckpoint => ({ config, weights, tokenizer, source: { format: "hf", path: "memory" } })

/**
 * A real `LanguageModel` over `memoryCheckpoint(config, weights, tokenizer)` on the cpu backend.
 * The layer also provides its `TensorRuntime` (e.g. to count live tensors); the device weights
 * are freed when the layer's scope closes.
 */
export const tinyLanguageModel = (config: ModelConfig, weights: WeightMap, tokenizer: Tokenizer = charTokenizer) =>
  Layer.scoped(LanguageModel, fromCheckpoint(memoryCheckpoint(config, weights, tokenizer))).pipe(
    Layer.provideMerge(TensorRuntime.layer({ backend: "cpu" }))
  )

/** Makes the tfjs cpu backend the active one (loading it if need be). */
export const useCpuBackend = async (): Promise<void> => {
  await import("@tensorflow/tfjs-backend-cpu")
  await tf.setBackend("cpu")
}

export interface TinyWeights {
  /** `initWeights(config, seed, std)`. */
  readonly host: WeightMap
  /** `host` uploaded to the cpu backend; the caller frees it with `disposeTransformerWeights`. */
  readonly weights: TransformerWeights
}

/** Switches to the cpu backend and uploads seeded random weights for `config`. */
export const weightsOnCpu = async (config: ModelConfig, seed: number, std: number): Promise<TinyWeights> => {
  await useCpuBackend()
  const host = initWeights(config, seed, std)
  return { host, weights: createTransformerWeights(config, host) }
}
