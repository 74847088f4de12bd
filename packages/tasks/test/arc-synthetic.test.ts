import { describe, expect, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import { invertibleViews } from "../src/arc/Augmenters.js"
import { type ArcExample, colourCount, type Grid, gridsEqual, height, maxGridSide, width } from "../src/arc/Grid.js"
import { objectFamilies, objectsOf } from "../src/arc/ObjectFamilies.js"
import { gridFamilies, syntheticFamilies, syntheticTask } from "../src/arc/SyntheticTasks.js"

const seeds = Array.from({ length: 1200 }, (_, i) => i * 7919 + 3)
const tasks = seeds.map((seed) => syntheticTask(seed, syntheticFamilies))
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
    expect(syntheticTask(seeds[5]!, syntheticFamilies)).toEqual(tasks[5])
    expect(new Set(tasks.map((t) => JSON.stringify(t.train))).size).toBe(tasks.length)
  })

  it("keeps to the families it is given; by default the cell rules, drawing what the bundled model's recipe drew", () => {
    const names = ["hollow", "connect"]
    const some = seeds.slice(0, 60).map((seed) =>
      syntheticTask(seed, syntheticFamilies.filter((f) => names.includes(f.name)))
    )
    expect(new Set(some.map((t) => familyOf(t.id)))).toEqual(new Set(names))
    const defaults = seeds.slice(0, 300).map((seed) => syntheticTask(seed))
    expect(defaults.every((t) => gridFamilies.some((f) => f.name === familyOf(t.id)))).toBe(true)
    // Fingerprint of the default draws when models/recipes/arc-synthetic.json trained the
    // bundled model (commit fcf288b): a change here changes what that recipe reproduces.
    expect(createHash("sha256").update(JSON.stringify(defaults)).digest("hex")).toBe(
      "5f1f98e4253b74e44205f35e11309a9b3f3eea43104f772f6fbe4c87ee35eda1"
    )
    // And of every family's, as models/recipes/arc-objects.json (stage 3 of the bundled model) drew them.
    const stage3 = seeds.slice(0, 600).map((seed) => syntheticTask(seed, [...gridFamilies, ...objectFamilies]))
    expect(createHash("sha256").update(JSON.stringify(stage3)).digest("hex")).toBe(
      "c1f60d793654ea86722454fbcfa7c30770de9ddd37b6e3851bf0ff1514735c46"
    )
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

/** The cells where two same-shaped grids differ, as [row, column, before, after]. */
const changes = (input: Grid, output: Grid) =>
  input.flatMap((row, r) =>
    row.flatMap((cell, c) => (cell !== output[r]![c] ? [[r, c, cell, output[r]![c]!] as const] : []))
  )
const sameShape = ({ input, output }: ArcExample) => height(input) === height(output) && width(input) === width(output)

describe("syntheticTask: object and pattern families", () => {
  it("every new family is drawn", () => {
    for (
      const name of [
        "object-size",
        "extract-object",
        "box-objects",
        "count-objects",
        "denoise",
        "hollow",
        "connect",
        "symmetry-complete",
        "pattern-fill"
      ]
    ) {
      expect(pairsOf(name).length, name).toBeGreaterThan(10)
    }
  })

  it("object-size: only colours change, and whole objects at a time", () => {
    for (const pairs of pairsOf("object-size")) {
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        const changed = new Set(
          changes(pair.input, pair.output).map(([r, c, before, after]) => {
            expect(before).not.toBe(0)
            expect(after).not.toBe(0)
            return `${r},${c}`
          })
        )
        for (const object of objectsOf(pair.input)) {
          const hit = object.cells.filter(([r, c]) => changed.has(`${r},${c}`)).length
          expect([0, object.cells.length]).toContain(hit)
        }
      }
    }
  })

  it("extract-object: the output is one of the input's objects, cut out at its bounding box", () => {
    for (const pairs of pairsOf("extract-object")) {
      for (const { input, output } of pairs) {
        const found = objectsOf(input, { sameColour: true }).some((object) => {
          const top = Math.min(...object.cells.map(([r]) => r))
          const left = Math.min(...object.cells.map(([, c]) => c))
          const cells = new Set(object.cells.map(([r, c]) => `${r - top},${c - left}`))
          return Math.max(...object.cells.map(([r]) => r)) - top + 1 === height(output) &&
            Math.max(...object.cells.map(([, c]) => c)) - left + 1 === width(output) &&
            output.every((row, r) =>
              row.every((cell, c) => cell === (cells.has(`${r},${c}`) ? input[top + r]![left + c] : 0))
            )
        })
        expect(found).toBe(true)
      }
    }
  })

  it("box-objects, connect: only 0s change, to one colour a task for frames", () => {
    for (const name of ["box-objects", "connect"]) {
      for (const pairs of pairsOf(name)) {
        const added = new Set<number>()
        for (const pair of pairs) {
          expect(sameShape(pair)).toBe(true)
          for (const [, , before, after] of changes(pair.input, pair.output)) {
            expect(before).toBe(0)
            added.add(after)
          }
        }
        if (name === "box-objects") expect(added.size).toBe(1)
      }
    }
  })

  it("count-objects: a line as long as the input has objects", () => {
    for (const pairs of pairsOf("count-objects")) {
      for (const { input, output } of pairs) {
        expect(Math.min(height(output), width(output))).toBe(1)
        expect(height(output) * width(output)).toBe(objectsOf(input).length)
      }
    }
  })

  it("denoise: cells only go, and what stays has a neighbour of its colour", () => {
    for (const pairs of pairsOf("denoise")) {
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        for (const [, , , after] of changes(pair.input, pair.output)) expect(after).toBe(0)
        pair.output.forEach((row, r) =>
          row.forEach((cell, c) => {
            if (cell === 0) return
            const near = [[r + 1, c], [r - 1, c], [r, c + 1], [r, c - 1]].some(([a, b]) =>
              pair.output[a!]?.[b!] === cell
            )
            expect(near).toBe(true)
          })
        )
      }
    }
  })

  it("hollow: only cells inside a block of their colour change", () => {
    for (const pairs of pairsOf("hollow")) {
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        for (const [r, c, before] of changes(pair.input, pair.output)) {
          for (let dr = -1; dr <= 1; dr++) {
            for (let dc = -1; dc <= 1; dc++) expect(pair.input[r + dr]![c + dc]).toBe(before)
          }
        }
      }
    }
  })

  it("symmetry-complete: the masked colour is gone, and a full output is mirror-symmetric", () => {
    let full = 0
    for (const pairs of pairsOf("symmetry-complete")) {
      const maskColours = pairs.filter(sameShape).map(({ input, output }) => {
        const outputColours = new Set(output.flat())
        return [...new Set(input.flat())].filter((colour) => !outputColours.has(colour))
      })
      // One colour, the same in every pair restored whole, is painted over.
      expect(maskColours.every((m) => m.length === 1 && m[0] === maskColours[0]![0])).toBe(true)
      for (const pair of pairs.filter(sameShape)) {
        full++
        const mirrored = [invertibleViews[4]!, invertibleViews[5]!].some((flip) =>
          gridsEqual(flip.apply(pair.output), pair.output)
        )
        expect(mirrored).toBe(true)
        for (const [, , before] of changes(pair.input, pair.output)) expect(before).toBe(maskColours[0]![0])
      }
    }
    expect(full).toBeGreaterThan(10)
  })

  it("pattern-fill: the output is periodic and keeps every unmasked cell", () => {
    for (const pairs of pairsOf("pattern-fill")) {
      for (const pair of pairs) {
        expect(sameShape(pair)).toBe(true)
        const { output } = pair
        // A period of at most 9 cells (the tiles are 3x3 at most) repeats across the whole output.
        const sides = Array.from({ length: 9 }, (_, i) => i + 1)
        const periodic = sides.some((p) =>
          sides.some((q) =>
            p * q <= 9 && output.every((row, r) => row.every((cell, c) => cell === output[r % p]?.[c % q]))
          )
        )
        expect(periodic).toBe(true)
        const masks = new Set(changes(pair.input, output).map(([, , before]) => before))
        expect(masks.size).toBe(1)
      }
    }
  })
})
