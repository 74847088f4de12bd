/**
 * Text <-> token ids. Implementations: `SentencePieceTokenizer` (Llama vocabularies embedded
 * in GGUF) and `HfTokenizer` (a Hugging Face `tokenizer.json`).
 */
export interface Tokenizer {
  readonly vocabSize: number
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  /** Encodes `text`; prepends BOS when `addBos` is true (the default) and the vocabulary has one. */
  readonly encode: (text: string, options?: { readonly addBos?: boolean }) => Array<number>
  /** Decodes ids to text, skipping BOS/EOS and joining byte-fallback tokens into UTF-8. */
  readonly decode: (ids: ReadonlyArray<number>) => string
}
