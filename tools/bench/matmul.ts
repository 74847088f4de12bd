/**
 * matMul throughput (GFLOP/s) for shapes that small Llama-style transformers run, on:
 *   cpu                 tfjs-backend-cpu
 *   wasm (stock)        tfjs-backend-wasm as shipped
 *   wasm                with registerWasmKernels() (packages/gpu/src/wasm)
 *   wasm, N threads     the same plus enableWasmThreads(N) (only where N >= 2 cores)
 *   numpy               tools/bench/matmul_numpy.py, for scale (multi-threaded BLAS)
 *
 * Each tfjs configuration runs in its own child process: the stock kernels must be measured
 * before any override exists, and the threaded binary can only be chosen before the wasm
 * backend first initialises. Inputs are made once per case and reused, so a right operand that
 * XNNPACK packs is packed once (as for model weights); numpy gets the same treatment.
 *
 * Run: npx tsx tools/bench/matmul.ts [--min-time-ms 60] [--rounds 5] [--threads N]
 */
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { lastLine, runProcess, serveChild, spawnChild } from "./ChildProcess.js"

export interface MatmulCase {
  readonly name: string
  readonly a: ReadonlyArray<number>
  readonly b: ReadonlyArray<number>
  readonly transposeA: boolean
  readonly transposeB: boolean
}

export const matmulCases: ReadonlyArray<MatmulCase> = [
  { name: "square 128", a: [128, 128], b: [128, 128], transposeA: false, transposeB: false },
  { name: "qkv projection", a: [1024, 128], b: [128, 384], transposeA: false, transposeB: false },
  { name: "ffn down", a: [1024, 512], b: [512, 128], transposeA: false, transposeB: false },
  { name: "lora A", a: [1024, 128], b: [128, 8], transposeA: false, transposeB: false },
  { name: "attention scores q·kᵀ", a: [32, 128, 32], b: [32, 128, 32], transposeA: false, transposeB: true },
  { name: "attention p·v", a: [32, 128, 128], b: [32, 128, 32], transposeA: false, transposeB: false },
  { name: "grad wrt input dy·wᵀ", a: [1024, 384], b: [128, 384], transposeA: false, transposeB: true },
  { name: "grad wrt weight xᵀ·dy", a: [1024, 128], b: [1024, 384], transposeA: true, transposeB: false },
  { name: "decode logits h·eᵀ", a: [1, 128], b: [4096, 128], transposeA: false, transposeB: true }
]

export type MatmulConfig = "cpu" | "wasm-stock" | "wasm" | "wasm-threads"

export interface MatmulCell {
  readonly gflops: number | undefined
  /** gflops / numpy's gflops for the same case. */
  readonly ratioToNumpy: number | undefined
}

export interface Row {
  readonly name: string
  readonly shapes: string
  readonly mflop: number
  /** Keyed by column label (see `MatmulBenchReport.columns`). */
  readonly results: Readonly<Record<string, MatmulCell>>
}

export interface MatmulBenchOptions {
  /** Minimum wall time of one timing round, per case and backend. */
  readonly minTimeMs?: number
  /** Rounds per case; the median round is reported. */
  readonly rounds?: number
  /** Threads for the threaded wasm column; below 2 drops the column. */
  readonly threads?: number
  readonly cases?: ReadonlyArray<MatmulCase>
}

export interface MatmulBenchReport {
  readonly rows: Array<Row>
  readonly columns: ReadonlyArray<string>
  readonly environment: ReadonlyArray<string>
  readonly errors: ReadonlyArray<string>
  readonly markdown: string
}

const childMarker = "@@matmul-bench "

interface ChildSpec {
  readonly config: MatmulConfig
  readonly threads: number
  readonly cases: ReadonlyArray<MatmulCase>
  readonly minTimeMs: number
  readonly rounds: number
}

interface ChildResult {
  readonly rows: ReadonlyArray<{ readonly name: string; readonly gflops: number }>
  readonly threads: number
  readonly note: string
}

const outputShapeSize = (c: MatmulCase): { size: number; inner: number } => {
  const ra = c.a.length
  const rb = c.b.length
  const m = c.transposeA ? c.a[ra - 1]! : c.a[ra - 2]!
  const inner = c.transposeA ? c.a[ra - 2]! : c.a[ra - 1]!
  const n = c.transposeB ? c.b[rb - 2]! : c.b[rb - 1]!
  const batchA = c.a.slice(0, -2).reduce((x, d) => x * d, 1)
  const batchB = c.b.slice(0, -2).reduce((x, d) => x * d, 1)
  return { size: Math.max(batchA, batchB) * m * n, inner }
}

const flopsOf = (c: MatmulCase): number => {
  const { inner, size } = outputShapeSize(c)
  return 2 * size * inner
}

const shapeLabel = (c: MatmulCase): string =>
  `[${c.a.join("×")}]${c.transposeA ? "ᵀ" : ""}·[${c.b.join("×")}]${c.transposeB ? "ᵀ" : ""}`

const median = (values: ReadonlyArray<number>): number => [...values].sort((x, y) => x - y)[values.length >> 1]!

/** Runs inside a child process: one tfjs configuration, every case. */
const runChild = async (spec: ChildSpec): Promise<ChildResult> => {
  const tf = await import("@tensorflow/tfjs-core")
  let note = ""
  if (spec.config === "cpu") {
    await import("@tensorflow/tfjs-backend-cpu")
    await tf.setBackend("cpu")
  } else {
    const kernels = await import("@seal/gpu/wasm/WasmKernels")
    if (spec.config === "wasm-threads") {
      const result = kernels.enableWasmThreads(spec.threads)
      if (!result.enabled) throw new Error(`threads not enabled: ${result.reason}`)
    }
    await tf.setBackend("wasm")
    if (spec.config !== "wasm-stock") kernels.registerWasmKernels()
    note = `simd=${String(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"))}`
  }
  const threads = spec.config.startsWith("wasm") ? (await import("@seal/gpu/wasm/WasmKernels")).wasmThreadsCount() : 1
  const rows: Array<{ name: string; gflops: number }> = []
  for (const c of spec.cases) {
    const a = tf.randomNormal([...c.a])
    const b = tf.randomNormal([...c.b])
    const run = (): void => tf.matMul(a, b, c.transposeA, c.transposeB).dispose()
    const warmStart = performance.now()
    run()
    const warmMs = performance.now() - warmStart
    run()
    // A configuration that needs a second per product still gets two rounds, not five.
    const rounds = warmMs > 4 * spec.minTimeMs ? Math.min(2, spec.rounds) : spec.rounds
    const rates: Array<number> = []
    for (let r = 0; r < rounds; r++) {
      let iterations = 0
      const start = performance.now()
      let elapsed = 0
      do {
        run()
        iterations++
        elapsed = performance.now() - start
      } while (elapsed < spec.minTimeMs)
      rates.push((flopsOf(c) * iterations) / (elapsed / 1000) / 1e9)
    }
    a.dispose()
    b.dispose()
    rows.push({ name: c.name, gflops: median(rates) })
  }
  return { rows, threads, note }
}

const thisFile = fileURLToPath(import.meta.url)

/** Node flags that load tsx in a child, reusing the parent's when it already runs under tsx. */

const runConfig = async (spec: ChildSpec): Promise<ChildResult> =>
  spawnChild<ChildResult>(thisFile, childMarker, spec, `${spec.config} child`)

interface NumpyResult {
  readonly error?: string
  readonly numpy?: string
  readonly blas?: unknown
  readonly rows?: ReadonlyArray<{ readonly name: string; readonly gflops: number }>
}

/**
 * numpy as installed, and again with OpenBLAS held to one thread (a like-for-like reference for
 * single-threaded wasm). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are passed through untouched.
 */
const runNumpy = async (
  cases: ReadonlyArray<MatmulCase>,
  minTimeMs: number,
  rounds: number,
  singleThread: boolean
): Promise<NumpyResult> => {
  const script = path.join(path.dirname(thisFile), "matmul_numpy.py")
  const env = singleThread ? { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1" } : process.env
  try {
    const { code, stderr, stdout } = await runProcess(
      "python3",
      [script, String(minTimeMs), String(rounds)],
      JSON.stringify(cases),
      env
    )
    if (code !== 0) return { error: `python3 exited with ${code}: ${lastLine(stderr)}` }
    return JSON.parse(lastLine(stdout)) as NumpyResult
  } catch (error) {
    return { error: `python3 could not run: ${error instanceof Error ? error.message : String(error)}` }
  }
}

const formatNumber = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))

const formatCell = (cell: MatmulCell | undefined): string => {
  if (cell?.gflops === undefined) return "—"
  const ratio = cell.ratioToNumpy === undefined
    ? ""
    : ` (${cell.ratioToNumpy.toFixed(cell.ratioToNumpy < 0.1 ? 3 : 2)}×)`
  return `${formatNumber(cell.gflops)}${ratio}`
}

export const formatMatmulTable = (rows: ReadonlyArray<Row>, columns: ReadonlyArray<string>): string => {
  const header = ["case", "shapes", "MFLOP", ...columns]
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i < 2 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) =>
      `| ${
        [row.name, row.shapes, formatNumber(row.mflop), ...columns.map((c) => formatCell(row.results[c]))].join(" | ")
      } |`
    )
  ]
  return lines.join("\n")
}

/** Runs every configuration and returns the rows, the table and where the numbers came from. */
export const runMatmulBenchReport = async (options: MatmulBenchOptions = {}): Promise<MatmulBenchReport> => {
  const cases = options.cases ?? matmulCases
  const minTimeMs = options.minTimeMs ?? 60
  const rounds = options.rounds ?? 5
  const threads = Math.min(8, options.threads ?? os.availableParallelism())
  const configs: Array<{ config: MatmulConfig; label: string }> = [
    { config: "cpu", label: "cpu" },
    { config: "wasm-stock", label: "wasm (stock)" },
    { config: "wasm", label: "wasm (overrides)" }
  ]
  if (threads >= 2) configs.push({ config: "wasm-threads", label: `wasm (overrides, ${threads} threads)` })
  const errors: Array<string> = []
  // Other processes on the cores skew every column, the threaded ones most: record the load.
  const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(" ")
  const environment: Array<string> = [
    `machine: ${os.cpus()[0]?.model ?? "unknown cpu"}, ${os.availableParallelism()} cores; node ${process.version}`,
    `load average at start: ${load()}`
  ]
  const measured = new Map<string, ReadonlyMap<string, number>>()
  // One configuration at a time: concurrent children would compete for the same cores.
  for (const { config, label } of configs) {
    try {
      const result = await runConfig({ config, threads, cases, minTimeMs, rounds })
      measured.set(label, new Map(result.rows.map((r) => [r.name, r.gflops])))
      environment.push(`${label}: ${result.threads} thread(s)${result.note ? `, ${result.note}` : ""}`)
    } catch (error) {
      errors.push(`${label}: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
  const numpy = await runNumpy(cases, minTimeMs, rounds, false)
  if (numpy.error !== undefined) {
    errors.push(`numpy: ${numpy.error}`)
  } else {
    const single = await runNumpy(cases, minTimeMs, rounds, true)
    measured.set("numpy 1 thread", new Map((single.rows ?? []).map((r) => [r.name, r.gflops])))
    measured.set("numpy", new Map((numpy.rows ?? []).map((r) => [r.name, r.gflops])))
    environment.push(`numpy ${numpy.numpy}: BLAS ${JSON.stringify(numpy.blas)}`)
  }
  environment.push(`load average at end: ${load()}`)
  const columns = [...configs.map((c) => c.label), "numpy 1 thread", "numpy"]
  const rows: Array<Row> = cases.map((c) => {
    const reference = measured.get("numpy")?.get(c.name)
    const results: Record<string, MatmulCell> = {}
    for (const label of columns) {
      const gflops = measured.get(label)?.get(c.name)
      results[label] = {
        gflops,
        ratioToNumpy: gflops === undefined || reference === undefined || label === "numpy"
          ? undefined
          : gflops / reference
      }
    }
    return { name: c.name, shapes: shapeLabel(c), mflop: flopsOf(c) / 1e6, results }
  })
  const markdown = [
    "GFLOP/s (ratio to numpy), median of " + `${rounds} rounds of >= ${minTimeMs} ms each.`,
    "",
    formatMatmulTable(rows, columns),
    "",
    ...environment.map((line) => `- ${line}`),
    ...errors.map((line) => `- error: ${line}`)
  ].join("\n")
  return { rows, columns, environment, errors, markdown }
}

/** The benchmark rows (see `runMatmulBenchReport` for the table and environment notes). */
export const runMatmulBench = async (options: MatmulBenchOptions = {}): Promise<Array<Row>> =>
  (await runMatmulBenchReport(options)).rows

const flag = (name: string): number | undefined => {
  const i = process.argv.indexOf(name)
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : undefined
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === thisFile) {
  if (process.argv.includes("--child")) {
    await serveChild(childMarker, runChild)
  } else {
    const minTimeMs = flag("--min-time-ms")
    const rounds = flag("--rounds")
    const threads = flag("--threads")
    const report = await runMatmulBenchReport({
      ...(minTimeMs === undefined ? {} : { minTimeMs }),
      ...(rounds === undefined ? {} : { rounds }),
      ...(threads === undefined ? {} : { threads })
    })
    console.log(report.markdown)
  }
}
