/**
 * LoRA training tokens/s: ours (`trainLora`) beside PyTorch on the CPU of the same machine, same
 * model shape, same step, measured in the same run; and the batched-K speed-up of `trainLoraMany`
 * over K separate `trainLora` runs.
 *
 *   model   Llama shape from `initWeights(config, seed)`: vocab 512, d 128, 4 layers, 4 heads
 *           (head dim 32, no GQA), SwiGLU intermediate 512, untied LM head, RoPE θ 10000, float32
 *   LoRA    rank 8, alpha 16, dropout 0 on q, k, v, o of every layer (32,768 trainable numbers)
 *   step    batch 8 × seq 128 (1,024 tokens, 1,016 targets): forward, causal-LM loss, backward
 *           to the adapter only, global-norm clip at 1, AdamW (weight decay 0, lr 1e-3)
 *
 *   ours, wasm          TensorRuntime.layer({ backend: "wasm" }): tfjs-backend-wasm with the kernel
 *                       overrides (registerWasmKernels), 1 thread
 *   ours, wasm N thr.   the same after enableWasmThreads(N) (only where N >= 2 cores)
 *   ours, stock wasm    tfjs-backend-wasm as shipped (no overrides), for scale
 *   ours, cpu           TensorRuntime.layer({ backend: "cpu" }): tfjs-backend-cpu (plain JS)
 *   torch               tools/bench/torch_lora_step.py on /usr/bin/python3 (Debian python3-torch with
 *                       OpenBLAS; tools/bench/setup-torch.sh), 1 and N threads
 *
 * tokens/s is 1,024 over the median step time (warm-up steps untimed; each step timed on its own,
 * the median resists a neighbour's load spike). Each of our configurations runs in a child
 * process of its own (the threaded wasm binary can only be chosen before the backend starts).
 *
 * The phase split (forward / backward / optimizer) of a hand-rolled copy of the step, and a
 * per-kernel profile of it (each registered kernel wrapped with a timer; every kernel here is
 * synchronous), say where our time goes; the same split is taken for torch.
 *
 * Batched K: K adapters, each with its own data of `rowsPerAdapter` × 128 tokens per step, for
 * `batchedSteps` steps: K separate `trainLora` calls against one `trainLoraMany` call (wall time of
 * the calls, medians over `batchedRepeats`), speed-up = time(K separate) / time(batched).
 *
 * Run: npx tsx tools/bench/lora-train.ts [--steps 6] [--warmup 2] [--slow-steps 2] [--slow-warmup 1]
 *        [--torch-steps 20] [--threads N] [--backends wasm,wasm-stock,cpu] [--ks 1,4,8,16]
 *        [--batched-steps 2] [--rows-per-adapter 1] [--batched-repeats 3] [--batched-backend wasm]
 *        [--python /usr/bin/python3] [--no-profile] [--json]
 * (defaults shown; `--ks ''` skips the batched part). About 75-110 s on 2 shared cores.
 * index.ts calls `runLoraBench({ threads })` and puts `formatLoraBench(result)` under a heading.
 */
import type * as tfTypes from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { flag, lastLine, numberFlag, runProcess, serveChild, spawnChild } from "./ChildProcess.js"

/** `wasm`: with our kernel overrides (the product path); `wasm-stock`: tfjs-backend-wasm as shipped. */
export type LoraBenchBackend = "wasm" | "wasm-stock" | "cpu"

export interface LoraBenchOptions {
  /** Timed steps per configuration of ours (after `warmup` untimed ones). */
  readonly steps?: number
  readonly warmup?: number
  /** The same for stock wasm and cpu, whose steps take 5-30× longer (default 2 timed after 1). */
  readonly slowSteps?: number
  readonly slowWarmup?: number
  /** Timed steps per torch thread count (after 3 untimed ones). */
  readonly torchSteps?: number
  /** Threads of the multi-threaded rows (wasm and torch); below 2 drops them. */
  readonly threads?: number
  readonly backends?: ReadonlyArray<LoraBenchBackend>
  /** Adapter counts of the batched measurement; empty skips it. */
  readonly ks?: ReadonlyArray<number>
  readonly batchedSteps?: number
  readonly rowsPerAdapter?: number
  readonly batchedRepeats?: number
  readonly batchedBackend?: LoraBenchBackend
  /** The phase split and kernel profile of ours on wasm, 1 thread, and of one batched step (default on). */
  readonly profile?: boolean
  /** The python that has Debian's torch (default /usr/bin/python3). */
  readonly python?: string
}

/** The benchmark's fixed shape; shared by both sides. */
export const loraBenchShape = {
  vocab: 512,
  hidden: 128,
  layers: 4,
  heads: 4,
  headDim: 32,
  intermediate: 512,
  batch: 8,
  seq: 128,
  rank: 8,
  alpha: 16,
  targets: ["q", "k", "v", "o"] as ReadonlyArray<"q" | "k" | "v" | "o">,
  learningRate: 1e-3,
  seed: 1234
} as const

export interface PhaseSplit {
  readonly forwardMs: number
  readonly backwardMs: number
  readonly optimizerMs: number
}

export interface KernelTime {
  /** Kernel name, or kernel name plus input shapes (and matMul transposes). */
  readonly key: string
  readonly phase?: string | undefined
  readonly calls: number
  readonly ms: number
  /** Floating-point operations of the calls (matMuls only; 0 for other kernels). */
  readonly flops: number
}

export interface KernelProfile {
  /** Wall time of one profiled step and the part spent inside kernels, per phase. */
  readonly phases: ReadonlyArray<{ readonly phase: string; readonly wallMs: number; readonly kernelMs: number }>
  readonly kernelCalls: number
  /** matMul floating-point operations of the step, and the ms its matMul kernels took. */
  readonly matMulFlops: number
  readonly matMulMs: number
  /** Top kernels by total time (names). */
  readonly byKernel: ReadonlyArray<KernelTime>
  /** Top kernel calls by total time, keyed by name, shapes and phase. */
  readonly bySignature: ReadonlyArray<KernelTime>
}

export interface LoraTrainRow {
  readonly engine: "ours" | "torch"
  /** `wasm`, `cpu` or `torch`. */
  readonly backend: string
  readonly threads: number
  readonly stepMs: ReadonlyArray<number>
  readonly medianStepMs: number
  readonly tokensPerSecond: number
  /** tokensPerSecond / torch's at 1 thread. */
  readonly ratioToTorch1?: number | undefined
  /** tokensPerSecond / torch's at the same thread count. */
  readonly ratioToTorchSameThreads?: number | undefined
  readonly firstLoss: number
  readonly lastLoss: number
  readonly phases?: PhaseSplit | undefined
  readonly profile?: KernelProfile | undefined
  readonly note?: string | undefined
}

export interface BatchedRow {
  readonly k: number
  readonly separateMs: number
  readonly batchedMs: number
  /** separateMs / batchedMs. */
  readonly speedup: number
  readonly separateTokensPerSecond: number
  readonly batchedTokensPerSecond: number
  /**
   * One adapter trained by one `trainLora` call on the same K × rowsPerAdapter rows per step: what
   * stacking could at best reach; batchedMs / oneAdapterMs is the cost of the stacked adapters.
   */
  readonly oneAdapterMs: number
  /** Largest |loss difference| between a separate run and the batched run, over adapters and steps. */
  readonly maxLossDiff: number
  readonly separateRunsMs: ReadonlyArray<number>
  readonly batchedRunsMs: ReadonlyArray<number>
  readonly oneAdapterRunsMs: ReadonlyArray<number>
}

export interface LoraBenchResult {
  readonly shape: typeof loraBenchShape
  readonly steps: number
  readonly warmup: number
  readonly slowSteps: number
  readonly slowWarmup: number
  readonly torchSteps: number
  readonly rows: ReadonlyArray<LoraTrainRow>
  readonly batched?: {
    readonly backend: LoraBenchBackend
    readonly rowsPerAdapter: number
    readonly steps: number
    readonly repeats: number
    readonly rows: ReadonlyArray<BatchedRow>
    /** One `trainLoraMany` step at the largest K, every kernel timed. */
    readonly profile?: KernelProfile | undefined
  } | undefined
  /** Why the torch side did not run, with how to set it up. */
  readonly torchSkipped?: string | undefined
  readonly environment: ReadonlyArray<string>
  readonly errors: ReadonlyArray<string>
  readonly seconds: number
}

const thisFile = fileURLToPath(import.meta.url)
const childMarker = "@@lora-train-bench "
const tokensPerStep = loraBenchShape.batch * loraBenchShape.seq

// ---------------------------------------------------------------------------------------------
// Child side: one backend per process

interface TrainSpec {
  readonly kind: "train"
  readonly backend: LoraBenchBackend
  readonly threads: number
  readonly warmup: number
  readonly steps: number
  readonly profile: boolean
}

interface BatchedSpec {
  readonly kind: "batched"
  readonly backend: LoraBenchBackend
  readonly ks: ReadonlyArray<number>
  readonly steps: number
  readonly rowsPerAdapter: number
  readonly repeats: number
  readonly profile: boolean
}

type ChildSpec = TrainSpec | BatchedSpec

interface TrainChildResult {
  readonly kind: "train"
  readonly threads: number
  readonly simd: boolean
  readonly kernelOverrides: boolean
  readonly stepMs: ReadonlyArray<number>
  readonly losses: ReadonlyArray<number>
  readonly phases?: PhaseSplit | undefined
  readonly profile?: KernelProfile | undefined
  readonly leakedTensors: number
}

interface BatchedChildResult {
  readonly kind: "batched"
  readonly rows: ReadonlyArray<BatchedRow>
  readonly profile?: KernelProfile | undefined
  readonly leakedTensors: number
}

type ChildResult = TrainChildResult | BatchedChildResult

/** Deterministic token ids (xorshift32), so every process trains on the same data. */
const randomIds = (count: number, length: number, vocab: number, seed: number): Array<Array<number>> => {
  let x = (seed * 2654435761) >>> 0 || 1
  const next = () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
  return Array.from({ length: count }, () => Array.from({ length }, () => next() % vocab))
}

const runChild = async (spec: ChildSpec): Promise<ChildResult> => {
  const tf = await import("@tensorflow/tfjs-core")
  const { layer: runtimeLayer, TensorRuntime } = await import("@seal/gpu/TensorRuntime")
  const { initWeights } = await import("@seal/gpu/model/InitWeights")
  const { createTransformerWeights, disposeTransformerWeights, forward } = await import("@seal/gpu/model/Transformer")
  const lora = await import("@seal/gpu/lora/LoraAdapter")
  const { trainLora } = await import("@seal/gpu/train/Trainer")
  const { trainLoraMany } = await import("@seal/gpu/train/BatchedTrainer")
  const { batchTensors, buildBatch, nextTokenNll } = await import("@seal/gpu/train/Loss")
  const adamw = await import("@seal/gpu/train/AdamW")
  const { ensureGradients } = await import("@seal/gpu/train/Gradients")
  let kernels: typeof import("@seal/gpu/wasm/WasmKernels") | undefined
  if (spec.backend === "wasm") {
    kernels = await import("@seal/gpu/wasm/WasmKernels")
    if (spec.kind === "train" && spec.threads >= 2) {
      const result = kernels.enableWasmThreads(spec.threads)
      if (!result.enabled) throw new Error(`wasm threads not enabled: ${result.reason}`)
    }
  }

  const s = loraBenchShape
  const config = {
    architecture: "llama" as const,
    vocabSize: s.vocab,
    hiddenSize: s.hidden,
    intermediateSize: s.intermediate,
    numLayers: s.layers,
    numHeads: s.heads,
    numKvHeads: s.heads,
    headDim: s.headDim,
    maxPositions: s.seq,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    tieEmbeddings: false,
    attentionBias: false
  }
  const loraConfig = { rank: s.rank, alpha: s.alpha, dropout: 0, targets: s.targets }
  const examples = (count: number, seed: number) =>
    randomIds(count, s.seq, s.vocab, seed).map((ids) => ({ ids, labelMask: ids.map((_, t) => (t === 0 ? 0 : 1)) }))
  const makeAdapter = (seed: number) => lora.createLoraAdapter(config, loraConfig, { seed, parentModelHash: "bench" })
  const trainOptions = (batchSize: number, steps: number) => ({
    learningRate: s.learningRate,
    batchSize,
    steps,
    weightDecay: 0,
    maxGradNorm: 1,
    seed: 0
  })

  let info: { readonly threads: number; readonly simd: boolean }
  if (spec.backend === "wasm-stock") {
    // Not through TensorRuntime, which always registers our kernel overrides.
    await import("@tensorflow/tfjs-backend-wasm")
    if (!(await tf.setBackend("wasm"))) throw new Error("tf.setBackend(\"wasm\") returned false")
    await tf.ready()
    info = { threads: 1, simd: Boolean(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT")) }
  } else {
    info = await Effect.runPromise(
      Effect.gen(function*() {
        const runtime = yield* TensorRuntime
        return yield* runtime.info
      }).pipe(Effect.provide(runtimeLayer({ backend: spec.backend })), Effect.scoped)
    )
  }

  const run = (): ChildResult => {
    const weights = createTransformerWeights(config, initWeights(config, s.seed))
    const tensorsBefore = tf.memory().numTensors
    try {
      if (spec.kind === "batched") {
        const measured = measureBatched(spec)
        return {
          kind: "batched" as const,
          ...measured,
          leakedTensors: tf.memory().numTensors - tensorsBefore
        }
      }
      const data = examples(s.batch, 1)
      const adapter = makeAdapter(1)
      trainLora(weights, adapter, data, trainOptions(s.batch, spec.warmup))
      const marks: Array<number> = []
      const result = trainLora(weights, adapter, data, {
        ...trainOptions(s.batch, spec.steps),
        onStep: (p) => marks.push(p.elapsedMs)
      })
      // `elapsedMs` counts from the loop's start, so the differences are the steps.
      const stepMs = marks.map((m, i) => m - (i === 0 ? 0 : marks[i - 1]!))
      const split = spec.profile ? phaseSplit(adapter, data) : undefined
      return {
        kind: "train" as const,
        threads: info.threads,
        simd: info.simd,
        kernelOverrides: kernels?.wasmKernelsRegistered() ?? false,
        stepMs,
        losses: result.losses,
        phases: split?.phases,
        profile: split?.profile,
        leakedTensors: tf.memory().numTensors - tensorsBefore
      } satisfies TrainChildResult
    } finally {
      disposeTransformerWeights(weights)
    }

    /** K separate trainLora calls against one trainLoraMany call, for each K. */
    function measureBatched(b: BatchedSpec): { rows: Array<BatchedRow>; profile?: KernelProfile } {
      const maxK = Math.max(...b.ks)
      const adapters = Array.from({ length: maxK }, (_, k) => makeAdapter(100 + k))
      const datasets = Array.from({ length: maxK }, (_, k) => examples(b.rowsPerAdapter, 1000 + k))
      const options = trainOptions(b.rowsPerAdapter, b.steps)
      // Warm-up: both paths once at a small K (packing of base weights, heap growth).
      trainLora(weights, adapters[0]!, datasets[0]!, options)
      trainLoraMany(weights, adapters.slice(0, 2), datasets.slice(0, 2), options)
      const rows: Array<BatchedRow> = []
      for (const K of b.ks) {
        const separateRunsMs: Array<number> = []
        const batchedRunsMs: Array<number> = []
        const oneAdapterRunsMs: Array<number> = []
        const pooled = datasets.slice(0, K).flat()
        const pooledOptions = trainOptions(K * b.rowsPerAdapter, b.steps)
        let maxLossDiff = 0
        for (let r = 0; r < b.repeats; r++) {
          const separate = () => {
            const t = performance.now()
            const results = adapters.slice(0, K).map((a, k) => trainLora(weights, a, datasets[k]!, options))
            separateRunsMs.push(performance.now() - t)
            return results
          }
          const batched = () => {
            const t = performance.now()
            const results = trainLoraMany(weights, adapters.slice(0, K), datasets.slice(0, K), options)
            batchedRunsMs.push(performance.now() - t)
            return results
          }
          // Alternate which goes first, so a drift in the machine's load hits both alike.
          const [one, many] = r % 2 === 0 ? [separate(), batched()] : (() => {
            const m = batched()
            return [separate(), m] as const
          })()
          const t = performance.now()
          trainLora(weights, adapters[0]!, pooled, pooledOptions)
          oneAdapterRunsMs.push(performance.now() - t)
          one.forEach((res, k) =>
            res.losses.forEach((l, i) => {
              maxLossDiff = Math.max(maxLossDiff, Math.abs(l - many[k]!.losses[i]!))
            })
          )
        }
        const separateMs = median(separateRunsMs)
        const batchedMs = median(batchedRunsMs)
        const tokens = K * b.rowsPerAdapter * s.seq * b.steps
        rows.push({
          k: K,
          separateMs,
          batchedMs,
          speedup: separateMs / batchedMs,
          separateTokensPerSecond: tokens / (separateMs / 1000),
          batchedTokensPerSecond: tokens / (batchedMs / 1000),
          oneAdapterMs: median(oneAdapterRunsMs),
          maxLossDiff,
          separateRunsMs,
          batchedRunsMs,
          oneAdapterRunsMs
        })
      }
      if (!b.profile) return { rows }
      const calls: Array<KernelCall> = []
      const unwrap = wrapKernels(
        tf,
        tf.getBackend(),
        (name, signature, ms, flops) => calls.push({ name, signature, phase: "step", ms, flops })
      )
      const t = performance.now()
      try {
        trainLoraMany(weights, adapters, datasets, trainOptions(b.rowsPerAdapter, 1))
      } finally {
        unwrap()
      }
      return { rows, profile: summarise(calls, [{ phase: "step", wallMs: performance.now() - t }]) }
    }

    /**
     * A hand-rolled copy of trainLora's step (same calls: forward with the LoRA hook, loss,
     * variableGrads, global norm, AdamW), timed by phase; then one more step with every kernel
     * wrapped in a timer.
     */
    function phaseSplit(adapter: ReturnType<typeof makeAdapter>, data: ReturnType<typeof examples>) {
      ensureGradients()
      const device = lora.uploadLora(adapter, true)
      const params = lora.deviceLoraVariables(device)
      const state = adamw.createAdamWState(params)
      const hyper = adamw.defaultAdamW
      const batch = buildBatch(data)
      let phase = "forward"
      const bounds: Array<number> = []
      let t = 1
      const step = () => {
        bounds.length = 0
        bounds.push(performance.now())
        phase = "forward"
        tf.tidy(() => {
          const tensors = batchTensors(batch)
          const { grads } = tf.variableGrads(() => {
            const logits = forward(weights, { ...tensors, hook: lora.loraHook(device, { seed: 0 }) }).logits
            const nll = nextTokenNll(logits, tensors.ids, tensors.labelMask)
            const loss = tf.div(tf.sum(nll), Math.max(1, batch.labelTokens)) as tfTypes.Scalar
            loss.dataSync()
            bounds.push(performance.now())
            phase = "backward"
            return loss
          }, params)
          const g = params.map((p) => grads[p.name] ?? tf.zerosLike(p))
          g[0]!.dataSync()
          bounds.push(performance.now())
          phase = "optimizer"
          const norm = Math.sqrt(adamw.squaredNorm(g).dataSync()[0]!)
          adamw.adamWUpdate(params, g, state, hyper, params.map(() => 0), {
            learningRate: s.learningRate,
            ...adamw.biasCorrections(hyper, t++),
            gradScale: adamw.clipFactor(norm, 1)
          })
          params[0]!.dataSync()
        })
        bounds.push(performance.now())
        return {
          forwardMs: bounds[1]! - bounds[0]!,
          backwardMs: bounds[2]! - bounds[1]!,
          optimizerMs: bounds[3]! - bounds[2]!
        }
      }
      try {
        step()
        const splits = Array.from({ length: 3 }, step)
        const phases: PhaseSplit = {
          forwardMs: median(splits.map((x) => x.forwardMs)),
          backwardMs: median(splits.map((x) => x.backwardMs)),
          optimizerMs: median(splits.map((x) => x.optimizerMs))
        }
        const calls: Array<KernelCall> = []
        const unwrap = wrapKernels(
          tf,
          tf.getBackend(),
          (name, signature, ms, flops) => calls.push({ name, signature, phase, ms, flops })
        )
        let profiled: PhaseSplit
        try {
          profiled = step()
        } finally {
          unwrap()
        }
        return {
          phases,
          profile: summarise(calls, [
            { phase: "forward", wallMs: profiled.forwardMs },
            { phase: "backward", wallMs: profiled.backwardMs },
            { phase: "optimizer", wallMs: profiled.optimizerMs }
          ])
        }
      } finally {
        adamw.disposeAdamWState(state)
        lora.disposeDeviceLora(device)
      }
    }
  }
  return run()
}

/**
 * Re-registers every kernel of `backendName` with a timing wrapper (keeping the function's own
 * properties, e.g. our overrides' marker, and the setup function); returns the undo.
 */
const wrapKernels = (
  tf: typeof tfTypes,
  backendName: string,
  record: (name: string, signature: string, ms: number, flops: number) => void
): () => void => {
  const originals = tf.getKernelsForBackend(backendName)
  const swap = (config: tfTypes.KernelConfig) => {
    tf.unregisterKernel(config.kernelName, backendName)
    tf.registerKernel(config)
  }
  for (const config of originals) {
    const inner = config.kernelFunc
    const timed: tfTypes.KernelFunc = (args) => {
      const t = performance.now()
      const out = inner(args)
      const ms = performance.now() - t
      const shapes = Object.values(args.inputs).map((x) => `[${x?.shape.join("×") ?? ""}]`).join("·")
      const attrs = args.attrs as Record<string, unknown> | undefined
      const transposes = attrs !== undefined && ("transposeA" in attrs || "transposeB" in attrs)
        ? ` ${attrs["transposeA"] === true ? "T" : "N"}${attrs["transposeB"] === true ? "T" : "N"}`
        : ""
      const flops = transposes === "" ? 0 : matMulFlops(args.inputs, attrs!)
      record(config.kernelName, `${config.kernelName} ${shapes}${transposes}`, ms, flops)
      return out
    }
    swap({ ...config, kernelFunc: Object.assign(timed, inner) })
  }
  return () => {
    for (const config of originals) swap(config)
  }
}

/** 2·batch·M·N·K of a (batched) matMul from its input shapes and transposes. */
const matMulFlops = (inputs: tfTypes.NamedTensorInfoMap, attrs: Record<string, unknown>): number => {
  const a = inputs["a"]?.shape
  const b = inputs["b"]?.shape
  if (a === undefined || b === undefined || a.length < 2 || b.length < 2) return 0
  const m = attrs["transposeA"] === true ? a[a.length - 1]! : a[a.length - 2]!
  const k = attrs["transposeA"] === true ? a[a.length - 2]! : a[a.length - 1]!
  const n = attrs["transposeB"] === true ? b[b.length - 2]! : b[b.length - 1]!
  const batch = Math.max(a.slice(0, -2).reduce((x, y) => x * y, 1), b.slice(0, -2).reduce((x, y) => x * y, 1))
  return 2 * batch * m * n * k
}

interface KernelCall {
  readonly flops: number
  readonly name: string
  readonly signature: string
  readonly phase: string
  readonly ms: number
}

const summarise = (
  calls: ReadonlyArray<KernelCall>,
  wall: ReadonlyArray<{ readonly phase: string; readonly wallMs: number }>
): KernelProfile => {
  const group = (key: (c: (typeof calls)[number]) => string, phase: boolean) => {
    const map = new Map<string, { key: string; phase?: string; calls: number; ms: number; flops: number }>()
    for (const c of calls) {
      const k = key(c)
      const entry = map.get(k) ??
        { key: phase ? c.signature : c.name, ...(phase ? { phase: c.phase } : {}), calls: 0, ms: 0, flops: 0 }
      entry.calls++
      entry.ms += c.ms
      entry.flops += c.flops
      map.set(k, entry)
    }
    return [...map.values()].sort((a, b) => b.ms - a.ms)
  }
  const kernelMs = (phase: string) => calls.filter((c) => c.phase === phase).reduce((n, c) => n + c.ms, 0)
  return {
    phases: wall.map((w) => ({ ...w, kernelMs: kernelMs(w.phase) })),
    kernelCalls: calls.length,
    matMulFlops: calls.reduce((n, c) => n + c.flops, 0),
    matMulMs: calls.filter((c) => c.flops > 0).reduce((n, c) => n + c.ms, 0),
    byKernel: group((c) => c.name, false).slice(0, 12),
    bySignature: group((c) => `${c.phase} ${c.signature}`, true).slice(0, 15)
  }
}

// ---------------------------------------------------------------------------------------------
// Parent side

/** Node flags that load tsx in a child, reusing the parent's when it already runs under tsx. */

const runOurs = async <R extends ChildResult>(spec: ChildSpec): Promise<R> =>
  spawnChild<R>(thisFile, childMarker, spec, `${spec.kind} ${spec.backend}`)

interface TorchOutput {
  readonly torch: string
  readonly python: string
  readonly blas: ReadonlyArray<string>
  readonly results: ReadonlyArray<{
    readonly threads: number
    readonly stepMs: ReadonlyArray<number>
    readonly medianStepMs: number
    readonly tokensPerSecond: number
    readonly firstLoss: number
    readonly lastLoss: number
    readonly trainableParams: number
    readonly waitPolicy: string
    readonly phases: PhaseSplit | null
  }>
  readonly errors: ReadonlyArray<string>
}

const setupAdvice = "run tools/bench/setup-torch.sh (apt: python3-torch libopenblas0-pthread)"

const runTorch = async (
  python: string,
  threads: ReadonlyArray<number>,
  steps: number
): Promise<TorchOutput | { skipped: string }> => {
  if (!fs.existsSync(python)) return { skipped: `${python} not found; ${setupAdvice}` }
  const probe = await runProcess(python, ["-c", "import torch"], "")
  if (probe.code !== 0) return { skipped: `${python} cannot import torch; ${setupAdvice}` }
  const s = loraBenchShape
  const script = path.join(path.dirname(thisFile), "torch_lora_step.py")
  const args = [
    script,
    "--threads",
    threads.join(","),
    "--steps",
    String(steps),
    "--phases",
    ...[
      ["--vocab", s.vocab],
      ["--hidden", s.hidden],
      ["--layers", s.layers],
      ["--heads", s.heads],
      ["--intermediate", s.intermediate],
      ["--batch", s.batch],
      ["--seq", s.seq],
      ["--rank", s.rank],
      ["--alpha", s.alpha],
      ["--lr", s.learningRate]
    ].flatMap(([k, v]) => [String(k), String(v)])
  ]
  const { code, stderr, stdout } = await runProcess(python, args, "")
  if (code !== 0) throw new Error(`torch_lora_step.py exited with ${code}: ${lastLine(stderr) || lastLine(stdout)}`)
  return JSON.parse(lastLine(stdout)) as TorchOutput
}

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length === 0 ? NaN : sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const message = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** Runs torch and our configurations, then the batched-K measurement; never throws for one failed side. */
export const runLoraBench = async (options: LoraBenchOptions = {}): Promise<LoraBenchResult> => {
  const started = performance.now()
  const steps = options.steps ?? 6
  const warmup = options.warmup ?? 2
  const slowSteps = options.slowSteps ?? 2
  const slowWarmup = options.slowWarmup ?? 1
  const torchSteps = options.torchSteps ?? 20
  const threads = options.threads ?? Math.min(8, os.availableParallelism())
  const backends = options.backends ?? ["wasm", "wasm-stock", "cpu"]
  const ks = options.ks ?? [1, 4, 8, 16]
  const profile = options.profile ?? true
  const python = options.python ?? "/usr/bin/python3"
  const threadCounts = threads >= 2 ? [1, threads] : [1]
  const errors: Array<string> = []
  const environment: Array<string> = []
  const rows: Array<LoraTrainRow> = []

  let torchSkipped: string | undefined
  try {
    const torch = await runTorch(python, threadCounts, torchSteps)
    if ("skipped" in torch) torchSkipped = torch.skipped
    else {
      errors.push(...torch.errors.map((e) => `torch: ${e}`))
      const openblas = torch.blas.some((lib) => lib.includes("openblas"))
      environment.push(
        `torch ${torch.torch} on ${python} (Python ${torch.python}); BLAS: ${
          torch.blas.map((lib) => path.basename(lib)).join(", ") || "none found"
        }` + (openblas ? "" : " (NOT OpenBLAS: the reference BLAS makes torch slow and flatters us)")
      )
      const policy = torch.results[0]?.waitPolicy
      if (policy !== undefined) {
        environment.push(
          `torch threads: OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = torch.set_num_threads = N, OMP_WAIT_POLICY=${policy}`
        )
      }
      for (const r of torch.results) {
        rows.push({
          engine: "torch",
          backend: "torch",
          threads: r.threads,
          stepMs: r.stepMs,
          medianStepMs: r.medianStepMs,
          tokensPerSecond: r.tokensPerSecond,
          firstLoss: r.firstLoss,
          lastLoss: r.lastLoss,
          phases: r.phases ?? undefined
        })
      }
    }
  } catch (e) {
    errors.push(`torch: ${message(e)}`)
  }

  const ourConfigs: Array<{ backend: LoraBenchBackend; threads: number }> = backends.flatMap<
    { backend: LoraBenchBackend; threads: number }
  >((backend) => backend === "wasm" ? threadCounts.map((n) => ({ backend, threads: n })) : [{ backend, threads: 1 }])
  for (const c of ourConfigs) {
    try {
      const r = await runOurs<TrainChildResult>({
        kind: "train",
        backend: c.backend,
        threads: c.threads,
        warmup: c.backend === "wasm" ? warmup : slowWarmup,
        steps: c.backend === "wasm" ? steps : slowSteps,
        profile: profile && c.backend === "wasm" && c.threads === 1
      })
      if (r.leakedTensors !== 0) errors.push(`ours ${c.backend} ${c.threads} threads leaked ${r.leakedTensors} tensors`)
      const medianStepMs = median(r.stepMs)
      rows.push({
        engine: "ours",
        backend: c.backend,
        threads: r.threads,
        stepMs: r.stepMs,
        medianStepMs,
        tokensPerSecond: tokensPerStep / (medianStepMs / 1000),
        firstLoss: r.losses[0] ?? NaN,
        lastLoss: r.losses[r.losses.length - 1] ?? NaN,
        phases: r.phases,
        profile: r.profile,
        note: c.backend === "cpu" ? undefined : r.kernelOverrides ? "kernel overrides" : "stock tfjs kernels"
      })
    } catch (e) {
      errors.push(`ours ${c.backend} ${c.threads} threads: ${message(e)}`)
    }
  }

  const torchAt = (n: number) => rows.find((r) => r.engine === "torch" && r.threads === n)
  const withRatios = rows.map((r) => ({
    ...r,
    ratioToTorch1: torchAt(1) === undefined ? undefined : r.tokensPerSecond / torchAt(1)!.tokensPerSecond,
    ratioToTorchSameThreads: torchAt(r.threads) === undefined
      ? undefined
      : r.tokensPerSecond / torchAt(r.threads)!.tokensPerSecond
  }))

  let batched: LoraBenchResult["batched"]
  if (ks.length > 0) {
    const spec: BatchedSpec = {
      kind: "batched",
      backend: options.batchedBackend ?? "wasm",
      ks,
      steps: options.batchedSteps ?? 2,
      rowsPerAdapter: options.rowsPerAdapter ?? 1,
      repeats: options.batchedRepeats ?? 3,
      profile
    }
    try {
      const r = await runOurs<BatchedChildResult>(spec)
      if (r.leakedTensors !== 0) errors.push(`batched ${spec.backend} leaked ${r.leakedTensors} tensors`)
      batched = {
        backend: spec.backend,
        rowsPerAdapter: spec.rowsPerAdapter,
        steps: spec.steps,
        repeats: spec.repeats,
        rows: r.rows,
        profile: r.profile
      }
    } catch (e) {
      errors.push(`batched: ${message(e)}`)
    }
  }

  return {
    shape: loraBenchShape,
    steps,
    warmup,
    slowSteps,
    slowWarmup,
    torchSteps,
    rows: withRatios,
    batched,
    torchSkipped,
    environment,
    errors,
    seconds: (performance.now() - started) / 1000
  }
}

// ---------------------------------------------------------------------------------------------
// Markdown

const num = (
  x: number
): string => (!Number.isFinite(x) ? "—" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))
const ratio = (x: number | undefined): string => (x === undefined ? "—" : `${x.toFixed(3)}×`)

const rowLabel = (r: LoraTrainRow): string =>
  r.engine === "torch"
    ? "PyTorch (CPU, OpenBLAS)"
    : r.backend === "wasm" || r.backend === "wasm-stock"
    ? `ours, wasm${r.note === undefined ? "" : ` (${r.note})`}`
    : "ours, cpu (tfjs-backend-cpu)"

const table = (header: ReadonlyArray<string>, body: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...body.map((cells) => `| ${cells.join(" | ")} |`)
  ].join("\n")

const profileTables = (title: string, profile: KernelProfile): Array<string> => {
  const total = profile.phases.reduce((n, p) => n + p.kernelMs, 0)
  const wall = profile.phases.reduce((n, p) => n + p.wallMs, 0)
  return [
    `${title}: ${profile.kernelCalls} kernel calls, ${num(total)} ms inside kernels of ${num(wall)} ms wall `
    + `(${((100 * total) / wall).toFixed(0)}%; the rest is tfjs' JavaScript around them).`,
    "",
    table(
      ["kernel", "calls", "ms", "share of kernel time", "GFLOP/s"],
      profile.byKernel.map((k) => [
        k.key,
        String(k.calls),
        num(k.ms),
        `${((100 * k.ms) / total).toFixed(1)}%`,
        k.flops > 0 ? num(k.flops / k.ms / 1e6) : ""
      ])
    ),
    "",
    "Heaviest kernel calls by input shapes (matMuls: N/T = transposeA, transposeB):",
    "",
    table(
      ["phase", "kernel and input shapes", "calls", "ms", "GFLOP/s"],
      profile.bySignature.map((k) => [
        k.phase ?? "",
        `\`${k.key}\``,
        String(k.calls),
        num(k.ms),
        k.flops > 0 ? num(k.flops / k.ms / 1e6) : ""
      ])
    ),
    ""
  ]
}

/** The BENCHMARKS.md section (no heading of its own; index.ts adds its `##`). */
export const formatLoraBench = (result: LoraBenchResult): string => {
  const s = result.shape
  const out: Array<string> = []
  out.push(
    `Model: Llama shape, vocab ${s.vocab}, d ${s.hidden}, ${s.layers} layers, ${s.heads} heads (head dim ${s.headDim}), `
      + `SwiGLU intermediate ${s.intermediate}, untied LM head, float32, random frozen base (\`initWeights\`, seed ${s.seed}). `
      + `LoRA rank ${s.rank}, alpha ${s.alpha}, dropout 0 on ${s.targets.join("/")} of every layer. `
      + `One step: batch ${s.batch} × seq ${s.seq} (${tokensPerStep} tokens), forward, causal-LM loss, backward to the adapter, `
      + `global-norm clip 1, AdamW (lr ${s.learningRate}, weight decay 0). tokens/s = ${tokensPerStep} / median step time. `
      + `Ours: \`trainLora\`, ${result.warmup} warm-up + ${result.steps} timed steps (stock wasm and cpu: ${result.slowWarmup} + ${result.slowSteps}); `
      + `PyTorch (tools/bench/torch_lora_step.py): the same model and step, 3 warm-up + ${result.torchSteps} timed steps. `
      + "Read the ratios: both sides ran in this run on this machine.",
    ""
  )
  if (result.torchSkipped !== undefined) out.push(`PyTorch reference skipped: ${result.torchSkipped}.`, "")
  out.push(
    table(
      [
        "engine",
        "threads",
        "tokens/s",
        "median step ms",
        "÷ PyTorch 1 thr.",
        "÷ PyTorch same thr.",
        "loss first → last"
      ],
      result.rows.map((r) => [
        rowLabel(r),
        String(r.threads),
        num(r.tokensPerSecond),
        num(r.medianStepMs),
        ratio(r.ratioToTorch1),
        ratio(r.ratioToTorchSameThreads),
        `${r.firstLoss.toFixed(3)} → ${r.lastLoss.toFixed(3)}`
      ])
    ),
    ""
  )
  const phased = result.rows.filter((r) => r.phases !== undefined)
  if (phased.length > 0) {
    out.push(
      "Where a step's time goes: median wall ms per phase (ours: a hand-rolled copy of `trainLora`'s step; "
        + "\"in kernels\" is the share of the phase spent inside tfjs kernels, the rest is tfjs' JavaScript: op "
        + "dispatch, tape, tidy, gradient bookkeeping).",
      "",
      table(
        ["engine", "threads", "forward ms", "backward ms", "optimizer ms", "in kernels (fwd / bwd / opt)"],
        phased.map((r) => {
          const p = r.phases!
          const share = r.profile?.phases.map((x) => `${((100 * x.kernelMs) / Math.max(1e-9, x.wallMs)).toFixed(0)}%`)
          return [
            rowLabel(r),
            String(r.threads),
            num(p.forwardMs),
            num(p.backwardMs),
            num(p.optimizerMs),
            share === undefined ? "—" : share.join(" / ")
          ]
        })
      ),
      ""
    )
  }
  for (const r of result.rows) {
    if (r.profile === undefined) continue
    const gflop = r.profile.matMulFlops / 1e9
    const torch1 = result.rows.find((t) => t.engine === "torch" && t.threads === 1)
    out.push(
      `One step does ${gflop.toFixed(2)} GFLOP of matMuls. ${rowLabel(r)} runs them at `
        + `${num(r.profile.matMulFlops / r.profile.matMulMs / 1e6)} GFLOP/s (${num(r.profile.matMulMs)} ms)`
        + (torch1 === undefined
          ? "."
          : `; PyTorch's whole step at 1 thread (${num(torch1.medianStepMs)} ms) is ${
            num(r.profile.matMulFlops / torch1.medianStepMs / 1e6)
          } GFLOP/s counting only those matMuls, a lower bound on its matMul speed.`),
      ""
    )
    out.push(...profileTables(`Kernel profile of one step, ${rowLabel(r)}`, r.profile))
  }
  if (result.batched !== undefined) {
    const b = result.batched
    out.push(
      `Batched K adapters (\`trainLoraMany\`) against K separate \`trainLora\` runs, ours ${b.backend}, 1 thread: each `
        + `adapter has its own data, ${b.rowsPerAdapter} × ${s.seq} tokens per step, ${b.steps} steps; wall time of the `
        + `calls, median of ${b.repeats}. Speed-up = time(K separate) / time(batched). "one adapter" is one \`trainLora\` `
        + `on the same K × ${b.rowsPerAdapter} rows per step (the most stacking could reach); max |Δloss| compares each `
        + "adapter's losses, batched against separate.",
      "",
      table(
        [
          "K",
          "separate ms",
          "batched ms",
          "speed-up",
          "separate tokens/s",
          "batched tokens/s",
          "one adapter ms",
          "batched ÷ one adapter",
          "max |Δloss|"
        ],
        b.rows.map((r) => [
          String(r.k),
          num(r.separateMs),
          num(r.batchedMs),
          `${r.speedup.toFixed(2)}×`,
          num(r.separateTokensPerSecond),
          num(r.batchedTokensPerSecond),
          num(r.oneAdapterMs),
          `${(r.batchedMs / r.oneAdapterMs).toFixed(2)}×`,
          r.maxLossDiff.toExponential(1)
        ])
      ),
      ""
    )
    if (b.profile !== undefined) {
      const k = Math.max(...b.rows.map((r) => r.k))
      out.push(...profileTables(`Kernel profile of one batched step at K = ${k} (\`trainLoraMany\`)`, b.profile))
    }
  }
  if (result.environment.length > 0) out.push(...result.environment.map((line) => `- ${line}`), "")
  if (result.errors.length > 0) out.push("Errors:", "", ...result.errors.map((e) => `- ${e}`), "")
  out.push(`(The LoRA benchmark took ${result.seconds.toFixed(0)} s.)`)
  return out.join("\n")
}

// ---------------------------------------------------------------------------------------------
// CLI

const listFlag = (name: string): Array<number> | undefined => {
  const value = flag(name)
  return value === undefined ? undefined : value.split(",").filter((x) => x.trim() !== "").map(Number)
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === thisFile) {
  if (process.argv.includes("--child")) {
    await serveChild(childMarker, runChild)
  } else {
    const backends = flag("--backends")
    const result = await runLoraBench({
      ...(numberFlag("--steps") === undefined ? {} : { steps: numberFlag("--steps")! }),
      ...(numberFlag("--warmup") === undefined ? {} : { warmup: numberFlag("--warmup")! }),
      ...(numberFlag("--slow-steps") === undefined ? {} : { slowSteps: numberFlag("--slow-steps")! }),
      ...(numberFlag("--slow-warmup") === undefined ? {} : { slowWarmup: numberFlag("--slow-warmup")! }),
      ...(numberFlag("--torch-steps") === undefined ? {} : { torchSteps: numberFlag("--torch-steps")! }),
      ...(numberFlag("--threads") === undefined ? {} : { threads: numberFlag("--threads")! }),
      ...(backends === undefined ? {} : { backends: backends.split(",") as Array<LoraBenchBackend> }),
      ...(listFlag("--ks") === undefined ? {} : { ks: listFlag("--ks")! }),
      ...(numberFlag("--batched-steps") === undefined ? {} : { batchedSteps: numberFlag("--batched-steps")! }),
      ...(numberFlag("--rows-per-adapter") === undefined ? {} : { rowsPerAdapter: numberFlag("--rows-per-adapter")! }),
      ...(numberFlag("--batched-repeats") === undefined ? {} : { batchedRepeats: numberFlag("--batched-repeats")! }),
      ...(flag("--batched-backend") === undefined
        ? {}
        : { batchedBackend: flag("--batched-backend") as LoraBenchBackend }),
      ...(flag("--python") === undefined ? {} : { python: flag("--python")! }),
      profile: !process.argv.includes("--no-profile")
    })
    if (process.argv.includes("--json")) console.log(JSON.stringify(result, null, 2))
    console.log(formatLoraBench(result))
  }
}
