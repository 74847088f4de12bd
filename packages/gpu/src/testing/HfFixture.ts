/**
 * Writes tiny Hugging Face checkpoints with seeded random weights, so loader tests (and anything
 * else needing a real directory on disk) can compare what was loaded against what was written.
 */
import { Effect, type Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { CheckpointError } from "../checkpoint/CheckpointError.js"
import { modelConfigJson } from "../checkpoint/HfDirectory.js"
import { writeSafetensors } from "../checkpoint/Safetensors.js"
import { expectedWeightShapes, type HostTensor, type ModelConfig, type WeightMap } from "../model/ModelConfig.js"
import { makeRng } from "../model/Sampling.js"

/** The project's seeded PRNG, re-exported for fixtures that need raw uniform streams. */
export const mulberry32 = makeRng

export const tinyLlamaConfig: ModelConfig = {
  architecture: "llama",
  vocabSize: 64,
  hiddenSize: 16,
  intermediateSize: 40,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 4,
  maxPositions: 128,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: false,
  attentionBias: false
}

export const tinyQwen2Config: ModelConfig = {
  ...tinyLlamaConfig,
  architecture: "qwen2",
  rmsNormEps: 1e-6,
  ropeTheta: 1000000,
  tieEmbeddings: true,
  attentionBias: true
}

const specialTokens = ["<unk>", "<s>", "</s>"] as const
const baseTokens = ["▁", ..."abcdefghijklmnopqrstuvwxyz", ".", ","]
const merges: ReadonlyArray<readonly [string, string]> = [
  ["▁", "t"],
  ["h", "e"],
  ["▁t", "he"],
  ["a", "t"],
  ["▁", "c"],
  ["▁c", "at"],
  ["▁", "s"],
  ["▁s", "at"],
  ["o", "n"],
  ["▁", "on"],
  ["▁", "m"],
  ["▁m", "at"],
  ["▁", "d"],
  ["o", "g"],
  ["▁d", "og"],
  ["▁", "a"],
  ["n", "d"],
  ["▁a", "nd"]
]

/**
 * A SentencePiece-style BPE `tokenizer.json` (Metaspace pre-tokenizer and decoder, `<s>`/`</s>`
 * specials, a Llama-style template adding `<s>`) with 50 tokens: small enough for a 64-row
 * embedding, and "the cat sat on the mat." encodes to whole-word pieces.
 */
export const tinyTokenizerJson = (): Record<string, unknown> => {
  const vocab: Record<string, number> = {}
  for (const token of [...specialTokens, ...baseTokens, ...merges.map(([a, b]) => a + b)]) {
    vocab[token] = Object.keys(vocab).length
  }
  const metaspace = { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: false }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specialTokens.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true
    })),
    normalizer: null,
    pre_tokenizer: metaspace,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } }
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } }
    },
    decoder: metaspace,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => [a, b])
    }
  }
}

export const tinyTokenizerConfig: Readonly<Record<string, unknown>> = {
  bos_token: "<s>",
  eos_token: "</s>",
  unk_token: "<unk>",
  add_bos_token: true,
  add_eos_token: false,
  clean_up_tokenization_spaces: false,
  tokenizer_class: "LlamaTokenizer"
}

/** The `config.json` transformers would write for `config` (BOS 1, EOS 2, as the tiny tokenizer has). */
export const hfConfigJson = (config: ModelConfig): Record<string, unknown> =>
  modelConfigJson(config, { bosId: 1, eosId: 2 })

export interface TinyHfCheckpointOptions {
  readonly config: ModelConfig
  readonly seed: number
  /** Write these weights instead of seeded random ones (e.g. to mirror another checkpoint). */
  readonly weights?: WeightMap
  /** Split the weights over two shards with a `model.safetensors.index.json`. */
  readonly sharded?: boolean
  /**
   * `false`: write no tokenizer files. Otherwise the `tokenizer.json` and `tokenizer_config.json`
   * contents (defaults: `tinyTokenizerJson()` and `tinyTokenizerConfig`); `config: null` writes
   * no `tokenizer_config.json`.
   */
  readonly tokenizer?: false | {
    readonly json?: unknown
    readonly config?: unknown
  }
}

/** Tensors a real checkpoint carries that are not model weights; loaders must skip them. */
export const extraTensorName = "model.layers.0.self_attn.rotary_emb.inv_freq"

const writeJson = (path: string, value: unknown) =>
  Effect.promise(() => Fs.promises.writeFile(path, JSON.stringify(value, null, 2)))

/**
 * Writes a random-weight checkpoint for `config` into `dir` (created if needed) and returns the
 * canonical weights it wrote. Norm weights are near 1 and everything else small, so a forward
 * pass stays finite.
 */
export const writeTinyHfCheckpoint = (
  dir: string,
  options: TinyHfCheckpointOptions
): Effect.Effect<WeightMap, CheckpointError> =>
  Effect.gen(function*() {
    const { config } = options
    if (config.architecture === "qwen2" && !config.attentionBias) {
      return yield* Effect.dieMessage("a qwen2 config.json cannot express attentionBias: false")
    }
    if (config.architecture === "qwen2" && config.headDim * config.numHeads !== config.hiddenSize) {
      return yield* Effect.dieMessage("a qwen2 config.json cannot express headDim != hidden / heads")
    }
    yield* Effect.promise(() => Fs.promises.mkdir(dir, { recursive: true }))

    const random = mulberry32(options.seed)
    const weights = new Map<string, HostTensor>(options.weights ?? [])
    for (const [name, shape] of options.weights === undefined ? expectedWeightShapes(config) : []) {
      const data = new Float32Array(shape.reduce((n, d) => n * d, 1))
      const isNorm = name.endsWith("norm.weight")
      for (let i = 0; i < data.length; i++) {
        const u = random() * 2 - 1
        data[i] = isNorm ? 1 + 0.1 * u : 0.1 * u
      }
      weights.set(name, { shape, data })
    }
    const inverseFrequencies = new Float32Array(config.headDim / 2).map((_, i) =>
      config.ropeTheta ** (-(2 * i) / config.headDim)
    )
    const onDisk = new Map(weights)
    onDisk.set(extraTensorName, { shape: [config.headDim / 2], data: inverseFrequencies })

    const metadata = { format: "pt" }
    if (options.sharded === true) {
      const entries = [...onDisk]
      const half = Math.ceil(entries.length / 2)
      const shards = [entries.slice(0, half), entries.slice(half)]
      const weightMap: Record<string, string> = {}
      let totalSize = 0
      for (let s = 0; s < shards.length; s++) {
        const file = `model-0000${s + 1}-of-0000${shards.length}.safetensors`
        for (const [name, tensor] of shards[s]!) {
          weightMap[name] = file
          totalSize += tensor.data.byteLength
        }
        yield* writeSafetensors(Path.join(dir, file), new Map(shards[s]!), metadata)
      }
      yield* writeJson(Path.join(dir, "model.safetensors.index.json"), {
        metadata: { total_size: totalSize },
        weight_map: weightMap
      })
    } else {
      yield* writeSafetensors(Path.join(dir, "model.safetensors"), onDisk, metadata)
    }

    yield* writeJson(Path.join(dir, "config.json"), hfConfigJson(config))
    if (options.tokenizer !== false) {
      const tokenizer = options.tokenizer ?? {}
      yield* writeJson(Path.join(dir, "tokenizer.json"), tokenizer.json ?? tinyTokenizerJson())
      const tokenizerConfig = tokenizer.config === undefined ? tinyTokenizerConfig : tokenizer.config
      if (tokenizerConfig !== null) yield* writeJson(Path.join(dir, "tokenizer_config.json"), tokenizerConfig)
    }
    return weights
  })

/**
 * Rewrites the JSON header of a safetensors file in place (data untouched), to build files whose
 * header lies. `edit` gets the parsed header and returns the one to write.
 */
export const rewriteSafetensorsHeader = (
  path: string,
  edit: (header: Record<string, Record<string, unknown>>) => Record<string, unknown>
): Effect.Effect<void> =>
  Effect.promise(async () => {
    const file = await Fs.promises.readFile(path)
    const headerLength = Number(file.readBigUInt64LE(0))
    const header = JSON.parse(file.subarray(8, 8 + headerLength).toString("utf8"))
    const json = Buffer.from(JSON.stringify(edit(header)))
    const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20)
    json.copy(padded)
    const prefix = Buffer.alloc(8)
    prefix.writeBigUInt64LE(BigInt(padded.length))
    await Fs.promises.writeFile(path, Buffer.concat([prefix, padded, file.subarray(8 + headerLength)]))
  })

/** A fresh directory under `os.tmpdir()`, removed with everything in it when the scope closes. */
export const tempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => Fs.promises.mkdtemp(Path.join(Os.tmpdir(), `${prefix}-`))),
    (dir) => Effect.promise(() => Fs.promises.rm(dir, { recursive: true, force: true }))
  )
