/**
 * The output grid's shape as the demonstrations imply it, and decoding held to it.
 *
 * A small model often gets an output's colours right and its extent wrong: it writes the right
 * rows and then more, the height of some other demonstration. Most ARC tasks fix the output's
 * shape by a rule the demonstrations show plainly (the input's shape, one constant shape, a
 * multiple or a fraction of the input), as solvers that predict the output size first exploit.
 * `impliedOutputShape` reads that rule per side; `gridMask` is a logit mask (the runtime's
 * constrained-decoding hook) under which greedy decoding can only write a well-formed grid of
 * that shape: colours, a row end after exactly `columns` cells, `end` after exactly `rows` rows.
 * A side no rule explains is left free (still well formed: every row as wide as the first).
 */
import type { LogitMask } from "@seal/gpu/model/Generate"
import { ids } from "./ArcVocabulary.js"
import type { ArcExample, Grid } from "./Grid.js"
import { colourCount, height, maxGridSide, width } from "./Grid.js"

/** Undefined sides are free. */
export interface OutputShape {
  readonly rows: number | undefined
  readonly columns: number | undefined
}

type Side = (grid: Grid) => number

/**
 * One side of the output from the demonstrations, by the first rule every demonstration
 * follows: equal to the input's same side, equal to its other side, one constant (with at least
 * two demonstrations), the same whole multiple of the input's side, or the same whole fraction.
 */
const impliedSide = (
  demonstrations: ReadonlyArray<ArcExample>,
  input: Grid,
  side: Side,
  other: Side
): number | undefined => {
  const all = (f: (example: ArcExample) => boolean) => demonstrations.length > 0 && demonstrations.every(f)
  if (all((d) => side(d.output) === side(d.input))) return side(input)
  if (all((d) => side(d.output) === other(d.input))) return other(input)
  const first = demonstrations[0]
  if (first === undefined) return undefined
  if (demonstrations.length >= 2 && all((d) => side(d.output) === side(first.output))) return side(first.output)
  const multiple = side(first.output) / side(first.input)
  if (Number.isInteger(multiple) && all((d) => side(d.output) === multiple * side(d.input))) {
    return multiple * side(input)
  }
  const fraction = side(first.input) / side(first.output)
  if (Number.isInteger(fraction) && all((d) => side(d.input) === fraction * side(d.output))) {
    return side(input) % fraction === 0 ? side(input) / fraction : undefined
  }
  return undefined
}

/** A side outside 1-30 is left free: no ARC grid has it, so the rule does not apply here. */
const withinArc = (n: number | undefined): number | undefined =>
  n !== undefined && n >= 1 && n <= maxGridSide ? n : undefined

/** The shape of `input`'s output that the demonstrations imply (each side independently). */
export const impliedOutputShape = (demonstrations: ReadonlyArray<ArcExample>, input: Grid): OutputShape => ({
  rows: withinArc(impliedSide(demonstrations, input, height, width)),
  columns: withinArc(impliedSide(demonstrations, input, width, height))
})

/** Tokens of a grid of `shape` with its `end`, when both sides are fixed. */
export const shapeTokens = (shape: OutputShape): number | undefined =>
  shape.rows === undefined || shape.columns === undefined ? undefined : shape.rows * (shape.columns + 1) + 1

const colourIds = Array.from({ length: colourCount }, (_, c) => ids.colour0 + c)

/**
 * A logit mask allowing, at each step, only the tokens that continue a well-formed grid of
 * `shape` (what `decodeGrid` reads back): colours within a row, a row end once the row is full,
 * `end` once the rows are done. Free sides are bounded by ARC's 30 and, for columns, by the
 * first row's width.
 */
export const gridMask = (shape: OutputShape): LogitMask => ({ generated, logits }) => {
  let rows = 0
  let column = 0
  let firstWidth: number | undefined
  for (const id of generated) {
    if (id === ids.rowEnd) {
      firstWidth ??= column
      rows++
      column = 0
    } else {
      column++
    }
  }
  const columns = shape.columns ?? firstWidth
  const maxRows = shape.rows ?? maxGridSide
  let allowed: ReadonlyArray<number>
  if (rows >= maxRows) allowed = [ids.exampleEnd]
  else if (column === (columns ?? maxGridSide)) allowed = [ids.rowEnd]
  else if (column === 0 && rows > 0 && shape.rows === undefined) allowed = [...colourIds, ids.exampleEnd]
  else if (column > 0 && columns === undefined) allowed = [...colourIds, ids.rowEnd]
  else allowed = colourIds
  const keep = new Set(allowed)
  for (let id = 0; id < logits.length; id++) if (!keep.has(id)) logits[id] = -Infinity
}
