import type { ModelConfig } from "../model/ModelConfig.js"

/**
 * How many LoRA adapters can train together in one batched pass (`trainLoraMany`) within a memory
 * budget. The pass keeps every layer's activations for the backward pass, for every row of every
 * adapter, so memory grows linearly in the number of adapters; the wasm backend stops at a 4 GiB
 * heap and a GPU at its memory, so the batch is sized to a budget rather than fixed.
 */

/**
 * Bytes one adapter's rows keep alive during a batched training step: per token and layer the
 * attention inputs and outputs (q, k, v, o, norms: ~10·d), the MLP's (gate, up, activation,
 * down: ~4·f) and the attention probabilities (2·heads·steps), plus logits and their softmax
 * (3·vocab) per token, in float32. A deliberate overestimate: tfjs frees some of these early.
 */
export const batchedTrainingBytes = (config: ModelConfig, rows: number, steps: number): number =>
  4 * rows * steps *
  (config.numLayers * (10 * config.hiddenSize + 4 * config.intermediateSize + 2 * config.numHeads * steps) +
    3 * config.vocabSize)

/** Adapters per batched pass within `budgetBytes` (at least 1, at most `cap`). */
export const adaptersWithinBudget = (
  config: ModelConfig,
  rows: number,
  steps: number,
  budgetBytes: number,
  cap: number
): number => Math.max(1, Math.min(cap, Math.floor(budgetBytes / batchedTrainingBytes(config, rows, steps))))
