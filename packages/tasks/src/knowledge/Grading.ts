/**
 * Grading closed-book answers: SQuAD v1.1's official exact match and token F1 as pure functions,
 * and a `Grader` service so a run can swap them for an LLM judge (see `LlmJudge.ts`) without
 * touching the evaluation loop.
 */
import { Context, Data, Effect, Layer, Schema } from "effect"

// Python's `string.punctuation`: the official script removes exactly these (ASCII) characters,
// so typographic quotes and dashes survive normalisation there and must survive here.
const punctuation = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

// Python's `re` treats `\b` as a Unicode word boundary; JavaScript's `\b` is ASCII-only and would
// strip the "a" out of "éa". Letters, numbers and "_" are Python's word characters.
const articles = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu

// The characters Python's `str.split()` splits on (JavaScript's `\s` differs at U+001C–U+001F,
// U+0085 and U+FEFF).
const whitespace = /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/

const splitWhitespace = (text: string): Array<string> => text.split(whitespace).filter((t) => t !== "")

/** SQuAD's `normalize_answer`: lower case, drop punctuation, drop a/an/the, collapse whitespace. */
export const normalizeAnswer = (text: string): string => {
  let out = ""
  for (const ch of text.toLowerCase()) if (!punctuation.has(ch)) out += ch
  return splitWhitespace(out.replace(articles, " ")).join(" ")
}

export const answerTokens = (text: string): Array<string> => splitWhitespace(normalizeAnswer(text))

/** 1 when the normalised strings are equal, else 0. */
export const exactMatchScore = (prediction: string, gold: string): number =>
  normalizeAnswer(prediction) === normalizeAnswer(gold) ? 1 : 0

/**
 * Token-level F1 over normalised tokens, counted as multisets. As in the v1.1 script, a pair with
 * no common token scores 0 even when both sides normalise to nothing (v2.0 changed that to 1).
 */
export const f1Score = (prediction: string, gold: string): number => {
  const predicted = answerTokens(prediction)
  const expected = answerTokens(gold)
  const counts = new Map<string, number>()
  for (const t of expected) counts.set(t, (counts.get(t) ?? 0) + 1)
  let common = 0
  for (const t of predicted) {
    const left = counts.get(t) ?? 0
    if (left > 0) {
      common += 1
      counts.set(t, left - 1)
    }
  }
  if (common === 0) return 0
  const precision = common / predicted.length
  const recall = common / expected.length
  return (2 * precision * recall) / (precision + recall)
}

const golds = (gold: string | ReadonlyArray<string>): ReadonlyArray<string> => typeof gold === "string" ? [gold] : gold

/** The official `metric_max_over_ground_truths`: the best score against any gold answer. */
const maxOver = (metric: (p: string, g: string) => number, prediction: string, gold: string | ReadonlyArray<string>) =>
  golds(gold).reduce((best, g) => Math.max(best, metric(prediction, g)), 0)

export const exactMatch = (prediction: string, gold: string | ReadonlyArray<string>): number =>
  maxOver(exactMatchScore, prediction, gold)

export const f1 = (prediction: string, gold: string | ReadonlyArray<string>): number =>
  maxOver(f1Score, prediction, gold)

export interface AnswerScore {
  readonly exactMatch: number
  readonly f1: number
}

export const scoreAnswer = (prediction: string, gold: string | ReadonlyArray<string>): AnswerScore => ({
  exactMatch: exactMatch(prediction, gold),
  f1: f1(prediction, gold)
})

/** Means over answers, as fractions in [0, 1] (the official script reports them times 100). */
export const meanScores = (scores: ReadonlyArray<AnswerScore>): AnswerScore & { readonly count: number } => {
  const count = scores.length
  if (count === 0) return { count, exactMatch: 0, f1: 0 }
  let em = 0
  let f = 0
  for (const s of scores) {
    em += s.exactMatch
    f += s.f1
  }
  return { count, exactMatch: em / count, f1: f / count }
}

/** One answer to grade; `gold` is a list when a question has several accepted answers. */
export const GradingItem = Schema.Struct({
  question: Schema.String,
  gold: Schema.Union(Schema.String, Schema.Array(Schema.String)),
  prediction: Schema.String
})
export type GradingItem = typeof GradingItem.Type

export const GradingMethod = Schema.Literal("exact-match", "llm-judge")
export type GradingMethod = typeof GradingMethod.Type

/**
 * A graded answer. `correct` is the method's verdict (exact match, or the judge's yes/no) and
 * `score` its number in [0, 1]; exact match and F1 are always filled in because they cost
 * nothing and make runs comparable across graders.
 */
export const Grade = Schema.Struct({
  method: GradingMethod,
  correct: Schema.Boolean,
  score: Schema.Number,
  exactMatch: Schema.Number,
  f1: Schema.Number,
  /** The judge's raw reply, for auditing its verdicts. */
  verdict: Schema.optional(Schema.String)
})
export type Grade = typeof Grade.Type

/** A grader could not produce a verdict; `reason` says where it broke. */
export class GradingError extends Data.TaggedError("GradingError")<{
  readonly reason: "Transport" | "Timeout" | "HttpStatus" | "BadResponse" | "UnclearVerdict"
  readonly status?: number | undefined
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

export class Grader extends Context.Tag("@seal/tasks/Grader")<Grader, {
  readonly method: GradingMethod
  readonly grade: (item: GradingItem) => Effect.Effect<Grade, GradingError>
}>() {}

/** Exact match decides `correct`; F1 is the score. */
export const gradeExactMatch = (item: GradingItem): Grade => {
  const { exactMatch: em, f1: f } = scoreAnswer(item.prediction, item.gold)
  return { method: "exact-match", correct: em === 1, score: f, exactMatch: em, f1: f }
}

export const exactMatchGrader = Grader.of({
  method: "exact-match",
  grade: (item) => Effect.succeed(gradeExactMatch(item))
})

export const layerExactMatch: Layer.Layer<Grader> = Layer.succeed(Grader, exactMatchGrader)

/** Grades a batch with whichever grader is provided; results keep the input order. */
export const gradeAll = (
  items: ReadonlyArray<GradingItem>,
  options: { readonly concurrency?: number | undefined } = {}
): Effect.Effect<Array<Grade>, GradingError, Grader> =>
  Effect.flatMap(Grader, (grader) => Effect.forEach(items, grader.grade, { concurrency: options.concurrency ?? 1 }))
