import { Data, Effect } from "effect"

/**
 * Anything wrong with a checkpoint on disk. `file` is the path that was being read and `field`
 * names the header key, tensor or config entry at fault, so the CLI can print one line that
 * tells the user exactly what to fix.
 */
export class CheckpointError extends Data.TaggedError("CheckpointError")<{
  readonly file: string
  readonly field?: string
  readonly reason:
    | "NotFound"
    | "Truncated"
    | "Malformed"
    | "UnknownDtype"
    | "ShapeMismatch"
    | "MissingTensor"
    | "UnknownArchitecture"
    | "MissingTokenizer"
    | "Io"
  readonly detail: string
}> {
  override get message(): string {
    const where = this.field === undefined ? this.file : `${this.file} (${this.field})`
    return `${where}: ${this.detail}`
  }
}

/** Parses the text of the JSON file `file`; bad JSON is a Malformed CheckpointError naming it. */
export const parseJsonFile = (file: string, text: string): Effect.Effect<unknown, CheckpointError> =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (e) =>
      new CheckpointError({
        file,
        reason: "Malformed",
        detail: `not valid JSON: ${e instanceof Error ? e.message : String(e)}`
      })
  })
