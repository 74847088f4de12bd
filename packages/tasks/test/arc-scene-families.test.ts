import { describe, expect, it } from "@effect/vitest"
import type { ArcExample, Grid } from "../src/arc/Grid.js"
import { gridKey, height, width } from "../src/arc/Grid.js"
import { blocksOf, emptyWindow, sceneFamilies } from "../src/arc/SceneFamilies.js"
import { syntheticTask } from "../src/arc/SyntheticTasks.js"

const tasks = Array.from({ length: 400 }, (_, i) => syntheticTask(i * 104729 + 11, sceneFamilies))
const familyOf = (id: string) => id.replace(/^synthetic-/, "").replace(/-\d+$/, "")
const pairsOf = (name: string): Array<ReadonlyArray<ArcExample>> =>
  tasks.filter((t) => familyOf(t.id) === name).map((t) => [...t.train, ...t.test])

const sameShape = ({ input, output }: ArcExample) => height(input) === height(output) && width(input) === width(output)
const changes = (a: Grid, b: Grid) =>
  a.flatMap((row, r) => row.flatMap((cell, c) => (cell !== b[r]![c] ? [[r, c, cell, b[r]![c]!] as const] : [])))
const cellsOf = (grid: Grid, colour: number) =>
  grid.flatMap((row, r) => row.flatMap((cell, c) => (cell === colour ? [`${r},${c}`] : [])))

describe("syntheticTask: scene families", () => {
  it("draws every scene family", () => {
    for (const family of sceneFamilies) expect(pairsOf(family.name).length, family.name).toBeGreaterThan(40)
  })

  it("move-to-contact: one colour moves as a body along one axis, and is stopped by the edge or another colour", () => {
    for (const pairs of pairsOf("move-to-contact")) {
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        const moved = new Set(changes(pair.input, pair.output).flatMap(([, , a, b]) => [a, b]).filter((c) => c !== 0))
        expect(moved.size).toBe(1)
        const [colour] = [...moved] as [number]
        const before = cellsOf(pair.input, colour).map((key) => key.split(",").map(Number) as [number, number])
        const after = new Set(cellsOf(pair.output, colour))
        // The offset that maps the body onto its new place is a multiple of one side step.
        const offsets = [[1, 0], [-1, 0], [0, 1], [0, -1]].flatMap(([dr, dc]) =>
          Array.from({ length: 30 }, (_, k) => [dr! * (k + 1), dc! * (k + 1), dr!, dc!] as const)
        )
        const offset = offsets.find(([dr, dc]) =>
          before.length === after.size && before.every(([r, c]) => after.has(`${r + dr},${c + dc}`))
        )
        expect(offset).toBeDefined()
        // One more step is blocked.
        const [dr, dc, sr, sc] = offset!
        const blocked = before.some(([r, c]) => {
          const next = pair.output[r + dr + sr]?.[c + dc + sc]
          return next === undefined || (next !== 0 && next !== colour)
        })
        expect(blocked).toBe(true)
      }
    }
  })

  it("grid-cells: the output is one of the input's blocks, or their overlay", () => {
    for (const pairs of pairsOf("grid-cells")) {
      for (const { input, output } of pairs) {
        // The separator fills whole rows or whole columns.
        const lines = [...input, ...Array.from({ length: width(input) }, (_, c) => input.map((row) => row[c]!))]
        const separators = new Set(
          lines.filter((line) => line.every((cell) => cell === line[0])).map((line) => line[0]!)
        )
        const blocks = [...separators].flatMap((separator) => blocksOf(input, separator) ?? [])
        const isBlock = blocks.some((block) => gridKey(block) === gridKey(output))
        const sized = blocks.filter((block) => height(block) === height(output) && width(block) === width(output))
        const isOverlay = sized.length > 1 &&
          output.every((row, r) => row.every((cell, c) => cell === (sized.find((b) => b[r]![c] !== 0)?.[r]![c] ?? 0)))
        expect(isBlock || isOverlay).toBe(true)
      }
    }
  })

  it("diagonals: only 0s change, each on a diagonal of an input pixel of its colour", () => {
    for (const pairs of pairsOf("diagonals")) {
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        for (const [r, c, before, after] of changes(pair.input, pair.output)) {
          expect(before).toBe(0)
          const source = pair.input.some((row, r0) =>
            row.some((cell, c0) => cell === after && r0 !== r && Math.abs(r0 - r) === Math.abs(c0 - c))
          )
          expect(source).toBe(true)
        }
      }
    }
  })

  it("sort-bars: the same bars, ordered by length one way for the whole task", () => {
    for (const pairs of pairsOf("sort-bars")) {
      const directions = new Set<number>()
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        const columnsOf = (grid: Grid) =>
          Array.from({ length: width(grid) }, (_, c) => grid.map((row) => row[c]).join(""))
        const bars = (grid: Grid) => columnsOf(grid).filter((column) => /[1-9]/.test(column))
        expect([...bars(pair.output)].sort()).toEqual([...bars(pair.input)].sort())
        const lengths = bars(pair.output).map((column) => column.replace(/0/g, "").length)
        const steps = lengths.slice(1).map((n, i) => Math.sign(n - lengths[i]!)).filter((s) => s !== 0)
        expect(new Set(steps).size).toBe(1)
        directions.add(steps[0]!)
      }
      expect(directions.size).toBe(1)
    }
  })

  it("empty-squares: only 0s change, to one colour a task, and no 3x3 square of 0s is left", () => {
    for (const pairs of pairsOf("empty-squares")) {
      const fills = new Set<number>()
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        for (const [r, c, before, after] of changes(pair.input, pair.output)) {
          expect(before).toBe(0)
          fills.add(after)
          // Inside some 2x2 square of 0s of the input.
          const inSquare = [[0, 0], [0, -1], [-1, 0], [-1, -1]].some(([dr, dc]) =>
            emptyWindow(pair.input, r + dr!, c + dc!, 2)
          )
          expect(inSquare).toBe(true)
        }
        const left = pair.output.some((row, r) => row.some((_, c) => emptyWindow(pair.output, r, c, 3)))
        expect(left).toBe(false)
      }
      expect(fills.size).toBe(1)
    }
  })
})
