import { describe, expect, it } from "@effect/vitest"
import { gguf } from "@huggingface/gguf"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import { loadGguf } from "../src/checkpoint/Gguf.js"
import { bpeTokenizerFromGgufMetadata, ggufBpePreTokenizerNames } from "../src/tokenizer/GgufBpe.js"
import { HfTokenizer } from "../src/tokenizer/HfTokenizer.js"
import type { MetadataInput } from "./support/ggufWriter.js"
import { encodeGguf, i32Array, random, removeTempFiles, syntheticModel, writeTempFile } from "./support/ggufWriter.js"

afterAll(() => removeTempFiles())

const modelPath = fileURLToPath(new URL("./fixtures/bpe-tiny.qwen2.gguf", import.meta.url))

/** Reference ids from llama.cpp; regenerate with tools/fixtures/gguf-bpe-tokenize.ts. */
interface BpeFixture {
  readonly model_sha256: string
  readonly pre_types: ReadonlyArray<string>
  readonly vocab_size: number
  readonly cases: ReadonlyArray<{
    readonly text: string
    readonly ids: Readonly<Record<string, ReadonlyArray<number>>>
    readonly decoded: string
  }>
}
const fixture = JSON.parse(
  Fs.readFileSync(new URL("./fixtures/tokenization.bpe-tiny.json", import.meta.url), "utf8")
) as BpeFixture

const label = (text: string) => JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text)

const fixtureTokenizer = loadGguf(modelPath).pipe(Effect.map((c) => c.tokenizer))

/** The fixture's metadata as @huggingface/gguf reads it, with some keys replaced (undefined removes). */
const fixtureMetadata = (overrides: Record<string, unknown> = {}) =>
  Effect.promise(() => gguf(modelPath, { allowLocalFile: true })).pipe(
    Effect.map(({ metadata }) => {
      const merged: Record<string, unknown> = { ...metadata, ...overrides }
      for (const [key, value] of Object.entries(overrides)) if (value === undefined) delete merged[key]
      return merged
    })
  )

const withPre = (pre: string) =>
  Effect.flatMap(fixtureMetadata({ "tokenizer.ggml.pre": pre }), (md) => bpeTokenizerFromGgufMetadata(modelPath, md))

const controlTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

describe("byte-level BPE from GGUF against llama.cpp", () => {
  it("the fixture is for the bundled model", () => {
    const sha = createHash("sha256").update(Fs.readFileSync(modelPath)).digest("hex")
    expect(sha).toBe(fixture.model_sha256)
    expect(fixture.cases.length).toBeGreaterThan(30)
    expect(Fs.statSync(modelPath).size).toBeLessThan(200_000)
  })

  it.effect("loadGguf gives a byte-level BPE tokenizer with the file's specials", () =>
    Effect.gen(function*() {
      const tokenizer = yield* fixtureTokenizer
      expect(tokenizer).toBeInstanceOf(HfTokenizer)
      const hf = tokenizer as HfTokenizer
      expect(tokenizer.vocabSize).toBe(fixture.vocab_size)
      const endOfText = hf.tokenToId("<|endoftext|>")
      expect(endOfText).toBeDefined()
      expect(tokenizer.bosId).toBe(endOfText)
      expect(tokenizer.eosId).toBe(endOfText)
      // tokenizer.ggml.add_bos_token is false, as Qwen2 writes it.
      expect(hf.addBosByDefault).toBe(false)
      expect(tokenizer.encode("Hello world")).toEqual(tokenizer.encode("Hello world", { addBos: false }))
      expect(tokenizer.encode("Hello world", { addBos: true })[0]).toBe(endOfText)
    }))

  it.effect("encodes every case to llama.cpp's qwen2 ids", () =>
    Effect.gen(function*() {
      const tokenizer = yield* fixtureTokenizer
      for (const c of fixture.cases) {
        expect(tokenizer.encode(c.text, { addBos: false }), label(c.text)).toEqual(c.ids.qwen2)
      }
    }))

  it.effect("decodes every case to llama.cpp's text", () =>
    Effect.gen(function*() {
      const tokenizer = yield* fixtureTokenizer
      for (const c of fixture.cases) {
        expect(tokenizer.decode(c.ids.qwen2!), label(c.text)).toBe(c.decoded)
      }
    }))

  for (const pre of fixture.pre_types) {
    it.effect(`tokenizer.ggml.pre = ${JSON.stringify(pre)} encodes every case to llama.cpp's ids`, () =>
      Effect.gen(function*() {
        const tokenizer = yield* withPre(pre)
        for (const c of fixture.cases) {
          expect(tokenizer.encode(c.text, { addBos: false }), `${pre} ${label(c.text)}`).toEqual(c.ids[pre])
        }
      }))
  }

  it("the pre-tokenizers really differ on the fixture", () => {
    for (const pre of fixture.pre_types) {
      if (pre === "qwen2") continue
      expect(fixture.cases.some((c) => JSON.stringify(c.ids[pre]) !== JSON.stringify(c.ids.qwen2)), pre).toBe(true)
    }
  })
})

/** Characters that make tokenizers stumble: multi-byte UTF-8 of every length, marks, joiners, spaces. */
const awkwardPieces = [
  " ",
  "  ",
  "\n",
  "\r\n",
  "\t",
  "\u00a0",
  "\u3000",
  "\u0085",
  "a",
  "Z",
  "'s",
  "'LL",
  "don't",
  "7",
  "123",
  "é",
  "e\u0301",
  "ß",
  "日本",
  "한",
  "Ж",
  "🦙",
  "👩‍👩‍👧",
  "❤️",
  "\u200b",
  "\ufeff",
  "\u0001",
  "!?",
  "...",
  "—",
  "<tool_call>",
  "<|",
  "|>",
  "\\",
  "𝔘𝔫𝔦"
]

const randomTexts = (count: number, seed: number): Array<string> => {
  const next = random(seed)
  return Array.from({ length: count }, () => {
    const length = 1 + Math.floor(next() * 12)
    return Array.from({ length }, () => awkwardPieces[Math.floor(next() * awkwardPieces.length)]!).join("")
  })
}

describe("byte-level BPE round trips", () => {
  const texts = [
    ...fixture.cases.map((c) => c.text).filter((text) => !controlTokens.some((t) => text.includes(t))),
    ...randomTexts(300, 11)
  ]

  for (const pre of fixture.pre_types) {
    it.effect(`decode(encode(x)) === x with tokenizer.ggml.pre = ${JSON.stringify(pre)}`, () =>
      Effect.gen(function*() {
        const tokenizer = yield* withPre(pre)
        for (const text of texts) {
          expect(tokenizer.decode(tokenizer.encode(text)), `${pre} ${label(text)}`).toBe(text)
        }
      }))
  }

  it.effect("control tokens are parsed, skipped when decoding; user-defined ones are kept", () =>
    Effect.gen(function*() {
      const tokenizer = (yield* fixtureTokenizer) as HfTokenizer
      const imStart = tokenizer.tokenToId("<|im_start|>")!
      const imEnd = tokenizer.tokenToId("<|im_end|>")!
      const toolCall = tokenizer.tokenToId("<tool_call>")!
      const ids = tokenizer.encode("<|im_start|>hi<|im_end|><tool_call>x")
      expect(ids[0]).toBe(imStart)
      expect(ids).toContain(imEnd)
      expect(ids).toContain(toolCall)
      expect(tokenizer.decode(ids)).toBe("hi<tool_call>x")
    }))

  it.effect("ids past the vocabulary decode to nothing", () =>
    Effect.gen(function*() {
      const tokenizer = yield* fixtureTokenizer
      const ids = tokenizer.encode("Hello")
      expect(tokenizer.decode([...ids, tokenizer.vocabSize + 5])).toBe("Hello")
    }))
})

// ---------------------------------------------------------------------------------------------
// A hand-made vocabulary: expectations derived by hand, and the errors
// ---------------------------------------------------------------------------------------------

/** GPT-2's byte characters: printable Latin-1 bytes are themselves, the other bytes U+0100 on. */
const byteChar = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  const table: Array<string> = []
  let next = 0x100
  for (let b = 0; b < 256; b++) table[b] = printable(b) ? String.fromCharCode(b) : String.fromCharCode(next++)
  return (b: number) => table[b]!
})()

const handMerges: ReadonlyArray<readonly [string, string]> = [
  ["Ġ", "t"], // Ġt
  ["h", "e"], // he
  ["Ġt", "he"], // Ġthe
  ["l", "l"], // ll
  ["he", "ll"], // hell
  ["hell", "o"], // hello
  ["'", "s"], // 's
  ["1", "2"], // 12
  ["Ã", "©"] // "é" (C3 A9)
]
const handTokens: ReadonlyArray<string> = [
  ...Array.from({ length: 256 }, (_, b) => byteChar(b)),
  ...handMerges.map(([a, b]) => a + b),
  "Ġworld", // no merge builds it: only ignore_merges (llama-bpe) uses it
  "__proto__", // must be an ordinary vocabulary key
  "<|endoftext|>",
  "<|im_end|>"
]
const handId = (token: string) => handTokens.indexOf(token)

const handInput = (edit: (md: Map<string, MetadataInput>) => void = () => {}) => {
  const { input } = syntheticModel({ architecture: "qwen2", vocab: handTokens, numLayers: 1, tieEmbeddings: true })
  const md = new Map(input.metadata.filter(([key]) => !key.startsWith("tokenizer.")))
  md.set("tokenizer.ggml.model", "gpt2")
  md.set("tokenizer.ggml.pre", "qwen2")
  md.set("tokenizer.ggml.tokens", handTokens)
  md.set("tokenizer.ggml.token_type", i32Array(handTokens.map((t) => t.startsWith("<|") ? 3 : 1)))
  md.set("tokenizer.ggml.merges", handMerges.map(([a, b]) => `${a} ${b}`))
  md.set("tokenizer.ggml.bos_token_id", handId("<|endoftext|>"))
  md.set("tokenizer.ggml.eos_token_id", handId("<|im_end|>"))
  edit(md)
  return { ...input, metadata: [...md] }
}

const loadHand = (edit?: (md: Map<string, MetadataInput>) => void) =>
  Effect.gen(function*() {
    const path = yield* Effect.promise(() => writeTempFile("bpe.gguf", encodeGguf(handInput(edit))))
    return { path, result: yield* Effect.either(loadGguf(path)) }
  })

const handTokenizer = (edit?: (md: Map<string, MetadataInput>) => void) =>
  Effect.flatMap(loadHand(edit), ({ result }) => result)

describe("byte-level BPE on a hand-made vocabulary", () => {
  it.effect("merges by rank within each pre-tokenized piece", () =>
    Effect.gen(function*() {
      const { tokenizer } = yield* handTokenizer()
      // " the" -> Ġ t h e -> Ġt h e -> Ġt he -> Ġthe.
      expect(tokenizer.encode(" the")).toEqual([handId("Ġthe")])
      // "hello" -> he l l o -> he ll o -> hell o -> hello; " hello" starts a new piece with Ġ.
      expect(tokenizer.encode("hello hello")).toEqual([handId("hello"), handId("Ġ"), handId("hello")])
      // Qwen2 splits digits one by one, so the "1 2" merge never applies.
      expect(tokenizer.encode("12")).toEqual([handId("1"), handId("2")])
      // Contractions are their own pieces; "é" is the merge of its two UTF-8 byte characters.
      expect(tokenizer.encode("it's é")).toEqual([handId("i"), handId("t"), handId("'s"), handId("Ġ"), handId("Ã©")])
      // Qwen2 takes "'S" case-insensitively; there is no "' S" merge so it stays two tokens.
      expect(tokenizer.encode("IT'S")).toEqual([handId("I"), handId("T"), handId("'"), handId("S")])
      // Without ignore_merges the unreachable "Ġworld" is never produced.
      expect(tokenizer.encode(" world")).not.toContain(handId("Ġworld"))
      expect(tokenizer.decode(tokenizer.encode("hello, 12 the world's é\n"))).toBe("hello, 12 the world's é\n")
      expect((tokenizer as HfTokenizer).tokenToId("__proto__")).toBe(handId("__proto__"))
      expect(tokenizer.decode([handId("__proto__")])).toBe("__proto__")
    }))

  it.effect("gpt-2 keeps digit runs together; llama-bpe takes whole words from the vocabulary", () =>
    Effect.gen(function*() {
      const gpt2 = (yield* handTokenizer((md) => md.set("tokenizer.ggml.pre", "gpt-2"))).tokenizer
      expect(gpt2.encode("12")).toEqual([handId("12")])
      const llama3 = (yield* handTokenizer((md) => md.set("tokenizer.ggml.pre", "llama-bpe"))).tokenizer
      expect(llama3.encode(" world", { addBos: false })).toEqual([handId("Ġworld")])
      expect(llama3.encode("123", { addBos: false })).toEqual([handId("12"), handId("3")])
    }))

  it.effect("BOS by default follows add_bos_token, else llama.cpp's default for the pre-tokenizer", () =>
    Effect.gen(function*() {
      const bos = handId("<|endoftext|>")
      const qwen = (yield* handTokenizer()).tokenizer
      expect(qwen.encode(" the")).toEqual([handId("Ġthe")])
      const llama3 = (yield* handTokenizer((md) => md.set("tokenizer.ggml.pre", "llama-bpe"))).tokenizer
      expect(llama3.encode(" the")).toEqual([bos, handId("Ġthe")])
      const told = (yield* handTokenizer((md) => {
        md.set("tokenizer.ggml.pre", "llama-bpe")
        md.set("tokenizer.ggml.add_bos_token", false)
      })).tokenizer
      expect(told.encode(" the")).toEqual([handId("Ġthe")])
      const forced = (yield* handTokenizer((md) => md.set("tokenizer.ggml.add_bos_token", true))).tokenizer
      expect(forced.encode(" the")).toEqual([bos, handId("Ġthe")])
      expect(forced.decode(forced.encode(" the"))).toBe(" the")
    }))

  it.effect("no tokenizer.ggml.pre is llama.cpp's default pre-tokenizer", () =>
    Effect.gen(function*() {
      const { tokenizer } = yield* handTokenizer((md) => md.delete("tokenizer.ggml.pre"))
      // The default splits punctuation runs off first, then digit runs, then groups of three digits.
      expect(tokenizer.encode("12")).toEqual([handId("12")])
      expect(tokenizer.encode("it's")).toEqual([handId("i"), handId("t"), handId("'"), handId("s")])
    }))

  it.effect("an unknown pre-tokenizer is UnknownArchitecture naming tokenizer.ggml.pre", () =>
    Effect.gen(function*() {
      const { path, result } = yield* loadHand((md) => md.set("tokenizer.ggml.pre", "no-such-pre"))
      const error = yield* Effect.flip(result)
      expect(error).toMatchObject({
        _tag: "CheckpointError",
        reason: "UnknownArchitecture",
        field: "tokenizer.ggml.pre",
        file: path
      })
      expect(error.detail).toContain("no-such-pre")
      expect(error.detail).toContain("qwen2")
      expect(ggufBpePreTokenizerNames).toContain("llama-bpe")
    }))

  it.effect("a pre-tokenizer that is not a string is Malformed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip((yield* loadHand((md) => md.set("tokenizer.ggml.pre", 7))).result)
      expect(error).toMatchObject({ reason: "Malformed", field: "tokenizer.ggml.pre" })
    }))

  it.effect("missing merges are MissingTokenizer", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip((yield* loadHand((md) => md.delete("tokenizer.ggml.merges"))).result)
      expect(error).toMatchObject({ reason: "MissingTokenizer", field: "tokenizer.ggml.model" })
      expect(error.detail).toContain("tokenizer.ggml.merges")
    }))

  it.effect("a merge without a space is Malformed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        (yield* loadHand((md) => md.set("tokenizer.ggml.merges", ["Ġ t", "he"]))).result
      )
      expect(error).toMatchObject({ reason: "Malformed", field: "tokenizer.ggml.merges" })
      expect(error.detail).toContain("merge 1")
    }))

  it.effect("token types of the wrong length are Malformed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        (yield* loadHand((md) => md.set("tokenizer.ggml.token_type", i32Array([1, 1, 1])))).result
      )
      expect(error).toMatchObject({ reason: "Malformed", field: "tokenizer.ggml.token_type" })
    }))

  it.effect("no vocabulary is MissingTokenizer naming tokenizer.ggml.tokens", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip((yield* loadHand((md) => md.delete("tokenizer.ggml.tokens"))).result)
      expect(error).toMatchObject({ reason: "MissingTokenizer", field: "tokenizer.ggml.tokens" })
    }))
})
