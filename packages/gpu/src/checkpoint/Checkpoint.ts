import type { ModelConfig, WeightMap } from "../model/ModelConfig.js"
import type { Tokenizer } from "../tokenizer/Tokenizer.js"

/** A checkpoint decoded into host memory: what the transformer needs to run. */
export interface LoadedCheckpoint {
  readonly config: ModelConfig
  readonly weights: WeightMap
  readonly tokenizer: Tokenizer
  readonly source: { readonly format: "gguf" | "hf"; readonly path: string }
}
