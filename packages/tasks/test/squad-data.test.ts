import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import type { SquadPassage } from "../src/knowledge/SquadData.js"
import {
  decodeSquad,
  loadShuffle,
  loadSquad,
  sealEvaluationPassages,
  SquadDataError,
  squadFiles
} from "../src/knowledge/SquadData.js"

const files = squadFiles(fileURLToPath(new URL("../../../data/", import.meta.url)))

const tempDirs: Array<string> = []
afterAll(() => Promise.all(tempDirs.map((d) => Fs.rm(d, { recursive: true, force: true }))))

const writeTemp = (name: string, content: string) =>
  Effect.promise(async () => {
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "seal-squad-"))
    tempDirs.push(dir)
    const path = Path.join(dir, name)
    await Fs.writeFile(path, content)
    return path
  })

const passage = (i: number): SquadPassage => ({
  title: `T${i}`,
  context: `context ${i}`,
  questions: [{ question: "q0", answer: "a0" }, { question: "q1", answer: "a1" }, { question: "q2", answer: "a2" }]
})

describe("loadSquad", () => {
  it.effect("loads the SQuAD v1.1 dev set in SEAL's format", () =>
    Effect.gen(function*() {
      const squad = yield* loadSquad(files.squad)
      expect(squad.length).toBe(2067)
      expect(squad.reduce((n, p) => n + p.questions.length, 0)).toBe(10570)
      expect(squad[0]!.title).toBe("Super Bowl 50")
      expect(squad[0]!.questions[0]).toEqual({
        question: "Which NFL team represented the AFC at Super Bowl 50?",
        answer: "Denver Broncos"
      })
    }))

  it.effect("names the record and field of a malformed entry", () =>
    Effect.gen(function*() {
      const records: Array<unknown> = Array.from({ length: 20 }, (_, i) => passage(i))
      const bad = structuredClone(records[17]) as { questions: Array<{ answer: unknown }> }
      bad.questions[2]!.answer = 5
      records[17] = bad
      const path = yield* writeTemp("squad_val.json", JSON.stringify(records))
      const error = yield* Effect.flip(loadSquad(path))
      expect(error).toBeInstanceOf(SquadDataError)
      expect(error.reason).toBe("Malformed")
      expect(error.index).toBe(17)
      expect(error.field).toBe("questions[2].answer")
      expect(error.message).toBe("squad_val.json[17].questions[2].answer: expected string, actual 5")
    }))

  it("reports missing fields and wrong shapes", () => {
    const missing = decodeSquad([passage(0), { title: "x", questions: [] }])
    expect(Either.isLeft(missing) && missing.left.message).toBe("squad_val.json[1].context: is missing")
    const notList = decodeSquad({ data: [] })
    expect(Either.isLeft(notList) && notList.left.index).toBe(undefined)
    expect(Either.isLeft(notList) && notList.left.message).toMatch(/^squad_val\.json: expected SquadFile/)
    const notRecord = decodeSquad([passage(0), 7])
    expect(Either.isLeft(notRecord) && notRecord.left.message).toBe(
      "squad_val.json[1]: expected SquadPassage, actual 7"
    )
  })

  it.effect("distinguishes a missing file from invalid JSON", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(loadSquad("/nonexistent/squad_val.json"))
      expect(missing.reason).toBe("NotFound")
      const path = yield* writeTemp("broken.json", "[{\"title\": ")
      const broken = yield* Effect.flip(loadSquad(path))
      expect(broken.reason).toBe("InvalidJson")
      expect(broken.file).toBe("broken.json")
    }))
})

describe("sealEvaluationPassages", () => {
  it.effect("takes the first 200 passages of the seed-42 shuffle", () =>
    Effect.gen(function*() {
      const squad = yield* loadSquad(files.squad)
      const shuffle = yield* loadShuffle(files.shuffle)
      const evaluation = yield* sealEvaluationPassages(squad, shuffle)
      expect(evaluation.length).toBe(200)
      expect(evaluation.slice(0, 3).map((p) => [p.position, p.index])).toEqual([[0, 1168], [1, 760], [2, 685]])
      expect(evaluation[0]!.title).toBe("Genghis Khan")
      expect(evaluation[0]).toMatchObject(squad[1168]!)
      const all = yield* sealEvaluationPassages(squad, shuffle, squad.length)
      expect(new Set(all.map((p) => p.index)).size).toBe(squad.length)
    }))

  it("rejects a shuffle that is not a permutation of the dataset", () => {
    const squad = [passage(0), passage(1), passage(2)]
    const short = sealEvaluationPassages(squad, { order: [0, 1] }, 1)
    expect(Either.isLeft(short) && short.left.reason).toBe("Mismatch")
    const twice = sealEvaluationPassages(squad, { order: [0, 1, 1] }, 1)
    expect(Either.isLeft(twice) && twice.left.message).toBe(
      "seal-shuffle-seed42.json.order[2]: index 1 appears twice"
    )
    const outside = sealEvaluationPassages(squad, { order: [0, 1, 3] }, 1)
    expect(Either.isLeft(outside) && outside.left.field).toBe("order[2]")
    const tooMany = sealEvaluationPassages(squad, { order: [2, 0, 1] }, 4)
    expect(Either.isLeft(tooMany) && tooMany.left.reason).toBe("OutOfRange")
    const ok = sealEvaluationPassages(squad, { order: [2, 0, 1] }, 2)
    expect(Either.getOrThrow(ok).map((p) => p.index)).toEqual([2, 0])
  })
})
