/**
 * A run's append-only event log (`events.jsonl`): one JSON object per line, each appended and
 * synced before the work it records is considered done. Results are derived from events, which is
 * what makes `--resume` exact: finished work is read back, never redone.
 *
 * A kill can cut the last line short: reading drops a final line that has no newline (and only
 * that one: any complete line that does not parse is corruption and an error).
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import { RunDirectoryError } from "./RunDirectory.js"

const io = (path: string) => (e: unknown) =>
  new RunDirectoryError({ reason: "Io", path, detail: e instanceof Error ? e.message : String(e) })

/** Appends `events` as lines and syncs the file. */
export const append = (path: string, events: ReadonlyArray<unknown>): Effect.Effect<void, RunDirectoryError> =>
  events.length === 0 ? Effect.void : Effect.tryPromise({
    try: async () => {
      const handle = await Fs.promises.open(path, "a")
      try {
        await handle.appendFile(events.map((e) => JSON.stringify(e) + "\n").join(""))
        await handle.sync()
      } finally {
        await handle.close()
      }
    },
    catch: io(path)
  })

/**
 * Reads every complete event. A torn final line (no newline) is cut off the file so
 * that the next append starts on a fresh line.
 */
export const read = (path: string): Effect.Effect<Array<unknown>, RunDirectoryError> =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => Fs.promises.readFile(path, "utf8"),
      catch: (e) => (e as { code?: string }).code === "ENOENT" ? "missing" as const : io(path)(e)
    }).pipe(Effect.catchIf((e) => e === "missing", () => Effect.succeed("")))
    const lines = text.split("\n")
    const events: Array<unknown> = []
    let keep = 0
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!
      const last = i === lines.length - 1
      if (line === "") {
        if (!last) keep += 1
        continue
      }
      try {
        if (last) throw new Error("no final newline")
        events.push(JSON.parse(line))
        keep += line.length + 1
      } catch {
        // Only a final line without its newline can be a torn write; anything else is corruption.
        if (!last) {
          return yield* new RunDirectoryError({
            reason: "Malformed",
            path,
            detail: `line ${i + 1} is not JSON (the log is corrupt, not just cut short)`
          })
        }
        // The torn tail: drop it from the file too.
        yield* Effect.tryPromise({
          try: () => Fs.promises.truncate(path, Buffer.byteLength(text.slice(0, keep))),
          catch: io(path)
        })
        break
      }
    }
    return events
  })
