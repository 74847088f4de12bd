/**
 * The body of an ARC worker thread: loads the model on its own tfjs backend, says `ready` (or why
 * it could not start), then runs the units it is sent, one at a time, replying with the outcomes
 * or the typed error.
 */
import { encodeError } from "@seal/gpu/EncodedError"
import * as LanguageModel from "@seal/gpu/LanguageModel"
import * as LoraTrainer from "@seal/gpu/LoraTrainer"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import { Cause, Effect, Exit, Layer, ManagedRuntime } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { solveUnit } from "../ArcInnerLoop.js"
import type { WorkerData, WorkerReply, WorkerRequest } from "../ArcWorkerProtocol.js"

const port = parentPort!
const data = workerData as WorkerData
const reply = (message: WorkerReply) => port.postMessage(message)

const runtime = ManagedRuntime.make(
  LoraTrainer.layer.pipe(
    Layer.provideMerge(LanguageModel.layer(data.modelDir)),
    Layer.provideMerge(TensorRuntime.layer({ backend: data.backend }))
  )
)

/** A typed failure as itself; a defect or interruption as an error carrying the whole cause. */
const failureOf = (cause: Cause.Cause<unknown>): unknown =>
  cause._tag === "Fail" ? cause.error : new Error(Cause.pretty(cause))

const started = await runtime.runPromiseExit(Effect.void)
if (Exit.isFailure(started)) {
  reply({ type: "startupFailed", error: encodeError(failureOf(started.cause)) })
} else {
  // Units run in arrival order; a message that comes while one runs waits its turn.
  let queue = Promise.resolve()
  port.on("message", (request: WorkerRequest) => {
    queue = queue.then(async () => {
      const exit = await runtime.runPromiseExit(solveUnit(request.items, request.config))
      if (Exit.isSuccess(exit)) return reply({ type: "done", id: request.id, outcomes: exit.value })
      reply({ type: "failed", id: request.id, error: encodeError(failureOf(exit.cause)) })
    })
  })
  reply({ type: "ready" })
}
