import type { HostTensor, ModelConfig, WeightMap } from "./ModelConfig.js"
import { expectedWeightShapes } from "./ModelConfig.js"
import { deriveSeed, makeRng } from "./Sampling.js"

/**
 * Fresh weights for training from scratch (and for tests that need a model of a given shape):
 * N(0, std) for matrices, GPT-2 style with the residual output projections (o, down) scaled by
 * 1/sqrt(2 * layers), ones for norms, zeros for biases. Deterministic in `seed`.
 */
export const initWeights = (config: ModelConfig, seed: number, std = 0.02): WeightMap => {
  const weights = new Map<string, HostTensor>()
  let stream = 0
  for (const [name, shape] of expectedWeightShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1)
    const data = new Float32Array(size)
    if (name.endsWith("norm.weight")) data.fill(1)
    else if (!name.endsWith(".bias")) {
      const residual = name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight")
      const scale = residual ? std / Math.sqrt(2 * config.numLayers) : std
      fillNormal(data, makeRng(deriveSeed(seed, stream)), scale)
    }
    stream++
    weights.set(name, { shape, data })
  }
  return weights
}

/** Box-Muller normal samples from a uniform stream. */
export const fillNormal = (out: Float32Array, rng: () => number, std: number): void => {
  for (let i = 0; i < out.length; i += 2) {
    const u1 = Math.max(rng(), 1e-12)
    const u2 = rng()
    const r = Math.sqrt(-2 * Math.log(u1)) * std
    out[i] = r * Math.cos(2 * Math.PI * u2)
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2)
  }
}
