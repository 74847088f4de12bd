import * as tf from "@tensorflow/tfjs-core"
import type { GridCursor } from "./GridPositions.js"
import { placeBatch } from "./GridPositions.js"
import type { ModelConfig, WeightMap } from "./ModelConfig.js"
import { expectedWeightShapes, WeightNames } from "./ModelConfig.js"

/**
 * A Llama-family decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU) over tfjs tensors,
 * in the spirit of nanoGPT's model.py: plain functions, no framework classes.
 *
 * Projection weights live on the device transposed to `[in, out]`, so the hot matmuls are the
 * untransposed `x @ W` that every backend runs fastest. Adapters (LoRA) hook in through
 * `ProjectionHook`, which sees each projection's input and may add a delta to its output.
 */

export type ProjectionName = "q" | "k" | "v" | "o" | "gate" | "up" | "down"
export const projectionNames: ReadonlyArray<ProjectionName> = ["q", "k", "v", "o", "gate", "up", "down"]

export interface LayerWeights {
  readonly inputNorm: tf.Tensor1D
  readonly postAttentionNorm: tf.Tensor1D
  /** `[in, out]` */
  readonly proj: Readonly<Record<ProjectionName, tf.Tensor2D>>
  readonly qBias?: tf.Tensor1D
  readonly kBias?: tf.Tensor1D
  readonly vBias?: tf.Tensor1D
}

export interface TransformerWeights {
  readonly config: ModelConfig
  /** `[vocab, d]` */
  readonly embed: tf.Tensor2D
  readonly finalNorm: tf.Tensor1D
  /** `[d, vocab]`; for tied embeddings, the transposed embedding. */
  readonly lmHead: tf.Tensor2D
  readonly layers: ReadonlyArray<LayerWeights>
  /** Row, column and segment embeddings `[n, d]`, present when `config.gridPositions` is. */
  readonly grid?: GridEmbeddings | undefined
  /** RoPE tables `[maxPositions, headDim]` (each frequency repeated for both halves). */
  readonly ropeCos: tf.Tensor2D
  readonly ropeSin: tf.Tensor2D
}

export type GridTable = keyof typeof WeightNames.grid
export type GridEmbeddings = Readonly<Record<GridTable, tf.Tensor2D>>

/** Each grid table with its canonical weight name. */
export const gridTableNames = Object.entries(WeightNames.grid) as ReadonlyArray<readonly [GridTable, string]>

/** One value per grid table, made from the table's key and canonical weight name. */
export const gridTables = <T>(make: (table: GridTable, name: string) => T): Record<GridTable, T> =>
  Object.fromEntries(gridTableNames.map(([table, name]) => [table, make(table, name)])) as Record<GridTable, T>

/**
 * Per-projection extra output, e.g. a LoRA delta `(x @ A^T) @ B^T * scale`. `x` is the
 * projection's input `[..., in]`; return a tensor of the projection's output shape, or undefined.
 */
export type ProjectionHook = (layer: number, projection: ProjectionName, x: tf.Tensor) => tf.Tensor | undefined

/** Uploads host weights; the caller owns the result and frees it with `disposeTransformerWeights`. */
export const createTransformerWeights = (config: ModelConfig, weights: WeightMap): TransformerWeights => {
  const shapes = expectedWeightShapes(config)
  const created: Array<tf.Tensor> = []
  const keep = <T extends tf.Tensor>(t: T): T => {
    created.push(t)
    return t
  }
  const hostTensor = (name: string) => {
    const host = weights.get(name)
    const shape = shapes.get(name)
    if (host === undefined || shape === undefined) throw new Error(`missing weight ${name}`)
    if (host.shape.join(",") !== shape.join(",")) {
      throw new Error(`weight ${name} has shape [${host.shape}] but the config implies [${shape}]`)
    }
    return host
  }
  const upload = (name: string) => {
    const host = hostTensor(name)
    return keep(tf.tensor(host.data, [...host.shape], "float32"))
  }
  const transposed = (name: string) => {
    const host = hostTensor(name)
    return keep(tf.tidy(() => tf.transpose(tf.tensor2d(host.data, [host.shape[0]!, host.shape[1]!]))))
  }
  try {
    const embed = upload(WeightNames.embed) as tf.Tensor2D
    const layers: Array<LayerWeights> = []
    for (let i = 0; i < config.numLayers; i++) {
      const n = WeightNames.layer(i)
      layers.push({
        inputNorm: upload(n.inputNorm) as tf.Tensor1D,
        postAttentionNorm: upload(n.postAttentionNorm) as tf.Tensor1D,
        proj: {
          q: transposed(n.q),
          k: transposed(n.k),
          v: transposed(n.v),
          o: transposed(n.o),
          gate: transposed(n.gate),
          up: transposed(n.up),
          down: transposed(n.down)
        },
        ...(config.attentionBias
          ? {
            qBias: upload(n.qBias) as tf.Tensor1D,
            kBias: upload(n.kBias) as tf.Tensor1D,
            vBias: upload(n.vBias) as tf.Tensor1D
          }
          : {})
      })
    }
    const { cos, sin } = ropeTables(config)
    const grid = config.gridPositions === undefined
      ? undefined
      : gridTables((_, name) => upload(name) as tf.Tensor2D)
    return {
      config,
      embed,
      ...(grid === undefined ? {} : { grid }),
      finalNorm: upload(WeightNames.finalNorm) as tf.Tensor1D,
      lmHead: config.tieEmbeddings ? keep(tf.transpose(embed)) : transposed(WeightNames.lmHead),
      layers,
      ropeCos: keep(tf.tensor2d(cos, [config.maxPositions, config.headDim])),
      ropeSin: keep(tf.tensor2d(sin, [config.maxPositions, config.headDim]))
    }
  } catch (e) {
    for (const t of created) t.dispose()
    throw e
  }
}

export const transformerTensors = (w: TransformerWeights): Array<tf.Tensor> => [
  w.embed,
  w.finalNorm,
  w.lmHead,
  w.ropeCos,
  w.ropeSin,
  ...(w.grid === undefined ? [] : Object.values(w.grid)),
  ...w.layers.flatMap((l) => [
    l.inputNorm,
    l.postAttentionNorm,
    ...projectionNames.map((p) => l.proj[p]),
    ...[l.qBias, l.kBias, l.vBias].filter((t): t is tf.Tensor1D => t !== undefined)
  ])
]

export const disposeTransformerWeights = (w: TransformerWeights): void => {
  for (const t of transformerTensors(w)) t.dispose()
}

/**
 * cos/sin for `rotate_half` RoPE, computed in float64 on the host so that positions far into
 * the context keep full float32 precision.
 */
export const ropeTables = (config: ModelConfig): { cos: Float32Array; sin: Float32Array } => {
  const { headDim, maxPositions, ropeTheta } = config
  const half = headDim / 2
  const cos = new Float32Array(maxPositions * headDim)
  const sin = new Float32Array(maxPositions * headDim)
  for (let pos = 0; pos < maxPositions; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos / Math.pow(ropeTheta, (2 * i) / headDim)
      const c = Math.cos(angle)
      const s = Math.sin(angle)
      cos[pos * headDim + i] = c
      cos[pos * headDim + i + half] = c
      sin[pos * headDim + i] = s
      sin[pos * headDim + i + half] = s
    }
  }
  return { cos, sin }
}

export const rmsNorm = (x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor =>
  tf.tidy(() => {
    const meanSquare = tf.mean(tf.square(x), -1, true)
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight)
  })

/** `x [B, H, T, hd]` rotated by the per-row tables `cos, sin [B, 1, T, hd]`. */
const applyRope = (x: tf.Tensor4D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor4D =>
  tf.tidy(() => {
    const half = x.shape[3] / 2
    const [x1, x2] = tf.split(x, [half, half], 3)
    const rotated = tf.concat([tf.neg(x2!), x1!], 3)
    return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D
  })

/** Keys and values of the positions seen so far, per layer: `[B, Hkv, S, hd]`. */
export interface KvCache {
  readonly keys: ReadonlyArray<tf.Tensor4D>
  readonly values: ReadonlyArray<tf.Tensor4D>
  readonly length: number
  /** Per row, where the next token sits on the grid (models with `gridPositions`). */
  readonly grid?: ReadonlyArray<GridCursor> | undefined
}

export const disposeKvCache = (cache: KvCache): void => {
  for (const t of cache.keys) t.dispose()
  for (const t of cache.values) t.dispose()
}

export interface ForwardInput {
  /** `[B, T]` int32 token ids. */
  readonly ids: tf.Tensor2D
  /** `[B, T]` int32 RoPE positions (per row, so left-padded rows start at 0). */
  readonly positions: tf.Tensor2D
  /** `[B, 1, T, S]` additive attention mask over the S = cache + T key slots (0 or a large negative). */
  readonly mask: tf.Tensor4D
  readonly cache?: KvCache | undefined
  readonly hook?: ProjectionHook | undefined
  /** Return logits only for the last position (generation) instead of all `T` (training). */
  readonly lastOnly?: boolean | undefined
}

export interface ForwardOutput {
  /** `[B, T, vocab]`, or `[B, 1, vocab]` with `lastOnly`. */
  readonly logits: tf.Tensor3D
  /** The cache extended with this call's keys and values (new tensors; the input cache is untouched). */
  readonly cache: KvCache
}

/**
 * One forward pass. Pure with respect to its inputs: call it inside `tf.tidy` and `tf.keep` what
 * you need from the output (or use `forwardKept`).
 */
export const forward = (w: TransformerWeights, input: ForwardInput): ForwardOutput => {
  const { config } = w
  const { numHeads, numKvHeads, headDim, rmsNormEps } = config
  const [batch, steps] = input.ids.shape
  const groups = numHeads / numKvHeads
  const scale = 1 / Math.sqrt(headDim)

  const project = (layer: number, name: ProjectionName, x: tf.Tensor, bias?: tf.Tensor1D): tf.Tensor => {
    const weight = w.layers[layer]!.proj[name]
    const flat = tf.reshape(x, [-1, x.shape[x.shape.length - 1]!])
    let y: tf.Tensor = tf.matMul(flat as tf.Tensor2D, weight)
    y = tf.reshape(y, [...x.shape.slice(0, -1), weight.shape[1]])
    if (bias !== undefined) y = tf.add(y, bias)
    const delta = input.hook?.(layer, name, x)
    return delta === undefined ? y : tf.add(y, delta)
  }

  const cos = tf.expandDims(tf.gather(w.ropeCos, input.positions), 1)
  const sin = tf.expandDims(tf.gather(w.ropeSin, input.positions), 1)
  const toHeads = (x: tf.Tensor, heads: number) =>
    tf.transpose(tf.reshape(x, [batch, steps, heads, headDim]), [0, 2, 1, 3]) as tf.Tensor4D
  // [B, Hkv, S, hd] -> [B, H, S, hd]: each kv head serves `groups` query heads.
  const repeatKv = (x: tf.Tensor4D): tf.Tensor4D => {
    if (groups === 1) return x
    const [b, h, s, d] = x.shape
    return tf.reshape(tf.tile(tf.reshape(x, [b, h, 1, s, d]), [1, 1, groups, 1, 1]), [b, h * groups, s, d])
  }

  let hidden: tf.Tensor = tf.gather(w.embed, input.ids)
  let gridCursors: ReadonlyArray<GridCursor> | undefined
  if (w.grid !== undefined && config.gridPositions !== undefined) {
    // Places follow from the ids (and, with a cache, the cursor after the cached tokens); ids
    // are small int tensors, so reading them back costs little next to the forward pass.
    const placed = placeBatch(config.gridPositions, input.ids.dataSync(), [batch, steps], input.cache?.grid)
    gridCursors = placed.cursors
    const lookup = (table: tf.Tensor2D, index: Int32Array) =>
      tf.gather(table, tf.tensor2d(index, [batch, steps], "int32"))
    const grid = w.grid
    hidden = tf.addN([hidden, ...gridTableNames.map(([table]) => lookup(grid[table], placed.indices[table]))])
  }
  const keys: Array<tf.Tensor4D> = []
  const values: Array<tf.Tensor4D> = []
  for (let i = 0; i < config.numLayers; i++) {
    const layer = w.layers[i]!
    const h = rmsNorm(hidden, layer.inputNorm, rmsNormEps)
    const q = applyRope(toHeads(project(i, "q", h, layer.qBias), numHeads), cos, sin)
    let k = applyRope(toHeads(project(i, "k", h, layer.kBias), numKvHeads), cos, sin)
    let v = toHeads(project(i, "v", h, layer.vBias), numKvHeads)
    if (input.cache !== undefined) {
      k = tf.concat([input.cache.keys[i]!, k], 2)
      v = tf.concat([input.cache.values[i]!, v], 2)
    }
    keys.push(k)
    values.push(v)
    const scores = tf.add(tf.mul(tf.matMul(q, repeatKv(k), false, true), scale), input.mask)
    const attention = tf.matMul(tf.softmax(scores), repeatKv(v)) // [B, H, T, hd]
    const merged = tf.reshape(tf.transpose(attention, [0, 2, 1, 3]), [batch, steps, numHeads * headDim])
    hidden = tf.add(hidden, project(i, "o", merged))

    const h2 = rmsNorm(hidden, layer.postAttentionNorm, rmsNormEps)
    const gated = tf.mul(silu(project(i, "gate", h2)), project(i, "up", h2))
    hidden = tf.add(hidden, project(i, "down", gated))
  }
  if (input.lastOnly === true) hidden = tf.slice(hidden, [0, steps - 1, 0], [batch, 1, -1])
  const normed = rmsNorm(hidden, w.finalNorm, rmsNormEps)
  const rows = normed.shape[1]!
  const logits = tf.reshape(
    tf.matMul(tf.reshape(normed, [-1, config.hiddenSize]) as tf.Tensor2D, w.lmHead),
    [batch, rows, config.vocabSize]
  ) as tf.Tensor3D
  const length = (input.cache?.length ?? 0) + steps
  return { logits, cache: { keys, values, length, ...(gridCursors === undefined ? {} : { grid: gridCursors }) } }
}

const silu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(x))

/** `forward` inside its own `tf.tidy`, keeping only the logits and the new cache. */
export const forwardKept = (w: TransformerWeights, input: ForwardInput): ForwardOutput => {
  let grid: ReadonlyArray<GridCursor> | undefined
  const kept = tf.tidy(() => {
    const out = forward(w, input)
    grid = out.cache.grid
    return { logits: out.logits, keys: [...out.cache.keys], values: [...out.cache.values] }
  })
  const length = (input.cache?.length ?? 0) + input.ids.shape[1]
  return {
    logits: kept.logits,
    cache: { keys: kept.keys, values: kept.values, length, ...(grid === undefined ? {} : { grid }) }
  }
}
