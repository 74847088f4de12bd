/**
 * Scoring given continuations instead of generating them: the negative log-likelihood the model
 * (with an optional adapter hook) assigns to each example's targets. Used to rank candidate
 * answers, e.g. ARC grids predicted under several views, by how likely every view finds them.
 */
import * as tf from "@tensorflow/tfjs-core"
import { batchTensors, buildBatch, nextTokenNll, type TokenizedExample } from "../train/Loss.js"
import { forward, type ProjectionHook, type TransformerWeights } from "./Transformer.js"

export interface ScoreOptions {
  readonly hook?: ProjectionHook | undefined
  readonly padId?: number | undefined
  /** Examples per forward pass (activations grow with rows x length^2). */
  readonly rowsPerPass?: number | undefined
}

/**
 * For each example, `-sum log p(ids[t] | ids[..t])` over the targets its `labelMask` marks (0
 * when it has none). Examples longer than the context are refused: a truncated score would rank
 * a long candidate as likely. Every tensor made here is disposed before returning.
 */
export const targetNll = (
  weights: TransformerWeights,
  examples: ReadonlyArray<TokenizedExample>,
  options: ScoreOptions = {}
): Array<number> => {
  const rowsPerPass = options.rowsPerPass ?? 8
  if (!(Number.isInteger(rowsPerPass) && rowsPerPass >= 1)) {
    throw new Error(`rowsPerPass must be an integer >= 1, got ${rowsPerPass}`)
  }
  const { maxPositions } = weights.config
  const long = examples.findIndex((e) => e.ids.length > maxPositions)
  if (long >= 0) {
    throw new Error(`example ${long} has ${examples[long]!.ids.length} tokens; the context holds ${maxPositions}`)
  }
  const scores: Array<number> = []
  for (let start = 0; start < examples.length; start += rowsPerPass) {
    const batch = buildBatch(examples.slice(start, start + rowsPerPass), { padId: options.padId })
    const perRow = tf.tidy(() => {
      const t = batchTensors(batch)
      const { logits } = forward(weights, { ids: t.ids, positions: t.positions, mask: t.mask, hook: options.hook })
      return tf.sum(nextTokenNll(logits, t.ids, t.labelMask), 1)
    })
    scores.push(...perRow.dataSync())
    perRow.dispose()
  }
  return scores
}
