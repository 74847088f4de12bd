/**
 * Generated ARC-like tasks for pretraining. The ARC training set has 400 tasks, and the 233 of
 * the pretraining split that fit the context teach a small model the format but few of the
 * primitives held-out tasks are made of (FEASIBILITY.md: "bigger models trained on generated
 * tasks are what the literature suggests"). Each generated task is a rule drawn from one of the
 * families below with random parameters (a symmetry, a colour map, a factor, a direction, a
 * logical operation) and applied to random input grids, in the spirit of re-arc's generators
 * but far simpler: each family is a few lines, and a seed names a task.
 *
 * The families are generic ARC primitives chosen before looking at any evaluation task's
 * solution; none reproduces a particular task.
 */
import { makeRng } from "@seal/gpu/model/Sampling"
import {
  increaseHeight,
  increaseResolution,
  increaseWidth,
  invertibleViews,
  reflect,
  repeat,
  shift
} from "./Augmenters.js"
import type { ArcExample, ArcTask, Grid } from "./Grid.js"
import { gridsEqual, height, makeGrid, maxGridSide, width } from "./Grid.js"
import { objectFamilies } from "./ObjectFamilies.js"
import { sceneFamilies } from "./SceneFamilies.js"
import {
  between,
  inBox,
  onBoxEdge,
  palette,
  pick,
  pixelInputs,
  placeBox,
  type Rng,
  type Rule,
  type RuleFamily,
  scatter,
  scatterInputs,
  setCells
} from "./SyntheticRules.js"

// ---------------------------------------------------------------------------------------------
// Helpers over grids

const rotateBy = (turns: number) => invertibleViews[turns]! // identity, 90, 180, 270

/** Non-zero cells slide down each column, keeping their order. */
const fallDown = (grid: Grid): Grid => {
  const columns = Array.from({ length: width(grid) }, (_, c) => grid.map((row) => row[c]!).filter((cell) => cell !== 0))
  return makeGrid(height(grid), width(grid), (r, c) => {
    const stack = columns[c]!
    const fromBottom = height(grid) - 1 - r
    return fromBottom < stack.length ? stack[stack.length - 1 - fromBottom]! : 0
  })
}

/** Cells of colour 0 that no 4-connected path of 0s joins to the edge. */
const enclosedZeros = (grid: Grid): Array<Array<boolean>> => {
  const rows = height(grid)
  const columns = width(grid)
  const outside = grid.map((row) => row.map(() => false))
  const queue: Array<[number, number]> = []
  const visit = (r: number, c: number) => {
    if (r < 0 || c < 0 || r >= rows || c >= columns || outside[r]![c] || grid[r]![c] !== 0) return
    outside[r]![c] = true
    queue.push([r, c])
  }
  for (let r = 0; r < rows; r++) visit(r, 0), visit(r, columns - 1)
  for (let c = 0; c < columns; c++) visit(0, c), visit(rows - 1, c)
  while (queue.length > 0) {
    const [r, c] = queue.pop()!
    visit(r + 1, c), visit(r - 1, c), visit(r, c + 1), visit(r, c - 1)
  }
  return grid.map((row, r) => row.map((cell, c) => cell === 0 && !outside[r]![c]))
}

// ---------------------------------------------------------------------------------------------
// Families

const geometry: RuleFamily = {
  name: "geometry",
  draw: (rng) => {
    const view = pick(rng, invertibleViews.slice(1))
    return { input: scatterInputs(2, 8, palette(rng, between(rng, 1, 4)), 0.2 + 0.5 * rng()), apply: view.apply }
  }
}

const recolour: RuleFamily = {
  name: "recolour",
  draw: (rng) => {
    const colours = palette(rng, 6)
    const sources = colours.slice(0, between(rng, 1, 3))
    const targets = colours.slice(3, 3 + sources.length)
    const map = new Map(sources.map((source, i) => [source, targets[i]!]))
    const inputColours = [...sources, ...colours.slice(3 + sources.length, 4 + sources.length)]
    return {
      input: scatterInputs(3, 9, inputColours, 0.3 + 0.4 * rng()),
      apply: (grid) => setCells(grid, (_r, _c, cell) => map.get(cell) ?? cell)
    }
  }
}

const enlarge: RuleFamily = {
  name: "enlarge",
  draw: (rng) => {
    const factor = between(rng, 2, 3)
    const augmenter = pick(rng, [
      increaseResolution(factor),
      increaseHeight(factor),
      increaseWidth(factor),
      repeat(0, factor),
      repeat(1, factor),
      repeat(2, factor),
      reflect(0, false),
      reflect(1, false),
      reflect(0, true),
      reflect(1, true)
    ])
    return { input: scatterInputs(2, 5, palette(rng, between(rng, 1, 3)), 0.3 + 0.4 * rng()), apply: augmenter.apply }
  }
}

const shrink: RuleFamily = {
  name: "shrink",
  draw: (rng) => {
    const factor = between(rng, 2, 3)
    const enlarging = pick(rng, [increaseResolution(factor), repeat(2, factor), reflect(1, false), reflect(0, false)])
    const small = scatterInputs(2, 5, palette(rng, between(rng, 1, 3)), 0.3 + 0.4 * rng())
    // The input is an enlarged grid; the output the grid it was enlarged from.
    return { input: (r) => enlarging.apply(small(r)), apply: (grid) => enlarging.invert!(grid) }
  }
}

const crop: RuleFamily = {
  name: "crop",
  draw: (rng) => {
    const colours = palette(rng, between(rng, 1, 3))
    return {
      input: (r) => {
        const rows = between(r, 6, 12)
        const columns = between(r, 6, 12)
        const boxRows = between(r, 2, Math.min(5, rows - 2))
        const boxColumns = between(r, 2, Math.min(5, columns - 2))
        const box = placeBox(r, rows, columns, boxRows, boxColumns)
        return makeGrid(rows, columns, (row, column) => inBox(box, row, column) && r() < 0.75 ? pick(r, colours) : 0)
      },
      apply: (grid) => {
        const rows = grid.flatMap((row, r) => (row.some((cell) => cell !== 0) ? [r] : []))
        const columns = Array.from({ length: width(grid) }, (_, c) => c).filter((c) => grid.some((row) => row[c] !== 0))
        if (rows.length === 0) return undefined
        return grid.slice(rows[0]!, rows[rows.length - 1]! + 1).map((row) =>
          row.slice(columns[0]!, columns[columns.length - 1]! + 1)
        )
      }
    }
  }
}

const gravity: RuleFamily = {
  name: "gravity",
  draw: (rng) => {
    // Falling toward another edge: rotate that edge to the bottom, fall, rotate back.
    const turns = between(rng, 0, 3)
    const there = rotateBy(turns)
    return {
      input: scatterInputs(3, 8, palette(rng, between(rng, 1, 3)), 0.15 + 0.3 * rng()),
      apply: (grid) => there.invert(fallDown(there.apply(grid)))
    }
  }
}

const lines: RuleFamily = {
  name: "lines",
  draw: (rng) => {
    // Each pixel draws a ray of its colour over 0s: toward one edge, or across the whole row or column.
    const mode = between(rng, 0, 5)
    const colours = palette(rng, between(rng, 1, 3))
    return {
      input: pixelInputs(5, 10, colours, 1, 3),
      apply: (grid) =>
        setCells(grid, (row, column, cell) => {
          if (cell !== 0) return cell
          const fromRow = (source: number) => grid[source]![column]!
          const fromColumn = (source: number) => grid[row]![source]!
          const candidates: Array<number> = []
          if (mode === 0 || mode === 4) { for (let r = row - 1; r >= 0; r--) candidates.push(fromRow(r)) }
          if (mode === 1 || mode === 4) { for (let r = row + 1; r < height(grid); r++) candidates.push(fromRow(r)) }
          if (mode === 2 || mode === 5) { for (let c = column - 1; c >= 0; c--) candidates.push(fromColumn(c)) }
          if (mode === 3 || mode === 5) {
            for (let c = column + 1; c < width(grid); c++) candidates.push(fromColumn(c))
          }
          return candidates.find((source) => source !== 0) ?? 0
        })
    }
  }
}

const fillEnclosed: RuleFamily = {
  name: "fill-enclosed",
  draw: (rng) => {
    const [outline, fill] = palette(rng, 2) as [number, number]
    return {
      input: (r) => {
        const rows = between(r, 6, 12)
        const columns = between(r, 6, 12)
        let grid: Grid = makeGrid(rows, columns, () => 0)
        for (let box = between(r, 1, 2); box > 0; box--) {
          const boxRows = between(r, 3, Math.min(6, rows))
          const boxColumns = between(r, 3, Math.min(6, columns))
          const outlined = placeBox(r, rows, columns, boxRows, boxColumns)
          grid = setCells(grid, (row, column, cell) => (onBoxEdge(outlined, row, column) ? outline : cell))
        }
        return grid
      },
      apply: (grid) => {
        const enclosed = enclosedZeros(grid)
        return setCells(grid, (row, column, cell) => (enclosed[row]![column] ? fill : cell))
      }
    }
  }
}

const frame: RuleFamily = {
  name: "frame",
  draw: (rng) => {
    const [border, ...rest] = palette(rng, 3)
    return {
      input: scatterInputs(3, 9, rest, 0.2 + 0.3 * rng()),
      apply: (grid) =>
        setCells(
          grid,
          (row, column, cell) =>
            row === 0 || column === 0 || row === height(grid) - 1 || column === width(grid) - 1 ? border! : cell
        )
    }
  }
}

const operations: ReadonlyArray<(a: boolean, b: boolean) => boolean> = [
  (a, b) => a && b,
  (a, b) => a || b,
  (a, b) => a !== b,
  (a, b) => !a && !b,
  (a, b) => a && !b
]

const logic: RuleFamily = {
  name: "logic",
  draw: (rng) => {
    // Two same-sized halves separated by a divider; the output marks where an operation of the two holds.
    const operation = pick(rng, operations)
    const [left, right, divider, result] = palette(rng, 4) as [number, number, number, number]
    const side = rng() < 0.5 ? "columns" : "rows"
    const rows = between(rng, 3, 5)
    const columns = between(rng, 3, 5)
    return {
      input: (r) => {
        const a = scatter(r, rows, columns, [left], 0.5)
        const b = scatter(r, rows, columns, [right], 0.5)
        return side === "columns"
          ? a.map((row, i) => [...row, divider, ...b[i]!])
          : [...a, Array.from({ length: columns }, () => divider), ...b]
      },
      apply: (grid) =>
        makeGrid(rows, columns, (row, column) => {
          const a = grid[row]![column]! !== 0
          const b = side === "columns" ? grid[row]![column + columns + 1]! !== 0 : grid[row + rows + 1]![column]! !== 0
          return operation(a, b) ? result : 0
        })
    }
  }
}

const majority: RuleFamily = {
  name: "majority",
  draw: (rng) => {
    const side = between(rng, 1, 3)
    return {
      input: scatterInputs(3, 8, palette(rng, between(rng, 2, 4)), 0.3 + 0.5 * rng()),
      apply: (grid) => {
        const counts = new Map<number, number>()
        for (const cell of grid.flat()) if (cell !== 0) counts.set(cell, (counts.get(cell) ?? 0) + 1)
        const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1])
        if (ranked.length === 0 || ranked[1]?.[1] === ranked[0]![1]) return undefined
        return makeGrid(side, side, () => ranked[0]![0])
      }
    }
  }
}

const count: RuleFamily = {
  name: "count",
  draw: (rng) => {
    const colours = palette(rng, 2)
    const vertical = rng() < 0.5
    return {
      input: pixelInputs(3, 7, colours, 1, 6),
      apply: (grid) => {
        const cells = grid.flat().filter((cell) => cell !== 0)
        if (cells.length === 0) return undefined
        // As many cells as the input has coloured, in the input's first colour.
        return vertical ? cells.map(() => [colours[0]!]) : [cells.map(() => colours[0]!)]
      }
    }
  }
}

const translate: RuleFamily = {
  name: "translate",
  draw: (rng) => {
    const down = between(rng, -2, 2)
    const right = down === 0 ? pick(rng, [-2, -1, 1, 2]) : between(rng, -2, 2)
    return {
      input: scatterInputs(4, 9, palette(rng, between(rng, 1, 3)), 0.2 + 0.3 * rng()),
      apply: shift(down, right).apply
    }
  }
}

const half: RuleFamily = {
  name: "half",
  draw: (rng) => {
    // The output is one half of the input: top, bottom, left or right.
    const which = between(rng, 0, 3)
    const colours = palette(rng, between(rng, 1, 4))
    const density = 0.3 + 0.4 * rng()
    return {
      input: (r) => {
        const rows = between(r, 1, 5)
        const columns = between(r, 2, 6)
        return which < 2
          ? scatter(r, 2 * rows, columns, colours, density)
          : scatter(r, columns, 2 * rows, colours, density)
      },
      apply: (grid) => {
        if (which === 0) return grid.slice(0, height(grid) / 2)
        if (which === 1) return grid.slice(height(grid) / 2)
        return grid.map((row) => (which === 2 ? row.slice(0, row.length / 2) : row.slice(row.length / 2)))
      }
    }
  }
}

const compose: RuleFamily = {
  name: "compose",
  draw: (rng) => {
    const first = geometry.draw(rng)
    const second = recolour.draw(rng)
    return {
      input: second.input,
      apply: (grid) => {
        const moved = first.apply(grid)
        return moved === undefined ? undefined : second.apply(moved)
      }
    }
  }
}

/**
 * Rules over cells: the 15 families the bundled stage-2 model saw (models/recipes/arc-synthetic.json),
 * and the default of `training.syntheticFamilies`, so that recipe draws the same tasks.
 */
export const gridFamilies: ReadonlyArray<RuleFamily> = [
  geometry,
  recolour,
  enlarge,
  shrink,
  crop,
  gravity,
  lines,
  fillEnclosed,
  frame,
  logic,
  majority,
  count,
  translate,
  half,
  compose
]

/**
 * Every family, by name: cell rules, rules over objects and patterns (ObjectFamilies.ts), then
 * rules over whole scenes (SceneFamilies.ts). A recipe names the families it draws from, so
 * adding one here changes no recipe's tasks.
 */
export const syntheticFamilies: ReadonlyArray<RuleFamily> = [...gridFamilies, ...objectFamilies, ...sceneFamilies]

export const syntheticFamilyNames: ReadonlyArray<string> = syntheticFamilies.map((family) => family.name)

const fits = (grid: Grid): boolean =>
  height(grid) >= 1 && height(grid) <= maxGridSide && width(grid) >= 1 && width(grid) <= maxGridSide &&
  grid.every((row) => row.length === width(grid))

/** Draws `count` pairs of `rule` whose outputs differ from their inputs, or undefined if it keeps failing. */
const drawPairs = (rule: Rule, rng: Rng, count: number): Array<ArcExample> | undefined => {
  const pairs: Array<ArcExample> = []
  for (let tries = 0; pairs.length < count && tries < 20 * count; tries++) {
    const input = rule.input(rng)
    const output = fits(input) ? rule.apply(input) : undefined
    if (output === undefined || !fits(output) || gridsEqual(input, output)) continue
    if (pairs.some((pair) => gridsEqual(pair.input, input))) continue
    pairs.push({ input, output })
  }
  return pairs.length === count ? pairs : undefined
}

/**
 * The generated task of `seed`: a family (of `families`, uniformly) and a rule drawn from it,
 * 3-5 demonstrations and one test pair whose outputs all differ from their inputs. The same seed
 * and families give the same task.
 */
export const syntheticTask = (seed: number, families: ReadonlyArray<RuleFamily> = gridFamilies): ArcTask => {
  const rng = makeRng(seed)
  for (;;) {
    const family = pick(rng, families)
    const rule = family.draw(rng)
    const pairs = drawPairs(rule, rng, between(rng, 3, 5) + 1)
    // A rule whose inputs rarely change (a colour map of colours the inputs lack) is redrawn.
    if (pairs !== undefined) {
      return { id: `synthetic-${family.name}-${seed >>> 0}`, train: pairs.slice(1), test: pairs.slice(0, 1) }
    }
  }
}
