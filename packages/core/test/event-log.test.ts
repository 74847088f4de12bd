import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as EventLog from "../src/EventLog.js"

/** A fresh temporary directory, removed when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "seal-event-log-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("EventLog", () => {
  it.scoped("appends events as synced JSON lines and reads them back in order", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "events.jsonl")
      const first = [{ type: "reward", round: 1, text: "a \"quoted\"\nline", reward: 0.5 }, {
        type: "update",
        round: 1
      }]
      yield* EventLog.append(path, first)
      yield* EventLog.append(path, [])
      yield* EventLog.append(path, [{ type: "reward", round: 2, text: "é ünïcode ✓" }])
      expect(Fs.readFileSync(path, "utf8").split("\n")).toHaveLength(4) // three lines and the final ""
      expect(yield* EventLog.read(path)).toEqual([...first, { type: "reward", round: 2, text: "é ünïcode ✓" }])
      // Reading a clean log does not touch it.
      const before = Fs.readFileSync(path, "utf8")
      yield* EventLog.read(path)
      expect(Fs.readFileSync(path, "utf8")).toBe(before)
    }))

  it.scoped("a missing file reads as no events (and is not created)", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "events.jsonl")
      expect(yield* EventLog.read(path)).toEqual([])
      expect(Fs.existsSync(path)).toBe(false)
      // Appending to a missing file creates it.
      yield* EventLog.append(path, [{ n: 1 }])
      expect(yield* EventLog.read(path)).toEqual([{ n: 1 }])
    }))

  it.scoped("a torn final line (half JSON, no newline) is dropped and cut off the file", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "events.jsonl")
      yield* EventLog.append(path, [{ n: 1, s: "ü" }, { n: 2 }])
      const clean = Fs.readFileSync(path, "utf8")
      Fs.appendFileSync(path, "{\"n\": 3, \"s\": \"hal")
      expect(yield* EventLog.read(path)).toEqual([{ n: 1, s: "ü" }, { n: 2 }])
      // Truncated on disk to the last complete line (byte length, not characters).
      expect(Fs.readFileSync(path, "utf8")).toBe(clean)
      // The next append starts on a fresh line.
      yield* EventLog.append(path, [{ n: 4 }])
      expect(yield* EventLog.read(path)).toEqual([{ n: 1, s: "ü" }, { n: 2 }, { n: 4 }])
      expect(Fs.readFileSync(path, "utf8")).toBe(clean + "{\"n\":4}\n")
    }))

  it.scoped("a final line that parses but has no newline is still torn (the sync never finished)", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "events.jsonl")
      Fs.writeFileSync(path, "{\"n\":1}\n{\"n\":2}")
      expect(yield* EventLog.read(path)).toEqual([{ n: 1 }])
      expect(Fs.readFileSync(path, "utf8")).toBe("{\"n\":1}\n")
      yield* EventLog.append(path, [{ n: 3 }])
      expect(yield* EventLog.read(path)).toEqual([{ n: 1 }, { n: 3 }])
    }))

  it.scoped("a log that is only a torn line reads as empty and becomes empty", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "events.jsonl")
      Fs.writeFileSync(path, "{\"n\":")
      expect(yield* EventLog.read(path)).toEqual([])
      expect(Fs.readFileSync(path, "utf8")).toBe("")
      yield* EventLog.append(path, [{ n: 1 }])
      expect(yield* EventLog.read(path)).toEqual([{ n: 1 }])
    }))

  it.scoped("a corrupt line in the middle is a Malformed error, and the file is left alone", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "events.jsonl")
      const text = "{\"n\":1}\nnot json\n{\"n\":3}\n"
      Fs.writeFileSync(path, text)
      const error = yield* Effect.flip(EventLog.read(path))
      expect(error._tag).toBe("RunDirectoryError")
      expect(error.reason).toBe("Malformed")
      expect(error.path).toBe(path)
      expect(error.detail).toContain("line 2")
      expect(Fs.readFileSync(path, "utf8")).toBe(text)
      // Also when a torn tail follows the corrupt line.
      Fs.writeFileSync(path, "{\"n\":1}\n{bad\n{\"n\":3}\n{\"n\":")
      expect((yield* Effect.flip(EventLog.read(path))).reason).toBe("Malformed")
      // A complete last line (newline written) that does not parse is corruption, not a tear.
      Fs.writeFileSync(path, "{\"n\":1}\nnot json\n")
      expect((yield* Effect.flip(EventLog.read(path))).reason).toBe("Malformed")
      expect(Fs.readFileSync(path, "utf8")).toBe("{\"n\":1}\nnot json\n")
    }))

  it.scoped("an unreadable path is an Io error", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // A directory where the file should be.
      expect((yield* Effect.flip(EventLog.read(dir))).reason).toBe("Io")
      expect((yield* Effect.flip(EventLog.append(dir, [{ n: 1 }]))).reason).toBe("Io")
    }))
})
