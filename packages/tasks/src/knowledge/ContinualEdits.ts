/**
 * SEAL's continual-edits setting: passages arrive one after another; after each, a LoRA adapter
 * is trained on its self-edit and merged into the weights, and every passage seen so far is
 * asked again. `matrix[i][j]` (j <= i) is the accuracy on passage j after edit i: the diagonal
 * is what each edit taught, the last row what survives, and backward transfer
 * `mean_j<n-1 (matrix[n-1][j] - matrix[j][j])` how much later edits erased earlier ones (SEAL's
 * Figure on catastrophic forgetting).
 *
 * This runs on plain tensors over a loaded checkpoint, since the weights change as it goes.
 */
import type { LoadedCheckpoint } from "@seal/gpu/checkpoint/Checkpoint"
import { createLoraAdapter, hashWeights, mergeLora } from "@seal/gpu/lora/LoraAdapter"
import { generate } from "@seal/gpu/model/Generate"
import type { WeightMap } from "@seal/gpu/model/ModelConfig"
import { createTransformerWeights, disposeTransformerWeights } from "@seal/gpu/model/Transformer"
import { tokenizeExample } from "@seal/gpu/train/Loss"
import { TrainingError, trainLora } from "@seal/gpu/train/Trainer"
import { Effect } from "effect"
import type { InnerLoopConfig, KnowledgeContext, KnowledgeFormat } from "./InnerLoop.js"

export interface ContinualEditsResult {
  /** Lower-triangular: `matrix[i]` has i + 1 entries. */
  readonly matrix: ReadonlyArray<ReadonlyArray<number>>
  /** Mean over j < n-1 of `matrix[n-1][j] - matrix[j][j]`; 0 for one passage. */
  readonly backwardTransfer: number
  /** Mean of the diagonal: accuracy right after each edit. */
  readonly meanJustEdited: number
  /** Mean of the last row: accuracy on everything at the end. */
  readonly meanFinal: number
  readonly seconds: number
}

/** Backward transfer of a lower-triangular accuracy matrix. */
export const backwardTransfer = (matrix: ReadonlyArray<ReadonlyArray<number>>): number => {
  const n = matrix.length
  if (n < 2) return 0
  let sum = 0
  for (let j = 0; j < n - 1; j++) sum += matrix[n - 1]![j]! - matrix[j]![j]!
  return sum / (n - 1)
}

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length)

/** Greedy answers of `weights` to the questions of one context; the share right. */
const accuracyOn = (
  checkpoint: LoadedCheckpoint,
  weights: WeightMap,
  context: KnowledgeContext,
  format: KnowledgeFormat
): number => {
  if (context.questions.length === 0) return 0
  const device = createTransformerWeights(checkpoint.config, weights)
  try {
    const { tokenizer } = checkpoint
    const prompts = context.questions.map((q) => tokenizer.encode(format.questionPrompt(context, q.question)))
    const rows = generate(device, prompts, {
      maxTokens: format.maxAnswerTokens,
      temperature: 0,
      eosId: tokenizer.eosId
    })
    let right = 0
    rows.forEach((row, i) => {
      const full = tokenizer.decode([...prompts[i]!, ...row.tokens])
      const answer = full.slice(tokenizer.decode(prompts[i]!).length).trim()
      right += format.grade(answer, context.questions[i]!.answer)
    })
    return right / context.questions.length
  } finally {
    disposeTransformerWeights(device)
  }
}

/**
 * Edits `checkpoint` with `selfEdits[i]` for `contexts[i]` in order, merging each adapter, and
 * measures the accuracy matrix. Seeds: adapter i uses `seed + i`.
 */
export const continualEdits = (
  checkpoint: LoadedCheckpoint,
  contexts: ReadonlyArray<KnowledgeContext>,
  selfEdits: ReadonlyArray<string>,
  format: KnowledgeFormat,
  config: InnerLoopConfig,
  seed: number
): Effect.Effect<ContinualEditsResult, TrainingError> =>
  Effect.try({
    try: () => {
      const start = performance.now()
      let weights = checkpoint.weights
      const matrix: Array<Array<number>> = []
      contexts.forEach((context, i) => {
        const adapter = createLoraAdapter(
          checkpoint.config,
          { rank: config.rank, alpha: config.alpha, dropout: 0, targets: [...config.targets] },
          { seed: seed + i, parentModelHash: hashWeights(weights) }
        )
        const examples = format.trainingSequences(context, selfEdits[i] ?? "").map((text) =>
          tokenizeExample(checkpoint.tokenizer, { text }, { addEos: true })
        )
        const device = createTransformerWeights(checkpoint.config, weights)
        let trained
        try {
          trained = trainLora(device, adapter, examples, {
            learningRate: config.learningRate,
            batchSize: config.batchSize,
            ...(config.steps === undefined ? { epochs: config.epochs } : { steps: config.steps }),
            seed: seed + i
          })
        } finally {
          disposeTransformerWeights(device)
        }
        weights = mergeLora(weights, trained.adapter)
        matrix.push(contexts.slice(0, i + 1).map((c) => accuracyOn(checkpoint, weights, c, format)))
      })
      return {
        matrix,
        backwardTransfer: backwardTransfer(matrix),
        meanJustEdited: mean(matrix.map((row, i) => row[i]!)),
        meanFinal: mean(matrix[matrix.length - 1] ?? []),
        seconds: (performance.now() - start) / 1000
      }
    },
    catch: (e) => (e instanceof TrainingError ? e : new TrainingError({ reason: "Backend", detail: String(e) }))
  })
