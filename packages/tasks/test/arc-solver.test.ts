import { describe, expect, it } from "@effect/vitest"
import { writeHfDirectory } from "@seal/gpu/checkpoint/HfDirectory"
import * as LanguageModel from "@seal/gpu/LanguageModel"
import * as LoraTrainer from "@seal/gpu/LoraTrainer"
import { initWeights } from "@seal/gpu/model/InitWeights"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import { tempDir } from "@seal/gpu/testing/HfFixture"
import { tinyLlama } from "@seal/gpu/testing/TinyModel"
import { wordLevelTokenizerConfig, wordLevelTokenizerJson } from "@seal/gpu/tokenizer/WordLevel"
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import { loadNamedArcSet } from "../src/arc/ArcData.js"
import { arcTokenizer } from "../src/arc/ArcFormat.js"
import {
  type ArcInnerLoopConfig,
  ArcInnerLoopConfig as InnerLoopSchema,
  type ArcItem
} from "../src/arc/ArcInnerLoop.js"
import * as ArcSolver from "../src/arc/ArcSolver.js"
import { arcTokens } from "../src/arc/ArcVocabulary.js"
import type { ArcTask } from "../src/arc/Grid.js"
import { outputTokenConfig, toolConfigText } from "../src/arc/ToolConfig.js"

const dataDir = fileURLToPath(new URL("../../../data/", import.meta.url))
const training = await Effect.runPromise(loadNamedArcSet(dataDir, "training"))
const taskById = (id: string): ArcTask => training.find((t) => t.id === id)!

const config = outputTokenConfig

const countTask = taskById("d631b094")
const rotationTask = taskById("6150a2bd")
const oneDemo: ArcTask = { id: "one-demo", train: countTask.train.slice(0, 1), test: countTask.test }

/** Every kind of item: unadapted, refused, and five to train, two per pass (three training units). */
const items: ReadonlyArray<ArcItem> = [
  { task: rotationTask, config: undefined, seed: 0 },
  { task: countTask, config: config(true, 1e-2, 1), seed: 1 },
  { task: oneDemo, config: config(false, 1e-3, 1), seed: 2 },
  { task: rotationTask, config: config(false, 3e-3, 3), seed: 3 },
  { task: countTask, config: undefined, seed: 0 },
  { task: countTask, config: config(false, 1e-3, 2), seed: 4 },
  { task: rotationTask, config: config(true, 1e-2, 2), seed: 5 },
  { task: countTask, config: config(true, 3e-3, 1), seed: 6 }
]

const innerLoop: ArcInnerLoopConfig = Schema.decodeSync(InnerLoopSchema)({
  rank: 4,
  alpha: 8,
  batchSize: 4,
  maxSequences: 8,
  views: 2,
  batchAdapters: 2
})

/** A random one-layer Llama over the ARC vocabulary, written as a model directory workers can load. */
const modelConfig = tinyLlama({ vocabSize: arcTokens.length, maxPositions: 256, numLayers: 1 })
const writeModel = (dir: string) =>
  writeHfDirectory(dir, {
    config: modelConfig,
    weights: initWeights(modelConfig, 7, 0.2),
    tokenizerJson: wordLevelTokenizerJson(arcTokenizer()),
    tokenizerConfig: wordLevelTokenizerConfig(arcTokenizer()),
    bosId: arcTokenizer().bosId,
    eosId: arcTokenizer().eosId
  })

const base = (modelDir: string) =>
  LoraTrainer.layer.pipe(
    Layer.provideMerge(LanguageModel.layer(modelDir)),
    Layer.provideMerge(TensorRuntime.layer({ backend: "cpu" }))
  )

/** An outcome without its timing, the one thing that may differ between runners. */
const untimed = ({ seconds: _, ...outcome }: { readonly seconds: number }) => outcome

describe("ArcSolver", () => {
  const scope = Effect.runSync(Scope.make())
  let modelDir: string
  beforeAll(async () => {
    const dir = await Effect.runPromise(tempDir("arc-solver").pipe(Scope.extend(scope)))
    modelDir = Path.join(dir, "model")
    await Effect.runPromise(writeModel(modelDir))
  })
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  it.effect("worker threads give the outcomes this process gives, item for item, with every unit spread over them", () =>
    Effect.gen(function*() {
      const here = yield* ArcSolver.adaptAndSolve(items, innerLoop).pipe(
        Effect.provide(ArcSolver.layer.pipe(Layer.provideMerge(base(modelDir))))
      )
      const workers = ArcSolver.layerWorkers({ modelDir, backend: "cpu", workers: 2 }).pipe(
        Layer.provideMerge(base(modelDir))
      )
      const { parallelism, spread } = yield* Effect.gen(function*() {
        const solver = yield* ArcSolver.ArcSolver
        return { parallelism: solver.parallelism, spread: yield* solver.solve(items, innerLoop) }
      }).pipe(Effect.provide(workers))
      expect(parallelism).toBe(2)
      expect(here.map((o) => o.refused)).toEqual([
        undefined,
        undefined,
        "NoTrainingData",
        undefined,
        undefined,
        undefined,
        undefined,
        undefined
      ])
      // The trained items really trained (a loss), the unadapted did not.
      expect(here.map((o) => o.finalLoss !== undefined)).toEqual([false, true, false, true, false, true, true, true])
      expect(spread.map(untimed)).toEqual(here.map(untimed))
    }))

  it.effect("a worker's typed failure comes back as the same error the in-process solver fails with", () =>
    Effect.gen(function*() {
      const broken = { ...innerLoop, targets: ["no_such_proj"] } as unknown as ArcInnerLoopConfig
      const trainable = items.filter((item) => item.config !== undefined).slice(0, 2)
      const here = yield* Effect.flip(ArcSolver.adaptAndSolve(trainable, broken)).pipe(
        Effect.provide(ArcSolver.layer.pipe(Layer.provideMerge(base(modelDir))))
      )
      const spread = yield* Effect.flip(ArcSolver.adaptAndSolve(trainable, broken)).pipe(
        Effect.provide(
          ArcSolver.layerWorkers({ modelDir, backend: "cpu", workers: 2 }).pipe(Layer.provideMerge(base(modelDir)))
        )
      )
      expect(here._tag).toBe("LoraConfigError")
      expect(spread._tag).toBe(here._tag)
      expect(spread.message).toBe(here.message)
    }))

  it.effect("a defect in a worker is a TrainingError naming it, and the worker serves the next unit", () =>
    Effect.gen(function*() {
      // A test input that is not a grid: the worker's prediction throws (planning never reads it).
      const broken = {
        task: { id: "broken", train: countTask.train, test: [{ input: null, output: [[1]] }] },
        config: undefined,
        seed: 0
      } as unknown as ArcItem
      const { failure, after } = yield* Effect.gen(function*() {
        const solver = yield* ArcSolver.ArcSolver
        const failure = yield* Effect.flip(solver.solve([broken], innerLoop))
        const after = yield* solver.solve(items.slice(0, 2), innerLoop)
        return { failure, after }
      }).pipe(
        Effect.provide(
          ArcSolver.layerWorkers({ modelDir, backend: "cpu", workers: 1 }).pipe(Layer.provideMerge(base(modelDir)))
        )
      )
      expect(failure._tag).toBe("TrainingError")
      expect(failure.message).toMatch(/in an ARC worker: Defect: /)
      expect(after).toHaveLength(2)
      expect(after[1]!.finalLoss).toBeGreaterThan(0)
    }))

  it.effect("a worker that cannot load its model fails the layer with WorkerStartup, naming the cause", () =>
    Effect.gen(function*() {
      const missing = Path.join(modelDir, "..", "no-such-model")
      const error = yield* Effect.flip(
        ArcSolver.ArcSolver.pipe(
          Effect.provide(
            ArcSolver.layerWorkers({ modelDir: missing, backend: "cpu", workers: 2 }).pipe(
              Layer.provideMerge(base(modelDir))
            )
          )
        )
      )
      expect(error._tag).toBe("ArcSolverError")
      expect(error.message).toMatch(/^ARC worker could not start: CheckpointError: .*no-such-model/)
    }))

  it.effect("solveSelfEdits: a text that is not a tool config trains nothing and solves nothing", () =>
    Effect.gen(function*() {
      const good = config(true, 1e-2, 1)
      const solved = yield* ArcSolver.solveSelfEdits([
        { task: countTask, selfEdit: "not a config", seed: 1 },
        { task: countTask, selfEdit: toolConfigText(good), seed: 1 }
      ], innerLoop).pipe(Effect.provide(ArcSolver.layer.pipe(Layer.provideMerge(base(modelDir)))))
      expect(solved[0]!.config).toBeUndefined()
      expect(solved[0]!.outcome).toMatchObject({ solved: false, cellAccuracy: 0, trainingSequences: 0 })
      expect(solved[0]!.outcome.finalLoss).toBeUndefined()
      expect(solved[1]!.config).toEqual(good)
      expect(solved[1]!.outcome.finalLoss).toBeGreaterThan(0)
    }))
})
