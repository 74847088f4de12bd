/**
 * Run directories: every run writes into its own directory, never a shared fixed path, and every
 * file appears atomically (a temporary file in the same directory, then a rename), so a killed run
 * leaves either the old file or the new one, never half of one.
 */
import { Data, Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"

export class RunDirectoryError extends Data.TaggedError("RunDirectoryError")<{
  readonly reason: "Exists" | "NotFound" | "Io" | "Malformed"
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.path}: ${this.detail}`
  }
}

const io = (path: string) => (e: unknown) =>
  new RunDirectoryError({ reason: "Io", path, detail: e instanceof Error ? e.message : String(e) })

/** A name that sorts by time and does not collide between runs started in the same second. */
export const timestampedName = (prefix: string, now: Date = new Date()): string =>
  `${prefix}-${now.toISOString().replace(/[:.]/g, "-").replace(/Z$/, "")}-${
    Math.floor(Math.random() * 0x10000).toString(16).padStart(4, "0")
  }`

/** The file that marks a directory as claimed by a run. */
export const runMarker = ".seal-run"

/**
 * Creates `dir` for a new run; fails with `Exists` when it holds anything already, so two runs
 * never write into one directory.
 */
export const createFresh = (dir: string): Effect.Effect<string, RunDirectoryError> =>
  Effect.gen(function*() {
    const exists = () =>
      new RunDirectoryError({
        reason: "Exists",
        path: dir,
        detail: "is not empty; every run needs a new directory (choose another --out)"
      })
    const entries = yield* Effect.promise(() => Fs.promises.readdir(dir).then((e) => e, () => undefined))
    if (entries !== undefined && entries.length > 0) return yield* exists()
    yield* Effect.tryPromise({ try: () => Fs.promises.mkdir(dir, { recursive: true }), catch: io(dir) })
    // Claim the directory with an exclusive create: of two runs started at once, one fails here.
    yield* Effect.tryPromise({
      try: () => Fs.promises.writeFile(Path.join(dir, runMarker), `${process.pid}\n`, { flag: "wx" }),
      catch: (e) => ((e as { code?: string }).code === "EEXIST" ? exists() : io(dir)(e))
    })
    return dir
  })

/** Writes `contents` to `path` atomically. */
export const writeFileAtomic = (
  path: string,
  contents: string | Uint8Array
): Effect.Effect<void, RunDirectoryError> => {
  const temp = Path.join(
    Path.dirname(path),
    `.${Path.basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`
  )
  return Effect.tryPromise({
    try: async () => {
      const handle = await Fs.promises.open(temp, "w")
      try {
        await handle.writeFile(contents)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await Fs.promises.rename(temp, path)
    },
    catch: io(path)
  }).pipe(Effect.onError(() => Effect.promise(() => Fs.promises.rm(temp, { force: true }))))
}

/** Pretty JSON with a final newline, written atomically. */
export const writeJson = (path: string, value: unknown): Effect.Effect<void, RunDirectoryError> =>
  writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n")

export const readJson = (path: string): Effect.Effect<unknown, RunDirectoryError> =>
  Effect.tryPromise({
    try: () => Fs.promises.readFile(path, "utf8"),
    catch: (e) =>
      (e as { code?: string }).code === "ENOENT"
        ? new RunDirectoryError({ reason: "NotFound", path, detail: "no such file" })
        : io(path)(e)
  }).pipe(
    Effect.flatMap((text) =>
      Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: () => new RunDirectoryError({ reason: "Malformed", path, detail: "is not valid JSON" })
      })
    )
  )
