/**
 * Augmented inference: the test input is shown in several symmetric views, each view's
 * prediction is mapped back by the view's inverse, and the predictions vote for two attempts
 * (ARC's pass@2). A malformed or non-invertible prediction casts no vote.
 */
import { queryPrompt } from "./ArcFormat.js"
import { applyToExample, type InvertibleAugmenter } from "./Augmenters.js"
import type { ArcExample, Grid } from "./Grid.js"
import { gridKey, gridsEqual } from "./Grid.js"
import { impliedOutputShape, type OutputShape } from "./OutputShape.js"

/** One view of a query: the prompt to generate from and how to map its prediction back. */
export interface QueryView {
  readonly view: string
  readonly prompt: ReadonlyArray<number>
  /** A grid of the original frame as this view shows it. */
  readonly apply: (grid: Grid) => Grid
  readonly invert: (grid: Grid) => Grid | undefined
  /** The output's shape in this view, as the demonstrations (seen the same way) imply it. */
  readonly shape: OutputShape
}

/** The views of `input` (with the demonstrations seen the same way) whose prompts fit `maxPromptTokens`. */
export const queryViews = (
  demonstrations: ReadonlyArray<ArcExample>,
  input: Grid,
  views: ReadonlyArray<InvertibleAugmenter>,
  maxPromptTokens: number
): Array<QueryView> =>
  views.flatMap((view) => {
    const shown = demonstrations.map((d) => applyToExample(view, d))
    const prompt = queryPrompt(shown, view.apply(input))
    return prompt.length <= maxPromptTokens
      ? [{
        view: view.name,
        prompt,
        apply: view.apply,
        invert: view.invert,
        shape: impliedOutputShape(shown, view.apply(input))
      }]
      : []
  })

export interface Vote {
  readonly grid: Grid
  readonly votes: number
}

/**
 * Tallies predictions (already in the original frame; undefined = no prediction) and returns
 * the distinct grids by votes, most first; ties keep the order of first appearance, so the
 * first view (identity) wins a tie.
 */
export const tally = (predictions: ReadonlyArray<Grid | undefined>): Array<Vote> => {
  const byKey = new Map<string, { grid: Grid; votes: number; first: number }>()
  predictions.forEach((grid, i) => {
    if (grid === undefined) return
    const key = gridKey(grid)
    const entry = byKey.get(key)
    if (entry === undefined) byKey.set(key, { grid, votes: 1, first: i })
    else byKey.set(key, { ...entry, votes: entry.votes + 1 })
  })
  return [...byKey.values()]
    .sort((a, b) => b.votes - a.votes || a.first - b.first)
    .map(({ grid, votes }) => ({ grid, votes }))
}

/**
 * Candidates ranked by a score (lower first: a negative log-likelihood summed over views, say),
 * ties by votes and then by the tally's order. `scores[i]` belongs to `votes[i]`.
 */
export const rankByScore = (votes: ReadonlyArray<Vote>, scores: ReadonlyArray<number>): Array<Vote> => {
  if (scores.length !== votes.length) throw new Error(`${scores.length} scores for ${votes.length} candidates`)
  return votes
    .map((vote, i) => ({ vote, score: Number.isNaN(scores[i]) ? Infinity : scores[i]!, i }))
    .sort((a, b) => a.score - b.score || b.vote.votes - a.vote.votes || a.i - b.i)
    .map(({ vote }) => vote)
}

/** The two attempts ARC allows per test input: the first grids of a ranking (`tally`, `rankByScore`). */
export const attempts = (ranked: ReadonlyArray<Vote>, count = 2): Array<Grid> =>
  ranked.slice(0, count).map((v) => v.grid)

/** Solved when every test output is among its input's attempts (pass@2 for two attempts). */
export const solvedByAttempts = (
  attemptsPerTest: ReadonlyArray<ReadonlyArray<Grid>>,
  outputs: ReadonlyArray<Grid>
): boolean =>
  outputs.length > 0 && outputs.every((output, i) => (attemptsPerTest[i] ?? []).some((a) => gridsEqual(a, output)))

/**
 * A softer score than pass@2: the share of the output's cells the first attempt gets right
 * (0 when its shape differs or there is none), averaged over test inputs.
 */
export const cellAccuracy = (
  attemptsPerTest: ReadonlyArray<ReadonlyArray<Grid>>,
  outputs: ReadonlyArray<Grid>
): number => {
  if (outputs.length === 0) return 0
  const scores = outputs.map((output, i) => {
    const first = attemptsPerTest[i]?.[0]
    if (first === undefined || first.length !== output.length || first[0]?.length !== output[0]?.length) return 0
    let right = 0
    let total = 0
    output.forEach((row, r) =>
      row.forEach((cell, c) => {
        total++
        if (first[r]![c] === cell) right++
      })
    )
    return total === 0 ? 0 : right / total
  })
  return scores.reduce((a, b) => a + b, 0) / scores.length
}
