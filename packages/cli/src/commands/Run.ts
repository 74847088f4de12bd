import { Command, Options } from "@effect/cli"
import * as RunDirectory from "@seal/core/RunDirectory"
import { LanguageModel, LoraTrainer, TensorRuntime } from "@seal/gpu"
import * as GRPO from "@seal/rl/GRPO"
import { type Optimizer, type RoundMetrics, roundResult } from "@seal/rl/Optimizer"
import * as ReSTEM from "@seal/rl/ReSTEM"
import * as Runner from "@seal/rl/Runner"
import type { EvaluationReport, MethodRow } from "@seal/tasks/knowledge/Evaluation"
import { evaluateKnowledge } from "@seal/tasks/knowledge/Evaluation"
import * as KnowledgeReward from "@seal/tasks/knowledge/KnowledgeReward"
import * as LoraPolicy from "@seal/tasks/LoraPolicy"
import { worldOfModel } from "@seal/tasks/world/WorldModel"
import { worldEvaluationContexts, worldFormat } from "@seal/tasks/world/WorldTask"
import { Console, Effect, Layer, Option, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import {
  type ArcExperimentConfig,
  arcPreset,
  type ArcPresetName,
  arcPresetNames,
  decodeArcExperiment
} from "../ArcExperiment.js"
import { bundledWorldModelPath } from "../Defaults.js"
import { ConfigError, decodeExperiment, ExperimentConfig, preset, presetNames } from "../Experiment.js"
import { executeArc, resolveArc } from "./RunArc.js"
import { backendOption, runEnvironment, runtimeLayer } from "./Shared.js"

const options = {
  preset: Options.choice("preset", [...presetNames, ...arcPresetNames]).pipe(
    Options.withDescription(
      "knowledge-tiny (tests, ~2 min), knowledge-demo (the default, ~10 min), arc-tiny (tests) or arc-demo (few-shot ARC)"
    ),
    Options.withDefault("knowledge-demo" as const)
  ),
  config: Options.text("config").pipe(
    Options.withDescription("A JSON experiment config instead of a preset"),
    Options.optional
  ),
  optimizer: Options.choice("optimizer", ["rest-em", "grpo"]).pipe(
    Options.withDescription("Override the preset's optimizer"),
    Options.optional
  ),
  seed: Options.integer("seed").pipe(
    Options.withDescription("Seeds everything in the run (default 0)"),
    Options.optional
  ),
  out: Options.text("out").pipe(
    Options.withDescription("Run directory to create (default: runs/run-<preset>-<time>); must be new"),
    Options.optional
  ),
  resume: Options.text("resume").pipe(
    Options.withDescription("Continue the run in this directory where it stopped"),
    Options.optional
  ),
  backend: backendOption,
  workers: Options.integer("workers").pipe(
    Options.withDescription(
      "ARC: worker threads for test-time training (default: one per core up to 4 on wasm/cpu, else 1); results do not depend on it"
    ),
    Options.optional
  )
}

type Args = Command.Command.ParseConfig<typeof options>

const SavedRun = Schema.Struct({ experiment: Schema.Unknown, seed: Schema.Int })

/** A resumed run keeps its own config, seed and directory. */
const checkResumeArgs = (args: Args) =>
  Option.isSome(args.config) || Option.isSome(args.out) || Option.isSome(args.optimizer) || Option.isSome(args.seed)
    ? Effect.fail(
      new ConfigError({
        source: "--resume",
        field: "",
        detail: "a resumed run keeps its own config, seed and directory; drop --config, --out, --optimizer and --seed"
      })
    )
    : Effect.void

const checkSeed = (args: Args) => {
  const seed = Option.getOrElse(args.seed, () => 0)
  return Number.isInteger(seed) && seed >= 0
    ? Effect.succeed(seed)
    : Effect.fail(new ConfigError({ source: "--seed", field: "", detail: `must be an integer >= 0, got ${seed}` }))
}

const isArcInput = (json: unknown) =>
  typeof json === "object" && json !== null && (json as { task?: unknown }).task === "arc"

const isArcPreset = (name: string): name is ArcPresetName => (arcPresetNames as ReadonlyArray<string>).includes(name)

/** What the arguments name, read once: a resumed run's saved experiment, a config file or a preset. */
interface Input {
  readonly source: string
  /** The experiment as JSON; undefined for a preset. */
  readonly json: unknown
  readonly resumed: { readonly dir: string; readonly seed: number } | undefined
}

const readInput = (args: Args): Effect.Effect<Input, ConfigError | RunDirectory.RunDirectoryError> =>
  Effect.gen(function*() {
    if (Option.isSome(args.resume)) {
      yield* checkResumeArgs(args)
      const file = Path.join(args.resume.value, "config.json")
      const saved = yield* RunDirectory.readJson(file).pipe(
        Effect.flatMap((j) =>
          Schema.decodeUnknown(SavedRun)(j).pipe(
            Effect.mapError((e) => new ConfigError({ source: file, field: "", detail: e.message }))
          )
        )
      )
      return { source: file, json: saved.experiment, resumed: { dir: args.resume.value, seed: saved.seed } }
    }
    if (Option.isSome(args.config)) {
      return { source: args.config.value, json: yield* RunDirectory.readJson(args.config.value), resumed: undefined }
    }
    return { source: `preset ${args.preset}`, json: undefined, resumed: undefined }
  })

/** An ARC experiment: an ARC preset, a config with `"task": "arc"`, or a resumed ARC run. */
const isArcRun = (args: Args, input: Input) =>
  input.json === undefined ? isArcPreset(args.preset) : isArcInput(input.json)

/** The seed and directory: a resumed run's own, or from the flags. */
const seedAndDir = (args: Args, input: Input, name: string) =>
  Effect.gen(function*() {
    if (input.resumed !== undefined) return input.resumed
    const seed = yield* checkSeed(args)
    const dir = Option.getOrElse(
      args.out,
      () => Path.join("runs", RunDirectory.timestampedName(`run-${name}-s${seed}`))
    )
    return { seed, dir }
  })

/** Everything an ARC run checks before any work. */
const resolveArcInput = (args: Args, input: Input) =>
  Effect.gen(function*() {
    let experiment: ArcExperimentConfig = input.json === undefined
      ? arcPreset(args.preset as ArcPresetName)
      : yield* decodeArcExperiment(input.json, input.source)
    if (Option.isSome(args.optimizer)) experiment = { ...experiment, optimizer: args.optimizer.value }
    const { seed, dir } = yield* seedAndDir(args, input, experiment.name)
    return yield* resolveArc(experiment, seed, dir, input.source)
  })

/** Everything checked before any work: the config, the model's world, the split sizes. */
const resolve = (args: Args, input: Input) =>
  Effect.gen(function*() {
    let experiment: ExperimentConfig = input.json === undefined
      ? preset(args.preset as typeof presetNames[number])
      : yield* decodeExperiment(input.json, input.source)
    if (Option.isSome(args.optimizer)) experiment = { ...experiment, optimizer: args.optimizer.value }
    const { seed, dir } = yield* seedAndDir(args, input, experiment.name)
    const modelDir = experiment.model ?? bundledWorldModelPath
    const { world } = yield* worldOfModel(modelDir)
    const sizes = [
      ["heldOutContexts", experiment.heldOutContexts, world.entities.heldOut.length],
      ["rlContexts", experiment.rlContexts, world.entities.rl.length]
    ] as const
    for (const [field, wanted, available] of sizes) {
      if (wanted > available) {
        return yield* new ConfigError({
          source: Option.getOrElse(args.config, () => `preset ${experiment.name}`),
          field,
          detail: `${wanted} asked, but the model's world has ${available}`
        })
      }
    }
    const generatorDir = experiment.generatorModel ?? modelDir
    if (generatorDir !== modelDir) {
      const generator = yield* worldOfModel(generatorDir)
      const same = JSON.stringify([generator.config.world, generator.config.worldSeed]) ===
        JSON.stringify([world.config, world.seed])
      if (!same) {
        return yield* new ConfigError({
          source: Option.getOrElse(args.config, () => `preset ${experiment.name}`),
          field: "generatorModel",
          detail: `${generatorDir} was trained on another world than the learner ${modelDir}`
        })
      }
    }
    return { experiment, seed, dir, modelDir, generatorDir, world }
  })

type Resolved = Effect.Effect.Success<ReturnType<typeof resolve>>

const optimizerLayer = (experiment: ExperimentConfig): Layer.Layer<Optimizer> =>
  experiment.optimizer === "grpo" ? GRPO.layer(experiment.grpo) : ReSTEM.layer(experiment.restEm)

/** A table row without its timing: results.json must not depend on how fast the machine was. */
const deterministicRow = ({ secondsPerInnerLoop: _, ...row }: MethodRow, method?: string) => ({
  ...row,
  ...(method === undefined ? {} : { method })
})

const timingOf = ({ rewardMean: _a, rewardStd: _b, ...m }: RoundMetrics) => m

const execute = (r: Resolved, resume: boolean, backendChoice: TensorRuntime.BackendChoice) =>
  Effect.gen(function*() {
    const { experiment, seed, dir, modelDir, generatorDir, world } = r
    if (!resume) {
      yield* RunDirectory.createFresh(dir)
      yield* RunDirectory.writeJson(Path.join(dir, "config.json"), {
        experiment: Schema.encodeSync(ExperimentConfig)(experiment),
        seed,
        model: modelDir,
        generatorModel: generatorDir
      })
    }
    yield* Console.error(
      `run: ${experiment.name}, ${experiment.optimizer}, ${experiment.rounds} round(s), seed ${seed}, directory ${dir}`
    )
    const begin = performance.now()
    const format = worldFormat(world)
    const heldOut = worldEvaluationContexts(world, "heldOut", experiment.heldOutContexts)
    const rl = worldEvaluationContexts(world, "rl", experiment.rlContexts)
    // Two roles: the learner (inner loop, rewards, evaluation) and the generator (self-edits,
    // updated by RL). One model serves both unless the experiment names a generator; layers are
    // memoised by reference, so the shared case loads the weights once.
    const learner = LoraTrainer.layer.pipe(Layer.provideMerge(LanguageModel.layer(modelDir)))
    const generator = generatorDir === modelDir
      ? learner
      : LoraTrainer.layer.pipe(Layer.provideMerge(LanguageModel.layer(generatorDir)))
    const layers = Layer.mergeAll(
      optimizerLayer(experiment),
      LoraPolicy.layer(experiment.policy).pipe(Layer.provide(generator)),
      KnowledgeReward.layer({
        contexts: new Map(rl.map((c) => [c.id, c.context])),
        format,
        innerLoop: experiment.evaluation.innerLoop
      })
    ).pipe(
      Layer.provideMerge(learner),
      Layer.provideMerge(runtimeLayer(backendChoice))
    )
    return yield* Effect.gen(function*() {
      const runtime = yield* TensorRuntime.TensorRuntime
      const elapsed = () => `${((performance.now() - begin) / 1000).toFixed(0)} s`
      // The fixed rows, once per run (they do not depend on the generator being trained).
      const fixedFile = Path.join(dir, "baselines.json")
      const fixed = Fs.existsSync(fixedFile)
        ? ((yield* RunDirectory.readJson(fixedFile)) as EvaluationReport)
        : yield* evaluateKnowledge(
          heldOut,
          format,
          { ...experiment.evaluation, methods: ["base", "passage-only", "oracle-self-edit"] },
          seed
        ).pipe(Effect.tap((report) => RunDirectory.writeJson(fixedFile, report)))
      yield* Console.error(`run: baselines done (${elapsed()})`)
      const outcome = yield* Runner.run({
        dir,
        rounds: experiment.rounds,
        seed,
        contexts: rl.map((c) => ({ id: c.id, prompt: c.selfEditPrompt })),
        contextsPerRound: experiment.contextsPerRound,
        evaluate: (round) =>
          evaluateKnowledge(heldOut, format, { ...experiment.evaluation, methods: ["self-edit"] }, seed).pipe(
            Effect.tap((report) =>
              Console.error(
                `run: held-out self-edits after round ${round}: ${
                  (100 * report.table[0]!.accuracy).toFixed(1)
                }% (${elapsed()})`
              )
            )
          ),
        onRound: (m) =>
          Console.error(
            `run: round ${m.round}: reward ${m.rewardMean.toFixed(3)} ± ${m.rewardStd.toFixed(3)}, kept ${
              (100 * m.acceptance).toFixed(0)
            }%, tied groups ${(100 * m.zeroVarianceGroups).toFixed(0)}%, ${
              m.selfEditTokens.toFixed(1)
            } tokens/self-edit, ` +
              `${m.secondsPerEvaluation.toFixed(2)} s/evaluation (${elapsed()})`
          )
      })
      const row = (report: EvaluationReport, method: string) => report.table.find((t) => t.method === method)
      const table = [
        deterministicRow(row(fixed, "base")!),
        deterministicRow(row(fixed, "passage-only")!),
        deterministicRow(outcome.evaluations[0]!.table[0]!, "self-edit"),
        ...outcome.evaluations.slice(1).map((e, i) => deterministicRow(e.table[0]!, `seal-round-${i + 1}`)),
        deterministicRow(row(fixed, "oracle-self-edit")!)
      ]
      const results = {
        command: "run",
        experiment: experiment.name,
        optimizer: experiment.optimizer,
        seed,
        heldOut: heldOut.map((c) => c.id),
        table,
        rounds: outcome.rounds.map(roundResult)
      }
      yield* RunDirectory.writeJson(Path.join(dir, "results.json"), results)
      yield* RunDirectory.writeJson(Path.join(dir, "timings.json"), {
        ...runEnvironment(runtime.backend, begin),
        secondsPerInnerLoop: Object.fromEntries([
          ...fixed.table.map((t) => [t.method, t.secondsPerInnerLoop] as const),
          ...outcome.evaluations.map((e, i) =>
            [i === 0 ? "self-edit" : `seal-round-${i}`, e.table[0]!.secondsPerInnerLoop] as const
          )
        ]),
        rounds: outcome.rounds.map(timingOf)
      })
      yield* Console.log(
        ["method              accuracy   std"]
          .concat(table.map((t) =>
            `${t.method.padEnd(20)}${(100 * t.accuracy).toFixed(1).padStart(6)}%  ${
              (100 * t.std).toFixed(1).padStart(5)
            }%`
          ))
          .join("\n")
      )
      yield* Console.log(`results: ${Path.join(dir, "results.json")}`)
    }).pipe(Effect.provide(layers))
  })

export const runCommand = Command.make("run", options, (args) =>
  Effect.gen(function*() {
    const input = yield* readInput(args)
    if (isArcRun(args, input)) {
      if (Option.isSome(args.workers) && !(Number.isInteger(args.workers.value) && args.workers.value >= 1)) {
        return yield* new ConfigError({
          source: "--workers",
          field: "",
          detail: `must be an integer >= 1, got ${args.workers.value}`
        })
      }
      return yield* executeArc(
        yield* resolveArcInput(args, input),
        Option.isSome(args.resume),
        args.backend,
        Option.getOrUndefined(args.workers)
      )
    }
    if (Option.isSome(args.workers)) {
      return yield* new ConfigError({
        source: "--workers",
        field: "",
        detail: "only ARC runs train in worker threads; knowledge runs batch their adapters in one process"
      })
    }
    const resolved = yield* resolve(args, input)
    yield* execute(resolved, Option.isSome(args.resume), args.backend)
  })).pipe(
    Command.withDescription(
      "SEAL's outer loop: baselines, self-edits before RL and after each round, on held-out contexts (the knowledge world's people, or ARC tasks with an arc preset)"
    )
  )
