/**
 * Where self-edits come from. SEAL published the self-edits its models wrote for the 200
 * evaluation passages (`data/squad/seal-self-edits/*.json`: Qwen2.5-7B before RL, after two
 * rounds of ReST-EM, and GPT-4.1); serving them through the same service a sampling model would
 * implement lets the inner loop be checked against the paper's inputs without generating anything.
 */
import { Context, Effect, Either, Layer, Schema } from "effect"
import * as Path from "node:path"
import type { EvaluationPassage, SquadPassage } from "./SquadData.js"
import {
  decodeJson,
  loadShuffle,
  loadSquad,
  readJsonFile,
  sealEvaluationPassages,
  SquadDataError,
  SquadQuestion
} from "./SquadData.js"

/** One record of a SEAL self-edit file: the passage, its questions, the prompt and the self-edits. */
export const SelfEditRecord = Schema.Struct({
  title: Schema.String,
  context: Schema.String,
  questions: Schema.Array(SquadQuestion),
  prompt: Schema.optional(Schema.String),
  completions: Schema.Array(Schema.String)
}).annotations({ identifier: "SelfEditRecord" })
export type SelfEditRecord = typeof SelfEditRecord.Type

export const SelfEditFile = Schema.Array(SelfEditRecord).annotations({ identifier: "SelfEditFile" })

/** The self-edits for one evaluation passage. */
export interface SelfEditSet {
  readonly passage: EvaluationPassage
  /** The prompt the self-edits were sampled from, when the source recorded it. */
  readonly prompt?: string | undefined
  readonly completions: ReadonlyArray<string>
}

/** SEAL samples five self-edits per passage. */
export const sealCompletionsPerPassage = 5

export class SelfEditSource extends Context.Tag("@seal/tasks/SelfEditSource")<SelfEditSource, {
  readonly name: string
  /** How many evaluation passages the source covers (positions `0 .. size - 1`). */
  readonly size: number
  /** The self-edits for the passage at `position` in SEAL's shuffled order. */
  readonly get: (position: number) => Effect.Effect<SelfEditSet, SquadDataError>
}>() {}

export const loadSelfEditFile = (path: string): Effect.Effect<ReadonlyArray<SelfEditRecord>, SquadDataError> =>
  readJsonFile(path).pipe(Effect.flatMap(decodeJson(SelfEditFile, Path.basename(path))))

const sameQuestions = (a: SquadPassage["questions"], b: SquadPassage["questions"]): boolean =>
  a.length === b.length && a.every((q, i) => q.question === b[i]!.question && q.answer === b[i]!.answer)

/**
 * Pairs record `i` of a self-edit file with evaluation passage `i`, checking that they are the
 * same passage: a file generated from a different shuffle or dataset would otherwise train each
 * adapter on one passage and test it on another's questions.
 */
export const matchEvaluation = (
  file: string,
  records: ReadonlyArray<SelfEditRecord>,
  evaluation: ReadonlyArray<EvaluationPassage>,
  options: { readonly completionsPerPassage?: number | undefined } = {}
): Either.Either<Array<SelfEditSet>, SquadDataError> => {
  const k = options.completionsPerPassage ?? sealCompletionsPerPassage
  if (records.length !== evaluation.length) {
    return Either.left(
      new SquadDataError({
        file,
        reason: "Mismatch",
        detail: `has ${records.length} records but the evaluation set has ${evaluation.length} passages`
      })
    )
  }
  const sets: Array<SelfEditSet> = []
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    const passage = evaluation[i]!
    const field = record.title !== passage.title
      ? "title"
      : record.context !== passage.context
      ? "context"
      : !sameQuestions(record.questions, passage.questions)
      ? "questions"
      : undefined
    if (field !== undefined) {
      return Either.left(
        new SquadDataError({
          file,
          reason: "Mismatch",
          index: i,
          field,
          detail: `differs from evaluation passage ${i} (squad_val.json[${passage.index}])`
        })
      )
    }
    if (record.completions.length !== k) {
      return Either.left(
        new SquadDataError({
          file,
          reason: "Malformed",
          index: i,
          field: "completions",
          detail: `expected ${k} self-edits, found ${record.completions.length}`
        })
      )
    }
    sets.push({ passage, prompt: record.prompt, completions: record.completions })
  }
  return Either.right(sets)
}

/** A source over self-edits already in memory, indexed by position. */
export const fromSets = (name: string, sets: ReadonlyArray<SelfEditSet>): Context.Tag.Service<SelfEditSource> =>
  SelfEditSource.of({
    name,
    size: sets.length,
    get: (position) =>
      Number.isInteger(position) && position >= 0 && position < sets.length
        ? Effect.succeed(sets[position]!)
        : Effect.fail(
          new SquadDataError({
            file: name,
            reason: "OutOfRange",
            detail: `no self-edits for position ${position}; the source covers 0..${sets.length - 1}`
          })
        )
  })

export interface SelfEditFiles {
  /** A SEAL self-edit file, e.g. `data/squad/seal-self-edits/base_val.json`. */
  readonly selfEdits: string
  readonly squad: string
  readonly shuffle: string
  readonly completionsPerPassage?: number | undefined
}

/**
 * Loads a SEAL self-edit file and checks it against the evaluation passages it claims to cover
 * (as many as the file has records, in shuffle order).
 */
export const load = (files: SelfEditFiles): Effect.Effect<Context.Tag.Service<SelfEditSource>, SquadDataError> =>
  Effect.gen(function*() {
    const name = Path.basename(files.selfEdits)
    const [records, squad, shuffle] = yield* Effect.all(
      [loadSelfEditFile(files.selfEdits), loadSquad(files.squad), loadShuffle(files.shuffle)],
      { concurrency: "unbounded" }
    )
    if (records.length > squad.length) {
      return yield* new SquadDataError({
        file: name,
        reason: "Mismatch",
        detail: `has ${records.length} records but the dataset has only ${squad.length} passages`
      })
    }
    const evaluation = yield* sealEvaluationPassages(squad, shuffle, records.length)
    const sets = yield* matchEvaluation(name, records, evaluation, files)
    return fromSets(name, sets)
  })

export const layer = (files: SelfEditFiles): Layer.Layer<SelfEditSource, SquadDataError> =>
  Layer.effect(SelfEditSource, load(files))
