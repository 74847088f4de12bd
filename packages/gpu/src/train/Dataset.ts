/**
 * Training data from JSON Lines files: one example per line, either `{"text": ...}` (every token
 * is a target) or `{"prompt": ..., "completion": ...}` (by default only the completion is), the
 * two shapes Hugging Face's trainers read. Other keys on a line (ids, sources, ...) are ignored.
 */
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import * as Fs from "node:fs"
import type { Example } from "./Loss.js"

/** A training file that cannot be used; `line` (1-based) and `field` say where. */
export class DatasetError extends Data.TaggedError("DatasetError")<{
  /**
   * NotFound: the file cannot be read; Empty: it holds no examples; InvalidJson: a line is not
   * JSON; InvalidExample: a line is JSON but not an example.
   */
  readonly reason: "NotFound" | "Empty" | "InvalidJson" | "InvalidExample"
  readonly file: string
  readonly line?: number
  readonly field?: string
  readonly detail: string
}> {
  override get message(): string {
    const where = this.line === undefined ? this.file : `${this.file}:${this.line}`
    return this.field === undefined ? `${where}: ${this.detail}` : `${where} (${this.field}): ${this.detail}`
  }
}

// An empty text or completion has no target token, so training on it would do nothing; an empty
// prompt is fine (the completion then follows BOS alone).
const TextExample = Schema.Struct({ text: Schema.NonEmptyString })
const PromptCompletionExample = Schema.Struct({ prompt: Schema.String, completion: Schema.NonEmptyString })

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const describeJson = (u: unknown): string => (Array.isArray(u) ? "an array" : u === null ? "null" : `a ${typeof u}`)

/** Decodes one parsed line into an example; `line` is 1-based. */
export const decodeExample = (file: string, line: number, json: unknown): Either.Either<Example, DatasetError> => {
  const invalid = (detail: string, field?: string) =>
    Either.left(
      new DatasetError({ reason: "InvalidExample", file, line, ...(field === undefined ? {} : { field }), detail })
    )
  if (!isRecord(json)) {
    return invalid(`expected an object with "text" or "prompt" and "completion", got ${describeJson(json)}`)
  }
  const hasText = "text" in json
  const hasPair = "prompt" in json || "completion" in json
  if (hasText && hasPair) return invalid(`has both "text" and "prompt"/"completion"; use one shape per line`, "text")
  if (!hasText && !hasPair) {
    const keys = Object.keys(json)
    return invalid(
      `expected "text" or "prompt" and "completion"; found ${
        keys.length === 0 ? "no keys" : keys.map((k) => JSON.stringify(k)).join(", ")
      }`,
      "text"
    )
  }
  const decoded: Either.Either<Example, ParseResult.ParseError> = hasText
    ? Schema.decodeUnknownEither(TextExample)(json)
    : Schema.decodeUnknownEither(PromptCompletionExample)(json)
  return decoded.pipe(
    Either.mapLeft((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      const field = issue === undefined || issue.path.length === 0 ? undefined : issue.path.map(String).join(".")
      return new DatasetError({
        reason: "InvalidExample",
        file,
        line,
        ...(field === undefined ? {} : { field }),
        detail: issue?.message ?? error.message
      })
    })
  )
}

/**
 * Parses the text of a JSON Lines file (`file` only names it in errors). Blank lines are
 * skipped; line numbers in errors count them, so they match an editor's.
 */
export const parseJsonlExamples = (file: string, text: string): Either.Either<Array<Example>, DatasetError> => {
  const examples: Array<Example> = []
  // A UTF-8 byte-order mark is not part of the first line's JSON.
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const source = lines[i]!
    if (source.trim() === "") continue
    let json: unknown
    try {
      json = JSON.parse(source)
    } catch (e) {
      return Either.left(
        new DatasetError({
          reason: "InvalidJson",
          file,
          line: i + 1,
          detail: `not valid JSON (${e instanceof Error ? e.message : String(e)})`
        })
      )
    }
    const example = decodeExample(file, i + 1, json)
    if (Either.isLeft(example)) return Either.left(example.left)
    examples.push(example.right)
  }
  if (examples.length === 0) {
    return Either.left(
      new DatasetError({
        reason: "Empty",
        file,
        detail: text.trim() === "" ? "the file is empty: no examples to train on" : "no examples, only blank lines"
      })
    )
  }
  return Either.right(examples)
}

/** Reads the examples of a JSON Lines file (see `parseJsonlExamples`). */
export const readJsonlExamples = (path: string): Effect.Effect<Array<Example>, DatasetError> =>
  Effect.tryPromise({
    try: () => Fs.promises.readFile(path, "utf8"),
    catch: (cause) => {
      const code = (cause as { readonly code?: unknown } | undefined)?.code
      return new DatasetError({
        reason: "NotFound",
        file: path,
        detail: code === "ENOENT" || code === "ENOTDIR"
          ? "no such file"
          : code === "EISDIR"
          ? "is a directory, not a JSON Lines file"
          : `cannot read: ${cause instanceof Error ? cause.message : String(cause)}`
      })
    }
  }).pipe(Effect.flatMap((text) => parseJsonlExamples(path, text)))
