import * as tf from "@tensorflow/tfjs-core"
import type { SamplingOptions } from "./Sampling.js"
import { deriveSeed, makeRng, sampleToken } from "./Sampling.js"
import type { KvCache, ProjectionHook, TransformerWeights } from "./Transformer.js"
import { disposeKvCache, forwardKept } from "./Transformer.js"

/**
 * Constrained decoding: called before each token is chosen with that row's logits (a copy the
 * hook may modify in place); set an entry to `-Infinity` to forbid that token.
 */
export type LogitMask = (
  step: { readonly row: number; readonly generated: ReadonlyArray<number>; readonly logits: Float32Array }
) => void

export interface GenerateOptions extends SamplingOptions {
  readonly maxTokens: number
  readonly seed?: number | undefined
  /**
   * One seed per row, overriding `deriveSeed(seed, row)`: a row's samples then do not depend on
   * which batch it ran in or at which position.
   */
  readonly rowSeeds?: ReadonlyArray<number> | undefined
  /** Stop when this id is generated (it is kept out of the output). */
  readonly eosId?: number | undefined
  /** Stop strings; needs `decode`. The text is cut before the first stop string. */
  readonly stop?: ReadonlyArray<string> | undefined
  /** The text of row `row`'s generated ids (a continuation of its prompt). */
  readonly decode?: ((ids: ReadonlyArray<number>, row: number) => string) | undefined
  readonly logitMask?: LogitMask | undefined
  readonly hook?: ProjectionHook | undefined
  /** Called with each step's logits for every row (e.g. to record them); must not keep the array. */
  readonly onLogits?: ((step: number, row: number, logits: Float32Array) => void) | undefined
}

export type FinishReason = "length" | "eos" | "stop" | "context"

export interface RowGeneration {
  readonly tokens: Array<number>
  readonly finishReason: FinishReason
  /** The decoded text cut at a stop string (present when `decode` was given). */
  readonly text?: string
}

const maskedOut = -1e9

/**
 * Batched autoregressive generation with a KV cache. Prompts of different lengths are
 * left-padded; each row gets its own RoPE positions (starting at 0) and never attends to its
 * padding, so a row's output does not depend on what else is in the batch. Each row samples
 * from its own seeded stream. Every tensor made here is disposed before returning.
 */
export const generate = (
  weights: TransformerWeights,
  prompts: ReadonlyArray<ReadonlyArray<number>>,
  options: GenerateOptions
): Array<RowGeneration> => {
  const batch = prompts.length
  if (batch === 0) return []
  const { maxPositions, vocabSize } = weights.config
  const lengths = prompts.map((p) => p.length)
  if (lengths.some((n) => n === 0)) throw new Error("a prompt has no tokens")
  const longest = Math.max(...lengths)
  if (longest >= maxPositions) {
    throw new Error(`a prompt of ${longest} tokens does not fit the context of ${maxPositions}`)
  }
  const pad = lengths.map((n) => longest - n)

  const rows = prompts.map((_, r) => ({
    tokens: [] as Array<number>,
    done: false,
    finishReason: "length" as FinishReason,
    text: undefined as string | undefined,
    rng: makeRng(options.rowSeeds?.[r] ?? deriveSeed(options.seed ?? 0, r))
  }))

  // Prefill: all prompt positions at once.
  const ids = new Int32Array(batch * longest)
  const positions = new Int32Array(batch * longest)
  const mask = new Float32Array(batch * longest * longest)
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < longest; t++) {
      ids[b * longest + t] = t < pad[b]! ? 0 : prompts[b]![t - pad[b]!]!
      positions[b * longest + t] = Math.max(0, t - pad[b]!)
      for (let s = 0; s < longest; s++) {
        mask[(b * longest + t) * longest + s] = s <= t && s >= pad[b]! ? 0 : maskedOut
      }
    }
  }
  let cache: KvCache | undefined
  let logits = step(weights, ids, positions, mask, [batch, longest], undefined, options.hook)
  cache = logits.cache

  try {
    for (let stepIndex = 0; stepIndex < options.maxTokens; stepIndex++) {
      const all = logits.values
      const next = new Int32Array(batch)
      for (let b = 0; b < batch; b++) {
        const row = rows[b]!
        if (row.done) {
          next[b] = row.tokens[row.tokens.length - 1] ?? 0
          continue
        }
        const rowLogits = all.slice(b * vocabSize, (b + 1) * vocabSize)
        options.onLogits?.(stepIndex, b, rowLogits)
        options.logitMask?.({ row: b, generated: row.tokens, logits: rowLogits })
        const token = sampleToken(rowLogits, options, row.rng)
        next[b] = token
        if (options.eosId !== undefined && token === options.eosId) {
          row.done = true
          row.finishReason = "eos"
          continue
        }
        row.tokens.push(token)
        if (options.stop !== undefined && options.stop.length > 0 && options.decode !== undefined) {
          const text = options.decode(row.tokens, b)
          const cut = firstStop(text, options.stop)
          if (cut !== undefined) {
            row.done = true
            row.finishReason = "stop"
            row.text = text.slice(0, cut)
          }
        }
        if (!row.done && cache.length + 1 >= maxPositions) {
          row.done = true
          row.finishReason = "context"
        }
      }
      if (rows.every((r) => r.done) || stepIndex === options.maxTokens - 1) break

      const slots = cache.length + 1
      const stepPositions = new Int32Array(batch)
      const stepMask = new Float32Array(batch * slots)
      for (let b = 0; b < batch; b++) {
        stepPositions[b] = cache.length - pad[b]!
        for (let s = 0; s < slots; s++) stepMask[b * slots + s] = s >= pad[b]! ? 0 : maskedOut
      }
      const previous: KvCache = cache
      logits = step(weights, next, stepPositions, stepMask, [batch, 1], previous, options.hook)
      cache = logits.cache
      disposeKvCache(previous)
    }
  } finally {
    if (cache !== undefined) disposeKvCache(cache)
  }

  return rows.map((row, b) => {
    const text = row.text ?? options.decode?.(row.tokens, b)
    return text === undefined
      ? { tokens: row.tokens, finishReason: row.finishReason }
      : { tokens: row.tokens, finishReason: row.finishReason, text }
  })
}

/** One forward call; returns the last position's logits on the host and the extended cache. */
const step = (
  weights: TransformerWeights,
  ids: Int32Array,
  positions: Int32Array,
  mask: Float32Array,
  [batch, steps]: [number, number],
  cache: KvCache | undefined,
  hook: ProjectionHook | undefined
): { values: Float32Array; cache: KvCache } => {
  const slots = (cache?.length ?? 0) + steps
  const inputs = {
    ids: tf.tensor2d(ids, [batch, steps], "int32"),
    positions: tf.tensor2d(positions, [batch, steps], "int32"),
    mask: tf.tensor4d(mask, [batch, 1, steps, slots])
  }
  try {
    const out = forwardKept(weights, { ...inputs, cache, hook, lastOnly: true })
    const values = out.logits.dataSync() as Float32Array
    out.logits.dispose()
    return { values, cache: out.cache }
  } finally {
    inputs.ids.dispose()
    inputs.positions.dispose()
    inputs.mask.dispose()
  }
}

const firstStop = (text: string, stops: ReadonlyArray<string>): number | undefined => {
  let cut: number | undefined
  for (const s of stops) {
    if (s.length === 0) continue
    const i = text.indexOf(s)
    if (i >= 0 && (cut === undefined || i < cut)) cut = i
  }
  return cut
}
