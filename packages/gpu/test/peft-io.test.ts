import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { beforeAll } from "vitest"
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from "../src/checkpoint/Safetensors.js"
import type { LoraAdapter, LoraConfig } from "../src/lora/LoraAdapter.js"
import { createLoraAdapter, disposeDeviceLora, hashWeights, loraHook, uploadLora } from "../src/lora/LoraAdapter.js"
import type { AdapterIoError } from "../src/lora/PeftIo.js"
import {
  adapterConfigFile,
  adapterWeightsFile,
  loadAdapter,
  peftTensorName,
  saveAdapter,
  unknownParentModelHash
} from "../src/lora/PeftIo.js"
import { generate } from "../src/model/Generate.js"
import { fillNormal, initWeights } from "../src/model/InitWeights.js"
import type { HostTensor, ModelConfig, WeightMap } from "../src/model/ModelConfig.js"
import { makeRng } from "../src/model/Sampling.js"
import type { TransformerWeights } from "../src/model/Transformer.js"
import { createTransformerWeights, disposeTransformerWeights, projectionNames } from "../src/model/Transformer.js"
import { tempDir, tinyLlamaConfig } from "../src/testing/HfFixture.js"

const config: ModelConfig = { ...tinyLlamaConfig, vocabSize: 48, hiddenSize: 32, intermediateSize: 48 }

/** The same adapter with B drawn from N(0, std), standing in for a trained one. */
const withRandomB = (adapter: LoraAdapter, seed: number, std: number): LoraAdapter => ({
  ...adapter,
  trainedSteps: 17,
  modules: adapter.modules.map((m, i) => {
    const data = new Float32Array(m.b.data.length)
    fillNormal(data, makeRng(seed + i), std)
    return { ...m, b: { shape: m.b.shape, data } }
  })
})

const loadError = (dir: string, options?: Parameters<typeof loadAdapter>[1]) =>
  Effect.flip(loadAdapter(dir, options)) as Effect.Effect<AdapterIoError>

const readJson = (file: string) => JSON.parse(Fs.readFileSync(file, "utf8")) as Record<string, unknown>
const writeJson = (file: string, json: unknown) => Fs.writeFileSync(file, JSON.stringify(json, null, 2))

describe("PEFT adapter IO", () => {
  let host: WeightMap
  let weights: TransformerWeights
  let parentModelHash: string
  let adapter: LoraAdapter
  const allTargets: LoraConfig = { rank: 4, alpha: 8, dropout: 0.05, targets: projectionNames }

  beforeAll(async () => {
    await tf.setBackend("cpu")
    host = initWeights(config, 5, 0.3)
    weights = createTransformerWeights(config, host)
    parentModelHash = hashWeights(host)
    adapter = withRandomB(
      createLoraAdapter(config, allTargets, { seed: 9, parentModelHash, createdAtStep: 3 }),
      11,
      0.5
    )
    return () => disposeTransformerWeights(weights)
  })

  it.scoped("round-trips an adapter exactly", () =>
    Effect.gen(function*() {
      const root = yield* tempDir("peft-roundtrip")
      const dir = Path.join(root, "nested", "adapter")
      yield* saveAdapter(dir, adapter, { baseModelNameOrPath: "models/tiny" })
      const loaded = yield* loadAdapter(dir, { parentModelHash, modelConfig: config })
      expect(loaded).toEqual(adapter)

      // rsLoRA, a subset of targets, and no expectations at all.
      const subset = withRandomB(
        createLoraAdapter(config, { rank: 2, alpha: 3, dropout: 0, targets: ["v", "q", "down"], rsLora: true }, {
          seed: 1,
          parentModelHash
        }),
        2,
        0.1
      )
      const other = Path.join(root, "subset")
      yield* saveAdapter(other, subset)
      const back = yield* loadAdapter(other)
      expect(back.config).toEqual({ rank: 2, alpha: 3, dropout: 0, targets: ["q", "v", "down"], rsLora: true })
      expect(back.modules).toEqual(subset.modules)
      expect(back.id).toBe(subset.id)
    }))

  it.scoped("writes PEFT's layout: adapter_config.json fields and tensor names, shapes and order", () =>
    Effect.gen(function*() {
      const root = yield* tempDir("peft-layout")
      const dir = Path.join(root, "adapter")
      const qv = withRandomB(
        createLoraAdapter(config, { rank: 4, alpha: 16, dropout: 0.1, targets: ["q", "v"] }, {
          seed: 2,
          parentModelHash,
          createdAtStep: 5
        }),
        3,
        0.1
      )
      yield* saveAdapter(dir, qv, { baseModelNameOrPath: "TinyLlama" })
      expect(Fs.readdirSync(dir).sort()).toEqual([adapterConfigFile, adapterWeightsFile])
      // Nothing temporary is left beside it.
      expect(Fs.readdirSync(root)).toEqual(["adapter"])

      const json = readJson(Path.join(dir, adapterConfigFile))
      expect(json).toMatchObject({
        peft_type: "LORA",
        task_type: "CAUSAL_LM",
        r: 4,
        lora_alpha: 16,
        lora_dropout: 0.1,
        target_modules: ["q_proj", "v_proj"],
        use_rslora: false,
        use_dora: false,
        bias: "none",
        fan_in_fan_out: false,
        modules_to_save: null,
        base_model_name_or_path: "TinyLlama",
        seal: { id: qv.id, parentModelHash, createdAtStep: 5, trainedSteps: 17 }
      })

      const header = yield* readSafetensorsHeader(Path.join(dir, adapterWeightsFile))
      expect(header.metadata).toEqual({ format: "pt" })
      const q = config.numHeads * config.headDim
      const kv = config.numKvHeads * config.headDim
      const expected: Array<[string, Array<number>]> = []
      for (let layer = 0; layer < config.numLayers; layer++) {
        expected.push(
          [`base_model.model.model.layers.${layer}.self_attn.q_proj.lora_A.weight`, [4, config.hiddenSize]],
          [`base_model.model.model.layers.${layer}.self_attn.q_proj.lora_B.weight`, [q, 4]],
          [`base_model.model.model.layers.${layer}.self_attn.v_proj.lora_A.weight`, [4, config.hiddenSize]],
          [`base_model.model.model.layers.${layer}.self_attn.v_proj.lora_B.weight`, [kv, 4]]
        )
      }
      expect([...header.tensors.values()].map((t) => [t.name, [...t.shape]])).toEqual(expected)
      expect([...header.tensors.values()].every((t) => t.dtype === "F32")).toBe(true)
      expect(peftTensorName(3, "down", "B")).toBe("base_model.model.model.layers.3.mlp.down_proj.lora_B.weight")
      expect(peftTensorName(0, "gate", "A")).toBe("base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight")
      // The values are A [r, in] and B [out, r] as held in memory (no transposes on the way out).
      const tensors = yield* readSafetensors(Path.join(dir, adapterWeightsFile))
      expect(tensors.get(expected[1]![0])!.data).toEqual(qv.modules[0]!.b.data)
      expect(tensors.get(expected[2]![0])!.data).toEqual(qv.modules[1]!.a.data)
    }))

  it.scoped("generates the same tokens with a loaded adapter as with the one in memory", () =>
    Effect.gen(function*() {
      const dir = Path.join(yield* tempDir("peft-generate"), "adapter")
      yield* saveAdapter(dir, adapter)
      const loaded = yield* loadAdapter(dir, { parentModelHash, modelConfig: config })
      const run = (a: LoraAdapter | undefined) => {
        const device = a === undefined ? undefined : uploadLora(a, false)
        const logits: Array<number> = []
        try {
          const rows = generate(weights, [[1, 5, 9], [2, 7]], {
            maxTokens: 12,
            temperature: 0,
            hook: device === undefined ? undefined : loraHook(device),
            onLogits: (_, __, l) => logits.push(...l.slice(0, 8))
          })
          return { tokens: rows.map((r) => r.tokens), logits }
        } finally {
          if (device !== undefined) disposeDeviceLora(device)
        }
      }
      const fromMemory = run(adapter)
      const fromDisk = run(loaded)
      expect(fromDisk.tokens).toEqual(fromMemory.tokens)
      expect(fromDisk.logits).toEqual(fromMemory.logits)
      // The adapter does change the output, so the comparison above means something.
      expect(run(undefined).logits).not.toEqual(fromMemory.logits)
    }))

  it.scoped("refuses an adapter of another model (StaleAdapter) and one of unknown parentage unless allowed", () =>
    Effect.gen(function*() {
      const dir = Path.join(yield* tempDir("peft-stale"), "adapter")
      yield* saveAdapter(dir, adapter)
      const stale = yield* loadError(dir, { parentModelHash: "0123456789abcdef", modelConfig: config })
      expect([stale.reason, stale.field]).toEqual(["StaleAdapter", "seal.parentModelHash"])
      expect(stale.message).toContain(adapterConfigFile)
      expect(stale.message).toContain(adapter.id)
      expect(stale.message).toContain("0123456789ab")

      // What Python PEFT writes: no `seal` key.
      const configPath = Path.join(dir, adapterConfigFile)
      const { seal: _, ...peftOnly } = readJson(configPath)
      writeJson(configPath, peftOnly)
      const unknown = yield* loadError(dir, { parentModelHash, modelConfig: config })
      expect([unknown.reason, unknown.field]).toEqual(["UnknownParent", "seal"])
      const allowed = yield* loadAdapter(dir, { parentModelHash, modelConfig: config, allowUnknownParent: true })
      expect(allowed.parentModelHash).toBe(unknownParentModelHash)
      expect(allowed.id).toMatch(/^peft-[0-9a-f]{16}$/)
      expect(allowed.modules).toEqual(adapter.modules)
      expect(allowed.config).toEqual(adapter.config)
      // The id is a function of the files.
      expect((yield* loadAdapter(dir, { allowUnknownParent: true })).id).toBe(allowed.id)
    }))

  it.scoped("names the file and field for missing files, bad JSON and unsupported PEFT features", () =>
    Effect.gen(function*() {
      const root = yield* tempDir("peft-errors")
      const missing = yield* loadError(Path.join(root, "nowhere"))
      expect(missing.reason).toBe("NotFound")
      expect(missing.file).toBe(Path.join(root, "nowhere", adapterConfigFile))

      const dir = Path.join(root, "adapter")
      yield* saveAdapter(dir, adapter)
      const configPath = Path.join(dir, adapterConfigFile)
      const original = readJson(configPath)

      Fs.writeFileSync(configPath, "{ not json")
      const badJson = yield* loadError(dir)
      expect([badJson.reason, badJson.file]).toEqual(["Malformed", configPath])
      expect(badJson.message).toMatch(/not valid JSON/)

      const cases: Array<[Record<string, unknown>, string, string]> = [
        [{ r: "four" }, "Malformed", "r"],
        [{ r: 0 }, "Malformed", "r"],
        [{ lora_alpha: -1 }, "Malformed", "lora_alpha"],
        [{ peft_type: "LOHA" }, "Unsupported", "peft_type"],
        [{ use_dora: true }, "Unsupported", "use_dora"],
        [{ bias: "all" }, "Unsupported", "bias"],
        [{ target_modules: ["q_proj", "lm_head"] }, "Unsupported", "target_modules"],
        [{ modules_to_save: ["lm_head"] }, "Unsupported", "modules_to_save"],
        [{ rank_pattern: { q_proj: 8 } }, "Unsupported", "rank_pattern"],
        [{ seal: { id: "x", parentModelHash } }, "Malformed", "seal.createdAtStep"]
      ]
      for (const [patch, reason, field] of cases) {
        writeJson(configPath, { ...original, ...patch })
        const error = yield* loadError(dir, { parentModelHash })
        expect([error.reason, error.field, error.file], JSON.stringify(patch)).toEqual([reason, field, configPath])
      }
      writeJson(configPath, original)

      // A target_modules regex (PEFT allows one): the tensors say which projections are adapted.
      writeJson(configPath, { ...original, target_modules: ".*_proj" })
      expect((yield* loadAdapter(dir, { parentModelHash, modelConfig: config })).config.targets).toEqual(
        projectionNames
      )
      writeJson(configPath, original)

      const weightsPath = Path.join(dir, adapterWeightsFile)
      const tensors = yield* readSafetensors(weightsPath)
      Fs.rmSync(weightsPath)
      const noWeights = yield* loadError(dir)
      expect([noWeights.reason, noWeights.file]).toEqual(["NotFound", weightsPath])
      yield* writeSafetensors(weightsPath, tensors)
    }))

  it.scoped("names the tensor that is missing, foreign or the wrong shape for the model", () =>
    Effect.gen(function*() {
      const dir = Path.join(yield* tempDir("peft-tensors"), "adapter")
      yield* saveAdapter(dir, adapter)
      const weightsPath = Path.join(dir, adapterWeightsFile)
      const tensors = yield* readSafetensors(weightsPath)
      const rewrite = (edit: (m: Map<string, HostTensor>) => void) => {
        const copy = new Map(tensors)
        edit(copy)
        return writeSafetensors(weightsPath, copy)
      }

      const bName = peftTensorName(1, "up", "B")
      yield* rewrite((m) => m.delete(bName))
      const noB = yield* loadError(dir, { parentModelHash })
      expect([noB.reason, noB.field, noB.file]).toEqual(["Malformed", bName, weightsPath])

      // A whole module gone is only detectable against the model's shape.
      yield* rewrite((m) => {
        m.delete(peftTensorName(1, "up", "A"))
        m.delete(bName)
      })
      expect((yield* loadAdapter(dir, { parentModelHash })).modules).toHaveLength(adapter.modules.length - 1)
      const noModule = yield* loadError(dir, { parentModelHash, modelConfig: config })
      expect([noModule.reason, noModule.field]).toEqual(["Malformed", peftTensorName(1, "up", "A")])

      yield* rewrite((m) => m.set("base_model.model.lm_head.lora_A.weight", m.get(bName)!))
      const foreign = yield* loadError(dir, { parentModelHash })
      expect([foreign.reason, foreign.field]).toEqual(["Unsupported", "base_model.model.lm_head.lora_A.weight"])

      yield* rewrite(() => {})
      const wider = { ...config, hiddenSize: 64, numHeads: 8 }
      const shape = yield* loadError(dir, { parentModelHash, modelConfig: wider })
      expect([shape.reason, shape.field]).toEqual(["ShapeMismatch", peftTensorName(0, "q", "A")])
      expect(shape.message).toMatch(/\[4,32\] should be \[4, 64\]/)
      const deeper = yield* loadError(dir, { parentModelHash, modelConfig: { ...config, numLayers: 1 } })
      expect([deeper.reason, deeper.field]).toEqual(["ShapeMismatch", peftTensorName(1, "q", "A")])

      // A rank in the config that the tensors do not have.
      const configPath = Path.join(dir, adapterConfigFile)
      writeJson(configPath, { ...readJson(configPath), r: 8 })
      const rank = yield* loadError(dir, { parentModelHash })
      expect([rank.reason, rank.field]).toEqual(["ShapeMismatch", peftTensorName(0, "q", "A")])
    }))

  it.scoped("replaces an earlier adapter but never a directory holding anything else", () =>
    Effect.gen(function*() {
      const root = yield* tempDir("peft-replace")
      const dir = Path.join(root, "adapter")
      const first = createLoraAdapter(config, { rank: 2, alpha: 2, dropout: 0, targets: ["q"] }, {
        seed: 1,
        parentModelHash
      })
      yield* saveAdapter(dir, first)
      yield* saveAdapter(dir, adapter)
      expect(yield* loadAdapter(dir, { parentModelHash, modelConfig: config })).toEqual(adapter)
      expect(Fs.readdirSync(root)).toEqual(["adapter"])

      const busy = Path.join(root, "run")
      Fs.mkdirSync(busy)
      Fs.writeFileSync(Path.join(busy, "notes.txt"), "keep me")
      const refused = yield* Effect.flip(saveAdapter(busy, adapter))
      expect([refused.reason, refused.file]).toEqual(["WriteFailed", busy])
      expect(refused.message).toMatch(/notes\.txt/)
      expect(Fs.readdirSync(busy)).toEqual(["notes.txt"])

      const file = Path.join(root, "file")
      Fs.writeFileSync(file, "x")
      expect((yield* Effect.flip(saveAdapter(file, adapter))).reason).toBe("WriteFailed")

      // An adapter whose shapes contradict its rank is refused before anything is written.
      const broken = { ...adapter, config: { ...adapter.config, rank: 3 } }
      const bad = yield* Effect.flip(saveAdapter(Path.join(root, "broken"), broken))
      expect(bad.reason).toBe("ShapeMismatch")
      expect(Fs.existsSync(Path.join(root, "broken"))).toBe(false)
    }))
})
