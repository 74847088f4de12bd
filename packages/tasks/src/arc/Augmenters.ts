/**
 * Geometric and colour augmentations of ARC tasks: the data generation SEAL's ARC self-edit
 * switches on family by family (`use_basic_augmentations`, `use_size_augmentations`,
 * `use_chain_augmentations`, `use_repeat_augmentations`), after the test-time-training
 * augmenters of Akyürek et al. (`arclib/augmenters.py`, families from `get_augmenters` in the
 * TTT preprocessing that SEAL's few-shot code reuses).
 *
 * An augmenter is one deterministic grid transform applied identically to every input and output
 * grid of a task, so the augmented task keeps the original's rule up to that transform. Where
 * the transform has an exact inverse, `invert` maps a prediction on the augmented task back to
 * the original frame (augmented voting at inference). Pure functions; grids are never modified.
 */
import { deriveSeed, makeRng, shuffleInPlace } from "@seal/gpu/model/Sampling"
import { type ArcExample, type ArcTask, type Grid, gridsEqual, maxGridSide } from "./Grid.js"

export type Family = "basic" | "size" | "chain" | "repeat"

export const families: ReadonlyArray<Family> = ["basic", "size", "chain", "repeat"]

export interface Augmenter {
  /** Unique among the augmenters this module builds: a key for logging and de-duplication. */
  readonly name: string
  readonly family: Family
  readonly apply: (grid: Grid) => Grid
  /**
   * The exact inverse, present only where one exists. Returns undefined (never throws) for a
   * grid that no grid maps to under `apply` (a doubled grid whose cells don't repeat, an odd
   * size, an empty or ragged grid), so a malformed prediction is dropped rather than guessed.
   */
  readonly invert?: (grid: Grid) => Grid | undefined
}

/** numpy's axis numbering, as in the reference: 0 = along rows (vertical), 1 = along columns. */
export type Axis = 0 | 1

// ---------------------------------------------------------------------------------------------
// Shape checks

/** Non-empty and rectangular: the only grids an inverse accepts (predictions may be ragged). */
const isRectangular = (grid: Grid): boolean => {
  const columns = grid[0]?.length ?? 0
  return columns > 0 && grid.every((row) => row.length === columns)
}

export const fitsMaxSize = (grid: Grid): boolean =>
  grid.length <= maxGridSide && grid.every((row) => row.length <= maxGridSide)

/**
 * `makeGrid` (Grid.ts) with plain loops: the augmenters run over every grid of many tasks, and
 * `Array.from` with a callback is several times slower in V8.
 */
const build = (height: number, width: number, f: (row: number, column: number) => number): Grid => {
  const grid = new Array<Array<number>>(height)
  for (let r = 0; r < height; r++) {
    const row = new Array<number>(width)
    for (let c = 0; c < width; c++) row[c] = f(r, c)
    grid[r] = row
  }
  return grid
}

const mod = (a: number, n: number): number => ((a % n) + n) % n

const assertFactor = (what: string, factor: number): void => {
  if (!Number.isInteger(factor) || factor < 2) {
    throw new RangeError(`${what}: factor must be an integer >= 2, got ${factor}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Bijections: the dihedral group of the rectangle/square plus cyclic translations. Every grid
// is an image, so their inverses fail only on malformed grids.

/** An augmenter whose `invert` is known to be present. */
export type InvertibleAugmenter = Augmenter & { readonly invert: (grid: Grid) => Grid | undefined }

const bijection = (
  name: string,
  family: Family,
  forward: (grid: Grid) => Grid,
  backward: (grid: Grid) => Grid
): InvertibleAugmenter => ({
  name,
  family,
  apply: forward,
  invert: (grid) => (isRectangular(grid) ? backward(grid) : undefined)
})

const rows = (grid: Grid): number => grid.length
const columns = (grid: Grid): number => grid[0]?.length ?? 0

/** `f(row, column, height, width)` over an output of the given size, from the input's size. */
const remap = (
  g: Grid,
  transposed: boolean,
  f: (row: number, column: number, height: number, width: number) => number
): Grid => {
  const h = rows(g)
  const w = columns(g)
  return transposed ? build(w, h, (r, c) => f(r, c, h, w)) : build(h, w, (r, c) => f(r, c, h, w))
}

const rot90 = (g: Grid): Grid => remap(g, true, (r, c, _h, w) => g[c]![w - 1 - r]!)
const rot180 = (g: Grid): Grid => remap(g, false, (r, c, h, w) => g[h - 1 - r]![w - 1 - c]!)
const rot270 = (g: Grid): Grid => remap(g, true, (r, c, h) => g[h - 1 - c]![r]!)
const flipud = (g: Grid): Grid => remap(g, false, (r, c, h) => g[h - 1 - r]![c]!)
const fliplr = (g: Grid): Grid => remap(g, false, (r, c, _h, w) => g[r]![w - 1 - c]!)
const transposeGrid = (g: Grid): Grid => remap(g, true, (r, c) => g[c]![r]!)
const antiTransposeGrid = (g: Grid): Grid => remap(g, true, (r, c, h, w) => g[h - 1 - c]![w - 1 - r]!)

export const identity: InvertibleAugmenter = bijection("Identity()", "basic", (g) => g, (g) => g)
/** Counter-clockwise, like `np.rot90(grid, 1)` in the reference's `Rotate(90)`. */
export const rotate90: InvertibleAugmenter = bijection("Rotate(90)", "basic", rot90, rot270)
export const rotate180: InvertibleAugmenter = bijection("Rotate(180)", "basic", rot180, rot180)
export const rotate270: InvertibleAugmenter = bijection("Rotate(270)", "basic", rot270, rot90)
/** Upside down (`np.flipud`, the reference's `Flip(0)`). */
export const flipRows: InvertibleAugmenter = bijection("Flip(0)", "basic", flipud, flipud)
/** Left-right (`np.fliplr`, the reference's `Flip(1)`). */
export const flipColumns: InvertibleAugmenter = bijection("Flip(1)", "basic", fliplr, fliplr)
export const transpose: InvertibleAugmenter = bijection("Transpose()", "basic", transposeGrid, transposeGrid)
/** Mirror in the anti-diagonal: the eighth symmetry of a square, absent from the reference. */
export const antiTranspose: InvertibleAugmenter = bijection(
  "AntiTranspose()",
  "basic",
  antiTransposeGrid,
  antiTransposeGrid
)

const rollGrid = (g: Grid, down: number, right: number): Grid =>
  remap(g, false, (r, c, h, w) => g[mod(r - down, h)]![mod(c - right, w)]!)

/**
 * Cyclic translation, `np.roll(grid, (down, right), axis=(0, 1))` as in the reference's
 * `RandomTranslateXY`: cells pushed off one edge re-enter at the other, so nothing is lost and
 * rolling back is an exact inverse on every grid. Shifts are taken modulo each grid's size.
 */
export const roll = (down: number, right: number): InvertibleAugmenter =>
  bijection(`Translate(${down},${right})`, "basic", (g) => rollGrid(g, down, right), (g) => rollGrid(g, -down, -right))

/**
 * Translation with a fill colour: vacated cells take `fill`, cells pushed past the edge are
 * dropped. No `invert`: the dropped cells cannot be recovered, so no exact inverse exists (a
 * grid is an image of many grids). Not used by the families; `roll` is what the reference uses.
 */
export const shift = (down: number, right: number, fill = 0): Augmenter => ({
  name: `Shift(${down},${right},fill=${fill})`,
  family: "basic",
  apply: (g) =>
    build(rows(g), columns(g), (r, c) => {
      const sr = r - down
      const sc = c - right
      return sr >= 0 && sr < rows(g) && sc >= 0 && sc < columns(g) ? g[sr]![sc]! : fill
    })
})

/**
 * A translation drawn like the reference's `RandomTranslateXY`: each shift uniform in 0..3
 * (the reference caps it by `min(4, side)` per grid; taking it modulo the side instead keeps one
 * augmenter for the whole task). Drawn once, so every grid of a task moves by the same amount;
 * the reference gives each example a copy of one rng state and draws the input's shift before
 * the output's, so there the outputs move by a second draw. We keep one shift so the transform
 * is the same for inputs and outputs, like every other augmenter here.
 */
export const randomTranslation = (rng: () => number): InvertibleAugmenter =>
  roll(Math.floor(rng() * 4), Math.floor(rng() * 4))

// ---------------------------------------------------------------------------------------------
// Enlargements: injective but not onto, so the inverse checks that the grid really has the
// redundancy the transform puts in, and returns undefined otherwise.

/**
 * Grid concatenated with its mirror along `axis` (0: stacked vertically with its upside-down
 * copy, 1: side by side with its left-right mirror); `reverse` puts the mirror first. The
 * reference's `Reflect(axis, reverse)`.
 */
export const reflect = (axis: Axis, reverse: boolean, family: Family = "basic"): Augmenter => {
  const mirror = axis === 0 ? flipud : fliplr
  return {
    name: `Reflect(${axis}${reverse ? ",reverse" : ""})`,
    family,
    apply: (g) => {
      const [first, second] = reverse ? [mirror(g), g] : [g, mirror(g)]
      return axis === 0 ? [...first, ...second] : first.map((row, r) => [...row, ...second[r]!])
    },
    invert: (g) => {
      if (!isRectangular(g)) return undefined
      const side = axis === 0 ? rows(g) : columns(g)
      if (side % 2 !== 0) return undefined
      const half = side / 2
      const first = axis === 0
        ? g.slice(0, half)
        : g.map((row) => row.slice(0, half))
      const second = axis === 0
        ? g.slice(half)
        : g.map((row) => row.slice(half))
      // Either half determines the other; the original is the one that was not mirrored.
      if (!gridsEqual(second, mirror(first))) return undefined
      return reverse ? second : first
    }
  }
}

/** Each cell becomes a `rowFactor x columnFactor` block of itself. */
const upsample = (name: string, family: Family, rowFactor: number, columnFactor: number): Augmenter => ({
  name,
  family,
  apply: (g) =>
    build(
      rows(g) * rowFactor,
      columns(g) * columnFactor,
      (r, c) => g[Math.floor(r / rowFactor)]![Math.floor(c / columnFactor)]!
    ),
  invert: (g) => {
    if (!isRectangular(g) || rows(g) % rowFactor !== 0 || columns(g) % columnFactor !== 0) return undefined
    const uniform = g.every((row, r) =>
      row.every((cell, c) => cell === g[r - (r % rowFactor)]![c - (c % columnFactor)]!)
    )
    return uniform
      ? build(rows(g) / rowFactor, columns(g) / columnFactor, (r, c) => g[r * rowFactor]![c * columnFactor]!)
      : undefined
  }
})

/** Each cell becomes a `factor x factor` block (`IncreaseResolution(factor)`). */
export const increaseResolution = (factor: number, family: Family = "size"): Augmenter => {
  assertFactor("increaseResolution", factor)
  return upsample(`IncreaseResolution(${factor})`, family, factor, factor)
}

/** Each row repeated `factor` times in place (`IncreaseHeight(factor)`). */
export const increaseHeight = (factor: number, family: Family = "size"): Augmenter => {
  assertFactor("increaseHeight", factor)
  return upsample(`IncreaseHeight(${factor})`, family, factor, 1)
}

/** Each column repeated `factor` times in place (`IncreaseWidth(factor)`). */
export const increaseWidth = (factor: number, family: Family = "size"): Augmenter => {
  assertFactor("increaseWidth", factor)
  return upsample(`IncreaseWidth(${factor})`, family, 1, factor)
}

/**
 * The whole grid tiled `n` times along `axis` (0: stacked vertically, 1: side by side, 2: both,
 * an `n x n` tiling), the reference's `Repeat(axis, n)`.
 */
export const repeat = (axis: Axis | 2, n: number, family: Family = "repeat"): Augmenter => {
  assertFactor("repeat", n)
  const rowTiles = axis === 1 ? 1 : n
  const columnTiles = axis === 0 ? 1 : n
  return {
    name: `Repeat(${axis},${n})`,
    family,
    apply: (g) => build(rows(g) * rowTiles, columns(g) * columnTiles, (r, c) => g[r % rows(g)]![c % columns(g)]!),
    invert: (g) => {
      if (!isRectangular(g) || rows(g) % rowTiles !== 0 || columns(g) % columnTiles !== 0) return undefined
      const tileRows = rows(g) / rowTiles
      const tileColumns = columns(g) / columnTiles
      const periodic = g.every((row, r) => row.every((cell, c) => cell === g[r % tileRows]![c % tileColumns]!))
      return periodic ? build(tileRows, tileColumns, (r, c) => g[r]![c]!) : undefined
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Composition

/**
 * `parts` applied left to right (the reference's `Chain([...])`). Invertible when every part is;
 * the inverse undoes the parts right to left and fails as soon as one step does.
 */
export const chain = (parts: ReadonlyArray<Augmenter>, family: Family = "chain"): Augmenter => {
  const name = `Chain(${parts.map((part) => part.name).join(",")})`
  const apply = (grid: Grid): Grid => parts.reduce((g, part) => part.apply(g), grid)
  const inverses = parts.map((part) => part.invert)
  if (!inverses.every((inv): inv is (grid: Grid) => Grid | undefined => inv !== undefined)) {
    return { name, family, apply }
  }
  const invert = (grid: Grid): Grid | undefined =>
    isRectangular(grid)
      ? inverses.reduceRight<Grid | undefined>((g, inv) => (g === undefined ? undefined : inv(g)), grid)
      : undefined
  return { name, family, apply, invert }
}

// ---------------------------------------------------------------------------------------------
// Applying to examples and tasks

export const applyToExample = (augmenter: Augmenter, example: ArcExample): ArcExample => ({
  input: augmenter.apply(example.input),
  output: augmenter.apply(example.output)
})

export const applyToTask = (augmenter: Augmenter, task: ArcTask): ArcTask => ({
  id: task.id,
  train: task.train.map((example) => applyToExample(augmenter, example)),
  test: task.test.map((example) => applyToExample(augmenter, example))
})

/** The augmented example, or undefined when a grid outgrows 30x30 (no longer a valid ARC grid). */
export const augmentExample = (augmenter: Augmenter, example: ArcExample): ArcExample | undefined => {
  const augmented = applyToExample(augmenter, example)
  return fitsMaxSize(augmented.input) && fitsMaxSize(augmented.output) ? augmented : undefined
}

/**
 * The augmented task, or undefined when any of its grids outgrows 30x30: the reference drops the
 * whole task then (`max_height() <= 30 and max_width() <= 30`), since a task with one example
 * missing would teach a different demonstration set.
 */
export const augmentTask = (augmenter: Augmenter, task: ArcTask): ArcTask | undefined => {
  const train: Array<ArcExample> = []
  for (const example of task.train) {
    const augmented = augmentExample(augmenter, example)
    if (augmented === undefined) return undefined
    train.push(augmented)
  }
  const test: Array<ArcExample> = []
  for (const example of task.test) {
    const augmented = augmentExample(augmenter, example)
    if (augmented === undefined) return undefined
    test.push(augmented)
  }
  return { id: task.id, train, test }
}

// ---------------------------------------------------------------------------------------------
// Colours and example order

/**
 * A permutation `p` of the colours 0-9 with `p[0] = 0`: black is the background in most tasks,
 * so it stays put while the other nine colours are shuffled uniformly. (The reference's
 * `PermuteColors` also keeps 0 and maps a task's colours preferably onto unused ones; a uniform
 * permutation of 1-9 has the same effect on what the model sees: colour names carry no rule.)
 */
export const colourPermutation = (rng: () => number): Array<number> => [
  0,
  ...shuffleInPlace([1, 2, 3, 4, 5, 6, 7, 8, 9], rng)
]

/** Every cell `c` becomes `permutation[c]`. */
export const permuteColours = (grid: Grid, permutation: ReadonlyArray<number>): Grid =>
  grid.map((row) => row.map((cell) => permutation[cell]!))

export const invertPermutation = (permutation: ReadonlyArray<number>): Array<number> => {
  const inverse = new Array<number>(permutation.length)
  permutation.forEach((image, colour) => {
    inverse[image] = colour
  })
  return inverse
}

export const permuteExampleColours = (example: ArcExample, permutation: ReadonlyArray<number>): ArcExample => ({
  input: permuteColours(example.input, permutation),
  output: permuteColours(example.output, permutation)
})

/** A shuffled copy (the reference's `PermuteExamples`): demonstration order carries no rule. */
export const shuffleExamples = <A>(examples: ReadonlyArray<A>, rng: () => number): Array<A> =>
  shuffleInPlace([...examples], rng)

// ---------------------------------------------------------------------------------------------
// Families

/**
 * The families of the reference's `get_augmenters(include_basic, include_size, include_chain,
 * include_repeat)`, in its order, all factors 2:
 * - basic: Rotate(90), Rotate(270), Rotate(180), Flip(0), Flip(1), the four Reflects,
 *   RandomTranslateXY, Transpose. The reference puts the reflections (which double a side) and
 *   the translation here, not under repeat; we follow it. Its translation is random per task;
 *   the static list holds `Translate(1,1)` and `augmentersFor(flags, rng)` draws one instead.
 *   AntiTranspose is not in the reference, so it is not here (it is in `invertibleViews`).
 * - size: IncreaseResolution(2), IncreaseHeight(2), IncreaseWidth(2).
 * - chain: each of Rotate(90), Rotate(270), Rotate(180), Flip(0), Flip(1), Transpose followed by
 *   IncreaseResolution(2).
 * - repeat: Repeat(0,2), Repeat(1,2), Repeat(2,2).
 * The reference's optional `Concat` and random-translate-chain lists are off by default there
 * and have no self-edit flag, so they are left out.
 */
const basicFamily: ReadonlyArray<Augmenter> = [
  rotate90,
  rotate270,
  rotate180,
  flipRows,
  flipColumns,
  reflect(0, true),
  reflect(1, true),
  reflect(0, false),
  reflect(1, false),
  roll(1, 1),
  transpose
]

const sizeFamily: ReadonlyArray<Augmenter> = [increaseResolution(2), increaseHeight(2), increaseWidth(2)]

const chainFamily: ReadonlyArray<Augmenter> = [rotate90, rotate270, rotate180, flipRows, flipColumns, transpose].map(
  (first) => chain([first, increaseResolution(2)])
)

const repeatFamily: ReadonlyArray<Augmenter> = [repeat(0, 2), repeat(1, 2), repeat(2, 2)]

export const augmenterFamilies: Readonly<Record<Family, ReadonlyArray<Augmenter>>> = {
  basic: basicFamily,
  size: sizeFamily,
  chain: chainFamily,
  repeat: repeatFamily
}

export interface AugmentationFlags {
  readonly basic: boolean
  readonly size: boolean
  readonly chain: boolean
  readonly repeat: boolean
}

/**
 * The augmenters a self-edit's flags switch on, families in the reference's order. With `rng`,
 * the basic family's translation is drawn like the reference's `RandomTranslateXY` (one draw per
 * call, so call it once per task); without it, the fixed `Translate(1,1)` is used.
 */
export const augmentersFor = (flags: AugmentationFlags, rng?: () => number): ReadonlyArray<Augmenter> =>
  families.flatMap((family) => {
    if (!flags[family]) return []
    const members = augmenterFamilies[family]
    if (family !== "basic" || rng === undefined) return members
    const translation = randomTranslation(rng)
    return members.map((member) => (member.name.startsWith("Translate(") ? translation : member))
  })

/**
 * The views of augmented voting at inference: identity and the seven other symmetries of the
 * square (rotations, flips, transpose, anti-transpose), each a bijection with an exact inverse,
 * so a prediction made in any view maps back to the original frame. The reference votes over
 * identity, Transpose, Flip(0), Flip(1), Rotate(90), Rotate(180); we use the full group, and a
 * caller wanting the reference's set can take that subset by name.
 */
export const invertibleViews: ReadonlyArray<InvertibleAugmenter> = [
  identity,
  rotate90,
  rotate180,
  rotate270,
  flipRows,
  flipColumns,
  transpose,
  antiTranspose
]

/**
 * `count` more views beyond the symmetries: the k-th is symmetry k (mod 8) of `invertibleViews`
 * followed by a colour permutation (0 kept) drawn from seed k, so the views are the same for
 * every task and run. Undone by the inverse permutation, then the symmetry's inverse. A model
 * pretrained with colour augmentation should answer the same in every colouring; where it does
 * not, the extra views add candidates.
 */
export const colourViews = (count: number): Array<InvertibleAugmenter> =>
  Array.from({ length: count }, (_, k) => {
    const symmetry = invertibleViews[k % invertibleViews.length]!
    const permutation = colourPermutation(makeRng(deriveSeed(0x5ea1c01, k)))
    const inverse = invertPermutation(permutation)
    return {
      name: `${symmetry.name}+Colours(${permutation.join("")})`,
      family: "basic" as const,
      apply: (g: Grid) => permuteColours(symmetry.apply(g), permutation),
      invert: (g: Grid) =>
        isRectangular(g) && g.every((row) => row.every((c) => inverse[c] !== undefined))
          ? symmetry.invert(permuteColours(g, inverse))
          : undefined
    }
  })
