import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import type { ModelConfig, WeightMap } from "../model/ModelConfig.js"
import type { Tokenizer } from "../tokenizer/Tokenizer.js"
import { CheckpointError } from "./CheckpointError.js"
import { loadGguf } from "./Gguf.js"
import { loadHfDirectory } from "./HfDirectory.js"
/** A checkpoint decoded into host memory: what the transformer needs to run. */
export interface LoadedCheckpoint {
  readonly config: ModelConfig
  readonly weights: WeightMap
  readonly tokenizer: Tokenizer
  readonly source: { readonly format: "gguf" | "hf"; readonly path: string }
}

/**
 * Opens whatever `path` names: a `.gguf` file (or any file starting with the GGUF magic) or a
 * Hugging Face directory (`config.json` + safetensors + `tokenizer.json`).
 */
export const loadCheckpoint = (path: string): Effect.Effect<LoadedCheckpoint, CheckpointError> =>
  Effect.gen(function*() {
    const stat = yield* Effect.tryPromise({
      try: () => fs.stat(path),
      catch: () => new CheckpointError({ file: path, reason: "NotFound", detail: "no such file or directory" })
    })
    if (stat.isDirectory()) return yield* loadHfDirectory(path)
    const magic = yield* Effect.tryPromise({
      try: async () => {
        const handle = await fs.open(path, "r")
        try {
          const buffer = Buffer.alloc(4)
          const { bytesRead } = await handle.read(buffer, 0, 4, 0)
          return buffer.subarray(0, bytesRead).toString("latin1")
        } finally {
          await handle.close()
        }
      },
      catch: (e) => new CheckpointError({ file: path, reason: "NotFound", detail: String(e) })
    })
    if (magic === "GGUF" || path.endsWith(".gguf")) return yield* loadGguf(path)
    if (path.endsWith(".safetensors")) return yield* loadHfDirectory(nodePath.dirname(path))
    return yield* new CheckpointError({
      file: path,
      reason: "Malformed",
      detail: "not a GGUF file (magic \"GGUF\") nor a Hugging Face model directory"
    })
  })
