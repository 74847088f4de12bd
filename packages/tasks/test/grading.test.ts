import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  answerTokens,
  exactMatch,
  f1,
  gradeAll,
  Grader,
  layerExactMatch,
  meanScores,
  normalizeAnswer,
  scoreAnswer
} from "../src/knowledge/Grading.js"

// Expected values are what SQuAD v1.1's official evaluate-v1.1.py (normalize_answer, f1_score,
// exact_match_score) returns for the same inputs under Python 3.
describe("normalizeAnswer", () => {
  it.each([
    ["The Cat!", "cat"],
    ["  A  quick, brown fox. ", "quick brown fox"],
    ["THE Denver Broncos", "denver broncos"],
    ["Theatre", "theatre"],
    ["an apple and the orange", "apple and orange"],
    ["the", ""],
    ["A-B", "ab"],
    ["U.S.", "us"],
    ["1,000", "1000"],
    ["l'an", "lan"],
    ["the_a", "thea"],
    ["(a) the b-the", "bthe"],
    // Only ASCII punctuation is removed: typographic apostrophes survive.
    ["Cat’s", "cat’s"],
    // Python's \b is Unicode-aware: the "a" in "éa" is inside a word.
    ["éa b", "éa b"],
    ["Ångström the", "ångström"],
    // Python's str.split() whitespace: U+001C splits, U+FEFF does not, NBSP does.
    ["x\x1cy", "x y"],
    ["x\ufeffy", "x\ufeffy"],
    ["a\u00a0b", "b"]
  ])("%j -> %j", (input, expected) => {
    expect(normalizeAnswer(input)).toBe(expected)
  })

  it("tokenizes the normalised text", () => {
    expect(answerTokens("The  Denver, Broncos")).toEqual(["denver", "broncos"])
    expect(answerTokens("the")).toEqual([])
  })
})

describe("exact match and F1", () => {
  it.each([
    ["Denver Broncos", "Denver Broncos", 1, 1],
    ["the Denver Broncos.", "Denver Broncos", 1, 1],
    ["Denver Broncos won", "Denver Broncos", 0, 0.8],
    ["Broncos", "Denver Broncos", 0, 2 / 3],
    ["New York City", "the city of New York", 0, 6 / 7],
    // Tokens count as multisets: a repeated token matches once.
    ["cat cat", "cat", 0, 2 / 3],
    ["the the cat", "cat", 1, 1],
    ["Santa Clara", "Denver Broncos", 0, 0],
    // v1.1: both sides empty after normalisation is an exact match but F1 0.
    ["the", "a", 1, 0]
  ])("%j vs %j", (prediction, gold, em, expectedF1) => {
    expect(exactMatch(prediction, gold)).toBe(em)
    expect(f1(prediction, gold)).toBeCloseTo(expectedF1, 12)
  })

  it("takes the best score over several gold answers", () => {
    expect(scoreAnswer("Broncos", ["Denver Broncos", "the Broncos"])).toEqual({ exactMatch: 1, f1: 1 })
    expect(f1("Denver", ["Denver Broncos", "Broncos"])).toBeCloseTo(2 / 3, 12)
    expect(scoreAnswer("anything", [])).toEqual({ exactMatch: 0, f1: 0 })
  })

  it("averages scores", () => {
    expect(meanScores([{ exactMatch: 1, f1: 1 }, { exactMatch: 0, f1: 0.5 }])).toEqual({
      count: 2,
      exactMatch: 0.5,
      f1: 0.75
    })
    expect(meanScores([])).toEqual({ count: 0, exactMatch: 0, f1: 0 })
  })
})

describe("Grader (exact match)", () => {
  it.effect("grades by exact match and reports F1 as the score", () =>
    Effect.gen(function*() {
      const grader = yield* Grader
      expect(grader.method).toBe("exact-match")
      const grades = yield* gradeAll([
        { question: "Who won?", gold: "Denver Broncos", prediction: "The Denver Broncos" },
        { question: "Who won?", gold: "Denver Broncos", prediction: "Broncos" }
      ])
      expect(grades[0]).toEqual({ method: "exact-match", correct: true, score: 1, exactMatch: 1, f1: 1 })
      expect(grades[1]!.correct).toBe(false)
      expect(grades[1]!.score).toBeCloseTo(2 / 3, 12)
    }).pipe(Effect.provide(layerExactMatch)))
})
