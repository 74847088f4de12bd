import { describe, expect, it } from "@effect/vitest"
import { loadCheckpoint } from "@seal/gpu/checkpoint/Checkpoint"
import { readSafetensors } from "@seal/gpu/checkpoint/Safetensors"
import { initWeights } from "@seal/gpu/model/InitWeights"
import { tempDir } from "@seal/gpu/testing/HfFixture"
import { paddedTokens } from "@seal/gpu/train/LengthBuckets"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import { Deferred, Effect, Either, Exit, Fiber, Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import {
  decodePretrainConfig,
  preparePretraining,
  pretrain,
  type PretrainConfig,
  type PretrainConfigEncoded,
  PretrainError,
  type PretrainProgress,
  type PretrainResult
} from "../src/world/Pretrain.js"

const decode = (input: unknown): PretrainConfig =>
  Either.getOrThrowWith(decodePretrainConfig(input), (e) => new Error(e.message))

const failure = (input: unknown, source?: string): PretrainError =>
  Either.match(decodePretrainConfig(input, source), {
    onLeft: (e) => e,
    onRight: () => {
      throw new Error(`${JSON.stringify(input)} decoded`)
    }
  })

const setupOf = (config: PretrainConfig) =>
  Either.getOrThrowWith(preparePretraining(config), (e) => new Error(e.message))

/** The brief's tiny world and corpus: enough documents for the leak and plan checks (no training). */
const tinyInput = {
  world: { pretrainEntities: 20, rlEntities: 10, heldOutEntities: 10 },
  corpus: {
    passageRenderings: 2,
    restatementRepeats: 1,
    qaRepeats: 1,
    freshSelfEdits: 40,
    openBookDocuments: 40,
    repeatDocuments: 40
  },
  model: { hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64 },
  training: { warmupPasses: 1, mainPasses: 1, batchDocuments: 16, checkpointEverySteps: 5, warmupSteps: 2 }
} satisfies PretrainConfigEncoded

/**
 * Smaller still, for the runs that train: 100 documents, 13 steps (2 warm-up, 11 main), a
 * checkpoint every 5. About 4 s per run on one busy core.
 */
const trainInput = {
  world: { pretrainEntities: 8, rlEntities: 4, heldOutEntities: 4 },
  corpus: {
    passageRenderings: 1,
    restatementRepeats: 1,
    qaRepeats: 1,
    selfEditsPerPerson: 1,
    freshSelfEdits: 8,
    openBookDocuments: 8,
    repeatDocuments: 8
  },
  model: { hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32 },
  training: { warmupPasses: 1, mainPasses: 1, batchDocuments: 8, checkpointEverySteps: 5, warmupSteps: 2 },
  seed: 4
} satisfies PretrainConfigEncoded
const trainConfig = decode(trainInput)
const totalSteps = 13

const read = (file: string) => Fs.readFileSync(file, "utf8")
const readJson = (file: string) => JSON.parse(read(file)) as Record<string, unknown>
const progressSteps = (dir: string) =>
  read(Path.join(dir, "progress.jsonl")).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l).step as number)
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Runs `pretrain`, recording the steps its progress callback saw. */
const run = (options: Omit<Parameters<typeof pretrain>[0], "onProgress">) =>
  Effect.gen(function*() {
    const seen: Array<PretrainProgress> = []
    const result = yield* pretrain({ ...options, onProgress: (p) => Effect.sync(() => seen.push(p)) })
    return {
      result,
      seen: seen.map((p) => p.step),
      totals: seen.map((p) => p.totalSteps),
      ownSteps: seen.map((p) => p.stepsThisProcess)
    }
  })

describe("decodePretrainConfig", () => {
  it("fills defaults and survives the JSON round trip a resume makes", () => {
    const defaults = decode({})
    expect(defaults.model).toEqual({
      hiddenSize: 128,
      numLayers: 4,
      numHeads: 4,
      intermediateSize: 384,
      maxPositions: 128,
      ropeTheta: 10000
    })
    expect(defaults.training).toMatchObject({ checkpointEverySteps: 50, microBatchTokens: 2048, warmupPasses: 3 })
    expect(defaults.seed).toBe(0)
    for (const config of [defaults, decode(tinyInput), trainConfig]) {
      expect(decode(JSON.parse(JSON.stringify(config)))).toEqual(config)
    }
    expect(trainConfig.model.hiddenSize).toBe(16)
    expect(trainConfig.seed).toBe(4)
  })

  it("rejects bad input with an InvalidConfig naming the source and the field", () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ model: { numHeads: 3 } }, "config: model", /multiple of numHeads/],
      [{ model: { hiddenSize: 12, numHeads: 4 } }, "config: model", /must be even/],
      [{ training: { learningRate: -0.001 } }, "config: training.learningRate", /positive/],
      [{ training: { learningRate: "1e-3" } }, "config: training.learningRate", /Expected number/],
      [{ training: { warmupPasses: 0, mainPasses: 0 } }, "config: training", /at least 1/],
      [{ training: { minLearningRateRatio: 2 } }, "config: training.minLearningRateRatio", /2/],
      [{ seed: 1.5 }, "config: seed", /integer/],
      [{ seed: "x" }, "config: seed", /Expected number/],
      [{ world: { pretrainEntities: 0 } }, "config: world.pretrainEntities", /positive/],
      [{ corpus: { qaRepeats: -1 } }, "config: corpus.qaRepeats", /non-negative/],
      [{ model: 5 }, "config: model", /Expected/],
      // A misspelt section must not silently train the defaults.
      [{ trainnig: { learningRate: 1e-3 } }, "config: trainnig", /is unexpected/],
      [{ training: { learningrate: 1e-3 } }, "config: training.learningrate", /is unexpected/],
      [null, "config", /Expected/],
      [[], "config", /Expected/]
    ]
    for (const [input, field, detail] of cases) {
      const error = failure(input)
      expect(error).toBeInstanceOf(PretrainError)
      expect(error.reason, JSON.stringify(input)).toBe("InvalidConfig")
      expect(error.field, JSON.stringify(input)).toBe(field)
      expect(error.detail, JSON.stringify(input)).toMatch(detail)
      expect(error.message).toBe(`${field}: ${error.detail}`)
    }
    expect(failure({ model: { numHeads: 3 } }, "tiny.json").field).toBe("tiny.json: model")
  })
})

describe("preparePretraining", () => {
  const tiny = decode(tinyInput)

  it("is deterministic; the seed moves the data order only", () => {
    const a = setupOf(tiny)
    const b = setupOf(tiny)
    expect(b.plan).toEqual(a.plan)
    expect(b.examples).toEqual(a.examples)
    expect(b.corpus).toEqual(a.corpus)
    expect(b.world).toEqual(a.world)
    expect(b.stats).toEqual(a.stats)
    const reseeded = setupOf({ ...tiny, seed: 9 })
    expect(reseeded.examples).toEqual(a.examples)
    expect(reseeded.plan).not.toEqual(a.plan)
    expect(setupOf({ ...tiny, corpusSeed: 3 }).examples).not.toEqual(a.examples)
    expect(a.modelConfig).toMatchObject({
      architecture: "llama",
      vocabSize: a.tokenizer.vocabSize,
      hiddenSize: 32,
      numHeads: 2,
      numKvHeads: 2,
      headDim: 16,
      numLayers: 1,
      intermediateSize: 64,
      maxPositions: 128,
      tieEmbeddings: true
    })
  })

  it("plans the warm-up documents for warmupPasses, then the main documents for mainPasses", () => {
    const config = { ...tiny, training: { ...tiny.training, warmupPasses: 2, mainPasses: 3 } }
    const setup = setupOf(config)
    const warmup = setup.corpus.warmup.length
    const main = setup.corpus.main.length
    expect(warmup).toBeGreaterThan(0)
    expect(main).toBeGreaterThan(0)
    expect(setup.examples).toHaveLength(warmup + main)
    const batch = config.training.batchDocuments
    expect(setup.plan).toHaveLength(2 * Math.ceil(warmup / batch) + 3 * Math.ceil(main / batch))
    expect(setup.stats.steps).toBe(setup.plan.length)
    const epochs = setup.plan.map((s) => s.epoch)
    expect(epochs).toEqual([...epochs].sort((x, y) => x - y))
    expect([...new Set(epochs)]).toEqual([0, 1, 2, 3, 4])
    for (const epoch of [0, 1, 2, 3, 4]) {
      const ids = setup.plan.filter((s) => s.epoch === epoch).flatMap((s) => s.microBatches.flat())
      const expected = epoch < 2 ? range(0, warmup - 1) : range(warmup, warmup + main - 1)
      expect([...ids].sort((x, y) => x - y), `epoch ${epoch}`).toEqual(expected)
    }
    // Token accounting ties the plan to the corpus: every pass reads each document once.
    expect(setup.stats.plannedTokens).toBe(2 * setup.stats.warmup.tokens + 3 * setup.stats.main.tokens)
    const lengths = setup.examples.map((e) => e.ids.length)
    expect(setup.stats.paddedTokens).toBe(paddedTokens(setup.plan, lengths))
    expect(setup.stats.paddedTokens).toBeGreaterThanOrEqual(setup.stats.plannedTokens)

    // microBatchTokens bounds memory, not the result: the same documents in every step.
    const narrow = setupOf({ ...config, training: { ...config.training, microBatchTokens: 64 } })
    expect(narrow.plan.map((s) => s.microBatches.flat())).toEqual(setup.plan.map((s) => s.microBatches.flat()))
    expect(narrow.plan.some((s) => s.microBatches.length > 1)).toBe(true)
    for (const micro of narrow.plan.flatMap((s) => s.microBatches)) {
      if (micro.length > 1) expect(micro.length * Math.max(...micro.map((i) => lengths[i]!))).toBeLessThanOrEqual(64)
    }

    // No warm-up passes: the main part from epoch 0.
    const noWarmup = setupOf({ ...config, training: { ...config.training, warmupPasses: 0, mainPasses: 1 } })
    expect(noWarmup.plan).toHaveLength(Math.ceil(main / batch))
    expect(noWarmup.plan.every((s) => s.epoch === 0)).toBe(true)
    expect(Math.min(...noWarmup.plan.flatMap((s) => s.microBatches.flat()))).toBe(warmup)
  })

  it("tokenizes the corpus documents in order (BOS, EOS, prompt not a target) and never names an RL or held-out person", () => {
    const setup = setupOf(tiny)
    const { tokenizer } = setup
    const docs = [...setup.corpus.warmup, ...setup.corpus.main]
    expect(setup.examples).toHaveLength(docs.length)
    const names = (split: "pretrain" | "rl" | "heldOut") => new Set(setup.world.entities[split].map((e) => e.name))
    const forbidden = new Set([...names("rl"), ...names("heldOut")])
    expect(forbidden.size).toBe(20)
    const bigrams = (text: string) => {
      const words = tokenizer.words(text)
      return words.slice(1).map((w, i) => `${words[i]} ${w}`)
    }
    const leaksIn = (text: string) => bigrams(text).filter((b) => forbidden.has(b))
    // The detector does find a name when one is there.
    const someone = [...forbidden][0]!
    expect(leaksIn(`question: what is ${someone} 's city ?`)).toEqual([someone])

    const leaks: Array<string> = []
    const seenPretrain = new Set<string>()
    setup.examples.forEach((example, i) => {
      const doc = docs[i]!
      expect(example.ids[0]).toBe(tokenizer.bosId)
      expect(example.ids[example.ids.length - 1]).toBe(tokenizer.eosId)
      expect(example.labelMask[example.ids.length - 1]).toBe(1)
      expect(example.ids).not.toContain(tokenizer.unkId)
      const text = tokenizer.decode(example.ids)
      expect(tokenizer.words(text), `document ${i}`).toEqual(tokenizer.words(doc.prompt + doc.completion))
      if (doc.prompt !== "") {
        const promptLength = tokenizer.encode(doc.prompt).length
        expect(example.labelMask.slice(0, promptLength).every((m) => m === 0)).toBe(true)
        expect(example.labelMask[promptLength]).toBe(1)
      }
      leaks.push(...leaksIn(text).map((name) => `${doc.kind} ${i}: ${name}`))
      for (const b of bigrams(text)) if (names("pretrain").has(b)) seenPretrain.add(b)
    })
    expect(leaks).toEqual([])
    // Every pretraining person is read about.
    expect(seenPretrain).toEqual(names("pretrain"))
  })

  it("fails with DocumentTooLong when a document does not fit maxPositions", () => {
    const longest = Math.max(...setupOf(tiny).examples.map((e) => e.ids.length))
    expect(longest).toBeGreaterThan(20)
    const error = Either.match(preparePretraining({ ...tiny, model: { ...tiny.model, maxPositions: 20 } }), {
      onLeft: (e) => e,
      onRight: () => undefined
    })
    expect(error?.reason).toBe("DocumentTooLong")
    expect(error?.field).toBe("model.maxPositions")
    expect(error?.detail).toContain(`at least ${longest}`)
    // Exactly the longest document fits.
    expect(Either.isRight(preparePretraining({ ...tiny, model: { ...tiny.model, maxPositions: longest } }))).toBe(true)
    expect(Either.isLeft(preparePretraining({ ...tiny, model: { ...tiny.model, maxPositions: longest - 1 } }))).toBe(
      true
    )
  })
})

describe("pretrain: the run directory", () => {
  // One uninterrupted run, shared by the tests below.
  const scope = Effect.runSync(Scope.make())
  let whole: { result: PretrainResult; seen: Array<number>; totals: Array<number> }
  let wholeDir: string
  let tensorsBefore: number
  beforeAll(async () => {
    await tf.setBackend("cpu")
    tensorsBefore = tf.memory().numTensors
    wholeDir = await Effect.runPromise(tempDir("pretrain-whole").pipe(Scope.extend(scope)))
    whole = await Effect.runPromise(run({ dir: wholeDir, config: trainConfig }))
  })
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  it("an uninterrupted run checkpoints every checkpointEverySteps and leaves the final model", () => {
    expect(tf.memory().numTensors).toBe(tensorsBefore)
    const { result } = whole
    expect(result.stepsDone).toBe(totalSteps)
    expect(result.totalSteps).toBe(totalSteps)
    expect(result.setup.plan).toHaveLength(totalSteps)
    expect(result.modelDir).toBe(Path.join(wholeDir, "model"))
    expect(whole.seen).toEqual([5, 10, 13])
    expect(whole.totals).toEqual([13, 13, 13])
    expect(Fs.readdirSync(wholeDir).sort()).toEqual([
      "checkpoints",
      "latest.json",
      "model",
      "pretrain-config.json",
      "progress.jsonl"
    ])
    expect(Fs.readdirSync(Path.join(wholeDir, "checkpoints"))).toEqual(["step-000013"])
    expect(readJson(Path.join(wholeDir, "latest.json"))).toEqual({ step: 13, checkpoint: "step-000013" })
    expect(progressSteps(wholeDir)).toEqual(range(1, totalSteps))
    expect(Fs.readdirSync(Path.join(wholeDir, "checkpoints", "step-000013")).sort()).toEqual([
      "config.json",
      "model.safetensors",
      "optimizer.safetensors",
      "tokenizer.json",
      "tokenizer_config.json"
    ])
    expect(readJson(Path.join(wholeDir, "pretrain-config.json"))).toEqual(JSON.parse(JSON.stringify(trainConfig)))
  })

  it.effect("a run stopped mid-window, crashed and resumed ends byte-identical to the uninterrupted one", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("pretrain-resumed")
      const before = tf.memory().numTensors
      const file = (...parts: Array<string>) => Path.join(dir, ...parts)

      // Stop after 7 steps: windows [0, 5) and [5, 7); the step-5 checkpoint is gone.
      const first = yield* run({ dir, config: trainConfig, stopAfterSteps: 7 })
      expect(first.result.stepsDone).toBe(7)
      expect(first.result.totalSteps).toBe(totalSteps)
      expect(first.result.modelDir).toBeUndefined()
      expect(first.seen).toEqual([5, 7])
      expect(first.ownSteps).toEqual([5, 7])
      expect(Fs.existsSync(file("model"))).toBe(false)
      expect(Fs.readdirSync(file("checkpoints"))).toEqual(["step-000007"])
      expect(readJson(file("latest.json"))).toEqual({ step: 7, checkpoint: "step-000007" })
      expect(progressSteps(dir)).toEqual(range(1, 7))

      // A crash in the next window: it logged steps it never checkpointed (the last line cut
      // mid-write) and left a half-written checkpoint directory.
      Fs.appendFileSync(file("progress.jsonl"), `{"step":8,"loss":999}\n{"step":9,"loss":999}\n{"step":10,"lo`)
      Fs.mkdirSync(file("checkpoints", "step-000010"))
      Fs.writeFileSync(file("checkpoints", "step-000010", "model.safetensors"), "garbage")
      // And one killed between writing latest.json and removing the previous checkpoint.
      Fs.mkdirSync(file("checkpoints", "step-000005"))
      expect(progressSteps.bind(null, dir)).toThrow()

      // Resume for 3 more steps (the config passed is ignored: the run's own is read back)...
      const second = yield* run({ dir, resume: true, config: { ...trainConfig, seed: 99 }, stopAfterSteps: 3 })
      expect(second.result.stepsDone).toBe(10)
      expect(second.seen).toEqual([10])
      // The pace of a resumed run counts only this process's steps.
      expect(second.ownSteps).toEqual([3])
      expect(progressSteps(dir)).toEqual(range(1, 10))
      expect(read(file("progress.jsonl"))).not.toContain("999")
      expect(Fs.readdirSync(file("checkpoints"))).toEqual(["step-000010"])
      expect(readJson(file("latest.json"))).toEqual({ step: 10, checkpoint: "step-000010" })

      // ...then to the end.
      const third = yield* run({ dir, resume: true })
      expect(third.result.stepsDone).toBe(totalSteps)
      expect(third.seen).toEqual([13])
      expect(third.result.modelDir).toBe(file("model"))
      expect(tf.memory().numTensors).toBe(before)

      const bytes = (root: string, ...parts: Array<string>) => Fs.readFileSync(Path.join(root, ...parts))
      expect(bytes(dir, "model", "model.safetensors").equals(bytes(wholeDir, "model", "model.safetensors"))).toBe(
        true
      )
      const optimizer = ["checkpoints", "step-000013", "optimizer.safetensors"]
      expect(bytes(dir, ...optimizer).equals(bytes(wholeDir, ...optimizer))).toBe(true)
      // The same steps, losses and learning rates, one line each, in order.
      expect(progressSteps(dir)).toEqual(range(1, totalSteps))
      expect(read(file("progress.jsonl"))).toBe(read(Path.join(wholeDir, "progress.jsonl")))
      expect(Fs.readdirSync(file("checkpoints"))).toEqual(["step-000013"])
      expect(readJson(file("latest.json"))).toEqual({ step: 13, checkpoint: "step-000013" })
      expect(read(file("model", "seal-world.json"))).toBe(read(Path.join(wholeDir, "model", "seal-world.json")))

      // The weights did train: the final model is not the initial one.
      const final = yield* readSafetensors(file("model", "model.safetensors"))
      const initial = initWeights(whole.result.setup.modelConfig, trainConfig.seed)
      const embed = "model.embed_tokens.weight"
      expect(final.get(embed)!.shape).toEqual(initial.get(embed)!.shape)
      expect(final.get(embed)!.data).not.toEqual(initial.get(embed)!.data)

      // Resuming a finished run trains nothing and leaves the same model.
      const again = yield* run({ dir, resume: true })
      expect(again.seen).toEqual([])
      expect(again.result.stepsDone).toBe(totalSteps)
      expect(bytes(dir, "model", "model.safetensors").equals(bytes(wholeDir, "model", "model.safetensors"))).toBe(
        true
      )
      expect(progressSteps(dir)).toEqual(range(1, totalSteps))
    })))

  it.effect("interrupted mid-window, it stops within a step, keeps the last checkpoint, and resumes to the same model", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("pretrain-interrupted")
      const before = tf.memory().numTensors
      const steps: Array<number> = []
      const reached = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(pretrain({
        dir,
        config: trainConfig,
        onStep: (step) =>
          Effect.sync(() => steps.push(step)).pipe(
            Effect.zipRight(step === 7 ? Deferred.succeed(reached, undefined) : Effect.void)
          )
      }))
      yield* Deferred.await(reached)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      // The window [5, 10) did not run to its end: the loop comes back to the event loop every step.
      expect(steps.slice(0, 7)).toEqual(range(1, 7))
      expect(steps.length).toBeLessThan(9)
      expect(readJson(Path.join(dir, "latest.json"))).toEqual({ step: 5, checkpoint: "step-000005" })
      expect(tf.memory().numTensors).toBe(before)

      const resumed = yield* run({ dir, resume: true })
      expect(resumed.seen).toEqual([10, 13])
      expect(resumed.ownSteps).toEqual([5, 8])
      const bytes = (root: string) => Fs.readFileSync(Path.join(root, "model", "model.safetensors"))
      expect(bytes(dir).equals(bytes(wholeDir))).toBe(true)
    })))

  it.effect(
    "data-parallel over 2 worker threads: the same bytes; stopped there and resumed here, the same again",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const bytes = (root: string, ...parts: Array<string>) => Fs.readFileSync(Path.join(root, ...parts))
        const parallel = { workers: 2, backend: "cpu" as const }
        const dir = yield* tempDir("pretrain-parallel")
        const both = yield* run({ dir, config: trainConfig, parallel })
        expect(both.seen).toEqual([5, 10, 13])
        expect(bytes(dir, "model", "model.safetensors").equals(bytes(wholeDir, "model", "model.safetensors"))).toBe(
          true
        )
        expect(read(Path.join(dir, "progress.jsonl"))).toBe(read(Path.join(wholeDir, "progress.jsonl")))

        const mixed = yield* tempDir("pretrain-parallel-resumed")
        yield* run({ dir: mixed, config: trainConfig, parallel, stopAfterSteps: 7 })
        const rest = yield* run({ dir: mixed, resume: true })
        expect(rest.seen).toEqual([12, 13])
        const optimizer = ["checkpoints", "step-000013", "optimizer.safetensors"]
        expect(bytes(mixed, ...optimizer).equals(bytes(wholeDir, ...optimizer))).toBe(true)
        expect(bytes(mixed, "model", "model.safetensors").equals(bytes(wholeDir, "model", "model.safetensors"))).toBe(
          true
        )
      })),
    120_000
  )

  it.effect("the final model loads as a checkpoint whose tokenizer round-trips the world's text", () =>
    Effect.gen(function*() {
      const { setup, modelDir } = whole.result
      const loaded = yield* loadCheckpoint(modelDir!)
      expect(loaded.config).toEqual(setup.modelConfig)
      expect(loaded.source).toEqual({ format: "hf", path: modelDir })
      const last = yield* readSafetensors(Path.join(wholeDir, "checkpoints", "step-000013", "model.safetensors"))
      expect([...loaded.weights.keys()].sort()).toEqual([...last.keys()].sort())
      for (const [name, t] of last) expect(loaded.weights.get(name)!.data, name).toEqual(t.data)

      const person = setup.world.entities.pretrain[0]!
      const restatement = setup.corpus.main.find((d) => d.kind === "restatement")!.completion
      expect(restatement).toContain("\n")
      for (const text of [person.passage, restatement, `question: what is ${person.name} 's city ?`]) {
        const ids = loaded.tokenizer.encode(text)
        expect(ids).toEqual(setup.tokenizer.encode(text))
        expect(ids).not.toContain(setup.tokenizer.unkId)
        expect(loaded.tokenizer.decode(ids)).toBe(text)
      }
      expect(loaded.tokenizer.bosId).toBe(setup.tokenizer.bosId)
      expect(loaded.tokenizer.eosId).toBe(setup.tokenizer.eosId)
      expect(loaded.tokenizer.vocabSize).toBe(setup.tokenizer.vocabSize)

      const provenance = readJson(Path.join(modelDir!, "seal-world.json"))
      expect(provenance.config).toEqual(JSON.parse(JSON.stringify(trainConfig)))
      expect(decode(provenance.config)).toEqual(trainConfig)
      expect(provenance.corpus).toMatchObject({ steps: totalSteps, plannedTokens: setup.stats.plannedTokens })
      expect(provenance.splits).toEqual({
        qaPeople: setup.corpus.qaPeople.length,
        passageOnlyPeople: setup.corpus.passageOnlyPeople.length
      })
      // An intermediate checkpoint is a loadable model directory too.
      const ckpt = yield* loadCheckpoint(Path.join(wholeDir, "checkpoints", "step-000013"))
      expect(ckpt.config).toEqual(setup.modelConfig)
    }))

  it.effect("refuses an occupied output, a missing run and a bad run config before writing anything", () =>
    Effect.scoped(Effect.gen(function*() {
      const root = yield* tempDir("pretrain-refused")
      const listing = (dir: string) => Fs.readdirSync(dir).sort()
      const pretrainError = (options: Parameters<typeof pretrain>[0]) =>
        Effect.flip(pretrain(options)).pipe(
          Effect.map((e) => {
            expect(e).toBeInstanceOf(PretrainError)
            return e as PretrainError
          })
        )

      // A fresh run into a directory holding something else.
      const busy = Path.join(root, "busy")
      Fs.mkdirSync(busy)
      Fs.writeFileSync(Path.join(busy, "notes.txt"), "keep me")
      const occupied = yield* pretrainError({ dir: busy, config: trainConfig })
      expect(occupied.reason).toBe("OutputExists")
      expect(occupied.field).toBe(busy)
      expect(occupied.message).toMatch(/--resume/)
      expect(listing(busy)).toEqual(["notes.txt"])
      expect(read(Path.join(busy, "notes.txt"))).toBe("keep me")

      // A fresh run over a finished run.
      const wholeListing = listing(wholeDir)
      const progress = read(Path.join(wholeDir, "progress.jsonl"))
      expect((yield* pretrainError({ dir: wholeDir, config: trainConfig })).reason).toBe("OutputExists")
      expect(listing(wholeDir)).toEqual(wholeListing)
      expect(read(Path.join(wholeDir, "progress.jsonl"))).toBe(progress)

      // Resuming where there is no run: an empty directory, or none at all.
      const empty = Path.join(root, "empty")
      Fs.mkdirSync(empty)
      const notARun = yield* pretrainError({ dir: empty, resume: true, config: trainConfig })
      expect(notARun.reason).toBe("NotARun")
      expect(notARun.field).toBe(Path.join(empty, "pretrain-config.json"))
      expect(listing(empty)).toEqual([])
      const nowhere = Path.join(root, "nowhere")
      expect((yield* pretrainError({ dir: nowhere, resume: true })).reason).toBe("NotARun")
      expect(Fs.existsSync(nowhere)).toBe(false)

      // A fresh run without a config.
      expect((yield* pretrainError({ dir: Path.join(root, "unconfigured") })).reason).toBe("InvalidConfig")
      expect(Fs.existsSync(Path.join(root, "unconfigured"))).toBe(false)

      // A document longer than the context: refused before the run directory is written.
      const short = Path.join(root, "short")
      const tooLong = yield* pretrainError({
        dir: short,
        config: { ...trainConfig, model: { ...trainConfig.model, maxPositions: 16 } }
      })
      expect(tooLong.reason).toBe("DocumentTooLong")
      expect(tooLong.field).toBe("model.maxPositions")
      expect(Fs.existsSync(short)).toBe(false)

      // A run whose config was edited into something invalid names the file and the field.
      const edited = Path.join(root, "edited")
      Fs.mkdirSync(edited)
      Fs.writeFileSync(Path.join(edited, "pretrain-config.json"), JSON.stringify({ model: { numHeads: 3 } }))
      const invalid = yield* pretrainError({ dir: edited, resume: true })
      expect(invalid.reason).toBe("InvalidConfig")
      expect(invalid.field).toBe(`${Path.join(edited, "pretrain-config.json")}: model`)
      expect(listing(edited)).toEqual(["pretrain-config.json"])

      // A damaged latest.json, or one naming a checkpoint that is gone, is a CheckpointError.
      const damaged = Path.join(root, "damaged")
      Fs.mkdirSync(damaged)
      Fs.copyFileSync(Path.join(wholeDir, "pretrain-config.json"), Path.join(damaged, "pretrain-config.json"))
      Fs.writeFileSync(Path.join(damaged, "latest.json"), "{")
      const malformed = yield* Effect.flip(pretrain({ dir: damaged, resume: true }))
      expect(malformed._tag).toBe("CheckpointError")
      expect(malformed).toMatchObject({ reason: "Malformed", file: Path.join(damaged, "latest.json") })
      Fs.writeFileSync(Path.join(damaged, "latest.json"), JSON.stringify({ step: 5, checkpoint: "step-000005" }))
      const missing = yield* Effect.flip(pretrain({ dir: damaged, resume: true }))
      expect(missing._tag).toBe("CheckpointError")
      expect(missing).toMatchObject({ reason: "NotFound" })
      expect(Fs.existsSync(Path.join(damaged, "model"))).toBe(false)
    })))
})
