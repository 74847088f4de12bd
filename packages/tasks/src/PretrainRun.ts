/**
 * A resumable pretraining run of a small Llama from scratch, whatever the data: the synthetic
 * world (`world/Pretrain.ts`) and ARC (`arc/ArcPretrain.ts`) each say how a config becomes
 * tokenized examples and a plan of optimizer steps; this module runs the plan.
 *
 * A run lives in its own directory:
 *
 *     pretrain-config.json      the resolved config (what `--resume` reads back)
 *     progress.jsonl            one line per optimizer step (loss, learning rate, gradient norm)
 *     checkpoints/step-NNNNNN/  a Hugging Face model directory plus optimizer.safetensors
 *     latest.json               which checkpoint is complete (written last, atomically)
 *     model/                    the final model, with a provenance file (config, seeds, statistics)
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
import type { ResolvedBackend } from "@seal/gpu/TensorRuntime"
import { wordLevelTokenizerConfig, wordLevelTokenizerJson } from "@seal/gpu/tokenizer/WordLevel"
import type { WordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import { dataParallelStepTrainer, localStepTrainer, type PortableTrainOptions } from "@seal/gpu/train/DataParallel"
import type { TokenizedExample } from "@seal/gpu/train/Loss"
import type { PlannedStep, StepProgress, TrainingError } from "@seal/gpu/train/Trainer"
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"

const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const PositiveNumber = Schema.Number.pipe(Schema.positive())

/** The shape of the Llama trained from scratch; `maxPositions` is set by each domain's default. */
export const pretrainModelSchema = (defaults: { readonly maxPositions: number }) =>
  Schema.Struct({
    hiddenSize: Schema.optionalWith(PositiveInt, { default: () => 128 }),
    numLayers: Schema.optionalWith(PositiveInt, { default: () => 4 }),
    numHeads: Schema.optionalWith(PositiveInt, { default: () => 4 }),
    intermediateSize: Schema.optionalWith(PositiveInt, { default: () => 384 }),
    /** Context length: every pretraining document must fit. */
    maxPositions: Schema.optionalWith(PositiveInt, { default: () => defaults.maxPositions }),
    ropeTheta: Schema.optionalWith(PositiveNumber, { default: () => 10000 })
  }).pipe(
    Schema.filter((m) => m.hiddenSize % m.numHeads === 0 || "hiddenSize must be a multiple of numHeads"),
    Schema.filter((m) => (m.hiddenSize / m.numHeads) % 2 === 0 || "hiddenSize / numHeads must be even (RoPE)")
  ).annotations({ identifier: "PretrainModel" })
export type PretrainModel = ReturnType<typeof pretrainModelSchema>["Type"]

/** The optimizer settings of a run (AdamW, linear warm-up then cosine decay). */
export interface OptimizerSettings {
  readonly learningRate: number
  readonly warmupSteps: number
  /** Cosine decay floor as a share of the peak learning rate. */
  readonly minLearningRateRatio: number
  readonly weightDecay: number
  readonly beta1: number
  readonly beta2: number
  readonly gradientClip: number
  /** Optimizer steps between checkpoints (the most a kill can lose). */
  readonly checkpointEverySteps: number
}

/** `OptimizerSettings` as schema fields, with each domain's measured defaults. */
export const optimizerSettingsFields = (defaults: Omit<OptimizerSettings, "checkpointEverySteps">) => ({
  learningRate: Schema.optionalWith(PositiveNumber, { default: () => defaults.learningRate }),
  warmupSteps: Schema.optionalWith(NonNegativeInt, { default: () => defaults.warmupSteps }),
  minLearningRateRatio: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), {
    default: () => defaults.minLearningRateRatio
  }),
  weightDecay: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => defaults.weightDecay }),
  beta1: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), { default: () => defaults.beta1 }),
  beta2: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 1)), { default: () => defaults.beta2 }),
  gradientClip: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => defaults.gradientClip }),
  checkpointEverySteps: Schema.optionalWith(PositiveInt, { default: () => 50 })
})

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

/**
 * Decodes a pretraining config, naming the first field at fault. Excess keys are errors: a
 * misspelt section would otherwise silently train the defaults.
 */
export const decodeStrict =
  <A, I>(schema: Schema.Schema<A, I>) => (input: unknown, source = "config"): Either.Either<A, PretrainError> =>
    Schema.decodeUnknownEither(schema, { onExcessProperty: "error" })(input).pipe(
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

/** A Llama of `model`'s shape over a vocabulary of `vocabSize` (tied embeddings, no biases). */
export const pretrainModelConfig = (model: PretrainModel, vocabSize: number): ModelConfig => ({
  architecture: "llama",
  vocabSize,
  hiddenSize: model.hiddenSize,
  intermediateSize: model.intermediateSize,
  numLayers: model.numLayers,
  numHeads: model.numHeads,
  numKvHeads: model.numHeads,
  headDim: model.hiddenSize / model.numHeads,
  maxPositions: model.maxPositions,
  rmsNormEps: 1e-5,
  ropeTheta: model.ropeTheta,
  tieEmbeddings: true,
  attentionBias: false
})

/** What a run trains: derived deterministically from its config. */
export interface PretrainData {
  readonly tokenizer: WordLevelTokenizer
  readonly modelConfig: ModelConfig
  readonly examples: ReadonlyArray<TokenizedExample>
  readonly plan: ReadonlyArray<PlannedStep>
}

/** How one domain's config becomes a run. */
export interface PretrainSpec<C, S extends PretrainData> {
  readonly decodeConfig: (input: unknown, source: string) => Either.Either<C, PretrainError>
  readonly prepare: (config: C) => Either.Either<S, PretrainError>
  readonly optimizer: (config: C) => OptimizerSettings
  /** Seeds the initial weights. */
  readonly seed: (config: C) => number
  /** A model directory whose weights start the run instead of seeded random ones (continued pretraining). */
  readonly init: (config: C) => string | undefined
  /** The provenance file written into the final model directory: its name and content. */
  readonly provenance: (config: C, setup: S) => { readonly file: string; readonly content: unknown }
}

export const runFiles = {
  config: "pretrain-config.json",
  progress: "progress.jsonl",
  latest: "latest.json",
  checkpoints: "checkpoints",
  model: "model",
  optimizer: "optimizer.safetensors"
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
  /** Steps this process has trained (fewer than `step` in a resumed run): the pace for an estimate. */
  readonly stepsThisProcess: number
}

export interface PretrainOptions<C> {
  /** The run directory: new (or empty) for a fresh run, an existing run with `resume`. */
  readonly dir: string
  /** Required for a fresh run; ignored (read from the run) when resuming. */
  readonly config?: C | undefined
  readonly resume?: boolean | undefined
  /** Stop after this many steps in this process (a test's stand-in for a kill); the run stays resumable. */
  readonly stopAfterSteps?: number | undefined
  readonly onProgress?: ((progress: PretrainProgress) => Effect.Effect<void>) | undefined
  /** After every step (the step count), between checkpoints: a live view, and a test's probe. */
  readonly onStep?: ((step: number) => Effect.Effect<void>) | undefined
  /**
   * Data-parallel training over worker threads on `backend` (`DataParallel.ts`): the same
   * weights, bit for bit, as one process, so a run may resume with another count. Absent or one
   * worker: this process.
   */
  readonly parallel?: { readonly workers: number; readonly backend: ResolvedBackend } | undefined
}

export interface PretrainResult<S> {
  readonly dir: string
  /** The final model directory, when the run finished. */
  readonly modelDir: string | undefined
  readonly stepsDone: number
  readonly totalSteps: number
  readonly setup: S
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

const exists = (file: string) => Effect.promise(() => Fs.promises.access(file).then(() => true, () => false))

/** Whether `dir` is absent or an empty directory. */
const isFreshDir = (dir: string) =>
  Effect.promise(() => Fs.promises.readdir(dir).then((entries) => entries.length === 0, () => true))

interface RunState {
  readonly weights: WeightMap
  readonly moments: WeightMap | undefined
  readonly step: number
}

/** Reads the run's config and its last complete checkpoint (none: step 0, fresh weights). */
const openRun = <C>(dir: string, decodeConfig: (input: unknown, source: string) => Either.Either<C, PretrainError>) =>
  Effect.gen(function*() {
    const configFile = Path.join(dir, runFiles.config)
    if (!(yield* exists(configFile))) {
      return yield* new PretrainError({
        reason: "NotARun",
        field: configFile,
        detail: "no pretraining run here to resume"
      })
    }
    const config = yield* readJson(configFile).pipe(Effect.flatMap((j) => decodeConfig(j, configFile)))
    const latestFile = Path.join(dir, runFiles.latest)
    if (!(yield* exists(latestFile))) return { config, latest: undefined }
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

/** The shape a run's weights must have to continue from another model's. */
const shapeFields = [
  "architecture",
  "vocabSize",
  "hiddenSize",
  "intermediateSize",
  "numLayers",
  "numHeads",
  "numKvHeads",
  "headDim",
  "maxPositions",
  "tieEmbeddings",
  "attentionBias",
  "gridPositions"
] as const

/**
 * The weights of the model in `dir`, to continue pretraining from: it must have the run's shape
 * (a mismatch names the first field that differs), and its AdamW moments start from zero.
 */
const initialWeights = (dir: string, modelConfig: ModelConfig) =>
  Effect.gen(function*() {
    const loaded = yield* Checkpoint.loadCheckpoint(dir)
    for (const field of shapeFields) {
      const want = JSON.stringify(modelConfig[field])
      const have = JSON.stringify(loaded.config[field])
      if (want !== have) {
        return yield* new PretrainError({
          reason: "InvalidConfig",
          field: "init",
          detail: `${dir} has ${field} ${have ?? "unset"}, the run's model needs ${want ?? "unset"}`
        })
      }
    }
    return loaded.weights
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

const modelFiles = (setup: PretrainData, weights: WeightMap, extraFiles?: Record<string, unknown>) => ({
  config: setup.modelConfig,
  weights,
  tokenizerJson: wordLevelTokenizerJson(setup.tokenizer),
  tokenizerConfig: wordLevelTokenizerConfig(setup.tokenizer),
  bosId: setup.tokenizer.bosId,
  eosId: setup.tokenizer.eosId,
  extraFiles
})

/** `trainFull`'s options for a run's optimizer settings and plan: a cosine schedule after warm-up. */
export const pretrainTrainOptions = (t: OptimizerSettings, setup: PretrainData): PortableTrainOptions => ({
  learningRate: t.learningRate,
  plan: setup.plan,
  schedule: {
    kind: "cosine",
    warmupSteps: t.warmupSteps,
    minLearningRate: t.learningRate * t.minLearningRateRatio
  },
  weightDecay: t.weightDecay,
  beta1: t.beta1,
  beta2: t.beta2,
  maxGradNorm: t.gradientClip,
  padId: setup.tokenizer.padId ?? 0
})

/**
 * A macrotask boundary: Effect's own yields run as microtasks, and Node handles a signal only
 * when the event loop turns, so a loop of synchronous steps must come back to it explicitly.
 */
const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * Runs (or resumes) pretraining in `options.dir`. Fails with `PretrainError` before any work for a
 * bad config, an occupied directory or a missing run; with `TrainingError` or `CheckpointError`
 * during it, leaving the last complete checkpoint in place.
 */
export const runPretraining = <C, S extends PretrainData>(
  spec: PretrainSpec<C, S>,
  options: PretrainOptions<C>
): Effect.Effect<PretrainResult<S>, PretrainError | TrainingError | CheckpointError> =>
  Effect.scoped(Effect.gen(function*() {
    const dir = options.dir
    let config: C
    let latest: typeof Latest.Type | undefined
    if (options.resume === true) {
      const run = yield* openRun(dir, spec.decodeConfig)
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
    const setup = yield* spec.prepare(config)
    const totalSteps = setup.plan.length
    // Checked before the directory is touched: a wrong init leaves nothing behind.
    const initDir = spec.init(config)
    const initial = latest === undefined && initDir !== undefined
      ? yield* initialWeights(initDir, setup.modelConfig)
      : undefined
    yield* Effect.tryPromise({
      try: () => Fs.promises.mkdir(Path.join(dir, runFiles.checkpoints), { recursive: true }),
      catch: ioError(dir)
    })
    if (options.resume !== true) yield* writeFileAtomic(Path.join(dir, runFiles.config), json(config))
    const progressFile = Path.join(dir, runFiles.progress)
    let state: RunState = latest !== undefined
      ? yield* loadState(dir, latest)
      : { weights: initial ?? initWeights(setup.modelConfig, spec.seed(config)), moments: undefined, step: 0 }
    yield* trimProgress(progressFile, state.step)

    const t = spec.optimizer(config)
    const trainOptions = pretrainTrainOptions(t, setup)
    const stopAt = options.stopAfterSteps === undefined
      ? totalSteps
      : Math.min(totalSteps, state.step + options.stopAfterSteps)
    const started = performance.now()
    const firstStep = state.step
    const stepOptions = {
      config: setup.modelConfig,
      examples: setup.examples,
      options: trainOptions,
      initial: { weights: state.weights, moments: state.moments }
    }
    const trainer = options.parallel !== undefined && options.parallel.workers > 1
      ? yield* dataParallelStepTrainer({ ...stepOptions, ...options.parallel })
      : localStepTrainer(stepOptions)
    while (state.step < stopAt) {
      const endStep = Math.min(stopAt, state.step + t.checkpointEverySteps)
      // One step per call, coming back to the event loop between steps: a window is minutes of
      // synchronous work in this process, and a signal (Ctrl-C) is only handled, and the run
      // interrupted, between calls. Windows of one step take the same steps as one call (see
      // TrainOptions.startStep); the weights cross the host boundary once a step, a fraction of
      // a percent of its time.
      const steps: Array<StepProgress> = []
      let inputTokens = 0
      let trainSeconds = 0
      let step = state.step
      while (step < endStep) {
        const window = yield* trainer.train(step, step + 1)
        steps.push(...window.steps)
        inputTokens += window.inputTokens
        trainSeconds += window.seconds
        step = window.nextStep
        if (options.onStep !== undefined) yield* options.onStep(step)
        yield* yieldToEventLoop
      }
      const trained = yield* trainer.state
      state = { weights: trained.weights, moments: trained.moments, step }
      const lines = steps.map((p) =>
        JSON.stringify({
          step: p.step,
          epoch: p.epoch,
          loss: p.loss,
          gradNorm: p.gradNorm,
          learningRate: p.learningRate,
          labelTokens: p.labelTokens
        })
      )

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
          loss: steps.reduce((a, p) => a + p.loss, 0) / Math.max(1, steps.length),
          learningRate: steps[steps.length - 1]?.learningRate ?? 0,
          tokensPerSecond: trainSeconds > 0 ? inputTokens / trainSeconds : 0,
          seconds: (performance.now() - started) / 1000,
          stepsThisProcess: state.step - firstStep
        })
      }
    }

    let modelDir: string | undefined
    if (state.step >= totalSteps) {
      modelDir = Path.join(dir, runFiles.model)
      const provenance = spec.provenance(config, setup)
      yield* writeHfDirectory(modelDir, modelFiles(setup, state.weights, { [provenance.file]: provenance.content }))
    }
    return { dir, modelDir, stepsDone: state.step, totalSteps, setup }
  }))
