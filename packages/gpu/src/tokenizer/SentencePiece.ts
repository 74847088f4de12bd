import type { Tokenizer } from "./Tokenizer.js"

/**
 * Token types as GGUF stores them in `tokenizer.ggml.token_type` (llama.cpp's
 * `llama_token_type`). Only these matter for encoding and decoding; `Unused` (5) tokens are
 * kept in the vocabulary but never produce text.
 */
export const SentencePieceTokenType = {
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6
} as const

/** A SentencePiece (Llama "SPM") vocabulary as plain arrays, indexed by token id. */
export interface SentencePieceVocab {
  readonly tokens: ReadonlyArray<string>
  /** Merge priority of each token: higher merges first. Defaults to all zeros. */
  readonly scores?: ReadonlyArray<number> | undefined
  /**
   * `SentencePieceTokenType` of each token. When absent it is inferred: `<0xXX>` pieces are
   * bytes, BOS/EOS are control, the unknown id is unknown and everything else is normal.
   */
  readonly tokenTypes?: ReadonlyArray<number> | undefined
  readonly bosId?: number | undefined
  readonly eosId?: number | undefined
  readonly unkId?: number | undefined
  /** Whether `encode` prepends BOS when the caller does not say (GGUF `add_bos_token`, default true). */
  readonly addBos?: boolean | undefined
  /** Whether a "▁" is put in front of the text, as SentencePiece's dummy prefix (default true). */
  readonly addSpacePrefix?: boolean | undefined
}

/** U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's visible stand-in for a space. */
const SPACE_MARK = "\u2581"
/** What llama.cpp prints for the unknown token (U+2585), so decoded text matches it. */
const UNKNOWN_TEXT = "\u2585"
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder("utf-8")

/**
 * Llama's SentencePiece tokenizer, reproducing llama.cpp's `llm_tokenizer_spm` exactly, so ids
 * match what llama.cpp feeds the same GGUF model:
 *
 * 1. spaces become "▁" and (with `addSpacePrefix`) a "▁" is put in front;
 * 2. the text starts as one symbol per Unicode character; the adjacent pair whose concatenation
 *    is a vocabulary piece with the highest score is merged, ties going to the leftmost pair,
 *    until no adjacent pair forms a piece;
 * 3. a remaining symbol that is not a piece becomes its UTF-8 bytes as `<0xXX>` tokens.
 *
 * Special-token text such as "<s>" in the input is treated as plain text (llama.cpp's
 * `parse_special = false`). The candidate pairs live in a binary heap and the symbols in a linked
 * list, so encoding is O(n log n) in the text length.
 */
export class SentencePieceTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  readonly unkId: number | undefined
  readonly addBos: boolean
  readonly addSpacePrefix: boolean

  private readonly pieces: ReadonlyArray<string>
  private readonly scores: Float64Array
  private readonly types: Uint8Array
  private readonly pieceToId: Map<string, number>
  private readonly byteToId: Int32Array
  /** UTF-8 bytes each token decodes to (empty for control/unused tokens). */
  private readonly decodedBytes: Array<Uint8Array | undefined>

  constructor(vocab: SentencePieceVocab) {
    const n = vocab.tokens.length
    const checkId = (name: string, id: number | undefined) => {
      if (id !== undefined && !(Number.isInteger(id) && id >= 0 && id < n)) {
        throw new RangeError(`SentencePiece vocabulary: ${name} ${id} is outside [0, ${n})`)
      }
    }
    if (vocab.scores !== undefined && vocab.scores.length !== n) {
      throw new RangeError(`SentencePiece vocabulary: ${vocab.scores.length} scores for ${n} tokens`)
    }
    if (vocab.tokenTypes !== undefined && vocab.tokenTypes.length !== n) {
      throw new RangeError(`SentencePiece vocabulary: ${vocab.tokenTypes.length} token types for ${n} tokens`)
    }
    checkId("bosId", vocab.bosId)
    checkId("eosId", vocab.eosId)
    checkId("unkId", vocab.unkId)

    this.vocabSize = n
    this.bosId = vocab.bosId
    this.eosId = vocab.eosId
    this.unkId = vocab.unkId
    this.addBos = vocab.addBos ?? true
    this.addSpacePrefix = vocab.addSpacePrefix ?? true
    this.pieces = vocab.tokens
    this.scores = new Float64Array(n)
    this.types = new Uint8Array(n)
    this.pieceToId = new Map()
    this.byteToId = new Int32Array(256).fill(-1)
    this.decodedBytes = new Array(n)

    for (let id = 0; id < n; id++) {
      const piece = vocab.tokens[id]!
      this.scores[id] = vocab.scores?.[id] ?? 0
      const type = vocab.tokenTypes?.[id] ?? this.inferType(id, piece)
      this.types[id] = type
      // Later duplicates win, as in llama.cpp's `token_to_id` map.
      this.pieceToId.set(piece, id)
    }
    // Like llama.cpp, byte fallback looks pieces up by their text, whatever their type says.
    for (let byte = 0; byte < 256; byte++) {
      const piece = `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`
      this.byteToId[byte] = this.pieceToId.get(piece) ?? -1
    }
  }

  private inferType(id: number, piece: string): number {
    if (id === this.bosId || id === this.eosId) return SentencePieceTokenType.Control
    if (id === this.unkId) return SentencePieceTokenType.Unknown
    if (BYTE_PIECE.test(piece)) return SentencePieceTokenType.Byte
    return SentencePieceTokenType.Normal
  }

  /** The id of `piece`, if it is in the vocabulary. */
  tokenToId(piece: string): number | undefined {
    return this.pieceToId.get(piece)
  }

  /** The vocabulary piece of `id` (e.g. "▁Once", "<0x0A>"). */
  idToToken(id: number): string | undefined {
    return this.pieces[id]
  }

  readonly encode = (text: string, options?: { readonly addBos?: boolean }): Array<number> => {
    const output: Array<number> = []
    const addBos = options?.addBos ?? this.addBos
    if (addBos && this.bosId !== undefined) output.push(this.bosId)
    // llama.cpp makes no fragment for empty text, so there is no dummy prefix either.
    if (text.length === 0) return output
    const escaped = (this.addSpacePrefix ? " " + text : text).replaceAll(" ", SPACE_MARK)
    this.tokenizeEscaped(escaped, output)
    return output
  }

  readonly decode = (ids: ReadonlyArray<number>): string => {
    const parts: Array<Uint8Array> = []
    let length = 0
    for (const id of ids) {
      const bytes = this.bytesOf(id)
      if (bytes.length === 0) continue
      parts.push(bytes)
      length += bytes.length
    }
    const all = new Uint8Array(length)
    let offset = 0
    for (const part of parts) {
      all.set(part, offset)
      offset += part.length
    }
    const text = utf8Decoder.decode(all)
    // The dummy prefix put one space in front of the first word; take exactly that one away.
    return this.addSpacePrefix && text.startsWith(" ") ? text.slice(1) : text
  }

  private bytesOf(id: number): Uint8Array {
    const cached = this.decodedBytes[id]
    if (cached !== undefined) return cached
    const piece = this.pieces[id]
    let bytes: Uint8Array
    if (piece === undefined) {
      bytes = new Uint8Array(0)
    } else {
      switch (this.types[id]) {
        case SentencePieceTokenType.Normal:
          bytes = utf8Encoder.encode(piece.replaceAll(SPACE_MARK, " "))
          break
        case SentencePieceTokenType.UserDefined:
          bytes = utf8Encoder.encode(piece)
          break
        case SentencePieceTokenType.Unknown:
          bytes = utf8Encoder.encode(UNKNOWN_TEXT)
          break
        case SentencePieceTokenType.Byte: {
          const byte = BYTE_PIECE.exec(piece)
          bytes = byte === null ? utf8Encoder.encode(piece) : Uint8Array.of(parseInt(byte[1]!, 16))
          break
        }
        default:
          // Control (BOS/EOS) and unused tokens carry no text.
          bytes = new Uint8Array(0)
      }
    }
    this.decodedBytes[id] = bytes
    return bytes
  }

  private tokenizeEscaped(text: string, output: Array<number>): void {
    // Symbols are spans of `text` in UTF-16 code units, one per code point to start with,
    // chained as a doubly linked list; a merged-away symbol gets length 0.
    const count = countCodePoints(text)
    const start = new Int32Array(count)
    const len = new Int32Array(count)
    const prev = new Int32Array(count)
    const next = new Int32Array(count)
    for (let i = 0, offset = 0; i < count; i++) {
      const width = isSurrogatePair(text, offset) ? 2 : 1
      start[i] = offset
      len[i] = width
      prev[i] = i - 1
      next[i] = i + 1 < count ? i + 1 : -1
      offset += width
    }

    const queue = new BigramQueue()
    const tryAddBigram = (left: number, right: number) => {
      if (left === -1 || right === -1) return
      const size = len[left]! + len[right]!
      const id = this.pieceToId.get(text.slice(start[left]!, start[left]! + size))
      if (id === undefined) return
      queue.push(this.scores[id]!, left, right, size)
    }

    for (let i = 1; i < count; i++) tryAddBigram(i - 1, i)

    while (queue.size > 0) {
      queue.pop()
      const left = queue.left
      const right = queue.right
      // Stale entry: one side was merged into something else since it was queued.
      if (len[left] === 0 || len[right] === 0 || len[left]! + len[right]! !== queue.bytes) continue
      len[left] = len[left]! + len[right]!
      len[right] = 0
      next[left] = next[right]!
      if (next[right]! >= 0) prev[next[right]!] = left
      tryAddBigram(prev[left]!, left)
      tryAddBigram(left, next[left]!)
    }

    for (let i = count > 0 ? 0 : -1; i !== -1; i = next[i]!) {
      const piece = text.slice(start[i]!, start[i]! + len[i]!)
      const id = this.pieceToId.get(piece)
      if (id !== undefined) {
        output.push(id)
        continue
      }
      // Merges only ever produce vocabulary pieces, so this is a single character the
      // vocabulary lacks: spell it in bytes.
      for (const byte of utf8Encoder.encode(piece)) {
        output.push(this.byteFallback(byte))
      }
    }
  }

  private byteFallback(byte: number): number {
    const id = this.byteToId[byte]!
    if (id >= 0) return id
    // llama.cpp then tries the byte as a one-character piece; past that there is only <unk>.
    const single = this.pieceToId.get(String.fromCharCode(byte))
    if (single !== undefined && byte < 0x80) return single
    if (this.unkId !== undefined) return this.unkId
    throw new RangeError(`SentencePiece vocabulary has no token for byte 0x${byte.toString(16).padStart(2, "0")}`)
  }
}

/** Builds a tokenizer from plain arrays (see `SentencePieceVocab`). */
export const makeSentencePieceTokenizer = (vocab: SentencePieceVocab): SentencePieceTokenizer =>
  new SentencePieceTokenizer(vocab)

const isSurrogatePair = (text: string, i: number): boolean => {
  const high = text.charCodeAt(i)
  if (high < 0xd800 || high > 0xdbff) return false
  const low = text.charCodeAt(i + 1)
  return low >= 0xdc00 && low <= 0xdfff
}

const countCodePoints = (text: string): number => {
  let count = 0
  for (let i = 0; i < text.length; i++) {
    if (isSurrogatePair(text, i)) i++
    count++
  }
  return count
}

/**
 * A max-heap of candidate merges ordered by score, then by leftmost position (llama.cpp's
 * `llm_bigram_spm::comparator`). Entries are kept in parallel growable arrays to avoid an object
 * per candidate; `pop` leaves the popped entry in `left`/`right`/`bytes`.
 */
class BigramQueue {
  size = 0
  left = 0
  right = 0
  bytes = 0
  private scores = new Float64Array(64)
  private lefts = new Int32Array(64)
  private rights = new Int32Array(64)
  private sizes = new Int32Array(64)

  push(score: number, left: number, right: number, size: number): void {
    if (this.size === this.scores.length) this.grow()
    let i = this.size++
    // Sift up.
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(score, left, this.scores[parent]!, this.lefts[parent]!)) break
      this.move(parent, i)
      i = parent
    }
    this.scores[i] = score
    this.lefts[i] = left
    this.rights[i] = right
    this.sizes[i] = size
  }

  pop(): void {
    this.left = this.lefts[0]!
    this.right = this.rights[0]!
    this.bytes = this.sizes[0]!
    const last = --this.size
    if (last === 0) return
    const score = this.scores[last]!
    const left = this.lefts[last]!
    const right = this.rights[last]!
    const size = this.sizes[last]!
    let i = 0
    // Sift down.
    for (;;) {
      const a = 2 * i + 1
      if (a >= last) break
      const b = a + 1
      const child = b < last && this.before(this.scores[b]!, this.lefts[b]!, this.scores[a]!, this.lefts[a]!) ? b : a
      if (!this.before(this.scores[child]!, this.lefts[child]!, score, left)) break
      this.move(child, i)
      i = child
    }
    this.scores[i] = score
    this.lefts[i] = left
    this.rights[i] = right
    this.sizes[i] = size
  }

  /** Whether candidate (s1, l1) comes out before (s2, l2). */
  private before(s1: number, l1: number, s2: number, l2: number): boolean {
    return s1 > s2 || (s1 === s2 && l1 < l2)
  }

  private move(from: number, to: number): void {
    this.scores[to] = this.scores[from]!
    this.lefts[to] = this.lefts[from]!
    this.rights[to] = this.rights[from]!
    this.sizes[to] = this.sizes[from]!
  }

  private grow(): void {
    const capacity = this.scores.length * 2
    const grow = <A extends Float64Array | Int32Array>(array: A, make: (n: number) => A): A => {
      const bigger = make(capacity)
      bigger.set(array)
      return bigger
    }
    this.scores = grow(this.scores, (n) => new Float64Array(n))
    this.lefts = grow(this.lefts, (n) => new Int32Array(n))
    this.rights = grow(this.rights, (n) => new Int32Array(n))
    this.sizes = grow(this.sizes, (n) => new Int32Array(n))
  }
}
