/**
 * Pretraining the ARC base model from scratch on the pretraining split (`ArcSplits.ts`): ARC
 * training tasks that are neither RL nor evaluation tasks, each seen many times under a fresh
 * random symmetry of the square, colour permutation (0 fixed) and example order.
 *
 * A pretraining sequence is BOS followed by as many of a task's pairs (demonstrations and test
 * pairs with their solutions, shuffled) as fit the context; the targets are the output grids of
 * every pair but the first, so the model learns to infer a rule from the pairs before it (the
 * in-context skill that test-time training then sharpens). FEASIBILITY.md's probe of this
 * recipe (0.93M parameters, 7.8M tokens) solved nothing in context and 2-3 of 11 small held-out
 * tasks after test-time training.
 */
import { mixSeed, stringHash } from "@seal/core/Seeds"
import type { ModelConfig } from "@seal/gpu/model/ModelConfig"
import { deriveSeed, makeRng } from "@seal/gpu/model/Sampling"
import type { WordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import { lengthBucketedPass, paddedTokens } from "@seal/gpu/train/LengthBuckets"
import type { TokenizedExample } from "@seal/gpu/train/Loss"
import type { PlannedStep } from "@seal/gpu/train/Trainer"
import { Either, Schema } from "effect"
import {
  decodeStrict,
  optimizerSettingsFields,
  PretrainError,
  pretrainModelConfig,
  pretrainModelSchema,
  type PretrainOptions,
  type PretrainResult,
  type PretrainSpec,
  runPretraining
} from "../PretrainRun.js"
import { arcGridPositions, arcTokenizer, exampleIds, exampleLength } from "./ArcFormat.js"
import type { ArcSplits } from "./ArcSplits.js"
import { ids } from "./ArcVocabulary.js"
import {
  applyToExample,
  colourPermutation,
  invertibleViews,
  permuteExampleColours,
  shuffleExamples
} from "./Augmenters.js"
import type { ArcExample, ArcTask } from "./Grid.js"
import { gridFamilies, syntheticFamilies, syntheticFamilyNames, syntheticTask } from "./SyntheticTasks.js"
import { allToolConfigs, toolConfigText } from "./ToolConfig.js"

const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())

export const ArcPretrainModel = Schema.extend(
  pretrainModelSchema({ maxPositions: 512 }),
  Schema.Struct({
    /** Learnt row, column and segment embeddings (`arcGridPositions`) beside RoPE. */
    gridPositions: Schema.optionalWith(Schema.Boolean, { default: () => true })
  })
).annotations({ identifier: "ArcPretrainModel" })

export const ArcPretrainTraining = Schema.Struct({
  /** Passes over the pretraining tasks; every pass draws fresh views. */
  passes: Schema.optionalWith(PositiveInt, { default: () => 24 }),
  /** Sequences per task per pass, each under its own symmetry, colours and order. */
  viewsPerTask: Schema.optionalWith(PositiveInt, { default: () => 4 }),
  /**
   * Generated tasks (`SyntheticTasks.ts`) added to each pass, one sequence each, every one new:
   * pass p's task s is the generated task of seed `mixSeed(seed, syntheticStream, p, s)`.
   */
  syntheticTasksPerPass: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /**
   * The families generated tasks are drawn from, uniformly (names in `syntheticFamilyNames`). The
   * default is the cell rules the bundled model's recipe used, so that recipe draws the same tasks.
   */
  syntheticFamilies: Schema.optionalWith(
    Schema.Array(
      Schema.String.pipe(Schema.filter((name) =>
        syntheticFamilyNames.includes(name) ||
        `unknown family "${name}"; the families are ${syntheticFamilyNames.join(", ")}`
      ))
    ).pipe(Schema.minItems(1)),
    { default: () => gridFamilies.map((family) => family.name) }
  ),
  /** Sequences per optimizer step. */
  batchSequences: Schema.optionalWith(PositiveInt, { default: () => 16 }),
  /**
   * Share of sequences that end with `config` and a tool config drawn uniformly from the grammar
   * (loss on the config): the generator of self-edits then starts from a uniform prior over valid
   * configs instead of from words pretraining taught it never to predict.
   */
  configShare: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), { default: () => 0.25 }),
  /** Padded tokens per micro-batch: bounds memory, not the result. */
  microBatchTokens: Schema.optionalWith(PositiveInt, { default: () => 4096 }),
  ...optimizerSettingsFields({
    learningRate: 3e-3,
    warmupSteps: 100,
    minLearningRateRatio: 0.1,
    weightDecay: 0.1,
    beta1: 0.9,
    beta2: 0.95,
    gradientClip: 1
  })
}).annotations({ identifier: "ArcPretrainTraining" })

export const ArcPretrainConfig = Schema.Struct({
  model: Schema.optionalWith(ArcPretrainModel, { default: () => Schema.decodeSync(ArcPretrainModel)({}) }),
  training: Schema.optionalWith(ArcPretrainTraining, { default: () => Schema.decodeSync(ArcPretrainTraining)({}) }),
  /** Seeds the initial weights, the views and the data order. */
  seed: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /**
   * A model directory (an earlier run's `model/`) whose weights start this run instead of random
   * ones: continued pretraining with a fresh schedule. Its shape must equal `model`'s.
   */
  init: Schema.optional(Schema.String)
}).annotations({ identifier: "ArcPretrainConfig" })
export type ArcPretrainConfig = typeof ArcPretrainConfig.Type
export type ArcPretrainConfigEncoded = typeof ArcPretrainConfig.Encoded

export const decodeArcPretrainConfig: (
  input: unknown,
  source?: string
) => Either.Either<ArcPretrainConfig, PretrainError> = decodeStrict(ArcPretrainConfig)

/**
 * One pretraining sequence from a task's pairs (already transformed): BOS, then pairs in order
 * while they fit `maxTokens`, skipping any that would not. Targets: the output grid and `end` of
 * every pair after the first. With `configIds` (a tool config's tokens), the pairs are followed
 * by `config`, the config and EOS, all targets but `config`. Undefined when fewer than two pairs fit.
 */
export const packPairs = (
  pairs: ReadonlyArray<ArcExample>,
  maxTokens: number,
  configIds?: ReadonlyArray<number>
): TokenizedExample | undefined => {
  const chosen: Array<ArcExample> = []
  let length = 1 + (configIds === undefined ? 0 : configIds.length + 2)
  for (const pair of pairs) {
    const n = exampleLength(pair)
    if (length + n > maxTokens) continue
    chosen.push(pair)
    length += n
  }
  if (chosen.length < 2) return undefined
  const sequence: Array<number> = [ids.bos]
  const labelMask: Array<number> = [0]
  chosen.forEach((pair, index) => {
    const tokens = exampleIds(pair)
    const outputAt = tokens.indexOf(ids.output)
    for (const [t, id] of tokens.entries()) {
      sequence.push(id)
      // The output grid and `end` follow the `out` marker; the first pair has no rule to infer.
      labelMask.push(index > 0 && t > outputAt ? 1 : 0)
    }
  })
  if (configIds !== undefined) {
    sequence.push(ids.config, ...configIds, ids.eos)
    labelMask.push(0, ...configIds.map(() => 1), 1)
  }
  return { ids: sequence, labelMask }
}

/** A random view of a task's pairs: one symmetry of the square, a colour permutation, a shuffle. */
export const randomView = (task: ArcTask, rng: () => number): Array<ArcExample> => {
  const symmetry = invertibleViews[Math.floor(rng() * invertibleViews.length)]!
  const colours = colourPermutation(rng)
  const pairs = [...task.train, ...task.test].map((pair) =>
    permuteExampleColours(applyToExample(symmetry, pair), colours)
  )
  return shuffleExamples(pairs, rng)
}

export interface ArcPretrainSetup {
  readonly tokenizer: WordLevelTokenizer
  readonly modelConfig: ModelConfig
  readonly examples: ReadonlyArray<TokenizedExample>
  readonly plan: ReadonlyArray<PlannedStep>
  /** The tasks pretrained on (at least one sequence fits) and those none of whose pairs fit two to a sequence. */
  readonly taskIds: ReadonlyArray<string>
  readonly skippedTaskIds: ReadonlyArray<string>
  readonly stats: {
    readonly sequences: number
    /** Of `sequences`, those of generated tasks. */
    readonly syntheticSequences: number
    readonly steps: number
    readonly plannedTokens: number
    readonly targetTokens: number
    readonly paddedTokens: number
  }
}

/** The seed stream of generated tasks (any constant apart from task-id hashes). */
const syntheticStream = 0x5e7a71c

/**
 * The examples and plan of a run, deterministically from `config` and the pretraining tasks:
 * pass p, task t, view v draws from the stream `mixSeed(seed, hash(t), p, v)`, so the data do not
 * depend on the other tasks.
 */
export const prepareArcPretraining = (
  config: ArcPretrainConfig,
  tasks: ReadonlyArray<ArcTask>
): Either.Either<ArcPretrainSetup, PretrainError> => {
  const tokenizer = arcTokenizer()
  const modelConfig: ModelConfig = {
    ...pretrainModelConfig(config.model, tokenizer.vocabSize),
    ...(config.model.gridPositions ? { gridPositions: arcGridPositions } : {})
  }
  const t = config.training
  const configs = allToolConfigs()
  const examples: Array<TokenizedExample> = []
  const passRanges: Array<Array<number>> = []
  const used = new Set<string>()
  let syntheticSequences = 0
  const families = t.syntheticFamilies.map((name) => syntheticFamilies.find((family) => family.name === name)!)
  /** One sequence of a random view of `task`, drawn from `rng`; false when no two pairs fit. */
  const addView = (task: ArcTask, rng: () => number, indices: Array<number>): boolean => {
    const pairs = randomView(task, rng)
    const configIds = rng() < t.configShare
      ? tokenizer.encode(toolConfigText(configs[Math.floor(rng() * configs.length)]!), { addBos: false })
      : undefined
    // A view too long to leave room for a config is kept without one.
    const sequence = packPairs(pairs, config.model.maxPositions, configIds) ??
      packPairs(pairs, config.model.maxPositions)
    if (sequence === undefined) return false
    indices.push(examples.length)
    examples.push(sequence)
    return true
  }
  for (let pass = 0; pass < t.passes; pass++) {
    const indices: Array<number> = []
    for (const task of tasks) {
      for (let view = 0; view < t.viewsPerTask; view++) {
        if (addView(task, makeRng(mixSeed(config.seed, stringHash(task.id), pass, view)), indices)) used.add(task.id)
      }
    }
    for (let s = 0; s < t.syntheticTasksPerPass; s++) {
      const seed = mixSeed(config.seed, syntheticStream, pass, s)
      if (addView(syntheticTask(seed, families), makeRng(deriveSeed(seed, 1)), indices)) syntheticSequences++
    }
    passRanges.push(indices)
  }
  if (examples.length === 0) {
    return Either.left(
      new PretrainError({
        reason: "DocumentTooLong",
        field: "model.maxPositions",
        detail: `no pretraining task has two pairs within ${config.model.maxPositions} tokens`
      })
    )
  }
  const lengths = examples.map((e) => e.ids.length)
  const bucketing = {
    batchSize: t.batchSequences,
    microBatchTokens: t.microBatchTokens,
    seed: deriveSeed(config.seed, 1)
  }
  const plan = passRanges.flatMap((indices, pass) => lengthBucketedPass(indices, lengths, pass, bucketing))
  const plannedTokens = lengths.reduce((a, b) => a + b, 0)
  return Either.right({
    tokenizer,
    modelConfig,
    examples,
    plan,
    taskIds: tasks.filter((task) => used.has(task.id)).map((task) => task.id),
    skippedTaskIds: tasks.filter((task) => !used.has(task.id)).map((task) => task.id),
    stats: {
      sequences: examples.length,
      steps: plan.length,
      plannedTokens,
      syntheticSequences,
      targetTokens: examples.reduce((n, e) => n + e.labelMask.reduce((a, b) => a + b, 0), 0),
      paddedTokens: paddedTokens(plan, lengths)
    }
  })
}

/** The provenance file of a pretrained ARC model. */
export const arcProvenanceFile = "seal-arc.json"

/** How an ARC config becomes a pretraining run over `splits.pretrain`. */
export const arcPretrainSpec = (splits: ArcSplits): PretrainSpec<ArcPretrainConfig, ArcPretrainSetup> => ({
  decodeConfig: decodeArcPretrainConfig,
  prepare: (config) => prepareArcPretraining(config, splits.pretrain),
  optimizer: (config) => config.training,
  seed: (config) => config.seed,
  init: (config) => config.init,
  provenance: (config, setup) => ({
    file: arcProvenanceFile,
    content: {
      what: `an ARC base model, ${
        config.init === undefined ? "pretrained from scratch" : `pretrained from the weights of ${config.init}`
      } by seal-ts on ARC-AGI training tasks${
        config.training.syntheticTasksPerPass > 0 ? " and generated tasks (SyntheticTasks.ts)" : ""
      }`,
      reproduce: "npx seal pretrain --task arc --config <this file's config> --out DIR",
      config,
      stats: setup.stats,
      splits: {
        pretrain: setup.taskIds,
        pretrainSkipped: setup.skippedTaskIds,
        rl: splits.rl.map((task) => task.id),
        "evaluation-seal": splits["evaluation-seal"].map((task) => task.id),
        "evaluation-small": splits["evaluation-small"].map((task) => task.id)
      }
    }
  })
})

/** Runs (or resumes) ARC pretraining in `options.dir` (see `runPretraining`). */
export const pretrainArc = (
  splits: ArcSplits,
  options: PretrainOptions<ArcPretrainConfig>
): ReturnType<typeof runPretraining<ArcPretrainConfig, ArcPretrainSetup>> =>
  runPretraining(arcPretrainSpec(splits), options)

export type ArcPretrainResult = PretrainResult<ArcPretrainSetup>
