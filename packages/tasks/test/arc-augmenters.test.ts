import { describe, expect, it } from "@effect/vitest"
import { makeRng } from "@seal/gpu/model/Sampling"
import { readdirSync, readFileSync } from "node:fs"
import {
  antiTranspose,
  applyToExample,
  applyToTask,
  type Augmenter,
  augmenterFamilies,
  augmentersFor,
  augmentExample,
  augmentTask,
  chain,
  colourPermutation,
  colourViews,
  families,
  fitsMaxSize,
  flipColumns,
  flipRows,
  identity,
  increaseHeight,
  increaseResolution,
  increaseWidth,
  invertibleViews,
  invertPermutation,
  permuteColours,
  randomTranslation,
  reflect,
  repeat,
  roll,
  rotate180,
  rotate270,
  rotate90,
  shift,
  shuffleExamples,
  transpose
} from "../src/arc/Augmenters.js"
import { type ArcTask, cellCount, type Grid, gridKey, gridsEqual } from "../src/arc/Grid.js"

// Every distinct grid of the real ARC data: demonstration inputs and outputs, test inputs, and
// the solution grids, from all training and evaluation files.
const dataDir = new URL("../../../data/arc/", import.meta.url)

interface RawExample {
  readonly input: Grid
  readonly output?: Grid
}
type Challenges = Record<
  string,
  { readonly train: ReadonlyArray<RawExample>; readonly test: ReadonlyArray<RawExample> }
>
type Solutions = Record<string, ReadonlyArray<Grid>>

const loadGrids = (): ReadonlyArray<Grid> => {
  const files = readdirSync(dataDir).filter((name) => /^arc-agi_(training|evaluation)_.*\.json$/.test(name)).sort()
  const byKey = new Map<string, Grid>()
  const add = (grid: Grid) => byKey.set(gridKey(grid), grid)
  for (const file of files) {
    const data: unknown = JSON.parse(readFileSync(new URL(file, dataDir), "utf8"))
    if (file.includes("_solutions")) {
      for (const grids of Object.values(data as Solutions)) grids.forEach(add)
    } else {
      for (const task of Object.values(data as Challenges)) {
        for (const example of [...task.train, ...task.test]) {
          add(example.input)
          if (example.output !== undefined) add(example.output)
        }
      }
    }
  }
  return [...byKey.values()]
}

const grids = loadGrids()

/** A few grids of each failing kind, so a failure names its counterexamples. */
const failures = (check: (grid: Grid) => boolean): Array<string> =>
  grids.filter((grid) => !check(grid)).slice(0, 3).map(gridKey)

/** Every augmenter this module builds, by name (families, views, and the extras). */
const allAugmenters: ReadonlyArray<Augmenter> = (() => {
  const byName = new Map<string, Augmenter>()
  const extras = [
    antiTranspose,
    identity,
    roll(-2, 5),
    roll(0, 3),
    increaseResolution(3),
    increaseHeight(3),
    increaseWidth(3),
    repeat(0, 3),
    repeat(1, 3),
    repeat(2, 3),
    reflect(0, false, "repeat"),
    chain([transpose, repeat(2, 2), flipColumns]),
    chain([increaseHeight(2), reflect(1, true), rotate90]),
    chain([])
  ]
  const views = [...invertibleViews, ...colourViews(10)]
  for (const aug of [...families.flatMap((family) => augmenterFamilies[family]), ...views, ...extras]) {
    byName.set(aug.name, aug)
  }
  return [...byName.values()]
})()

const invertible = allAugmenters.filter((aug) => aug.invert !== undefined)

/**
 * Grids whose image under `aug` may fit 30x30 (at most 900 cells; the cell count scales by the
 * count of a 1x1 grid's image): the only ones augmentation keeps, and this skips building the
 * huge images of chained enlargements.
 */
const mayFit = (aug: Augmenter) => {
  const growth = cellCount(aug.apply([[1]]))
  return (grid: Grid): boolean => cellCount(grid) * growth <= 900
}

/** invert(apply(g)) = g for every grid whose image fits 30x30. */
const roundTripFailures = (aug: Augmenter): Array<string> => {
  const relevant = mayFit(aug)
  return failures((grid) => {
    if (!relevant(grid)) return true
    const image = aug.apply(grid)
    return !fitsMaxSize(image) || gridsEqual(aug.invert!(image) ?? [], grid)
  })
}

/** Grows the grid: every cell of an image has a partner cell it must equal. */
const enlarges = (aug: Augmenter): boolean => cellCount(aug.apply([[1, 2], [3, 4]])) > 4

describe("the ARC data", () => {
  it("loads every grid, all within 30x30", () => {
    expect(grids.length).toBeGreaterThan(6000)
    expect(grids.every(fitsMaxSize)).toBe(true)
  })
})

describe("transforms match the reference's numpy semantics", () => {
  const g: Grid = [[1, 2, 3], [4, 5, 6]]
  const cases: ReadonlyArray<readonly [Augmenter, Grid]> = [
    [identity, g],
    [rotate90, [[3, 6], [2, 5], [1, 4]]], // np.rot90(g, 1): counter-clockwise
    [rotate180, [[6, 5, 4], [3, 2, 1]]],
    [rotate270, [[4, 1], [5, 2], [6, 3]]],
    [flipRows, [[4, 5, 6], [1, 2, 3]]], // np.flipud
    [flipColumns, [[3, 2, 1], [6, 5, 4]]], // np.fliplr
    [transpose, [[1, 4], [2, 5], [3, 6]]],
    [antiTranspose, [[6, 3], [5, 2], [4, 1]]],
    [reflect(0, false), [[1, 2, 3], [4, 5, 6], [4, 5, 6], [1, 2, 3]]],
    [reflect(0, true), [[4, 5, 6], [1, 2, 3], [1, 2, 3], [4, 5, 6]]],
    [reflect(1, false), [[1, 2, 3, 3, 2, 1], [4, 5, 6, 6, 5, 4]]],
    [reflect(1, true), [[3, 2, 1, 1, 2, 3], [6, 5, 4, 4, 5, 6]]],
    [roll(1, 1), [[6, 4, 5], [3, 1, 2]]], // np.roll(g, (1, 1), axis=(0, 1))
    [roll(-1, 4), [[6, 4, 5], [3, 1, 2]]],
    [shift(1, -1, 7), [[7, 7, 7], [2, 3, 7]]],
    [increaseResolution(2), [[1, 1, 2, 2, 3, 3], [1, 1, 2, 2, 3, 3], [4, 4, 5, 5, 6, 6], [4, 4, 5, 5, 6, 6]]],
    [increaseHeight(2), [[1, 2, 3], [1, 2, 3], [4, 5, 6], [4, 5, 6]]],
    [increaseWidth(2), [[1, 1, 2, 2, 3, 3], [4, 4, 5, 5, 6, 6]]],
    [repeat(0, 2), [[1, 2, 3], [4, 5, 6], [1, 2, 3], [4, 5, 6]]],
    [repeat(1, 2), [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]]],
    [repeat(2, 2), [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6], [1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]]],
    [chain([rotate90, increaseWidth(2)]), [[3, 3, 6, 6], [2, 2, 5, 5], [1, 1, 4, 4]]]
  ]
  it.each(cases.map(([aug, expected]) => [aug.name, aug, expected] as const))("%s", (_, aug, expected) => {
    expect(aug.apply(g)).toEqual(expected)
    expect(g).toEqual([[1, 2, 3], [4, 5, 6]])
  })
})

describe("inverses over every ARC grid", () => {
  it("there are many invertible augmenters", () => {
    expect(invertible.length).toBeGreaterThan(30)
  })

  it.each(invertible.map((aug) => [aug.name, aug] as const))("%s: invert(apply(g)) = g", (_, aug) => {
    expect(roundTripFailures(aug)).toEqual([])
  })

  it("rotating by 90 four times is the identity; the symmetries compose as they should", () => {
    const times = (aug: Augmenter, n: number) => (grid: Grid) =>
      Array.from({ length: n }).reduce<Grid>((g) => aug.apply(g), grid)
    expect(failures((grid) => gridsEqual(times(rotate90, 4)(grid), grid))).toEqual([])
    expect(failures((grid) => gridsEqual(times(rotate90, 2)(grid), rotate180.apply(grid)))).toEqual([])
    expect(failures((grid) => gridsEqual(times(rotate90, 3)(grid), rotate270.apply(grid)))).toEqual([])
    expect(failures((grid) => gridsEqual(rotate90.apply(flipColumns.apply(grid)), transpose.apply(grid)))).toEqual([])
    expect(failures((grid) => gridsEqual(rotate90.apply(flipRows.apply(grid)), antiTranspose.apply(grid)))).toEqual([])
  })

  it("every family's chain inverts through its parts in reverse order", () => {
    const rng = makeRng(7)
    const parts = invertible.filter((aug) => !aug.name.startsWith("Chain("))
    const pick = () => parts[Math.floor(rng() * parts.length)]!
    const chains = [
      ...augmenterFamilies.chain,
      ...Array.from({ length: 12 }, () => chain([pick(), pick(), pick()]))
    ]
    for (const aug of chains) {
      expect(aug.invert, aug.name).toBeDefined()
      expect(roundTripFailures(aug), aug.name).toEqual([])
    }
  })

  it("a chain with a non-invertible part has no inverse", () => {
    expect(chain([rotate90, shift(1, 0)]).invert).toBeUndefined()
    expect(shift(1, 1, 3).invert).toBeUndefined()
  })

  it("invert of a non-image is undefined, never a throw", () => {
    const enlarging = invertible.filter(enlarges)
    expect(enlarging.length).toBeGreaterThan(15)
    for (const aug of enlarging) {
      // Changing one cell of an image breaks the redundancy the transform put in.
      const relevant = mayFit(aug)
      const broken = failures((grid) => {
        if (!relevant(grid)) return true
        const image = aug.apply(grid)
        const mutated = image.map((row, r) => row.map((cell, c) => (r === 0 && c === 0 ? (cell + 1) % 10 : cell)))
        return aug.invert!(mutated) === undefined
      })
      expect(broken, aug.name).toEqual([])
      // A 1x1 or 3x5 grid is too small or odd for any doubling, reflecting or tiling.
      expect(aug.invert!([[1]]), aug.name).toBeUndefined()
      expect(aug.invert!([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]), aug.name).toBeUndefined()
    }
    for (const aug of invertible) {
      expect(aug.invert!([]), aug.name).toBeUndefined()
      expect(aug.invert!([[1, 2], [3]]), aug.name).toBeUndefined()
      expect(aug.invert!([[]]), aug.name).toBeUndefined()
    }
  })

  it("the bijections invert every grid, image or not", () => {
    for (const aug of invertible.filter((aug) => !enlarges(aug))) {
      expect(failures((grid) => gridsEqual(aug.apply(aug.invert!(grid)!), grid)), aug.name).toEqual([])
    }
  })
})

describe("colour permutations", () => {
  const perms = Array.from({ length: 50 }, (_, seed) => colourPermutation(makeRng(seed)))

  it("permute 0-9 with 0 fixed, and vary with the seed", () => {
    for (const p of perms) {
      expect(p[0]).toBe(0)
      expect([...p].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      expect(invertPermutation(invertPermutation(p))).toEqual(p)
      expect(p.map((_, c) => invertPermutation(p)[p[c]!])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    }
    expect(new Set(perms.map((p) => p.join(""))).size).toBeGreaterThan(45)
    expect(colourPermutation(makeRng(3))).toEqual(colourPermutation(makeRng(3)))
  })

  it("round-trip every ARC grid and keep its black cells", () => {
    for (const p of perms.slice(0, 5)) {
      const q = invertPermutation(p)
      expect(failures((grid) => gridsEqual(permuteColours(permuteColours(grid, p), q), grid))).toEqual([])
      expect(failures((grid) => {
        const permuted = permuteColours(grid, p)
        return grid.every((row, r) => row.every((cell, c) => (cell === 0) === (permuted[r]![c] === 0)))
      })).toEqual([])
    }
  })
})

describe("examples and tasks", () => {
  const task: ArcTask = {
    id: "t",
    train: [{ input: [[1, 2]], output: [[3], [4]] }, { input: [[5]], output: [[6, 7, 8]] }],
    test: [{ input: [[9, 0]], output: [[1]] }]
  }

  it("apply the augmenter to both grids of every example", () => {
    expect(applyToExample(rotate90, task.train[0]!)).toEqual({ input: [[2], [1]], output: [[3, 4]] })
    expect(applyToTask(flipColumns, task)).toEqual({
      id: "t",
      train: [{ input: [[2, 1]], output: [[3], [4]] }, { input: [[5]], output: [[8, 7, 6]] }],
      test: [{ input: [[0, 9]], output: [[1]] }]
    })
  })

  it("are dropped when a grid outgrows 30x30", () => {
    const tall: Grid = Array.from({ length: 16 }, () => [1, 2])
    expect(augmentExample(repeat(0, 2), { input: [[1]], output: tall })).toBeUndefined()
    expect(augmentExample(repeat(1, 2), { input: [[1]], output: tall })).toEqual({
      input: [[1, 1]],
      output: Array.from({ length: 16 }, () => [1, 2, 1, 2])
    })
    const bigTask: ArcTask = { ...task, test: [{ input: tall, output: [[1]] }] }
    expect(augmentTask(increaseHeight(2), bigTask)).toBeUndefined()
    expect(augmentTask(increaseWidth(2), bigTask)).toEqual(applyToTask(increaseWidth(2), bigTask))
  })

  it("shuffle examples into a permutation, without touching the input", () => {
    const examples = Array.from({ length: 8 }, (_, i) => i)
    const shuffled = shuffleExamples(examples, makeRng(1))
    expect([...shuffled].sort()).toEqual(examples)
    expect(examples).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(shuffleExamples(examples, makeRng(1))).toEqual(shuffled)
    const orders = new Set(Array.from({ length: 20 }, (_, seed) => shuffleExamples(examples, makeRng(seed)).join()))
    expect(orders.size).toBeGreaterThan(15)
  })
})

describe("families", () => {
  const names = (augs: ReadonlyArray<Augmenter>) => augs.map((aug) => aug.name)

  it("follow the reference's get_augmenters", () => {
    expect(names(augmenterFamilies.basic)).toEqual([
      "Rotate(90)",
      "Rotate(270)",
      "Rotate(180)",
      "Flip(0)",
      "Flip(1)",
      "Reflect(0,reverse)",
      "Reflect(1,reverse)",
      "Reflect(0)",
      "Reflect(1)",
      "Translate(1,1)",
      "Transpose()"
    ])
    expect(names(augmenterFamilies.size)).toEqual(["IncreaseResolution(2)", "IncreaseHeight(2)", "IncreaseWidth(2)"])
    expect(names(augmenterFamilies.chain)).toEqual(
      ["Rotate(90)", "Rotate(270)", "Rotate(180)", "Flip(0)", "Flip(1)", "Transpose()"].map((first) =>
        `Chain(${first},IncreaseResolution(2))`
      )
    )
    expect(names(augmenterFamilies.repeat)).toEqual(["Repeat(0,2)", "Repeat(1,2)", "Repeat(2,2)"])
  })

  it("are non-empty, distinct, labelled with their family, and all invertible", () => {
    const all = families.flatMap((family) => augmenterFamilies[family])
    expect(new Set(names(all)).size).toBe(all.length)
    for (const family of families) {
      expect(augmenterFamilies[family].length).toBeGreaterThan(0)
      expect(augmenterFamilies[family].every((aug) => aug.family === family && aug.invert !== undefined)).toBe(true)
    }
    // Distinct as transforms too: no two give the same image of an asymmetric grid.
    const probe: Grid = [[1, 2, 3], [4, 5, 6]]
    expect(new Set(all.map((aug) => gridKey(aug.apply(probe)))).size).toBe(all.length)
  })

  it("augmentersFor switches families on and off", () => {
    const off = { basic: false, size: false, chain: false, repeat: false }
    expect(augmentersFor(off)).toEqual([])
    expect(augmentersFor(off, makeRng(0))).toEqual([])
    for (const family of families) {
      expect(names(augmentersFor({ ...off, [family]: true }))).toEqual(names(augmenterFamilies[family]))
    }
    const all = augmentersFor({ basic: true, size: true, chain: true, repeat: true })
    expect(names(all)).toEqual(names(families.flatMap((family) => augmenterFamilies[family])))
    expect(names(augmentersFor({ ...off, size: true, repeat: true }))).toEqual(
      names([...augmenterFamilies.size, ...augmenterFamilies.repeat])
    )
  })

  it("with an rng, draws the basic family's translation like RandomTranslateXY", () => {
    const drawn = augmentersFor({ basic: true, size: false, chain: false, repeat: false }, makeRng(5))
    expect(drawn.length).toBe(augmenterFamilies.basic.length)
    const translation = drawn.find((aug) => aug.name.startsWith("Translate("))!
    expect(translation.name).toBe(randomTranslation(makeRng(5)).name)
    const shifts = new Set(Array.from({ length: 200 }, (_, seed) => randomTranslation(makeRng(seed)).name))
    expect(shifts.size).toBe(16) // 0..3 on each axis
  })
})

describe("invertibleViews", () => {
  it("are identity and the seven other symmetries of the square, each with an exact inverse", () => {
    expect(invertibleViews[0]!.name).toBe("Identity()")
    expect(invertibleViews.map((view) => view.name).sort()).toEqual([
      "AntiTranspose()",
      "Flip(0)",
      "Flip(1)",
      "Identity()",
      "Rotate(180)",
      "Rotate(270)",
      "Rotate(90)",
      "Transpose()"
    ])
    const probe: Grid = [[1, 2], [3, 4]]
    expect(new Set(invertibleViews.map((view) => gridKey(view.apply(probe)))).size).toBe(8)
    for (const view of invertibleViews) {
      expect(failures((grid) => gridsEqual(view.invert(view.apply(grid)) ?? [], grid)), view.name).toEqual([])
    }
  })

  it("colourViews: symmetries in turn, each with its own colour permutation keeping 0, the same every call", () => {
    const views = colourViews(10)
    expect(views.map((v) => v.name.split("+")[0])).toEqual(
      [...invertibleViews, ...invertibleViews].slice(0, 10).map((v) => v.name)
    )
    expect(colourViews(10).map((v) => v.name)).toEqual(views.map((v) => v.name))
    expect(new Set(views.map((v) => v.name.split("+")[1])).size).toBe(10)
    const probe: Grid = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 0]]
    for (const view of views) {
      const shown = view.apply(probe)
      // The symmetry's shape, 0 where 0 was, the other colours moved.
      const plain = invertibleViews.find((v) => view.name.startsWith(v.name))!.apply(probe)
      expect([shown.length, shown[0]!.length]).toEqual([plain.length, plain[0]!.length])
      shown.forEach((row, r) => row.forEach((c, k) => expect(c === 0).toBe(plain[r]![k] === 0)))
      expect(gridsEqual(shown, plain)).toBe(false)
      expect(view.invert(shown)).toEqual(probe)
    }
    expect(views[0]!.invert([[1, 2], [3]])).toBeUndefined()
  })
})
