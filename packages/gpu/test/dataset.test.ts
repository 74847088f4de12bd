import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { tempDir } from "../src/testing/HfFixture.js"
import type { DatasetError } from "../src/train/Dataset.js"
import { parseJsonlExamples, readJsonlExamples } from "../src/train/Dataset.js"

const errorOf = (text: string): DatasetError => {
  const result = parseJsonlExamples("data.jsonl", text)
  if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
  return result.left
}

describe("JSONL datasets", () => {
  it.scoped("reads text and prompt/completion lines, skipping blank ones and ignoring extra keys", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("dataset-read")
      const file = Path.join(dir, "train.jsonl")
      Fs.writeFileSync(
        file,
        "\uFEFF" + [
          JSON.stringify({ text: "Zibbo sang to the moon." }),
          "",
          "   ",
          JSON.stringify({ prompt: "Q: who sang?\nA:", completion: " Zibbo", source: "made up", id: 3 }),
          JSON.stringify({ prompt: "", completion: "x" })
        ].join("\r\n") + "\r\n"
      )
      expect(yield* readJsonlExamples(file)).toEqual([
        { text: "Zibbo sang to the moon." },
        { prompt: "Q: who sang?\nA:", completion: " Zibbo" },
        { prompt: "", completion: "x" }
      ])
    }))

  it.scoped("a missing file, a directory and an empty file are typed errors naming the file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("dataset-errors")
      const missing = yield* Effect.flip(readJsonlExamples(Path.join(dir, "nope.jsonl")))
      expect([missing.reason, missing.file]).toEqual(["NotFound", Path.join(dir, "nope.jsonl")])
      expect(missing.message).toBe(`${Path.join(dir, "nope.jsonl")}: no such file`)

      const directory = yield* Effect.flip(readJsonlExamples(dir))
      expect(directory.reason).toBe("NotFound")
      expect(directory.message).toMatch(/is a directory/)

      const empty = Path.join(dir, "empty.jsonl")
      Fs.writeFileSync(empty, "")
      const none = yield* Effect.flip(readJsonlExamples(empty))
      expect([none.reason, none.file]).toEqual(["Empty", empty])
      expect(none.message).toMatch(/empty/)
      Fs.writeFileSync(empty, "\n\n  \n")
      expect((yield* Effect.flip(readJsonlExamples(empty))).reason).toBe("Empty")
    }))

  it("a line that is not JSON names its 1-based line number, counting blank lines", () => {
    const error = errorOf(`{"text": "a"}\n\n{"text": "b"}\n{"text": "c"\n{"text": "d"}`)
    expect([error.reason, error.line]).toEqual(["InvalidJson", 4])
    expect(error.message).toMatch(/^data\.jsonl:4: not valid JSON/)
  })

  it("a line with the wrong fields names the line and the field", () => {
    const cases: Array<[string, number, string | undefined, RegExp]> = [
      [`{"text": 42}`, 1, "text", /string/],
      [`{"text": ""}`, 1, "text", /non empty/],
      [`{"prompt": "p"}`, 1, "completion", /missing/],
      [`{"prompt": "p", "completion": ""}`, 1, "completion", /non empty/],
      [`{"completion": "c"}`, 1, "prompt", /missing/],
      [`{"prompt": 1, "completion": "c"}`, 1, "prompt", /string/],
      [`{"txt": "typo"}`, 1, "text", /expected "text" or "prompt" and "completion"; found "txt"/],
      [`{"text": "t", "completion": "c"}`, 1, "text", /both/],
      [`"just a string"`, 1, undefined, /got a string/],
      [`[1, 2]`, 1, undefined, /got an array/],
      [`null`, 1, undefined, /got null/]
    ]
    for (const [line, number, field, detail] of cases) {
      const error = errorOf(`{"text": "fine"}\n${line}`)
      expect([error.reason, error.line, error.field], line).toEqual(["InvalidExample", number + 1, field])
      expect(error.message, line).toMatch(detail)
      expect(error.message, line).toMatch(
        new RegExp(`^data\\.jsonl:2${field === undefined ? "" : ` \\(${field}\\)`}: `)
      )
    }
  })
})
