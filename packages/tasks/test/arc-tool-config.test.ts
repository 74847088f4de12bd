import { describe, expect, it } from "@effect/vitest"
import { LanguageModel } from "@seal/gpu/LanguageModel"
import { initWeights } from "@seal/gpu/model/InitWeights"
import { tinyLanguageModel, tinyLlama } from "@seal/gpu/testing/TinyModel"
import { makeWordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import { Effect, Either } from "effect"
import { arcTokens, specialTokens } from "../src/arc/ArcVocabulary.js"
import {
  allToolConfigs,
  decodeToolConfig,
  inToolConfigGrammar,
  maxTrainingSteps,
  optimizerSteps,
  parseToolConfig,
  type ToolConfig,
  toolConfigGrammar,
  toolConfigKey,
  toolConfigLength,
  toolConfigMask,
  toolConfigText
} from "../src/arc/ToolConfig.js"

const tokenizer = Either.getOrThrow(makeWordLevelTokenizer(arcTokens, specialTokens))
const eos = tokenizer.eosId!

const sealConfig = `{
  "data_generation": {
    "use_basic_augmentations": true,
    "use_size_augmentations": false,
    "use_chain_augmentations": false,
    "use_repeat_augmentations": true
  },
  "training": {
    "strategy": "train_using_output_tokens",
    "learning_rate": 0.0001,
    "num_train_epochs": 3
  }
}`

const expectedConfig: ToolConfig = {
  data_generation: {
    use_basic_augmentations: true,
    use_size_augmentations: false,
    use_chain_augmentations: false,
    use_repeat_augmentations: true
  },
  training: { strategy: "train_using_output_tokens", learning_rate: 1e-4, num_train_epochs: 3 }
}

/** `sealConfig` parsed and changed by `edit` (a mutable copy), as text. */
const edited = (edit: (json: any) => void): string => {
  const json = JSON.parse(sealConfig)
  edit(json)
  return JSON.stringify(json)
}

const errorOf = (text: string) => {
  const result = parseToolConfig(text)
  if (Either.isRight(result)) throw new Error(`expected an error for ${text}`)
  return result.left
}

describe("parseToolConfig", () => {
  it("accepts a pretty-printed SEAL config and compact or oddly spaced text", () => {
    expect(parseToolConfig(sealConfig)).toEqual(Either.right(expectedConfig))
    expect(parseToolConfig(JSON.stringify(expectedConfig))).toEqual(Either.right(expectedConfig))
    expect(parseToolConfig(`\n\t ${sealConfig.replace(/: /g, " :\n  ")}  \n`)).toEqual(Either.right(expectedConfig))
    // The word-token form (learning rate written 1e-4).
    expect(parseToolConfig(toolConfigText(expectedConfig))).toEqual(Either.right(expectedConfig))
  })

  it("rejects text that is not JSON", () => {
    const error = errorOf("{ \"data_generation\": ")
    expect(error._tag).toBe("ToolConfigError")
    expect(error.reason).toBe("InvalidJson")
    expect(error.field).toBeUndefined()
    expect(errorOf("").reason).toBe("InvalidJson")
    expect(errorOf("not a config").reason).toBe("InvalidJson")
  })

  it("names the field that is missing, unknown or out of range", () => {
    const cases: ReadonlyArray<readonly [string, string, RegExp]> = [
      [edited((j) => delete j.training.num_train_epochs), "training.num_train_epochs", /missing/i],
      [edited((j) => delete j.data_generation), "data_generation", /missing/i],
      [edited((j) => (j.data_generation.use_rotation = true)), "data_generation.use_rotation", /unexpected/i],
      [edited((j) => (j.extra = 1)), "extra", /unexpected/i],
      [edited((j) => (j.training.learning_rate = -0.001)), "training.learning_rate", /positive/i],
      [edited((j) => (j.training.learning_rate = 0)), "training.learning_rate", /positive/i],
      [sealConfig.replace("0.0001", "1e999"), "training.learning_rate", /finite/i],
      [edited((j) => (j.training.learning_rate = "1e-4")), "training.learning_rate", /number/i],
      [edited((j) => (j.training.num_train_epochs = 2.5)), "training.num_train_epochs", /integer/i],
      [edited((j) => (j.training.num_train_epochs = 0)), "training.num_train_epochs", /1/],
      [edited((j) => (j.training.strategy = "train_using_some_tokens")), "training.strategy", /train_using_all_tokens/],
      [
        edited((j) => (j.data_generation.use_size_augmentations = "yes")),
        "data_generation.use_size_augmentations",
        /boolean/i
      ]
    ]
    for (const [text, field, detail] of cases) {
      const error = errorOf(text)
      expect(error.reason, text).toBe("Malformed")
      expect(error.field, text).toBe(field)
      expect(error.detail, text).toMatch(detail)
      expect(error.message).toContain(field)
    }
    expect(errorOf("[1, 2]").reason).toBe("Malformed")
    expect(errorOf("null").reason).toBe("Malformed")
  })
})

describe("the tool config grammar", () => {
  const configs = allToolConfigs()

  it("enumerates 1600 distinct configs, all in the grammar", () => {
    expect(configs).toHaveLength(2 ** 4 * 2 * 5 * 10)
    expect(new Set(configs.map(toolConfigKey)).size).toBe(1600)
    expect(configs.every(inToolConfigGrammar)).toBe(true)
    expect(toolConfigKey(expectedConfig)).toBe("basic+repeat|output_tokens|lr=0.0001|epochs=3")
  })

  it("writes every config as word tokens that parse back to it", () => {
    for (const config of configs) {
      const text = toolConfigText(config)
      expect(parseToolConfig(text)).toEqual(Either.right(config))
      // Every word is a vocabulary token, and the tokenizer decodes the ids back to the same text.
      const ids = tokenizer.encode(text, { addBos: false })
      expect(ids).toHaveLength(toolConfigLength)
      expect(ids).not.toContain(tokenizer.unkId)
      expect(tokenizer.decode(ids)).toBe(text)
      expect(decodeToolConfig(ids, tokenizer)).toEqual(Either.right(config))
    }
    expect(toolConfigText(expectedConfig)).toBe(
      "{ \"data_generation\" : { \"use_basic_augmentations\" : true , \"use_size_augmentations\" : false , " +
        "\"use_chain_augmentations\" : false , \"use_repeat_augmentations\" : true } , \"training\" : { " +
        "\"strategy\" : \"train_using_output_tokens\" , \"learning_rate\" : 1e-4 , \"num_train_epochs\" : 3 } }"
    )
  })

  it("refuses to write a config outside the grammar", () => {
    const odd = { ...expectedConfig, training: { ...expectedConfig.training, learning_rate: 5e-5 } }
    expect(inToolConfigGrammar(odd)).toBe(false)
    expect(() => toolConfigText(odd)).toThrow(/training.learning_rate/)
    const long = { ...expectedConfig, training: { ...expectedConfig.training, num_train_epochs: 11 } }
    expect(inToolConfigGrammar(long)).toBe(false)
  })

  /** The ids the mask allows after `generated`. */
  const mask = toolConfigMask(tokenizer)
  const allowedAfter = (generated: ReadonlyArray<number>): Array<number> => {
    const logits = new Float32Array(arcTokens.length).map((_, i) => i * 0.01)
    mask({ row: 0, generated, logits })
    const allowed: Array<number> = []
    logits.forEach((v, i) => {
      if (v !== -Infinity) {
        // Allowed logits keep their values.
        expect(v).toBeCloseTo(i * 0.01)
        allowed.push(i)
      }
    })
    return allowed
  }

  it("allows exactly the grammar's next tokens along every config's sequence, then EOS", () => {
    const choiceIds = toolConfigGrammar.map((slot) =>
      slot._tag === "Fixed" ? undefined : slot.tokens.map((t) => tokenizer.tokenToId(t)!).sort((a, b) => a - b)
    )
    for (const config of configs) {
      const ids = tokenizer.encode(toolConfigText(config), { addBos: false })
      for (let i = 0; i < ids.length; i++) {
        const allowed = allowedAfter(ids.slice(0, i))
        expect(allowed).toContain(ids[i])
        expect(allowed).toEqual(choiceIds[i] ?? [ids[i]])
      }
      expect(allowedAfter(ids)).toEqual([eos])
    }
  })

  it("only lets a row that left the grammar end", () => {
    const ids = tokenizer.encode(toolConfigText(expectedConfig), { addBos: false })
    expect(allowedAfter([tokenizer.tokenToId("}")!])).toEqual([eos])
    expect(allowedAfter([...ids.slice(0, 5), tokenizer.tokenToId("7")!])).toEqual([eos])
    expect(allowedAfter([...ids, ids[0]!])).toEqual([eos])
  })

  it("needs every grammar word as one token and an EOS", () => {
    const noEpochs = Either.getOrThrow(makeWordLevelTokenizer(arcTokens.filter((t) => t !== "10"), specialTokens))
    expect(() => toolConfigMask(noEpochs)).toThrow(/"10"/)
    const noEos = Either.getOrThrow(makeWordLevelTokenizer(arcTokens, { unk: "<unk>", bos: "<s>" }))
    expect(() => toolConfigMask(noEos)).toThrow(/EOS/)
  })
})

describe("constrained generation", () => {
  const config = tinyLlama({ vocabSize: arcTokens.length })
  const prompt = "in 1 2 \n 3 4 out 2 1 \n 4 3 end config"

  it.effect("always decodes to a valid config from a random tiny Llama at temperature 1", () =>
    Effect.gen(function*() {
      const model = yield* LanguageModel
      const logitMask = toolConfigMask(model.tokenizer)
      const keys = new Set<string>()
      const samples: Array<ToolConfig> = []
      for (const seed of [1, 2, 3, 4]) {
        const rows = yield* model.generate(Array.from({ length: 16 }, () => prompt), {
          maxTokens: toolConfigLength + 4,
          temperature: 1,
          seed,
          logitMask
        })
        for (const row of rows) {
          expect(row.finishReason).toBe("eos")
          expect(row.tokens).toHaveLength(toolConfigLength)
          const decoded = Either.getOrThrow(decodeToolConfig(row.tokens, model.tokenizer))
          expect(parseToolConfig(row.text)).toEqual(Either.right(decoded))
          // The continuation's text keeps the space that separates it from the prompt.
          expect(row.text.trimStart()).toBe(toolConfigText(decoded))
          samples.push(decoded)
          keys.add(toolConfigKey(decoded))
        }
      }
      expect(samples).toHaveLength(64)
      // Random weights at temperature 1 choose many different values.
      expect(keys.size).toBeGreaterThan(16)
      expect(new Set(samples.map((s) => s.training.learning_rate)).size).toBeGreaterThan(1)
      expect(new Set(samples.map((s) => s.training.num_train_epochs)).size).toBeGreaterThan(1)

      // Greedy decoding stays in the grammar too.
      const [greedy] = yield* model.generate([prompt], { maxTokens: toolConfigLength + 1, temperature: 0, logitMask })
      expect(greedy!.finishReason).toBe("eos")
      expect(Either.isRight(decodeToolConfig(greedy!.tokens, model.tokenizer))).toBe(true)
    }).pipe(Effect.provide(tinyLanguageModel(config, initWeights(config, 5, 0.3), tokenizer))))
})

describe("optimizerSteps", () => {
  it("is ceil(sequences / batchSize) × epochs", () => {
    expect(optimizerSteps({ sequences: 10, epochs: 3, batchSize: 5 })).toBe(6)
    expect(optimizerSteps({ sequences: 11, epochs: 3, batchSize: 5 })).toBe(9)
    expect(optimizerSteps({ sequences: 1, epochs: 10, batchSize: 8 })).toBe(10)
    expect(optimizerSteps({ sequences: 0, epochs: 4, batchSize: 2 })).toBe(0)
    expect(optimizerSteps({ sequences: 150, epochs: 10, batchSize: 4 })).toBe(380)
    expect(optimizerSteps({ sequences: 150, epochs: 10, batchSize: 4 }) > maxTrainingSteps).toBe(true)
    expect(optimizerSteps({ sequences: 148, epochs: 10, batchSize: 4 })).toBeLessThanOrEqual(maxTrainingSteps)
    expect(maxTrainingSteps).toBe(375)
  })
})
