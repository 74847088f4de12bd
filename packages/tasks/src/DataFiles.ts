/**
 * Reading the JSON data files the tasks ship (SQuAD, ARC), with errors that name the file the
 * way users see it; each task wraps the failure in its own typed error.
 */
import { Effect } from "effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"

export interface DataFileFailure {
  /** The file's base name. */
  readonly file: string
  readonly reason: "NotFound" | "Unreadable" | "InvalidJson"
  readonly detail: string
}

// Schema and JSON.parse print the offending text in full; a whole passage in an error line helps nobody.
const maxDetailLength = 200

/** `text`, cut to a length an error line can carry. */
export const clipDetail = (text: string): string =>
  text.length <= maxDetailLength ? text : `${text.slice(0, maxDetailLength)}…`

/** Reads and parses a JSON file; a failure becomes `toError` of what went wrong. */
export const readJsonDataFile = <E>(
  path: string,
  toError: (failure: DataFileFailure) => E
): Effect.Effect<unknown, E> => {
  const file = Path.basename(path)
  return Effect.tryPromise({
    try: () => Fs.readFile(path, "utf8"),
    catch: (e) =>
      toError({
        file,
        reason: (e as NodeJS.ErrnoException)?.code === "ENOENT" ? "NotFound" : "Unreadable",
        detail: `cannot read ${path}: ${String(e)}`
      })
  }).pipe(
    Effect.flatMap((text) =>
      Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: (e) => toError({ file, reason: "InvalidJson", detail: clipDetail(String(e)) })
      })
    )
  )
}
