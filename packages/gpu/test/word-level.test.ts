import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { tempDir } from "../src/testing/HfFixture.js"
import { HfTokenizer, loadHfTokenizer, makeHfTokenizer } from "../src/tokenizer/HfTokenizer.js"
import {
  joinWords,
  makeWordLevelTokenizer,
  readWordLevelTokenizer,
  splitWords,
  WordLevelTokenizer,
  wordLevelTokenizerConfig,
  wordLevelTokenizerJson
} from "../src/tokenizer/WordLevel.js"

const specials = { pad: "<pad>", bos: "<bos>", eos: "<eos>", unk: "<unk>" }
const words = ["<pad>", "<bos>", "<eos>", "<unk>", "\n", "passage:", "ana", "smith", "'s", "hobby", "is", "rowing", "."]
const id = (w: string) => words.indexOf(w)

const tiny = (): WordLevelTokenizer => Either.getOrThrow(makeWordLevelTokenizer(words, specials))

/** Round-trips a JSON value through text, as a file would. */
const viaText = <A>(json: A): A => JSON.parse(JSON.stringify(json)) as A

const texts = [
  "passage:\nana smith\nana smith 's hobby is rowing .",
  "ana smith",
  "\n\nana\n",
  "",
  "rowing . rowing"
]

describe("WordLevelTokenizer", () => {
  it("splits on whitespace and keeps each newline as a token", () => {
    expect(splitWords("a  b\nc \n d\t e\n\n")).toEqual(["a", "b", "\n", "c", "\n", "d", "e", "\n", "\n"])
    expect(joinWords(["a", "b", "\n", "c", "\n", "\n", "d"])).toBe("a b\nc\n\nd")
    const tokenizer = tiny()
    expect(tokenizer.encode("passage:\nana smith 's", { addBos: false })).toEqual(
      ["passage:", "\n", "ana", "smith", "'s"].map(id)
    )
  })

  it("round-trips canonical text, and ids whatever the spacing", () => {
    const tokenizer = tiny()
    for (const text of texts) {
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text)
    }
    const messy = "  ana   smith \n 's\thobby  "
    const ids = tokenizer.encode(messy, { addBos: false })
    expect(ids).toEqual(["ana", "smith", "\n", "'s", "hobby"].map(id))
    expect(tokenizer.decode(ids)).toBe("ana smith\n's hobby")
    expect(tokenizer.encode(tokenizer.decode(ids), { addBos: false })).toEqual(ids)
  })

  it("adds BOS by default, maps unknown words to UNK and drops specials when decoding", () => {
    const tokenizer = tiny()
    expect(tokenizer.vocabSize).toBe(words.length)
    expect([tokenizer.bosId, tokenizer.eosId, tokenizer.padId, tokenizer.unkId]).toEqual([1, 2, 0, 3])
    expect(tokenizer.encode("ana")).toEqual([1, id("ana")])
    expect(tokenizer.encode("ana bob", { addBos: false })).toEqual([id("ana"), 3])
    expect(tokenizer.covers("ana bob")).toBe(false)
    expect(tokenizer.covers("ana smith\n")).toBe(true)
    // Specials written in the text are matched whole, even glued to words.
    expect(tokenizer.encode("ana<eos>smith", { addBos: false })).toEqual([id("ana"), 2, id("smith")])
    expect(tokenizer.decode([1, id("ana"), 3, 2, 0, 999])).toBe("ana")
    expect(tokenizer.decodeTokens([1, id("ana"), 2], { skipSpecial: false })).toBe("<bos> ana <eos>")
  })

  it("rejects malformed vocabularies", () => {
    const reason = (tokens: ReadonlyArray<string>, s = specials) =>
      Either.match(makeWordLevelTokenizer(tokens, s), { onLeft: (e) => e.reason, onRight: () => "ok" })
    expect(reason([...words, "ana"])).toBe("InvalidVocabulary")
    expect(reason([...words, "two words"])).toBe("InvalidVocabulary")
    expect(reason([...words, ""])).toBe("InvalidVocabulary")
    expect(reason(words.filter((w) => w !== "<unk>"))).toBe("MissingToken")
    expect(reason(words, { ...specials, bos: "<s>" })).toBe("MissingToken")
  })
})

describe("tokenizer.json", () => {
  it("writes the documented WordLevel format", () => {
    const json = wordLevelTokenizerJson(tiny())
    expect(json.model).toEqual({
      type: "WordLevel",
      vocab: Object.fromEntries(words.map((w, i) => [w, i])),
      unk_token: "<unk>"
    })
    expect(json.pre_tokenizer).toEqual({
      type: "Split",
      pattern: { Regex: "\\n|[^\\s]+" },
      behavior: "Removed",
      invert: true
    })
    expect((json.added_tokens as ReadonlyArray<{ content: string }>).map((t) => t.content)).toEqual([
      "<pad>",
      "<bos>",
      "<eos>",
      "<unk>"
    ])
    expect(wordLevelTokenizerConfig(tiny())).toMatchObject({
      bos_token: "<bos>",
      eos_token: "<eos>",
      unk_token: "<unk>",
      pad_token: "<pad>",
      add_bos_token: true
    })
  })

  it("reads back what it writes: same file, same encodings", () => {
    const tokenizer = tiny()
    const json = viaText(wordLevelTokenizerJson(tokenizer))
    const config = viaText(wordLevelTokenizerConfig(tokenizer))
    for (const configArg of [config, undefined]) {
      // Without tokenizer_config.json, BOS comes from the post-processor's template.
      const read = Either.getOrThrow(readWordLevelTokenizer(json, configArg))
      expect(wordLevelTokenizerJson(read)).toEqual(json)
      expect(read.bosId).toBe(tokenizer.bosId)
      expect(read.addBosByDefault).toBe(true)
      for (const text of texts) {
        expect(read.encode(text)).toEqual(tokenizer.encode(text))
        expect(read.decode(read.encode(text))).toBe(text)
      }
    }
    const read = Either.getOrThrow(readWordLevelTokenizer(json, config))
    expect([read.eosId, read.padId, read.unkId]).toEqual([2, 0, 3])
  })

  it("loads through makeHfTokenizer and loadHfTokenizer with the same behaviour", () =>
    Effect.scoped(Effect.gen(function*() {
      const tokenizer = tiny()
      const json = viaText(wordLevelTokenizerJson(tokenizer))
      const config = viaText(wordLevelTokenizerConfig(tokenizer))
      const made = makeHfTokenizer(json, config)
      const dir = yield* tempDir("word-level")
      yield* Effect.promise(() => Fs.promises.writeFile(Path.join(dir, "tokenizer.json"), JSON.stringify(json)))
      yield* Effect.promise(() =>
        Fs.promises.writeFile(Path.join(dir, "tokenizer_config.json"), JSON.stringify(config))
      )
      const loaded = yield* loadHfTokenizer(Path.join(dir, "tokenizer.json"), Path.join(dir, "tokenizer_config.json"))
      for (const hf of [made, loaded]) {
        expect(hf).toBeInstanceOf(HfTokenizer)
        expect([hf.vocabSize, hf.bosId, hf.eosId, hf.addBosByDefault]).toEqual([words.length, 1, 2, true])
        expect(hf.tokenToId("\n")).toBe(id("\n"))
        expect(hf.idToToken(id("rowing"))).toBe("rowing")
        for (const text of [...texts, "ana bob <eos> smith"]) {
          expect(hf.encode(text)).toEqual(tokenizer.encode(text))
          expect(hf.encode(text, { addBos: false })).toEqual(tokenizer.encode(text, { addBos: false }))
          expect(hf.decode(hf.encode(text))).toBe(tokenizer.decode(tokenizer.encode(text)))
        }
      }
    })))

  it("reports a broken WordLevel file as a Malformed checkpoint error", () =>
    Effect.scoped(Effect.gen(function*() {
      const json = viaText(wordLevelTokenizerJson(tiny()))
      const dir = yield* tempDir("word-level")
      const path = Path.join(dir, "tokenizer.json")
      const broken = { ...json, model: { type: "WordLevel", vocab: { a: 0 }, unk_token: "<unk>" }, added_tokens: [] }
      yield* Effect.promise(() => Fs.promises.writeFile(path, JSON.stringify(broken)))
      const error = yield* Effect.flip(loadHfTokenizer(path))
      expect(error.reason).toBe("Malformed")
      expect(error.detail).toContain("<unk>")
    })))

  it("understands other common pre-tokenizers and decoders, and refuses unknown ones", () => {
    const vocab = { "<unk>": 0, hello: 1, ",": 2, world: 3, "a-b": 4, a: 5, "-": 6, b: 7 }
    const base = { model: { type: "WordLevel", vocab, unk_token: "<unk>" } }
    const read = (extra: Record<string, unknown>) => readWordLevelTokenizer({ ...base, ...extra })
    const encode = (extra: Record<string, unknown>, text: string) =>
      Either.getOrThrow(read(extra)).encode(text, { addBos: false })

    expect(encode({ pre_tokenizer: { type: "Whitespace" } }, "hello, world")).toEqual([1, 2, 3])
    expect(encode({ pre_tokenizer: { type: "WhitespaceSplit" } }, "hello, world")).toEqual([0, 3])
    expect(encode({ pre_tokenizer: { type: "WhitespaceSplit" } }, "a-b")).toEqual([4])
    const isolatedDash = { type: "Split", pattern: { String: "-" }, behavior: "Isolated", invert: false }
    expect(encode({
      pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "WhitespaceSplit" }, isolatedDash] }
    }, "a-b hello")).toEqual([5, 6, 7, 1])
    // No pre-tokenizer: the whole text is one word.
    expect(encode({}, "a-b")).toEqual([4])

    // No decoder joins with spaces, as the Rust library does.
    const plain = Either.getOrThrow(read({ pre_tokenizer: { type: "Whitespace" } }))
    expect(plain.decode([1, 2, 3])).toBe("hello , world")
    const fused = Either.getOrThrow(read({ decoder: { type: "Fuse" } }))
    expect(fused.decode([5, 6, 7])).toBe("a-b")

    const reason = (extra: Record<string, unknown>) =>
      Either.match(read(extra), { onLeft: (e) => `${e.reason} ${e.field}`, onRight: () => "ok" })
    expect(reason({ normalizer: { type: "Lowercase" } })).toBe("Unsupported normalizer")
    expect(reason({ pre_tokenizer: { type: "Metaspace" } })).toBe("Unsupported pre_tokenizer")
    expect(reason({ decoder: { type: "ByteLevel" } })).toBe("Unsupported decoder")
    expect(reason({ pre_tokenizer: { ...isolatedDash, behavior: "MergedWithNext" } })).toBe(
      "Unsupported pre_tokenizer.behavior"
    )
    expect(reason({ model: { type: "BPE", vocab } })).toBe("NotWordLevel model.type")
    expect(reason({ model: { type: "WordLevel", vocab } })).toBe("MissingToken model.unk_token")
    expect(reason({ model: { type: "WordLevel", vocab: { ...vocab, x: 1 }, unk_token: "<unk>" } })).toBe(
      "InvalidVocabulary model.vocab"
    )
  })
})
