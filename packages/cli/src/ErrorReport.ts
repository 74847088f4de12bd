import { Cause, Console, Effect, Option } from "effect"

/**
 * Turns a failure into the one line a user sees: the error's tag and message, no stack trace.
 * Typed errors carry their own messages (file, field, what to install); anything else is a
 * defect and says so.
 */
export const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return describeError(failure.value)
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) return `internal error: ${describeError(defect.value)}`
  if (Cause.isInterruptedOnly(cause)) return "interrupted"
  return Cause.pretty(cause).split("\n")[0]!
}

export const describeError = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const tag = "_tag" in error ? String(error._tag) : undefined
    const message = "message" in error && typeof error.message === "string" ? error.message : String(error)
    return tag === undefined ? message : `${tag}: ${message}`
  }
  return String(error)
}

/** Prints the failure as one line on stderr and sets a non-zero exit code. */
export const reportAndExit = <A, E, R>(program: Effect.Effect<A, E, R>): Effect.Effect<void, never, R> =>
  program.pipe(
    Effect.asVoid,
    Effect.catchAllCause((cause) =>
      Effect.gen(function*() {
        // @effect/cli has already printed help and validation errors itself.
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure) && isCliValidation(failure.value)) {
          process.exitCode = 2
          return
        }
        yield* Console.error(`seal: ${describeFailure(cause)}`)
        process.exitCode = 1
      })
    )
  )

const isCliValidation = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error
  && [
    "BuiltIn",
    "CommandMismatch",
    "CorrectedFlag",
    "HelpRequested",
    "InvalidArgument",
    "InvalidValue",
    "MissingValue",
    "MissingFlag",
    "MultipleValuesDetected",
    "MissingSubcommand",
    "NoBuiltInMatch",
    "UnclusteredFlag"
  ]
    .includes(String(error._tag))
