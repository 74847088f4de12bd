/**
 * `seal run` on few-shot ARC: the fixed rows (`icl`, `oracle`) once per run, then SEAL's outer
 * loop over the RL tasks, with the generator's configs evaluated on every held-out set before RL
 * (`self-edit`) and after each round (`seal`, or `seal-round-n` before the last).
 */
import * as RunDirectory from "@seal/core/RunDirectory"
import { LanguageModel, LoraTrainer, TensorRuntime } from "@seal/gpu"
import * as GRPO from "@seal/rl/GRPO"
import { type Optimizer, roundResult } from "@seal/rl/Optimizer"
import * as ReSTEM from "@seal/rl/ReSTEM"
import * as Runner from "@seal/rl/Runner"
import {
  type ArcRow,
  arcSelfEditPromptIds,
  evaluateIcl,
  evaluateOracle,
  evaluateSelfEdits
} from "@seal/tasks/arc/ArcEvaluation"
import { arcTokenizer } from "@seal/tasks/arc/ArcFormat"
import * as ArcReward from "@seal/tasks/arc/ArcReward"
import * as ArcSolver from "@seal/tasks/arc/ArcSolver"
import { type ArcSplits, loadArcSplits } from "@seal/tasks/arc/ArcSplits"
import { arcTokens } from "@seal/tasks/arc/ArcVocabulary"
import type { ArcTask } from "@seal/tasks/arc/Grid"
import { toolConfigMask } from "@seal/tasks/arc/ToolConfig"
import * as LoraPolicy from "@seal/tasks/LoraPolicy"
import { Console, Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { type ArcExperimentConfig, ArcExperimentConfig as ArcExperimentSchema } from "../ArcExperiment.js"
import { bundledArcModelPath, bundledDataPath } from "../Defaults.js"
import { ConfigError } from "../Experiment.js"
import { runEnvironment, runtimeLayer } from "./Shared.js"

export interface ResolvedArc {
  readonly experiment: ArcExperimentConfig
  readonly seed: number
  readonly dir: string
  readonly modelDir: string
  readonly splits: ArcSplits
  readonly source: string
}

/** Loads the data and checks the sizes an ARC experiment asks for, before any work. */
export const resolveArc = (experiment: ArcExperimentConfig, seed: number, dir: string, source: string) =>
  Effect.gen(function*() {
    const modelDir = experiment.model ?? bundledArcModelPath
    if (!Fs.existsSync(Path.join(modelDir, "config.json"))) {
      return yield* new ConfigError({ source, field: "model", detail: `${modelDir} is not a model directory` })
    }
    const hf = (yield* RunDirectory.readJson(Path.join(modelDir, "config.json"))) as { vocab_size?: unknown }
    if (hf.vocab_size !== arcTokens.length) {
      return yield* new ConfigError({
        source,
        field: "model",
        detail: `${modelDir} has a vocabulary of ${String(hf.vocab_size)}, not the ARC vocabulary's ${arcTokens.length}`
      })
    }
    const splits = yield* loadArcSplits(bundledDataPath)
    if (experiment.rlTasks !== undefined && experiment.rlTasks > splits.rl.length) {
      return yield* new ConfigError({
        source,
        field: "rlTasks",
        detail: `${experiment.rlTasks} asked, but the RL split has ${splits.rl.length}`
      })
    }
    return { experiment, seed, dir, modelDir, splits, source } satisfies ResolvedArc
  })

const optimizerLayer = (experiment: ArcExperimentConfig): Layer.Layer<Optimizer> =>
  experiment.optimizer === "grpo" ? GRPO.layer(experiment.grpo) : ReSTEM.layer(experiment.restEm)

/** A row without its timing: results.json must not depend on how fast the machine was. */
const deterministic = ({ secondsPerInnerLoop: _, ...row }: ArcRow, set: string, method?: string) => ({
  set,
  ...row,
  ...(method === undefined ? {} : { method })
})

/** `workers` threads run the inner loop (this process when 1); its outcomes are the same either way. */
const solverLayer = (modelDir: string, workers: number | undefined) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const runtime = yield* TensorRuntime.TensorRuntime
    const n = workers ?? ArcSolver.defaultWorkers(runtime.backend)
    return n <= 1
      ? ArcSolver.layer
      : ArcSolver.layerWorkers({ modelDir, backend: runtime.backend, workers: n })
  }))

export const executeArc = (
  r: ResolvedArc,
  resume: boolean,
  backendChoice: TensorRuntime.BackendChoice,
  workers?: number | undefined
) =>
  Effect.gen(function*() {
    const { experiment, seed, dir, modelDir, splits } = r
    if (!resume) {
      yield* RunDirectory.createFresh(dir)
      yield* RunDirectory.writeJson(Path.join(dir, "config.json"), {
        experiment: Schema.encodeSync(ArcExperimentSchema)(experiment),
        seed,
        model: modelDir
      })
    }
    yield* Console.error(
      `run: ${experiment.name}, ${experiment.optimizer}, ${experiment.rounds} round(s), seed ${seed}, directory ${dir}`
    )
    const begin = performance.now()
    const elapsed = () => `${((performance.now() - begin) / 1000).toFixed(0)} s`
    const heldOut: Array<readonly [string, ReadonlyArray<ArcTask>]> = experiment.heldOutSets.map((name) => [
      name,
      experiment.heldOutTasks === undefined ? splits[name] : splits[name].slice(0, experiment.heldOutTasks)
    ])
    const rl = experiment.rlTasks === undefined ? splits.rl : splits.rl.slice(0, experiment.rlTasks)
    const inner = experiment.evaluation.innerLoop
    const learner = LoraTrainer.layer.pipe(Layer.provideMerge(LanguageModel.layer(modelDir)))
    const layers = Layer.mergeAll(
      optimizerLayer(experiment),
      // Every ARC model shares the ARC vocabulary (checked below), so one grammar mask serves all.
      LoraPolicy.layer(experiment.policy, { logitMask: toolConfigMask(arcTokenizer()) }),
      ArcReward.layer({ tasks: new Map(rl.map((t) => [t.id, t])), innerLoop: inner, reward: experiment.reward })
    ).pipe(
      Layer.provideMerge(solverLayer(modelDir, workers)),
      Layer.provideMerge(learner),
      Layer.provideMerge(runtimeLayer(backendChoice))
    )

    return yield* Effect.gen(function*() {
      const runtime = yield* TensorRuntime.TensorRuntime
      const model = yield* LanguageModel.LanguageModel
      // The fixed rows, once per run: no adaptation, and the best fixed config.
      const fixedFile = Path.join(dir, "baselines.json")
      const fixed = Fs.existsSync(fixedFile)
        ? ((yield* RunDirectory.readJson(fixedFile)) as Record<
          string,
          { icl: ArcRow; oracle: ArcRow; candidates: unknown }
        >)
        : yield* Effect.forEach(heldOut, ([name, tasks]) =>
          Effect.gen(function*() {
            const icl = yield* evaluateIcl(tasks, inner)
            const oracle = yield* evaluateOracle(tasks, experiment.evaluation.oracleCandidates, inner, seed)
            yield* Console.error(
              `run: ${name}: icl ${pct(icl.accuracy)}, oracle ${
                pct(oracle.row.accuracy)
              } (${oracle.row.config}) (${elapsed()})`
            )
            return [name, { icl, oracle: oracle.row, candidates: oracle.candidates }] as const
          })).pipe(
            Effect.map((entries) => Object.fromEntries(entries)),
            Effect.tap((report) => RunDirectory.writeJson(fixedFile, report))
          )
      const outcome = yield* Runner.run({
        dir,
        rounds: experiment.rounds,
        seed,
        contexts: rl.map((task) => ({
          id: task.id,
          prompt: model.tokenizer.decode(arcSelfEditPromptIds(task, model.config.maxPositions))
        })),
        contextsPerRound: experiment.contextsPerRound,
        evaluate: (round) =>
          Effect.forEach(heldOut, ([name, tasks]) =>
            evaluateSelfEdits(tasks, {
              method: "self-edit",
              sampling: experiment.evaluation.selfEdits,
              innerLoop: inner,
              seed
            }).pipe(
              Effect.tap(({ row }) =>
                Console.error(`run: ${name}: configs after round ${round}: ${pct(row.accuracy)} solved (${elapsed()})`)
              ),
              Effect.map((e) => [name, e] as const)
            )).pipe(Effect.map((entries) => Object.fromEntries(entries))),
        onRound: (m) =>
          Console.error(
            `run: round ${m.round}: reward ${m.rewardMean.toFixed(3)} ± ${m.rewardStd.toFixed(3)}, kept ${
              (100 * m.acceptance).toFixed(0)
            }%, tied groups ${(100 * m.zeroVarianceGroups).toFixed(0)}%, ${
              m.secondsPerEvaluation.toFixed(2)
            } s/evaluation (${elapsed()})`
          )
      })
      const roundName = (i: number) => (i === outcome.evaluations.length - 1 ? "seal" : `seal-round-${i}`)
      const table = heldOut.flatMap(([name]) => [
        deterministic(fixed[name]!.icl, name),
        deterministic((outcome.evaluations[0] as Record<string, { row: ArcRow }>)[name]!.row, name, "self-edit"),
        ...outcome.evaluations.slice(1).map((e, i) =>
          deterministic((e as Record<string, { row: ArcRow }>)[name]!.row, name, roundName(i + 1))
        ),
        deterministic(fixed[name]!.oracle, name)
      ])
      const results = {
        command: "run",
        task: "arc",
        experiment: experiment.name,
        optimizer: experiment.optimizer,
        reward: experiment.reward,
        seed,
        heldOut: Object.fromEntries(heldOut.map(([name, tasks]) => [name, tasks.map((t) => t.id)])),
        rlTasks: rl.map((t) => t.id),
        table,
        rounds: outcome.rounds.map(roundResult)
      }
      yield* RunDirectory.writeJson(Path.join(dir, "results.json"), results)
      yield* RunDirectory.writeJson(Path.join(dir, "timings.json"), {
        ...runEnvironment(runtime.backend, begin),
        innerLoopWorkers: (yield* ArcSolver.ArcSolver).parallelism,
        secondsPerInnerLoop: Object.fromEntries(heldOut.map(([name]) => [name, {
          icl: fixed[name]!.icl.secondsPerInnerLoop,
          ...Object.fromEntries(outcome.evaluations.map((e, i) => [
            i === 0 ? "self-edit" : roundName(i),
            (e as Record<string, { row: ArcRow }>)[name]!.row.secondsPerInnerLoop
          ])),
          oracle: fixed[name]!.oracle.secondsPerInnerLoop
        }])),
        rounds: outcome.rounds.map(({ rewardMean: _a, rewardStd: _b, ...m }) => m)
      })
      yield* Console.log(
        ["set                method          solved   cells  p(answer)"]
          .concat(
            table.map((t) =>
              `${t.set.padEnd(19)}${t.method.padEnd(14)}${pct(t.accuracy).padStart(8)}  ${
                pct(t.cellAccuracy).padStart(6)
              }  ${t.solutionLikelihood.toFixed(3).padStart(9)}   ` +
              `(${t.solved}/${t.pairs} pairs, ${t.tasks} tasks)`
            )
          )
          .join("\n")
      )
      yield* Console.log(`results: ${Path.join(dir, "results.json")}`)
    }).pipe(Effect.provide(layers))
  })

const pct = (x: number) => `${(100 * x).toFixed(1)}%`
