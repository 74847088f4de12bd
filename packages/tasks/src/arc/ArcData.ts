/**
 * ARC task files in the ARC Prize 2024 layout, as SEAL ships them:
 *
 * - `*_challenges.json`: `{ [taskId]: { train: [{ input, output }], test: [{ input }] } }`;
 * - `*_solutions.json`: `{ [taskId]: Grid[] }`, one output grid per test input, in order.
 *
 * Loading checks everything the rest of the ARC code relies on (rectangular grids of 1 to 30
 * cells a side with colours 0-9, at least one demonstration and one test input per task, exactly
 * one solution grid per test input, the same task ids in both files) and joins the two files into
 * `ArcTask`s whose test pairs carry their solution outputs.
 */
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import * as Path from "node:path"
import { firstSchemaIssue, formatFieldPath, readJsonDataFile } from "../DataFiles.js"
import type { ArcExample, ArcTask, Grid } from "./Grid.js"
import { colourCount, maxGridSide } from "./Grid.js"

/**
 * A grid as JSON: rows of numbers. The ARC rules (rectangular, 1-30 a side, colours 0-9) are
 * checked after decoding, so that breaking them is an `InvalidGrid` error rather than a schema
 * message about refinements.
 */
export const ArcGridJson = Schema.Array(Schema.Array(Schema.Number)).annotations({ identifier: "ArcGrid" })

export const ArcPairJson = Schema.Struct({ input: ArcGridJson, output: ArcGridJson }).annotations({
  identifier: "ArcPair"
})

export const ArcTestInputJson = Schema.Struct({ input: ArcGridJson }).annotations({ identifier: "ArcTestInput" })

export const ArcChallengeJson = Schema.Struct({
  train: Schema.Array(ArcPairJson),
  test: Schema.Array(ArcTestInputJson)
}).annotations({ identifier: "ArcChallenge" })
export type ArcChallengeJson = typeof ArcChallengeJson.Type

/** `{ [taskId]: { train, test } }`. */
export const ArcChallengesFile = Schema.Record({ key: Schema.String, value: ArcChallengeJson }).annotations({
  identifier: "ArcChallengesFile"
})
export type ArcChallengesFile = typeof ArcChallengesFile.Type

/** `{ [taskId]: Grid[] }`: the outputs of a task's test inputs, in order. */
export const ArcSolutionsFile = Schema.Record({ key: Schema.String, value: Schema.Array(ArcGridJson) }).annotations({
  identifier: "ArcSolutionsFile"
})
export type ArcSolutionsFile = typeof ArcSolutionsFile.Type

/**
 * Anything wrong with an ARC data file. `taskId` is the task at fault and `field` the path inside
 * it, so the message reads like
 * `arc-agi_training_challenges.json["007bbfb7"].train[2].output[3][4]: 10 is not a colour (0-9)`.
 *
 * NotFound / Unreadable / InvalidJson: the file itself; Malformed: JSON of the wrong shape, or a
 * task without demonstrations or test inputs; InvalidGrid: a grid that breaks the ARC rules;
 * Mismatch: challenges and solutions that do not belong together.
 */
export class ArcDataError extends Data.TaggedError("ArcDataError")<{
  readonly file: string
  readonly reason: "NotFound" | "Unreadable" | "InvalidJson" | "Malformed" | "InvalidGrid" | "Mismatch"
  readonly taskId?: string | undefined
  readonly field?: string | undefined
  readonly detail: string
}> {
  override get message(): string {
    return `${this.file}${formatLocation(this.taskId, this.field)}: ${this.detail}`
  }
}

const formatLocation = (taskId: string | undefined, field: string | undefined): string =>
  (taskId === undefined ? "" : `[${JSON.stringify(taskId)}]`) +
  (field === undefined || field === "" ? "" : field.startsWith("[") ? field : `.${field}`)

/**
 * Turns the first schema issue into a `Malformed` error. The files are records keyed by task id,
 * so the first path element is the task and the rest the field inside it.
 */
const parseErrorToArcDataError = (file: string, error: ParseResult.ParseError): ArcDataError => {
  const { path, detail } = firstSchemaIssue(error)
  const [head, ...rest] = path
  const taskId = typeof head === "string" ? head : undefined
  const fieldPath = taskId === undefined ? path : rest
  return new ArcDataError({
    file,
    reason: "Malformed",
    taskId,
    field: fieldPath.length === 0 ? undefined : formatFieldPath(fieldPath),
    detail
  })
}

const decodeFile = <A, I>(schema: Schema.Schema<A, I>, file: string) => (json: unknown) =>
  Schema.decodeUnknownEither(schema)(json).pipe(Either.mapLeft((e) => parseErrorToArcDataError(file, e)))

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`

/** What is wrong with a grid, if anything: `path` is relative to the grid (`""`, `[3]`, `[3][4]`). */
export interface GridProblem {
  readonly path: string
  readonly detail: string
}

/**
 * Checks the ARC rules: 1 to 30 rows, every row as long as the first, 1 to 30 cells a row, every
 * cell an integer colour 0-9. Returns the first problem in row-major order, or undefined.
 */
export const gridProblem = (grid: Grid): GridProblem | undefined => {
  if (grid.length === 0) return { path: "", detail: "the grid has no rows" }
  if (grid.length > maxGridSide) return { path: "", detail: `${grid.length} rows (at most ${maxGridSide})` }
  const columns = grid[0]!.length
  if (columns === 0) return { path: "[0]", detail: "the first row is empty" }
  if (columns > maxGridSide) return { path: "[0]", detail: `${columns} cells in a row (at most ${maxGridSide})` }
  for (let r = 0; r < grid.length; r++) {
    const row = grid[r]!
    if (row.length !== columns) {
      return {
        path: `[${r}]`,
        detail: `${plural(row.length, "cell")}, but row 0 has ${columns} (the grid is not rectangular)`
      }
    }
    for (let c = 0; c < columns; c++) {
      const cell = row[c]!
      if (!Number.isInteger(cell) || cell < 0 || cell >= colourCount) {
        return { path: `[${r}][${c}]`, detail: `${cell} is not a colour (an integer 0-${colourCount - 1})` }
      }
    }
  }
  return undefined
}

/** The names the files of a set are reported under (base names, as users see them). */
export interface ArcSetFileNames {
  readonly challenges: string
  readonly solutions: string
}

const defaultFileNames: ArcSetFileNames = { challenges: "challenges.json", solutions: "solutions.json" }

const checkGrid = (file: string, taskId: string, field: string, grid: Grid): Either.Either<void, ArcDataError> => {
  const problem = gridProblem(grid)
  return problem === undefined
    ? Either.void
    : Either.left(
      new ArcDataError({ file, reason: "InvalidGrid", taskId, field: field + problem.path, detail: problem.detail })
    )
}

const checkChallenge = (
  file: string,
  taskId: string,
  task: ArcChallengeJson
): Either.Either<void, ArcDataError> =>
  Either.gen(function*() {
    if (task.train.length === 0) {
      return yield* Either.left(
        new ArcDataError({
          file,
          reason: "Malformed",
          taskId,
          field: "train",
          detail: "the task has no demonstrations"
        })
      )
    }
    if (task.test.length === 0) {
      return yield* Either.left(
        new ArcDataError({ file, reason: "Malformed", taskId, field: "test", detail: "the task has no test inputs" })
      )
    }
    for (const [i, pair] of task.train.entries()) {
      yield* checkGrid(file, taskId, `train[${i}].input`, pair.input)
      yield* checkGrid(file, taskId, `train[${i}].output`, pair.output)
    }
    for (const [i, pair] of task.test.entries()) yield* checkGrid(file, taskId, `test[${i}].input`, pair.input)
  })

/**
 * Joins parsed challenges and solutions JSON into tasks, in sorted id order, checking both files
 * (see the module comment). `files` names the two files in errors.
 */
export const parseArcSet = (
  challengesJson: unknown,
  solutionsJson: unknown,
  files: ArcSetFileNames = defaultFileNames
): Either.Either<ReadonlyArray<ArcTask>, ArcDataError> =>
  Either.gen(function*() {
    const challenges = yield* decodeFile(ArcChallengesFile, files.challenges)(challengesJson)
    const solutions = yield* decodeFile(ArcSolutionsFile, files.solutions)(solutionsJson)
    const ids = Object.keys(challenges).sort()
    for (const id of ids) yield* checkChallenge(files.challenges, id, challenges[id]!)
    const solutionIds = Object.keys(solutions).sort()
    for (const id of solutionIds) {
      for (const [k, grid] of solutions[id]!.entries()) yield* checkGrid(files.solutions, id, `[${k}]`, grid)
    }
    const tasks: Array<ArcTask> = []
    for (const id of ids) {
      const challenge = challenges[id]!
      if (!Object.hasOwn(solutions, id)) {
        return yield* Either.left(
          new ArcDataError({
            file: files.solutions,
            reason: "Mismatch",
            taskId: id,
            detail: `no solution for this task of ${files.challenges}`
          })
        )
      }
      const outputs = solutions[id]!
      if (outputs.length !== challenge.test.length) {
        return yield* Either.left(
          new ArcDataError({
            file: files.solutions,
            reason: "Mismatch",
            taskId: id,
            detail: `${plural(outputs.length, "grid")}, but the task has ${
              plural(challenge.test.length, "test input")
            } in ${files.challenges}`
          })
        )
      }
      const train: Array<ArcExample> = challenge.train.map((pair) => ({ input: pair.input, output: pair.output }))
      const test: Array<ArcExample> = challenge.test.map((pair, k) => ({ input: pair.input, output: outputs[k]! }))
      tasks.push({ id, train, test })
    }
    for (const id of solutionIds) {
      if (!Object.hasOwn(challenges, id)) {
        return yield* Either.left(
          new ArcDataError({
            file: files.solutions,
            reason: "Mismatch",
            taskId: id,
            detail: `no such task in ${files.challenges}`
          })
        )
      }
    }
    return tasks
  })

/** Reads and parses a JSON file; errors name the file by its base name, as users see it. */
const readJsonFile = (path: string): Effect.Effect<unknown, ArcDataError> =>
  readJsonDataFile(path, (failure) => new ArcDataError(failure))

/** Loads a challenges file and its solutions file as tasks in sorted id order. */
export const loadArcSet = (
  challengesPath: string,
  solutionsPath: string
): Effect.Effect<ReadonlyArray<ArcTask>, ArcDataError> =>
  Effect.gen(function*() {
    const challenges = yield* readJsonFile(challengesPath)
    const solutions = yield* readJsonFile(solutionsPath)
    return yield* parseArcSet(challenges, solutions, {
      challenges: Path.basename(challengesPath),
      solutions: Path.basename(solutionsPath)
    })
  })

/**
 * The ARC sets in `data/arc`: ARC-AGI-1's 400 training and 400 evaluation tasks, and SEAL's
 * subsets of them (12 training and 10 evaluation tasks that test-time training of a 1B model
 * can solve with a good configuration).
 */
export const arcSetNames = ["training", "evaluation", "training-filtered", "evaluation-filtered"] as const
export type ArcSetName = typeof arcSetNames[number]

export const isArcSetName = (name: string): name is ArcSetName => (arcSetNames as ReadonlyArray<string>).includes(name)

const arcSetFileNames: Record<ArcSetName, ArcSetFileNames> = {
  training: {
    challenges: "arc-agi_training_challenges.json",
    solutions: "arc-agi_training_solutions.json"
  },
  evaluation: {
    challenges: "arc-agi_evaluation_challenges.json",
    solutions: "arc-agi_evaluation_solutions.json"
  },
  "training-filtered": {
    challenges: "arc-agi_training_challenges_filtered_1B_training_set.json",
    solutions: "arc-agi_training_solutions_filtered_1B_training_set.json"
  },
  "evaluation-filtered": {
    challenges: "arc-agi_evaluation_challenges_filtered_1B_eval_set.json",
    solutions: "arc-agi_evaluation_solutions_filtered_1B_eval_set.json"
  }
}

/**
 * The two files of a named set under a data directory laid out like the repository's `data/`
 * (the files live in its `arc/` folder, as `squadFiles` finds `squad/`).
 */
export const arcSetFiles = (
  dataDir: string,
  name: ArcSetName
): { readonly challenges: string; readonly solutions: string } => {
  const names = arcSetFileNames[name]
  const dir = Path.join(dataDir, "arc")
  return { challenges: Path.join(dir, names.challenges), solutions: Path.join(dir, names.solutions) }
}

/** Loads a named set from a data directory laid out like the repository's `data/`. */
export const loadNamedArcSet = (
  dataDir: string,
  name: ArcSetName
): Effect.Effect<ReadonlyArray<ArcTask>, ArcDataError> => {
  const files = arcSetFiles(dataDir, name)
  return loadArcSet(files.challenges, files.solutions)
}
