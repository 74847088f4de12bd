/**
 * SEAL's inner loop for knowledge incorporation: a self-edit (with its passage) becomes training
 * sequences, a fresh LoRA adapter is trained on them over the frozen base, and the adapted model
 * answers the passage's questions closed-book. The score is the share answered right.
 *
 * Adapters of many items train together in one batched pass (`LoraTrainer.trainMany`), which is
 * where a CPU gets its throughput; each adapter then answers its own questions.
 *
 * An item may cover several passages (continued pretraining: one adapter over all their
 * self-edits, then every passage's questions).
 */
import { LanguageModel } from "@seal/gpu/LanguageModel"
import type { GenerationError } from "@seal/gpu/LanguageModel"
import type { LoraAdapter, LoraConfigError } from "@seal/gpu/lora/LoraAdapter"
import { disposeDeviceLora, loraHook, uploadLora } from "@seal/gpu/lora/LoraAdapter"
import { LoraTrainer } from "@seal/gpu/LoraTrainer"
import { adaptersWithinBudget } from "@seal/gpu/train/MemoryBudget"
import type { TrainingError } from "@seal/gpu/train/Trainer"
import { Effect, Schema } from "effect"
import { exactMatch } from "./Grading.js"
import { questionAnswerMaxTokens, questionPrompt as squadQuestionPrompt } from "./SelfEditPrompts.js"
import { type SplitMode, trainingSequences as squadTrainingSequences } from "./TrainingSequences.js"

/** Which projections a LoRA adapter adapts (default: all seven, as SEAL's inner loop does). */
export const LoraTargets = Schema.optionalWith(
  Schema.Array(Schema.Literal("q", "k", "v", "o", "gate", "up", "down")).pipe(Schema.minItems(1)),
  { default: () => ["q", "k", "v", "o", "gate", "up", "down"] as const }
)

export const InnerLoopConfig = Schema.Struct({
  rank: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 8 }),
  alpha: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 16 }),
  targets: LoraTargets,
  learningRate: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 1e-3 }),
  /** Passes over the training sequences (SEAL trains a fixed number of epochs). */
  epochs: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 5 }),
  /** When set, a fixed number of optimizer steps instead of `epochs`. */
  steps: Schema.optional(Schema.Int.pipe(Schema.positive())),
  batchSize: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 1 }),
  /** Adapters trained together in one batched pass (memory grows with it). */
  batchAdapters: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 16 }),
  /**
   * When set, fewer adapters share a pass if their activations would exceed this many MiB
   * (`adaptersWithinBudget`, from the model's shape and the longest training sequence).
   */
  memoryBudgetMB: Schema.optional(Schema.Number.pipe(Schema.positive()))
}).annotations({ identifier: "InnerLoopConfig" })
export type InnerLoopConfig = typeof InnerLoopConfig.Type
export type InnerLoopConfigEncoded = typeof InnerLoopConfig.Encoded

/** A passage with its questions (SEAL's context record; the world's contexts have this shape). */
export interface KnowledgeContext {
  readonly title: string
  readonly context: string
  readonly questions: ReadonlyArray<{ readonly question: string; readonly answer: string }>
}

/**
 * How a task's text is laid out: training sequences for a self-edit, the closed-book question
 * prompt, how much to generate and how to grade. SQuAD and the synthetic world differ only here.
 */
export interface KnowledgeFormat {
  /** Sequences for one passage and its self-edit ("" trains on the passage alone). */
  readonly trainingSequences: (context: KnowledgeContext, selfEdit: string) => Array<string>
  readonly questionPrompt: (context: KnowledgeContext, question: string) => string
  readonly maxAnswerTokens: number
  /** 1 for a right answer, 0 otherwise (or a partial score). */
  readonly grade: (answer: string, gold: string) => number
}

/** SEAL's SQuAD layout: its training sequences, closed-book prompt, 64 tokens, exact match. */
export const squadFormat = (options: { readonly split?: SplitMode | undefined } = {}): KnowledgeFormat => ({
  trainingSequences: (context, selfEdit) =>
    selfEdit.trim() === ""
      ? squadTrainingSequences(context, "", { split: "none", includePassage: true }).slice(-1)
      : squadTrainingSequences(context, selfEdit, { split: options.split ?? "auto", includePassage: true }),
  questionPrompt: (context, question) => squadQuestionPrompt(context.title, question),
  maxAnswerTokens: questionAnswerMaxTokens,
  grade: (answer, gold) => exactMatch(answer.split("\n")[0] ?? "", gold)
})

export interface InnerLoopItem {
  /** One passage (single-passage setting) or several (continued pretraining). */
  readonly contexts: ReadonlyArray<KnowledgeContext>
  /** One self-edit per context ("" for passage only). */
  readonly selfEdits: ReadonlyArray<string>
  readonly seed: number
}

export interface AnsweredQuestion {
  readonly question: string
  readonly gold: string
  readonly answer: string
  readonly score: number
}

export interface InnerLoopOutcome {
  /** Mean score over every question of the item's contexts. */
  readonly accuracy: number
  readonly correct: number
  readonly total: number
  readonly answers: ReadonlyArray<AnsweredQuestion>
  readonly adapterId: string | undefined
  readonly trainingSequences: number
  readonly finalLoss: number | undefined
  /** This item's share of the batch's wall time (training and answering). */
  readonly seconds: number
}

const loraConfig = (config: InnerLoopConfig) => ({
  rank: config.rank,
  alpha: config.alpha,
  dropout: 0,
  targets: [...config.targets]
})

/** Answers every question of `contexts` greedily, with `adapter` applied when given. */
export const answerQuestions = (
  contexts: ReadonlyArray<KnowledgeContext>,
  format: KnowledgeFormat,
  adapter?: LoraAdapter | undefined
): Effect.Effect<Array<AnsweredQuestion>, GenerationError, LanguageModel> =>
  Effect.scoped(
    Effect.gen(function*() {
      const model = yield* LanguageModel
      const asked = contexts.flatMap((c) => c.questions.map((q) => ({ context: c, ...q })))
      if (asked.length === 0) return []
      const hook = adapter === undefined ? undefined : loraHook(
        yield* Effect.acquireRelease(
          Effect.sync(() => uploadLora(adapter, false)),
          (device) => Effect.sync(() => disposeDeviceLora(device))
        )
      )
      const rows = yield* model.generate(asked.map((q) => format.questionPrompt(q.context, q.question)), {
        maxTokens: format.maxAnswerTokens,
        temperature: 0,
        hook
      })
      return asked.map((q, i) => {
        const answer = rows[i]!.text.trim()
        return { question: q.question, gold: q.answer, answer, score: format.grade(answer, q.answer) }
      })
    })
  )

const outcome = (
  answers: ReadonlyArray<AnsweredQuestion>,
  extra: Pick<InnerLoopOutcome, "adapterId" | "trainingSequences" | "finalLoss" | "seconds">
): InnerLoopOutcome => {
  const correct = answers.reduce((n, a) => n + a.score, 0)
  return {
    accuracy: answers.length === 0 ? 0 : correct / answers.length,
    correct,
    total: answers.length,
    answers,
    ...extra
  }
}

/** The base model, unadapted, on each item's questions (the "base" row). */
export const answerUnadapted = (
  items: ReadonlyArray<Pick<InnerLoopItem, "contexts">>,
  format: KnowledgeFormat
): Effect.Effect<Array<InnerLoopOutcome>, GenerationError, LanguageModel> =>
  Effect.forEach(items, (item) =>
    Effect.gen(function*() {
      const start = performance.now()
      const answers = yield* answerQuestions(item.contexts, format)
      return outcome(answers, {
        adapterId: undefined,
        trainingSequences: 0,
        finalLoss: undefined,
        seconds: (performance.now() - start) / 1000
      })
    }))

/**
 * Runs the inner loop for every item: adapters train `batchAdapters` at a time in one batched
 * pass, then each answers its questions. Outcomes come back in item order.
 */
export const adaptAndAnswer = (
  items: ReadonlyArray<InnerLoopItem>,
  format: KnowledgeFormat,
  config: InnerLoopConfig
): Effect.Effect<
  Array<InnerLoopOutcome>,
  TrainingError | LoraConfigError | GenerationError,
  LanguageModel | LoraTrainer
> =>
  Effect.gen(function*() {
    const trainer = yield* LoraTrainer
    const model = yield* LanguageModel
    const outcomes: Array<InnerLoopOutcome> = []
    const perPass = config.memoryBudgetMB === undefined ? config.batchAdapters : adaptersWithinBudget(
      model.config,
      config.batchSize,
      Math.max(
        1,
        ...items.flatMap((item) =>
          item.contexts.flatMap((c, i) =>
            format.trainingSequences(c, item.selfEdits[i] ?? "").map((t) => model.tokenizer.encode(t).length + 1)
          )
        )
      ),
      config.memoryBudgetMB * 2 ** 20,
      config.batchAdapters
    )
    for (let start = 0; start < items.length; start += perPass) {
      const chunk = items.slice(start, start + perPass)
      const began = performance.now()
      const sequences = chunk.map((item) =>
        item.contexts.flatMap((c, i) => format.trainingSequences(c, item.selfEdits[i] ?? ""))
      )
      const adapters = yield* Effect.forEach(chunk, (item) =>
        trainer.createAdapter(loraConfig(config), { seed: item.seed }))
      const trained = yield* trainer.trainMany(
        adapters,
        sequences.map((s) =>
          s.map((text) => ({ text }))
        ),
        chunk.map((item) => ({
          learningRate: config.learningRate,
          batchSize: config.batchSize,
          ...(config.steps === undefined ? { epochs: config.epochs } : { steps: config.steps }),
          seed: item.seed,
          tokenize: { addEos: true }
        }))
      )
      const answered = yield* Effect.forEach(chunk, (item, k) =>
        answerQuestions(item.contexts, format, trained[k]!.adapter))
      const seconds = (performance.now() - began) / 1000 / chunk.length
      chunk.forEach((_, k) => {
        const losses = trained[k]!.losses
        outcomes.push(outcome(answered[k]!, {
          adapterId: trained[k]!.adapter.id,
          trainingSequences: sequences[k]!.length,
          finalLoss: losses[losses.length - 1],
          seconds
        }))
      })
    }
    return outcomes
  })
