/**
 * What a family of generated ARC tasks is made of (`SyntheticTasks.ts`): a rule with random
 * parameters, the random inputs it applies to, and the small random helpers the families share.
 */
import { colourPermutation } from "./Augmenters.js"
import type { Grid } from "./Grid.js"
import { makeGrid } from "./Grid.js"

export type Rng = () => number

/** A rule instance: inputs it applies to, and the output of each (undefined: draw another input). */
export interface Rule {
  readonly input: (rng: Rng) => Grid
  readonly apply: (grid: Grid) => Grid | undefined
}

export interface RuleFamily {
  readonly name: string
  readonly draw: (rng: Rng) => Rule
}

/** A uniform integer in `[low, high]`. */
export const between = (rng: Rng, low: number, high: number): number => low + Math.floor(rng() * (high - low + 1))
export const pick = <A>(rng: Rng, items: ReadonlyArray<A>): A => items[Math.floor(rng() * items.length)]!

/** `count` distinct colours from 1-9, in random order. */
export const palette = (rng: Rng, count: number): Array<number> => colourPermutation(rng).slice(1, 1 + count)

/** Background 0 with each cell coloured from `colours` with probability `density`. */
export const scatter = (
  rng: Rng,
  rows: number,
  columns: number,
  colours: ReadonlyArray<number>,
  density: number
): Grid => makeGrid(rows, columns, () => (rng() < density ? pick(rng, colours) : 0))

/** A scatter of random sides within `[minSide, maxSide]`, with this rule's palette and density. */
export const scatterInputs =
  (minSide: number, maxSide: number, colours: ReadonlyArray<number>, density: number) => (rng: Rng): Grid =>
    scatter(rng, between(rng, minSide, maxSide), between(rng, minSide, maxSide), colours, density)

export const setCells = (grid: Grid, f: (row: number, column: number, cell: number) => number): Grid =>
  grid.map((line, r) => line.map((cell, c) => f(r, c, cell)))
