/**
 * The knowledge-incorporation comparison without RL, as SEAL's table reports it: for each
 * evaluation passage, the base model closed-book (`base`), the inner loop on the passage alone
 * (`passage-only`), on the passage plus the model's own self-edits (`self-edit`, averaged over
 * samples), and on the passage plus a reference self-edit (`oracle-self-edit`: GPT-4.1's in
 * SEAL, a rule-based restatement of every fact in the synthetic world). Accuracy is the mean over
 * passages of the share of questions answered right; std is over passages.
 */
import { SelfEditSampler } from "@seal/core/SelfEditSampler"
import type { SamplingError } from "@seal/core/SelfEditSampler"
import type { GenerationError, LanguageModel } from "@seal/gpu/LanguageModel"
import type { LoraConfigError } from "@seal/gpu/lora/LoraAdapter"
import type { LoraTrainer } from "@seal/gpu/LoraTrainer"
import { deriveSeed } from "@seal/gpu/model/Sampling"
import type { TrainingError } from "@seal/gpu/train/Trainer"
import { Effect, Schema } from "effect"
import {
  adaptAndAnswer,
  answerUnadapted,
  InnerLoopConfig,
  type InnerLoopItem,
  type InnerLoopOutcome,
  type KnowledgeContext,
  type KnowledgeFormat
} from "./InnerLoop.js"

export const evaluationMethods = ["base", "passage-only", "self-edit", "oracle-self-edit"] as const
export type EvaluationMethod = typeof evaluationMethods[number]

export const SelfEditSampling = Schema.Struct({
  /** Self-edits sampled per passage for the `self-edit` row (each gets its own inner loop). */
  samples: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 3 }),
  temperature: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => 1 }),
  topP: Schema.optionalWith(Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(1)), {
    default: () => 1
  }),
  maxTokens: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 96 })
}).annotations({ identifier: "SelfEditSampling" })
export type SelfEditSampling = typeof SelfEditSampling.Type

export const EvaluationConfig = Schema.Struct({
  methods: Schema.optionalWith(
    Schema.Array(Schema.Literal(...evaluationMethods)).pipe(
      Schema.minItems(1),
      Schema.filter((ms) => new Set(ms).size === ms.length || "methods must not repeat")
    ),
    {
      default: () => [...evaluationMethods]
    }
  ),
  selfEdits: Schema.optionalWith(SelfEditSampling, { default: () => Schema.decodeSync(SelfEditSampling)({}) }),
  innerLoop: Schema.optionalWith(InnerLoopConfig, { default: () => Schema.decodeSync(InnerLoopConfig)({}) }),
  /** Inner-loop seeds per (passage, self-edit); each is a separate adapter, averaged. */
  innerSeeds: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 1 }),
  /**
   * 1: one adapter per passage (SEAL's single-passage setting). n > 1: continued pretraining, one
   * adapter over the self-edits of n consecutive passages, then all their questions.
   */
  passagesPerAdapter: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 1 })
}).annotations({ identifier: "EvaluationConfig" })
export type EvaluationConfig = typeof EvaluationConfig.Type

export interface EvaluationContext {
  readonly id: string
  readonly context: KnowledgeContext
  /** The self-edit prompt the model completes. */
  readonly selfEditPrompt: string
  /** The reference self-edit, when the task has one. */
  readonly oracleSelfEdit?: string | undefined
}

export interface MethodRow {
  readonly method: EvaluationMethod
  /** Mean over passages of the share of questions answered right. */
  readonly accuracy: number
  /** Standard deviation of the per-passage accuracy. */
  readonly std: number
  readonly passages: number
  readonly innerLoops: number
  /** Mean wall time of one inner loop (training and answering; batched share). */
  readonly secondsPerInnerLoop: number
}

export interface ContextResult {
  readonly id: string
  readonly accuracy: { readonly [M in EvaluationMethod]?: number }
  /** The `self-edit` row's samples with their inner-loop accuracy. */
  readonly selfEdits: ReadonlyArray<{ readonly text: string; readonly accuracy: number }>
}

export interface EvaluationReport {
  readonly table: ReadonlyArray<MethodRow>
  readonly contexts: ReadonlyArray<ContextResult>
}

export interface EvaluationProgress {
  readonly method: EvaluationMethod
  readonly done: number
  readonly total: number
}

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length)
/** Population standard deviation (over all evaluated passages, not a sample of them). */
export const std = (xs: ReadonlyArray<number>) => {
  const m = mean(xs)
  return Math.sqrt(mean(xs.map((x) => (x - m) ** 2)))
}

/** One adapter's seed: distinct streams for every (passage, sample, inner seed). */
export const seedOf = (base: number, passage: number, sample: number, innerSeed: number) =>
  deriveSeed(deriveSeed(deriveSeed(base, passage), sample), innerSeed)

/**
 * Runs the comparison on `contexts`. `seed` drives self-edit sampling and every adapter's
 * initialisation and data order, so a run is reproducible.
 */
export const evaluateKnowledge = (
  contexts: ReadonlyArray<EvaluationContext>,
  format: KnowledgeFormat,
  config: EvaluationConfig,
  seed: number,
  onProgress?: (progress: EvaluationProgress) => Effect.Effect<void>
): Effect.Effect<
  EvaluationReport,
  TrainingError | LoraConfigError | GenerationError | SamplingError,
  LanguageModel | LoraTrainer | SelfEditSampler
> =>
  Effect.gen(function*() {
    const perContext = new Map<EvaluationMethod, Array<number>>()
    const rows: Array<MethodRow> = []
    const selfEditsByContext: Array<Array<{ text: string; accuracy: number }>> = contexts.map(() => [])
    const report = (method: EvaluationMethod, done: number) =>
      onProgress === undefined ? Effect.void : onProgress({ method, done, total: contexts.length })

    /**
     * Inner loops for (passage, self-edit) pairs: pairs of the same sample index are grouped
     * `passagesPerAdapter` at a time into one adapter, each group trained `innerSeeds` times.
     * Returns, per pair, its passage's accuracy under each seed, and the outcomes.
     */
    const runPairs = (pairs: ReadonlyArray<{ passage: number; sample: number; selfEdit: string }>) =>
      Effect.gen(function*() {
        const groups: Array<Array<number>> = []
        const open = new Map<number, Array<number>>()
        pairs.forEach((p, i) => {
          let group = open.get(p.sample)
          if (group === undefined || group.length >= config.passagesPerAdapter) {
            group = []
            groups.push(group)
            open.set(p.sample, group)
          }
          group.push(i)
        })
        const items: Array<InnerLoopItem> = []
        for (const group of groups) {
          const first = pairs[group[0]!]!
          for (let s = 0; s < config.innerSeeds; s++) {
            items.push({
              contexts: group.map((i) => contexts[pairs[i]!.passage]!.context),
              selfEdits: group.map((i) => pairs[i]!.selfEdit),
              seed: seedOf(seed, first.passage, first.sample, s)
            })
          }
        }
        const outcomes = yield* adaptAndAnswer(items, format, config.innerLoop)
        const scores: Array<Array<number>> = pairs.map(() => [])
        groups.forEach((group, g) => {
          for (let s = 0; s < config.innerSeeds; s++) {
            const outcome = outcomes[g * config.innerSeeds + s]!
            let offset = 0
            for (const i of group) {
              const asked = contexts[pairs[i]!.passage]!.context.questions.length
              const answers = outcome.answers.slice(offset, offset + asked)
              offset += asked
              scores[i]!.push(asked === 0 ? 0 : answers.reduce((n, a) => n + a.score, 0) / asked)
            }
          }
        })
        return { scores, outcomes }
      })

    for (const method of config.methods) {
      let outcomes: ReadonlyArray<ReadonlyArray<InnerLoopOutcome>>
      let accuracies: Array<number>
      switch (method) {
        case "base": {
          const base = yield* answerUnadapted(contexts.map((c) => ({ contexts: [c.context] })), format)
          outcomes = base.map((o) => [o])
          accuracies = base.map((o) => o.accuracy)
          break
        }
        case "passage-only":
        case "oracle-self-edit": {
          if (method === "oracle-self-edit" && contexts.some((c) => c.oracleSelfEdit === undefined)) continue
          const run = yield* runPairs(contexts.map((c, passage) => ({
            passage,
            sample: 0,
            selfEdit: method === "passage-only" ? "" : c.oracleSelfEdit!
          })))
          outcomes = [run.outcomes]
          accuracies = run.scores.map(mean)
          break
        }
        case "self-edit": {
          const sampler = yield* SelfEditSampler
          const sampled = yield* sampler.sample(
            contexts.map((c) => ({ id: c.id, prompt: c.selfEditPrompt })),
            { ...config.selfEdits, k: config.selfEdits.samples, seed }
          )
          const pairs = sampled.flatMap((samples, passage) =>
            samples.map((s, sample) => ({ passage, sample, selfEdit: s.text }))
          )
          const run = yield* runPairs(pairs)
          outcomes = [run.outcomes]
          pairs.forEach((p, i) =>
            selfEditsByContext[p.passage]!.push({ text: p.selfEdit, accuracy: mean(run.scores[i]!) })
          )
          accuracies = contexts.map((_, passage) => mean(selfEditsByContext[passage]!.map((s) => s.accuracy)))
          break
        }
      }
      perContext.set(method, accuracies)
      const all = outcomes.flat()
      rows.push({
        method,
        accuracy: mean(accuracies),
        std: std(accuracies),
        passages: contexts.length,
        innerLoops: method === "base" ? 0 : all.length,
        secondsPerInnerLoop: mean(all.map((o) => o.seconds))
      })
      yield* report(method, contexts.length)
    }
    return {
      table: rows,
      contexts: contexts.map((c, i) => ({
        id: c.id,
        accuracy: Object.fromEntries([...perContext].map(([m, accs]) => [m, accs[i]!])),
        selfEdits: selfEditsByContext[i]!
      }))
    }
  })
