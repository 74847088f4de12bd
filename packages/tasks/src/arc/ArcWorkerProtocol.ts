/**
 * The messages between `ArcSolver.layerWorkers` and its worker threads (`worker/ArcWorkerMain.ts`).
 * Typed errors cross the thread boundary as their tag and fields and are rebuilt on this side, so
 * a worker's `TrainingError` is the same `TrainingError` the in-process solver would fail with.
 */
import type { EncodedError } from "@seal/gpu/EncodedError"
import { GenerationError } from "@seal/gpu/LanguageModel"
import { LoraConfigError } from "@seal/gpu/lora/LoraAdapter"
import type { ResolvedBackend } from "@seal/gpu/TensorRuntime"
import { TrainingError } from "@seal/gpu/train/Trainer"
import type { ArcInnerLoopConfig, ArcItem, ArcOutcome } from "./ArcInnerLoop.js"

export interface WorkerData {
  readonly modelDir: string
  readonly backend: ResolvedBackend
}

/** One unit of `planArcWork`. */
export interface WorkerRequest {
  readonly id: number
  readonly items: ReadonlyArray<ArcItem>
  readonly config: ArcInnerLoopConfig
}

export type WorkerReply =
  | { readonly type: "ready" }
  | { readonly type: "startupFailed"; readonly error: EncodedError }
  | { readonly type: "done"; readonly id: number; readonly outcomes: Array<ArcOutcome> }
  | { readonly type: "failed"; readonly id: number; readonly error: EncodedError }

/** The inner loop's own errors, rebuilt; anything else is a `TrainingError` of the backend, naming what it was. */
export const restoreError = (error: EncodedError): TrainingError | LoraConfigError | GenerationError => {
  switch (error.tag) {
    case "TrainingError":
      return new TrainingError(error.fields as ConstructorParameters<typeof TrainingError>[0])
    case "LoraConfigError":
      return new LoraConfigError(error.fields as ConstructorParameters<typeof LoraConfigError>[0])
    case "GenerationError":
      return new GenerationError(error.fields as ConstructorParameters<typeof GenerationError>[0])
    default:
      return new TrainingError({ reason: "Backend", detail: `in an ARC worker: ${error.tag}: ${error.message}` })
  }
}
