import { spawn, spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { expect } from "vitest"

/** The `seal` executable, run with this Node. */
export const bin = fileURLToPath(new URL("../../bin/seal.mjs", import.meta.url))

export interface Run {
  readonly code: number | null
  readonly signal?: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * For quick commands only: `spawnSync` stalls the test worker's event loop, and vitest reports an
 * RPC timeout (an error that fails the run) once that lasts 60 s. Await `sealAsync` for whole runs.
 */
export const seal = (...args: Array<string>): Run => {
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 300_000 })
  return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr }
}

/** Runs `seal` without blocking; `onStart` gets the child (e.g. to kill it). */
export const sealAsync = (
  args: ReadonlyArray<string>,
  onStart?: (child: ReturnType<typeof spawn>) => void
): Promise<Run> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { timeout: 300_000 })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += String(d)))
    child.stderr.on("data", (d) => (stderr += String(d)))
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
    onStart?.(child)
  })

/** The user-facing error: one `seal: ...` line on stderr, exit code 1, no stack trace. */
export const expectOneLineError = (run: Run, pattern: RegExp) => {
  expect(run.code, run.stderr).toBe(1)
  const lines = run.stderr.split("\n").filter((l) => l.startsWith("seal: "))
  expect(lines, run.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(pattern)
  expect(run.stderr).not.toMatch(/^\s+at /m)
}
