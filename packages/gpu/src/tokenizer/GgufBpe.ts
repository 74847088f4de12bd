/**
 * Byte-level BPE vocabularies embedded in GGUF (`tokenizer.ggml.model == "gpt2"`: GPT-2, Qwen2,
 * Llama 3, ...). The `tokenizer.ggml.*` metadata is turned into the `tokenizer.json` a Hugging
 * Face tokenizer would ship (BPE model, a pre-tokenizer `Sequence` of `Split`s then `ByteLevel`,
 * a `ByteLevel` decoder, added tokens for control and user-defined tokens) and built with
 * `makeHfTokenizer`, so the result behaves like llama.cpp's tokenizer for the same file.
 *
 * Where Hugging Face and llama.cpp differ, this follows llama.cpp, which is what wrote the file:
 * no normalizer (Qwen2's `tokenizer.json` has NFC; llama.cpp does not apply it), the
 * pre-tokenizer regexes llama.cpp uses for each `tokenizer.ggml.pre`, and its `add_bos` default.
 */
import { Effect } from "effect"
import { CheckpointError } from "../checkpoint/CheckpointError.js"
import { asNumber, describe, type Metadata, metadataReader, vocabularyTokens } from "../checkpoint/GgufMetadata.js"
import type { HfTokenizer } from "./HfTokenizer.js"
import { makeHfTokenizer } from "./HfTokenizer.js"

/** llama.cpp's `llama_token_type`, as `tokenizer.ggml.token_type` stores it. */
const TokenType = { Unknown: 2, Control: 3, UserDefined: 4 } as const

// Pre-tokenizer regexes, in the Oniguruma syntax `tokenizer.json` uses (the library rewrites them
// to JavaScript; its `\s` becomes `\p{White_Space}`, which is llama.cpp's whitespace set).
// JavaScript has no inline `(?i:...)`. The library does expand it (ASCII letters only), but the
// contractions are spelled out case by case here, as llama.cpp itself does, so nothing depends
// on that rewrite: `(?i:'s|'t|'re|'ve|'m|'ll|'d)` becomes the group below.
const contractionsAnyCase = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
/** GPT-2's regex (llama.cpp drops the final `|\s+`; unmatched text becomes a piece either way). */
const gpt2Regex = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
const llama3Regex = contractionsAnyCase
  + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/** Qwen2's: Llama 3's with single digits. */
const qwen2Regex = contractionsAnyCase
  + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

/** One of llama.cpp's BPE pre-tokenizers (`llama_vocab_pre_type`). */
interface PreTokenizer {
  /** Applied in turn, each splitting every piece so far into its matches and the text between. */
  readonly regexes: ReadonlyArray<string>
  /** A pre-tokenized word that is itself in the vocabulary is one token, whatever the merges say. */
  readonly ignoreMerges: boolean
  /** Whether BOS is added when `tokenizer.ggml.add_bos_token` does not say. */
  readonly addBos: boolean
}

const gpt2: PreTokenizer = { regexes: [gpt2Regex], ignoreMerges: false, addBos: false }
const llama3: PreTokenizer = { regexes: [llama3Regex], ignoreMerges: true, addBos: true }
const qwen2: PreTokenizer = { regexes: [qwen2Regex], ignoreMerges: false, addBos: false }
const starcoder: PreTokenizer = { regexes: [String.raw`\p{N}`, gpt2Regex], ignoreMerges: false, addBos: false }
const falcon: PreTokenizer = {
  regexes: [String.raw`[\p{P}\$\+<=>\^~\|` + "`]+", gpt2Regex, "[0-9][0-9][0-9]"],
  ignoreMerges: false,
  addBos: false
}
/** llama.cpp's fallback for an absent `tokenizer.ggml.pre` (it warns that quality suffers). */
const byDefault: PreTokenizer = {
  regexes: [String.raw`[\p{P}\$\+<=>\^~\|]+`, gpt2Regex, String.raw`\p{N}+`, "[0-9][0-9][0-9]"],
  ignoreMerges: false,
  addBos: false
}

/**
 * The `tokenizer.ggml.pre` values we accept, named as llama.cpp's converter writes them: those of
 * llama.cpp's pre-tokenizer types that use one of the regexes above and set no per-token
 * strip attributes. "gpt2" is accepted as an alias of "gpt-2" although llama.cpp rejects it.
 */
const preTokenizers: ReadonlyMap<string, PreTokenizer> = new Map([
  ["default", byDefault],
  ...["gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "jina-v1-en", "roberta-bpe", "gigachat", "a.x-4.0", "mellum"]
    .map((name) => [name, gpt2] as const),
  ...["exaone4", "mpt", "olmo", "jais", "trillion", "granite-docling"].map((name) => [name, gpt2] as const),
  ...["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"]
    .map((name) => [name, llama3] as const),
  // Llama 3's regex without ignore_merges and without the BOS default.
  ...["dbrx", "smaug-bpe", "chatglm-bpe", "glm4"].map((name) =>
    [name, { ...llama3, ignoreMerges: false, addBos: false }] as const
  ),
  ...["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2"]
    .map((name) => [name, qwen2] as const),
  ...["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"]
    .map((name) => [name, starcoder] as const),
  ["falcon", falcon]
])

/** The `tokenizer.ggml.pre` values this module understands. */
export const ggufBpePreTokenizerNames: ReadonlyArray<string> = [...preTokenizers.keys()]

/**
 * `tokenizer.json`'s `model.vocab`: token -> id. The object has no prototype, so a token spelt
 * "__proto__" is an ordinary key; a token that appears twice keeps its last id, as in llama.cpp's
 * token_to_id. (A plain loop: `Object.fromEntries` is many times slower on 150k tokens.)
 */
const vocabObject = (tokens: ReadonlyArray<string>): Record<string, number> => {
  const vocab = Object.create(null) as Record<string, number>
  for (let id = 0; id < tokens.length; id++) vocab[tokens[id]!] = id
  return vocab
}

/** What `bpeTokenizerFromGgufMetadata` builds the tokenizer from. */
export interface GgufBpeTokenizerSpec {
  /** A `tokenizer.json` object for `makeHfTokenizer`. */
  readonly tokenizerJson: Record<string, unknown>
  /** The `tokenizer_config.json` fields that matter: `add_bos_token`. */
  readonly tokenizerConfig: { readonly add_bos_token: boolean }
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  readonly padId: number | undefined
}

/**
 * Reads the `tokenizer.ggml.*` metadata of a byte-level BPE GGUF and synthesises the equivalent
 * `tokenizer.json`. Fails with a `CheckpointError` naming the key at fault: no vocabulary or no
 * merges is "MissingTokenizer"; a malformed value is "Malformed"; a `tokenizer.ggml.pre` we do not
 * know is "UnknownArchitecture" (like an unsupported `general.architecture`, the file may be
 * perfectly valid; it is this loader that lacks the pre-tokenizer).
 */
export const ggufBpeTokenizerSpec = (
  file: string,
  metadata: Readonly<Record<string, unknown>>
): Effect.Effect<GgufBpeTokenizerSpec, CheckpointError> =>
  Effect.gen(function*() {
    const read = metadataReader(file, metadata as Metadata)
    const malformed = read.malformed

    const vocab = yield* vocabularyTokens(file, metadata as Metadata)
    const n = vocab.length

    const rawMerges = metadata["tokenizer.ggml.merges"]
    if (rawMerges === undefined) {
      // Named after the key that asked for BPE: that is what cannot be honoured.
      return yield* new CheckpointError({
        file,
        field: "tokenizer.ggml.model",
        reason: "MissingTokenizer",
        detail: "tokenizer model \"gpt2\" (byte-level BPE) needs tokenizer.ggml.merges, which the file lacks"
      })
    }
    if (!Array.isArray(rawMerges) || !rawMerges.every((m) => typeof m === "string")) {
      return yield* malformed("tokenizer.ggml.merges", `expected a list of strings, found ${describe(rawMerges)}`)
    }
    const merges: Array<[string, string]> = []
    for (const [i, merge] of (rawMerges as ReadonlyArray<string>).entries()) {
      // As llama.cpp: the first space after the first character separates the pair.
      const space = merge.indexOf(" ", 1)
      if (space < 0) {
        return yield* malformed("tokenizer.ggml.merges", `merge ${i} (${JSON.stringify(merge)}) is not "left right"`)
      }
      merges.push([merge.slice(0, space), merge.slice(space + 1)])
    }

    const rawTypes = metadata["tokenizer.ggml.token_type"]
    const types = rawTypes === undefined ? undefined : Array.isArray(rawTypes) ? rawTypes.map(asNumber) : []
    if (types !== undefined && (types.length !== n || types.some((t) => t === undefined))) {
      return yield* malformed("tokenizer.ggml.token_type", `expected ${n} numbers, found ${describe(rawTypes)}`)
    }

    const rawPre = metadata["tokenizer.ggml.pre"]
    if (rawPre !== undefined && typeof rawPre !== "string") {
      return yield* malformed("tokenizer.ggml.pre", `expected a string, found ${describe(rawPre)}`)
    }
    // An absent (or empty) pre-tokenizer is llama.cpp's "default".
    const preName = rawPre === undefined || rawPre === "" ? "default" : rawPre
    const pre = preTokenizers.get(preName)
    if (pre === undefined) {
      return yield* new CheckpointError({
        file,
        field: "tokenizer.ggml.pre",
        reason: "UnknownArchitecture",
        detail: `pre-tokenizer ${JSON.stringify(preName)} is not supported (supported: ${
          ggufBpePreTokenizerNames.join(", ")
        })`
      })
    }

    const bosId = yield* read.optionalId("tokenizer.ggml.bos_token_id", n)
    const eosId = yield* read.optionalId("tokenizer.ggml.eos_token_id", n)
    const padId = yield* read.optionalId("tokenizer.ggml.padding_token_id", n)
    const rawAddBos = metadata["tokenizer.ggml.add_bos_token"]
    if (rawAddBos !== undefined && typeof rawAddBos !== "boolean") {
      return yield* malformed("tokenizer.ggml.add_bos_token", `expected a boolean, found ${describe(rawAddBos)}`)
    }

    // Control, user-defined and unknown tokens are matched in the text before pre-tokenization,
    // as llama.cpp does (control ones only when it parses special tokens, as Hugging Face always
    // does). Control and unknown tokens are "special": decoding skips them.
    const addedTokens: Array<Record<string, unknown>> = []
    if (types !== undefined) {
      types.forEach((type, id) => {
        const special = type === TokenType.Control || type === TokenType.Unknown
        if ((special || type === TokenType.UserDefined) && vocab[id]!.length > 0) {
          addedTokens.push({
            id,
            content: vocab[id],
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
            special
          })
        }
      })
    }

    const tokenizerJson: Record<string, unknown> = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: addedTokens,
      normalizer: null,
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          ...pre.regexes.map((regex) => ({
            type: "Split",
            pattern: { Regex: regex },
            behavior: "Isolated",
            invert: false
          })),
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false }
        ]
      },
      post_processor: null,
      decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre.ignoreMerges,
        vocab: vocabObject(vocab),
        merges
      }
    }
    return {
      tokenizerJson,
      tokenizerConfig: { add_bos_token: rawAddBos ?? pre.addBos },
      bosId,
      eosId,
      padId
    }
  })

/**
 * The tokenizer of a GGUF whose `tokenizer.ggml.model` is "gpt2" (byte-level BPE). BOS is added
 * by default when `tokenizer.ggml.add_bos_token` says so, or, without that key, when llama.cpp
 * would (the Llama 3 pre-tokenizers). Decoding skips BOS, EOS and control tokens and does not
 * clean up spaces (llama.cpp does for some pre-tokenizers, e.g. GPT-2's), so it is lossless.
 */
export const bpeTokenizerFromGgufMetadata = (
  file: string,
  metadata: Readonly<Record<string, unknown>>
): Effect.Effect<HfTokenizer, CheckpointError> =>
  Effect.flatMap(ggufBpeTokenizerSpec(file, metadata), (spec) =>
    Effect.try({
      try: () => makeHfTokenizer(spec.tokenizerJson, spec.tokenizerConfig, { bosId: spec.bosId, eosId: spec.eosId }),
      catch: (e) =>
        new CheckpointError({
          file,
          field: "tokenizer.ggml.tokens",
          reason: "Malformed",
          detail: `cannot build the byte-level BPE tokenizer: ${e instanceof Error ? e.message : String(e)}`
        })
    }))
