/**
 * Who runs ARC's inner loop. `layer` runs it in this process; `layerWorkers` spreads it over
 * worker threads, each with its own tfjs backend and a copy of the model, because the wasm and cpu
 * backends use one core each. Both run the same units (`planArcWork`: the same batched passes,
 * the same seeds), so a run's outcomes do not depend on how many workers it had.
 */
import type { EncodedError } from "@seal/gpu/EncodedError"
import type { GenerationError } from "@seal/gpu/LanguageModel"
import { LanguageModel } from "@seal/gpu/LanguageModel"
import type { LoraConfigError } from "@seal/gpu/lora/LoraAdapter"
import type { LoraTrainer } from "@seal/gpu/LoraTrainer"
import type { ResolvedBackend } from "@seal/gpu/TensorRuntime"
import type { TrainingError } from "@seal/gpu/train/Trainer"
import { Context, Data, Effect, Either, Layer, Queue } from "effect"
import * as Os from "node:os"
import { Worker } from "node:worker_threads"
import {
  adaptAndSolveHere,
  type ArcInnerLoopConfig,
  type ArcItem,
  type ArcOutcome,
  assembleOutcomes,
  planArcWork,
  unsolvedOutcome
} from "./ArcInnerLoop.js"
import { restoreError, type WorkerData, type WorkerReply, type WorkerRequest } from "./ArcWorkerProtocol.js"
import type { ArcTask } from "./Grid.js"
import { parseToolConfig, type ToolConfig } from "./ToolConfig.js"

/** A worker thread could not start, or died while it held work. */
export class ArcSolverError extends Data.TaggedError("ArcSolverError")<{
  readonly reason: "WorkerStartup" | "WorkerCrashed"
  readonly detail: string
}> {
  override get message(): string {
    return `ARC worker ${this.reason === "WorkerStartup" ? "could not start" : "crashed"}: ${this.detail}`
  }
}

export type ArcSolveError = TrainingError | LoraConfigError | GenerationError | ArcSolverError

export class ArcSolver extends Context.Tag("@seal/tasks/ArcSolver")<ArcSolver, {
  /** The inner loop over `items`: outcomes in item order. */
  readonly solve: (
    items: ReadonlyArray<ArcItem>,
    config: ArcInnerLoopConfig
  ) => Effect.Effect<Array<ArcOutcome>, ArcSolveError>
  /** Units that run at once. */
  readonly parallelism: number
}>() {}

/** The inner loop in this process, over the `LanguageModel` and `LoraTrainer` in context. */
export const layer: Layer.Layer<ArcSolver, never, LanguageModel | LoraTrainer> = Layer.effect(
  ArcSolver,
  Effect.gen(function*() {
    const context = yield* Effect.context<LanguageModel | LoraTrainer>()
    return ArcSolver.of({
      solve: (items, config) => adaptAndSolveHere(items, config).pipe(Effect.provide(context)),
      parallelism: 1
    })
  })
)

/**
 * Worker threads for the inner loop when none are asked for: the wasm and cpu backends use one
 * core each, so one worker per core (at most 4); tfjs-node spreads over the cores itself.
 */
export const defaultWorkers = (backend: ResolvedBackend): number =>
  backend === "wasm" || backend === "cpu" ? Math.max(1, Math.min(4, Os.availableParallelism())) : 1

export interface WorkerOptions {
  /** The model directory each worker loads (the one the `LanguageModel` in context came from). */
  readonly modelDir: string
  /** The backend each worker activates: the one this process resolved, so numerics match. */
  readonly backend: ResolvedBackend
  readonly workers: number
}

interface WorkerHandle {
  readonly run: (
    unit: ReadonlyArray<ArcItem>,
    config: ArcInnerLoopConfig
  ) => Effect.Effect<Array<ArcOutcome>, ArcSolveError>
}

const workerScript = new URL("./worker/arc-worker.mjs", import.meta.url)

const describe = (error: EncodedError) => `${error.tag}: ${error.message}`

/** One worker thread, ready (its model loaded) when the effect succeeds; terminated on release. */
const startWorker = (options: WorkerOptions) =>
  Effect.acquireRelease(
    Effect.async<{ readonly worker: Worker; readonly handle: WorkerHandle }, ArcSolverError>((resume) => {
      const worker = new Worker(workerScript, {
        workerData: { modelDir: options.modelDir, backend: options.backend } satisfies WorkerData
      })
      let started = false
      const failStartup = (detail: string) => {
        if (started) return
        started = true
        void worker.terminate()
        resume(Effect.fail(new ArcSolverError({ reason: "WorkerStartup", detail })))
      }
      let nextId = 0
      // The one request in flight: a worker takes one unit at a time.
      let pending: {
        readonly id: number
        readonly reply: (result: Effect.Effect<Array<ArcOutcome>, ArcSolveError>) => void
      } | undefined
      const settle = (id: number, result: Effect.Effect<Array<ArcOutcome>, ArcSolveError>) => {
        // A reply to an interrupted request is dropped.
        if (pending === undefined || pending.id !== id) return
        const { reply } = pending
        pending = undefined
        reply(result)
      }
      // Set once the thread is gone: later requests fail at once instead of waiting forever.
      let gone: string | undefined
      const crashed = (detail: string) => {
        gone ??= detail
        failStartup(detail)
        if (pending !== undefined) {
          settle(pending.id, Effect.fail(new ArcSolverError({ reason: "WorkerCrashed", detail })))
        }
      }
      const handle: WorkerHandle = {
        run: (items, config) =>
          Effect.async<Array<ArcOutcome>, ArcSolveError>((reply) => {
            if (gone !== undefined) {
              return reply(Effect.fail(new ArcSolverError({ reason: "WorkerCrashed", detail: gone })))
            }
            const id = nextId++
            pending = { id, reply }
            worker.postMessage({ id, items, config } satisfies WorkerRequest)
            return Effect.sync(() => {
              if (pending?.id === id) {
                pending = undefined
              }
            })
          })
      }
      worker.on("message", (message: WorkerReply) => {
        switch (message.type) {
          case "ready": {
            if (started) return
            started = true
            return resume(Effect.succeed({ worker, handle }))
          }
          case "startupFailed":
            return failStartup(describe(message.error))
          case "done":
            return settle(message.id, Effect.succeed(message.outcomes))
          case "failed":
            return settle(message.id, Effect.fail(restoreError(message.error)))
        }
      })
      worker.on("error", (e) => crashed(e instanceof Error ? e.message : String(e)))
      worker.on("exit", (code) => crashed(`exited with code ${code}`))
      // Interrupted while the model loads: the thread goes.
      return Effect.promise(() => worker.terminate())
    }),
    ({ worker }) => Effect.promise(() => worker.terminate())
  )

/**
 * The inner loop spread over `workers` threads: units go to whichever worker is free, outcomes
 * come back in item order, identical to `layer`'s on the same backend. Workers start (each
 * loading the model) when the layer is built and stop when its scope closes.
 */
export const layerWorkers = (options: WorkerOptions): Layer.Layer<ArcSolver, ArcSolverError, LanguageModel> =>
  Layer.scoped(
    ArcSolver,
    Effect.gen(function*() {
      const model = yield* LanguageModel
      const started = yield* Effect.forEach(
        Array.from({ length: options.workers }, () => startWorker(options)),
        (start) => start,
        { concurrency: "unbounded" }
      )
      const idle = yield* Queue.unbounded<WorkerHandle>()
      yield* Queue.offerAll(idle, started.map((s) => s.handle))
      return ArcSolver.of({
        solve: (items, config) =>
          Effect.gen(function*() {
            const plan = planArcWork(items, config, model.config)
            const unitOutcomes = yield* Effect.forEach(
              plan.units,
              (unit) =>
                Effect.acquireUseRelease(
                  Queue.take(idle),
                  (worker) => worker.run(unit.items, config),
                  (worker) => Queue.offer(idle, worker)
                ),
              { concurrency: options.workers }
            )
            return assembleOutcomes(plan, unitOutcomes)
          }),
        parallelism: options.workers
      })
    })
  )

/** The inner loop over `items` by the `ArcSolver` in context. */
export const adaptAndSolve = (
  items: ReadonlyArray<ArcItem>,
  config: ArcInnerLoopConfig
): Effect.Effect<Array<ArcOutcome>, ArcSolveError, ArcSolver> =>
  Effect.flatMap(ArcSolver, (solver) => solver.solve(items, config))

/**
 * Self-edits as text through the inner loop, outcomes in item order with the config each parsed
 * to. A text that is not a valid tool config (possible only without the grammar mask) is not
 * trained and solves nothing: reward 0, as in the reference.
 */
export const solveSelfEdits = (
  items: ReadonlyArray<{ readonly task: ArcTask; readonly selfEdit: string; readonly seed: number }>,
  config: ArcInnerLoopConfig
): Effect.Effect<
  Array<{ readonly config: ToolConfig | undefined; readonly outcome: ArcOutcome }>,
  ArcSolveError,
  ArcSolver
> =>
  Effect.gen(function*() {
    const configs = items.map((item) => Either.getOrUndefined(parseToolConfig(item.selfEdit)))
    const outcomes = yield* adaptAndSolve(
      items.flatMap((item, i) => {
        const parsed = configs[i]
        return parsed === undefined ? [] : [{ task: item.task, config: parsed, seed: item.seed }]
      }),
      config
    )
    let next = 0
    return items.map((item, i) => ({
      config: configs[i],
      outcome: configs[i] === undefined ? unsolvedOutcome(item.task) : outcomes[next++]!
    }))
  })
