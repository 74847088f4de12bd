/**
 * Pretraining a world's base model from scratch: the world, its corpus, a small Llama and the
 * schedule of `probedSchedule`, run as resumable windows of optimizer steps.
 *
 * A run lives in its own directory:
 *
 *     pretrain-config.json      the resolved config (what `--resume` reads back)
 *     progress.jsonl            one line per optimizer step (loss, learning rate, gradient norm)
 *     checkpoints/step-NNNNNN/  a Hugging Face model directory plus optimizer.safetensors
 *     latest.json               which checkpoint is complete (written last, atomically)
 *     model/                    the final model, with seal-world.json (world, seeds, statistics)
 *
 * Windows are cut from one plan and carry the weights and AdamW moments, so a run killed at any
 * point and resumed from its last checkpoint ends with the same weights as an uninterrupted one.
 */
import * as Checkpoint from "@seal/gpu/checkpoint/Checkpoint"
import { CheckpointError, parseJsonFile } from "@seal/gpu/checkpoint/CheckpointError"
import { writeFileAtomic, writeHfDirectory } from "@seal/gpu/checkpoint/HfDirectory"
import { readSafetensors, writeSafetensors } from "@seal/gpu/checkpoint/Safetensors"
import { initWeights } from "@seal/gpu/model/InitWeights"
import type { ModelConfig, WeightMap } from "@seal/gpu/model/ModelConfig"
import { wordLevelTokenizerConfig, wordLevelTokenizerJson } from "@seal/gpu/tokenizer/WordLevel"
import type { WordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import { lengthBucketedPass, paddedTokens } from "@seal/gpu/train/LengthBuckets"
import { type TokenizedExample, tokenizeExample } from "@seal/gpu/train/Loss"
import type { PlannedStep, StepProgress } from "@seal/gpu/train/Trainer"
import { trainFull, TrainingError } from "@seal/gpu/train/Trainer"
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
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

const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const PositiveNumber = Schema.Number.pipe(Schema.positive())

export const PretrainModel = Schema.Struct({
  hiddenSize: Schema.optionalWith(PositiveInt, { default: () => 128 }),
  numLayers: Schema.optionalWith(PositiveInt, { default: () => 4 }),
  numHeads: Schema.optionalWith(PositiveInt, { default: () => 4 }),
  intermediateSize: Schema.optionalWith(PositiveInt, { default: () => 384 }),
  /** Context length; the default corpus's longest document is 120 tokens. */
  maxPositions: Schema.optionalWith(PositiveInt, { default: () => 128 }),
  ropeTheta: Schema.optionalWith(PositiveNumber, { default: () => 10000 })
}).pipe(
  Schema.filter((m) => m.hiddenSize % m.numHeads === 0 || "hiddenSize must be a multiple of numHeads"),
  Schema.filter((m) => (m.hiddenSize / m.numHeads) % 2 === 0 || "hiddenSize / numHeads must be even (RoPE)")
).annotations({ identifier: "PretrainModel" })

export const PretrainTraining = Schema.Struct({
  /** Passes over the copy-first warm-up part, before the main part. */
  warmupPasses: Schema.optionalWith(NonNegativeInt, { default: () => probedSchedule.warmupPasses }),
  mainPasses: Schema.optionalWith(NonNegativeInt, { default: () => probedSchedule.mainPasses }),
  /** Documents per optimizer step. */
  batchDocuments: Schema.optionalWith(PositiveInt, { default: () => probedSchedule.batchDocuments }),
  /** Padded tokens per micro-batch: bounds memory, not the result. */
  microBatchTokens: Schema.optionalWith(PositiveInt, { default: () => 2048 }),
  learningRate: Schema.optionalWith(PositiveNumber, { default: () => probedSchedule.learningRate }),
  warmupSteps: Schema.optionalWith(NonNegativeInt, { default: () => probedSchedule.warmupSteps }),
  /** Cosine decay floor as a share of the peak learning rate. */
  minLearningRateRatio: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), {
    default: () => probedSchedule.minLearningRateRatio
  }),
  weightDecay: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), {
    default: () => probedSchedule.weightDecay
  }),
  beta1: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), { default: () => probedSchedule.betas[0] }),
  beta2: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), { default: () => probedSchedule.betas[1] }),
  gradientClip: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), {
    default: () => probedSchedule.gradientClip
  }),
  /** Optimizer steps between checkpoints (the most a kill can lose). */
  checkpointEverySteps: Schema.optionalWith(PositiveInt, { default: () => 50 })
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
  seed: Schema.optionalWith(NonNegativeInt, { default: () => 0 })
}).annotations({ identifier: "PretrainConfig" })
export type PretrainConfig = typeof PretrainConfig.Type
export type PretrainConfigEncoded = typeof PretrainConfig.Encoded

/** Pretraining could not start or go on; `field` names the config field or file at fault. */
export class PretrainError extends Data.TaggedError("PretrainError")<{
  readonly reason: "InvalidConfig" | "OutputExists" | "NotARun" | "DocumentTooLong"
  readonly field?: string
  readonly detail: string
}> {
  override get message(): string {
    return this.field === undefined ? this.detail : `${this.field}: ${this.detail}`
  }
}

export const decodePretrainConfig = (input: unknown, source = "config"): Either.Either<PretrainConfig, PretrainError> =>
  // Excess keys are errors: a misspelt section would otherwise silently train the defaults.
  Schema.decodeUnknownEither(PretrainConfig, { onExcessProperty: "error" })(input).pipe(
    Either.mapLeft((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      const path = issue === undefined ? "" : issue.path.map(String).join(".")
      return new PretrainError({
        reason: "InvalidConfig",
        field: path === "" ? source : `${source}: ${path}`,
        detail: issue?.message ?? error.message
      })
    })
  )

/** The base model's shape for a world's tokenizer. */
export const pretrainModelConfig = (config: PretrainConfig, vocabSize: number): ModelConfig => ({
  architecture: "llama",
  vocabSize,
  hiddenSize: config.model.hiddenSize,
  intermediateSize: config.model.intermediateSize,
  numLayers: config.model.numLayers,
  numHeads: config.model.numHeads,
  numKvHeads: config.model.numHeads,
  headDim: config.model.hiddenSize / config.model.numHeads,
  maxPositions: config.model.maxPositions,
  rmsNormEps: 1e-5,
  ropeTheta: config.model.ropeTheta,
  tieEmbeddings: true,
  attentionBias: false
})

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
  const modelConfig = pretrainModelConfig(config, tokenizer.vocabSize)
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

// ---------------------------------------------------------------------------------------------
// The run directory

export const runFiles = {
  config: "pretrain-config.json",
  progress: "progress.jsonl",
  latest: "latest.json",
  checkpoints: "checkpoints",
  model: "model",
  optimizer: "optimizer.safetensors",
  provenance: "seal-world.json"
} as const

export interface PretrainProgress {
  /** Steps done of `totalSteps`. */
  readonly step: number
  readonly totalSteps: number
  /** Mean loss over the window just trained. */
  readonly loss: number
  readonly learningRate: number
  readonly tokensPerSecond: number
  /** Seconds this process has trained. */
  readonly seconds: number
}

export interface PretrainOptions {
  /** The run directory: new (or empty) for a fresh run, an existing run with `resume`. */
  readonly dir: string
  /** Required for a fresh run; ignored (read from the run) when resuming. */
  readonly config?: PretrainConfig | undefined
  readonly resume?: boolean | undefined
  /** Stop after this many steps in this process (a test's stand-in for a kill); the run stays resumable. */
  readonly stopAfterSteps?: number | undefined
  readonly onProgress?: ((progress: PretrainProgress) => Effect.Effect<void>) | undefined
}

export interface PretrainResult {
  readonly dir: string
  /** The final model directory, when the run finished. */
  readonly modelDir: string | undefined
  readonly stepsDone: number
  readonly totalSteps: number
  readonly setup: PretrainSetup
}

const ioError = (file: string) => (e: unknown) =>
  new CheckpointError({ file, reason: "Io", detail: e instanceof Error ? e.message : String(e) })

const readJson = (file: string) =>
  Effect.tryPromise({ try: () => Fs.promises.readFile(file, "utf8"), catch: ioError(file) }).pipe(
    Effect.flatMap((text) => parseJsonFile(file, text))
  )

const json = (value: unknown) => JSON.stringify(value, null, 2) + "\n"

const checkpointName = (step: number) => `step-${String(step).padStart(6, "0")}`

const Latest = Schema.Struct({ step: NonNegativeInt, checkpoint: Schema.String })

/** Whether `dir` is absent or an empty directory. */
const isFreshDir = (dir: string) =>
  Effect.promise(() => Fs.promises.readdir(dir).then((entries) => entries.length === 0, () => true))

interface RunState {
  readonly weights: WeightMap
  readonly moments: WeightMap | undefined
  readonly step: number
}

/** Reads the run's config and its last complete checkpoint (none: step 0, fresh weights). */
const openRun = (dir: string) =>
  Effect.gen(function*() {
    const configFile = Path.join(dir, runFiles.config)
    const exists = yield* Effect.promise(() => Fs.promises.access(configFile).then(() => true, () => false))
    if (!exists) {
      return yield* new PretrainError({
        reason: "NotARun",
        field: configFile,
        detail: "no pretraining run here to resume"
      })
    }
    const config = yield* readJson(configFile).pipe(
      Effect.flatMap((j) => decodePretrainConfig(j, configFile))
    )
    const latestFile = Path.join(dir, runFiles.latest)
    const hasLatest = yield* Effect.promise(() => Fs.promises.access(latestFile).then(() => true, () => false))
    if (!hasLatest) return { config, latest: undefined }
    const latest = yield* readJson(latestFile).pipe(
      Effect.flatMap((j) =>
        Schema.decodeUnknown(Latest)(j).pipe(
          Effect.mapError((e) => new CheckpointError({ file: latestFile, reason: "Malformed", detail: e.message }))
        )
      )
    )
    return { config, latest }
  })

const loadState = (dir: string, latest: typeof Latest.Type) =>
  Effect.gen(function*() {
    const ckpt = Path.join(dir, runFiles.checkpoints, latest.checkpoint)
    const loaded = yield* Checkpoint.loadCheckpoint(ckpt)
    const moments = yield* readSafetensors(Path.join(ckpt, runFiles.optimizer))
    return { weights: loaded.weights, moments, step: latest.step } satisfies RunState
  })

/** Keeps the progress lines of steps `<= step` (a killed run may have logged steps it lost). */
const trimProgress = (file: string, step: number) =>
  Effect.gen(function*() {
    const text = yield* Effect.promise(() => Fs.promises.readFile(file, "utf8").catch(() => ""))
    const kept = text.split("\n").filter((line) => {
      if (line.trim() === "") return false
      try {
        return (JSON.parse(line) as { step: number }).step <= step
      } catch {
        return false
      }
    })
    yield* writeFileAtomic(file, kept.map((l) => l + "\n").join(""))
  })

const modelFiles = (setup: PretrainSetup, weights: WeightMap, extraFiles?: Record<string, unknown>) => ({
  config: setup.modelConfig,
  weights,
  tokenizerJson: wordLevelTokenizerJson(setup.tokenizer),
  tokenizerConfig: wordLevelTokenizerConfig(setup.tokenizer),
  bosId: setup.tokenizer.bosId,
  eosId: setup.tokenizer.eosId,
  extraFiles
})

/**
 * Runs (or resumes) pretraining in `options.dir`. Fails with `PretrainError` before any work for a
 * bad config, an occupied directory or a missing run; with `TrainingError` or `CheckpointError`
 * during it, leaving the last complete checkpoint in place.
 */
export const pretrain = (
  options: PretrainOptions
): Effect.Effect<PretrainResult, PretrainError | TrainingError | CheckpointError> =>
  Effect.gen(function*() {
    const dir = options.dir
    let config: PretrainConfig
    let latest: typeof Latest.Type | undefined
    if (options.resume === true) {
      const run = yield* openRun(dir)
      config = run.config
      latest = run.latest
    } else {
      if (options.config === undefined) {
        return yield* new PretrainError({ reason: "InvalidConfig", detail: "a fresh run needs a config" })
      }
      config = options.config
      if (!(yield* isFreshDir(dir))) {
        return yield* new PretrainError({
          reason: "OutputExists",
          field: dir,
          detail: "the output directory is not empty; pass --resume to continue a run there, or choose a new one"
        })
      }
    }
    const setup = yield* preparePretraining(config)
    const totalSteps = setup.plan.length
    yield* Effect.tryPromise({
      try: () => Fs.promises.mkdir(Path.join(dir, runFiles.checkpoints), { recursive: true }),
      catch: ioError(dir)
    })
    if (options.resume !== true) yield* writeFileAtomic(Path.join(dir, runFiles.config), json(config))
    const progressFile = Path.join(dir, runFiles.progress)
    let state: RunState = latest === undefined
      ? { weights: initWeights(setup.modelConfig, config.seed), moments: undefined, step: 0 }
      : yield* loadState(dir, latest)
    yield* trimProgress(progressFile, state.step)

    const t = config.training
    const trainOptions = {
      learningRate: t.learningRate,
      plan: setup.plan,
      schedule: {
        kind: "cosine" as const,
        warmupSteps: t.warmupSteps,
        minLearningRate: t.learningRate * t.minLearningRateRatio
      },
      weightDecay: t.weightDecay,
      beta1: t.beta1,
      beta2: t.beta2,
      maxGradNorm: t.gradientClip,
      padId: setup.tokenizer.padId ?? 0
    }
    const stopAt = options.stopAfterSteps === undefined
      ? totalSteps
      : Math.min(totalSteps, state.step + options.stopAfterSteps)
    const started = performance.now()
    while (state.step < stopAt) {
      const endStep = Math.min(stopAt, state.step + t.checkpointEverySteps)
      const lines: Array<string> = []
      const onStep = (p: StepProgress) =>
        lines.push(JSON.stringify({
          step: p.step,
          epoch: p.epoch,
          loss: p.loss,
          gradNorm: p.gradNorm,
          learningRate: p.learningRate,
          labelTokens: p.labelTokens
        }))
      const current = state
      const result = yield* Effect.try({
        try: () =>
          trainFull(setup.modelConfig, current.weights, setup.examples, {
            ...trainOptions,
            startStep: current.step,
            endStep,
            moments: current.moments,
            onStep
          }),
        catch: (e) => e instanceof TrainingError ? e : new TrainingError({ reason: "Backend", detail: String(e) })
      })
      state = { weights: result.weights, moments: result.moments, step: result.nextStep }

      // Checkpoint: the directory first, then the progress lines, then latest.json, which is what
      // makes it the one a resume starts from; the previous checkpoint goes last.
      const name = checkpointName(state.step)
      const ckpt = Path.join(dir, runFiles.checkpoints, name)
      yield* writeHfDirectory(ckpt, modelFiles(setup, state.weights))
      yield* writeSafetensors(Path.join(ckpt, runFiles.optimizer), state.moments!, { step: String(state.step) })
      yield* Effect.tryPromise({
        try: () => Fs.promises.appendFile(progressFile, lines.map((l) => l + "\n").join("")),
        catch: ioError(progressFile)
      })
      latest = { step: state.step, checkpoint: name }
      yield* writeFileAtomic(Path.join(dir, runFiles.latest), json(latest))
      // Every other checkpoint goes, including one a kill left between latest.json and this.
      const checkpointsDir = Path.join(dir, runFiles.checkpoints)
      const stale = yield* Effect.promise(() => Fs.promises.readdir(checkpointsDir).catch(() => [] as Array<string>))
      for (const other of stale.filter((entry) => entry !== name)) {
        yield* Effect.promise(() => Fs.promises.rm(Path.join(checkpointsDir, other), { recursive: true, force: true }))
      }
      if (options.onProgress !== undefined) {
        yield* options.onProgress({
          step: state.step,
          totalSteps,
          loss: result.losses.reduce((a, b) => a + b, 0) / Math.max(1, result.losses.length),
          learningRate: result.learningRates[result.learningRates.length - 1] ?? 0,
          tokensPerSecond: result.tokensPerSecond,
          seconds: (performance.now() - started) / 1000
        })
      }
    }

    let modelDir: string | undefined
    if (state.step >= totalSteps) {
      modelDir = Path.join(dir, runFiles.model)
      yield* writeHfDirectory(
        modelDir,
        modelFiles(setup, state.weights, {
          [runFiles.provenance]: {
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
      )
    }
    return { dir, modelDir, stepsDone: state.step, totalSteps, setup }
  })
