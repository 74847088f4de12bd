/**
 * SEAL's inner loop for few-shot ARC: a tool config (the self-edit) picks the augmentation
 * families, the loss and the optimizer settings; a fresh LoRA adapter trains on the test-time
 * data those make from the task's demonstrations; the adapted model predicts each test output
 * in several views, whose predictions are ranked to two attempts (by votes or by likelihood); the
 * task counts as solved when every test output is among its two attempts. A config whose
 * training would exceed `maxTrainingSteps` is refused (reward 0, as in the reference) without
 * training.
 *
 * Adapters of several items train together in one batched pass (`LoraTrainer.trainMany`, each
 * with its own learning rate and epochs), then each predicts on its own.
 */
import { LanguageModel } from "@seal/gpu/LanguageModel"
import { GenerationError } from "@seal/gpu/LanguageModel"
import type { LoraAdapter, LoraConfigError } from "@seal/gpu/lora/LoraAdapter"
import { disposeDeviceLora, loraHook, uploadLora } from "@seal/gpu/lora/LoraAdapter"
import { LoraTrainer } from "@seal/gpu/LoraTrainer"
import { generate, type LogitMask } from "@seal/gpu/model/Generate"
import type { ModelConfig } from "@seal/gpu/model/ModelConfig"
import { targetNll } from "@seal/gpu/model/Score"
import type { ProjectionHook, TransformerWeights } from "@seal/gpu/model/Transformer"
import { adaptersWithinBudget } from "@seal/gpu/train/MemoryBudget"
import type { TrainingError } from "@seal/gpu/train/Trainer"
import { Effect, Schema } from "effect"
import { LoraTargets } from "../knowledge/InnerLoop.js"
import { decodeGrid, gridIds, gridLength } from "./ArcFormat.js"
import { ids } from "./ArcVocabulary.js"
import { colourViews, invertibleViews } from "./Augmenters.js"
import type { ArcTask, Grid } from "./Grid.js"
import { maxGridSide } from "./Grid.js"
import { gridMask, impliedOutputShape, shapeTokens } from "./OutputShape.js"
import { testTimeSequences } from "./TestTimeData.js"
import { maxTrainingSteps, optimizerSteps, type ToolConfig, toolConfigKey } from "./ToolConfig.js"
import { attempts, cellAccuracy, type QueryView, queryViews, rankByScore, solvedByAttempts, tally } from "./Voting.js"

const PositiveInt = Schema.Int.pipe(Schema.positive())

/**
 * The fixed part of test-time training (what the tool config does not choose). Defaults follow
 * FEASIBILITY.md's probe: rank-16 LoRA on every projection, batch 4, at most 32 sequences.
 */
export const ArcInnerLoopConfig = Schema.Struct({
  rank: Schema.optionalWith(PositiveInt, { default: () => 16 }),
  alpha: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 32 }),
  targets: LoraTargets,
  batchSize: Schema.optionalWith(PositiveInt, { default: () => 4 }),
  /** The most test-time training sequences per task. */
  maxSequences: Schema.optionalWith(PositiveInt, { default: () => 32 }),
  /** Adapters trained together in one batched pass. */
  batchAdapters: Schema.optionalWith(PositiveInt, { default: () => 8 }),
  /**
   * Fewer adapters share a pass if their activations would exceed this many MiB: ARC sequences
   * run to the whole context, and the wasm backend's heap stops at 4 GiB.
   */
  memoryBudgetMB: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 400 }),
  /** Views predicted in at inference: the first n of the square's 8 symmetries (identity first). */
  views: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, invertibleViews.length)), { default: () => 8 }),
  /**
   * Views beyond the symmetries: each a symmetry followed by a fixed colour permutation
   * (`colourViews` in Augmenters.ts). More views, more candidates to vote or rank.
   */
  colourViews: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 64)), { default: () => 0 }),
  /**
   * Hold each prediction to the output shape the demonstrations imply (`OutputShape.ts`): the
   * same as the input, a constant, a multiple or a fraction of it, per side; sides no rule
   * explains stay free. On 41 RL tasks it raised the first attempt's cells by 1-4 points for
   * every config (models/README.md). Off: the model chooses the extent, and a grid it writes
   * malformed casts no vote.
   */
  impliedShape: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /**
   * How a test input's two attempts are chosen among its views' predictions: `votes`, the grids
   * most views predicted (ties to the earlier view); `likelihood`, every distinct prediction
   * scored under every view by the adapted model and the two with the lowest negative
   * log-likelihood summed over views taken (a product of the views' probabilities, as the
   * ARChitects' ARC Prize 2024 solution ranks candidates). Small models rarely agree across
   * views, so votes are mostly ties that the view order breaks.
   */
  ranking: Schema.optionalWith(Schema.Literal("votes", "likelihood"), { default: () => "votes" as const })
}).annotations({ identifier: "ArcInnerLoopConfig" })
export type ArcInnerLoopConfig = typeof ArcInnerLoopConfig.Type
export type ArcInnerLoopConfigEncoded = typeof ArcInnerLoopConfig.Encoded

export interface ArcPrediction {
  /** Up to two attempts per test input, in the task's test order. */
  readonly attempts: ReadonlyArray<ReadonlyArray<Grid>>
  readonly solved: boolean
  readonly cellAccuracy: number
  /**
   * How likely the model finds the true test outputs: the probability per token (geometric mean
   * over the output's tokens and the views it fits), averaged over test inputs; 0 where none fits.
   * Continuous where `solved` and `cellAccuracy` are coarse, so a softer reward.
   */
  readonly solutionLikelihood: number
}

export interface ArcOutcome extends ArcPrediction {
  /** Why the config was not trained: too many optimizer steps, or no sequence fits the context. */
  readonly refused: "TooManySteps" | "NoTrainingData" | undefined
  readonly trainingSequences: number
  readonly optimizerSteps: number
  readonly finalLoss: number | undefined
  readonly adapterId: string | undefined
  /** This item's share of the batch's wall time (training and predicting). */
  readonly seconds: number
}

export interface ArcItem {
  readonly task: ArcTask
  /** The self-edit; undefined: no adaptation (in-context only). */
  readonly config: ToolConfig | undefined
  readonly seed: number
}

/**
 * The most tokens a prediction may take: twice the largest grid of the demonstrations' outputs
 * and the input (outputs in ARC rarely outgrow that), within ARC's 30x30 and the context.
 */
const predictionBudget = (task: ArcTask, input: Grid, impliedShape: boolean): number => {
  const largest = Math.max(gridLength(input), ...task.train.map((d) => gridLength(d.output)))
  const free = Math.min(2 * largest + 1, maxGridSide * (maxGridSide + 1) + 1)
  if (!impliedShape) return free
  const { columns, rows } = impliedOutputShape(task.train, input)
  // Room for the implied grid in any view: a transposing view writes it with the sides swapped.
  return Math.max(free, shapeTokens({ rows, columns }) ?? 0, shapeTokens({ rows: columns, columns: rows }) ?? 0)
}

/**
 * The negative log-likelihood of each grid (and the end marker) after each view's prompt, by
 * grid and view, with the tokens scored; Infinity where the two do not fit the context.
 */
const viewNll = (
  weights: TransformerWeights,
  shown: ReadonlyArray<QueryView>,
  grids: ReadonlyArray<Grid>,
  hook: ProjectionHook | undefined
): Array<Array<{ readonly nll: number; readonly tokens: number }>> => {
  const answers = grids.flatMap((grid) => shown.map((view) => [...gridIds(view.apply(grid)), ids.exampleEnd]))
  const examples = answers.map((answer, i) => {
    const prompt = shown[i % shown.length]!.prompt
    return { ids: [...prompt, ...answer], labelMask: [...prompt.map(() => 0), ...answer.map(() => 1)] }
  })
  const fits = examples.map((e) => e.ids.length <= weights.config.maxPositions)
  const nll = targetNll(weights, examples.filter((_, i) => fits[i]), { hook, padId: ids.pad, rowsPerPass: 8 })
  let next = 0
  const scored = answers.map((answer, i) => ({ nll: fits[i] ? nll[next++]! : Infinity, tokens: answer.length }))
  return grids.map((_, g) => scored.slice(g * shown.length, (g + 1) * shown.length))
}

/**
 * The probability per token (the geometric mean) the model gives `output` over the views where
 * it fits: exp(-NLL / tokens). 0 where it fits none.
 */
const perTokenLikelihood = (scores: ReadonlyArray<{ readonly nll: number; readonly tokens: number }>): number => {
  const fitting = scores.filter((s) => Number.isFinite(s.nll))
  const tokens = fitting.reduce((a, s) => a + s.tokens, 0)
  return tokens === 0 ? 0 : Math.exp(-fitting.reduce((a, s) => a + s.nll, 0) / tokens)
}

const maskPerRow = (masks: ReadonlyArray<LogitMask>): LogitMask => (step) => masks[step.row]!(step)

/**
 * Greedy predictions of every test input of `task` in its views (`views` symmetries and
 * `colourViews`), with `adapter` applied when given, mapped back and ranked (`ranking`) to two
 * attempts. Views whose prompt leaves no room to answer are skipped; a task
 * none of whose views fit gets no attempts (unsolved).
 */
export const predictTask = (
  task: ArcTask,
  config: Pick<ArcInnerLoopConfig, "views" | "colourViews" | "impliedShape" | "ranking">,
  adapter?: LoraAdapter | undefined
): Effect.Effect<ArcPrediction, GenerationError, LanguageModel> =>
  Effect.scoped(
    Effect.gen(function*() {
      const model = yield* LanguageModel
      const hook = adapter === undefined ? undefined : loraHook(
        yield* Effect.acquireRelease(
          Effect.sync(() => uploadLora(adapter, false)),
          (device) => Effect.sync(() => disposeDeviceLora(device))
        )
      )
      const views = [...invertibleViews.slice(0, config.views), ...colourViews(config.colourViews)]
      const perTest: Array<Array<Grid>> = []
      const likelihoods: Array<number> = []
      for (const test of task.test) {
        const budget = predictionBudget(task, test.input, config.impliedShape)
        const shown = queryViews(task.train, test.input, views, model.config.maxPositions - budget)
        if (shown.length === 0) {
          perTest.push([])
          likelihoods.push(0)
          continue
        }
        const rows = yield* Effect.try({
          try: () =>
            generate(model.weights, shown.map((v) => v.prompt), {
              maxTokens: budget,
              temperature: 0,
              eosId: ids.exampleEnd,
              hook,
              logitMask: config.impliedShape ? maskPerRow(shown.map((v) => gridMask(v.shape))) : undefined
            }),
          catch: (e) => new GenerationError({ reason: "Backend", detail: `ARC prediction failed: ${String(e)}` })
        })
        const predictions = rows.map((row, i) => {
          const grid = decodeGrid(row.tokens)
          return grid === undefined ? undefined : shown[i]!.invert(grid)
        })
        const candidates = tally(predictions)
        // The candidates (when ranked by likelihood) and the true output, scored in one go.
        const scoredCandidates = config.ranking === "likelihood" && candidates.length > 1 ? candidates : []
        const scores = yield* Effect.try({
          try: () => viewNll(model.weights, shown, [...scoredCandidates.map((c) => c.grid), test.output], hook),
          catch: (e) => new GenerationError({ reason: "Backend", detail: `ARC grid scoring failed: ${String(e)}` })
        })
        const ranked = scoredCandidates.length === 0 ? candidates : rankByScore(
          candidates,
          scores.slice(0, -1).map((perView) => perView.reduce((a, s) => a + s.nll, 0))
        )
        perTest.push(attempts(ranked))
        likelihoods.push(perTokenLikelihood(scores[scores.length - 1]!))
      }
      const outputs = task.test.map((t) => t.output)
      return {
        attempts: perTest,
        solved: solvedByAttempts(perTest, outputs),
        cellAccuracy: cellAccuracy(perTest, outputs),
        solutionLikelihood: likelihoods.reduce((a, b) => a + b, 0) / Math.max(1, likelihoods.length)
      }
    })
  )

const loraConfig = (config: ArcInnerLoopConfig) => ({
  rank: config.rank,
  alpha: config.alpha,
  dropout: 0,
  targets: [...config.targets]
})

/** An outcome without a prediction (`fields` say why). */
export const unsolvedOutcome = (task: ArcTask, fields: Partial<ArcOutcome> = {}): ArcOutcome => ({
  attempts: task.test.map(() => []),
  solved: false,
  cellAccuracy: 0,
  solutionLikelihood: 0,
  refused: undefined,
  trainingSequences: 0,
  optimizerSteps: 0,
  finalLoss: undefined,
  adapterId: undefined,
  seconds: 0,
  ...fields
})

interface Prepared {
  readonly item: ArcItem
  readonly sequences: ReturnType<typeof testTimeSequences>
  readonly steps: number
  readonly refused: ArcOutcome["refused"]
}

/** How test-time training would go for one item: its sequences and steps, or why it is refused. */
const prepareItem = (item: ArcItem, config: ArcInnerLoopConfig, maxPositions: number): Prepared => {
  if (item.config === undefined) return { item, sequences: [], steps: 0, refused: undefined }
  const sequences = testTimeSequences(item.task.train, item.config, {
    maxSequences: config.maxSequences,
    maxTokens: maxPositions,
    seed: item.seed
  })
  const steps = optimizerSteps({
    sequences: sequences.length,
    epochs: item.config.training.num_train_epochs,
    batchSize: config.batchSize
  })
  const refused = sequences.length === 0
    ? "NoTrainingData" as const
    : steps > maxTrainingSteps
    ? "TooManySteps" as const
    : undefined
  return { item, sequences, steps, refused }
}

/** The outcome of a refused item, or of one before its prediction. */
const notTrained = (p: Prepared): ArcOutcome =>
  unsolvedOutcome(p.item.task, { refused: p.refused, trainingSequences: p.sequences.length, optimizerSteps: p.steps })

/**
 * A share of the inner loop's work that runs on its own: one unadapted prediction, or the items
 * whose adapters train together in one batched pass (`indices` into the planned items).
 */
export interface ArcWorkUnit {
  readonly indices: ReadonlyArray<number>
  readonly items: ReadonlyArray<ArcItem>
}

export interface ArcWorkPlan {
  /** The refused items' outcomes (known without any work); undefined where a unit will tell. */
  readonly settled: ReadonlyArray<ArcOutcome | undefined>
  readonly units: ReadonlyArray<ArcWorkUnit>
}

/**
 * Splits the inner loop over `items` into units: refused configs are settled at once, each
 * unadapted item is a unit, and configs within the step limit go `batchAdapters` at a time (fewer
 * if the longest sequence would overrun `memoryBudgetMB`) into training units, in item order.
 * The plan depends only on the items, the config and the model's shape, so any runner (this
 * process, or a pool of workers) trains the same passes and gets the same outcomes.
 */
export const planArcWork = (
  items: ReadonlyArray<ArcItem>,
  config: ArcInnerLoopConfig,
  modelConfig: ModelConfig
): ArcWorkPlan => {
  const prepared = items.map((item) => prepareItem(item, config, modelConfig.maxPositions))
  const settled = prepared.map((p) => (p.refused !== undefined ? notTrained(p) : undefined))
  const units: Array<ArcWorkUnit> = []
  const toTrain: Array<number> = []
  for (const [i, p] of prepared.entries()) {
    if (p.refused !== undefined) continue
    if (p.item.config === undefined) units.push({ indices: [i], items: [p.item] })
    else toTrain.push(i)
  }
  const longest = Math.max(1, ...toTrain.flatMap((i) => prepared[i]!.sequences.map((s) => s.ids.length)))
  const perPass = adaptersWithinBudget(
    modelConfig,
    config.batchSize,
    longest,
    config.memoryBudgetMB * 2 ** 20,
    config.batchAdapters
  )
  for (let start = 0; start < toTrain.length; start += perPass) {
    const indices = toTrain.slice(start, start + perPass)
    units.push({ indices, items: indices.map((i) => items[i]!) })
  }
  return { settled, units }
}

/**
 * Runs one unit of `planArcWork`: its adapters train in one batched pass, then each adapted model
 * predicts; an unadapted item just predicts. Outcomes in the unit's item order.
 */
export const solveUnit = (
  items: ReadonlyArray<ArcItem>,
  config: ArcInnerLoopConfig
): Effect.Effect<Array<ArcOutcome>, TrainingError | LoraConfigError | GenerationError, LanguageModel | LoraTrainer> =>
  Effect.gen(function*() {
    const trainer = yield* LoraTrainer
    const model = yield* LanguageModel
    const began = performance.now()
    const prepared = items.map((item) => prepareItem(item, config, model.config.maxPositions))
    const toTrain = prepared.filter((p) => p.item.config !== undefined && p.refused === undefined)
    // Ids name the task, seed and config: the oracle's candidates share seeds per task.
    const adapters = yield* Effect.forEach(toTrain, (p) =>
      trainer.createAdapter(loraConfig(config), {
        seed: p.item.seed,
        id: `arc-${p.item.task.id}-${p.item.seed}-${toolConfigKey(p.item.config!)}`
      }))
    const trained = toTrain.length === 0 ? [] : yield* trainer.trainMany(
      adapters,
      toTrain.map((p) => p.sequences),
      toTrain.map((p) => ({
        learningRate: p.item.config!.training.learning_rate,
        epochs: p.item.config!.training.num_train_epochs,
        batchSize: config.batchSize,
        seed: p.item.seed,
        padId: ids.pad
      }))
    )
    const outcomes = yield* Effect.forEach(prepared, (p) => {
      if (p.refused !== undefined) return Effect.succeed(notTrained(p))
      const k = toTrain.indexOf(p)
      const run = k < 0 ? undefined : trained[k]!
      return predictTask(p.item.task, config, run?.adapter).pipe(Effect.map((prediction) => ({
        ...notTrained(p),
        ...prediction,
        finalLoss: run?.losses[run.losses.length - 1],
        adapterId: run?.adapter.id
      })))
    })
    const seconds = (performance.now() - began) / 1000 / Math.max(1, items.length)
    return outcomes.map((o) => ({ ...o, seconds }))
  })

/** Puts the units' outcomes back in item order beside the settled ones. */
export const assembleOutcomes = (
  plan: ArcWorkPlan,
  unitOutcomes: ReadonlyArray<ReadonlyArray<ArcOutcome>>
): Array<ArcOutcome> => {
  const outcomes = [...plan.settled]
  plan.units.forEach((unit, u) => unit.indices.forEach((index, k) => (outcomes[index] = unitOutcomes[u]![k]!)))
  return outcomes.map((o) => o!)
}

/**
 * Runs the inner loop for every item in this process, unit by unit (`planArcWork`): configs within
 * the step limit train `batchAdapters` at a time in one batched pass, then each adapted model
 * predicts; items without a config predict unadapted. Outcomes come back in item order.
 */
export const adaptAndSolveHere = (
  items: ReadonlyArray<ArcItem>,
  config: ArcInnerLoopConfig
): Effect.Effect<Array<ArcOutcome>, TrainingError | LoraConfigError | GenerationError, LanguageModel | LoraTrainer> =>
  Effect.gen(function*() {
    const model = yield* LanguageModel
    const plan = planArcWork(items, config, model.config)
    const unitOutcomes = yield* Effect.forEach(plan.units, (unit) => solveUnit(unit.items, config))
    return assembleOutcomes(plan, unitOutcomes)
  })
