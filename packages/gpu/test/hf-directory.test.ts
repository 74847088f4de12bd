import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { loadHfDirectory, parseHfConfig } from "../src/checkpoint/HfDirectory.js"
import { readSafetensors, writeSafetensors } from "../src/checkpoint/Safetensors.js"
import { expectedWeightShapes, type ModelConfig, type WeightMap, WeightNames } from "../src/model/ModelConfig.js"
import {
  extraTensorName,
  hfConfigJson,
  rewriteSafetensorsHeader,
  tempDir,
  tinyLlamaConfig,
  tinyQwen2Config,
  tinyTokenizerConfig,
  tinyTokenizerJson,
  writeTinyHfCheckpoint
} from "../src/testing/HfFixture.js"
import { makeHfTokenizer } from "../src/tokenizer/HfTokenizer.js"

const expectSameWeights = (loaded: WeightMap, written: WeightMap) => {
  expect([...loaded.keys()]).toEqual([...written.keys()])
  for (const [name, tensor] of written) {
    const got = loaded.get(name)!
    expect(got.shape, name).toEqual(tensor.shape)
    expect(got.data, name).toEqual(tensor.data)
  }
}

const editJson = (path: string, edit: (json: Record<string, unknown>) => Record<string, unknown>) =>
  Effect.promise(async () => {
    const json = JSON.parse(await Fs.promises.readFile(path, "utf8"))
    await Fs.promises.writeFile(path, JSON.stringify(edit(json)))
  })

/** Writes a checkpoint, lets `spoil` damage it, and returns the load error. */
const loadFailure = (
  config: ModelConfig,
  spoil: (dir: string) => Effect.Effect<void, unknown>,
  options: { readonly sharded?: boolean; readonly tokenizer?: false } = {}
) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* tempDir("hf")
    yield* writeTinyHfCheckpoint(dir, { config, seed: 7, ...options })
    yield* spoil(dir).pipe(Effect.orDie)
    const error = yield* Effect.flip(loadHfDirectory(dir))
    expect(error._tag).toBe("CheckpointError")
    return { error, dir }
  }))

describe("loadHfDirectory", () => {
  it.effect("loads a tiny Llama checkpoint: config, exact weights, extras ignored", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("hf")
      const written = yield* writeTinyHfCheckpoint(dir, { config: tinyLlamaConfig, seed: 1 })
      const checkpoint = yield* loadHfDirectory(dir)
      expect(checkpoint.config).toEqual(tinyLlamaConfig)
      expect(checkpoint.source).toEqual({ format: "hf", path: dir })
      expectSameWeights(checkpoint.weights, written)
      expect(checkpoint.weights.has(extraTensorName)).toBe(false)
      expect(checkpoint.weights.size).toBe(expectedWeightShapes(tinyLlamaConfig).size)
      // The file really had the extra tensor.
      const onDisk = yield* readSafetensors(Path.join(dir, "model.safetensors"))
      expect(onDisk.has(extraTensorName)).toBe(true)
    })))

  it.effect("loads a sharded checkpoint identically", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("hf")
      const written = yield* writeTinyHfCheckpoint(dir, { config: tinyLlamaConfig, seed: 2, sharded: true })
      const files = yield* Effect.promise(() => Fs.promises.readdir(dir))
      expect(files).toContain("model.safetensors.index.json")
      expect(files).not.toContain("model.safetensors")
      const checkpoint = yield* loadHfDirectory(dir)
      expect(checkpoint.config).toEqual(tinyLlamaConfig)
      expectSameWeights(checkpoint.weights, written)
    })))

  it.effect("loads a Qwen2 checkpoint with q/k/v biases and tied embeddings", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("hf")
      const written = yield* writeTinyHfCheckpoint(dir, {
        config: tinyQwen2Config,
        seed: 3,
        tokenizer: { config: { ...tinyTokenizerConfig, bos_token: null, add_bos_token: undefined } }
      })
      const checkpoint = yield* loadHfDirectory(dir)
      expect(checkpoint.config).toEqual(tinyQwen2Config)
      expectSameWeights(checkpoint.weights, written)
      expect(checkpoint.weights.get(WeightNames.layer(1).kBias)!.shape).toEqual([8])
      expect(checkpoint.weights.has(WeightNames.lmHead)).toBe(false)
      // Qwen2 has no BOS: nothing is prepended.
      expect(checkpoint.tokenizer.bosId).toBeUndefined()
      expect(checkpoint.tokenizer.eosId).toBe(2)
      expect(checkpoint.tokenizer.encode("the cat")).toEqual([34, 37])
    })))

  it.effect("a tied checkpoint that saved lm_head anyway loads without it", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("hf")
      const written = yield* writeTinyHfCheckpoint(dir, {
        config: { ...tinyLlamaConfig, tieEmbeddings: true },
        seed: 4
      })
      const path = Path.join(dir, "model.safetensors")
      const all = yield* readSafetensors(path)
      all.set(WeightNames.lmHead, all.get(WeightNames.embed)!)
      yield* writeSafetensors(path, all)
      const checkpoint = yield* loadHfDirectory(dir)
      expect(checkpoint.config.tieEmbeddings).toBe(true)
      expectSameWeights(checkpoint.weights, written)
    })))

  it.effect("the tokenizer encodes and decodes a sentence consistently", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("hf")
      yield* writeTinyHfCheckpoint(dir, { config: tinyLlamaConfig, seed: 5 })
      const { tokenizer } = yield* loadHfDirectory(dir)
      expect(tokenizer.bosId).toBe(1)
      expect(tokenizer.eosId).toBe(2)
      expect(tokenizer.vocabSize).toBe(50)
      const sentence = "the cat sat on the mat."
      const ids = tokenizer.encode(sentence)
      // <s> ▁the ▁cat ▁sat ▁on ▁the ▁mat .
      expect(ids).toEqual([1, 34, 37, 39, 41, 34, 43, 30])
      expect(tokenizer.encode(sentence, { addBos: false })).toEqual(ids.slice(1))
      expect(tokenizer.decode(ids)).toBe(sentence)
      expect(tokenizer.decode([...ids, 2])).toBe(sentence)
      // Padding rows past the tokenizer's vocabulary decode to nothing rather than throwing.
      expect(tokenizer.decode([1, 63])).toBe("")
      expect(tokenizer.decode([])).toBe("")
      expect(tokenizer.decode(tokenizer.encode("the dog and the cat"))).toBe("the dog and the cat")
      expect(ids.every((id) => id < tinyLlamaConfig.vocabSize)).toBe(true)
    })))

  it("without tokenizer_config.json, BOS/EOS come from config.json and the template decides BOS", () => {
    const tokenizer = makeHfTokenizer(tinyTokenizerJson(), undefined, { bosId: 1, eosId: 2 })
    expect(tokenizer.bosId).toBe(1)
    expect(tokenizer.eosId).toBe(2)
    expect(tokenizer.addBosByDefault).toBe(true)
    expect(tokenizer.encode("the")).toEqual([1, 34])
    const noTemplate = makeHfTokenizer({ ...tinyTokenizerJson(), post_processor: null }, undefined, { bosId: 1 })
    expect(noTemplate.encode("the")).toEqual([34])
    expect(noTemplate.encode("the", { addBos: true })).toEqual([1, 34])
  })

  describe("failures", () => {
    it.effect("a missing directory is NotFound", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(loadHfDirectory("/nonexistent/model"))
        expect(error.reason).toBe("NotFound")
        expect(error.file).toBe("/nonexistent/model")
      }))

    it.effect("a missing tokenizer.json is MissingTokenizer naming the file", () =>
      Effect.gen(function*() {
        const { dir, error } = yield* loadFailure(tinyLlamaConfig, () => Effect.void, { tokenizer: false })
        expect(error.reason).toBe("MissingTokenizer")
        expect(error.file).toBe(Path.join(dir, "tokenizer.json"))
      }))

    it.effect("GPT2LMHeadModel is an UnknownArchitecture naming config.json and architectures", () =>
      Effect.gen(function*() {
        const { dir, error } = yield* loadFailure(tinyLlamaConfig, (dir) =>
          Effect.promise(() =>
            Fs.promises.writeFile(
              Path.join(dir, "config.json"),
              JSON.stringify({ architectures: ["GPT2LMHeadModel"], model_type: "gpt2", n_embd: 16, n_layer: 2 })
            )
          ))
        expect(error.reason).toBe("UnknownArchitecture")
        expect(error.file).toBe(Path.join(dir, "config.json"))
        expect(error.field).toBe("architectures")
        expect(error.detail).toContain("GPT2LMHeadModel")
      }))

    it.effect("a missing or mistyped config field is Malformed naming the field", () =>
      Effect.gen(function*() {
        const missing = yield* loadFailure(tinyLlamaConfig, (dir) =>
          editJson(Path.join(dir, "config.json"), ({ num_hidden_layers: _, ...rest }) => rest))
        expect(missing.error.reason).toBe("Malformed")
        expect(missing.error.file).toBe(Path.join(missing.dir, "config.json"))
        expect(missing.error.field).toBe("num_hidden_layers")

        const mistyped = yield* loadFailure(tinyLlamaConfig, (dir) =>
          editJson(Path.join(dir, "config.json"), (json) => ({ ...json, hidden_size: "sixteen" })))
        expect(mistyped.error.reason).toBe("Malformed")
        expect(mistyped.error.field).toBe("hidden_size")
      }))

    it.effect("a missing tensor is MissingTensor naming model.safetensors and the tensor", () =>
      Effect.gen(function*() {
        const victim = WeightNames.layer(1).down
        const { dir, error } = yield* loadFailure(tinyLlamaConfig, (dir) =>
          Effect.gen(function*() {
            const path = Path.join(dir, "model.safetensors")
            const all = yield* readSafetensors(path)
            all.delete(victim)
            yield* writeSafetensors(path, all)
          }))
        expect(error.reason).toBe("MissingTensor")
        expect(error.file).toBe(Path.join(dir, "model.safetensors"))
        expect(error.field).toBe(victim)
      }))

    it.effect("an untied checkpoint without lm_head is MissingTensor", () =>
      Effect.gen(function*() {
        const { error } = yield* loadFailure(tinyLlamaConfig, (dir) =>
          Effect.gen(function*() {
            const path = Path.join(dir, "model.safetensors")
            const all = yield* readSafetensors(path)
            all.delete(WeightNames.lmHead)
            yield* writeSafetensors(path, all)
          }))
        expect(error.reason).toBe("MissingTensor")
        expect(error.field).toBe(WeightNames.lmHead)
      }))

    it.effect("a tensor missing from a sharded index names the index; from a shard, the shard", () =>
      Effect.gen(function*() {
        const indexed = yield* loadFailure(
          tinyLlamaConfig,
          (dir) =>
            editJson(Path.join(dir, "model.safetensors.index.json"), (json) => {
              const { [WeightNames.finalNorm]: _, ...weightMap } = json.weight_map as Record<string, string>
              return { ...json, weight_map: weightMap }
            }),
          { sharded: true }
        )
        expect(indexed.error.reason).toBe("MissingTensor")
        expect(indexed.error.file).toBe(Path.join(indexed.dir, "model.safetensors.index.json"))
        expect(indexed.error.field).toBe(WeightNames.finalNorm)

        // The index points a tensor at the wrong shard.
        const misplaced = yield* loadFailure(
          tinyLlamaConfig,
          (dir) =>
            editJson(Path.join(dir, "model.safetensors.index.json"), (json) => {
              const weightMap = json.weight_map as Record<string, string>
              return { ...json, weight_map: { ...weightMap, [WeightNames.embed]: "model-00002-of-00002.safetensors" } }
            }),
          { sharded: true }
        )
        expect(misplaced.error.reason).toBe("MissingTensor")
        expect(misplaced.error.file).toBe(Path.join(misplaced.dir, "model-00002-of-00002.safetensors"))
        expect(misplaced.error.field).toBe(WeightNames.embed)
      }))

    it.effect("a tensor whose shape disagrees with config.json is a ShapeMismatch", () =>
      Effect.gen(function*() {
        const { dir, error } = yield* loadFailure(tinyLlamaConfig, (dir) =>
          editJson(Path.join(dir, "config.json"), (json) => ({ ...json, intermediate_size: 48 })))
        expect(error.reason).toBe("ShapeMismatch")
        expect(error.file).toBe(Path.join(dir, "model.safetensors"))
        expect(error.field).toBe(WeightNames.layer(0).gate)
      }))

    it.effect("a safetensors header lying about sizes names the file and tensor", () =>
      Effect.gen(function*() {
        const victim = WeightNames.layer(0).q
        // Claims a bigger shape than its bytes hold.
        const grown = yield* loadFailure(tinyLlamaConfig, (dir) =>
          rewriteSafetensorsHeader(Path.join(dir, "model.safetensors"), (header) => ({
            ...header,
            [victim]: { ...header[victim], shape: [32, 16] }
          })))
        expect(grown.error.reason).toBe("ShapeMismatch")
        expect(grown.error.file).toBe(Path.join(grown.dir, "model.safetensors"))
        expect(grown.error.field).toBe(victim)

        // Claims bytes past the end of the file.
        const past = yield* loadFailure(tinyLlamaConfig, (dir) =>
          rewriteSafetensorsHeader(Path.join(dir, "model.safetensors"), (header) => ({
            ...header,
            [victim]: { ...header[victim], data_offsets: [1 << 24, (1 << 24) + 16 * 16 * 4] }
          })))
        expect(past.error.reason).toBe("Truncated")
        expect(past.error.file).toBe(Path.join(past.dir, "model.safetensors"))
        expect(past.error.field).toBe(victim)
      }))
  })
})

describe("parseHfConfig", () => {
  it("applies transformers' defaults", () => {
    const { head_dim: _h, num_key_value_heads: _k, rope_theta: _r, tie_word_embeddings: _t, ...bare } = hfConfigJson(
      tinyLlamaConfig
    )
    const parsed = parseHfConfig(bare)
    expect(parsed._tag).toBe("Right")
    if (parsed._tag === "Right") {
      expect(parsed.right.config).toEqual({
        ...tinyLlamaConfig,
        numKvHeads: tinyLlamaConfig.numHeads,
        headDim: tinyLlamaConfig.hiddenSize / tinyLlamaConfig.numHeads,
        ropeTheta: 10000,
        tieEmbeddings: false
      })
    }
  })

  it("reads the architecture from model_type when architectures is absent, and Llama's attention_bias", () => {
    const { architectures: _, ...json } = hfConfigJson({ ...tinyLlamaConfig, attentionBias: true })
    const parsed = parseHfConfig(json)
    expect(parsed._tag === "Right" && parsed.right.config.attentionBias).toBe(true)
    const unknown = parseHfConfig({ ...json, model_type: "mistral" })
    expect(unknown._tag === "Left" && unknown.left.reason).toBe("UnknownArchitecture")
    expect(unknown._tag === "Left" && unknown.left.field).toBe("model_type")
  })

  it("rejects key/value heads that do not divide the heads", () => {
    const parsed = parseHfConfig({ ...hfConfigJson(tinyLlamaConfig), num_key_value_heads: 3 })
    expect(parsed._tag === "Left" && parsed.left.field).toBe("num_key_value_heads")
  })
})
