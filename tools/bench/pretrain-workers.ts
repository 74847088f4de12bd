/**
 * ARC pretraining steps per second, in this process against data-parallel worker threads
 * (`localStepTrainer` against `dataParallelStepTrainer`), on the same steps in the same run, with
 * the weights compared bit for bit.
 *
 *   run     `seal pretrain --task arc`'s default config (from scratch, seed 0): the first `steps`
 *           steps of its plan (16 sequences a step, micro-batches of <= 4,096 padded tokens)
 *   how     one step per call, as `seal pretrain` trains (it returns to the event loop between
 *           steps); wasm backend with the kernel overrides, one thread per replica
 *
 * Wall time covers the steps alone (workers started, and the data prepared, before the clock).
 * speed-up = time in process / time with N workers.
 *
 * Run: npx tsx tools/bench/pretrain-workers.ts [--steps 12] [--workers 2] [--json]
 * (about 2 minutes on 2 cores). index.ts calls `runPretrainWorkersBench` and puts
 * `formatPretrainWorkersBench(result)` under a heading.
 */
import { initWeights } from "@seal/gpu/model/InitWeights"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import {
  dataParallelStepTrainer,
  type FullStepTrainer,
  localStepTrainer,
  type TrainState
} from "@seal/gpu/train/DataParallel"
import { decodeArcPretrainConfig, prepareArcPretraining } from "@seal/tasks/arc/ArcPretrain"
import { loadArcSplits } from "@seal/tasks/arc/ArcSplits"
import { pretrainTrainOptions } from "@seal/tasks/PretrainRun"
import { Effect, Either } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { numberFlag } from "./ChildProcess.js"

const thisFile = fileURLToPath(import.meta.url)
const repoRoot = path.resolve(path.dirname(thisFile), "../..")

export interface PretrainWorkersBenchOptions {
  readonly steps?: number | undefined
  readonly workers?: number | undefined
}

export interface PretrainWorkersRow {
  readonly workers: number
  readonly seconds: number
  readonly stepsPerSecond: number
  readonly tokensPerSecond: number
  readonly speedup: number
  /** Whether the weights and moments after the steps equal the in-process ones, bit for bit. */
  readonly sameWeights: boolean
}

export interface PretrainWorkersBenchResult {
  readonly steps: number
  readonly sequences: number
  readonly parameters: number
  readonly rows: ReadonlyArray<PretrainWorkersRow>
}

const sameState = (a: TrainState, b: TrainState): boolean =>
  [...a.weights, ...(a.moments ?? [])].every(([name, t]) => {
    const other = b.weights.get(name) ?? b.moments?.get(name)
    return other !== undefined && other.data.length === t.data.length && other.data.every((x, i) => x === t.data[i])
  })

export const runPretrainWorkersBench = async (
  options: PretrainWorkersBenchOptions = {}
): Promise<PretrainWorkersBenchResult> => {
  const workers = options.workers ?? Math.max(2, Math.min(4, os.availableParallelism()))
  const steps = options.steps ?? 12
  const config = Either.getOrThrow(decodeArcPretrainConfig({}, "defaults"))
  const splits = await Effect.runPromise(loadArcSplits(path.join(repoRoot, "data")))
  const setup = Either.getOrThrow(prepareArcPretraining(config, splits.pretrain))
  const base = {
    config: setup.modelConfig,
    examples: setup.examples,
    options: pretrainTrainOptions(config.training, setup),
    initial: { weights: initWeights(setup.modelConfig, config.seed), moments: undefined }
  }
  const timed = (trainer: FullStepTrainer) =>
    Effect.gen(function*() {
      const began = performance.now()
      let tokens = 0
      for (let step = 0; step < steps; step++) tokens += (yield* trainer.train(step, step + 1)).inputTokens
      const seconds = (performance.now() - began) / 1000
      return { seconds, tokens, state: yield* trainer.state }
    })
  const runtime = TensorRuntime.layer({ backend: "wasm" })
  console.error(`pretrain workers: ${steps} steps in this process ...`)
  const here = await Effect.runPromise(
    Effect.flatMap(TensorRuntime.TensorRuntime, () => timed(localStepTrainer(base))).pipe(Effect.provide(runtime))
  )
  console.error(`pretrain workers: ${steps} steps on ${workers} worker threads ...`)
  const spread = await Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(dataParallelStepTrainer({ ...base, workers, backend: "wasm" }), timed)
    )
  )
  const row = (n: number, run: typeof here, same: boolean): PretrainWorkersRow => ({
    workers: n,
    seconds: run.seconds,
    stepsPerSecond: steps / run.seconds,
    tokensPerSecond: run.tokens / run.seconds,
    speedup: here.seconds / run.seconds,
    sameWeights: same
  })
  return {
    steps,
    sequences: setup.plan.slice(0, steps).reduce((n, s) => n + s.microBatches.flat().length, 0),
    parameters: [...base.initial.weights.values()].reduce((n, t) => n + t.data.length, 0),
    rows: [row(1, here, true), row(workers, spread, sameState(here.state, spread.state))]
  }
}

/** The BENCHMARKS.md section (no heading of its own; index.ts adds its `##`). */
export const formatPretrainWorkersBench = (result: PretrainWorkersBenchResult): string =>
  [
    `The first ${result.steps} steps (${result.sequences} sequences) of \`seal pretrain --task arc\`'s default run `
    + `(${(result.parameters / 1e6).toFixed(2)}M parameters, from scratch, seed 0), one step per call as the command `
    + "trains, wasm. Wall time of the steps alone; workers started beforehand.",
    "",
    "| trainer | seconds | steps/s | tokens/s | speed-up | weights and moments equal to in-process |",
    "| --- | ---: | ---: | ---: | ---: | --- |",
    ...result.rows.map((r) =>
      `| ${
        r.workers === 1
          ? "this process (`localStepTrainer`)"
          : `${r.workers} worker threads (\`dataParallelStepTrainer\`)`
      } | `
      + `${r.seconds.toFixed(1)} | ${r.stepsPerSecond.toFixed(3)} | ${r.tokensPerSecond.toFixed(0)} | `
      + `${r.speedup.toFixed(2)}× | ${r.sameWeights ? "yes, bit for bit" : "**no**"} |`
    )
  ].join("\n")

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === thisFile) {
  const result = await runPretrainWorkersBench({ steps: numberFlag("--steps"), workers: numberFlag("--workers") })
  console.log(process.argv.includes("--json") ? JSON.stringify(result, null, 2) : formatPretrainWorkersBench(result))
}
