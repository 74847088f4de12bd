/**
 * Runs every engine benchmark and writes BENCHMARKS.md at the repository root:
 *   - matMul GFLOP/s of each tfjs backend beside numpy's BLAS, same run, same sizes (matmul.ts)
 *   - generation tokens/s on stories260K beside llama.cpp (node-llama-cpp), same run (generation.ts)
 *   - LoRA training tokens/s beside PyTorch, and batched adapters (lora-train.ts)
 *   - ARC inner loops/s in this process against worker threads, same items (arc-workers.ts)
 *   - ARC pretraining steps/s in this process against data-parallel workers, same steps (pretrain-workers.ts)
 * with the machine (CPU model, cores, Node version), the date and the exact command.
 *
 * Run: npm run bench [-- --runs 5 --tokens 128 --threads N --budget-s 30 --nlc-dir DIR --skip-matmul
 *                        --skip-generation --skip-lora --skip-arc --skip-pretrain --out FILE]
 *  or: npx tsx tools/bench/index.ts [same flags]
 * node-llama-cpp is optional and lives outside the repository: tools/bench/setup-llama-cpp.sh.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { formatArcWorkersBench, runArcWorkersBench } from "./arc-workers.js"
import { flag, numberFlag } from "./ChildProcess.js"
import { runGenerationBenchReport } from "./generation.js"
import { formatLoraBench, runLoraBench } from "./lora-train.js"
import { runMatmulBenchReport } from "./matmul.js"
import { formatPretrainWorkersBench, runPretrainWorkersBench } from "./pretrain-workers.js"

const thisFile = fileURLToPath(import.meta.url)
const repoRoot = path.resolve(path.dirname(thisFile), "../..")

/** The command as typed: `npm run bench -- ...` when npm started us, else the tsx invocation. */
const commandLine = (): string => {
  const args = process.argv.slice(2).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`))
  const extra = args.length === 0 ? "" : ` -- ${args.join(" ")}`
  if (process.env["npm_lifecycle_event"] === "bench") return `npm run bench${extra}`
  return `npx tsx ${path.relative(repoRoot, thisFile)}${args.length === 0 ? "" : ` ${args.join(" ")}`}`
}

const cpuModel = (): string => {
  try {
    const line = fs.readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("model name"))
    if (line !== undefined) return line.slice(line.indexOf(":") + 1).trim()
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? "unknown"
}

/**
 * How much CPU the machine really gives two threads at once: the work two busy threads get done
 * in a fixed time over what one gets done alone. 2.0 means two free cores; near 1.0 means the
 * cores are shared (a VM's vCPUs on a busy host) and multi-threaded numbers mean little.
 */
const parallelSpeedup = async (threads: number, ms = 400): Promise<number> => {
  const source = `const { parentPort, workerData } = require("node:worker_threads")
const end = Date.now() + workerData
let n = 0
while (Date.now() < end) { for (let i = 0; i < 10000; i++) n++ }
parentPort.postMessage(n)`
  const spin = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const worker = new Worker(source, { eval: true, workerData: ms })
      worker.once("message", (n: number) => resolve(n))
      worker.once("error", reject)
    })
  const alone = await spin()
  const together = await Promise.all(Array.from({ length: threads }, spin))
  return together.reduce((a, b) => a + b, 0) / alone
}

const main = async (): Promise<void> => {
  const started = new Date()
  const out = path.resolve(flag("--out") ?? path.join(repoRoot, "BENCHMARKS.md"))
  const runs = numberFlag("--runs")
  const newTokens = numberFlag("--tokens")
  const budgetSeconds = numberFlag("--budget-s")
  const threads = numberFlag("--threads") ?? Math.min(8, os.availableParallelism())
  const command = commandLine()
  const speedup = threads >= 2 ? await parallelSpeedup(threads) : undefined
  const load = os.loadavg().map((x) => x.toFixed(2)).join(", ")

  const sections: Array<string> = []
  if (!process.argv.includes("--skip-matmul")) {
    console.error("matmul benchmark ...")
    const t = performance.now()
    const report = await runMatmulBenchReport({ threads })
    console.error(`matmul benchmark done in ${((performance.now() - t) / 1000).toFixed(0)} s`)
    sections.push("## matMul GFLOP/s: tfjs backends beside numpy (same run, same sizes)", "", report.markdown, "")
  }
  if (!process.argv.includes("--skip-generation")) {
    console.error("generation benchmark ...")
    const t = performance.now()
    const report = await runGenerationBenchReport({
      threads,
      nlcDir: flag("--nlc-dir"),
      ...(runs === undefined ? {} : { runs }),
      ...(newTokens === undefined ? {} : { newTokens }),
      ...(budgetSeconds === undefined ? {} : { budgetSeconds })
    })
    console.error(`generation benchmark done in ${((performance.now() - t) / 1000).toFixed(0)} s`)
    if (report.skipped !== undefined) console.error(`llama.cpp generation benchmark skipped: ${report.skipped}`)
    sections.push("## Generation tokens/s: stories260K beside llama.cpp (same run)", "", report.markdown, "")
  }

  if (!process.argv.includes("--skip-lora")) {
    console.error("LoRA training benchmark ...")
    const t = performance.now()
    const result = await runLoraBench({ threads })
    console.error(`LoRA training benchmark done in ${((performance.now() - t) / 1000).toFixed(0)} s`)
    sections.push(
      "## LoRA training tokens/s beside PyTorch, and the batched-K speed-up (same run)",
      "",
      formatLoraBench(result),
      ""
    )
  }

  if (!process.argv.includes("--skip-arc") && threads >= 2) {
    console.error("ARC worker benchmark ...")
    const t = performance.now()
    const result = await runArcWorkersBench({ workers: threads })
    console.error(`ARC worker benchmark done in ${((performance.now() - t) / 1000).toFixed(0)} s`)
    sections.push(
      "## ARC inner loops/s: this process against worker threads (same run, same items)",
      "",
      formatArcWorkersBench(result),
      ""
    )
  }

  if (!process.argv.includes("--skip-pretrain") && threads >= 2) {
    console.error("pretraining worker benchmark ...")
    const t = performance.now()
    const result = await runPretrainWorkersBench({ workers: threads })
    console.error(`pretraining worker benchmark done in ${((performance.now() - t) / 1000).toFixed(0)} s`)
    sections.push(
      "## ARC pretraining steps/s: this process against data-parallel worker threads (same run, same steps)",
      "",
      formatPretrainWorkersBench(result),
      ""
    )
  }

  const finished = new Date()
  const machine = [
    `- CPU: ${cpuModel()}, ${os.availableParallelism()} logical cores`
    + (speedup === undefined
      ? ""
      : `; ${threads} busy threads get ${speedup.toFixed(2)}× the work of one (2.00 = ${threads} free cores)`),
    `- Node ${process.version}, ${os.platform()} ${os.release()}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM`,
    `- load average at start: ${load}`,
    `- date: ${started.toISOString()} (took ${((finished.getTime() - started.getTime()) / 1000).toFixed(0)} s)`,
    `- command: \`${command}\` (from the repository root)`,
    ...(speedup !== undefined && speedup < 0.75 * threads
      ? [
        `- note: ${threads} threads do not get ${threads} cores' worth of CPU here (the cores are shared), so the `
        + `${threads}-thread rows measure contention and thread hand-offs more than scaling; compare the 1-thread rows.`
      ]
      : [])
  ]
  const document = [
    "# Benchmarks",
    "",
    "Generated by tools/bench/index.ts (see tools/bench/README.md); rerun it rather than editing this file. "
    + "Compare the ratios, not the absolute numbers: every reference (numpy's BLAS, llama.cpp) was "
    + "measured in the same run on the same machine.",
    "",
    ...machine,
    "",
    ...sections
  ].join("\n").trimEnd() + "\n"

  fs.writeFileSync(out, document)
  console.log(document)
  console.error(`wrote ${out}`)
}

await main()
