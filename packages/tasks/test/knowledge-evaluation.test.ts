import { describe, expect, it } from "@effect/vitest"
import { TaskReward } from "@seal/core/TaskReward"
import type { Generation } from "@seal/gpu/LanguageModel"
import { LanguageModel } from "@seal/gpu/LanguageModel"
import * as LoraTrainer from "@seal/gpu/LoraTrainer"
import type { TransformerWeights } from "@seal/gpu/model/Transformer"
import { tinyLlama } from "@seal/gpu/testing/TinyModel"
import type { Tokenizer } from "@seal/gpu/tokenizer/Tokenizer"
import { TrainingError } from "@seal/gpu/train/Trainer"
import { Effect, Layer, Schema } from "effect"
import type { EvaluationContext, EvaluationProgress, EvaluationReport } from "../src/knowledge/Evaluation.js"
import { evaluateKnowledge, EvaluationConfig, seedOf, std } from "../src/knowledge/Evaluation.js"
import type { KnowledgeFormat } from "../src/knowledge/InnerLoop.js"
import { InnerLoopConfig } from "../src/knowledge/InnerLoop.js"
import * as KnowledgeReward from "../src/knowledge/KnowledgeReward.js"
import * as SelfEditSampling from "../src/SelfEditSampling.js"

/**
 * A simulated model over "key=value" facts. The base model knows a few facts; an adapter knows
 * the base facts plus every fact in the texts it was trained on, unless it is "forgetful" (its id
 * is listed), in which case it learned nothing. The spy trainer records what each adapter was
 * trained on; the fake model's `generate` with a hook answers as the next trained adapter, in
 * the order the inner loop trains and then asks them.
 */

/** Sequences: each non-empty self-edit line, then the passage. Prompt "title|key", exact match. */
const format: KnowledgeFormat = {
  trainingSequences: (context, selfEdit) => [
    ...selfEdit.split("\n").map((l) => l.trim()).filter((l) => l !== ""),
    context.context
  ],
  questionPrompt: (context, question) => `${context.title}|${question}`,
  maxAnswerTokens: 4,
  grade: (answer, gold) => (answer === gold ? 1 : 0)
}

const q = (question: string, answer: string) => ({ question, answer })

// p0's passage also states one of p1's facts (k1a), so grouping p0 with p1 helps p1.
const contexts: ReadonlyArray<EvaluationContext> = [
  {
    id: "p0",
    context: { title: "T0", context: "k0a=red k1a=sun", questions: [q("k0a", "red"), q("k0b", "green")] },
    selfEditPrompt: "edit p0",
    oracleSelfEdit: "k0a=red\nk0b=green"
  },
  {
    id: "p1",
    context: {
      title: "T1",
      context: "k1b=moon",
      questions: [q("k1a", "sun"), q("k1b", "moon"), q("k1c", "star"), q("k1d", "comet")]
    },
    selfEditPrompt: "edit p1",
    oracleSelfEdit: "k1a=sun\nk1b=moon\nk1c=star\nk1d=comet"
  },
  {
    id: "p2",
    context: {
      title: "T2",
      context: "k2a=one k2b=two k2c=three",
      questions: [q("k2a", "one"), q("k2b", "two"), q("k2c", "three")]
    },
    selfEditPrompt: "edit p2",
    oracleSelfEdit: "k2a=one\nk2b=two\nk2c=three"
  }
]

const baseFacts = new Map([["k1c", "star"], ["k2a", "one"]])

/** The self-edits the test sampler writes: sample j of each context. */
const selfEdits: Record<string, ReadonlyArray<string>> = {
  p0: ["k0b=green", "nothing useful"],
  p1: ["k1a=sun\nk1d=comet", "k1d=comet"],
  p2: ["", "k2c=three"]
}

const facts = (texts: ReadonlyArray<string>) =>
  new Map(
    texts.flatMap((t) => t.split(/\s+/).filter((w) => w.includes("=")).map((w) => w.split("=") as [string, string]))
  )

interface Trained {
  readonly adapterId: string
  readonly texts: ReadonlyArray<string>
}

interface Recorder {
  /** Per `trainMany` call, each adapter's id and training texts. */
  readonly calls: Array<Array<Trained>>
  /** Adapters trained and not yet asked, oldest first. */
  readonly pending: Array<Trained>
  /** Per `generate` call: the adapter asked ("base" without one) and the prompts. */
  readonly asked: Array<{ readonly adapter: string; readonly prompts: ReadonlyArray<string> }>
  readonly forgetful: Set<string>
}

const recorder = (forgetful: Iterable<string> = []): Recorder => ({
  calls: [],
  pending: [],
  asked: [],
  forgetful: new Set(forgetful)
})

const config = tinyLlama({
  vocabSize: 8,
  hiddenSize: 4,
  intermediateSize: 8,
  numLayers: 1,
  numHeads: 1,
  numKvHeads: 1,
  maxPositions: 16
})

const tokenizer: Tokenizer = { vocabSize: 8, bosId: 1, eosId: 2, encode: () => [1], decode: () => "" }

const fakeModel = (log: Recorder) =>
  Layer.succeed(
    LanguageModel,
    LanguageModel.of({
      config,
      tokenizer,
      weights: {} as TransformerWeights,
      source: { format: "hf", path: "memory" },
      generate: (prompts, request) =>
        Effect.sync(() => {
          expect(request.temperature).toBe(0)
          expect(request.maxTokens).toBe(format.maxAnswerTokens)
          let known: ReadonlyMap<string, string> = baseFacts
          let adapter = "base"
          if (request.hook !== undefined) {
            const trained = log.pending.shift()
            if (trained === undefined) throw new Error("asked an adapter that was never trained")
            adapter = trained.adapterId
            if (!log.forgetful.has(adapter)) known = new Map([...baseFacts, ...facts(trained.texts)])
          }
          log.asked.push({ adapter, prompts })
          return prompts.map((prompt): Generation => ({
            prompt,
            promptTokens: [1],
            tokens: [],
            finishReason: "eos",
            text: ` ${known.get(prompt.split("|")[1]!) ?? "unknown"}\n`
          }))
        })
    })
  )

/** `LoraTrainer.layerTest` with `trainMany` recorded. */
const spyTrainer = (log: Recorder, options: LoraTrainer.TestTrainerOptions = {}) =>
  Layer.effect(
    LoraTrainer.LoraTrainer,
    Effect.gen(function*() {
      const inner = yield* LoraTrainer.LoraTrainer
      return LoraTrainer.LoraTrainer.of({
        ...inner,
        trainMany: (adapters, datasets, request) =>
          Effect.tap(inner.trainMany(adapters, datasets, request), (results) => {
            const call = results.map((r, k) => ({
              adapterId: r.adapter.id,
              texts: datasets[k]!.map((e) => ("text" in e ? e.text : "ids" in e ? "<tokens>" : e.completion))
            }))
            log.calls.push(call)
            log.pending.push(...call)
          })
      })
    })
  ).pipe(Layer.provide(LoraTrainer.layerTest(options)))

const layers = (log: Recorder, trainer: LoraTrainer.TestTrainerOptions = {}) =>
  Layer.mergeAll(
    fakeModel(log),
    spyTrainer(log, trainer),
    SelfEditSampling.layerTest((id, index) => selfEdits[id]![index]!)
  )

const evaluationConfig = (input: typeof EvaluationConfig.Encoded = {}) =>
  Schema.decodeSync(EvaluationConfig)({ selfEdits: { samples: 2 }, ...input })

const run = (
  log: Recorder,
  input: typeof EvaluationConfig.Encoded = {},
  onProgress?: (p: EvaluationProgress) => Effect.Effect<void>,
  evaluated: ReadonlyArray<EvaluationContext> = contexts
) => evaluateKnowledge(evaluated, format, evaluationConfig(input), 0, onProgress).pipe(Effect.provide(layers(log)))

const accuracies = (report: EvaluationReport) => report.table.map((r) => [r.method, r.accuracy])
const closeTo = (actual: ReadonlyArray<number>, expected: ReadonlyArray<number>) => {
  expect(actual.length).toBe(expected.length)
  actual.forEach((a, i) => expect(a).toBeCloseTo(expected[i]!, 10))
}

describe("evaluateKnowledge bookkeeping", () => {
  it("std is the population standard deviation", () => {
    expect(std([])).toBe(0)
    expect(std([0.5])).toBe(0)
    expect(std([0, 1])).toBeCloseTo(0.5, 12)
    expect(std([0.5, 0.5, 1])).toBeCloseTo(Math.sqrt(1 / 18), 12)
  })

  it.effect("rows come in method order with the expected accuracies, std and inner-loop counts", () =>
    Effect.gen(function*() {
      const log = recorder()
      const progress: Array<EvaluationProgress> = []
      const report = yield* run(log, {}, (p) => Effect.sync(() => progress.push(p)))
      expect(report.table.map((r) => r.method)).toEqual(["base", "passage-only", "self-edit", "oracle-self-edit"])
      // base: p0 0/2, p1 1/4 (k1c), p2 1/3 (k2a).
      // passage-only: p0 1/2, p1 2/4 (k1b + k1c), p2 3/3.
      // self-edit: p0 (2/2 + 1/2) / 2, p1 (4/4 + 3/4) / 2, p2 (1 + 1) / 2.
      // oracle: all right.
      const perContext = {
        base: [0, 0.25, 1 / 3],
        "passage-only": [0.5, 0.5, 1],
        "self-edit": [0.75, 0.875, 1],
        "oracle-self-edit": [1, 1, 1]
      }
      const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
      closeTo(report.table.map((r) => r.accuracy), Object.values(perContext).map(mean))
      closeTo(report.table.map((r) => r.std), [
        Math.sqrt(((0 - 7 / 36) ** 2 + (0.25 - 7 / 36) ** 2 + (1 / 3 - 7 / 36) ** 2) / 3),
        Math.sqrt(1 / 18), // population std; the sample std would be sqrt(1/12)
        Math.sqrt((0.125 ** 2 + 0 + 0.125 ** 2) / 3),
        0
      ])
      expect(report.table.map((r) => [r.passages, r.innerLoops])).toEqual([[3, 0], [3, 3], [3, 6], [3, 3]])
      for (const row of report.table) {
        expect(Number.isFinite(row.secondsPerInnerLoop) && row.secondsPerInnerLoop >= 0).toBe(true)
      }
      expect(progress).toEqual(report.table.map((r) => ({ method: r.method, done: 3, total: 3 })))

      // Per-context results line up with the ids.
      expect(report.contexts.map((c) => c.id)).toEqual(["p0", "p1", "p2"])
      report.contexts.forEach((c, i) => {
        expect(Object.keys(c.accuracy).sort()).toEqual(Object.keys(perContext).sort())
        for (const [method, values] of Object.entries(perContext)) {
          expect(c.accuracy[method as keyof typeof perContext]).toBeCloseTo(values[i]!, 10)
        }
      })
      expect(report.contexts.map((c) => c.selfEdits)).toEqual([
        [{ text: "k0b=green", accuracy: 1 }, { text: "nothing useful", accuracy: 0.5 }],
        [{ text: "k1a=sun\nk1d=comet", accuracy: 1 }, { text: "k1d=comet", accuracy: 0.75 }],
        [{ text: "", accuracy: 1 }, { text: "k2c=three", accuracy: 1 }]
      ])

      // What was trained: one batched call per method, one adapter per (passage, sample).
      expect(log.calls.map((c) => c.length)).toEqual([3, 6, 3])
      expect(log.calls[0]!.map((t) => t.texts)).toEqual(contexts.map((c) => [c.context.context]))
      expect(log.calls[1]!.map((t) => t.texts)).toEqual([
        ["k0b=green", "k0a=red k1a=sun"],
        ["nothing useful", "k0a=red k1a=sun"],
        ["k1a=sun", "k1d=comet", "k1b=moon"],
        ["k1d=comet", "k1b=moon"],
        ["k2a=one k2b=two k2c=three"],
        ["k2c=three", "k2a=one k2b=two k2c=three"]
      ])
      expect(log.calls[1]!.map((t) => t.adapterId)).toEqual(
        [0, 1, 2].flatMap((p) => [0, 1].map((j) => `lora-test-${seedOf(0, p, j, 0)}`))
      )
      expect(log.calls[2]!.map((t) => t.texts[0])).toEqual(["k0a=red", "k1a=sun", "k2a=one"])
      // Every adapter was asked exactly once, right after its batch, with its own passage's questions.
      expect(log.pending).toEqual([])
      expect(log.asked.filter((a) => a.adapter !== "base").map((a) => a.adapter)).toEqual(
        log.calls.flat().map((t) => t.adapterId)
      )
      const baseCalls = log.asked.slice(0, 3)
      expect(baseCalls.map((a) => [a.adapter, a.prompts.length])).toEqual([["base", 2], ["base", 4], ["base", 3]])
      expect(log.asked[4]!.prompts).toEqual(["T1|k1a", "T1|k1b", "T1|k1c", "T1|k1d"])
    }))

  it.effect("methods run in the configured order; the report does not depend on batchAdapters", () =>
    Effect.gen(function*() {
      const reordered = yield* run(recorder(), { methods: ["oracle-self-edit", "base", "self-edit"] })
      expect(reordered.table.map((r) => r.method)).toEqual(["oracle-self-edit", "base", "self-edit"])
      expect(Object.keys(reordered.contexts[0]!.accuracy)).toEqual(["oracle-self-edit", "base", "self-edit"])
      const whole = yield* run(recorder())
      const log = recorder()
      const chunked = yield* run(log, { innerLoop: { batchAdapters: 2 } })
      expect(log.calls.map((c) => c.length)).toEqual([2, 1, 2, 2, 2, 2, 1])
      expect(accuracies(chunked)).toEqual(accuracies(whole))
      expect(chunked.contexts).toEqual(whole.contexts)
    }))

  it.effect("innerSeeds trains each (passage, self-edit) that many times and averages the seeds", () =>
    Effect.gen(function*() {
      // Adapters with inner seed 1 learn nothing: each pair scores the mean of learned and base.
      const forgetful = [0, 1, 2].flatMap((p) => [0, 1].map((j) => `lora-test-${seedOf(0, p, j, 1)}`))
      const log = recorder(forgetful)
      const report = yield* run(log, { innerSeeds: 2, methods: ["passage-only", "self-edit"] })
      expect(report.table.map((r) => r.innerLoops)).toEqual([6, 12])
      expect(log.calls.map((c) => c.length)).toEqual([6, 12])
      expect(log.calls[0]!.map((t) => t.adapterId)).toEqual(
        [0, 1, 2].flatMap((p) => [0, 1].map((s) => `lora-test-${seedOf(0, p, 0, s)}`))
      )
      // Both seeds of a pair train on the same data.
      expect(log.calls[1]![2]!.texts).toEqual(log.calls[1]![3]!.texts)
      const base = [0, 0.25, 1 / 3]
      const passageOnly = [0.5, 0.5, 1].map((x, i) => (x + base[i]!) / 2)
      closeTo(report.contexts.map((c) => c.accuracy["passage-only"]!), passageOnly)
      expect(report.contexts[1]!.selfEdits.map((s) => s.accuracy)).toEqual([(1 + 0.25) / 2, (0.75 + 0.25) / 2])
      const selfEdit = [[1, 0.5], [1, 0.75], [1, 1]].map((samples, i) =>
        samples.reduce((a, x) => a + (x + base[i]!) / 2, 0) / 2
      )
      closeTo(report.contexts.map((c) => c.accuracy["self-edit"]!), selfEdit)
      closeTo(report.table.map((r) => r.accuracy), [passageOnly, selfEdit].map((xs) => (xs[0]! + xs[1]! + xs[2]!) / 3))
    }))

  it.effect("passagesPerAdapter groups consecutive passages of the same sample into one adapter", () =>
    Effect.gen(function*() {
      const log = recorder()
      const report = yield* run(log, { passagesPerAdapter: 2, methods: ["passage-only", "self-edit"] })
      // passage-only: [p0, p1], [p2]; self-edit: per sample index, [p0, p1] and [p2].
      expect(log.calls.map((c) => c.length)).toEqual([2, 4])
      expect(report.table.map((r) => r.innerLoops)).toEqual([2, 4])
      expect(log.calls[0]!.map((t) => t.texts)).toEqual([
        ["k0a=red k1a=sun", "k1b=moon"],
        ["k2a=one k2b=two k2c=three"]
      ])
      expect(log.calls[1]!.map((t) => t.texts)).toEqual([
        ["k0b=green", "k0a=red k1a=sun", "k1a=sun", "k1d=comet", "k1b=moon"],
        ["nothing useful", "k0a=red k1a=sun", "k1d=comet", "k1b=moon"],
        ["k2a=one k2b=two k2c=three"],
        ["k2c=three", "k2a=one k2b=two k2c=three"]
      ])
      // A group's adapter is asked every question of its passages, in passage order.
      expect(log.asked[0]!.prompts).toEqual(["T0|k0a", "T0|k0b", "T1|k1a", "T1|k1b", "T1|k1c", "T1|k1d"])
      // p1 now also learns k1a from p0's passage; each passage is scored on its own questions.
      closeTo(report.contexts.map((c) => c.accuracy["passage-only"]!), [0.5, 0.75, 1])
      expect(report.contexts.map((c) => c.selfEdits.map((s) => s.accuracy))).toEqual([[1, 0.5], [1, 1], [1, 1]])
      closeTo(report.table.map((r) => r.accuracy), [2.25 / 3, (0.75 + 1 + 1) / 3])
    }))

  it.effect("the oracle row is skipped when a context has no oracle self-edit", () =>
    Effect.gen(function*() {
      const log = recorder()
      const partial = contexts.map((c, i) => (i === 1 ? { ...c, oracleSelfEdit: undefined } : c))
      const report = yield* run(log, { methods: ["base", "oracle-self-edit", "passage-only"] }, undefined, partial)
      expect(report.table.map((r) => r.method)).toEqual(["base", "passage-only"])
      expect(report.contexts.every((c) => !("oracle-self-edit" in c.accuracy))).toBe(true)
      expect(log.calls.length).toBe(1)
      expect(log.calls[0]!.map((t) => t.texts.length)).toEqual([1, 1, 1])
    }))
})

describe("KnowledgeReward", () => {
  const rewardLayer = (log: Recorder, trainer: LoraTrainer.TestTrainerOptions = {}) =>
    KnowledgeReward.layer({
      contexts: new Map(contexts.map((c) => [c.id, c.context])),
      format,
      innerLoop: Schema.decodeSync(InnerLoopConfig)({ batchAdapters: 3 })
    }).pipe(Layer.provide(Layer.merge(fakeModel(log), spyTrainer(log, trainer))))

  it.effect("scores requests in request order: reward = correct / total", () =>
    Effect.gen(function*() {
      const log = recorder()
      const reward = yield* Effect.provide(TaskReward, rewardLayer(log))
      const results = yield* reward.evaluate([
        { contextId: "p2", selfEdit: "", seed: 5 },
        { contextId: "p0", selfEdit: "k0b=green", seed: 6 },
        { contextId: "p1", selfEdit: "k1d=comet", seed: 7 },
        { contextId: "p0", selfEdit: "", seed: 8 }
      ])
      expect(results.map((r) => [r.contextId, r.correct, r.total, r.reward, r.adapterId])).toEqual([
        ["p2", 3, 3, 1, "lora-test-5"],
        ["p0", 2, 2, 1, "lora-test-6"],
        ["p1", 3, 4, 0.75, "lora-test-7"],
        ["p0", 1, 2, 0.5, "lora-test-8"]
      ])
      for (const r of results) expect(r.reward).toBe(r.correct / r.total)
      expect(log.calls.map((c) => c.length)).toEqual([3, 1])
      expect(yield* reward.evaluate([])).toEqual([])
    }))

  it.effect("an unknown context is RewardError UnknownContext, before any training", () =>
    Effect.gen(function*() {
      const log = recorder()
      const reward = yield* Effect.provide(TaskReward, rewardLayer(log))
      const error = yield* Effect.flip(reward.evaluate([
        { contextId: "p0", selfEdit: "", seed: 1 },
        { contextId: "nope", selfEdit: "", seed: 2 }
      ]))
      expect([error._tag, error.reason, error.contextId]).toEqual(["RewardError", "UnknownContext", "nope"])
      expect(error.message).toContain("nope")
      expect(log.calls).toEqual([])
    }))

  it.effect("a training failure is RewardError Training", () =>
    Effect.gen(function*() {
      const failWith = new TrainingError({ reason: "Backend", detail: "boom" })
      const reward = yield* Effect.provide(TaskReward, rewardLayer(recorder(), { failWith }))
      const error = yield* Effect.flip(reward.evaluate([{ contextId: "p1", selfEdit: "", seed: 1 }]))
      expect([error._tag, error.reason]).toEqual(["RewardError", "Training"])
      expect(error.detail).toContain("boom")
    }))
})
