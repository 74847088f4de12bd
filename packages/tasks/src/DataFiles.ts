/**
 * Reading the JSON data files the tasks ship (SQuAD, ARC), with errors that name the file the
 * way users see it; each task wraps the failure in its own typed error.
 */
import { Effect, ParseResult } from "effect"
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

/** `["train", 2, "output"]` -> `train[2].output`; `[1, 3]` -> `[1][3]`. */
export const formatFieldPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) => typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`,
    ""
  )

/**
 * The first issue of a schema failure: its path in the file and its message, lower-cased to
 * follow a location and clipped (the whole failure's message, and no path, when there is none).
 */
export const firstSchemaIssue = (
  error: ParseResult.ParseError
): { readonly path: ReadonlyArray<PropertyKey>; readonly detail: string } => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  if (issue === undefined) return { path: [], detail: clipDetail(error.message) }
  const text = issue.message.length > 0 ? issue.message[0]!.toLowerCase() + issue.message.slice(1) : issue.message
  return { path: issue.path, detail: clipDetail(text) }
}
