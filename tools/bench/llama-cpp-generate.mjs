// llama.cpp side of tools/bench/generation.ts: greedy generation tokens/s through node-llama-cpp's
// prebuilt CPU binaries, on the same model, prompt and token count as ours.
//
// node-llama-cpp is deliberately not a dependency of this repository. Install it elsewhere with
// tools/bench/setup-llama-cpp.sh (default ~/.cache/seal-bench/nlc) and point this script at that
// folder with --nlc-dir DIR or SEAL_BENCH_NLC_DIR; without either it tries the default folder,
// then the working directory.
//
//   node tools/bench/llama-cpp-generate.mjs --model models/stories260K.gguf \
//     [--prompt "Once upon a time"] [--tokens 128] [--threads 1,2] [--batches 1,8] [--runs 5] \
//     [--budget-s 30] [--nlc-dir DIR]
//
// Prints one JSON object on the last line of stdout (llama.cpp's own logs go to stderr). When
// node-llama-cpp cannot be found it prints {"skipped": reason, "install": how} and exits 0, so the
// caller can say so instead of crashing.
//
// What is timed: for each run, from handing the prompt to the context sequence until the last of
// `tokens` new tokens has been sampled (prompt processing plus tokens - 1 decode steps, exactly
// what ours does). Model load and context creation happen before, and one unmeasured warm-up run
// precedes the measured ones; a configuration still measuring after --budget-s seconds stops once
// it has 3 runs. Sampling is greedy (temperature 0, no repeat penalty), EOS does not
// stop generation (ours is run without an EOS stop too), and the prompt is BOS + the text's tokens.
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { homedir } from "node:os"
import { join, resolve } from "node:path"
import { performance } from "node:perf_hooks"
import { pathToFileURL } from "node:url"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    prompt: { type: "string", default: "Once upon a time" },
    tokens: { type: "string", default: "128" },
    threads: { type: "string", default: "1,2" },
    batches: { type: "string", default: "1" },
    runs: { type: "string", default: "5" },
    "budget-s": { type: "string", default: "30" },
    "nlc-dir": { type: "string" }
  }
})
if (args.model === undefined) {
  console.error(
    "usage: node llama-cpp-generate.mjs --model MODEL.gguf [--prompt TEXT] [--tokens N] [--threads 1,2]"
      + " [--batches 1,8] [--runs 5] [--budget-s 30] [--nlc-dir DIR]"
  )
  process.exit(2)
}
const modelPath = resolve(args.model)
const newTokens = Number(args.tokens)
const threadCounts = args.threads.split(",").map(Number)
const batches = args.batches.split(",").map(Number)
const runs = Number(args.runs)
// A configuration stops after this many seconds of measuring, once it has 3 runs (or `runs`).
const budgetMs = Number(args["budget-s"]) * 1000

const defaultDir = join(homedir(), ".cache/seal-bench/nlc")
const install = "tools/bench/setup-llama-cpp.sh [DIR] (default DIR " + defaultDir
  + "), then pass --nlc-dir DIR or set SEAL_BENCH_NLC_DIR=DIR"

const emit = (value) => process.stdout.write("\n" + JSON.stringify(value) + "\n")

/** The folder whose node_modules holds node-llama-cpp, or undefined. */
const findInstall = () => {
  const candidates = [args["nlc-dir"], process.env.SEAL_BENCH_NLC_DIR, defaultDir, process.cwd()]
  for (const dir of candidates) {
    if (dir === undefined || dir === "") continue
    if (existsSync(join(dir, "node_modules/node-llama-cpp/package.json"))) return resolve(dir)
    // An explicit folder that lacks it is an error, not a reason to look elsewhere.
    if (dir === args["nlc-dir"] || dir === process.env.SEAL_BENCH_NLC_DIR) return undefined
  }
  return undefined
}

const nlcDir = findInstall()
if (nlcDir === undefined) {
  emit({
    skipped: "node-llama-cpp is not installed (looked in --nlc-dir, $SEAL_BENCH_NLC_DIR, " + defaultDir
      + " and the working directory)",
    install
  })
  process.exit(0)
}
const requireFromDir = createRequire(join(nlcDir, "noop.js"))
const nlcVersion = JSON.parse(readFileSync(join(nlcDir, "node_modules/node-llama-cpp/package.json"), "utf8")).version
const { getLlama } = await import(pathToFileURL(requireFromDir.resolve("node-llama-cpp")).href)

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

// maxThreads 0: a context's `threads` is then the number actually used, not a hint.
const llama = await getLlama({
  gpu: false,
  build: "never",
  maxThreads: 0,
  logLevel: "warn",
  logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message}\n`)
})
const model = await llama.loadModel({ modelPath, gpuLayers: 0 })
const bos = model.tokens.bos
const promptTokens = [...(bos === null ? [] : [bos]), ...model.tokenize(args.prompt, false)]
const contextSize = Math.min(model.trainContextSize, 2048)
if (promptTokens.length + newTokens > contextSize) {
  throw new Error(`prompt (${promptTokens.length}) + ${newTokens} tokens do not fit the context of ${contextSize}`)
}

/** A context with an F32 KV cache when llama.cpp accepts one, else its default (F16). */
const createContext = async (threads, sequences) => {
  const base = { contextSize, sequences, threads, flashAttention: false, batchSize: 512 }
  try {
    const context = await model.createContext({
      ...base,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32"
    })
    return { context, kvCache: "F32" }
  } catch (error) {
    const context = await model.createContext(base)
    return { context, kvCache: `F16 (F32 was refused: ${String(error?.message ?? error).split("\n")[0]})` }
  }
}

/** One greedy generation on each sequence at once; the time until every one has `newTokens`. */
const generateOnce = async (sequences) => {
  await Promise.all(sequences.map((s) => s.clearHistory()))
  const start = performance.now()
  let firstTokenAt = 0
  const outputs = await Promise.all(sequences.map(async (sequence, row) => {
    const tokens = []
    for await (const token of sequence.evaluate(promptTokens, { temperature: 0, yieldEogToken: true })) {
      if (row === 0 && tokens.length === 0) firstTokenAt = performance.now()
      tokens.push(token)
      if (tokens.length >= newTokens) break
    }
    return tokens
  }))
  return { ms: performance.now() - start, firstTokenMs: firstTokenAt - start, outputs }
}

const configs = []
let referenceTokens
for (const threads of threadCounts) {
  for (const batch of batches) {
    const { context, kvCache } = await createContext(threads, batch)
    const sequences = Array.from({ length: batch }, () => context.getSequence())
    await generateOnce(sequences) // warm-up
    const measured = []
    const started = performance.now()
    for (let r = 0; r < runs; r++) {
      if (r >= Math.min(3, runs) && performance.now() - started > budgetMs) break
      measured.push(await generateOnce(sequences))
    }
    const outputs = measured.flatMap((m) => m.outputs)
    referenceTokens ??= outputs[0]
    const rates = measured.map((m) => (batch * newTokens) / (m.ms / 1000))
    // Decode-only rate: the tokens after the first, over the time after the first.
    const decodeRates = measured.map((m) => (batch * (newTokens - 1)) / ((m.ms - m.firstTokenMs) / 1000))
    configs.push({
      threads,
      actualThreads: context.currentThreads,
      batch,
      kvCache,
      runs: measured.map((m) => Number(m.ms.toFixed(3))),
      tokensPerSecond: rates.map((r) => Number(r.toFixed(2))),
      medianTokensPerSecond: median(rates),
      medianDecodeTokensPerSecond: median(decodeRates),
      medianFirstTokenMs: median(measured.map((m) => m.firstTokenMs)),
      sameTokensEveryRun: outputs.every((t) =>
        t.length === referenceTokens.length && t.every((v, i) => v === referenceTokens[i])
      )
    })
    await context.dispose()
  }
}

emit({
  engine: "llama.cpp",
  nodeLlamaCpp: nlcVersion,
  nlcDir,
  llamaCppRelease: llama.llamaCppRelease?.release ?? null,
  buildType: llama.buildType,
  cpuMathCores: llama.cpuMathCores,
  contextSize,
  flashAttention: false,
  model: modelPath,
  prompt: args.prompt,
  promptTokens,
  newTokens,
  tokens: referenceTokens,
  configs
})
await model.dispose()
await llama.dispose()
