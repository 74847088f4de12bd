import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { cli } from "./Cli.js"
import { reportAndExit } from "./ErrorReport.js"

cli(process.argv).pipe(
  reportAndExit,
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // Ctrl-C interrupts the program (in-flight work stops at its next step, scopes close and free
    // their tensors); say so and exit 130, as shells expect of an interrupted command.
    teardown: (exit, onExit) => {
      if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
        process.stderr.write("seal: interrupted (a run directory can be continued with --resume)\n")
        onExit(130)
      } else onExit(Exit.isFailure(exit) ? 1 : typeof process.exitCode === "number" ? process.exitCode : 0)
    }
  })
)
