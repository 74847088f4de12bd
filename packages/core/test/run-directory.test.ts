import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { createFresh, readJson, timestampedName, writeFileAtomic, writeJson } from "../src/RunDirectory.js"

/** A fresh temporary directory, removed when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "seal-run-dir-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("RunDirectory", () => {
  it.scoped("createFresh creates a missing directory (with parents) and accepts an empty one", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const dir = Path.join(root, "a", "b", "run")
      expect(Fs.existsSync(dir)).toBe(false)
      expect(yield* createFresh(dir)).toBe(dir)
      expect(Fs.statSync(dir).isDirectory()).toBe(true)
      // Claimed: a second run may not take it, even at the same moment.
      expect(Fs.readdirSync(dir)).toEqual([".seal-run"])
      expect((yield* Effect.flip(createFresh(dir))).reason).toBe("Exists")
      const both = yield* Effect.all([createFresh(Path.join(root, "race")), createFresh(Path.join(root, "race"))], {
        concurrency: "unbounded",
        mode: "either"
      })
      expect(both.filter((r) => r._tag === "Right")).toHaveLength(1)
      // An empty directory made by someone else is accepted.
      Fs.mkdirSync(Path.join(root, "empty"))
      expect(yield* createFresh(Path.join(root, "empty"))).toBe(Path.join(root, "empty"))
    }))

  it.scoped("createFresh refuses a directory that holds anything (reason Exists) and leaves it alone", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      Fs.writeFileSync(Path.join(root, "metrics.json"), "{}")
      const error = yield* Effect.flip(createFresh(root))
      expect(error._tag).toBe("RunDirectoryError")
      expect(error.reason).toBe("Exists")
      expect(error.path).toBe(root)
      expect(error.message).toContain(root)
      expect(Fs.readdirSync(root)).toEqual(["metrics.json"])
      // A hidden file counts too.
      const hidden = Path.join(root, "hidden")
      Fs.mkdirSync(hidden)
      Fs.writeFileSync(Path.join(hidden, ".lock"), "")
      expect((yield* Effect.flip(createFresh(hidden))).reason).toBe("Exists")
    }))

  it.scoped("writeJson writes pretty JSON atomically: no temporary file is left, the content parses", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const file = Path.join(root, "report.json")
      const value = { table: [{ method: "base", accuracy: 0.25 }], nested: { ok: true, list: [1, 2, 3] } }
      yield* writeJson(file, value)
      expect(Fs.readdirSync(root)).toEqual(["report.json"])
      const text = Fs.readFileSync(file, "utf8")
      expect(text.endsWith("}\n")).toBe(true)
      expect(text).toContain("\n  \"table\"")
      expect(JSON.parse(text)).toEqual(value)
      expect(yield* readJson(file)).toEqual(value)
      // Overwriting replaces the whole file, again without leftovers.
      yield* writeJson(file, [1])
      expect(yield* readJson(file)).toEqual([1])
      expect(Fs.readdirSync(root)).toEqual(["report.json"])
    }))

  it.scoped("a failed atomic write reports Io and removes its temporary file", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      // The rename onto an existing non-empty directory fails after the temporary file was written.
      const target = Path.join(root, "taken")
      Fs.mkdirSync(target)
      Fs.writeFileSync(Path.join(target, "x"), "x")
      const error = yield* Effect.flip(writeFileAtomic(target, "data"))
      expect(error.reason).toBe("Io")
      expect(error.path).toBe(target)
      expect(Fs.readdirSync(root)).toEqual(["taken"])
      // A missing parent directory is an Io failure too.
      const missing = Path.join(root, "nope", "file.json")
      expect((yield* Effect.flip(writeJson(missing, {}))).reason).toBe("Io")
    }))

  it.scoped("readJson reports NotFound for a missing file and Malformed for invalid JSON", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const missing = Path.join(root, "missing.json")
      const notFound = yield* Effect.flip(readJson(missing))
      expect([notFound.reason, notFound.path]).toEqual(["NotFound", missing])
      const bad = Path.join(root, "bad.json")
      Fs.writeFileSync(bad, "{\"a\": 1,")
      const malformed = yield* Effect.flip(readJson(bad))
      expect([malformed.reason, malformed.path]).toEqual(["Malformed", bad])
      // A directory is neither: it is an Io failure.
      expect((yield* Effect.flip(readJson(root))).reason).toBe("Io")
    }))

  it("timestampedName sorts by time, carries the prefix and differs between two calls", () => {
    const now = new Date("2025-03-04T05:06:07.089Z")
    const a = timestampedName("eval", now)
    const b = timestampedName("eval", now)
    expect(a).toMatch(/^eval-2025-03-04T05-06-07-089-[0-9a-f]{4}$/)
    expect(b).toMatch(/^eval-2025-03-04T05-06-07-089-[0-9a-f]{4}$/)
    expect(a).not.toBe(b)
    const later = timestampedName("eval", new Date("2025-03-04T05:06:08.000Z"))
    expect([later, a].sort()).toEqual([a, later])
    // Names are usable as a single path component.
    expect(timestampedName("run")).not.toMatch(/[:/\\.]/)
    expect(timestampedName("run")).not.toBe(timestampedName("run"))
  })
})
