import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import { selfEditPrompt } from "../src/knowledge/SelfEditPrompts.js"
import type { SelfEditRecord } from "../src/knowledge/SelfEditSource.js"
import * as SelfEditSource from "../src/knowledge/SelfEditSource.js"
import type { EvaluationPassage } from "../src/knowledge/SquadData.js"
import { squadFiles } from "../src/knowledge/SquadData.js"

const files = squadFiles(fileURLToPath(new URL("../../../data/", import.meta.url)))

const tempDirs: Array<string> = []
afterAll(() => Promise.all(tempDirs.map((d) => Fs.rm(d, { recursive: true, force: true }))))

const writeTemp = (name: string, content: unknown) =>
  Effect.promise(async () => {
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "seal-self-edits-"))
    tempDirs.push(dir)
    const path = Path.join(dir, name)
    await Fs.writeFile(path, JSON.stringify(content))
    return path
  })

const evaluation: Array<EvaluationPassage> = [0, 1].map((position) => ({
  title: `T${position}`,
  context: `C${position}`,
  questions: [{ question: `Q${position}`, answer: `A${position}` }],
  position,
  index: 10 + position
}))

const record = (p: EvaluationPassage, completions = ["a", "b", "c", "d", "e"]): SelfEditRecord => ({
  title: p.title,
  context: p.context,
  questions: p.questions,
  completions
})

describe("SelfEditSource from SEAL's files", () => {
  it.effect("serves the five self-edits of each of the 200 evaluation passages", () =>
    Effect.gen(function*() {
      for (
        const [selfEdits, name] of [
          [files.selfEdits.base, "base_val.json"],
          [files.selfEdits.iter2, "iter2_val.json"],
          [files.selfEdits.gpt41, "gpt4_1_val.json"]
        ] as const
      ) {
        const source = yield* SelfEditSource.load({ selfEdits, squad: files.squad, shuffle: files.shuffle })
        expect(source.name).toBe(name)
        expect(source.size).toBe(200)
        const first = yield* source.get(0)
        expect(first.passage.index).toBe(1168)
        expect(first.passage.title).toBe("Genghis Khan")
        expect(first.completions).toHaveLength(5)
        expect(first.prompt).toBe(selfEditPrompt("implications", first.passage))
        const last = yield* source.get(199)
        expect(last.passage.position).toBe(199)
        const error = yield* Effect.flip(source.get(200))
        expect(error.reason).toBe("OutOfRange")
      }
    }))

  it.effect("is available as a layer", () =>
    Effect.gen(function*() {
      const source = yield* SelfEditSource.SelfEditSource
      const set = yield* source.get(3)
      expect(set.completions[0]!.length).toBeGreaterThan(0)
    }).pipe(
      Effect.provide(
        SelfEditSource.layer({ selfEdits: files.selfEdits.base, squad: files.squad, shuffle: files.shuffle })
      )
    ))
})

describe("SelfEditSource validation", () => {
  it("checks each record against its evaluation passage", () => {
    const ok = SelfEditSource.matchEvaluation("x.json", evaluation.map((p) => record(p)), evaluation)
    expect(Either.getOrThrow(ok).map((s) => s.passage.index)).toEqual([10, 11])

    const swapped = SelfEditSource.matchEvaluation(
      "x.json",
      [record(evaluation[1]!), record(evaluation[0]!)],
      evaluation
    )
    expect(Either.isLeft(swapped) && swapped.left.message).toBe(
      "x.json[0].title: differs from evaluation passage 0 (squad_val.json[10])"
    )

    const wrongAnswers = SelfEditSource.matchEvaluation(
      "x.json",
      [record(evaluation[0]!), { ...record(evaluation[1]!), questions: [{ question: "Q1", answer: "other" }] }],
      evaluation
    )
    expect(Either.isLeft(wrongAnswers) && [wrongAnswers.left.index, wrongAnswers.left.field]).toEqual([1, "questions"])

    const short = SelfEditSource.matchEvaluation("x.json", [record(evaluation[0]!)], evaluation)
    expect(Either.isLeft(short) && short.left.reason).toBe("Mismatch")

    const four = SelfEditSource.matchEvaluation(
      "x.json",
      [record(evaluation[0]!), record(evaluation[1]!, ["a", "b", "c", "d"])],
      evaluation
    )
    expect(Either.isLeft(four) && four.left.message).toBe("x.json[1].completions: expected 5 self-edits, found 4")
    const custom = SelfEditSource.matchEvaluation(
      "x.json",
      [record(evaluation[0]!, ["a"]), record(evaluation[1]!, ["b"])],
      evaluation,
      { completionsPerPassage: 1 }
    )
    expect(Either.isRight(custom)).toBe(true)
  })

  it.effect("reports malformed files by record and field", () =>
    Effect.gen(function*() {
      const path = yield* writeTemp("bad_val.json", [
        { ...record(evaluation[0]!), completions: ["a", "b", 3, "d", "e"] }
      ])
      const error = yield* Effect.flip(SelfEditSource.loadSelfEditFile(path))
      expect(error.message).toBe("bad_val.json[0].completions[2]: expected string, actual 3")
      const missing = yield* Effect.flip(
        SelfEditSource.load({ selfEdits: "/nonexistent/base_val.json", squad: files.squad, shuffle: files.shuffle })
      )
      expect(missing.reason).toBe("NotFound")
    }))

  it.effect("rejects a file whose passages are not SEAL's evaluation passages", () =>
    Effect.gen(function*() {
      const unordered = yield* writeTemp("unordered_val.json", [{
        title: "Super Bowl 50",
        context: "not the first shuffled passage",
        questions: [],
        completions: ["a", "b", "c", "d", "e"]
      }])
      const error = yield* Effect.flip(
        SelfEditSource.load({ selfEdits: unordered, squad: files.squad, shuffle: files.shuffle })
      )
      expect([error.reason, error.index, error.field]).toEqual(["Mismatch", 0, "title"])
    }))

  it("serves in-memory sets", () => {
    const sets = evaluation.map((passage) => ({ passage, completions: ["x"] }))
    const source = SelfEditSource.fromSets("memory", sets)
    expect(Effect.runSync(source.get(1)).passage.index).toBe(11)
    expect(Effect.runSync(Effect.flip(source.get(-1))).reason).toBe("OutOfRange")
    expect(Effect.runSync(Effect.flip(source.get(0.5))).reason).toBe("OutOfRange")
  })
})
