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

/**
 * A few pixels (`minPixels`-`maxPixels` expected) on 0s, the sides random within `[minSide, maxSide]`:
 * the sources of rays, counts and the like.
 */
export const pixelInputs =
  (minSide: number, maxSide: number, colours: ReadonlyArray<number>, minPixels: number, maxPixels: number) =>
  (rng: Rng): Grid => {
    const rows = between(rng, minSide, maxSide)
    const columns = between(rng, minSide, maxSide)
    return scatter(rng, rows, columns, colours, between(rng, minPixels, maxPixels) / (rows * columns))
  }

export const setCells = (grid: Grid, f: (row: number, column: number, cell: number) => number): Grid =>
  grid.map((line, r) => line.map((cell, c) => f(r, c, cell)))

/** A rectangle of cells: its top-left corner and its sides. */
export interface Box {
  readonly top: number
  readonly left: number
  readonly rows: number
  readonly columns: number
}

/** A `rows x columns` box at a uniform position within a `gridRows x gridColumns` grid (top drawn first). */
export const placeBox = (rng: Rng, gridRows: number, gridColumns: number, rows: number, columns: number): Box => {
  const top = between(rng, 0, gridRows - rows)
  const left = between(rng, 0, gridColumns - columns)
  return { top, left, rows, columns }
}

export const inBox = (box: Box, row: number, column: number): boolean =>
  row >= box.top && row < box.top + box.rows && column >= box.left && column < box.left + box.columns

/** On the box's border (and in it). */
export const onBoxEdge = (box: Box, row: number, column: number): boolean =>
  inBox(box, row, column) &&
  (row === box.top || row === box.top + box.rows - 1 || column === box.left || column === box.left + box.columns - 1)
