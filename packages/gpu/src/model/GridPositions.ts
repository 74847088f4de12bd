import type { GridPositions } from "./ModelConfig.js"

/**
 * Where each token sits on a grid, computed from the token ids alone, so training batches and
 * cached generation agree without any caller knowing the format: a segment-start token (e.g. an
 * example's `in` or `out`) opens segment `index + 1` at row 0, column 0; a cell token takes the
 * current row and column and moves one column right; a row end takes the column after the last
 * cell and moves to the next row's start. Rows and columns past the embedded range share the last.
 */

/** The place the next token will take. */
export interface GridCursor {
  readonly segment: number
  readonly row: number
  readonly column: number
}

export const gridStart: GridCursor = { segment: 0, row: 0, column: 0 }

/** Row, column and segment indices of `length` tokens `ids[offset..]`, starting from `cursor`. */
export interface GridIndices {
  readonly rows: Int32Array
  readonly columns: Int32Array
  readonly segments: Int32Array
}

/**
 * Fills `out` at `[offset, offset + length)` with the places of the same span of `ids` and
 * returns the cursor after them.
 */
export const placeTokens = (
  scheme: GridPositions,
  ids: ArrayLike<number>,
  offset: number,
  length: number,
  cursor: GridCursor,
  out: GridIndices
): GridCursor => {
  let { column, row, segment } = cursor
  for (let i = 0; i < length; i++) {
    const id = ids[offset + i]!
    const start = scheme.segmentStartIds.indexOf(id)
    if (start >= 0) {
      segment = start + 1
      row = 0
      column = 0
    }
    out.rows[offset + i] = Math.min(row, scheme.maxRows - 1)
    out.columns[offset + i] = Math.min(column, scheme.maxColumns - 1)
    out.segments[offset + i] = segment
    if (start >= 0) continue
    if (id === scheme.rowEndId) {
      row++
      column = 0
    } else {
      column++
    }
  }
  return { segment, row, column }
}

/**
 * The places of a `[batch, steps]` block of ids (row-major), each row continuing from its cursor
 * (`gridStart` when absent), and the cursors after the block.
 */
export const placeBatch = (
  scheme: GridPositions,
  ids: ArrayLike<number>,
  [batch, steps]: readonly [number, number],
  cursors: ReadonlyArray<GridCursor> | undefined
): { readonly indices: GridIndices; readonly cursors: ReadonlyArray<GridCursor> } => {
  const indices: GridIndices = {
    rows: new Int32Array(batch * steps),
    columns: new Int32Array(batch * steps),
    segments: new Int32Array(batch * steps)
  }
  const after: Array<GridCursor> = []
  for (let b = 0; b < batch; b++) {
    after.push(placeTokens(scheme, ids, b * steps, steps, cursors?.[b] ?? gridStart, indices))
  }
  return { indices, cursors: after }
}
