/**
 * How ARC tasks become token ids for our word-level ARC models (vocabulary: `ArcVocabulary.ts`).
 *
 * A grid is one token per cell, row by row, with a row end after every row:
 * `0 1 2\n3 4 5\n` is the 2x3 grid [[0, 1, 2], [3, 4, 5]]. An example is
 * `in <input grid> out <output grid> end`, and a task sequence is BOS, the demonstrations, then
 * the query example:
 *
 * ```
 * <s> in 0 1\n1 0\n out 1 0\n0 1\n end in 2 2\n out 0 0\n end
 *     '------------ demonstration ------------' '-- query --'
 * ```
 *
 * At inference the model is given the query prompt (everything up to and including the query's
 * `out`) and generates the output grid followed by `end`, which `decodeGrid` reads back. A
 * self-edit prompt is BOS, the demonstrations and `config`, after which the model writes a tool
 * config in JSON words.
 */
import type { GridPositions } from "@seal/gpu/model/ModelConfig"
import type { WordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import { makeWordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import type { TokenizedExample } from "@seal/gpu/train/Loss"
import { Either } from "effect"
import { arcTokens, ids, specialTokens } from "./ArcVocabulary.js"
import type { ArcExample, Grid } from "./Grid.js"
import { colourCount, maxGridSide } from "./Grid.js"

/**
 * Where ARC tokens sit on their grid, for models with grid-position embeddings: BOS, `in`, `out`
 * and `config` each start a segment; rows and columns run 0-30 (a 30-wide row's row end is at
 * column 30, the `end` after a 30-row grid at row 30).
 */
export const arcGridPositions: GridPositions = {
  rowEndId: ids.rowEnd,
  segmentStartIds: [ids.bos, ids.input, ids.output, ids.config],
  maxRows: maxGridSide + 1,
  maxColumns: maxGridSide + 1
}

let tokenizer: WordLevelTokenizer | undefined

/**
 * The tokenizer of the ARC vocabulary, built once. It adds BOS by default; `encode(gridText(g),
 * { addBos: false })` is `gridIds(g)`. Throws only if the fixed vocabulary is invalid (a
 * programming error).
 */
export const arcTokenizer = (): WordLevelTokenizer => {
  if (tokenizer === undefined) {
    const made = makeWordLevelTokenizer(arcTokens, specialTokens)
    if (Either.isLeft(made)) throw new Error(`ArcFormat: the ARC vocabulary is invalid: ${made.left.message}`)
    tokenizer = made.right
  }
  return tokenizer
}

/** Tokens of a grid: `rows * (columns + 1)` (a row end after every row). */
export const gridLength = (grid: Grid): number => grid.length * ((grid[0]?.length ?? 0) + 1)

/** Tokens of an example: `in`, its input grid, `out`, its output grid, `end`. */
export const exampleLength = (example: ArcExample): number => 3 + gridLength(example.input) + gridLength(example.output)

const pushGrid = (out: Array<number>, grid: Grid): void => {
  for (const row of grid) {
    for (const cell of row) out.push(ids.colour0 + cell)
    out.push(ids.rowEnd)
  }
}

const pushExample = (out: Array<number>, example: ArcExample): void => {
  out.push(ids.input)
  pushGrid(out, example.input)
  out.push(ids.output)
  pushGrid(out, example.output)
  out.push(ids.exampleEnd)
}

/** One token per cell (`ids.colour0 + colour`), `ids.rowEnd` after every row. */
export const gridIds = (grid: Grid): Array<number> => {
  const out: Array<number> = []
  pushGrid(out, grid)
  return out
}

/** The same as text: cells separated by spaces, a newline after every row (`"0 1 2\n3 4 5\n"`). */
export const gridText = (grid: Grid): string => grid.map((row) => `${row.join(" ")}\n`).join("")

/** `in <input> out <output> end`. */
export const exampleIds = (example: ArcExample): Array<number> => {
  const out: Array<number> = []
  pushExample(out, example)
  return out
}

/** Which tokens a task sequence trains on (SEAL's `train_using_output_tokens` / `train_using_all_tokens`). */
export type ArcLoss = "output" | "all"

/**
 * BOS, the demonstrations, then the query example. With `loss: "output"` the targets are the
 * query's output grid and its `end` (what the model produces after a query prompt); with
 * `loss: "all"` every token after BOS is a target.
 */
export const taskSequence = (
  demonstrations: ReadonlyArray<ArcExample>,
  query: ArcExample,
  options: { readonly loss: ArcLoss }
): TokenizedExample => {
  const out: Array<number> = [ids.bos]
  for (const example of demonstrations) pushExample(out, example)
  out.push(ids.input)
  pushGrid(out, query.input)
  out.push(ids.output)
  const firstTarget = options.loss === "all" ? 1 : out.length
  pushGrid(out, query.output)
  out.push(ids.exampleEnd)
  return { ids: out, labelMask: out.map((_, t) => (t >= firstTarget ? 1 : 0)) }
}

/** Tokens of `taskSequence(demonstrations, query, ...)`, without building it (for size rules). */
export const sequenceLength = (demonstrations: ReadonlyArray<ArcExample>, query: ArcExample): number =>
  demonstrations.reduce((n, example) => n + exampleLength(example), 1) + exampleLength(query)

/**
 * BOS, the demonstrations, then `in <queryInput> out`: the prompt after which the model generates
 * the query's output grid followed by `end`.
 */
export const queryPrompt = (demonstrations: ReadonlyArray<ArcExample>, queryInput: Grid): Array<number> => {
  const out: Array<number> = [ids.bos]
  for (const example of demonstrations) pushExample(out, example)
  out.push(ids.input)
  pushGrid(out, queryInput)
  out.push(ids.output)
  return out
}

/** BOS, the demonstrations, then `config`: the prompt after which a tool-config self-edit is generated. */
export const selfEditPrompt = (demonstrations: ReadonlyArray<ArcExample>): Array<number> => {
  const out: Array<number> = [ids.bos]
  for (const example of demonstrations) pushExample(out, example)
  out.push(ids.config)
  return out
}

/**
 * Reads a generated output grid: the continuation after a query prompt's `out`, up to `end`, EOS
 * or the end of `generatedIds` (what follows `end` is ignored). Returns undefined unless it is a
 * well-formed grid: only colour tokens and row ends, every row (the last included) closed by a row
 * end, 1 to 30 rows of the same 1 to 30 cells. Total: never throws, whatever the ids.
 */
export const decodeGrid = (generatedIds: ReadonlyArray<number>): Grid | undefined => {
  const rows: Array<Array<number>> = []
  let row: Array<number> = []
  for (const id of generatedIds) {
    if (id === ids.exampleEnd || id === ids.eos) break
    if (id === ids.rowEnd) {
      if (row.length === 0) return undefined
      if (rows.length > 0 && row.length !== rows[0]!.length) return undefined
      if (rows.length === maxGridSide) return undefined
      rows.push(row)
      row = []
      continue
    }
    const colour = id - ids.colour0
    if (!Number.isInteger(colour) || colour < 0 || colour >= colourCount) return undefined
    if (row.length === maxGridSide) return undefined
    row.push(colour)
  }
  if (row.length > 0 || rows.length === 0) return undefined
  return rows
}
