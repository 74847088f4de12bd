/**
 * A word-level tokenizer: one token per whitespace-separated word, newline kept as a token of its
 * own. It is what the synthetic knowledge world uses (a few hundred words, so every attribute
 * value is exactly one token) and it is stored as a standard Hugging Face `tokenizer.json`, which
 * `makeHfTokenizer`/`loadHfTokenizer` read through this module (the `@huggingface/tokenizers`
 * port has no `WordLevel` model).
 *
 * The `tokenizer.json` written by `wordLevelTokenizerJson` (the Rust/Python `tokenizers` library
 * loads it as is):
 *
 * ```json
 * {
 *   "version": "1.0", "truncation": null, "padding": null,
 *   "added_tokens": [{ "id": 0, "content": "<pad>", "single_word": false, "lstrip": false,
 *                      "rstrip": false, "normalized": false, "special": true }, ...],
 *   "normalizer": null,
 *   "pre_tokenizer": { "type": "Split", "pattern": { "Regex": "\n|[^\\s]+" },
 *                      "behavior": "Removed", "invert": true },
 *   "post_processor": { "type": "TemplateProcessing", "single": [<bos>, $A], ... },
 *   "decoder": { "type": "Sequence", "decoders": [
 *     { "type": "WordPiece", "prefix": "##", "cleanup": false },
 *     { "type": "Fuse" },
 *     { "type": "Replace", "pattern": { "Regex": " ?\n ?" }, "content": "\n" } ] },
 *   "model": { "type": "WordLevel", "vocab": { "<pad>": 0, "<bos>": 1, ..., "\n": 4, ... },
 *              "unk_token": "<unk>" }
 * }
 * ```
 *
 * - Pre-tokenizer: the inverted `Split` keeps the regex's matches (each newline, each run of
 *   non-whitespace) as pieces and drops the whitespace between them, so `"a b\nc"` is
 *   `a`, `b`, `\n`, `c`. Added tokens (the specials) are matched literally before that.
 * - Decoder: tokens joined by single spaces, with no space around a newline. Text in that
 *   canonical form (single spaces, none beside newlines) round-trips exactly:
 *   `decode(encode(text)) === text`; any text round-trips at the id level:
 *   `encode(decode(ids)) == ids` for ids without specials.
 * - `tokenizer_config.json` (`wordLevelTokenizerConfig`) names BOS/EOS/UNK/PAD and sets
 *   `add_bos_token: true`; the post-processor adds BOS too, so both readers agree.
 *
 * Files written by others may use other pre-tokenizers and decoders; `Whitespace`,
 * `WhitespaceSplit`, `Split` (behaviours `Removed`/`Isolated`), `Sequence` and no pre-tokenizer,
 * and the `WordPiece`/`Fuse`/`Replace`/`Strip`/`Sequence` decoders are understood; anything else
 * is an `Unsupported` error rather than a silently different tokenisation.
 */
import { Data, Either } from "effect"
import type { Tokenizer } from "./Tokenizer.js"

/** A word-level vocabulary or `tokenizer.json` that cannot be used; `field` names the part at fault. */
export class WordLevelError extends Data.TaggedError("WordLevelError")<{
  /**
   * NotWordLevel: `model.type` is something else; InvalidVocabulary: ids or tokens are malformed
   * or repeated; MissingToken: a named special token is not in the vocabulary; Unsupported: a
   * normalizer, pre-tokenizer or decoder this module does not implement.
   */
  readonly reason: "NotWordLevel" | "InvalidVocabulary" | "MissingToken" | "Unsupported"
  readonly field: string
  readonly detail: string
}> {
  override get message(): string {
    return `word-level tokenizer (${this.field}): ${this.detail}`
  }
}

/** The canonical pre-tokenizer: each newline and each run of non-whitespace is a word. */
export const wordPattern = String.raw`\n|[^\s]+`

/** The canonical pieces of `text`, without consulting any vocabulary. */
export const splitWords = (text: string): Array<string> => text.match(/\n|[^\s]+/g) ?? []

/** Joins words the way the canonical decoder does: single spaces, none around newlines. */
export const joinWords = (words: ReadonlyArray<string>): string => words.join(" ").replace(/ ?\n ?/g, "\n")

const canonicalPreTokenizer = {
  type: "Split",
  pattern: { Regex: wordPattern },
  behavior: "Removed",
  invert: true
}

const canonicalDecoder = {
  type: "Sequence",
  decoders: [
    { type: "WordPiece", prefix: "##", cleanup: false },
    { type: "Fuse" },
    { type: "Replace", pattern: { Regex: " ?\n ?" }, content: "\n" }
  ]
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const escapeRegex = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

type PreTokenize = (pieces: ReadonlyArray<string>) => Array<string>
type DecodeChain = (tokens: ReadonlyArray<string>) => Array<string>

const unsupported = (field: string, detail: string) =>
  Either.left(new WordLevelError({ reason: "Unsupported", field, detail }))

/** A `tokenizer.json` pattern (`{String}` literal or `{Regex}`) as a global JavaScript regex. */
const patternRegex = (pattern: unknown, field: string): Either.Either<RegExp, WordLevelError> => {
  if (isRecord(pattern) && typeof pattern.String === "string") {
    return Either.right(new RegExp(escapeRegex(pattern.String), "gu"))
  }
  if (isRecord(pattern) && typeof pattern.Regex === "string") {
    const source = pattern.Regex
    return Either.try({
      try: () => new RegExp(source, "gu"),
      catch: () => new WordLevelError({ reason: "Unsupported", field, detail: `regex ${JSON.stringify(source)}` })
    })
  }
  return unsupported(field, `pattern ${JSON.stringify(pattern)}`)
}

/** Splits `piece` into [text, isMatch] spans covering it, in order. */
const matchSpans = (piece: string, regex: RegExp): Array<readonly [string, boolean]> => {
  const spans: Array<readonly [string, boolean]> = []
  let at = 0
  for (const match of piece.matchAll(regex)) {
    // An empty match splits nothing (the Rust library skips them too).
    if (match[0].length === 0) continue
    if (match.index > at) spans.push([piece.slice(at, match.index), false])
    spans.push([match[0], true])
    at = match.index + match[0].length
  }
  if (at < piece.length) spans.push([piece.slice(at), false])
  return spans
}

const parsePreTokenizer = (json: unknown, field: string): Either.Either<PreTokenize, WordLevelError> => {
  if (json === null || json === undefined) return Either.right((pieces) => [...pieces])
  if (!isRecord(json)) return unsupported(field, `expected an object, got ${JSON.stringify(json)}`)
  switch (json.type) {
    case "WhitespaceSplit":
      return Either.right((pieces) => pieces.flatMap((p) => p.split(/\s+/u).filter((w) => w.length > 0)))
    case "Whitespace":
      return Either.right((pieces) => pieces.flatMap((p) => p.match(/\w+|[^\w\s]+/gu) ?? []))
    case "Sequence": {
      if (!Array.isArray(json.pretokenizers)) return unsupported(field, "Sequence without pretokenizers")
      return Either.all(json.pretokenizers.map((p, i) => parsePreTokenizer(p, `${field}.pretokenizers.${i}`))).pipe(
        Either.map((steps) => (pieces) => steps.reduce<Array<string>>((acc, step) => step(acc), [...pieces]))
      )
    }
    case "Split": {
      const behavior = json.behavior
      if (behavior !== "Removed" && behavior !== "Isolated") {
        return unsupported(`${field}.behavior`, `Split behaviour ${JSON.stringify(behavior)}`)
      }
      const invert = json.invert === true
      return patternRegex(json.pattern, `${field}.pattern`).pipe(
        Either.map((regex) => (pieces) =>
          pieces.flatMap((piece) =>
            matchSpans(piece, regex)
              // `invert` flips which spans count as matches; `Removed` drops the matches.
              .filter(([, isMatch]) => behavior === "Isolated" || isMatch === invert)
              .map(([text]) => text)
          )
        )
      )
    }
    default:
      return unsupported(field, `pre-tokenizer type ${JSON.stringify(json.type)}`)
  }
}

const parseDecoder = (json: unknown, field: string): Either.Either<DecodeChain, WordLevelError> => {
  // Without a decoder the Rust library joins tokens with single spaces.
  if (json === null || json === undefined) return Either.right((tokens) => [tokens.join(" ")])
  if (!isRecord(json)) return unsupported(field, `expected an object, got ${JSON.stringify(json)}`)
  switch (json.type) {
    case "WordPiece": {
      if (json.cleanup === true) return unsupported(`${field}.cleanup`, "WordPiece clean-up")
      const prefix = typeof json.prefix === "string" ? json.prefix : "##"
      return Either.right((tokens) =>
        tokens.map((t, i) => t.startsWith(prefix) ? t.slice(prefix.length) : i === 0 ? t : ` ${t}`)
      )
    }
    case "Fuse":
      return Either.right((tokens) => [tokens.join("")])
    case "Strip": {
      // `content` is one character; up to `start` copies are cut from the front, `stop` from the back.
      const content = typeof json.content === "string" ? json.content : " "
      const start = typeof json.start === "number" ? json.start : 0
      const stop = typeof json.stop === "number" ? json.stop : 0
      return Either.right((tokens) =>
        tokens.map((t) => {
          let from = 0
          while (from < start && t[from] === content) from++
          let to = t.length
          while (t.length - to < stop && to > from && t[to - 1] === content) to--
          return t.slice(from, to)
        })
      )
    }
    case "Replace": {
      const content = typeof json.content === "string" ? json.content : ""
      return patternRegex(json.pattern, `${field}.pattern`).pipe(
        Either.map((regex) => (tokens) => tokens.map((t) => t.replace(regex, () => content)))
      )
    }
    case "Sequence": {
      if (!Array.isArray(json.decoders)) return unsupported(field, "Sequence without decoders")
      return Either.all(json.decoders.map((d, i) => parseDecoder(d, `${field}.decoders.${i}`))).pipe(
        Either.map((steps) => (tokens) => steps.reduce<Array<string>>((acc, step) => step(acc), [...tokens]))
      )
    }
    default:
      return unsupported(field, `decoder type ${JSON.stringify(json.type)}`)
  }
}

/** The special tokens a word-level tokenizer knows by role. */
export interface SpecialTokens {
  readonly unk: string
  readonly bos?: string | undefined
  readonly eos?: string | undefined
  readonly pad?: string | undefined
}

interface AddedToken {
  readonly id: number
  readonly content: string
  readonly special: boolean
}

/** What a `WordLevelTokenizer` is made of (internal; exported for declaration files). */
export interface WordLevelParts {
  readonly idToToken: ReadonlyArray<string | undefined>
  readonly vocab: ReadonlyMap<string, number>
  readonly added: ReadonlyArray<AddedToken>
  readonly unkId: number
  readonly preTokenize: PreTokenize
  readonly decodeChain: DecodeChain
  /** What `wordLevelTokenizerJson` writes back, so a file read and written again is unchanged. */
  readonly json: {
    readonly normalizer: unknown
    readonly preTokenizer: unknown
    readonly decoder: unknown
  }
}

/**
 * Our `Tokenizer` over a word-level vocabulary. Unknown words encode to UNK; decoding drops
 * special tokens (BOS, EOS, PAD, UNK and any other added token marked special), as Hugging Face's
 * `skip_special_tokens` does, unless `decodeTokens` is asked to keep them.
 */
export class WordLevelTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  readonly padId: number | undefined
  readonly unkId: number
  /** Whether `encode` prepends BOS when not told. */
  readonly addBosByDefault: boolean
  readonly #parts: WordLevelParts
  readonly #specialIds: ReadonlySet<number>
  /** Matches any added token, longest first so that a token containing another is matched whole. */
  readonly #addedSplitter: RegExp | undefined

  constructor(
    parts: WordLevelParts,
    roles: {
      readonly bosId?: number | undefined
      readonly eosId?: number | undefined
      readonly padId?: number | undefined
      readonly addBosByDefault: boolean
    }
  ) {
    this.#parts = parts
    this.unkId = parts.unkId
    this.bosId = roles.bosId
    this.eosId = roles.eosId
    this.padId = roles.padId
    this.addBosByDefault = roles.addBosByDefault && roles.bosId !== undefined
    this.vocabSize = parts.idToToken.length
    this.#specialIds = new Set(parts.added.filter((t) => t.special).map((t) => t.id))
    const contents = parts.added.map((t) => t.content).filter((c) => c.length > 0)
    contents.sort((a, b) => b.length - a.length)
    this.#addedSplitter = contents.length === 0
      ? undefined
      : new RegExp(`(${contents.map(escapeRegex).join("|")})`, "u")
  }

  /** Every token string by id (`undefined` where the ids have a gap). */
  get tokens(): ReadonlyArray<string | undefined> {
    return this.#parts.idToToken
  }

  /** The pre-tokenizer's pieces of `text` with added tokens matched first: one per token id. */
  readonly words = (text: string): Array<string> => {
    if (this.#addedSplitter === undefined) return this.#parts.preTokenize([text])
    // `split` with one capturing group puts the matched added tokens at the odd indices.
    return text.split(this.#addedSplitter).flatMap((piece, i) =>
      i % 2 === 1 ? [piece] : piece.length === 0 ? [] : this.#parts.preTokenize([piece])
    )
  }

  readonly encode = (text: string, options?: { readonly addBos?: boolean }): Array<number> => {
    const ids = this.words(text).map((w) => this.#parts.vocab.get(w) ?? this.unkId)
    const addBos = options?.addBos ?? this.addBosByDefault
    return addBos && this.bosId !== undefined ? [this.bosId, ...ids] : ids
  }

  readonly decode = (ids: ReadonlyArray<number>): string => this.decodeTokens(ids, { skipSpecial: true })

  /** Decodes ids; ids outside the vocabulary are dropped (a padded embedding can emit them). */
  readonly decodeTokens = (ids: ReadonlyArray<number>, options: { readonly skipSpecial: boolean }): string => {
    const tokens: Array<string> = []
    for (const id of ids) {
      if (options.skipSpecial && this.#specialIds.has(id)) continue
      const token = this.#parts.idToToken[id]
      if (token !== undefined) tokens.push(token)
    }
    return this.#parts.decodeChain(tokens).join("")
  }

  readonly tokenToId = (token: string): number | undefined => this.#parts.vocab.get(token)

  readonly idToToken = (id: number): string | undefined => this.#parts.idToToken[id]

  /** Token -> id for the whole vocabulary (added tokens included). */
  readonly getVocab = (): Map<string, number> => new Map(this.#parts.vocab)

  /** Whether every piece of `text` is in the vocabulary (no UNK would be produced). */
  readonly covers = (text: string): boolean => this.words(text).every((w) => this.#parts.vocab.has(w))

  /** @internal the parts `wordLevelTokenizerJson` serialises. */
  get parts(): WordLevelParts {
    return this.#parts
  }
}

/** Whether `json` (a parsed `tokenizer.json`) declares a word-level model. */
export const isWordLevelJson = (json: unknown): boolean =>
  isRecord(json) && isRecord(json.model) && json.model.type === "WordLevel"

const invalid = (reason: WordLevelError["reason"], field: string, detail: string) =>
  Either.left(new WordLevelError({ reason, field, detail }))

/**
 * Builds the canonical tokenizer for `tokens` (listed in id order). The special tokens must be
 * among them; they become added tokens matched literally in text and dropped by `decode`. Words
 * may not contain whitespace, except the newline token `"\n"` itself.
 */
export const makeWordLevelTokenizer = (
  tokens: ReadonlyArray<string>,
  specials: SpecialTokens
): Either.Either<WordLevelTokenizer, WordLevelError> => {
  const vocab = new Map<string, number>()
  for (const [id, token] of tokens.entries()) {
    if (token !== "\n" && (token.length === 0 || /\s/u.test(token))) {
      return invalid("InvalidVocabulary", `tokens.${id}`, `${JSON.stringify(token)} is empty or contains whitespace`)
    }
    if (vocab.has(token)) return invalid("InvalidVocabulary", `tokens.${id}`, `${JSON.stringify(token)} is repeated`)
    vocab.set(token, id)
  }
  const roles = [["unk", specials.unk], ["bos", specials.bos], ["eos", specials.eos], ["pad", specials.pad]] as const
  const added: Array<AddedToken> = []
  for (const [role, token] of roles) {
    if (token === undefined) continue
    const id = vocab.get(token)
    if (id === undefined) return invalid("MissingToken", role, `${JSON.stringify(token)} is not in the vocabulary`)
    if (!added.some((t) => t.id === id)) added.push({ id, content: token, special: true })
  }
  added.sort((a, b) => a.id - b.id)
  return fromWordLevelParts(
    {
      vocab,
      added,
      unkToken: specials.unk,
      normalizer: null,
      preTokenizer: canonicalPreTokenizer,
      decoder: canonicalDecoder
    },
    {
      bos: specials.bos,
      eos: specials.eos,
      pad: specials.pad,
      addBosByDefault: specials.bos !== undefined
    }
  )
}

const fromWordLevelParts = (
  raw: {
    readonly vocab: ReadonlyMap<string, number>
    readonly added: ReadonlyArray<AddedToken>
    readonly unkToken: string
    readonly normalizer: unknown
    readonly preTokenizer: unknown
    readonly decoder: unknown
  },
  roles: {
    readonly bos?: string | undefined
    readonly eos?: string | undefined
    readonly pad?: string | undefined
    readonly addBosByDefault: boolean
  }
): Either.Either<WordLevelTokenizer, WordLevelError> =>
  Either.gen(function*() {
    if (raw.normalizer !== null && raw.normalizer !== undefined) {
      return yield* unsupported("normalizer", `normalizer ${JSON.stringify(raw.normalizer)}`)
    }
    const preTokenize = yield* parsePreTokenizer(raw.preTokenizer, "pre_tokenizer")
    const decodeChain = yield* parseDecoder(raw.decoder, "decoder")
    const vocab = new Map(raw.vocab)
    // Hugging Face lets an added token live outside the model's vocabulary; it still has its id.
    for (const token of raw.added) if (!vocab.has(token.content)) vocab.set(token.content, token.id)
    const idToToken: Array<string | undefined> = []
    for (const [token, id] of vocab) {
      if (idToToken[id] !== undefined) {
        return yield* invalid("InvalidVocabulary", "model.vocab", `id ${id} is used by two tokens`)
      }
      idToToken[id] = token
    }
    // Holes stay `undefined` (Array.from turns them into real entries for `.length` and iteration).
    const dense = Array.from(idToToken)
    const unkId = vocab.get(raw.unkToken)
    if (unkId === undefined) {
      return yield* invalid(
        "MissingToken",
        "model.unk_token",
        `${JSON.stringify(raw.unkToken)} is not in the vocabulary`
      )
    }
    const idOf = (role: string, token: string | undefined): Either.Either<number | undefined, WordLevelError> => {
      if (token === undefined) return Either.right(undefined)
      const id = vocab.get(token)
      return id === undefined
        ? invalid("MissingToken", role, `${JSON.stringify(token)} is not in the vocabulary`)
        : Either.right(id)
    }
    const bosId = yield* idOf("bos_token", roles.bos)
    const eosId = yield* idOf("eos_token", roles.eos)
    const padId = yield* idOf("pad_token", roles.pad)
    return new WordLevelTokenizer(
      {
        idToToken: dense,
        vocab,
        added: raw.added,
        unkId,
        preTokenize,
        decodeChain,
        json: {
          normalizer: raw.normalizer ?? null,
          preTokenizer: raw.preTokenizer ?? null,
          decoder: raw.decoder ?? null
        }
      },
      { bosId, eosId, padId, addBosByDefault: roles.addBosByDefault }
    )
  })

/** `tokenizer_config.json` writes special tokens as a string or as a serialised AddedToken. */
const tokenContent = (u: unknown): string | undefined =>
  typeof u === "string" ? u : isRecord(u) && typeof u.content === "string" ? u.content : undefined

/**
 * Reads a parsed `tokenizer.json` whose model is `WordLevel`, with the roles of its special
 * tokens from a parsed `tokenizer_config.json` (`bos_token`, `eos_token`, `pad_token`,
 * `add_bos_token`) when given. Without `add_bos_token`, BOS is added when the post-processor's
 * single-sequence template starts with it.
 */
export const readWordLevelTokenizer = (
  tokenizerJson: unknown,
  tokenizerConfig?: unknown
): Either.Either<WordLevelTokenizer, WordLevelError> => {
  if (!isRecord(tokenizerJson) || !isRecord(tokenizerJson.model) || tokenizerJson.model.type !== "WordLevel") {
    return invalid("NotWordLevel", "model.type", "the tokenizer's model is not WordLevel")
  }
  const model = tokenizerJson.model
  if (!isRecord(model.vocab)) return invalid("InvalidVocabulary", "model.vocab", "expected an object of token -> id")
  const vocab = new Map<string, number>()
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      return invalid("InvalidVocabulary", `model.vocab.${token}`, `id ${JSON.stringify(id)} is not an integer >= 0`)
    }
    vocab.set(token, id)
  }
  if (typeof model.unk_token !== "string") {
    return invalid("MissingToken", "model.unk_token", "a WordLevel model needs an unk_token")
  }
  const added: Array<AddedToken> = []
  const addedJson = Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens : []
  for (const [i, token] of addedJson.entries()) {
    if (!isRecord(token) || typeof token.content !== "string" || typeof token.id !== "number") {
      return invalid("InvalidVocabulary", `added_tokens.${i}`, "expected {id, content, special}")
    }
    added.push({ id: token.id, content: token.content, special: token.special === true })
  }
  const config = isRecord(tokenizerConfig) ? tokenizerConfig : {}
  const bos = tokenContent(config.bos_token)
  const firstOfTemplate = (() => {
    const processor = tokenizerJson.post_processor
    if (!isRecord(processor) || processor.type !== "TemplateProcessing" || !Array.isArray(processor.single)) {
      return undefined
    }
    const first: unknown = processor.single[0]
    return isRecord(first) && isRecord(first.SpecialToken) && typeof first.SpecialToken.id === "string"
      ? first.SpecialToken.id
      : undefined
  })()
  const bosToken = bos ?? firstOfTemplate
  return fromWordLevelParts(
    {
      vocab,
      added,
      unkToken: model.unk_token,
      normalizer: tokenizerJson.normalizer,
      preTokenizer: tokenizerJson.pre_tokenizer,
      decoder: tokenizerJson.decoder
    },
    {
      bos: bosToken,
      eos: tokenContent(config.eos_token),
      pad: tokenContent(config.pad_token),
      addBosByDefault: typeof config.add_bos_token === "boolean"
        ? config.add_bos_token
        : bosToken !== undefined && bosToken === firstOfTemplate
    }
  )
}

/** The `tokenizer.json` object for `tokenizer` (see the module comment for the format). */
export const wordLevelTokenizerJson = (tokenizer: WordLevelTokenizer): Record<string, unknown> => {
  const parts = tokenizer.parts
  const bos = tokenizer.bosId === undefined ? undefined : tokenizer.idToToken(tokenizer.bosId)
  const vocab: Record<string, number> = {}
  for (const [id, token] of parts.idToToken.entries()) if (token !== undefined) vocab[token] = id
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: parts.added.map((t) => ({
      id: t.id,
      content: t.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: t.special
    })),
    normalizer: parts.json.normalizer,
    pre_tokenizer: parts.json.preTokenizer,
    post_processor: bos === undefined || !tokenizer.addBosByDefault
      ? null
      : {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [
          { SpecialToken: { id: bos, type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: bos, type_id: 1 } },
          { Sequence: { id: "B", type_id: 1 } }
        ],
        special_tokens: { [bos]: { id: bos, ids: [tokenizer.bosId], tokens: [bos] } }
      },
    decoder: parts.json.decoder,
    model: { type: "WordLevel", vocab, unk_token: parts.idToToken[parts.unkId] }
  }
}

/** The `tokenizer_config.json` object that names `tokenizer`'s special tokens. */
export const wordLevelTokenizerConfig = (tokenizer: WordLevelTokenizer): Record<string, unknown> => {
  const name = (id: number | undefined) => (id === undefined ? null : tokenizer.idToToken(id) ?? null)
  return {
    bos_token: name(tokenizer.bosId),
    eos_token: name(tokenizer.eosId),
    unk_token: name(tokenizer.unkId),
    pad_token: name(tokenizer.padId),
    add_bos_token: tokenizer.addBosByDefault,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: 1_000_000,
    tokenizer_class: "PreTrainedTokenizerFast"
  }
}
