/**
 * Fixed tool configs on the shortest tasks of one ARC split: for each config (and in context,
 * without one), the first attempt's share of cells right and the tasks solved (pass@2), per task
 * and in all. A quick look at what a base model can do before spending an arc-demo run on it;
 * pick models on the `rl` split (never pretrained on), not on the held-out sets.
 *
 * Run: npx tsx tools/probe/arc-configs.ts --model DIR [--set rl|pretrain|evaluation-seal|evaluation-small]
 *        [--tasks 16] [--seed 0] [--backend wasm] [--workers N]
 *        [--configs '[[true,0.003,5],[false,0.003,5],[false,0.001,5]]']   (basic?, lr, epochs)
 *        [--inner '{"maxSequences":12,"views":4}']                          (ArcInnerLoopConfig)
 * Configs train on output tokens without size, chain or repeat augmentations (arc-demo's oracle
 * search); the inner loop defaults to arc-demo's.
 */
import * as LanguageModel from "@seal/gpu/LanguageModel"
import * as LoraTrainer from "@seal/gpu/LoraTrainer"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import { sequenceLength } from "@seal/tasks/arc/ArcFormat"
import { ArcInnerLoopConfig, type ArcOutcome } from "@seal/tasks/arc/ArcInnerLoop"
import * as ArcSolver from "@seal/tasks/arc/ArcSolver"
import { loadArcSplits, type SplitName, splitNames } from "@seal/tasks/arc/ArcSplits"
import { outputTokenConfig, type ToolConfig } from "@seal/tasks/arc/ToolConfig"
import { Effect, Layer, Schema } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { flag, numberFlag } from "../bench/ChildProcess.js"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

const model = flag("--model")
if (model === undefined) {
  throw new Error("usage: npx tsx tools/probe/arc-configs.ts --model DIR [flags]; see the file's head")
}
const set = (flag("--set") ?? "rl") as SplitName
if (!splitNames.includes(set)) throw new Error(`--set must be one of ${splitNames.join(", ")}, got ${set}`)
const backend = (flag("--backend") ?? "wasm") as TensorRuntime.ResolvedBackend
const seed = numberFlag("--seed") ?? 0
const workers = numberFlag("--workers") ?? ArcSolver.defaultWorkers(backend)
const inner = Schema.decodeUnknownSync(ArcInnerLoopConfig)(
  JSON.parse(flag("--inner") ?? "{\"maxSequences\":12,\"views\":4}")
)
const configs: Array<ToolConfig> =
  (JSON.parse(flag("--configs") ?? "[[true,0.003,5],[false,0.003,5],[false,0.001,5]]") as Array<
    [boolean, number, number]
  >).map(([basic, learningRate, epochs]) => outputTokenConfig(basic, learningRate, epochs))

const summary = (name: string, outcomes: ReadonlyArray<ArcOutcome>) => {
  const cells = outcomes.reduce((a, o) => a + o.cellAccuracy, 0) / outcomes.length
  const solved = outcomes.filter((o) => o.solved).length
  const perTask = outcomes.map((o) => `${o.solved ? "S" : "-"}${(100 * o.cellAccuracy).toFixed(0)}`).join(" ")
  return `${name.padEnd(14)} cells ${(100 * cells).toFixed(1).padStart(5)}%  solved ${solved}  [${perTask}]`
}

const program = Effect.gen(function*() {
  const splits = yield* loadArcSplits(path.join(repoRoot, "data"))
  const tasks = [...splits[set]]
    .sort((a, b) => sequenceLength(a.train, a.test[0]!) - sequenceLength(b.train, b.test[0]!))
    .slice(0, numberFlag("--tasks") ?? 16)
  console.log(`${model} on the ${tasks.length} shortest ${set} tasks: ${tasks.map((t) => t.id).join(" ")}`)
  console.log(
    summary("icl", yield* ArcSolver.adaptAndSolve(tasks.map((task) => ({ task, config: undefined, seed })), inner))
  )
  for (const config of configs) {
    const outcomes = yield* ArcSolver.adaptAndSolve(tasks.map((task, t) => ({ task, config, seed: seed + t })), inner)
    const name = `${
      config.data_generation.use_basic_augmentations ? "basic" : "none"
    } ${config.training.learning_rate}x${config.training.num_train_epochs}`
    console.log(summary(name, outcomes))
  }
})

const base = LoraTrainer.layer.pipe(
  Layer.provideMerge(LanguageModel.layer(model)),
  Layer.provideMerge(TensorRuntime.layer({ backend }))
)
const solver = workers <= 1 ? ArcSolver.layer : ArcSolver.layerWorkers({ modelDir: model, backend, workers })
await Effect.runPromise(program.pipe(Effect.provide(solver.pipe(Layer.provideMerge(base)))))
