import { Command, Options } from "@effect/cli"
import * as RunDirectory from "@seal/core/RunDirectory"
import { CheckpointError } from "@seal/gpu/checkpoint/CheckpointError"
import * as LanguageModel from "@seal/gpu/LanguageModel"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import * as ArcPretrain from "@seal/tasks/arc/ArcPretrain"
import { loadArcSplits } from "@seal/tasks/arc/ArcSplits"
import type { PretrainError, PretrainProgress } from "@seal/tasks/PretrainRun"
import * as Pretrain from "@seal/tasks/world/Pretrain"
import { probeWorld } from "@seal/tasks/world/Probes"
import { Console, Effect, Either, Option } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { bundledDataPath } from "../Defaults.js"
import { backendOption, runtimeLayer } from "./Shared.js"

const options = {
  task: Options.choice("task", ["world", "arc"]).pipe(
    Options.withDescription(
      "What to pretrain on: the synthetic world (knowledge incorporation) or ARC training tasks (few-shot ARC)"
    ),
    Options.withDefault("world" as const)
  ),
  out: Options.text("out").pipe(
    Options.withDescription("New run directory (default: runs/pretrain-<task>-<time>); never overwritten"),
    Options.optional
  ),
  resume: Options.text("resume").pipe(
    Options.withDescription("Continue the run in this directory from its last checkpoint"),
    Options.optional
  ),
  config: Options.text("config").pipe(
    Options.withDescription("A JSON pretraining config (world, corpus, model, training, seeds); defaults otherwise"),
    Options.optional
  ),
  seed: Options.integer("seed").pipe(
    Options.withDescription("Seeds the initial weights and data order (overrides the config's seed)"),
    Options.optional
  ),
  init: Options.text("init").pipe(
    Options.withDescription(
      "Start from this model directory's weights instead of random ones (continued pretraining; overrides the config's init)"
    ),
    Options.optional
  ),
  backend: backendOption,
  workers: Options.integer("workers").pipe(
    Options.withDescription(
      "Data-parallel worker threads (default 1: this process; on 2 cores two workers are still slower than one process, see BENCHMARKS.md); the weights do not depend on it, so a run may resume with another count"
    ),
    Options.optional
  )
}

type Args = Command.Command.ParseConfig<typeof options>

const readConfig = <C>(
  file: Option.Option<string>,
  seed: Option.Option<number>,
  init: Option.Option<string>,
  decode: (input: unknown, source: string) => Either.Either<C, PretrainError>
) =>
  Effect.gen(function*() {
    let input: Record<string, unknown> = {}
    if (Option.isSome(file)) {
      const path = file.value
      const text = yield* Effect.tryPromise({
        try: () => Fs.promises.readFile(path, "utf8"),
        catch: () => new CheckpointError({ file: path, reason: "NotFound", detail: "cannot read the config file" })
      })
      const parsed = yield* Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: () => new CheckpointError({ file: path, reason: "Malformed", detail: "not JSON" })
      })
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        return yield* new Pretrain.PretrainError({ reason: "InvalidConfig", field: path, detail: "must be an object" })
      }
      input = parsed as Record<string, unknown>
    }
    if (Option.isSome(seed)) {
      if (!(Number.isInteger(seed.value) && seed.value >= 0)) {
        return yield* new Pretrain.PretrainError({
          reason: "InvalidConfig",
          field: "--seed",
          detail: `must be an integer >= 0, got ${seed.value}`
        })
      }
      input = { ...input, seed: seed.value }
    }
    if (Option.isSome(init)) input = { ...input, init: init.value }
    return yield* decode(input, Option.getOrElse(file, () => "config"))
  })

const printProgress = (p: PretrainProgress) => {
  const left = p.totalSteps - p.step
  // A resumed run's pace is this process's: its seconds over its own steps, not the run's.
  const perStep = p.stepsThisProcess > 0 ? p.seconds / p.stepsThisProcess : 0
  return Console.error(
    `step ${p.step}/${p.totalSteps}  loss ${p.loss.toFixed(4)}  lr ${p.learningRate.toExponential(2)}  ` +
      `${p.tokensPerSecond.toFixed(0)} tokens/s  ${p.seconds.toFixed(0)} s` +
      (perStep > 0 && left > 0
        ? `  (about ${Math.max(1, Math.round((left * perStep) / 60))} min left at this pace)`
        : "")
  )
}

/** `--workers` (default 1) threads on the backend this process resolved. */
const parallelOf = (args: Args) =>
  Effect.gen(function*() {
    const { backend } = yield* TensorRuntime.TensorRuntime
    const workers = Option.getOrElse(args.workers, () => 1)
    if (!(workers >= 1)) {
      return yield* new Pretrain.PretrainError({
        reason: "InvalidConfig",
        field: "--workers",
        detail: `must be an integer >= 1, got ${workers}`
      })
    }
    yield* Console.error(`pretrain: ${workers} worker thread${workers === 1 ? " (this process)" : "s"} on ${backend}`)
    return { workers, backend }
  })

const checkResumeArgs = (args: Args) =>
  Option.isSome(args.resume) &&
    (Option.isSome(args.config) || Option.isSome(args.seed) || Option.isSome(args.init) || Option.isSome(args.out))
    ? Effect.fail(
      new Pretrain.PretrainError({
        reason: "InvalidConfig",
        field: "--resume",
        detail: "a resumed run keeps its own config and directory; drop --config, --seed, --init and --out"
      })
    )
    : Effect.void

const runDirectory = (args: Args) =>
  Option.getOrElse(
    Option.orElse(args.resume, () => args.out),
    () => Path.join("runs", `pretrain-${args.task}-${new Date().toISOString().replace(/[:.]/g, "-")}`)
  )

/** ARC: the base model of few-shot ARC, pretrained on the pretraining split of the bundled data. */
const runArc = (args: Args) =>
  Effect.gen(function*() {
    yield* checkResumeArgs(args)
    const resume = Option.isSome(args.resume)
    const config = resume
      ? undefined
      : yield* readConfig(args.config, args.seed, args.init, ArcPretrain.decodeArcPretrainConfig)
    const dir = runDirectory(args)
    const splits = yield* loadArcSplits(bundledDataPath)
    yield* Console.error(`pretrain: ARC, run directory ${dir}${resume ? " (resuming)" : ""}`)
    const result = yield* ArcPretrain.pretrainArc(splits, {
      dir,
      config,
      resume,
      onProgress: printProgress,
      parallel: yield* parallelOf(args)
    })
    if (result.modelDir === undefined) {
      return yield* Console.log(`stopped at step ${result.stepsDone}/${result.totalSteps}; resume with --resume ${dir}`)
    }
    yield* Console.log(
      `pretrained ${result.totalSteps} steps on ${result.setup.taskIds.length} ARC tasks ` +
        `(${result.setup.stats.plannedTokens} tokens); model in ${result.modelDir}`
    )
  })

/** Whether `--resume` names an ARC run (its saved config decodes as one), so `--task` may be left out. */
const resumesArcRun = (args: Args) =>
  Option.match(args.resume, {
    onNone: () => Effect.succeed(false),
    onSome: (dir) =>
      Effect.promise(() => Fs.promises.readFile(Path.join(dir, "pretrain-config.json"), "utf8").catch(() => "")).pipe(
        Effect.map((text) => {
          try {
            return Either.isRight(ArcPretrain.decodeArcPretrainConfig(JSON.parse(text)))
          } catch {
            return false
          }
        })
      )
  })

const run = (args: Args) =>
  Effect.gen(function*() {
    if (args.task === "arc" || (yield* resumesArcRun(args))) return yield* runArc(args)
    yield* checkResumeArgs(args)
    const resume = Option.isSome(args.resume)
    const config = resume
      ? undefined
      : yield* readConfig(args.config, args.seed, args.init, Pretrain.decodePretrainConfig)
    const dir = runDirectory(args)
    yield* Console.error(`pretrain: run directory ${dir}${resume ? " (resuming)" : ""}`)
    const result = yield* Pretrain.pretrain({
      dir,
      config,
      resume,
      onProgress: printProgress,
      parallel: yield* parallelOf(args)
    })
    if (result.modelDir === undefined) {
      return yield* Console.log(`stopped at step ${result.stepsDone}/${result.totalSteps}; resume with --resume ${dir}`)
    }
    // What the model can do before any adaptation: the checks to pass before RL is worth running.
    const modelDir = result.modelDir
    const probes = yield* probeWorld(result.setup.world, 50).pipe(
      Effect.provide(LanguageModel.layer(modelDir)),
      Effect.tap((p) => RunDirectory.writeJson(Path.join(modelDir, "probes.json"), p))
    )
    yield* Console.log(
      `pretrained ${result.totalSteps} steps; model in ${modelDir}\n` +
        `probes: open-book ${(100 * probes.openBookHeldOut).toFixed(1)}% on held-out people, closed-book ` +
        `${(100 * probes.closedBookPretrain).toFixed(1)}% on pretraining people, greedy self-edits restate ` +
        `${(100 * probes.selfEdits.correct).toFixed(1)}% of facts correctly (${
          (100 * probes.selfEdits.incorrect).toFixed(1)
        }% wrongly)`
    )
  })

export const pretrainCommand = Command.make(
  "pretrain",
  options,
  (args) => run(args).pipe(Effect.provide(runtimeLayer(args.backend)))
).pipe(
  Command.withDescription(
    "Pretrain a base model from scratch (the synthetic world's, or ARC's with --task arc), checkpointing every 50 steps (resumable)"
  )
)
