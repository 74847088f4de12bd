import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import { loadGguf } from "../src/checkpoint/Gguf.js"
import type { SentencePieceVocab } from "../src/tokenizer/SentencePiece.js"
import { makeSentencePieceTokenizer, SentencePieceTokenizer } from "../src/tokenizer/SentencePiece.js"

const storiesPath = fileURLToPath(new URL("../../../models/stories260K.gguf", import.meta.url))

/** Reference ids from llama.cpp; regenerate with tools/fixtures/llama-cpp-tokenize.mjs. */
interface TokenizationFixture {
  readonly model_sha256: string
  readonly bos_id: number
  readonly cases: ReadonlyArray<
    { readonly text: string; readonly ids: ReadonlyArray<number>; readonly decoded: string }
  >
}
const fixture = JSON.parse(
  Fs.readFileSync(new URL("./fixtures/tokenization.stories260K.json", import.meta.url), "utf8")
) as TokenizationFixture

const storiesTokenizer = loadGguf(storiesPath).pipe(Effect.map((c) => c.tokenizer))

const label = (text: string) => JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text)

describe("SentencePiece on stories260K against llama.cpp", () => {
  it("the fixture is for the bundled model", () => {
    const sha = createHash("sha256").update(Fs.readFileSync(storiesPath)).digest("hex")
    expect(sha).toBe(fixture.model_sha256)
    expect(fixture.cases.length).toBeGreaterThan(20)
  })

  it.effect("encodes every case to llama.cpp's ids", () =>
    Effect.gen(function*() {
      const tokenizer = yield* storiesTokenizer
      for (const c of fixture.cases) {
        expect(tokenizer.encode(c.text, { addBos: false }), label(c.text)).toEqual(c.ids)
        expect(tokenizer.encode(c.text), label(c.text)).toEqual([fixture.bos_id, ...c.ids])
      }
    }))

  it.effect("decodes every case to llama.cpp's text", () =>
    Effect.gen(function*() {
      const tokenizer = yield* storiesTokenizer
      for (const c of fixture.cases) {
        expect(tokenizer.decode(c.ids), label(c.text)).toBe(c.decoded)
        // BOS and EOS are control tokens and decode to nothing.
        expect(tokenizer.decode([1, ...c.ids, 2]), label(c.text)).toBe(c.decoded)
      }
    }))

  it.effect("round-trips text that does not itself contain the ▁ marker", () =>
    Effect.gen(function*() {
      const tokenizer = yield* storiesTokenizer
      for (const c of fixture.cases) {
        if (c.text.includes("\u2581")) continue
        expect(tokenizer.decode(tokenizer.encode(c.text)), label(c.text)).toBe(c.text)
      }
      expect(tokenizer.encode("")).toEqual([1])
      expect(tokenizer.encode("", { addBos: false })).toEqual([])
      expect(tokenizer.decode([])).toBe("")
    }))

  it.effect("encodes a few thousand characters in milliseconds", () =>
    Effect.gen(function*() {
      const tokenizer = yield* storiesTokenizer
      const story = fixture.cases.at(-1)!.text
      const long = story.repeat(Math.ceil(20_000 / story.length))
      tokenizer.encode(long) // warm up the JIT
      const start = performance.now()
      const ids = tokenizer.encode(long)
      const elapsed = performance.now() - start
      expect(tokenizer.decode(ids)).toBe(long)
      // 20k characters; quadratic merging would take seconds.
      expect(elapsed).toBeLessThan(250)
    }))
})

describe("SentencePieceTokenizer from plain arrays", () => {
  const bytePieces = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)
  /**
   * ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 the bytes (<0xXX> is 3 + XX), then "▁", "a", "b", "c",
   * then the pieces named in `scores` with those scores.
   */
  const vocab = (scores: Record<string, number>, options: Partial<SentencePieceVocab> = {}): SentencePieceVocab => {
    const tokens = ["<unk>", "<s>", "</s>", ...bytePieces, "\u2581", "a", "b", "c", ...Object.keys(scores)]
    return { tokens, scores: tokens.map((t) => scores[t] ?? 0), bosId: 1, eosId: 2, unkId: 0, ...options }
  }
  const pieces = (t: SentencePieceTokenizer, ids: ReadonlyArray<number>) => ids.map((i) => t.idToToken(i))

  it("merges the highest-scoring pair first", () => {
    // "bc" outscores "ab", so "abc" becomes a + bc even though "ab" is further left.
    const t = makeSentencePieceTokenizer(vocab({ bc: 5, ab: 1 }))
    expect(pieces(t, t.encode("abc", { addBos: false }))).toEqual(["\u2581", "a", "bc"])
    const u = makeSentencePieceTokenizer(vocab({ bc: 1, ab: 5 }))
    expect(pieces(u, u.encode("abc", { addBos: false }))).toEqual(["\u2581", "ab", "c"])
  })

  it("breaks ties to the left", () => {
    const t = makeSentencePieceTokenizer(vocab({ ab: 1, bc: 1 }))
    expect(pieces(t, t.encode("abc", { addBos: false }))).toEqual(["\u2581", "ab", "c"])
  })

  it("keeps merging into longer pieces, whatever their own score", () => {
    const t = makeSentencePieceTokenizer(vocab({ "\u2581a": 3, "\u2581ab": -5, "\u2581abc": -9, bc: -1 }))
    // ▁a first (3), then bc (-1), then ▁a + bc = ▁abc; ▁ab is never formed.
    expect(pieces(t, t.encode("abc"))).toEqual(["<s>", "\u2581abc"])
    expect(t.decode(t.encode("abc"))).toBe("abc")
    // Without "bc" the chain goes through ▁ab.
    const u = makeSentencePieceTokenizer(vocab({ "\u2581a": 3, "\u2581ab": -5, "\u2581abc": -9 }))
    expect(pieces(u, u.encode("abc cab", { addBos: false }))).toEqual(["\u2581abc", "\u2581", "c", "a", "b"])
  })

  it("falls back to UTF-8 bytes for characters outside the vocabulary", () => {
    const t = makeSentencePieceTokenizer(vocab({}))
    expect(pieces(t, t.encode("é🦙", { addBos: false }))).toEqual([
      "\u2581",
      "<0xC3>",
      "<0xA9>",
      "<0xF0>",
      "<0x9F>",
      "<0xA6>",
      "<0x99>"
    ])
    expect(t.decode(t.encode("é🦙"))).toBe("é🦙")
  })

  it("uses <unk> when a byte has no piece", () => {
    const base = vocab({})
    const t = makeSentencePieceTokenizer({ ...base, tokens: base.tokens.map((p) => (p === "<0xC3>" ? "<gone>" : p)) })
    expect(pieces(t, t.encode("é", { addBos: false }))).toEqual(["\u2581", "<unk>", "<0xA9>"])
  })

  it("honours add_bos and add_space_prefix", () => {
    const t = makeSentencePieceTokenizer(vocab({ "\u2581a": 1 }, { addBos: false, addSpacePrefix: false }))
    expect(pieces(t, t.encode("a a"))).toEqual(["a", "\u2581a"])
    expect(pieces(t, t.encode("a", { addBos: true }))).toEqual(["<s>", "a"])
    // Without the dummy prefix there is no leading space to strip.
    expect(t.decode(t.encode(" a"))).toBe(" a")
    const withPrefix = makeSentencePieceTokenizer(vocab({ "\u2581a": 1 }))
    expect(withPrefix.decode(withPrefix.encode("a a"))).toBe("a a")
    expect(withPrefix.decode(withPrefix.encode(" a"))).toBe(" a")
  })

  it("treats special-token text as plain text", () => {
    const t = makeSentencePieceTokenizer(vocab({}))
    expect(t.encode("<s></s>", { addBos: false })).not.toContain(1)
    expect(t.encode("<s></s>", { addBos: false })).not.toContain(2)
  })

  it("infers token types when none are given", () => {
    const t = new SentencePieceTokenizer({
      tokens: ["<unk>", "<s>", "</s>", "<0x41>", "\u2581hi", "\u2581", "h", "i", "\u2581h"],
      bosId: 1,
      eosId: 2,
      unkId: 0
    })
    expect(t.vocabSize).toBe(9)
    expect(t.decode([1, 4, 3, 2])).toBe("hiA")
    // llama.cpp shows the unknown token as ▅.
    expect(t.decode([0])).toBe("\u2585")
    expect(t.encode("hiA")).toEqual([1, 4, 3])
  })

  it("rejects inconsistent arrays", () => {
    expect(() => makeSentencePieceTokenizer({ tokens: ["a", "b"], scores: [0] })).toThrow(RangeError)
    expect(() => makeSentencePieceTokenizer({ tokens: ["a", "b"], bosId: 5 })).toThrow(RangeError)
  })
})
