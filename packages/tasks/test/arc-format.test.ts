import { describe, expect, it } from "@effect/vitest"
import { makeRng } from "@seal/gpu/model/Sampling"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { gridProblem, loadNamedArcSet } from "../src/arc/ArcData.js"
import {
  arcTokenizer,
  decodeGrid,
  exampleIds,
  exampleLength,
  gridIds,
  gridLength,
  gridText,
  queryPrompt,
  selfEditPrompt,
  sequenceLength,
  taskSequence
} from "../src/arc/ArcFormat.js"
import { arcTokens, ids, tokenId } from "../src/arc/ArcVocabulary.js"
import type { ArcExample, ArcTask, Grid } from "../src/arc/Grid.js"
import { makeGrid } from "../src/arc/Grid.js"

const dataDir = fileURLToPath(new URL("../../../data/", import.meta.url))

const loadAll = Effect.gen(function*() {
  const training = yield* loadNamedArcSet(dataDir, "training")
  const evaluation = yield* loadNamedArcSet(dataDir, "evaluation")
  return [...training, ...evaluation]
})

const allGrids = (tasks: ReadonlyArray<ArcTask>): Array<Grid> =>
  tasks.flatMap((task) => [...task.train, ...task.test].flatMap((example) => [example.input, example.output]))

const c = (colour: number) => ids.colour0 + colour
const R = ids.rowEnd
const IN = ids.input
const OUT = ids.output
const END = ids.exampleEnd

const demo: ArcExample = { input: [[1, 2], [3, 4]], output: [[4, 3], [2, 1]] }
const query: ArcExample = { input: [[0, 5, 0]], output: [[7], [7]] }

describe("arcTokenizer", () => {
  it("is built once from the ARC vocabulary", () => {
    const tokenizer = arcTokenizer()
    expect(arcTokenizer()).toBe(tokenizer)
    expect(tokenizer.vocabSize).toBe(arcTokens.length)
    expect([tokenizer.bosId, tokenizer.eosId, tokenizer.padId, tokenizer.unkId]).toEqual([
      ids.bos,
      ids.eos,
      ids.pad,
      ids.unk
    ])
    expect(tokenizer.tokenToId("\n")).toBe(ids.rowEnd)
    expect(tokenizer.tokenToId("7")).toBe(ids.colour0 + 7)
    expect(tokenizer.tokenToId("\"learning_rate\"")).toBe(tokenId("\"learning_rate\""))
  })
})

describe("grids as tokens", () => {
  it("writes one token per cell and a row end after every row", () => {
    const grid = [[0, 1, 2], [3, 4, 5]]
    expect(gridIds(grid)).toEqual([c(0), c(1), c(2), R, c(3), c(4), c(5), R])
    expect(gridText(grid)).toBe("0 1 2\n3 4 5\n")
    expect(gridLength(grid)).toBe(8)
    expect(arcTokenizer().encode(gridText(grid), { addBos: false })).toEqual(gridIds(grid))
  })

  it.effect("round-trips every grid of the training and evaluation sets, as ids and as text", () =>
    Effect.gen(function*() {
      const tokenizer = arcTokenizer()
      const grids = allGrids(yield* loadAll)
      expect(grids.length).toBe(3436 + 3564)
      for (const grid of grids) {
        const gridTokens = gridIds(grid)
        expect(gridTokens.length).toBe(gridLength(grid))
        expect(decodeGrid([...gridTokens, END])).toEqual(grid)
        expect(decodeGrid(gridTokens)).toEqual(grid)
        const text = gridText(grid)
        expect(tokenizer.encode(text, { addBos: false })).toEqual(gridTokens)
        expect(tokenizer.decode(gridTokens)).toBe(text)
      }
    }))
})

describe("task sequences", () => {
  it("writes an example as in <input> out <output> end", () => {
    expect(exampleIds(demo)).toEqual([IN, c(1), c(2), R, c(3), c(4), R, OUT, c(4), c(3), R, c(2), c(1), R, END])
    expect(exampleLength(demo)).toBe(15)
  })

  it("targets the query's output grid and its end with loss \"output\"", () => {
    const sequence = taskSequence([demo], query, { loss: "output" })
    const prompt = [ids.bos, ...exampleIds(demo), IN, c(0), c(5), c(0), R, OUT]
    const completion = [c(7), R, c(7), R, END]
    expect(sequence.ids).toEqual([...prompt, ...completion])
    expect(sequence.labelMask).toEqual([...prompt.map(() => 0), ...completion.map(() => 1)])
    expect(queryPrompt([demo], query.input)).toEqual(prompt)
    expect(decodeGrid(completion)).toEqual(query.output)
  })

  it("targets every token after BOS with loss \"all\"", () => {
    const sequence = taskSequence([demo, demo], query, { loss: "all" })
    expect(sequence.ids).toEqual(taskSequence([demo, demo], query, { loss: "output" }).ids)
    expect(sequence.labelMask).toEqual(sequence.ids.map((_, t) => (t === 0 ? 0 : 1)))
    const alone = taskSequence([], query, { loss: "all" })
    expect(alone.ids).toEqual([ids.bos, ...exampleIds(query)])
  })

  it("ends a self-edit prompt with config", () => {
    expect(selfEditPrompt([demo])).toEqual([ids.bos, ...exampleIds(demo), ids.config])
    expect(selfEditPrompt([])).toEqual([ids.bos, ids.config])
  })

  it.effect("agrees with the tokenizer and with sequenceLength on every task", () =>
    Effect.gen(function*() {
      const tokenizer = arcTokenizer()
      for (const task of yield* loadAll) {
        for (const test of task.test) {
          const sequence = taskSequence(task.train, test, { loss: "output" })
          expect(sequence.ids.length).toBe(sequenceLength(task.train, test))
          expect(sequence.labelMask.length).toBe(sequence.ids.length)
          const prompt = queryPrompt(task.train, test.input)
          expect(sequence.ids).toEqual([...prompt, ...gridIds(test.output), END])
          expect(sequence.labelMask.reduce((a, b) => a + b, 0)).toBe(gridLength(test.output) + 1)
          expect(decodeGrid(sequence.ids.slice(prompt.length))).toEqual(test.output)
          expect(tokenizer.encode(tokenizer.decode(sequence.ids))).toEqual(sequence.ids)
        }
      }
    }))
})

describe("decodeGrid", () => {
  it("reads rows up to end, EOS or the end of the ids", () => {
    const grid = [[1, 2], [3, 4]]
    expect(decodeGrid([...gridIds(grid), END])).toEqual(grid)
    expect(decodeGrid([...gridIds(grid), ids.eos])).toEqual(grid)
    expect(decodeGrid(gridIds(grid))).toEqual(grid)
    expect(decodeGrid([...gridIds(grid), END, 12345, -1, IN])).toEqual(grid)
  })

  it("rejects malformed output", () => {
    const bad: Array<ReadonlyArray<number>> = [
      [],
      [END],
      [ids.eos],
      [R, END],
      [c(1), R, R, END],
      [c(1), c(2), END],
      [c(1), R, c(2), END],
      [c(1), c(2), R, c(3), R, END],
      [c(1), IN, R, END],
      [c(1), OUT, R, END],
      [ids.bos, c(1), R],
      [c(1), ids.pad, R],
      [c(1), ids.unk, R],
      [c(1), ids.config, R],
      [c(1), tokenId("{"), R],
      [c(1), -1, R],
      [c(1), 1.5, R],
      [c(1), Number.NaN, R],
      [c(1), arcTokens.length, R],
      [c(1), 1e12, R]
    ]
    for (const sequence of bad) expect(decodeGrid(sequence)).toBe(undefined)
  })

  it("allows at most 30 rows and 30 columns", () => {
    const largest = makeGrid(30, 30, (r, k) => (r + k) % 10)
    expect(decodeGrid([...gridIds(largest), END])).toEqual(largest)
    expect(decodeGrid([...gridIds(makeGrid(31, 1, () => 0)), END])).toBe(undefined)
    expect(decodeGrid([...gridIds(makeGrid(1, 31, () => 0)), END])).toBe(undefined)
    expect(decodeGrid([...gridIds(makeGrid(31, 31, () => 0)), END])).toBe(undefined)
  })

  it("never throws on random ids, and what it accepts is the grid those ids write", () => {
    const rng = makeRng(20240601)
    let accepted = 0
    for (let n = 0; n < 1000; n++) {
      const length = Math.floor(rng() * 80)
      // Mostly colours and row ends, so that some sequences are grids; sometimes anything at all.
      const sequence = Array.from({ length }, () => {
        const u = rng()
        if (u < 0.6) return c(Math.floor(rng() * 10))
        if (u < 0.8) return R
        if (u < 0.85) return END
        if (u < 0.95) return Math.floor(rng() * arcTokens.length)
        return Math.floor((rng() - 0.5) * 1e6)
      })
      // Rows of a random width, to make valid grids likely.
      if (n % 4 === 0) {
        const columns = 1 + Math.floor(rng() * 5)
        for (let t = 0; t < sequence.length; t++) if ((t + 1) % (columns + 1) === 0) sequence[t] = R
      }
      let grid: Grid | undefined
      expect(() => {
        grid = decodeGrid(sequence)
      }).not.toThrow()
      if (grid !== undefined) {
        accepted++
        expect(gridProblem(grid)).toBe(undefined)
        const written = gridIds(grid)
        expect(sequence.slice(0, written.length)).toEqual(written)
        const next = sequence[written.length]
        expect(next === undefined || next === END || next === ids.eos).toBe(true)
      }
    }
    expect(accepted).toBeGreaterThan(10)
  })
})
