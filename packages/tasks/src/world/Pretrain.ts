/**
 * Pretraining a world's base model from scratch: the world, its corpus, a small Llama and the
 * schedule of `probedSchedule`, run as a resumable `PretrainRun` (windows of optimizer steps with
 * checkpoints; see `PretrainRun.ts` for the run directory). The final model carries
 * `seal-world.json`: the world, its seeds and the corpus statistics.
 */
import type { ModelConfig } from "@seal/gpu/model/ModelConfig"
import type { WordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import { lengthBucketedPass, paddedTokens } from "@seal/gpu/train/LengthBuckets"
import { type TokenizedExample, tokenizeExample } from "@seal/gpu/train/Loss"
import type { PlannedStep } from "@seal/gpu/train/Trainer"
import { Either, Schema } from "effect"
import {
  decodeStrict,
  optimizerSettingsFields,
  pretrainModelConfig,
  pretrainModelSchema,
  type PretrainOptions as RunOptions,
  type PretrainResult as RunResult,
  type PretrainSpec,
  runPretraining
} from "../PretrainRun.js"
import { PretrainError } from "../PretrainRun.js"
import {
  buildCorpus,
  type Corpus,
  CorpusConfig,
  type CorpusStats,
  corpusStats,
  probedSchedule,
  toExample
} from "./Corpus.js"
import { generateWorld, type World, WorldConfig, worldTokenizer } from "./World.js"

export { PretrainError, type PretrainProgress, runFiles } from "../PretrainRun.js"

const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())

/** The default corpus's longest document is 120 tokens. */
export const PretrainModel = pretrainModelSchema({ maxPositions: 128 })

export const PretrainTraining = Schema.Struct({
  /** Passes over the copy-first warm-up part, before the main part. */
  warmupPasses: Schema.optionalWith(NonNegativeInt, { default: () => probedSchedule.warmupPasses }),
  mainPasses: Schema.optionalWith(NonNegativeInt, { default: () => probedSchedule.mainPasses }),
  /** Documents per optimizer step. */
  batchDocuments: Schema.optionalWith(PositiveInt, { default: () => probedSchedule.batchDocuments }),
  /** Padded tokens per micro-batch: bounds memory, not the result. */
  microBatchTokens: Schema.optionalWith(PositiveInt, { default: () => 2048 }),
  ...optimizerSettingsFields({
    learningRate: probedSchedule.learningRate,
    warmupSteps: probedSchedule.warmupSteps,
    minLearningRateRatio: probedSchedule.minLearningRateRatio,
    weightDecay: probedSchedule.weightDecay,
    beta1: probedSchedule.betas[0],
    beta2: probedSchedule.betas[1],
    gradientClip: probedSchedule.gradientClip
  })
}).pipe(
  Schema.filter((t) => t.warmupPasses + t.mainPasses > 0 || "warmupPasses + mainPasses must be at least 1")
).annotations({ identifier: "PretrainTraining" })

export const PretrainConfig = Schema.Struct({
  world: Schema.optionalWith(WorldConfig, { default: () => Schema.decodeSync(WorldConfig)({}) }),
  worldSeed: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  corpus: Schema.optionalWith(CorpusConfig, { default: () => Schema.decodeSync(CorpusConfig)({}) }),
  corpusSeed: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  model: Schema.optionalWith(PretrainModel, { default: () => Schema.decodeSync(PretrainModel)({}) }),
  training: Schema.optionalWith(PretrainTraining, { default: () => Schema.decodeSync(PretrainTraining)({}) }),
  /** Seeds the initial weights and the data order. */
  seed: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /** A model directory whose weights start this run instead of random ones (continued pretraining). */
  init: Schema.optional(Schema.String)
}).annotations({ identifier: "PretrainConfig" })
export type PretrainConfig = typeof PretrainConfig.Type
export type PretrainConfigEncoded = typeof PretrainConfig.Encoded

export const decodePretrainConfig: (input: unknown, source?: string) => Either.Either<PretrainConfig, PretrainError> =
  decodeStrict(PretrainConfig)

export interface PretrainSetup {
  readonly world: World
  readonly corpus: Corpus
  readonly tokenizer: WordLevelTokenizer
  readonly modelConfig: ModelConfig
  /** Warm-up documents first, then the main part. */
  readonly examples: ReadonlyArray<TokenizedExample>
  readonly plan: ReadonlyArray<PlannedStep>
  readonly stats: CorpusStats & {
    readonly steps: number
    /** Non-padding tokens over the whole plan. */
    readonly plannedTokens: number
    readonly paddedTokens: number
  }
}

/**
 * Everything a run needs, deterministically from `config`: the world, its corpus tokenized
 * (every document ends with EOS; prompts are context, completions targets) and the plan: the
 * warm-up passes, then the main passes, each length-bucketed.
 */
export const preparePretraining = (config: PretrainConfig): Either.Either<PretrainSetup, PretrainError> => {
  const world = generateWorld(config.world, config.worldSeed)
  const corpus = buildCorpus(world, config.corpus, config.corpusSeed)
  const tokenizer = worldTokenizer(config.world)
  const modelConfig = pretrainModelConfig(config.model, tokenizer.vocabSize)
  const docs = [...corpus.warmup, ...corpus.main]
  const examples = docs.map((d) => tokenizeExample(tokenizer, toExample(d), { addEos: true }))
  const lengths = examples.map((e) => e.ids.length)
  const longest = examples.findIndex((e) => e.ids.length > modelConfig.maxPositions)
  if (longest >= 0) {
    return Either.left(
      new PretrainError({
        reason: "DocumentTooLong",
        field: "model.maxPositions",
        detail: `a ${docs[longest]!.kind} document has ${lengths[longest]} tokens; raise maxPositions to at least ${
          Math.max(...lengths)
        }`
      })
    )
  }
  const t = config.training
  const bucketing = { batchSize: t.batchDocuments, microBatchTokens: t.microBatchTokens, seed: config.seed }
  const warmupIds = corpus.warmup.map((_, i) => i)
  const mainIds = corpus.main.map((_, i) => corpus.warmup.length + i)
  const plan: Array<PlannedStep> = []
  if (warmupIds.length > 0) {
    for (let p = 0; p < t.warmupPasses; p++) plan.push(...lengthBucketedPass(warmupIds, lengths, p, bucketing))
  }
  if (mainIds.length > 0) {
    for (let p = 0; p < t.mainPasses; p++) {
      plan.push(...lengthBucketedPass(mainIds, lengths, t.warmupPasses + p, bucketing))
    }
  }
  const plannedTokens = plan.reduce((n, s) => n + s.microBatches.flat().reduce((m, i) => m + lengths[i]!, 0), 0)
  return Either.right({
    world,
    corpus,
    tokenizer,
    modelConfig,
    examples,
    plan,
    stats: {
      ...corpusStats(corpus, tokenizer),
      steps: plan.length,
      plannedTokens,
      paddedTokens: paddedTokens(plan, lengths)
    }
  })
}

/** How a world config becomes a pretraining run. */
export const worldPretrainSpec: PretrainSpec<PretrainConfig, PretrainSetup> = {
  decodeConfig: decodePretrainConfig,
  prepare: preparePretraining,
  optimizer: (config) => config.training,
  seed: (config) => config.seed,
  init: (config) => config.init,
  provenance: (config, setup) => ({
    file: "seal-world.json",
    content: {
      what: "a SEAL synthetic-world base model, pretrained from scratch by seal-ts",
      reproduce: "npx seal pretrain --config <this file's config> --out DIR",
      config,
      corpus: {
        warmup: setup.stats.warmup,
        main: setup.stats.main,
        steps: setup.stats.steps,
        plannedTokens: setup.stats.plannedTokens,
        paddedTokens: setup.stats.paddedTokens
      },
      splits: {
        qaPeople: setup.corpus.qaPeople.length,
        passageOnlyPeople: setup.corpus.passageOnlyPeople.length
      }
    }
  })
}

export type PretrainOptions = RunOptions<PretrainConfig>
export type PretrainResult = RunResult<PretrainSetup>

/** Runs (or resumes) a world's pretraining in `options.dir` (see `runPretraining`). */
export const pretrain = (options: PretrainOptions) => runPretraining(worldPretrainSpec, options)
