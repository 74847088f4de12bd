/**
 * Full training (`trainFull`) in windows of plan steps, in this process or data-parallel over
 * worker threads. Pretraining drives either through `FullStepTrainer`: train steps [a, b), read
 * the state at a checkpoint.
 *
 * Data-parallel: every worker holds a replica of the weights and AdamW moments, runs its share of
 * each step's micro-batches (`TrainOptions.shard`) and exchanges gradients through shared memory
 * (`SharedReduce.ts`); the sums are taken in micro-batch order, so the weights are bit-for-bit
 * those of one process whatever the number of workers (a run may resume with another count).
 * On the wasm and cpu backends one process trains on one core; N workers use N.
 */
import { Effect, Scope } from "effect"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import type { EncodedError } from "../EncodedError.js"
import type { ModelConfig, WeightMap } from "../model/ModelConfig.js"
import { expectedWeightShapes } from "../model/ModelConfig.js"
import type { ResolvedBackend } from "../TensorRuntime.js"
import type { TokenizedExample } from "./Loss.js"
import { abortSharedReduce, makeSharedReduce, type SharedReduceBuffers } from "./SharedReduce.js"
import { resolvePlan, type StepProgress, trainFull, TrainingError, type TrainOptions } from "./Trainer.js"

/** What a window of steps did. */
export interface TrainWindow {
  readonly steps: ReadonlyArray<StepProgress>
  readonly inputTokens: number
  readonly seconds: number
  /** The plan step the next window starts at. */
  readonly nextStep: number
}

export interface TrainState {
  readonly weights: WeightMap
  /** AdamW moments (`trainFull`'s layout); undefined before the first step. */
  readonly moments: WeightMap | undefined
}

export interface FullStepTrainer {
  /** Trains plan steps `[startStep, endStep)` from the current state. */
  readonly train: (startStep: number, endStep: number) => Effect.Effect<TrainWindow, TrainingError>
  /** The current weights and moments (at a checkpoint). */
  readonly state: Effect.Effect<TrainState, TrainingError>
  /** Replicas training at once (1 in this process). */
  readonly replicas: number
}

/** `trainFull`'s options that cross a thread boundary: plain data, no callbacks. */
export type PortableTrainOptions = Omit<TrainOptions, "onStep" | "stopWhen" | "shard" | "startStep" | "endStep">

export interface FullStepTrainerOptions {
  readonly config: ModelConfig
  readonly examples: ReadonlyArray<TokenizedExample>
  readonly options: PortableTrainOptions
  readonly initial: TrainState
}

const asTrainingError = (e: unknown): TrainingError =>
  e instanceof TrainingError ? e : new TrainingError({ reason: "Backend", detail: String(e) })

/** `trainFull` in this process, window by window, carrying the state between windows. */
export const localStepTrainer = (options: FullStepTrainerOptions): FullStepTrainer => {
  let state = options.initial
  return {
    replicas: 1,
    state: Effect.sync(() => state),
    train: (startStep, endStep) =>
      Effect.try({
        try: () => {
          const steps: Array<StepProgress> = []
          const result = trainFull(options.config, state.weights, options.examples, {
            ...options.options,
            startStep,
            endStep,
            moments: state.moments,
            onStep: (p) => steps.push(p)
          })
          state = { weights: result.weights, moments: result.moments }
          return { steps, inputTokens: result.inputTokens, seconds: result.seconds, nextStep: result.nextStep }
        },
        catch: asTrainingError
      })
  }
}

// ---------------------------------------------------------------------------------------------
// Worker threads

/** The first message a training worker gets. */
export interface TrainWorkerInit {
  readonly type: "init"
  readonly rank: number
  readonly backend: ResolvedBackend
  readonly config: ModelConfig
  readonly examples: ReadonlyArray<TokenizedExample>
  readonly options: PortableTrainOptions
  readonly initial: TrainState
  readonly reduce: SharedReduceBuffers
}

export type TrainWorkerRequest =
  | TrainWorkerInit
  | { readonly type: "train"; readonly startStep: number; readonly endStep: number }
  | { readonly type: "state" }

export type TrainWorkerReply =
  | { readonly type: "ready" }
  | { readonly type: "trained"; readonly window: TrainWindow }
  | { readonly type: "state"; readonly state: TrainState }
  | { readonly type: "failed"; readonly error: EncodedError }

const workerScript = Path.join(Path.dirname(fileURLToPath(import.meta.url)), "worker", "train-worker.mjs")

/** A failure a worker reported, as the `TrainingError` it was (or a Backend one naming it). */
const restore = (error: EncodedError): TrainingError =>
  error.tag === "TrainingError"
    ? new TrainingError(error.fields as ConstructorParameters<typeof TrainingError>[0])
    : new TrainingError({ reason: "Backend", detail: `in a training worker: ${error.tag}: ${error.message}` })

interface Replica {
  readonly worker: Worker
  /** Sends a request and waits for its reply (one at a time per replica). */
  readonly ask: (request: TrainWorkerRequest) => Promise<TrainWorkerReply>
}

const startReplica = (init: TrainWorkerInit, onFailure: () => void): Promise<Replica> =>
  new Promise((resolveStart, rejectStart) => {
    const worker = new Worker(workerScript)
    let pending: { resolve: (reply: TrainWorkerReply) => void } | undefined
    let dead: TrainWorkerReply | undefined
    const settle = (reply: TrainWorkerReply) => {
      const waiting = pending
      pending = undefined
      waiting?.resolve(reply)
    }
    const fail = (detail: string) => {
      dead = { type: "failed", error: { tag: "Defect", message: detail, fields: {} } }
      onFailure()
      settle(dead)
      rejectStart(restore(dead.error))
    }
    worker.on("error", (e) => fail(`worker ${init.rank}: ${e instanceof Error ? e.message : String(e)}`))
    worker.on("exit", (code) => fail(`worker ${init.rank} exited (code ${code})`))
    worker.on("message", (reply: TrainWorkerReply) => {
      if (reply.type === "ready") {
        resolveStart({
          worker,
          ask: (request) =>
            new Promise((resolve) => {
              if (dead !== undefined) return resolve(dead)
              pending = { resolve }
              worker.postMessage(request)
            })
        })
        return
      }
      if (reply.type === "failed") onFailure()
      if (pending === undefined && reply.type === "failed") rejectStart(restore(reply.error))
      settle(reply)
    })
    worker.postMessage(init)
  })

/**
 * `workers` replicas of full training, each a worker thread on `backend`, started in the scope
 * and terminated when it closes. Fails with the first replica's error (a replica that stopped
 * because another failed does not hide the cause).
 */
export const dataParallelStepTrainer = (
  options: FullStepTrainerOptions & { readonly workers: number; readonly backend: ResolvedBackend }
): Effect.Effect<FullStepTrainer, TrainingError, Scope.Scope> =>
  Effect.gen(function*() {
    if (!(Number.isInteger(options.workers) && options.workers >= 1)) {
      return yield* new TrainingError({ reason: "BadOptions", detail: `workers must be >= 1, got ${options.workers}` })
    }
    const plan = resolvePlan(options.examples.length, options.options)
    const slots = Math.max(1, ...plan.map((step) => step.microBatches.length))
    const length = [...expectedWeightShapes(options.config).values()]
      .reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 1)
    const reduce = makeSharedReduce(options.workers, slots, length)
    const replicas = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const started = await Promise.allSettled(
            Array.from({ length: options.workers }, (_, rank) =>
              startReplica({
                type: "init",
                rank,
                backend: options.backend,
                config: options.config,
                examples: options.examples,
                options: options.options,
                initial: options.initial,
                reduce
              }, () => abortSharedReduce(reduce)))
          )
          const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected")
          if (failed === undefined) return started.map((s) => (s as PromiseFulfilledResult<Replica>).value)
          // One did not start: the others must not outlive the attempt.
          await Promise.all(started.flatMap((s) => (s.status === "fulfilled" ? [s.value.worker.terminate()] : [])))
          throw failed.reason
        },
        catch: asTrainingError
      }),
      (started) => Effect.promise(() => Promise.all(started.map((r) => r.worker.terminate())))
    )
    /** Every replica's reply to `request`: rank 0's, or the first real failure. */
    const everyone = (request: TrainWorkerRequest, who: ReadonlyArray<Replica>) =>
      Effect.tryPromise({ try: () => Promise.all(who.map((r) => r.ask(request))), catch: asTrainingError }).pipe(
        Effect.flatMap((replies) => {
          const failures = replies.flatMap((reply) => (reply.type === "failed" ? [reply.error] : []))
          // A replica woken by the abort stopped because of another's failure: report that one.
          const cause = failures.find((e) => e.tag !== "ReduceAborted") ?? failures[0]
          return cause === undefined ? Effect.succeed(replies[0]!) : Effect.fail(restore(cause))
        })
      )
    return {
      replicas: options.workers,
      train: (startStep, endStep) =>
        everyone({ type: "train", startStep, endStep }, replicas).pipe(
          Effect.map((reply) => (reply as Extract<TrainWorkerReply, { type: "trained" }>).window)
        ),
      state: everyone({ type: "state" }, replicas.slice(0, 1)).pipe(
        Effect.map((reply) => (reply as Extract<TrainWorkerReply, { type: "state" }>).state)
      )
    }
  })
