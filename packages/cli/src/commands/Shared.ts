import { Options } from "@effect/cli"
import { TensorRuntime } from "@seal/gpu"
import * as Os from "node:os"
import { bundledModelPath } from "../Defaults.js"

export const modelOption = Options.text("model").pipe(
  Options.withDescription("A .gguf file or a Hugging Face model directory (default: the bundled stories260K.gguf)"),
  Options.withDefault(bundledModelPath)
)

export const backendOption = Options.choice("backend", ["auto", "node-gpu", "node", "wasm", "cpu"]).pipe(
  Options.withDescription("tfjs backend: auto picks tfjs-node-gpu > tfjs-node > wasm > cpu"),
  Options.withDefault("auto" as const)
)

export const runtimeLayer = (backend: TensorRuntime.BackendChoice) => TensorRuntime.layer({ backend })

/** Where and how long a command ran: the head of every `timings.json`. */
export const runEnvironment = (backend: string, begin: number) => ({
  backend,
  machine: { cpus: Os.cpus().length, cpu: Os.cpus()[0]?.model ?? "unknown" },
  wallSecondsThisProcess: (performance.now() - begin) / 1000
})
