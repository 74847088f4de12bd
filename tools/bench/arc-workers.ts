/**
 * ARC inner loops per second, in this process against worker threads (`ArcSolver.layer` against
 * `ArcSolver.layerWorkers`), on the same items in the same run, with the outcomes compared.
 *
 *   model   models/arc-base (the bundled ARC base model), wasm backend with the kernel overrides
 *   items   the first `tasks` tasks of the evaluation-small set, each under every config of
 *           arc-demo's oracle search (basic or none, lr 3e-3 or 1e-3, 5 epochs)
 *   loop    arc-demo's inner loop: rank-16 LoRA on every projection, batch 4, 12 sequences,
 *           4 views, 8 adapters per batched pass
 *
 * Wall time covers `adaptAndSolve` alone (the workers are started, and the model loaded, before
 * the clock starts: a run starts them once). speed-up = time in process / time with N workers.
 *
 * Run: npx tsx tools/bench/arc-workers.ts [--tasks 8] [--workers 2] [--json]
 * (about 3 minutes on 2 cores). index.ts calls `runArcWorkersBench` and puts
 * `formatArcWorkersBench(result)` under a heading.
 */
import * as LanguageModel from "@seal/gpu/LanguageModel"
import * as LoraTrainer from "@seal/gpu/LoraTrainer"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import { ArcInnerLoopConfig, type ArcItem, type ArcOutcome, planArcWork } from "@seal/tasks/arc/ArcInnerLoop"
import * as ArcSolver from "@seal/tasks/arc/ArcSolver"
import { loadArcSplits } from "@seal/tasks/arc/ArcSplits"
import { outputTokenConfig } from "@seal/tasks/arc/ToolConfig"
import { Effect, Layer, Schema } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { numberFlag } from "./ChildProcess.js"

const thisFile = fileURLToPath(import.meta.url)
const repoRoot = path.resolve(path.dirname(thisFile), "../..")

export interface ArcWorkersBenchOptions {
  readonly tasks?: number | undefined
  readonly workers?: number | undefined
}

export interface ArcWorkersRow {
  readonly workers: number
  readonly seconds: number
  readonly innerLoopsPerSecond: number
  readonly speedup: number
  /** Whether every outcome (attempts, cells, losses) equals the in-process one. */
  readonly sameOutcomes: boolean
}

export interface ArcWorkersBenchResult {
  readonly items: number
  readonly units: number
  readonly taskIds: ReadonlyArray<string>
  readonly rows: ReadonlyArray<ArcWorkersRow>
}

const untimed = (outcomes: ReadonlyArray<ArcOutcome>) => JSON.stringify(outcomes.map(({ seconds: _, ...o }) => o))

export const runArcWorkersBench = async (options: ArcWorkersBenchOptions = {}): Promise<ArcWorkersBenchResult> => {
  const workers = options.workers ?? Math.max(2, Math.min(4, os.availableParallelism()))
  const modelDir = path.join(repoRoot, "models", "arc-base")
  const splits = await Effect.runPromise(loadArcSplits(path.join(repoRoot, "data")))
  const tasks = splits["evaluation-small"].slice(0, options.tasks ?? 8)
  const configs = [
    outputTokenConfig(true, 3e-3, 5),
    outputTokenConfig(false, 3e-3, 5),
    outputTokenConfig(false, 1e-3, 5),
    outputTokenConfig(true, 1e-3, 5)
  ]
  const items: Array<ArcItem> = configs.flatMap((config) => tasks.map((task, t) => ({ task, config, seed: t })))
  const innerLoop = Schema.decodeSync(ArcInnerLoopConfig)({ maxSequences: 12, views: 4 })
  const base = LoraTrainer.layer.pipe(
    Layer.provideMerge(LanguageModel.layer(modelDir)),
    Layer.provideMerge(TensorRuntime.layer({ backend: "wasm" }))
  )
  const timed = (
    solver: Layer.Layer<
      ArcSolver.ArcSolver,
      ArcSolver.ArcSolverError,
      LanguageModel.LanguageModel | LoraTrainer.LoraTrainer
    >
  ) =>
    Effect.runPromise(
      Effect.gen(function*() {
        const s = yield* ArcSolver.ArcSolver
        const model = yield* LanguageModel.LanguageModel
        const began = performance.now()
        const outcomes = yield* s.solve(items, innerLoop)
        const seconds = (performance.now() - began) / 1000
        return { outcomes, seconds, units: planArcWork(items, innerLoop, model.config).units.length }
      }).pipe(Effect.provide(solver.pipe(Layer.provideMerge(base))))
    )
  console.error(`arc workers: ${items.length} inner loops in this process ...`)
  const here = await timed(ArcSolver.layer)
  console.error(`arc workers: ${items.length} inner loops on ${workers} worker threads ...`)
  const spread = await timed(ArcSolver.layerWorkers({ modelDir, backend: "wasm", workers }))
  const row = (n: number, seconds: number, same: boolean): ArcWorkersRow => ({
    workers: n,
    seconds,
    innerLoopsPerSecond: items.length / seconds,
    speedup: here.seconds / seconds,
    sameOutcomes: same
  })
  return {
    items: items.length,
    units: here.units,
    taskIds: tasks.map((t) => t.id),
    rows: [
      row(1, here.seconds, true),
      row(workers, spread.seconds, untimed(spread.outcomes) === untimed(here.outcomes))
    ]
  }
}

/** The BENCHMARKS.md section (no heading of its own; index.ts adds its `##`). */
export const formatArcWorkersBench = (result: ArcWorkersBenchResult): string =>
  [
    `${result.items} inner loops (${result.units} batched passes): the first ${result.taskIds.length} evaluation-small tasks `
    + `(${
      result.taskIds.join(", ")
    }) under 4 configs (basic or none × lr 3e-3 or 1e-3, 5 epochs), arc-demo's inner loop `
    + "(rank 16, batch 4, 12 sequences, 4 views, 8 adapters per pass) on models/arc-base, wasm. Wall time of "
    + "`adaptAndSolve` alone; workers started beforehand.",
    "",
    "| runner | seconds | inner loops/s | speed-up | outcomes equal to in-process |",
    "| --- | ---: | ---: | ---: | --- |",
    ...result.rows.map((r) =>
      `| ${r.workers === 1 ? "this process (`ArcSolver.layer`)" : `${r.workers} worker threads (\`layerWorkers\`)`} | `
      + `${r.seconds.toFixed(1)} | ${r.innerLoopsPerSecond.toFixed(3)} | ${r.speedup.toFixed(2)}× | ${
        r.sameOutcomes ? "yes" : "**no**"
      } |`
    )
  ].join("\n")

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === thisFile) {
  const result = await runArcWorkersBench({ tasks: numberFlag("--tasks"), workers: numberFlag("--workers") })
  console.log(process.argv.includes("--json") ? JSON.stringify(result, null, 2) : formatArcWorkersBench(result))
}
