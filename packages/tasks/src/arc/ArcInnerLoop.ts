/**
 * SEAL's inner loop for few-shot ARC: a tool config (the self-edit) picks the augmentation
 * families, the loss and the optimizer settings; a fresh LoRA adapter trains on the test-time
 * data those make from the task's demonstrations; the adapted model predicts each test output
 * by augmented voting; the task counts as solved when every test output is among its two
 * attempts. A config whose training would exceed `maxTrainingSteps` is refused (reward 0, as in
 * the reference) without training.
 *
 * Adapters of several items train together in one batched pass (`LoraTrainer.trainMany`, each
 * with its own learning rate and epochs), then each predicts on its own.
 */
import { LanguageModel } from "@seal/gpu/LanguageModel"
import { GenerationError } from "@seal/gpu/LanguageModel"
import type { LoraAdapter, LoraConfigError } from "@seal/gpu/lora/LoraAdapter"
import { disposeDeviceLora, loraHook, uploadLora } from "@seal/gpu/lora/LoraAdapter"
import { LoraTrainer } from "@seal/gpu/LoraTrainer"
import { generate } from "@seal/gpu/model/Generate"
import { adaptersWithinBudget } from "@seal/gpu/train/MemoryBudget"
import type { TrainingError } from "@seal/gpu/train/Trainer"
import { Effect, Either, Schema } from "effect"
import { LoraTargets } from "../knowledge/InnerLoop.js"
import { decodeGrid, gridLength } from "./ArcFormat.js"
import { ids } from "./ArcVocabulary.js"
import { invertibleViews } from "./Augmenters.js"
import type { ArcTask, Grid } from "./Grid.js"
import { maxGridSide } from "./Grid.js"
import { testTimeSequences } from "./TestTimeData.js"
import { maxTrainingSteps, optimizerSteps, parseToolConfig, type ToolConfig, toolConfigKey } from "./ToolConfig.js"
import { attempts, cellAccuracy, queryViews, solvedByAttempts } from "./Voting.js"

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
  /** Views voted over at inference: the first n of the square's 8 symmetries (identity first). */
  views: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, invertibleViews.length)), { default: () => 8 })
}).annotations({ identifier: "ArcInnerLoopConfig" })
export type ArcInnerLoopConfig = typeof ArcInnerLoopConfig.Type
export type ArcInnerLoopConfigEncoded = typeof ArcInnerLoopConfig.Encoded

export interface ArcPrediction {
  /** Up to two attempts per test input, in the task's test order. */
  readonly attempts: ReadonlyArray<ReadonlyArray<Grid>>
  readonly solved: boolean
  readonly cellAccuracy: number
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
const predictionBudget = (task: ArcTask, input: Grid): number => {
  const largest = Math.max(gridLength(input), ...task.train.map((d) => gridLength(d.output)))
  return Math.min(2 * largest + 1, maxGridSide * (maxGridSide + 1) + 1)
}

/**
 * Greedy predictions of every test input of `task` in `views` views, with `adapter` applied when
 * given, voted to two attempts. Views whose prompt leaves no room to answer are skipped; a task
 * none of whose views fit gets no attempts (unsolved).
 */
export const predictTask = (
  task: ArcTask,
  config: Pick<ArcInnerLoopConfig, "views">,
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
      const views = invertibleViews.slice(0, config.views)
      const perTest: Array<Array<Grid>> = []
      for (const test of task.test) {
        const budget = predictionBudget(task, test.input)
        const shown = queryViews(task.train, test.input, views, model.config.maxPositions - budget)
        if (shown.length === 0) {
          perTest.push([])
          continue
        }
        const rows = yield* Effect.try({
          try: () =>
            generate(model.weights, shown.map((v) => v.prompt), {
              maxTokens: budget,
              temperature: 0,
              eosId: ids.exampleEnd,
              hook
            }),
          catch: (e) => new GenerationError({ reason: "Backend", detail: `ARC prediction failed: ${String(e)}` })
        })
        const predictions = rows.map((row, i) => {
          const grid = decodeGrid(row.tokens)
          return grid === undefined ? undefined : shown[i]!.invert(grid)
        })
        perTest.push(attempts(predictions))
      }
      const outputs = task.test.map((t) => t.output)
      return {
        attempts: perTest,
        solved: solvedByAttempts(perTest, outputs),
        cellAccuracy: cellAccuracy(perTest, outputs)
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
const unsolvedOutcome = (task: ArcTask, fields: Partial<ArcOutcome> = {}): ArcOutcome => ({
  attempts: task.test.map(() => []),
  solved: false,
  cellAccuracy: 0,
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

/**
 * Runs the inner loop for every item: configs within the step limit train `batchAdapters` at a
 * time in one batched pass, then each adapted model predicts; items without a config predict
 * unadapted. Outcomes come back in item order.
 */
export const adaptAndSolve = (
  items: ReadonlyArray<ArcItem>,
  config: ArcInnerLoopConfig
): Effect.Effect<Array<ArcOutcome>, TrainingError | LoraConfigError | GenerationError, LanguageModel | LoraTrainer> =>
  Effect.gen(function*() {
    const trainer = yield* LoraTrainer
    const model = yield* LanguageModel
    const prepared: Array<Prepared> = items.map((item) => {
      if (item.config === undefined) return { item, sequences: [], steps: 0, refused: undefined }
      const sequences = testTimeSequences(item.task.train, item.config, {
        maxSequences: config.maxSequences,
        maxTokens: model.config.maxPositions,
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
    })
    const outcomes = new Array<ArcOutcome>(items.length)
    const unsolved = (p: Prepared): ArcOutcome =>
      unsolvedOutcome(p.item.task, {
        refused: p.refused,
        trainingSequences: p.sequences.length,
        optimizerSteps: p.steps
      })
    const toTrain: Array<number> = []
    for (const [i, p] of prepared.entries()) {
      if (p.refused !== undefined) outcomes[i] = unsolved(p)
      else if (p.item.config === undefined) {
        const began = performance.now()
        const prediction = yield* predictTask(p.item.task, config)
        outcomes[i] = { ...unsolved(p), ...prediction, seconds: (performance.now() - began) / 1000 }
      } else toTrain.push(i)
    }
    const longest = Math.max(1, ...toTrain.flatMap((i) => prepared[i]!.sequences.map((s) => s.ids.length)))
    const perPass = adaptersWithinBudget(
      model.config,
      config.batchSize,
      longest,
      config.memoryBudgetMB * 2 ** 20,
      config.batchAdapters
    )
    for (let start = 0; start < toTrain.length; start += perPass) {
      const chunk = toTrain.slice(start, start + perPass).map((i) => ({ index: i, p: prepared[i]! }))
      const began = performance.now()
      // Ids name the task, seed and config: the oracle's candidates share seeds per task.
      const adapters = yield* Effect.forEach(chunk, ({ p }) =>
        trainer.createAdapter(loraConfig(config), {
          seed: p.item.seed,
          id: `arc-${p.item.task.id}-${p.item.seed}-${toolConfigKey(p.item.config!)}`
        }))
      const trained = yield* trainer.trainMany(
        adapters,
        chunk.map(({ p }) => p.sequences),
        chunk.map(({ p }) => ({
          learningRate: p.item.config!.training.learning_rate,
          epochs: p.item.config!.training.num_train_epochs,
          batchSize: config.batchSize,
          seed: p.item.seed,
          padId: ids.pad
        }))
      )
      const predictions = yield* Effect.forEach(
        chunk,
        ({ p }, k) => predictTask(p.item.task, config, trained[k]!.adapter)
      )
      const seconds = (performance.now() - began) / 1000 / chunk.length
      chunk.forEach(({ index, p }, k) => {
        const losses = trained[k]!.losses
        outcomes[index] = {
          ...predictions[k]!,
          refused: undefined,
          trainingSequences: p.sequences.length,
          optimizerSteps: p.steps,
          finalLoss: losses[losses.length - 1],
          adapterId: trained[k]!.adapter.id,
          seconds
        }
      })
    }
    return outcomes
  })

/**
 * Self-edits as text through the inner loop, outcomes in item order with the config each parsed
 * to. A text that is not a valid tool config (possible only without the grammar mask) is not
 * trained and solves nothing: reward 0, as in the reference.
 */
export const solveSelfEdits = (
  items: ReadonlyArray<{ readonly task: ArcTask; readonly selfEdit: string; readonly seed: number }>,
  config: ArcInnerLoopConfig
): Effect.Effect<
  Array<{ readonly config: ToolConfig | undefined; readonly outcome: ArcOutcome }>,
  TrainingError | LoraConfigError | GenerationError,
  LanguageModel | LoraTrainer
> =>
  Effect.gen(function*() {
    const configs = items.map((item) => Either.getOrUndefined(parseToolConfig(item.selfEdit)))
    const outcomes = yield* adaptAndSolve(
      items.flatMap((item, i) => {
        const parsed = configs[i]
        return parsed === undefined ? [] : [{ task: item.task, config: parsed, seed: item.seed }]
      }),
      config
    )
    let next = 0
    return items.map((item, i) => ({
      config: configs[i],
      outcome: configs[i] === undefined ? unsolvedOutcome(item.task) : outcomes[next++]!
    }))
  })
