import { describe, expect, it } from "@effect/vitest"
import { makeRng } from "@seal/gpu/model/Sampling"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { loadNamedArcSet } from "../src/arc/ArcData.js"
import { decodeGrid } from "../src/arc/ArcFormat.js"
import { arcTokens, ids } from "../src/arc/ArcVocabulary.js"
import { type ArcExample, type Grid, height, makeGrid, width } from "../src/arc/Grid.js"
import { gridMask, impliedOutputShape, type OutputShape, shapeTokens } from "../src/arc/OutputShape.js"

const dataDir = fileURLToPath(new URL("../../../data/", import.meta.url))
const training = await Effect.runPromise(loadNamedArcSet(dataDir, "training"))

const grid = (rows: number, columns: number, colour = 1): Grid => makeGrid(rows, columns, () => colour)
const pair = (input: [number, number], output: [number, number]): ArcExample => ({
  input: grid(...input),
  output: grid(...output, 2)
})

describe("impliedOutputShape", () => {
  it("reads each side's rule from the demonstrations", () => {
    // Same as the input.
    expect(impliedOutputShape([pair([3, 4], [3, 4]), pair([5, 2], [5, 2])], grid(7, 6))).toEqual({
      rows: 7,
      columns: 6
    })
    // The other side (a transpose).
    expect(impliedOutputShape([pair([3, 4], [4, 3]), pair([5, 2], [2, 5])], grid(7, 6))).toEqual({
      rows: 6,
      columns: 7
    })
    // Constant.
    expect(impliedOutputShape([pair([3, 4], [1, 1]), pair([5, 2], [1, 1])], grid(7, 6))).toEqual({
      rows: 1,
      columns: 1
    })
    // A multiple, and a fraction.
    expect(impliedOutputShape([pair([3, 4], [6, 12]), pair([2, 2], [4, 6])], grid(5, 3))).toEqual({
      rows: 10,
      columns: 9
    })
    expect(impliedOutputShape([pair([6, 4], [3, 4]), pair([4, 2], [2, 2])], grid(8, 5))).toEqual({
      rows: 4,
      columns: 5
    })
    // Per side: rows constant, columns unexplained.
    expect(impliedOutputShape([pair([3, 4], [2, 1]), pair([5, 2], [2, 3]), pair([4, 4], [2, 5])], grid(7, 6)))
      .toEqual({ rows: 2, columns: undefined })
  })

  it("leaves a side free when no rule holds, the fraction does not divide, or the result is no ARC side", () => {
    expect(impliedOutputShape([], grid(3, 3))).toEqual({ rows: undefined, columns: undefined })
    // One demonstration: a constant is not a rule (same-as-input and multiples still are).
    expect(impliedOutputShape([pair([3, 4], [2, 8])], grid(5, 5))).toEqual({ rows: undefined, columns: 10 })
    // Halving an odd side.
    expect(impliedOutputShape([pair([6, 4], [3, 4]), pair([4, 2], [2, 2])], grid(7, 5)).rows).toBeUndefined()
    // Tripling 11 rows is 33: more than 30.
    expect(impliedOutputShape([pair([3, 4], [9, 4]), pair([2, 2], [6, 2])], grid(11, 3)).rows).toBeUndefined()
  })

  it("on the ARC training tasks, a side it fixes is the test output's in nearly every task", () => {
    let fixed = 0
    let right = 0
    let tasksFullyFixed = 0
    for (const task of training) {
      for (const test of task.test) {
        const shape = impliedOutputShape(task.train, test.input)
        if (shape.rows !== undefined) fixed++, right += shape.rows === height(test.output) ? 1 : 0
        if (shape.columns !== undefined) fixed++, right += shape.columns === width(test.output) ? 1 : 0
        if (shape.rows !== undefined && shape.columns !== undefined) tasksFullyFixed++
      }
    }
    // Measured: 724 of 729 fixed sides right; both sides fixed for 361 of 416 test inputs (360 right).
    expect(right / fixed).toBeGreaterThan(0.97)
    expect(tasksFullyFixed).toBeGreaterThan(350)
  })
})

/** Greedy decoding by hand under `mask`, from random logits: what `generate` would write. */
const decodeUnder = (shape: OutputShape, seed: number): Array<number> => {
  const rng = makeRng(seed)
  const mask = gridMask(shape)
  const generated: Array<number> = []
  for (let step = 0; step < 2000; step++) {
    const logits = Float32Array.from(arcTokens, () => rng())
    mask({ row: 0, generated, logits })
    let best = 0
    for (let id = 1; id < logits.length; id++) if (logits[id]! > logits[best]!) best = id
    if (best === ids.exampleEnd) return generated
    generated.push(best)
  }
  throw new Error("the mask never allowed end")
}

describe("gridMask", () => {
  it("whatever the logits, greedy decoding writes a well-formed grid of the shape, then end", () => {
    for (let seed = 0; seed < 200; seed++) {
      const shape = { rows: 1 + (seed % 5), columns: 1 + ((seed * 7) % 9) }
      const tokens = decodeUnder(shape, seed)
      expect(tokens).toHaveLength(shapeTokens(shape)! - 1)
      const decoded = decodeGrid(tokens)
      expect([decoded && height(decoded), decoded && width(decoded)]).toEqual([shape.rows, shape.columns])
    }
  })

  it("free sides: still a grid decodeGrid reads, within 30, every row as wide as the first", () => {
    const shapes: Array<OutputShape> = [
      { rows: undefined, columns: undefined },
      { rows: 3, columns: undefined },
      { rows: undefined, columns: 4 }
    ]
    for (const [i, shape] of shapes.entries()) {
      for (let seed = 0; seed < 100; seed++) {
        const decoded = decodeGrid(decodeUnder(shape, 1000 * i + seed))
        expect(decoded).toBeDefined()
        expect(height(decoded!)).toBeLessThanOrEqual(30)
        expect(width(decoded!)).toBeLessThanOrEqual(30)
        if (shape.rows !== undefined) expect(height(decoded!)).toBe(shape.rows)
        if (shape.columns !== undefined) expect(width(decoded!)).toBe(shape.columns)
      }
    }
  })

  it("forbids only what breaks the grid: mid-row every colour stays allowed", () => {
    const logits = new Float32Array(arcTokens.length)
    gridMask({ rows: 2, columns: 3 })({ row: 0, generated: [ids.colour0 + 1], logits })
    const allowed = [...logits.keys()].filter((id) => logits[id] === 0)
    expect(allowed).toEqual(Array.from({ length: 10 }, (_, c) => ids.colour0 + c))
  })
})
