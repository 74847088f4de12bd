/**
 * Token selection on the host, over one row of logits at a time. Vocabularies here are small
 * enough that copying a row out of the device each step costs less than the decode step itself.
 */

/** A seeded 32-bit PRNG (mulberry32): same seed, same stream, on every platform. */
export const makeRng = (seed: number): () => number => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Mixes a base seed with a stream index so that rows of one batch draw independent streams. */
export const deriveSeed = (seed: number, stream: number): number => {
  let h = (seed ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/** Fisher-Yates over `rng`, in place (returns `items`): the one shuffle every seeded order uses. */
export const shuffleInPlace = <A>(items: Array<A>, rng: () => number): Array<A> => {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    const tmp = items[i]!
    items[i] = items[j]!
    items[j] = tmp
  }
  return items
}

export interface SamplingOptions {
  /** 0 means greedy. */
  readonly temperature: number
  readonly topK?: number | undefined
  readonly topP?: number | undefined
}

/** Index of the largest value; the lowest index wins ties (as llama2.c and llama.cpp do). */
export const argmax = (values: ArrayLike<number>): number => {
  let best = 0
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i
  return best
}

/**
 * Picks one token from `logits` (already masked). Masked entries are `-Infinity` and are never
 * chosen unless every entry is masked, which is a caller bug and throws.
 */
export const sampleToken = (logits: Float32Array, options: SamplingOptions, rng: () => number): number => {
  if (options.temperature <= 0) {
    const best = argmax(logits)
    if (logits[best] === -Infinity) throw new Error("every token is masked")
    return best
  }
  // Candidates sorted by logit, highest first; top-k cuts the list before the softmax.
  let order = Array.from(logits.keys()).filter((i) => logits[i] !== -Infinity)
  if (order.length === 0) throw new Error("every token is masked")
  order.sort((a, b) => logits[b]! - logits[a]! || a - b)
  if (options.topK !== undefined && options.topK > 0 && options.topK < order.length) {
    order = order.slice(0, options.topK)
  }
  const max = logits[order[0]!]!
  const probs = order.map((i) => Math.exp((logits[i]! - max) / options.temperature))
  let total = probs.reduce((a, b) => a + b, 0)
  if (options.topP !== undefined && options.topP < 1) {
    // Keep the smallest prefix whose mass reaches top-p (always at least one token).
    let mass = 0
    let keep = 0
    while (keep < probs.length) {
      mass += probs[keep]! / total
      keep++
      if (mass >= options.topP) break
    }
    order = order.slice(0, keep)
    probs.length = keep
    total = probs.reduce((a, b) => a + b, 0)
  }
  let u = rng() * total
  for (let j = 0; j < order.length; j++) {
    u -= probs[j]!
    if (u < 0) return order[j]!
  }
  return order[order.length - 1]!
}
