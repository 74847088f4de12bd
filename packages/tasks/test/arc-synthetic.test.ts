import { describe, expect, it } from "@effect/vitest"
import { invertibleViews } from "../src/arc/Augmenters.js"
import { type ArcExample, colourCount, type Grid, gridsEqual, height, maxGridSide, width } from "../src/arc/Grid.js"
import { syntheticFamilies, syntheticTask } from "../src/arc/SyntheticTasks.js"

const seeds = Array.from({ length: 600 }, (_, i) => i * 7919 + 3)
const tasks = seeds.map(syntheticTask)
const familyOf = (id: string) => id.replace(/^synthetic-/, "").replace(/-\d+$/, "")
const pairsOf = (name: string): Array<ReadonlyArray<ArcExample>> =>
  tasks.filter((t) => familyOf(t.id) === name).map((t) => [...t.train, ...t.test])

const isValidGrid = (grid: Grid): boolean =>
  height(grid) >= 1 && height(grid) <= maxGridSide && width(grid) >= 1 && width(grid) <= maxGridSide &&
  grid.every((row) =>
    row.length === width(grid) && row.every((cell) => Number.isInteger(cell) && cell >= 0 && cell < colourCount)
  )

describe("syntheticTask", () => {
  it("gives valid tasks of every family: 3-5 demonstrations, one test pair, every output differs from its input", () => {
    expect(new Set(tasks.map((t) => familyOf(t.id)))).toEqual(new Set(syntheticFamilies.map((f) => f.name)))
    for (const task of tasks) {
      expect(task.train.length).toBeGreaterThanOrEqual(3)
      expect(task.train.length).toBeLessThanOrEqual(5)
      expect(task.test.length).toBe(1)
      const pairs = [...task.train, ...task.test]
      for (const pair of pairs) {
        expect(isValidGrid(pair.input), task.id).toBe(true)
        expect(isValidGrid(pair.output), task.id).toBe(true)
        expect(gridsEqual(pair.input, pair.output), task.id).toBe(false)
      }
      // No input twice: a repeated demonstration teaches nothing.
      expect(new Set(pairs.map((p) => JSON.stringify(p.input))).size).toBe(pairs.length)
    }
  })

  it("is deterministic for a seed and varies with it", () => {
    expect(syntheticTask(seeds[5]!)).toEqual(tasks[5])
    expect(new Set(tasks.map((t) => JSON.stringify(t.train))).size).toBe(tasks.length)
  })

  // One rule per task: the pairs of a task agree on it (checked for the families where the rule
  // can be recovered from the pairs alone).
  it("geometry: one symmetry of the square maps every input of a task to its output", () => {
    const all = pairsOf("geometry")
    expect(all.length).toBeGreaterThan(10)
    for (const pairs of all) {
      expect(invertibleViews.slice(1).some((view) => pairs.every((p) => gridsEqual(view.apply(p.input), p.output))))
        .toBe(true)
    }
  })

  it("recolour: one colour map, the same for every pair and every cell", () => {
    for (const pairs of pairsOf("recolour")) {
      const map = new Map<number, number>()
      for (const { input, output } of pairs) {
        expect([height(output), width(output)]).toEqual([height(input), width(input)])
        input.forEach((row, r) =>
          row.forEach((cell, c) => {
            const image = output[r]![c]!
            expect(map.get(cell) ?? image).toBe(image)
            map.set(cell, image)
          })
        )
      }
      expect(map.get(0)).toBe(0)
    }
  })

  it("crop: the output is the bounding box of the input's coloured cells", () => {
    for (const pairs of pairsOf("crop")) {
      for (const { input, output } of pairs) {
        const coloured = input.flatMap((row, r) => row.flatMap((cell, c) => (cell !== 0 ? [[r, c] as const] : [])))
        const rows = coloured.map(([r]) => r)
        const columns = coloured.map(([, c]) => c)
        const top = Math.min(...rows)
        const left = Math.min(...columns)
        expect(height(output)).toBe(Math.max(...rows) - top + 1)
        expect(width(output)).toBe(Math.max(...columns) - left + 1)
        output.forEach((row, r) => row.forEach((cell, c) => expect(cell).toBe(input[top + r]![left + c])))
      }
    }
  })

  it("gravity: the same cells per line, all against one edge", () => {
    for (const pairs of pairsOf("gravity")) {
      const sorted = (cells: ReadonlyArray<number>) => [...cells].sort()
      const flat = (g: Grid) => sorted(g.flat())
      for (const { input, output } of pairs) expect(flat(output)).toEqual(flat(input))
      // Some edge holds every pair's coloured cells packed against it.
      const packed = invertibleViews.slice(0, 4).some((turn) =>
        pairs.every(({ output }) => {
          const g = turn.apply(output)
          return Array.from({ length: width(g) }, (_, c) => g.map((row) => row[c]!)).every((column) => {
            const first = column.findIndex((cell) => cell !== 0)
            return first === -1 || column.slice(first).every((cell) => cell !== 0)
          })
        })
      )
      expect(packed).toBe(true)
    }
  })

  it("fill-enclosed: the output adds one colour per task, only on 0s", () => {
    for (const pairs of pairsOf("fill-enclosed")) {
      const added = new Set<number>()
      for (const { input, output } of pairs) {
        input.forEach((row, r) =>
          row.forEach((cell, c) => {
            if (cell !== output[r]![c]) {
              expect(cell).toBe(0)
              added.add(output[r]![c]!)
            }
          })
        )
      }
      expect(added.size).toBe(1)
    }
  })
})
