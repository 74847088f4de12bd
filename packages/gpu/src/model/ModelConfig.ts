/**
 * The shape of a decoder-only Llama-family transformer, whatever file it came from.
 *
 * Weights always use the Hugging Face layout and names (see `WeightNames`): projections are
 * `[out, in]`, and RoPE rotates the two halves of each head (`rotate_half`). Loaders convert
 * other layouts (GGUF's interleaved q/k rows) into this one, so adapters saved in the PEFT
 * layout line up with the same rows whatever the checkpoint format was.
 */
export interface ModelConfig {
  readonly architecture: "llama" | "qwen2"
  readonly vocabSize: number
  readonly hiddenSize: number
  readonly intermediateSize: number
  readonly numLayers: number
  readonly numHeads: number
  readonly numKvHeads: number
  readonly headDim: number
  readonly maxPositions: number
  readonly rmsNormEps: number
  readonly ropeTheta: number
  /** Whether `lm_head` is the transposed token embedding. */
  readonly tieEmbeddings: boolean
  /** Qwen2 has biases on q, k and v. */
  readonly attentionBias: boolean
  /**
   * A seal-ts extension for grid-shaped text (ARC): learnt embeddings of each token's row, column
   * and segment, added to its token embedding (see `GridPositions.ts`). Absent in every
   * Hugging Face or GGUF model.
   */
  readonly gridPositions?: GridPositions | undefined
}

/** How tokens are placed on a grid: which token ends a row and which start a new grid. */
export interface GridPositions {
  readonly rowEndId: number
  /** Tokens that start segment `index + 1` (segment 0 is before any), each at row 0, column 0. */
  readonly segmentStartIds: ReadonlyArray<number>
  /** Embedded rows and columns; a larger index shares the last embedding. */
  readonly maxRows: number
  readonly maxColumns: number
}

/** A tensor held in host memory, row-major, float32. */
export interface HostTensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

/** Canonical (Hugging Face) weight names keyed to host tensors. */
export type WeightMap = ReadonlyMap<string, HostTensor>

export const WeightNames = {
  embed: "model.embed_tokens.weight",
  finalNorm: "model.norm.weight",
  lmHead: "lm_head.weight",
  /** The grid-position tables (`ModelConfig.gridPositions`). */
  grid: {
    rows: "model.embed_grid_rows.weight",
    columns: "model.embed_grid_columns.weight",
    segments: "model.embed_grid_segments.weight"
  },
  layer: (i: number) => ({
    inputNorm: `model.layers.${i}.input_layernorm.weight`,
    postAttentionNorm: `model.layers.${i}.post_attention_layernorm.weight`,
    q: `model.layers.${i}.self_attn.q_proj.weight`,
    k: `model.layers.${i}.self_attn.k_proj.weight`,
    v: `model.layers.${i}.self_attn.v_proj.weight`,
    o: `model.layers.${i}.self_attn.o_proj.weight`,
    qBias: `model.layers.${i}.self_attn.q_proj.bias`,
    kBias: `model.layers.${i}.self_attn.k_proj.bias`,
    vBias: `model.layers.${i}.self_attn.v_proj.bias`,
    gate: `model.layers.${i}.mlp.gate_proj.weight`,
    up: `model.layers.${i}.mlp.up_proj.weight`,
    down: `model.layers.${i}.mlp.down_proj.weight`
  })
} as const

/** The shape every canonical weight must have under `config`; loaders check against it. */
export const expectedWeightShapes = (config: ModelConfig): Map<string, ReadonlyArray<number>> => {
  const { hiddenSize: d, intermediateSize: f, numHeads, numKvHeads, headDim, vocabSize } = config
  const shapes = new Map<string, ReadonlyArray<number>>()
  shapes.set(WeightNames.embed, [vocabSize, d])
  shapes.set(WeightNames.finalNorm, [d])
  if (!config.tieEmbeddings) shapes.set(WeightNames.lmHead, [vocabSize, d])
  const grid = config.gridPositions
  if (grid !== undefined) {
    shapes.set(WeightNames.grid.rows, [grid.maxRows, d])
    shapes.set(WeightNames.grid.columns, [grid.maxColumns, d])
    shapes.set(WeightNames.grid.segments, [grid.segmentStartIds.length + 1, d])
  }
  for (let i = 0; i < config.numLayers; i++) {
    const n = WeightNames.layer(i)
    shapes.set(n.inputNorm, [d])
    shapes.set(n.postAttentionNorm, [d])
    shapes.set(n.q, [numHeads * headDim, d])
    shapes.set(n.k, [numKvHeads * headDim, d])
    shapes.set(n.v, [numKvHeads * headDim, d])
    shapes.set(n.o, [d, numHeads * headDim])
    if (config.attentionBias) {
      shapes.set(n.qBias, [numHeads * headDim])
      shapes.set(n.kBias, [numKvHeads * headDim])
      shapes.set(n.vBias, [numKvHeads * headDim])
    }
    shapes.set(n.gate, [f, d])
    shapes.set(n.up, [f, d])
    shapes.set(n.down, [d, f])
  }
  return shapes
}
