/**
 * A Hugging Face `tokenizer.json` (plus `tokenizer_config.json`) behind our `Tokenizer`
 * interface, backed by `@huggingface/tokenizers` (a pure-JS port of the Rust library), or by
 * `WordLevel.ts` for `model.type == "WordLevel"`, which that port lacks.
 */
import { Tokenizer as LibraryTokenizer } from "@huggingface/tokenizers"
import { Effect, Either } from "effect"
import * as Fs from "node:fs"
import { CheckpointError, parseJsonFile } from "../checkpoint/CheckpointError.js"
import type { Tokenizer } from "./Tokenizer.js"
import { isWordLevelJson, readWordLevelTokenizer, type WordLevelTokenizer } from "./WordLevel.js"

/**
 * The part of the library's `Tokenizer` class we use. Its published `.d.ts` files import each
 * other without file extensions, which NodeNext resolution cannot follow, so the import arrives
 * as `any`; this interface restores type checking at the one place we touch it.
 */
interface LibraryTokenizerApi {
  encode(text: string, options: { readonly add_special_tokens: boolean }): { readonly ids: Array<number> }
  decode(
    ids: Array<number>,
    options: { readonly skip_special_tokens: boolean; readonly clean_up_tokenization_spaces: boolean }
  ): string
  token_to_id(token: string): number | undefined
  id_to_token(id: number): string | undefined
  get_vocab(withAddedTokens?: boolean): Map<string, number>
}

/** The library's interface over a word-level tokenizer; special-token roles are resolved below as for any other. */
const wordLevelLibrary = (tokenizer: WordLevelTokenizer): LibraryTokenizerApi => ({
  encode: (text) => ({ ids: tokenizer.encode(text, { addBos: false }) }),
  decode: (ids, options) => tokenizer.decodeTokens(ids, { skipSpecial: options.skip_special_tokens }),
  token_to_id: tokenizer.tokenToId,
  id_to_token: tokenizer.idToToken,
  get_vocab: () => tokenizer.getVocab()
})

/** Ids to fall back on when `tokenizer_config.json` does not name BOS/EOS (e.g. `config.json`'s). */
export interface SpecialTokenFallback {
  readonly bosId?: number | undefined
  readonly eosId?: number | undefined
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** `tokenizer_config.json` writes special tokens as a string or as a serialised AddedToken. */
const tokenContent = (u: unknown): string | undefined =>
  typeof u === "string" ? u : isRecord(u) && typeof u.content === "string" ? u.content : undefined

/** Whether a `tokenizer.json` post-processor inserts `token` when encoding a single sequence. */
const postProcessorAdds = (processor: unknown, token: string): boolean => {
  if (!isRecord(processor)) return false
  if (processor.type === "Sequence" && Array.isArray(processor.processors)) {
    return processor.processors.some((p) => postProcessorAdds(p, token))
  }
  if (processor.type === "TemplateProcessing" && Array.isArray(processor.single)) {
    return processor.single.some((piece) =>
      isRecord(piece) && isRecord(piece.SpecialToken) && piece.SpecialToken.id === token
    )
  }
  return false
}

/**
 * Our `Tokenizer` over the library's. Encoding never lets the library's post-processor insert
 * special tokens: BOS is prepended here, so `addBos: false` means exactly that whatever template
 * the tokenizer ships with.
 */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  /** What `encode` does when not told: `add_bos_token`, or whether the post-processor adds BOS. */
  readonly addBosByDefault: boolean
  readonly #library: LibraryTokenizerApi
  readonly #cleanUpSpaces: boolean

  constructor(
    library: LibraryTokenizerApi,
    options: {
      readonly bosId: number | undefined
      readonly eosId: number | undefined
      readonly addBosByDefault: boolean
      readonly cleanUpSpaces: boolean
    }
  ) {
    this.#library = library
    this.bosId = options.bosId
    this.eosId = options.eosId
    this.addBosByDefault = options.addBosByDefault && options.bosId !== undefined
    this.#cleanUpSpaces = options.cleanUpSpaces
    let maxId = -1
    for (const id of library.get_vocab(true).values()) if (id > maxId) maxId = id
    this.vocabSize = maxId + 1
  }

  readonly encode = (text: string, options?: { readonly addBos?: boolean }): Array<number> => {
    const ids = this.#library.encode(text, { add_special_tokens: false }).ids
    const addBos = options?.addBos ?? this.addBosByDefault
    return addBos && this.bosId !== undefined ? [this.bosId, ...ids] : [...ids]
  }

  readonly decode = (ids: ReadonlyArray<number>): string => {
    // Ids the vocabulary lacks are dropped: a model's embedding is often padded past the
    // tokenizer's vocabulary, and sampling can land in that padding.
    const kept = ids.filter((id) =>
      id !== this.bosId && id !== this.eosId && this.#library.id_to_token(id) !== undefined
    )
    // The library throws on an empty list.
    if (kept.length === 0) return ""
    return this.#library.decode(kept, {
      skip_special_tokens: true,
      clean_up_tokenization_spaces: this.#cleanUpSpaces
    })
  }

  /** The id of a token string, if the vocabulary has it. */
  readonly tokenToId = (token: string): number | undefined => this.#library.token_to_id(token)

  /** The token string of an id, if the vocabulary has it. */
  readonly idToToken = (id: number): string | undefined => this.#library.id_to_token(id)
}

/**
 * Builds an `HfTokenizer` from the parsed contents of `tokenizer.json` and (optionally)
 * `tokenizer_config.json`. Throws whatever the library throws for a tokenizer it cannot build.
 *
 * BOS/EOS come from `tokenizer_config.json` when it names them (an explicit `null` means "none",
 * as Qwen2 writes), else from `fallback`. BOS is added by default when `add_bos_token` says so,
 * or, without that key, when the tokenizer's own post-processor would add it (Llama 3).
 */
export const makeHfTokenizer = (
  tokenizerJson: unknown,
  tokenizerConfig?: unknown,
  fallback: SpecialTokenFallback = {}
): HfTokenizer => {
  if (!isRecord(tokenizerJson)) throw new Error("tokenizer.json is not a JSON object")
  const config = isRecord(tokenizerConfig) ? tokenizerConfig : {}
  // The library insists these keys exist (null is fine); older files omit some of them.
  const json = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    added_tokens: [],
    ...tokenizerJson
  }
  // The library reads special tokens from its config as plain strings.
  const libraryConfig: Record<string, unknown> = { ...config }
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    if (key in config) libraryConfig[key] = tokenContent(config[key])
  }
  const library: LibraryTokenizerApi = isWordLevelJson(json)
    ? wordLevelLibrary(Either.getOrThrowWith(readWordLevelTokenizer(json, config), (error) => error))
    : new LibraryTokenizer(json, libraryConfig)

  const resolve = (key: "bos_token" | "eos_token", fallbackId: number | undefined): number | undefined => {
    if (!(key in config)) return fallbackId
    const content = tokenContent(config[key])
    return content === undefined ? undefined : library.token_to_id(content)
  }
  const bosId = resolve("bos_token", fallback.bosId)
  const eosId = resolve("eos_token", fallback.eosId)
  const bosToken = bosId === undefined ? undefined : library.id_to_token(bosId)
  const addBosByDefault = typeof config.add_bos_token === "boolean"
    ? config.add_bos_token
    : bosToken !== undefined && postProcessorAdds(json.post_processor, bosToken)
  return new HfTokenizer(library, {
    bosId,
    eosId,
    addBosByDefault,
    // Off unless asked for: the clean-up rewrites " ." to "." and the like, which corrupts text
    // decoded piece by piece while streaming.
    cleanUpSpaces: config.clean_up_tokenization_spaces === true
  })
}

/** Reads and parses a JSON file; a missing file is `undefined` when `optional`, else MissingTokenizer. */
const readJson = (path: string, optional: boolean) =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise(() => Fs.promises.readFile(path, "utf8")).pipe(
      Effect.map((t): string | undefined => t),
      Effect.catchAll(({ error }) => {
        const code = (error as { readonly code?: unknown } | undefined)?.code
        if (code === "ENOENT" && optional) return Effect.succeed(undefined)
        return new CheckpointError(
          code === "ENOENT"
            ? { file: path, reason: "MissingTokenizer", detail: "no tokenizer.json beside the weights" }
            : {
              file: path,
              reason: "Malformed",
              detail: `cannot read: ${error instanceof Error ? error.message : String(error)}`
            }
        )
      })
    )
    if (text === undefined) return undefined
    return yield* parseJsonFile(path, text)
  })

/**
 * Loads `tokenizerPath` (a `tokenizer.json`; missing -> "MissingTokenizer") and, when given and
 * present, `configPath` (a `tokenizer_config.json`).
 */
export const loadHfTokenizer = (
  tokenizerPath: string,
  configPath?: string,
  fallback?: SpecialTokenFallback
): Effect.Effect<HfTokenizer, CheckpointError> =>
  Effect.gen(function*() {
    const json = yield* readJson(tokenizerPath, false)
    const config = configPath === undefined ? undefined : yield* readJson(configPath, true)
    return yield* Effect.try({
      try: () => makeHfTokenizer(json, config, fallback),
      catch: (e) =>
        new CheckpointError({
          file: tokenizerPath,
          reason: "Malformed",
          detail: `cannot build the tokenizer: ${e instanceof Error ? e.message : String(e)}`
        })
    })
  })
