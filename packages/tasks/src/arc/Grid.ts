/**
 * ARC grids: rectangular arrays of colours 0-9, 1 to 30 cells on each side, indexed
 * `grid[row][column]`. Grids are values: functions here never modify their arguments.
 */

export type Grid = ReadonlyArray<ReadonlyArray<number>>

/** One demonstration or test pair. */
export interface ArcExample {
  readonly input: Grid
  readonly output: Grid
}

/**
 * One ARC task: `train` holds the demonstrations, `test` the held-out pairs whose outputs the
 * solver must produce (their outputs come from the solutions file).
 */
export interface ArcTask {
  readonly id: string
  readonly train: ReadonlyArray<ArcExample>
  readonly test: ReadonlyArray<ArcExample>
}

export const maxGridSide = 30
export const colourCount = 10

export const height = (grid: Grid): number => grid.length
export const width = (grid: Grid): number => grid[0]?.length ?? 0
export const cellCount = (grid: Grid): number => height(grid) * width(grid)

export const gridsEqual = (a: Grid, b: Grid): boolean =>
  a.length === b.length && a.every((row, r) => {
    const other = b[r]!
    return row.length === other.length && row.every((cell, c) => cell === other[c])
  })

/** A canonical string key of a grid (for voting and hashing). */
export const gridKey = (grid: Grid): string => grid.map((row) => row.join("")).join("|")

/** `f(row, column)` over a `rows x columns` grid. */
export const makeGrid = (rows: number, columns: number, f: (row: number, column: number) => number): Grid =>
  Array.from({ length: rows }, (_, r) => Array.from({ length: columns }, (_, c) => f(r, c)))

/** Cells in all demonstrations of a task (inputs and outputs): the size rule of held-out sets. */
export const demonstrationCells = (task: ArcTask): number =>
  task.train.reduce((sum, example) => sum + cellCount(example.input) + cellCount(example.output), 0)
