/**
 * Generated task families over whole scenes (`SyntheticTasks.ts` has the cell rules,
 * `ObjectFamilies.ts` the object rules): an object slides until it meets another or the edge, a
 * grid split by separator lines is reduced to one of its blocks (or their overlay), pixels cast
 * diagonal rays, bars are sorted by length, and the empty squares of a noisy grid are filled.
 * Generic ARC primitives chosen, like the others, before looking at any evaluation task's
 * solution. Pretraining shows every generated task under a random symmetry and colour
 * permutation, so a rule written for one direction (bars standing on the bottom edge) covers all.
 *
 * As in the other families, `apply` reads only its input grid, so every pair of a task follows
 * one rule whatever inputs were drawn.
 */
import type { Grid } from "./Grid.js"
import { gridKey, height, makeGrid, width } from "./Grid.js"
import { placeShapes, randomShape, steps4 } from "./ObjectFamilies.js"
import { between, palette, pick, pixelInputs, type Rng, type RuleFamily, scatter, setCells } from "./SyntheticRules.js"

type Cell = readonly [row: number, column: number]

const cellsOfColour = (grid: Grid, colour: number): Array<Cell> =>
  grid.flatMap((row, r) => row.flatMap((cell, c) => (cell === colour ? [[r, c] as const] : [])))

const moveToContact: RuleFamily = {
  name: "move-to-contact",
  draw: (rng) => {
    // Every cell of the mobile colour moves one way, as one body, until the next step would leave
    // the grid or land on another colour.
    const [mobile, fixed] = palette(rng, 2) as [number, number]
    const [dr, dc] = pick(rng, steps4)
    return {
      input: (r) => {
        const rows = between(r, 6, 12)
        const columns = between(r, 6, 12)
        const shapes = [
          { cells: randomShape(r, between(r, 1, 5), 3), colour: mobile },
          ...Array.from(
            { length: between(r, 1, 3) },
            () => ({ cells: randomShape(r, between(r, 2, 6), 4), colour: fixed })
          )
        ]
        return placeShapes(r, rows, columns, shapes) ?? makeGrid(rows, columns, () => 0)
      },
      apply: (grid) => {
        const body = cellsOfColour(grid, mobile)
        if (body.length === 0) return undefined
        const canMove = (k: number) =>
          body.every(([r, c]) => {
            const cell = grid[r + k * dr]?.[c + k * dc]
            return cell === 0 || cell === mobile
          })
        let distance = 0
        while (canMove(distance + 1)) distance++
        const out = grid.map((row) => row.map((cell) => (cell === mobile ? 0 : cell)))
        for (const [r, c] of body) out[r + distance * dr]![c + distance * dc] = mobile
        return out
      }
    }
  }
}

/**
 * The blocks of a grid cut by full rows and full columns of `separator`, in reading order, or
 * undefined when the cuts do not leave equal blocks.
 */
export const blocksOf = (grid: Grid, separator: number): Array<Grid> | undefined => {
  const cutRows = grid.flatMap((row, r) => (row.every((cell) => cell === separator) ? [r] : []))
  const cutColumns = Array.from({ length: width(grid) }, (_, c) => c).filter((c) =>
    grid.every((row) => row[c] === separator)
  )
  const spans = (cuts: ReadonlyArray<number>, length: number) => {
    const bounds = [-1, ...cuts, length]
    return bounds.slice(1).map((end, i) => [bounds[i]! + 1, end] as const).filter(([start, end]) => end > start)
  }
  const rowSpans = spans(cutRows, height(grid))
  const columnSpans = spans(cutColumns, width(grid))
  const sides = (s: ReadonlyArray<readonly [number, number]>) => new Set(s.map(([start, end]) => end - start))
  if (sides(rowSpans).size !== 1 || sides(columnSpans).size !== 1) return undefined
  return rowSpans.flatMap(([top, bottom]) =>
    columnSpans.map(([left, right]) => grid.slice(top, bottom).map((row) => row.slice(left, right)))
  )
}

const filledCells = (grid: Grid): number => grid.reduce((n, row) => n + row.filter((cell) => cell !== 0).length, 0)

const gridCells: RuleFamily = {
  name: "grid-cells",
  draw: (rng) => {
    // Blocks of one size separated by lines of one colour; the output is the block unlike the
    // others, the fullest block, or all blocks laid over one another.
    const mode = pick(rng, ["odd-one-out", "fullest", "overlay"] as const)
    const [separator, ...colours] = palette(rng, 3) as [number, number, number]
    const blockRows = between(rng, 2, 4)
    const blockColumns = between(rng, 2, 4)
    const randomBlock = (r: Rng, density: number) =>
      scatter(r, blockRows, blockColumns, mode === "overlay" ? colours.slice(0, 1) : colours, density)
    return {
      input: (r) => {
        const across = between(r, 1, 3)
        const down = across === 1 ? between(r, 2, 3) : between(r, 1, 3)
        const count = across * down
        const base = randomBlock(r, 0.4)
        const oddIndex = between(r, 0, count - 1)
        const blocks = Array.from({ length: count }, (_, i) =>
          mode === "odd-one-out"
            ? (i === oddIndex ? randomBlock(r, 0.4) : base)
            : randomBlock(r, mode === "overlay" ? 0.3 : r() * 0.8))
        return makeGrid(down * (blockRows + 1) - 1, across * (blockColumns + 1) - 1, (row, column) => {
          const [i, a] = [Math.floor(row / (blockRows + 1)), row % (blockRows + 1)]
          const [j, b] = [Math.floor(column / (blockColumns + 1)), column % (blockColumns + 1)]
          return a === blockRows || b === blockColumns ? separator : blocks[i * across + j]![a]![b]!
        })
      },
      apply: (grid) => {
        const blocks = blocksOf(grid, separator)
        if (blocks === undefined || blocks.length < 2) return undefined
        if (mode === "overlay") {
          return setCells(blocks[0]!, (r, c) => blocks.find((block) => block[r]![c] !== 0)?.[r]![c] ?? 0)
        }
        if (mode === "fullest") {
          const counts = blocks.map(filledCells)
          const most = Math.max(...counts)
          return counts.filter((n) => n === most).length === 1 ? blocks[counts.indexOf(most)] : undefined
        }
        const keys = blocks.map(gridKey)
        const odd = keys.filter((key) => keys.indexOf(key) === keys.lastIndexOf(key))
        // Exactly one block unlike the others, which all agree (two blocks: no odd one out).
        return blocks.length > 2 && odd.length === 1 && new Set(keys).size === 2
          ? blocks[keys.indexOf(odd[0]!)]
          : undefined
      }
    }
  }
}

const diagonalSteps: ReadonlyArray<Cell> = [[1, 1], [1, -1], [-1, 1], [-1, -1]]

const diagonals: RuleFamily = {
  name: "diagonals",
  draw: (rng) => {
    // Each pixel casts rays of its colour along diagonals (all four, one line through it, or one
    // direction) over 0s, to the edge or the first coloured cell of the input.
    const mode = between(rng, 0, 3)
    const steps = mode === 0
      ? diagonalSteps
      : mode === 1
      ? [diagonalSteps[0]!, diagonalSteps[3]!]
      : mode === 2
      ? [diagonalSteps[1]!, diagonalSteps[2]!]
      : [pick(rng, diagonalSteps)]
    const colours = palette(rng, between(rng, 1, 2))
    return {
      input: pixelInputs(5, 12, colours, 1, 3),
      apply: (grid) => {
        const out = grid.map((row) => [...row])
        grid.forEach((row, r) =>
          row.forEach((colour, c) => {
            if (colour === 0) return
            for (const [dr, dc] of steps) {
              for (let k = 1; grid[r + k * dr]?.[c + k * dc] === 0; k++) {
                // Where rays of two colours cross, the first pixel in reading order wins.
                if (out[r + k * dr]![c + k * dc] === 0) out[r + k * dr]![c + k * dc] = colour
              }
            }
          })
        )
        return out
      }
    }
  }
}

/** The height of the bar standing on the bottom edge in `column` (its run of one colour), and that colour. */
const barOf = (grid: Grid, column: number): { readonly length: number; readonly colour: number } => {
  const colour = grid[height(grid) - 1]![column]!
  let length = 0
  while (colour !== 0 && grid[height(grid) - 1 - length]?.[column] === colour) length++
  return { length, colour }
}

const sortBars: RuleFamily = {
  name: "sort-bars",
  draw: (rng) => {
    // Bars standing on the bottom edge, in place of their columns, are reordered by length
    // (shortest or longest first), each keeping its colour.
    const ascending = rng() < 0.5
    const colours = palette(rng, between(rng, 1, 3))
    const spacing = between(rng, 1, 2)
    return {
      input: (r) => {
        const rows = between(r, 3, 10)
        const bars = between(r, 3, 7)
        const columns = bars * spacing + (spacing - 1)
        const lengths = Array.from({ length: bars }, () => between(r, 1, rows))
        const barColours = lengths.map(() => pick(r, colours))
        return makeGrid(rows, columns, (row, column) => {
          const bar = (column - (spacing - 1)) / spacing
          if (!Number.isInteger(bar) || bar < 0) return 0
          return row >= rows - lengths[bar]! ? barColours[bar]! : 0
        })
      },
      apply: (grid) => {
        // Only bars, nothing above them: every coloured cell belongs to its column's bar.
        const bars = Array.from({ length: width(grid) }, (_, c) => barOf(grid, c))
        if (bars.reduce((n, bar) => n + bar.length, 0) !== filledCells(grid)) return undefined
        const placed = bars.flatMap((bar, c) => (bar.length > 0 ? [c] : []))
        const sorted = placed.map((c) => bars[c]!).sort((
          a,
          b
        ) => (ascending ? a.length - b.length : b.length - a.length))
        const byColumn = new Map(placed.map((c, i) => [c, sorted[i]!]))
        return setCells(grid, (r, c) => {
          const bar = byColumn.get(c)
          return bar !== undefined && r >= height(grid) - bar.length ? bar.colour : 0
        })
      }
    }
  }
}

/** Whether the `side x side` window at (top, left) lies in the grid and holds only 0s. */
export const emptyWindow = (grid: Grid, top: number, left: number, side: number): boolean => {
  if (top + side > height(grid) || left + side > width(grid)) return false
  for (let r = top; r < top + side; r++) {
    for (let c = left; c < left + side; c++) if (grid[r]![c] !== 0) return false
  }
  return true
}

const emptySquares: RuleFamily = {
  name: "empty-squares",
  draw: (rng) => {
    // In a noisy grid, every square of 0s of one side (2 or 3) takes one new colour.
    const side = between(rng, 2, 3)
    const [fill, ...noise] = palette(rng, between(rng, 2, 3))
    return {
      input: (r) => scatter(r, between(r, 6, 12), between(r, 6, 12), noise, 0.4 + 0.25 * r()),
      apply: (grid) => {
        const out = grid.map((row) => [...row])
        grid.forEach((row, top) =>
          row.forEach((_, left) => {
            if (!emptyWindow(grid, top, left, side)) return
            for (let r = top; r < top + side; r++) for (let c = left; c < left + side; c++) out[r]![c] = fill!
          })
        )
        return out
      }
    }
  }
}

export const sceneFamilies: ReadonlyArray<RuleFamily> = [moveToContact, gridCells, diagonals, sortBars, emptySquares]
