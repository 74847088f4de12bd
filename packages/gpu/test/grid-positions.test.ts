import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { loadHfDirectory, parseHfConfig, writeHfDirectory } from "../src/checkpoint/HfDirectory.js"
import { generate } from "../src/model/Generate.js"
import { gridStart, placeBatch, placeTokens } from "../src/model/GridPositions.js"
import { initWeights } from "../src/model/InitWeights.js"
import type { GridPositions, WeightMap } from "../src/model/ModelConfig.js"
import { WeightNames } from "../src/model/ModelConfig.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { createTransformerWeights, disposeTransformerWeights, forward } from "../src/model/Transformer.js"
import { tinyLlama, useCpuBackend } from "../src/testing/TinyModel.js"
import { trainFull } from "../src/train/Trainer.js"

// Ids: 1 BOS, 3 row end, 4 "in", 5 "out", 6.. cells.
const scheme: GridPositions = { rowEndId: 3, segmentStartIds: [1, 4, 5], maxRows: 4, maxColumns: 5 }
const config = tinyLlama({ hiddenSize: 16, vocabSize: 20, gridPositions: scheme })

const place = (ids: ReadonlyArray<number>) => {
  const out = {
    rows: new Int32Array(ids.length),
    columns: new Int32Array(ids.length),
    segments: new Int32Array(ids.length)
  }
  const cursor = placeTokens(scheme, ids, 0, ids.length, gridStart, out)
  return { rows: [...out.rows], columns: [...out.columns], segments: [...out.segments], cursor }
}

const causalLogits = (w: TransformerWeights, ids: ReadonlyArray<number>): Float32Array =>
  tf.tidy(() => {
    const steps = ids.length
    const mask = new Float32Array(steps * steps)
    for (let t = 0; t < steps; t++) for (let s = 0; s < steps; s++) mask[t * steps + s] = s <= t ? 0 : -1e9
    const out = forward(w, {
      ids: tf.tensor2d([...ids], [1, steps], "int32"),
      positions: tf.tensor2d(Array.from({ length: steps }, (_, i) => i), [1, steps], "int32"),
      mask: tf.tensor4d(mask, [1, 1, steps, steps])
    })
    return out.logits.dataSync() as Float32Array
  })

describe("grid positions", () => {
  it("places cells by row and column within each segment, row ends after the last cell", () => {
    // <s> in 6 7 \n 8 9 \n out 6 \n
    const placed = place([1, 4, 6, 7, 3, 8, 9, 3, 5, 6, 3])
    expect(placed.segments).toEqual([1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3])
    expect(placed.rows).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    expect(placed.columns).toEqual([0, 0, 0, 1, 2, 0, 1, 2, 0, 0, 1])
    expect(placed.cursor).toEqual({ segment: 3, row: 1, column: 0 })
  })

  it("clamps rows and columns past the embedded range to the last one", () => {
    const placed = place([4, 6, 6, 6, 6, 6, 6, 6, 3, 6, 3, 6, 3, 6, 3, 6, 3, 6])
    expect(Math.max(...placed.columns)).toBe(scheme.maxColumns - 1)
    expect(placed.rows[placed.rows.length - 1]).toBe(scheme.maxRows - 1)
  })

  it("continuing from a cursor places tokens exactly as one pass over the whole sequence", () => {
    const ids = [1, 4, 6, 7, 3, 8, 9, 3, 5, 6, 3, 7]
    const whole = placeBatch(scheme, ids, [1, ids.length], undefined)
    const head = placeBatch(scheme, ids.slice(0, 5), [1, 5], undefined)
    const tail = placeBatch(scheme, ids.slice(5), [1, ids.length - 5], head.cursors)
    expect([...head.indices.columns, ...tail.indices.columns]).toEqual([...whole.indices.columns])
    expect([...head.indices.rows, ...tail.indices.rows]).toEqual([...whole.indices.rows])
    expect(tail.cursors).toEqual(whole.cursors)
  })

  it("the model uses the embeddings, and cached generation matches the full forward on every prefix", async () => {
    await useCpuBackend()
    const host = initWeights(config, 3, 0.3)
    const weights = createTransformerWeights(config, host)
    const before = tf.memory().numTensors
    try {
      const prompt = [1, 4, 6, 7, 3, 8, 9, 3, 5]
      const [row] = generate(weights, [prompt], { maxTokens: 8, temperature: 0 })
      const sequence = [...prompt]
      for (let i = 0; i < 8; i++) {
        const logits = causalLogits(weights, sequence)
        const last = logits.slice((sequence.length - 1) * config.vocabSize)
        sequence.push(last.indexOf(Math.max(...last)))
      }
      expect(row!.tokens).toEqual(sequence.slice(prompt.length))

      // A left-padded batch row (padding before BOS) generates what it generates alone.
      const [short, long] = generate(weights, [[1, 4, 6, 3, 5], prompt], { maxTokens: 5, temperature: 0 })
      const [alone] = generate(weights, [[1, 4, 6, 3, 5]], { maxTokens: 5, temperature: 0 })
      expect(short!.tokens).toEqual(alone!.tokens)
      expect(long!.tokens).toEqual(row!.tokens.slice(0, 5))

      // Zeroing the column table changes the logits: the embeddings are in the forward pass.
      const zeroed = new Map(host)
      const columns = host.get(WeightNames.grid.columns)!
      zeroed.set(WeightNames.grid.columns, { shape: columns.shape, data: new Float32Array(columns.data.length) })
      const plain = createTransformerWeights(config, zeroed)
      const a = causalLogits(weights, prompt)
      const b = causalLogits(plain, prompt)
      disposeTransformerWeights(plain)
      expect(a.some((x, i) => Math.abs(x - b[i]!) > 1e-4)).toBe(true)
      expect(tf.memory().numTensors).toBe(before)
    } finally {
      disposeTransformerWeights(weights)
    }
  })

  it("full training updates the grid tables and a Hugging Face directory keeps them with the scheme", async () => {
    await useCpuBackend()
    const host = initWeights(config, 5, 0.02)
    const example = { ids: [1, 4, 6, 7, 3, 8, 9, 3, 5, 9, 8, 3, 7, 6, 3], labelMask: Array(15).fill(1) }
    const result = trainFull(config, host, [example], { learningRate: 1e-2, steps: 3, batchSize: 1, seed: 0 })
    const changed = (name: string) => {
      const a = host.get(name)!.data
      const b = result.weights.get(name)!.data
      return a.some((x, i) => x !== b[i])
    }
    expect(changed(WeightNames.grid.rows)).toBe(true)
    expect(changed(WeightNames.grid.columns)).toBe(true)
    expect(changed(WeightNames.grid.segments)).toBe(true)

    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "seal-grid-"))
    try {
      const weights: WeightMap = result.weights
      const loaded = await Effect.runPromise(
        writeHfDirectory(dir, {
          config,
          weights,
          tokenizerJson: {
            model: {
              type: "WordLevel",
              vocab: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`t${i}`, i])),
              unk_token: "t0"
            }
          },
          tokenizerConfig: {},
          bosId: 1,
          eosId: 2
        }).pipe(Effect.zipRight(loadHfDirectory(dir)))
      )
      expect(loaded.config.gridPositions).toEqual(scheme)
      expect([...loaded.weights.get(WeightNames.grid.columns)!.data]).toEqual([
        ...weights.get(WeightNames.grid.columns)!.data
      ])
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a config whose grid token ids exceed the vocabulary is refused, naming the field", () => {
    const json = {
      architectures: ["LlamaForCausalLM"],
      vocab_size: 10,
      hidden_size: 16,
      intermediate_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      max_position_embeddings: 32,
      rms_norm_eps: 1e-5,
      seal_grid_positions: { row_end_id: 12, segment_start_ids: [1], max_rows: 4, max_columns: 4 }
    }
    const parsed = parseHfConfig(json, "m/config.json")
    expect(Either.isLeft(parsed) && parsed.left.field).toBe("seal_grid_positions")
  })
})
