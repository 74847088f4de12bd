/**
 * SQuAD in SEAL's format: one record per passage (`title`, `context`) with its questions, each
 * carrying one gold answer. SEAL evaluates knowledge incorporation on the first 200 passages of
 * the dev set after Python's `random.seed(42); random.shuffle(...)`; that permutation is shipped
 * as data (`seal-shuffle-seed42.json`) because Python's Mersenne-Twister shuffle is not worth
 * re-deriving here.
 */
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import * as Path from "node:path"
import { firstSchemaIssue, formatFieldPath, readJsonDataFile } from "../DataFiles.js"

export const SquadQuestion = Schema.Struct({
  question: Schema.String,
  answer: Schema.String
}).annotations({ identifier: "SquadQuestion" })
export type SquadQuestion = typeof SquadQuestion.Type

export const SquadPassage = Schema.Struct({
  title: Schema.String,
  context: Schema.String,
  questions: Schema.Array(SquadQuestion)
}).annotations({ identifier: "SquadPassage" })
export type SquadPassage = typeof SquadPassage.Type

/** What prompts and training sequences need from a passage. */
export interface PassageText {
  readonly title: string
  readonly context: string
}

export const SquadFile = Schema.Array(SquadPassage).annotations({ identifier: "SquadFile" })

export const ShuffleOrder = Schema.Struct({
  description: Schema.optional(Schema.String),
  order: Schema.Array(Schema.Int.pipe(Schema.nonNegative()))
}).annotations({ identifier: "ShuffleOrder" })
export type ShuffleOrder = typeof ShuffleOrder.Type

/** A passage of the evaluation set: `position` in SEAL's order, `index` into `squad_val.json`. */
export const EvaluationPassage = Schema.Struct({
  ...SquadPassage.fields,
  position: Schema.Int,
  index: Schema.Int
}).annotations({ identifier: "EvaluationPassage" })
export type EvaluationPassage = typeof EvaluationPassage.Type

/** The number of passages SEAL's knowledge-incorporation evaluation uses. */
export const sealEvaluationSize = 200

/**
 * Anything wrong with a SQuAD-side data file. `index` is the record at fault and `field` the path
 * inside it, so the message reads like `squad_val.json[17].questions[2].answer: expected string`.
 */
export class SquadDataError extends Data.TaggedError("SquadDataError")<{
  readonly file: string
  readonly reason: "NotFound" | "Unreadable" | "InvalidJson" | "Malformed" | "Mismatch" | "OutOfRange"
  readonly index?: number | undefined
  readonly field?: string | undefined
  readonly detail: string
}> {
  override get message(): string {
    return `${this.file}${formatLocation(this.index, this.field)}: ${this.detail}`
  }
}

const formatLocation = (index: number | undefined, field: string | undefined): string =>
  (index === undefined ? "" : `[${index}]`) + (field === undefined || field === "" ? "" : `.${field}`)

/**
 * Turns the first schema issue into a `Malformed` error. A top-level array's first path element
 * is the record index; the rest is the field inside that record.
 */
export const parseErrorToSquadDataError = (file: string, error: ParseResult.ParseError): SquadDataError => {
  const { path, detail } = firstSchemaIssue(error)
  const [head, ...rest] = path
  const index = typeof head === "number" ? head : undefined
  const fieldPath = index === undefined ? path : rest
  return new SquadDataError({
    file,
    reason: "Malformed",
    index,
    field: fieldPath.length === 0 ? undefined : formatFieldPath(fieldPath),
    detail
  })
}

/** Reads and parses a JSON file; errors name the file by its base name, as users see it. */
export const readJsonFile = (path: string): Effect.Effect<unknown, SquadDataError> =>
  readJsonDataFile(path, (failure) => new SquadDataError(failure))

/** Decodes parsed JSON with `schema`, reporting the first issue by record and field. */
export const decodeJson = <A, I>(schema: Schema.Schema<A, I>, file: string) => (json: unknown) =>
  Schema.decodeUnknownEither(schema)(json).pipe(Either.mapLeft((e) => parseErrorToSquadDataError(file, e)))

export const decodeSquad = (json: unknown, file = "squad_val.json") => decodeJson(SquadFile, file)(json)

/** Loads a `squad_val.json`-style file: a list of `{title, context, questions: [{question, answer}]}`. */
export const loadSquad = (path: string): Effect.Effect<ReadonlyArray<SquadPassage>, SquadDataError> =>
  readJsonFile(path).pipe(Effect.flatMap(decodeJson(SquadFile, Path.basename(path))))

/** Loads `seal-shuffle-seed42.json` (`{ order: number[] }`). */
export const loadShuffle = (path: string): Effect.Effect<ShuffleOrder, SquadDataError> =>
  readJsonFile(path).pipe(Effect.flatMap(decodeJson(ShuffleOrder, Path.basename(path))))

/**
 * The first `n` passages in shuffle order, as SEAL picks its evaluation set. The order must be a
 * permutation of the dataset's indices: anything else means the two files do not belong together.
 */
export const sealEvaluationPassages = (
  squad: ReadonlyArray<SquadPassage>,
  shuffle: ShuffleOrder,
  n: number = sealEvaluationSize
): Either.Either<ReadonlyArray<EvaluationPassage>, SquadDataError> => {
  const file = "seal-shuffle-seed42.json"
  if (shuffle.order.length !== squad.length) {
    return Either.left(
      new SquadDataError({
        file,
        reason: "Mismatch",
        field: "order",
        detail: `has ${shuffle.order.length} entries but the dataset has ${squad.length} passages`
      })
    )
  }
  const seen = new Uint8Array(squad.length)
  for (let i = 0; i < shuffle.order.length; i++) {
    const k = shuffle.order[i]!
    if (k >= squad.length || seen[k] === 1) {
      return Either.left(
        new SquadDataError({
          file,
          reason: "Mismatch",
          field: `order[${i}]`,
          detail: k >= squad.length ? `index ${k} is out of range` : `index ${k} appears twice`
        })
      )
    }
    seen[k] = 1
  }
  if (!Number.isInteger(n) || n < 0 || n > squad.length) {
    return Either.left(
      new SquadDataError({
        file,
        reason: "OutOfRange",
        detail: `cannot take ${n} passages from ${squad.length}`
      })
    )
  }
  return Either.right(
    shuffle.order.slice(0, n).map((index, position) => ({ ...squad[index]!, position, index }))
  )
}

/** Where the SQuAD files live under a data directory laid out like the repository's `data/`. */
export const squadFiles = (dataDir: string) => {
  const dir = Path.join(dataDir, "squad")
  return {
    squad: Path.join(dir, "squad_val.json"),
    shuffle: Path.join(dir, "seal-shuffle-seed42.json"),
    selfEdits: {
      base: Path.join(dir, "seal-self-edits", "base_val.json"),
      iter2: Path.join(dir, "seal-self-edits", "iter2_val.json"),
      gpt41: Path.join(dir, "seal-self-edits", "gpt4_1_val.json")
    }
  } as const
}
