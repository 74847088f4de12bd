/**
 * Generated task families over objects and patterns (`SyntheticTasks.ts` has the cell-level
 * ones): connected shapes recoloured, extracted, framed or counted by a property, noise removed,
 * solid shapes hollowed, pairs of pixels joined by lines, and a symmetric or periodic pattern
 * completed where a patch of it is masked. Generic ARC primitives, chosen like the others before
 * looking at any evaluation task's solution.
 *
 * Each rule's `apply` reads only its input grid (objects are found, a symmetry or a period is
 * inferred), so a task's pairs agree on one rule whatever random inputs were drawn.
 */
import type { Grid } from "./Grid.js"
import { height, makeGrid, width } from "./Grid.js"
import {
  between,
  inBox,
  palette,
  pick,
  placeBox,
  type Rng,
  type RuleFamily,
  scatter,
  setCells
} from "./SyntheticRules.js"

type Cell = readonly [row: number, column: number]

/** A connected set of non-zero cells. */
export interface GridObject {
  readonly cells: ReadonlyArray<Cell>
  /** The colour of its first cell (objects of one colour when found with `sameColour`). */
  readonly colour: number
}

export const steps4: ReadonlyArray<Cell> = [[1, 0], [-1, 0], [0, 1], [0, -1]]
const steps8: ReadonlyArray<Cell> = [...steps4, [1, 1], [1, -1], [-1, 1], [-1, -1]]

/**
 * The objects of a grid: maximal sets of non-zero cells joined by side (or also corner, with
 * `diagonal`) steps, of one colour (`sameColour`) or of any, in reading order of first cells.
 */
export const objectsOf = (
  grid: Grid,
  options: { readonly diagonal?: boolean; readonly sameColour?: boolean } = {}
): Array<GridObject> => {
  const steps = options.diagonal === true ? steps8 : steps4
  const seen = grid.map((row) => row.map(() => false))
  const objects: Array<GridObject> = []
  grid.forEach((row, r0) =>
    row.forEach((colour, c0) => {
      if (colour === 0 || seen[r0]![c0]) return
      seen[r0]![c0] = true
      const cells: Array<Cell> = [[r0, c0]]
      for (let i = 0; i < cells.length; i++) {
        const [r, c] = cells[i]!
        for (const [dr, dc] of steps) {
          const cell = grid[r + dr]?.[c + dc]
          if (cell === undefined || cell === 0 || seen[r + dr]![c + dc]) continue
          if (options.sameColour === true && cell !== colour) continue
          seen[r + dr]![c + dc] = true
          cells.push([r + dr, c + dc])
        }
      }
      objects.push({ cells, colour })
    })
  )
  return objects
}

const boundingBox = (cells: ReadonlyArray<Cell>) => {
  const rows = cells.map(([r]) => r)
  const columns = cells.map(([, c]) => c)
  return {
    top: Math.min(...rows),
    left: Math.min(...columns),
    bottom: Math.max(...rows),
    right: Math.max(...columns)
  }
}

/** A random polyomino of `size` cells within `maxSide x maxSide`, its box at the origin. */
export const randomShape = (rng: Rng, size: number, maxSide: number): Array<Cell> => {
  const cells: Array<Cell> = [[0, 0]]
  const has = (r: number, c: number) => cells.some(([a, b]) => a === r && b === c)
  for (let tries = 0; cells.length < size && tries < 50 * size; tries++) {
    const [r, c] = pick(rng, cells)
    const [dr, dc] = pick(rng, steps4)
    const next: Cell = [r + dr, c + dc]
    if (has(...next)) continue
    const box = boundingBox([...cells, next])
    if (box.bottom - box.top >= maxSide || box.right - box.left >= maxSide) continue
    cells.push(next)
  }
  const { top, left } = boundingBox(cells)
  return cells.map(([r, c]) => [r - top, c - left])
}

const rectangle = (rows: number, columns: number): Array<Cell> =>
  Array.from({ length: rows * columns }, (_, i) => [Math.floor(i / columns), i % columns] as const)

/**
 * `shapes` placed at random on a `rows x columns` grid of 0s, each at least `gap` cells (in
 * both directions) from the others, or undefined when one does not fit.
 */
export const placeShapes = (
  rng: Rng,
  rows: number,
  columns: number,
  shapes: ReadonlyArray<{ readonly cells: ReadonlyArray<Cell>; readonly colour: number }>,
  gap = 1
): Array<Array<number>> | undefined => {
  const grid = Array.from({ length: rows }, () => new Array<number>(columns).fill(0))
  const free = (r: number, c: number) => {
    for (let dr = -gap; dr <= gap; dr++) {
      for (let dc = -gap; dc <= gap; dc++) if ((grid[r + dr]?.[c + dc] ?? 0) !== 0) return false
    }
    return true
  }
  for (const shape of shapes) {
    const box = boundingBox(shape.cells)
    if (box.bottom >= rows || box.right >= columns) return undefined
    let placed = false
    for (let tries = 0; !placed && tries < 40; tries++) {
      const top = between(rng, 0, rows - 1 - box.bottom)
      const left = between(rng, 0, columns - 1 - box.right)
      if (!shape.cells.every(([r, c]) => free(top + r, left + c))) continue
      for (const [r, c] of shape.cells) grid[top + r]![left + c] = shape.colour
      placed = true
    }
    if (!placed) return undefined
  }
  return grid
}

const fallback = (rows: number, columns: number): Grid => makeGrid(rows, columns, () => 0)

/** Random shapes of `sizes` in colour `colourOf(i)` on a grid of random sides in `[minSide, maxSide]`. */
const shapesInput = (
  rng: Rng,
  minSide: number,
  maxSide: number,
  sizes: ReadonlyArray<number>,
  colourOf: (index: number) => number,
  options: { readonly maxShapeSide?: number; readonly gap?: number } = {}
): Grid => {
  const rows = between(rng, minSide, maxSide)
  const columns = between(rng, minSide, maxSide)
  const shapes = sizes.map((size, i) => ({
    cells: randomShape(rng, size, options.maxShapeSide ?? 3),
    colour: colourOf(i)
  }))
  // An all-0 grid when they do not fit: it fails the rule, and drawPairs draws again.
  return placeShapes(rng, rows, columns, shapes, options.gap ?? 1) ?? fallback(rows, columns)
}

const uniqueBy = (objects: ReadonlyArray<GridObject>, key: (o: GridObject) => number, best: "max" | "min") => {
  if (objects.length < 2) return undefined
  const keys = objects.map(key)
  const target = best === "max" ? Math.max(...keys) : Math.min(...keys)
  const matches = objects.filter((_, i) => keys[i] === target)
  return matches.length === 1 ? matches[0] : undefined
}

const recolourCells = (grid: Grid, cells: ReadonlyArray<Cell>, colour: number): Grid => {
  const out = grid.map((row) => [...row])
  for (const [r, c] of cells) out[r]![c] = colour
  return out
}

// ---------------------------------------------------------------------------------------------
// Families

const objectSize: RuleFamily = {
  name: "object-size",
  draw: (rng) => {
    // The largest (or smallest) object takes a new colour, or every object a colour for its size.
    const mode = pick(rng, ["largest", "smallest", "by-size"] as const)
    const [colour, ...marks] = palette(rng, 4) as [number, number, number, number]
    return {
      input: (r) =>
        shapesInput(
          r,
          6,
          12,
          Array.from({ length: between(r, 3, 5) }, () => between(r, 1, mode === "by-size" ? 3 : 6)),
          () => colour
        ),
      apply: (grid) => {
        const objects = objectsOf(grid)
        if (mode === "by-size") {
          if (objects.length === 0) return undefined
          return objects.reduce((g, o) => recolourCells(g, o.cells, marks[o.cells.length - 1] ?? colour), grid)
        }
        const target = uniqueBy(objects, (o) => o.cells.length, mode === "largest" ? "max" : "min")
        return target === undefined ? undefined : recolourCells(grid, target.cells, marks[0])
      }
    }
  }
}

const extractObject: RuleFamily = {
  name: "extract-object",
  draw: (rng) => {
    // The output is one object cut out: the largest, or the one in a colour no other has.
    const mode = pick(rng, ["largest", "odd-colour"] as const)
    const [common, odd] = palette(rng, 2) as [number, number]
    return {
      input: (r) => {
        const count = between(r, 2, 4)
        return shapesInput(
          r,
          6,
          12,
          Array.from({ length: count }, () => between(r, 2, 7)),
          (i) => (mode === "odd-colour" && i === 0 ? odd : common),
          { maxShapeSide: 4 }
        )
      },
      apply: (grid) => {
        const objects = objectsOf(grid, { sameColour: true })
        const target = mode === "largest"
          ? uniqueBy(objects, (o) => o.cells.length, "max")
          : objects.filter((o) => o.colour === odd).length === 1
          ? objects.find((o) => o.colour === odd)
          : undefined
        if (target === undefined) return undefined
        const box = boundingBox(target.cells)
        const out = makeGrid(box.bottom - box.top + 1, box.right - box.left + 1, () => 0).map((row) => [...row])
        for (const [r, c] of target.cells) out[r - box.top]![c - box.left] = grid[r]![c]!
        return out
      }
    }
  }
}

const boxObjects: RuleFamily = {
  name: "box-objects",
  draw: (rng) => {
    // A frame of one colour around each object's bounding box, on the 0s next to it.
    const [colour, frameColour] = palette(rng, 2) as [number, number]
    return {
      input: (r) =>
        shapesInput(r, 6, 12, Array.from({ length: between(r, 1, 3) }, () => between(r, 1, 5)), () => colour, {
          gap: 2
        }),
      apply: (grid) => {
        const objects = objectsOf(grid, { diagonal: true })
        if (objects.length === 0) return undefined
        const out = grid.map((row) => [...row])
        for (const object of objects) {
          const box = boundingBox(object.cells)
          for (let r = box.top - 1; r <= box.bottom + 1; r++) {
            for (let c = box.left - 1; c <= box.right + 1; c++) {
              const edge = r === box.top - 1 || r === box.bottom + 1 || c === box.left - 1 || c === box.right + 1
              if (edge && out[r]?.[c] === 0) out[r]![c] = frameColour
            }
          }
        }
        return out
      }
    }
  }
}

const countObjects: RuleFamily = {
  name: "count-objects",
  draw: (rng) => {
    // As many cells as the input has objects, in a line of the objects' colour.
    const [colour] = palette(rng, 1) as [number]
    const vertical = rng() < 0.5
    return {
      input: (r) =>
        shapesInput(r, 5, 10, Array.from({ length: between(r, 1, 6) }, () => between(r, 2, 4)), () => colour),
      apply: (grid) => {
        const count = objectsOf(grid).length
        if (count === 0) return undefined
        return vertical ? makeGrid(count, 1, () => colour) : makeGrid(1, count, () => colour)
      }
    }
  }
}

const denoise: RuleFamily = {
  name: "denoise",
  draw: (rng) => {
    // Solid rectangles with single pixels of noise around them; the noise goes.
    const [colour, other] = palette(rng, 2) as [number, number]
    const noiseColour = rng() < 0.5 ? colour : other
    return {
      input: (r) => {
        const rows = between(r, 7, 12)
        const columns = between(r, 7, 12)
        const rectangles = Array.from({ length: between(r, 1, 3) }, () => ({
          cells: rectangle(between(r, 2, 4), between(r, 2, 4)),
          colour
        }))
        const grid = placeShapes(r, rows, columns, rectangles) ?? fallback(rows, columns).map((row) => [...row])
        for (let noise = between(r, 2, 6); noise > 0; noise--) {
          const row = between(r, 0, rows - 1)
          const column = between(r, 0, columns - 1)
          if (grid[row]![column] === 0) grid[row]![column] = noiseColour
        }
        return grid
      },
      apply: (grid) =>
        setCells(
          grid,
          (r, c, cell) => cell !== 0 && steps4.some(([dr, dc]) => grid[r + dr]?.[c + dc] === cell) ? cell : 0
        )
    }
  }
}

const hollow: RuleFamily = {
  name: "hollow",
  draw: (rng) => {
    // Solid rectangles lose their inside: to 0, or to one new colour.
    const colours = palette(rng, 3)
    const inside = rng() < 0.5 ? 0 : colours[2]!
    return {
      input: (r) => {
        const rows = between(r, 6, 12)
        const columns = between(r, 6, 12)
        const rectangles = Array.from({ length: between(r, 1, 3) }, () => ({
          cells: rectangle(between(r, 3, 5), between(r, 3, 5)),
          colour: pick(r, colours.slice(0, 2))
        }))
        return placeShapes(r, rows, columns, rectangles) ?? fallback(rows, columns)
      },
      apply: (grid) =>
        setCells(
          grid,
          (r, c, cell) => cell !== 0 && steps8.every(([dr, dc]) => grid[r + dr]?.[c + dc] === cell) ? inside : cell
        )
    }
  }
}

const connect: RuleFamily = {
  name: "connect",
  draw: (rng) => {
    // Two pixels of one colour in a row or column, only 0s between: a line joins them, in their
    // colour or in one line colour.
    const colours = palette(rng, 3)
    const lineColour = rng() < 0.5 ? undefined : colours[2]!
    const endColours = colours.slice(0, between(rng, 1, 2))
    return {
      input: (r) => {
        const rows = between(r, 6, 12)
        const columns = between(r, 6, 12)
        const grid = fallback(rows, columns).map((row) => [...row])
        const used = grid.map((row) => row.map(() => false))
        for (let pairs = between(r, 1, 3), tries = 0; pairs > 0 && tries < 30; tries++) {
          // Along a row (or a column, seen transposed): a segment of free cells, ends coloured.
          const across = r() < 0.5
          const lineCount = across ? rows : columns
          const length = across ? columns : rows
          const line = between(r, 0, lineCount - 1)
          const start = between(r, 0, length - 3)
          const end = between(r, start + 2, length - 1)
          const at = (i: number): Cell => (across ? [line, i] : [i, line])
          const segment = Array.from({ length: end - start + 1 }, (_, i) => at(start + i))
          if (segment.some(([a, b]) => used[a]![b])) continue
          // Keep a free cell around the segment so a line never merges into another.
          for (const [a, b] of segment) {
            for (const [da, db] of steps8) if (used[a + da]?.[b + db] !== undefined) used[a + da]![b + db] = true
            used[a]![b] = true
          }
          const colour = pick(r, endColours)
          grid[at(start)[0]]![at(start)[1]] = colour
          grid[at(end)[0]]![at(end)[1]] = colour
          pairs--
        }
        return grid
      },
      apply: (grid) => {
        const out = grid.map((row) => [...row])
        const join = (cells: ReadonlyArray<Cell>) => {
          let previous = -1
          cells.forEach(([r, c], i) => {
            const cell = grid[r]![c]!
            if (cell === 0) return
            if (previous >= 0 && i - previous > 1) {
              const [pr, pc] = cells[previous]!
              if (grid[pr]![pc] === cell) {
                for (const [a, b] of cells.slice(previous + 1, i)) out[a]![b] = lineColour ?? cell
              }
            }
            previous = i
          })
        }
        for (let r = 0; r < height(grid); r++) join(Array.from({ length: width(grid) }, (_, c) => [r, c] as const))
        for (let c = 0; c < width(grid); c++) join(Array.from({ length: height(grid) }, (_, r) => [r, c] as const))
        return out
      }
    }
  }
}

const symmetryComplete: RuleFamily = {
  name: "symmetry-complete",
  draw: (rng) => {
    // A mirror-symmetric pattern with a patch painted over in a colour the pattern lacks; the
    // output is the pattern restored (or only the patch).
    const axes = pick(rng, ["rows", "columns", "both"] as const)
    const [mask, ...colours] = palette(rng, between(rng, 3, 5))
    const patchOnly = rng() < 0.3
    const partners = (grid: Grid, r: number, c: number): Array<Cell> => {
      const h = height(grid) - 1
      const w = width(grid) - 1
      if (axes === "rows") return [[h - r, c]]
      if (axes === "columns") return [[r, w - c]]
      return [[h - r, c], [r, w - c], [h - r, w - c]]
    }
    return {
      input: (r) => {
        const rows = between(r, 4, 12)
        const columns = between(r, 4, 12)
        const quarter = scatter(r, rows, columns, colours, 0.7 + 0.3 * r())
        const pattern = makeGrid(rows, columns, (row, column) => {
          const mirroredRow = axes !== "columns" ? Math.min(row, rows - 1 - row) : row
          const mirroredColumn = axes !== "rows" ? Math.min(column, columns - 1 - column) : column
          return quarter[mirroredRow]![mirroredColumn]!
        })
        const patch = placeBox(
          r,
          rows,
          columns,
          between(r, 1, Math.min(3, rows - 2)),
          between(r, 1, Math.min(3, columns - 2))
        )
        return setCells(pattern, (row, column, cell) => (inBox(patch, row, column) ? mask! : cell))
      },
      apply: (grid) => {
        const masked = grid.flatMap((row, r) => row.flatMap((cell, c) => (cell === mask ? [[r, c] as const] : [])))
        if (masked.length === 0) return undefined
        const out = grid.map((row) => [...row])
        for (const [r, c] of masked) {
          const source = partners(grid, r, c).find(([a, b]) => grid[a]![b] !== mask)
          if (source === undefined) return undefined
          out[r]![c] = grid[source[0]]![source[1]]!
        }
        if (!patchOnly) return out
        const box = boundingBox(masked)
        return out.slice(box.top, box.bottom + 1).map((row) => row.slice(box.left, box.right + 1))
      }
    }
  }
}

/** The smallest period (rows, columns; by area) every unmasked cell agrees with, seeing each residue. */
const inferPeriod = (grid: Grid, isMasked: (cell: number) => boolean): [number, number] | undefined => {
  const periods: Array<[number, number]> = []
  for (let p = 1; p <= height(grid); p++) for (let q = 1; q <= width(grid); q++) periods.push([p, q])
  periods.sort((a, b) => a[0] * a[1] - b[0] * b[1] || a[0] - b[0])
  return periods.find(([p, q]) => {
    const tile = new Array<number>(p * q).fill(-1)
    return grid.every((row, r) =>
      row.every((cell, c) => {
        if (isMasked(cell)) return true
        const at = (r % p) * q + (c % q)
        if (tile[at] === -1) tile[at] = cell
        return tile[at] === cell
      })
    ) && tile.every((cell) => cell !== -1) && p * q < height(grid) * width(grid) / 2
  })
}

const patternFill: RuleFamily = {
  name: "pattern-fill",
  draw: (rng) => {
    // A periodic tiling with patches painted over (in 0, or in a colour the tile lacks); the
    // output is the tiling restored from the period the rest shows.
    const [maskColour, ...colours] = palette(rng, between(rng, 3, 5))
    const mask = rng() < 0.5 ? 0 : maskColour!
    return {
      input: (r) => {
        const rows = between(r, 6, 12)
        const columns = between(r, 6, 12)
        const tileRows = between(r, 1, 3)
        const tileColumns = between(r, tileRows === 1 ? 2 : 1, 3)
        const tile = makeGrid(tileRows, tileColumns, () => pick(r, colours))
        let grid = makeGrid(rows, columns, (row, column) => tile[row % tileRows]![column % tileColumns]!)
        for (let patch = between(r, 1, 2); patch > 0; patch--) {
          const box = placeBox(r, rows, columns, between(r, 2, 4), between(r, 2, 4))
          grid = setCells(grid, (row, column, cell) => (inBox(box, row, column) ? mask : cell))
        }
        return grid
      },
      apply: (grid) => {
        const period = inferPeriod(grid, (cell) => cell === mask)
        if (period === undefined) return undefined
        const [p, q] = period
        const tile = new Array<number>(p * q)
        grid.forEach((row, r) => row.forEach((cell, c) => cell !== mask && (tile[(r % p) * q + (c % q)] = cell)))
        return setCells(grid, (r, c) => tile[(r % p) * q + (c % q)]!)
      }
    }
  }
}

export const objectFamilies: ReadonlyArray<RuleFamily> = [
  objectSize,
  extractObject,
  boxObjects,
  countObjects,
  denoise,
  hollow,
  connect,
  symmetryComplete,
  patternFill
]
