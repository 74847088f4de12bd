import { Effect } from "effect"
import { CheckpointError } from "./CheckpointError.js"

/*
 * Typed reads of GGUF metadata, shared by the model loader (Gguf.ts) and the byte-level BPE
 * tokenizer builder (GgufBpe.ts): every failure is a CheckpointError naming the key.
 */

/** Metadata values as `@huggingface/gguf` returns them. */
export type MetadataValue = string | number | bigint | boolean | ReadonlyArray<MetadataValue>
export type Metadata = Readonly<Record<string, MetadataValue | undefined>>

export const asNumber = (value: unknown): number | undefined => {
  if (typeof value === "number") return value
  if (typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(value)
  return undefined
}

export const describe = (value: unknown): string =>
  value === undefined
    ? "missing"
    : Array.isArray(value)
    ? `an array of ${value.length}`
    : `${typeof value} ${String(value)}`

/** Reads GGUF metadata for one file, failing with a `CheckpointError` that names the key. */
export const metadataReader = (file: string, metadata: Metadata) => {
  const malformed = (field: string, detail: string) => new CheckpointError({ file, field, reason: "Malformed", detail })

  const number = (key: string, fallback?: number): Effect.Effect<number, CheckpointError> => {
    const raw = metadata[key]
    if (raw === undefined && fallback !== undefined) return Effect.succeed(fallback)
    // Some converters write per-layer arrays (e.g. head_count_kv); uniform ones are fine.
    if (Array.isArray(raw) && raw.length > 0) {
      const values = raw.map(asNumber)
      if (values.every((v) => v !== undefined && v === values[0])) return Effect.succeed(values[0]!)
      return Effect.fail(malformed(key, "per-layer values that differ are not supported"))
    }
    const value = asNumber(raw as MetadataValue | undefined)
    return value === undefined || !Number.isFinite(value)
      ? Effect.fail(malformed(key, `expected a number, found ${describe(raw)}`))
      : Effect.succeed(value)
  }

  const positiveInt = (key: string, fallback?: number): Effect.Effect<number, CheckpointError> =>
    Effect.flatMap(
      number(key, fallback),
      (n) =>
        Number.isSafeInteger(n) && n > 0
          ? Effect.succeed(n)
          : Effect.fail(malformed(key, `${n} is not a positive integer`))
    )

  const optionalBool = (key: string, fallback: boolean): Effect.Effect<boolean, CheckpointError> => {
    const raw = metadata[key]
    if (raw === undefined) return Effect.succeed(fallback)
    return typeof raw === "boolean"
      ? Effect.succeed(raw)
      : Effect.fail(malformed(key, `expected a boolean, found ${describe(raw)}`))
  }

  const optionalId = (key: string, vocabSize: number): Effect.Effect<number | undefined, CheckpointError> => {
    const raw = metadata[key]
    if (raw === undefined) return Effect.succeed(undefined)
    // llama.cpp writes -1 as uint32 (4294967295) for "none"; any id past the vocabulary is none,
    // including a 64-bit one beyond what a float64 holds exactly.
    if (typeof raw === "bigint" && raw >= BigInt(vocabSize)) return Effect.succeed(undefined)
    const id = asNumber(raw)
    if (id === undefined || !Number.isInteger(id) || id < 0) {
      return Effect.fail(malformed(key, `expected a token id, found ${describe(raw)}`))
    }
    return Effect.succeed(id < vocabSize ? id : undefined)
  }

  return { number, positiveInt, optionalBool, optionalId, malformed }
}

/** The embedded vocabulary (`tokenizer.ggml.tokens`), or a `MissingTokenizer` error naming it. */
export const vocabularyTokens = (
  file: string,
  metadata: Metadata
): Effect.Effect<ReadonlyArray<string>, CheckpointError> => {
  const tokens = metadata["tokenizer.ggml.tokens"]
  return Array.isArray(tokens) && tokens.length > 0 && tokens.every((t) => typeof t === "string")
    ? Effect.succeed(tokens as ReadonlyArray<string>)
    : Effect.fail(
      new CheckpointError({
        file,
        field: "tokenizer.ggml.tokens",
        reason: "MissingTokenizer",
        detail: tokens === undefined ? "the file has no embedded vocabulary" : "the vocabulary is not a list of strings"
      })
    )
}
