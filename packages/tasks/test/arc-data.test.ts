import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import type { ArcDataError } from "../src/arc/ArcData.js"
import {
  arcSetFiles,
  arcSetNames,
  gridProblem,
  isArcSetName,
  loadArcSet,
  loadNamedArcSet,
  parseArcSet
} from "../src/arc/ArcData.js"
import type { ArcTask } from "../src/arc/Grid.js"

const dataDir = fileURLToPath(new URL("../../../data/", import.meta.url))

const tempDirs: Array<string> = []
afterAll(() => Promise.all(tempDirs.map((d) => Fs.rm(d, { recursive: true, force: true }))))

const writeTemp = (name: string, content: string) =>
  Effect.promise(async () => {
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "seal-arc-"))
    tempDirs.push(dir)
    const path = Path.join(dir, name)
    await Fs.writeFile(path, content)
    return path
  })

// A small valid set: two tasks, the second with two test inputs.
const challenges = () => ({
  bbb: {
    train: [
      { input: [[1, 2], [3, 4]], output: [[4, 3], [2, 1]] },
      { input: [[0]], output: [[9]] }
    ],
    test: [{ input: [[5, 6]] }, { input: [[7], [8]] }]
  },
  aaa: {
    train: [{ input: [[1, 1, 1]], output: [[2], [2], [2]] }],
    test: [{ input: [[3]] }]
  }
})

const solutions = () => ({
  aaa: [[[6]]],
  bbb: [[[6, 5]], [[8], [7]]]
})

const files = { challenges: "c.json", solutions: "s.json" }

const parseError = (c: unknown, s: unknown): ArcDataError => {
  const result = parseArcSet(c, s, files)
  if (Either.isRight(result)) throw new Error("expected an error")
  return result.left
}

describe("loadNamedArcSet", () => {
  it.effect("loads ARC-AGI-1's training and evaluation sets", () =>
    Effect.gen(function*() {
      const training = yield* loadNamedArcSet(dataDir, "training")
      const evaluation = yield* loadNamedArcSet(dataDir, "evaluation")
      expect(training.length).toBe(400)
      expect(evaluation.length).toBe(400)
      const count = (set: ReadonlyArray<ArcTask>, part: "train" | "test") =>
        set.reduce((n, task) => n + task[part].length, 0)
      expect([count(training, "train"), count(training, "test")]).toEqual([1302, 416])
      expect([count(evaluation, "train"), count(evaluation, "test")]).toEqual([1363, 419])
      for (const set of [training, evaluation]) {
        const ids = set.map((task) => task.id)
        expect(ids).toEqual([...ids].sort())
        expect(new Set(ids).size).toBe(ids.length)
      }
      const first = training[0]!
      expect(first.id).toBe("007bbfb7")
      expect(first.train.length).toBe(5)
      expect(first.train[0]!.input).toEqual([[0, 7, 7], [7, 7, 7], [0, 7, 7]])
      expect(first.test.length).toBe(1)
      expect(first.test[0]!.output[0]).toEqual([7, 0, 7, 0, 0, 0, 7, 0, 7])
      expect(first.test[0]!.output.length).toBe(9)
    }))

  it.effect("loads SEAL's filtered subsets, each task equal to the full set's", () =>
    Effect.gen(function*() {
      const training = yield* loadNamedArcSet(dataDir, "training")
      const evaluation = yield* loadNamedArcSet(dataDir, "evaluation")
      const trainingFiltered = yield* loadNamedArcSet(dataDir, "training-filtered")
      const evaluationFiltered = yield* loadNamedArcSet(dataDir, "evaluation-filtered")
      expect(trainingFiltered.map((task) => task.id)).toEqual([
        "44f52bb0",
        "4be741c5",
        "5582e5ca",
        "5614dbcf",
        "5bd6f4ac",
        "6150a2bd",
        "67e8384a",
        "6d0aefbc",
        "6e02f1e3",
        "8be77c9e",
        "8d5021e8",
        "8e1813be"
      ])
      expect(evaluationFiltered.length).toBe(10)
      for (const [subset, full] of [[trainingFiltered, training], [evaluationFiltered, evaluation]] as const) {
        const byId = new Map(full.map((task) => [task.id, task]))
        for (const task of subset) expect(task).toEqual(byId.get(task.id))
      }
    }))

  it("names the files of each set", () => {
    expect(arcSetNames).toEqual(["training", "evaluation", "training-filtered", "evaluation-filtered"])
    expect(isArcSetName("evaluation-filtered")).toBe(true)
    expect(isArcSetName("eval")).toBe(false)
    const paths = arcSetFiles("/d", "evaluation-filtered")
    expect(paths).toEqual({
      challenges: Path.join("/d", "arc", "arc-agi_evaluation_challenges_filtered_1B_eval_set.json"),
      solutions: Path.join("/d", "arc", "arc-agi_evaluation_solutions_filtered_1B_eval_set.json")
    })
  })
})

describe("parseArcSet", () => {
  it("joins challenges and solutions in sorted id order", () => {
    const tasks = Either.getOrThrow(parseArcSet(challenges(), solutions(), files))
    expect(tasks).toEqual([
      {
        id: "aaa",
        train: [{ input: [[1, 1, 1]], output: [[2], [2], [2]] }],
        test: [{ input: [[3]], output: [[6]] }]
      },
      {
        id: "bbb",
        train: [{ input: [[1, 2], [3, 4]], output: [[4, 3], [2, 1]] }, { input: [[0]], output: [[9]] }],
        test: [{ input: [[5, 6]], output: [[6, 5]] }, { input: [[7], [8]], output: [[8], [7]] }]
      }
    ])
  })

  it("rejects a grid wider than 30 cells", () => {
    const c = challenges()
    c.bbb.train[1]!.input = [Array.from({ length: 31 }, () => 1)]
    const error = parseError(c, solutions())
    expect(error.reason).toBe("InvalidGrid")
    expect(error.file).toBe("c.json")
    expect(error.taskId).toBe("bbb")
    expect(error.field).toBe("train[1].input[0]")
    expect(error.message).toBe("c.json[\"bbb\"].train[1].input[0]: 31 cells in a row (at most 30)")
  })

  it("rejects a grid taller than 30 rows and an empty grid", () => {
    const tall = challenges()
    tall.aaa.test[0]!.input = Array.from({ length: 31 }, () => [0])
    expect(parseError(tall, solutions()).message).toBe("c.json[\"aaa\"].test[0].input: 31 rows (at most 30)")
    const empty = challenges()
    empty.aaa.train[0]!.output = []
    expect(parseError(empty, solutions()).message).toBe("c.json[\"aaa\"].train[0].output: the grid has no rows")
    const emptyRow = challenges()
    emptyRow.aaa.train[0]!.output = [[], []]
    expect(parseError(emptyRow, solutions()).field).toBe("train[0].output[0]")
  })

  it("rejects colours outside 0-9", () => {
    const c = challenges()
    c.bbb.train[0]!.output = [[4, 3], [2, 10]]
    const error = parseError(c, solutions())
    expect(error.reason).toBe("InvalidGrid")
    expect(error.taskId).toBe("bbb")
    expect(error.field).toBe("train[0].output[1][1]")
    expect(error.message).toBe("c.json[\"bbb\"].train[0].output[1][1]: 10 is not a colour (an integer 0-9)")
    const fraction = challenges()
    fraction.aaa.train[0]!.input = [[1, 1.5, 1]]
    expect(parseError(fraction, solutions()).field).toBe("train[0].input[0][1]")
    const negative = solutions()
    negative.bbb[1] = [[8], [-1]]
    const error2 = parseError(challenges(), negative)
    expect(error2.file).toBe("s.json")
    expect(error2.message).toBe("s.json[\"bbb\"][1][1][0]: -1 is not a colour (an integer 0-9)")
  })

  it("rejects ragged rows", () => {
    const c = challenges()
    c.aaa.train[0]!.output = [[2], [2, 2], [2]]
    const error = parseError(c, solutions())
    expect(error.reason).toBe("InvalidGrid")
    expect(error.taskId).toBe("aaa")
    expect(error.field).toBe("train[0].output[1]")
    expect(error.detail).toMatch(/not rectangular/)
  })

  it("rejects a task without demonstrations or test inputs", () => {
    const noTrain = challenges()
    noTrain.bbb.train = []
    const error = parseError(noTrain, solutions())
    expect([error.reason, error.taskId, error.field]).toEqual(["Malformed", "bbb", "train"])
    const noTest = challenges()
    noTest.aaa.test = []
    expect(parseError(noTest, solutions()).message).toBe("c.json[\"aaa\"].test: the task has no test inputs")
  })

  it("rejects JSON of the wrong shape, naming the task and field", () => {
    const c = challenges() as unknown as { aaa: { train: Array<{ input: unknown }> } }
    c.aaa.train[0]!.input = [["1"]]
    const error = parseError(c, solutions())
    expect(error.reason).toBe("Malformed")
    expect(error.taskId).toBe("aaa")
    expect(error.field).toBe("train[0].input[0][0]")
    expect(error.message).toBe("c.json[\"aaa\"].train[0].input[0][0]: expected number, actual \"1\"")
    const missing = { aaa: { train: challenges().aaa.train } }
    expect(parseError(missing, solutions()).message).toBe("c.json[\"aaa\"].test: is missing")
    const notRecord = parseError([], solutions())
    expect(notRecord.taskId).toBe(undefined)
    expect(notRecord.message).toMatch(/^c\.json: expected ArcChallengesFile/)
    const badSolutions = parseError(challenges(), { aaa: [[[6]]], bbb: [[6, 5]] })
    expect(badSolutions.file).toBe("s.json")
    expect(badSolutions.field).toBe("[0][0]")
  })

  it("rejects a task without a solution, and a solution without a task", () => {
    const s = solutions() as Partial<ReturnType<typeof solutions>>
    delete s.bbb
    const error = parseError(challenges(), s)
    expect(error.reason).toBe("Mismatch")
    expect(error.file).toBe("s.json")
    expect(error.taskId).toBe("bbb")
    expect(error.message).toBe("s.json[\"bbb\"]: no solution for this task of c.json")
    const extra = parseError(challenges(), { ...solutions(), ccc: [[[1]]] })
    expect([extra.reason, extra.taskId]).toEqual(["Mismatch", "ccc"])
    expect(extra.message).toBe("s.json[\"ccc\"]: no such task in c.json")
  })

  it("rejects the wrong number of solution grids", () => {
    const s = solutions()
    s.bbb = [[[6, 5]]]
    const error = parseError(challenges(), s)
    expect(error.reason).toBe("Mismatch")
    expect(error.taskId).toBe("bbb")
    expect(error.message).toBe("s.json[\"bbb\"]: 1 grid, but the task has 2 test inputs in c.json")
  })

  it("checks grids by the ARC rules", () => {
    expect(gridProblem([[0, 9], [9, 0]])).toBe(undefined)
    expect(gridProblem(Array.from({ length: 30 }, () => Array.from({ length: 30 }, () => 5)))).toBe(undefined)
    expect(gridProblem([[0, 1], [2]])).toEqual({
      path: "[1]",
      detail: "1 cell, but row 0 has 2 (the grid is not rectangular)"
    })
  })
})

describe("loadArcSet", () => {
  it.effect("loads a pair of files and names them in errors", () =>
    Effect.gen(function*() {
      const c = yield* writeTemp("my_challenges.json", JSON.stringify(challenges()))
      const s = yield* writeTemp("my_solutions.json", JSON.stringify(solutions()))
      const tasks = yield* loadArcSet(c, s)
      expect(tasks.map((task) => task.id)).toEqual(["aaa", "bbb"])
      const bad = solutions()
      bad.aaa = [[[6]], [[6]]]
      const s2 = yield* writeTemp("my_solutions.json", JSON.stringify(bad))
      const error = yield* Effect.flip(loadArcSet(c, s2))
      expect(error.message).toBe(
        "my_solutions.json[\"aaa\"]: 2 grids, but the task has 1 test input in my_challenges.json"
      )
    }))

  it.effect("distinguishes a missing file from invalid JSON", () =>
    Effect.gen(function*() {
      const s = yield* writeTemp("s.json", JSON.stringify(solutions()))
      const missing = yield* Effect.flip(loadArcSet("/nonexistent/arc_challenges.json", s))
      expect(missing._tag).toBe("ArcDataError")
      expect(missing.reason).toBe("NotFound")
      expect(missing.file).toBe("arc_challenges.json")
      const missingSet = yield* Effect.flip(loadNamedArcSet("/nonexistent", "training"))
      expect(missingSet.reason).toBe("NotFound")
      const broken = yield* writeTemp("broken.json", "{\"aaa\": {\"train\": ")
      const invalid = yield* Effect.flip(loadArcSet(broken, s))
      expect(invalid.reason).toBe("InvalidJson")
      expect(invalid.file).toBe("broken.json")
    }))
})
