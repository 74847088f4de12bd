/**
 * The few-shot ARC comparison on held-out tasks, as success rates over (task, self-edit) pairs:
 *
 * - `icl`: no adaptation; the base model predicts from the demonstrations in context.
 * - `self-edit`: tool configs sampled from the generator (before RL, or after each round as
 *   `seal`), each trained and scored on its task.
 * - `oracle`: the best fixed config of a candidate list, chosen on these same tasks (an upper
 *   bound for any single config, as the reference's oracle is for per-task configs).
 *
 * Every row also reports the mean cell accuracy of the first attempt, a softer measure.
 */
import { type SamplingError, SelfEditSampler } from "@seal/core/SelfEditSampler"
import { LanguageModel } from "@seal/gpu/LanguageModel"
import { deriveSeed } from "@seal/gpu/model/Sampling"
import { Effect, Schema } from "effect"
import { exampleLength, selfEditPrompt } from "./ArcFormat.js"
import { type ArcInnerLoopConfig, type ArcOutcome } from "./ArcInnerLoop.js"
import { adaptAndSolve, type ArcSolveError, type ArcSolver, solveSelfEdits } from "./ArcSolver.js"
import type { ArcTask } from "./Grid.js"
import { outputTokenConfig, ToolConfig, toolConfigKey, toolConfigLength } from "./ToolConfig.js"

export const arcMethods = ["icl", "self-edit", "oracle"] as const
export type ArcMethod = typeof arcMethods[number]

export const ArcSelfEditSampling = Schema.Struct({
  /** Configs sampled per task for the `self-edit` rows. */
  samples: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 2 }),
  temperature: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => 1 })
}).annotations({ identifier: "ArcSelfEditSampling" })
export type ArcSelfEditSampling = typeof ArcSelfEditSampling.Type

/**
 * The `oracle` row's candidates. The default spans what FEASIBILITY.md's probe found to matter
 * (the best fixed config there: basic augmentations, output-token loss, lr 3e-3, 5 epochs).
 */
export const defaultOracleCandidates: ReadonlyArray<ToolConfig> = [false, true].flatMap((basic) =>
  [1e-3, 3e-3].flatMap((lr) => [3, 5].map((epochs) => outputTokenConfig(basic, lr, epochs)))
)

export interface ArcRow {
  readonly method: string
  /** Solved (pass@2) over (task, self-edit) pairs. */
  readonly accuracy: number
  readonly solved: number
  readonly pairs: number
  readonly tasks: number
  /** Mean first-attempt cell accuracy. */
  readonly cellAccuracy: number
  /** Mean probability per token of the true outputs (`ArcPrediction.solutionLikelihood`). */
  readonly solutionLikelihood: number
  /** Task ids solved at least once. */
  readonly solvedTasks: ReadonlyArray<string>
  /** `oracle`: the config chosen. */
  readonly config?: string | undefined
  /** Pairs whose config was refused (over the step limit, or no training sequence fits). */
  readonly refused: number
  readonly secondsPerInnerLoop: number
}

export interface ArcTaskResult {
  readonly id: string
  readonly selfEdits: ReadonlyArray<
    {
      readonly config: string
      readonly solved: boolean
      readonly cellAccuracy: number
      readonly solutionLikelihood: number
    }
  >
}

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length)

/** A row from the outcomes of `(task, config)` pairs. */
export const arcRow = (
  method: string,
  tasks: ReadonlyArray<ArcTask>,
  pairs: ReadonlyArray<{ readonly task: ArcTask; readonly outcome: ArcOutcome }>,
  config?: string
): ArcRow => ({
  method,
  accuracy: mean(pairs.map((p) => (p.outcome.solved ? 1 : 0))),
  solved: pairs.filter((p) => p.outcome.solved).length,
  pairs: pairs.length,
  tasks: tasks.length,
  cellAccuracy: mean(pairs.map((p) => p.outcome.cellAccuracy)),
  solutionLikelihood: mean(pairs.map((p) => p.outcome.solutionLikelihood)),
  solvedTasks: [...new Set(pairs.filter((p) => p.outcome.solved).map((p) => p.task.id))].sort(),
  ...(config === undefined ? {} : { config }),
  refused: pairs.filter((p) => p.outcome.refused !== undefined).length,
  secondsPerInnerLoop: mean(pairs.map((p) => p.outcome.seconds))
})

/**
 * The self-edit prompt of a task, as text for the sampler: the demonstrations that fit before
 * the config (in order, while the prompt and a whole config stay within `maxPositions`).
 */
export const arcSelfEditPromptIds = (task: ArcTask, maxPositions: number): Array<number> => {
  const room = maxPositions - toolConfigLength - 3
  const shown: Array<ArcTask["train"][number]> = []
  let length = 0
  for (const example of task.train) {
    if (length + exampleLength(example) > room) break
    shown.push(example)
    length += exampleLength(example)
  }
  return selfEditPrompt(shown)
}

/** One adapter's seed for (task, sample). */
export const arcSeed = (base: number, task: number, sample: number) => deriveSeed(deriveSeed(base, task), sample)

/** `icl`: every task unadapted. */
export const evaluateIcl = (tasks: ReadonlyArray<ArcTask>, innerLoop: ArcInnerLoopConfig) =>
  adaptAndSolve(tasks.map((task) => ({ task, config: undefined, seed: 0 })), innerLoop).pipe(
    Effect.map((outcomes) => arcRow("icl", tasks, tasks.map((task, i) => ({ task, outcome: outcomes[i]! }))))
  )

/**
 * Configs sampled from the `SelfEditSampler` in context (`samples` per task), each trained and
 * scored: the `self-edit` row (or `seal-round-n`, by `method`), with per-task detail.
 */
export const evaluateSelfEdits = (
  tasks: ReadonlyArray<ArcTask>,
  options: {
    readonly method: string
    readonly sampling: ArcSelfEditSampling
    readonly innerLoop: ArcInnerLoopConfig
    readonly seed: number
  }
): Effect.Effect<
  { readonly row: ArcRow; readonly tasks: ReadonlyArray<ArcTaskResult> },
  ArcSolveError | SamplingError,
  LanguageModel | ArcSolver | SelfEditSampler
> =>
  Effect.gen(function*() {
    const model = yield* LanguageModel
    const sampler = yield* SelfEditSampler
    const contexts = tasks.map((task) => ({
      id: task.id,
      prompt: model.tokenizer.decode(arcSelfEditPromptIds(task, model.config.maxPositions))
    }))
    const samples = yield* sampler.sample(contexts, {
      k: options.sampling.samples,
      temperature: options.sampling.temperature,
      maxTokens: toolConfigLength + 1,
      seed: options.seed
    })
    const items = tasks.flatMap((task, t) =>
      samples[t]!.map((s, j) => ({ task, selfEdit: s.text, seed: arcSeed(options.seed, t, j) }))
    )
    const solved = yield* solveSelfEdits(items, options.innerLoop)
    const pairs = items.map((item, i) => ({ ...item, ...solved[i]! }))
    return {
      row: arcRow(options.method, tasks, pairs),
      tasks: tasks.map((task) => ({
        id: task.id,
        selfEdits: pairs.filter((p) => p.task === task).map((p) => ({
          config: p.config === undefined ? `invalid: ${p.selfEdit.trim()}` : toolConfigKey(p.config),
          solved: p.outcome.solved,
          cellAccuracy: p.outcome.cellAccuracy,
          solutionLikelihood: p.outcome.solutionLikelihood
        }))
      }))
    }
  })

/**
 * `oracle`: each candidate config on every task (seeded per task), the best by tasks solved,
 * then cell accuracy, then list order. Returns the row and every candidate's score.
 */
export const evaluateOracle = (
  tasks: ReadonlyArray<ArcTask>,
  candidates: ReadonlyArray<ToolConfig>,
  innerLoop: ArcInnerLoopConfig,
  seed: number
) =>
  Effect.gen(function*() {
    const items = candidates.flatMap((config) => tasks.map((task, t) => ({ task, config, seed: arcSeed(seed, t, 0) })))
    const outcomes = yield* adaptAndSolve(items, innerLoop)
    const rows = candidates.map((config, c) =>
      arcRow(
        "oracle",
        tasks,
        tasks.map((task, t) => ({ task, outcome: outcomes[c * tasks.length + t]! })),
        toolConfigKey(config)
      )
    )
    let best = 0
    rows.forEach((row, c) => {
      const b = rows[best]!
      if (row.solved > b.solved || (row.solved === b.solved && row.cellAccuracy > b.cellAccuracy)) best = c
    })
    return {
      row: rows[best]!,
      candidates: rows.map(({ config, solved, cellAccuracy }) => ({ config, solved, cellAccuracy }))
    }
  })

/** Decodes a list of candidate configs (e.g. from an experiment file). */
export const OracleCandidates = Schema.Array(ToolConfig)
