/**
 * Generation tokens/s on models/stories260K.gguf: ours (LanguageModel over TensorRuntime) beside
 * llama.cpp (node-llama-cpp, run by llama-cpp-generate.mjs from a folder outside the repository),
 * in the same run, on the same prompt, greedy, the same number of new tokens.
 *
 *   ours, wasm          TensorRuntime.layer({ backend: "wasm" }): tfjs-backend-wasm with the kernel
 *                       overrides (registerWasmKernels), 1 thread
 *   ours, wasm N thr.   the same after enableWasmThreads(N) (only where N >= 2 cores)
 *   ours, cpu           TensorRuntime.layer({ backend: "cpu" }): tfjs-backend-cpu (plain JS)
 *   llama.cpp           1 and N threads, F32 KV cache where it accepts one
 * each at batch 1 and batch 8 (8 copies of the prompt; tokens/s counts every row's tokens).
 *
 * Timed: one `generate` call, from the prompt to the last new token (prompt processing plus
 * `newTokens - 1` decode steps), after the model is loaded and one unmeasured warm-up call; the
 * median of `runs` calls is reported. EOS does not stop either engine, so every run makes exactly
 * `newTokens` tokens per row. Each of our configurations runs in its own child process (the
 * threaded wasm binary can only be chosen before the backend first initialises).
 *
 * Run: npx tsx tools/bench/generation.ts [--runs 5] [--tokens 128] [--threads N] [--budget-s 30] [--nlc-dir DIR]
 */
import { Effect } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { flag, lastLine, runProcess, serveChild, spawnChild } from "./ChildProcess.js"

export type OurBackend = "wasm" | "cpu"

export interface GenerationBenchOptions {
  /** Measured calls per configuration (after one warm-up); the median is reported. */
  readonly runs?: number
  /** A configuration stops measuring after this many seconds once it has 3 runs (default 30). */
  readonly budgetSeconds?: number
  readonly newTokens?: number
  readonly prompt?: string
  readonly model?: string
  readonly batches?: ReadonlyArray<number>
  /** Threads for the threaded configurations (wasm and llama.cpp); below 2 drops them. */
  readonly threads?: number
  /** The folder holding node-llama-cpp (else llama-cpp-generate.mjs's defaults). */
  readonly nlcDir?: string | undefined
}

export interface GenerationRow {
  readonly engine: "ours" | "llama.cpp"
  /** `wasm`, `cpu` or `llama.cpp`. */
  readonly backend: string
  readonly threads: number
  readonly batch: number
  readonly runsMs: ReadonlyArray<number>
  /** batch × newTokens over the whole call, median over runs. */
  readonly tokensPerSecond: number
  /** batch × (newTokens - 1) over the time after the first token, median over runs. */
  readonly decodeTokensPerSecond: number
  readonly firstTokenMs: number
  /** Our rows: tokensPerSecond / llama.cpp's at the same threads and batch. */
  readonly ratioToLlamaCpp?: number | undefined
  readonly note?: string | undefined
}

export interface CrossCheck {
  /** Leading tokens where llama.cpp's greedy output equals ours (wasm, batch 1). */
  readonly equalPrefix: number
  readonly compared: number
  readonly promptTokensEqual: boolean
  /** Every one of our configurations, batch rows and runs gave the same tokens. */
  readonly oursConsistent: boolean
  readonly llamaCppConsistent: boolean
}

export interface GenerationBenchReport {
  readonly rows: Array<GenerationRow>
  readonly crossCheck: CrossCheck | undefined
  /** Why the llama.cpp side did not run, with how to install it. */
  readonly skipped: string | undefined
  readonly environment: ReadonlyArray<string>
  readonly errors: ReadonlyArray<string>
  readonly markdown: string
}

const thisFile = fileURLToPath(import.meta.url)
const repoRoot = path.resolve(path.dirname(thisFile), "../..")
const defaultModel = path.join(repoRoot, "models/stories260K.gguf")
const childMarker = "@@generation-bench "

interface ChildSpec {
  readonly backend: OurBackend
  readonly threads: number
  readonly batches: ReadonlyArray<number>
  readonly runs: number
  readonly budgetMs: number
  readonly newTokens: number
  readonly prompt: string
  readonly model: string
}

interface Measured {
  readonly batch: number
  readonly runsMs: ReadonlyArray<number>
  readonly firstTokenMs: ReadonlyArray<number>
  readonly tokens: ReadonlyArray<ReadonlyArray<number>>
}

interface ChildResult {
  readonly threads: number
  readonly simd: boolean
  readonly tfjsBackend: string
  readonly kernelOverrides: boolean
  readonly promptTokens: ReadonlyArray<number>
  readonly measured: ReadonlyArray<Measured>
  readonly leakedTensors: number
}

/** Runs inside a child process: one backend, every batch size. */
const runChild = async (spec: ChildSpec): Promise<ChildResult> => {
  const { LanguageModel, layer: languageModelLayer } = await import("@seal/gpu/LanguageModel")
  const { TensorRuntime, layer: runtimeLayer } = await import("@seal/gpu/TensorRuntime")
  let kernels: typeof import("@seal/gpu/wasm/WasmKernels") | undefined
  if (spec.backend === "wasm") {
    kernels = await import("@seal/gpu/wasm/WasmKernels")
    if (spec.threads >= 2) {
      const result = kernels.enableWasmThreads(spec.threads)
      if (!result.enabled) throw new Error(`wasm threads not enabled: ${result.reason}`)
    }
  }
  const program = Effect.gen(function*() {
    const runtime = yield* TensorRuntime
    const model = yield* LanguageModel
    const tensorsBefore = runtime.tf.memory().numTensors
    const measured: Array<Measured> = []
    let promptTokens: ReadonlyArray<number> = []
    for (const batch of spec.batches) {
      const prompts = Array.from({ length: batch }, () => spec.prompt)
      let firstAt = 0
      const request = {
        maxTokens: spec.newTokens,
        temperature: 0,
        stopAtEos: false,
        onLogits: (step: number, row: number) => {
          if (step === 0 && row === 0) firstAt = performance.now()
        }
      }
      yield* model.generate(prompts, request) // warm-up
      const runsMs: Array<number> = []
      const firstTokenMs: Array<number> = []
      const tokens: Array<ReadonlyArray<number>> = []
      const started = performance.now()
      for (let r = 0; r < spec.runs; r++) {
        if (r >= Math.min(3, spec.runs) && performance.now() - started > spec.budgetMs) break
        const start = performance.now()
        const rows = yield* model.generate(prompts, request)
        const end = performance.now()
        runsMs.push(end - start)
        firstTokenMs.push(firstAt - start)
        for (const row of rows) tokens.push(row.tokens)
        promptTokens = rows[0]!.promptTokens
      }
      measured.push({ batch, runsMs, firstTokenMs, tokens })
    }
    const info = yield* runtime.info
    return {
      threads: info.threads,
      simd: info.simd,
      tfjsBackend: info.tfjsBackend,
      kernelOverrides: kernels?.wasmKernelsRegistered() ?? false,
      promptTokens,
      measured,
      leakedTensors: runtime.tf.memory().numTensors - tensorsBefore
    } satisfies ChildResult
  })
  return Effect.runPromise(
    program.pipe(
      Effect.provide(languageModelLayer(spec.model)),
      Effect.provide(runtimeLayer({ backend: spec.backend })),
      Effect.scoped
    )
  )
}

/** Node flags that load tsx in a child, reusing the parent's when it already runs under tsx. */

const runOurs = async (spec: ChildSpec): Promise<ChildResult> =>
  spawnChild<ChildResult>(thisFile, childMarker, spec, `${spec.backend} (${spec.threads} threads)`)

interface LlamaCppConfig {
  readonly threads: number
  readonly actualThreads: number
  readonly batch: number
  readonly kvCache: string
  readonly runs: ReadonlyArray<number>
  readonly medianTokensPerSecond: number
  readonly medianDecodeTokensPerSecond: number
  readonly medianFirstTokenMs: number
  readonly sameTokensEveryRun: boolean
}

interface LlamaCppResult {
  readonly skipped?: string
  readonly install?: string
  readonly nodeLlamaCpp?: string
  readonly nlcDir?: string
  readonly llamaCppRelease?: string | null
  readonly buildType?: string
  readonly contextSize?: number
  readonly promptTokens?: ReadonlyArray<number>
  readonly tokens?: ReadonlyArray<number>
  readonly configs?: ReadonlyArray<LlamaCppConfig>
}

const runLlamaCpp = async (
  options: { model: string; prompt: string; newTokens: number; threads: ReadonlyArray<number> } & {
    batches: ReadonlyArray<number>
    runs: number
    budgetMs: number
    nlcDir: string | undefined
  }
): Promise<LlamaCppResult> => {
  const script = path.join(path.dirname(thisFile), "llama-cpp-generate.mjs")
  const args = [
    script,
    "--model",
    options.model,
    "--prompt",
    options.prompt,
    "--tokens",
    String(options.newTokens),
    "--threads",
    options.threads.join(","),
    "--batches",
    options.batches.join(","),
    "--runs",
    String(options.runs),
    "--budget-s",
    String(options.budgetMs / 1000),
    ...(options.nlcDir === undefined ? [] : ["--nlc-dir", options.nlcDir])
  ]
  const { code, stderr, stdout } = await runProcess(process.execPath, args, "")
  if (code !== 0) throw new Error(`llama-cpp-generate.mjs exited with ${code}: ${lastLine(stderr) || lastLine(stdout)}`)
  return JSON.parse(lastLine(stdout)) as LlamaCppResult
}

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const equalPrefix = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): number => {
  let n = 0
  while (n < a.length && n < b.length && a[n] === b[n]) n++
  return n
}

const sameTokens = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean =>
  a.length === b.length && equalPrefix(a, b) === a.length

const message = (error: unknown): string => error instanceof Error ? error.message : String(error)

const format = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))

const label = (row: GenerationRow): string =>
  row.engine === "llama.cpp"
    ? "llama.cpp"
    : row.backend === "wasm"
    ? "ours, wasm (kernel overrides)"
    : "ours, cpu"

export const formatGenerationTable = (rows: ReadonlyArray<GenerationRow>): string => {
  const header = [
    "engine",
    "threads",
    "batch",
    "tokens/s",
    "decode tokens/s",
    "first token ms",
    "ours / llama.cpp",
    "runs (ms)"
  ]
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) =>
      `| ${
        [
          label(row) + (row.note === undefined ? "" : ` (${row.note})`),
          String(row.threads),
          String(row.batch),
          format(row.tokensPerSecond),
          format(row.decodeTokensPerSecond),
          row.firstTokenMs.toFixed(2),
          row.ratioToLlamaCpp === undefined ? "—" : `${row.ratioToLlamaCpp.toFixed(3)}×`,
          row.runsMs.map((ms) => ms.toFixed(0)).join(", ")
        ].join(" | ")
      } |`
    )
  ].join("\n")
}

/** Runs our configurations and llama.cpp's; returns the rows, the cross-check and a markdown section. */
export const runGenerationBenchReport = async (
  options: GenerationBenchOptions = {}
): Promise<GenerationBenchReport> => {
  const runs = options.runs ?? 5
  const newTokens = options.newTokens ?? 128
  const prompt = options.prompt ?? "Once upon a time"
  const model = options.model ?? defaultModel
  const batches = options.batches ?? [1, 8]
  const threads = Math.min(8, options.threads ?? os.availableParallelism())
  const errors: Array<string> = []
  const environment: Array<string> = []

  const budgetMs = (options.budgetSeconds ?? 30) * 1000

  // Ordered so that each 1-thread pair runs close together in time (the load of a shared machine
  // drifts): llama.cpp at 1 thread, ours at 1 thread, ours at N threads, llama.cpp at N threads.
  const llamaResults: Array<LlamaCppResult> = []
  let skipped: string | undefined
  const measureLlamaCpp = async (threadCount: number): Promise<void> => {
    if (skipped !== undefined) return
    try {
      const result = await runLlamaCpp({
        model,
        prompt,
        newTokens,
        threads: [threadCount],
        batches,
        runs,
        budgetMs,
        nlcDir: options.nlcDir
      })
      if (result.skipped !== undefined) skipped = `${result.skipped}; to install it: ${result.install}`
      else llamaResults.push(result)
    } catch (error) {
      errors.push(`llama.cpp, ${threadCount} thread(s): ${message(error)}`)
    }
  }
  const ours: Array<{ backend: OurBackend; result: ChildResult }> = []
  const measureOurs = async (config: { backend: OurBackend; threads: number }): Promise<void> => {
    try {
      const result = await runOurs({ ...config, batches, runs, budgetMs, newTokens, prompt, model })
      ours.push({ backend: config.backend, result })
      environment.push(
        `ours, ${config.backend}${config.threads >= 2 ? ` ${config.threads} threads requested` : ""}: tfjs backend `
          + `${result.tfjsBackend}, ${result.threads} thread(s)`
          + (config.backend === "wasm" ? `, simd=${result.simd}, kernel overrides=${result.kernelOverrides}` : "")
          + (result.leakedTensors === 0 ? "" : `, ${result.leakedTensors} tensors leaked`)
      )
    } catch (error) {
      errors.push(`ours, ${config.backend} ${config.threads} thread(s): ${message(error)}`)
    }
  }
  // One configuration at a time: concurrent processes would compete for the same cores.
  await measureLlamaCpp(1)
  await measureOurs({ backend: "wasm", threads: 1 })
  await measureOurs({ backend: "cpu", threads: 1 })
  if (threads >= 2) {
    await measureOurs({ backend: "wasm", threads })
    await measureLlamaCpp(threads)
  }

  const llama: LlamaCppResult | undefined = llamaResults[0] === undefined
    ? undefined
    : { ...llamaResults[0], configs: llamaResults.flatMap((r) => r.configs ?? []) }
  if (llama !== undefined) {
    const kv = [...new Set((llama.configs ?? []).map((c) => c.kvCache))].join("; ")
    environment.push(
      `llama.cpp: node-llama-cpp ${llama.nodeLlamaCpp} (${llama.buildType} CPU binary, llama.cpp release `
        + `${llama.llamaCppRelease}) from ${llama.nlcDir}; KV cache ${kv}, context ${llama.contextSize}, `
        + "no flash attention, greedy (temperature 0, no repeat penalty)"
    )
  }

  const llamaRows: Array<GenerationRow> = (llama?.configs ?? []).map((c) => ({
    engine: "llama.cpp",
    backend: "llama.cpp",
    threads: c.actualThreads,
    batch: c.batch,
    runsMs: c.runs,
    tokensPerSecond: c.medianTokensPerSecond,
    decodeTokensPerSecond: c.medianDecodeTokensPerSecond,
    firstTokenMs: c.medianFirstTokenMs,
    note: c.batch > 1 ? `${c.batch} sequences` : undefined
  }))
  const ourRows: Array<GenerationRow> = ours.flatMap(({ backend, result }) =>
    result.measured.map((m) => {
      const rates = m.runsMs.map((ms) => (m.batch * newTokens) / (ms / 1000))
      const decodeRates = m.runsMs.map((ms, i) => (m.batch * (newTokens - 1)) / ((ms - m.firstTokenMs[i]!) / 1000))
      const tokensPerSecond = median(rates)
      const reference = llamaRows.find((r) => r.threads === result.threads && r.batch === m.batch)
      return {
        engine: "ours",
        backend,
        threads: result.threads,
        batch: m.batch,
        runsMs: m.runsMs,
        tokensPerSecond,
        decodeTokensPerSecond: median(decodeRates),
        firstTokenMs: median(m.firstTokenMs),
        ratioToLlamaCpp: reference === undefined ? undefined : tokensPerSecond / reference.tokensPerSecond
      } satisfies GenerationRow
    })
  )
  const rows = [...ourRows, ...llamaRows]

  // Where N threads lose to 1 for an engine, say so: on a VM every op's thread hand-off can cost
  // more than the op itself for a model this small.
  const notes: Array<string> = []
  for (const engine of ["ours", "llama.cpp"] as const) {
    const single = rows.find((r) => r.engine === engine && r.threads === 1 && r.batch === 1 && r.backend !== "cpu")
    const multi = rows.find((r) => r.engine === engine && r.threads > 1 && r.batch === 1)
    if (single !== undefined && multi !== undefined && multi.tokensPerSecond < single.tokensPerSecond) {
      notes.push(
        `${engine} is ${(single.tokensPerSecond / multi.tokensPerSecond).toFixed(1)}× slower at ${multi.threads} `
          + "threads than at 1 (batch 1): with ops of microseconds, waking and waiting for the other thread at "
          + "every op costs more than the op; the 1-thread rows are the meaningful comparison."
      )
    }
  }

  const allOurTokens = ours.flatMap(({ result }) => result.measured.flatMap((m) => m.tokens))
  const ourReference = ours.find((o) => o.backend === "wasm")?.result ?? ours[0]?.result
  const ourTokens = ourReference?.measured[0]?.tokens[0]
  let crossCheck: CrossCheck | undefined
  if (ourTokens !== undefined && llama?.tokens !== undefined) {
    crossCheck = {
      equalPrefix: equalPrefix(ourTokens, llama.tokens),
      compared: Math.min(ourTokens.length, llama.tokens.length),
      promptTokensEqual: sameTokens(ourReference!.promptTokens, llama.promptTokens ?? []),
      oursConsistent: allOurTokens.every((t) => sameTokens(t, ourTokens)),
      llamaCppConsistent: (llama.configs ?? []).every((c) => c.sameTokensEveryRun)
    }
  }

  const describe = (check: CrossCheck): string =>
    `llama.cpp's greedy tokens equal ours for the first ${check.equalPrefix} of ${check.compared} new tokens `
    + `(${check.equalPrefix === check.compared ? "all" : "they diverge after that"}); prompt tokens `
    + `${check.promptTokensEqual ? "equal" : "DIFFER"}; every configuration, batch row and run of ours gave `
    + `${check.oursConsistent ? "the same" : "NOT the same"} tokens; llama.cpp's runs `
    + `${check.llamaCppConsistent ? "agree with each other" : "DISAGREE with each other"}.`
  const markdown = [
    `"${prompt}" on ${path.relative(repoRoot, model)}, greedy, ${newTokens} new tokens per row; median of ${runs} runs `
    + `after one warm-up (a configuration still measuring after ${budgetMs / 1000} s stops early, with at least 3). `
    + "tokens/s = batch × new tokens / time of the whole call (prompt included); decode "
    + "tokens/s leaves out the prompt and the first token. The ratio compares ours with llama.cpp at the same "
    + "thread count and batch (llama.cpp's batch 8 = 8 sequences of one context, decoded together).",
    "",
    formatGenerationTable(rows),
    "",
    ...(crossCheck === undefined ? [] : [`- cross-check: ${describe(crossCheck)}`]),
    ...notes.map((line) => `- note: ${line}`),
    ...(skipped === undefined ? [] : [`- llama.cpp skipped: ${skipped}`]),
    ...environment.map((line) => `- ${line}`),
    ...errors.map((line) => `- error: ${line}`)
  ].join("\n")
  return { rows, crossCheck, skipped, environment, errors, markdown }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === thisFile) {
  if (process.argv.includes("--child")) {
    await serveChild(childMarker, runChild)
  } else {
    const runs = flag("--runs")
    const tokens = flag("--tokens")
    const threads = flag("--threads")
    const budget = flag("--budget-s")
    const report = await runGenerationBenchReport({
      ...(runs === undefined ? {} : { runs: Number(runs) }),
      ...(budget === undefined ? {} : { budgetSeconds: Number(budget) }),
      ...(tokens === undefined ? {} : { newTokens: Number(tokens) }),
      ...(threads === undefined ? {} : { threads: Number(threads) }),
      nlcDir: flag("--nlc-dir")
    })
    if (report.skipped !== undefined) console.log(`llama.cpp generation benchmark skipped: ${report.skipped}`)
    console.log(report.markdown)
  }
}
