/**
 * The body of a data-parallel training worker: sets up its tfjs backend, keeps one replica of the
 * weights and moments, and trains the windows it is sent on its shard of every step, exchanging
 * gradients with the other replicas through shared memory (`SharedReduce.ts`).
 */
import { Cause, Effect, Exit } from "effect"
import { parentPort } from "node:worker_threads"
import { encodeError } from "../../EncodedError.js"
import * as TensorRuntime from "../../TensorRuntime.js"
import type { TrainState, TrainWorkerInit, TrainWorkerReply, TrainWorkerRequest } from "../DataParallel.js"
import { sharedExchange } from "../SharedReduce.js"
import { type StepProgress, trainFull } from "../Trainer.js"

const port = parentPort!
const reply = (message: TrainWorkerReply) => port.postMessage(message)

let init: TrainWorkerInit | undefined
let state: TrainState | undefined

port.on("message", async (request: TrainWorkerRequest) => {
  try {
    if (request.type === "init") {
      const started = await Effect.runPromiseExit(
        Effect.asVoid(TensorRuntime.TensorRuntime).pipe(
          Effect.provide(TensorRuntime.layer({ backend: request.backend }))
        )
      )
      if (Exit.isFailure(started)) {
        throw new Error(`backend ${request.backend} did not start: ${Cause.pretty(started.cause)}`)
      }
      init = request
      state = request.initial
      return reply({ type: "ready" })
    }
    if (init === undefined || state === undefined) throw new Error("a request before init")
    if (request.type === "state") return reply({ type: "state", state })
    const steps: Array<StepProgress> = []
    const exchange = sharedExchange(init.reduce).exchange
    const result = trainFull(init.config, state.weights, init.examples, {
      ...init.options,
      startStep: request.startStep,
      endStep: request.endStep,
      moments: state.moments,
      shard: { rank: init.rank, replicas: init.reduce.replicas, exchange },
      onStep: (p) => steps.push(p)
    })
    state = { weights: result.weights, moments: result.moments }
    reply({
      type: "trained",
      window: { steps, inputTokens: result.inputTokens, seconds: result.seconds, nextStep: result.nextStep }
    })
  } catch (error) {
    reply({ type: "failed", error: encodeError(error) })
  }
})
