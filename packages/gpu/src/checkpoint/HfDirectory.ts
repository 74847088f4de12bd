/**
 * Loading a Hugging Face model directory: `config.json`, weights in `model.safetensors` or
 * shards listed by `model.safetensors.index.json`, and `tokenizer.json` (+ `tokenizer_config.json`).
 */
import { Effect, Either, ParseResult, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { expectedWeightShapes, type HostTensor, type ModelConfig, type WeightMap } from "../model/ModelConfig.js"
import { loadHfTokenizer } from "../tokenizer/HfTokenizer.js"
import type { LoadedCheckpoint } from "./Checkpoint.js"
import { CheckpointError, parseJsonFile } from "./CheckpointError.js"
import {
  readSafetensorsHeader,
  readSafetensorsTensors,
  type SafetensorsHeader,
  writeSafetensors
} from "./Safetensors.js"

/** The `architectures` entries we can run, keyed to our architecture names. */
const knownArchitectures: ReadonlyMap<string, ModelConfig["architecture"]> = new Map([
  ["LlamaForCausalLM", "llama"],
  ["Qwen2ForCausalLM", "qwen2"]
])

const knownModelTypes: ReadonlyMap<string, ModelConfig["architecture"]> = new Map([
  ["llama", "llama"],
  ["qwen2", "qwen2"]
])

const PositiveInt = Schema.Int.pipe(Schema.positive())
const TokenIds = Schema.NullOr(Schema.Union(Schema.Int, Schema.Array(Schema.Int)))

// Decoded first and alone, so a GPT-2 config reports its architecture rather than a missing
// `hidden_size` (GPT-2 calls it `n_embd`).
const ArchitectureFields = Schema.Struct({
  architectures: Schema.optional(Schema.Array(Schema.String)),
  model_type: Schema.optional(Schema.String)
})

/** seal-ts's grid-position extension (`ModelConfig.gridPositions`), snake-cased in `config.json`. */
const SealGridPositions = Schema.Struct({
  row_end_id: Schema.Int.pipe(Schema.nonNegative()),
  segment_start_ids: Schema.Array(Schema.Int.pipe(Schema.nonNegative())),
  max_rows: PositiveInt,
  max_columns: PositiveInt
})

/** The fields of `config.json` we read; transformers' defaults are applied after decoding. */
const HfConfigFields = Schema.Struct({
  vocab_size: PositiveInt,
  hidden_size: PositiveInt,
  intermediate_size: PositiveInt,
  num_hidden_layers: PositiveInt,
  num_attention_heads: PositiveInt,
  num_key_value_heads: Schema.optional(Schema.NullOr(PositiveInt)),
  head_dim: Schema.optional(Schema.NullOr(PositiveInt)),
  max_position_embeddings: PositiveInt,
  rms_norm_eps: Schema.Number.pipe(Schema.positive()),
  rope_theta: Schema.optional(Schema.Number.pipe(Schema.positive())),
  rope_scaling: Schema.optional(Schema.Unknown),
  tie_word_embeddings: Schema.optional(Schema.Boolean),
  attention_bias: Schema.optional(Schema.Boolean),
  mlp_bias: Schema.optional(Schema.Boolean),
  hidden_act: Schema.optional(Schema.String),
  bos_token_id: Schema.optional(TokenIds),
  eos_token_id: Schema.optional(TokenIds),
  seal_grid_positions: Schema.optional(SealGridPositions)
})

const WeightIndex = Schema.Struct({
  weight_map: Schema.Record({ key: Schema.String, value: Schema.String })
})

/** What `config.json` says, in our terms. */
export interface HfConfig {
  readonly config: ModelConfig
  /** `bos_token_id` / `eos_token_id`, for tokenizers whose own config names neither. */
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  /** `rope_scaling`, which `ModelConfig` cannot express yet (Llama 3.1+ sets it). */
  readonly ropeScaling: unknown
}

/** Turns a schema failure into a CheckpointError naming the first offending field. */
const schemaError = (file: string, error: ParseResult.ParseError): CheckpointError => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const field = issue === undefined || issue.path.length === 0 ? undefined : issue.path.map(String).join(".")
  return new CheckpointError({
    file,
    ...(field === undefined ? {} : { field }),
    reason: "Malformed",
    detail: issue?.message ?? error.message
  })
}

const firstId = (ids: number | ReadonlyArray<number> | null | undefined): number | undefined =>
  ids === null || ids === undefined ? undefined : typeof ids === "number" ? ids : ids[0]

/**
 * Maps the parsed contents of a `config.json` to a `ModelConfig`, applying transformers'
 * defaults for Llama and Qwen2 (`num_key_value_heads` = heads, `head_dim` = hidden / heads,
 * `rope_theta` = 10000, `tie_word_embeddings` = false for both). `file` names the config in errors.
 */
export const parseHfConfig = (json: unknown, file: string = "config.json"): Either.Either<HfConfig, CheckpointError> =>
  Either.gen(function*() {
    const ids = yield* Schema.decodeUnknownEither(ArchitectureFields)(json).pipe(
      Either.mapLeft((e) => schemaError(file, e))
    )
    const declared = ids.architectures?.[0]
    let architecture: ModelConfig["architecture"] | undefined
    if (declared !== undefined) {
      architecture = knownArchitectures.get(declared)
      if (architecture === undefined) {
        return yield* Either.left(
          new CheckpointError({
            file,
            field: "architectures",
            reason: "UnknownArchitecture",
            detail: `${declared} is not one of ${[...knownArchitectures.keys()].join(", ")}`
          })
        )
      }
    } else if (ids.model_type !== undefined) {
      architecture = knownModelTypes.get(ids.model_type)
      if (architecture === undefined) {
        return yield* Either.left(
          new CheckpointError({
            file,
            field: "model_type",
            reason: "UnknownArchitecture",
            detail: `model_type ${ids.model_type} is not one of ${[...knownModelTypes.keys()].join(", ")}`
          })
        )
      }
    } else {
      return yield* Either.left(
        new CheckpointError({
          file,
          field: "architectures",
          reason: "Malformed",
          detail: "neither architectures nor model_type is set"
        })
      )
    }

    const c = yield* Schema.decodeUnknownEither(HfConfigFields)(json).pipe(
      Either.mapLeft((e) => schemaError(file, e))
    )
    const unsupported = (field: string, detail: string) =>
      Either.left(new CheckpointError({ file, field, reason: "UnknownArchitecture", detail }))
    if (c.hidden_act !== undefined && c.hidden_act !== "silu") {
      return yield* unsupported("hidden_act", `activation ${c.hidden_act} is not supported (only silu)`)
    }
    if (c.mlp_bias === true) return yield* unsupported("mlp_bias", "MLP biases are not supported")

    const numHeads = c.num_attention_heads
    const numKvHeads = c.num_key_value_heads ?? numHeads
    if (numHeads % numKvHeads !== 0) {
      return yield* Either.left(
        new CheckpointError({
          file,
          field: "num_key_value_heads",
          reason: "Malformed",
          detail: `${numKvHeads} key/value heads do not divide ${numHeads} attention heads`
        })
      )
    }
    if ((c.head_dim === undefined || c.head_dim === null) && c.hidden_size % numHeads !== 0) {
      return yield* Either.left(
        new CheckpointError({
          file,
          field: "num_attention_heads",
          reason: "Malformed",
          detail: `hidden_size ${c.hidden_size} is not divisible by ${numHeads} heads and head_dim is not set`
        })
      )
    }
    const headDim = c.head_dim ?? c.hidden_size / numHeads
    const grid = c.seal_grid_positions
    if (grid !== undefined && [grid.row_end_id, ...grid.segment_start_ids].some((id) => id >= c.vocab_size)) {
      return yield* Either.left(
        new CheckpointError({
          file,
          field: "seal_grid_positions",
          reason: "Malformed",
          detail: `a grid token id is not below vocab_size ${c.vocab_size}`
        })
      )
    }

    const config: ModelConfig = {
      architecture,
      vocabSize: c.vocab_size,
      hiddenSize: c.hidden_size,
      intermediateSize: c.intermediate_size,
      numLayers: c.num_hidden_layers,
      numHeads,
      numKvHeads,
      headDim,
      maxPositions: c.max_position_embeddings,
      rmsNormEps: c.rms_norm_eps,
      ropeTheta: c.rope_theta ?? 10000,
      tieEmbeddings: c.tie_word_embeddings ?? false,
      // Qwen2 always has q/k/v biases (its config has no switch); Llama only when it says so.
      attentionBias: architecture === "qwen2" ? true : c.attention_bias ?? false,
      ...(grid === undefined ? {} : {
        gridPositions: {
          rowEndId: grid.row_end_id,
          segmentStartIds: grid.segment_start_ids,
          maxRows: grid.max_rows,
          maxColumns: grid.max_columns
        }
      })
    }
    return {
      config,
      bosId: firstId(c.bos_token_id),
      eosId: firstId(c.eos_token_id),
      ropeScaling: c.rope_scaling ?? null
    }
  })

const fileExists = (path: string) =>
  Effect.tryPromise(() => Fs.promises.stat(path)).pipe(
    Effect.map((s) => s.isFile()),
    Effect.orElseSucceed(() => false)
  )

const readJsonFile = (path: string) =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => Fs.promises.readFile(path, "utf8"),
      catch: (cause) => {
        const code = (cause as { readonly code?: unknown } | undefined)?.code
        return code === "ENOENT"
          ? new CheckpointError({ file: path, reason: "NotFound", detail: "no such file" })
          : new CheckpointError({
            file: path,
            reason: "Malformed",
            detail: `cannot read: ${cause instanceof Error ? cause.message : String(cause)}`
          })
      }
    })
    return yield* parseJsonFile(path, text)
  })

/** Which file each canonical weight lives in: one file, or the shards an index names. */
const planWeightFiles = (dir: string, names: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const indexPath = Path.join(dir, "model.safetensors.index.json")
    const singlePath = Path.join(dir, "model.safetensors")
    const plan = new Map<string, Array<string>>()
    if (yield* fileExists(indexPath)) {
      const index = yield* readJsonFile(indexPath).pipe(
        Effect.flatMap(Schema.decodeUnknown(WeightIndex)),
        Effect.mapError((e) => e instanceof CheckpointError ? e : schemaError(indexPath, e))
      )
      const root = Path.resolve(dir)
      for (const name of names) {
        const shard = index.weight_map[name]
        if (shard === undefined) {
          return yield* new CheckpointError({
            file: indexPath,
            field: name,
            reason: "MissingTensor",
            detail: "the weight_map does not list this tensor"
          })
        }
        const shardPath = Path.resolve(root, shard)
        // A shard outside the model directory is a hostile or broken index, not a layout.
        if (!shardPath.startsWith(root + Path.sep)) {
          return yield* new CheckpointError({
            file: indexPath,
            field: name,
            reason: "Malformed",
            detail: `shard ${shard} is outside the model directory`
          })
        }
        const list = plan.get(shardPath)
        if (list === undefined) plan.set(shardPath, [name])
        else list.push(name)
      }
    } else if (yield* fileExists(singlePath)) {
      plan.set(singlePath, [...names])
    } else {
      return yield* new CheckpointError({
        file: singlePath,
        reason: "NotFound",
        detail: "no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)"
      })
    }
    return plan
  })

/**
 * Reads exactly the canonical weights `config` calls for from a Hugging Face directory; extra
 * tensors (rotary `inv_freq`, a saved-anyway tied `lm_head`) are never read. Each shard's data is
 * read in one pass, and names and shapes are checked against all headers before any data is read.
 */
export const loadHfWeights = (dir: string, config: ModelConfig): Effect.Effect<WeightMap, CheckpointError> =>
  Effect.gen(function*() {
    const expected = expectedWeightShapes(config)
    const plan = yield* planWeightFiles(dir, [...expected.keys()])
    // Every shard's header is checked before any shard's data is read, so a bad last shard
    // fails in milliseconds rather than after gigabytes.
    const headers: Array<readonly [SafetensorsHeader, ReadonlyArray<string>]> = []
    for (const [file, names] of plan) {
      const header = yield* readSafetensorsHeader(file)
      for (const name of names) {
        const info = header.tensors.get(name)
        if (info === undefined) {
          return yield* new CheckpointError({
            file,
            field: name,
            reason: "MissingTensor",
            detail: "tensor not in file"
          })
        }
        const shape = expected.get(name)!
        if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
          return yield* new CheckpointError({
            file,
            field: name,
            reason: "ShapeMismatch",
            detail: `expected [${shape.join(", ")}] from config.json, found [${info.shape.join(", ")}]`
          })
        }
      }
      headers.push([header, names])
    }
    const loaded = new Map<string, HostTensor>()
    for (const [header, names] of headers) {
      const tensors = yield* readSafetensorsTensors(header, new Set(names))
      for (const [name, tensor] of tensors) loaded.set(name, tensor)
    }
    // Canonical order, whatever order the shards came in.
    const weights = new Map<string, HostTensor>()
    for (const name of expected.keys()) weights.set(name, loaded.get(name)!)
    return weights
  })

/**
 * Loads a Hugging Face model directory (Llama or Qwen2, safetensors weights). The cheap files
 * are checked first, so a missing tokenizer is reported before gigabytes of weights are read.
 */
export const loadHfDirectory = (dir: string): Effect.Effect<LoadedCheckpoint, CheckpointError> =>
  Effect.gen(function*() {
    const isDir = yield* Effect.tryPromise(() => Fs.promises.stat(dir)).pipe(
      Effect.map((s) => s.isDirectory()),
      Effect.orElseSucceed(() => false)
    )
    if (!isDir) return yield* new CheckpointError({ file: dir, reason: "NotFound", detail: "no such directory" })

    const configPath = Path.join(dir, "config.json")
    const hf = yield* readJsonFile(configPath).pipe(Effect.flatMap((json) => parseHfConfig(json, configPath)))
    if (hf.ropeScaling !== null) {
      yield* Effect.logWarning(
        `${configPath}: rope_scaling ${JSON.stringify(hf.ropeScaling)} is ignored; positions use plain RoPE`
      )
    }
    const tokenizer = yield* loadHfTokenizer(
      Path.join(dir, "tokenizer.json"),
      Path.join(dir, "tokenizer_config.json"),
      { bosId: hf.bosId, eosId: hf.eosId }
    )
    const weights = yield* loadHfWeights(dir, hf.config)
    return { config: hf.config, weights, tokenizer, source: { format: "hf", path: dir } } satisfies LoadedCheckpoint
  })

/** The `config.json` transformers would write for `config`. */
export const modelConfigJson = (
  config: ModelConfig,
  special: { readonly bosId: number | undefined; readonly eosId: number | undefined }
): Record<string, unknown> => {
  const llama = config.architecture === "llama"
  return {
    architectures: [llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM"],
    model_type: config.architecture,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    // Qwen2 configs never carry head_dim; it is always hidden / heads there.
    ...(llama ? { head_dim: config.headDim, attention_bias: config.attentionBias, mlp_bias: false } : {}),
    max_position_embeddings: config.maxPositions,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: config.tieEmbeddings,
    hidden_act: "silu",
    bos_token_id: special.bosId ?? null,
    eos_token_id: special.eosId ?? null,
    torch_dtype: "float32",
    ...(config.gridPositions === undefined ? {} : {
      seal_grid_positions: {
        row_end_id: config.gridPositions.rowEndId,
        segment_start_ids: config.gridPositions.segmentStartIds,
        max_rows: config.gridPositions.maxRows,
        max_columns: config.gridPositions.maxColumns
      }
    })
  }
}

/** Writes `path` atomically: a temporary file in the same directory, then a rename over it. */
export const writeFileAtomic = (path: string, contents: string | Uint8Array): Effect.Effect<void, CheckpointError> => {
  const temp = Path.join(Path.dirname(path), `.${Path.basename(path)}.${process.pid}.${Date.now()}.tmp`)
  return Effect.tryPromise({
    try: async () => {
      await Fs.promises.writeFile(temp, contents)
      await Fs.promises.rename(temp, path)
    },
    catch: (e) =>
      new CheckpointError({
        file: path,
        reason: "Io",
        detail: `cannot write: ${e instanceof Error ? e.message : String(e)}`
      })
  }).pipe(Effect.onError(() => Effect.promise(() => Fs.promises.rm(temp, { force: true }))))
}

export interface HfDirectoryContents {
  readonly config: ModelConfig
  readonly weights: WeightMap
  /** `tokenizer.json` and `tokenizer_config.json` contents. */
  readonly tokenizerJson: unknown
  readonly tokenizerConfig: unknown
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  /** Extra JSON files (name to contents), e.g. provenance. */
  readonly extraFiles?: Readonly<Record<string, unknown>> | undefined
}

/**
 * Writes a Hugging Face model directory (config.json, model.safetensors, tokenizer files) that
 * `loadHfDirectory` and transformers' `from_pretrained` read. Each file is written atomically.
 */
export const writeHfDirectory = (dir: string, contents: HfDirectoryContents): Effect.Effect<void, CheckpointError> =>
  Effect.gen(function*() {
    yield* Effect.tryPromise({
      try: () => Fs.promises.mkdir(dir, { recursive: true }),
      catch: (e) => new CheckpointError({ file: dir, reason: "Io", detail: `cannot create: ${String(e)}` })
    })
    const json = (value: unknown) => JSON.stringify(value, null, 2) + "\n"
    yield* writeSafetensors(Path.join(dir, "model.safetensors"), contents.weights, { format: "pt" })
    yield* writeFileAtomic(Path.join(dir, "tokenizer.json"), json(contents.tokenizerJson))
    yield* writeFileAtomic(Path.join(dir, "tokenizer_config.json"), json(contents.tokenizerConfig))
    for (const [name, value] of Object.entries(contents.extraFiles ?? {})) {
      yield* writeFileAtomic(Path.join(dir, name), json(value))
    }
    // config.json last: a directory without it is not mistaken for a finished model.
    yield* writeFileAtomic(
      Path.join(dir, "config.json"),
      json(modelConfigJson(contents.config, { bosId: contents.bosId, eosId: contents.eosId }))
    )
  })
