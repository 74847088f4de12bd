import { spawn } from "node:child_process"

/**
 * Each benchmark configuration runs in its own process (a fresh tfjs engine and wasm heap, no
 * warm caches from the configuration before). These helpers are what the benchmarks share.
 */

export interface ProcessResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `command args`, feeding `stdin`, and collects its output. */
export const runProcess = (
  command: string,
  args: ReadonlyArray<string>,
  stdin: string,
  env: NodeJS.ProcessEnv = process.env
): Promise<ProcessResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], env })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin)
  })

export const lastLine = (text: string): string => text.trim().split("\n").slice(-1)[0] ?? ""

/** Node arguments that run a TypeScript file: the parent's own loader when it has one, else tsx. */
export const tsxArgs = (): Array<string> =>
  process.execArgv.some((arg) => arg.includes("tsx")) ? [...process.execArgv] : ["--import", import.meta.resolve("tsx")]

/**
 * Runs `file --child` with `spec` as JSON on stdin and returns the JSON the child printed after
 * `marker`; a child that fails is an error naming `label` and the child's last words.
 */
export const spawnChild = async <R>(file: string, marker: string, spec: unknown, label: string): Promise<R> => {
  const { code, stderr, stdout } = await runProcess(
    process.execPath,
    [...tsxArgs(), file, "--child"],
    JSON.stringify(spec)
  )
  const line = stdout.split("\n").find((l) => l.startsWith(marker))
  if (code !== 0 || line === undefined) {
    throw new Error(`${label} exited with ${code}: ${lastLine(stderr) || lastLine(stdout)}`)
  }
  return JSON.parse(line.slice(marker.length)) as R
}

/** `--name value` from the command line. */
export const flag = (name: string): string | undefined => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

export const numberFlag = (name: string): number | undefined => {
  const value = flag(name)
  return value === undefined ? undefined : Number(value)
}

/** In a child: reads the JSON spec from stdin, runs it and prints the result after `marker`. */
export const serveChild = async <S, R>(marker: string, run: (spec: S) => Promise<R>): Promise<never> => {
  let text = ""
  for await (const chunk of process.stdin) text += String(chunk)
  const result = await run(JSON.parse(text) as S)
  process.stdout.write(`${marker}${JSON.stringify(result)}\n`)
  // The threaded wasm backend's workers are unref'd, but leave nothing to chance.
  process.exit(0)
}
