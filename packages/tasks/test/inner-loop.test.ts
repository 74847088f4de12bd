import { describe, expect, it } from "@effect/vitest"
import * as LoraTrainer from "@seal/gpu/LoraTrainer"
import { initWeights } from "@seal/gpu/model/InitWeights"
import * as TensorRuntime from "@seal/gpu/TensorRuntime"
import { tinyLanguageModel, tinyLlama } from "@seal/gpu/testing/TinyModel"
import { Effect, Layer, Schema } from "effect"
import type { InnerLoopItem, InnerLoopOutcome, KnowledgeContext } from "../src/knowledge/InnerLoop.js"
import {
  adaptAndAnswer,
  answerQuestions,
  answerUnadapted,
  InnerLoopConfig,
  squadFormat
} from "../src/knowledge/InnerLoop.js"
import { questionPrompt as squadQuestionPrompt } from "../src/knowledge/SelfEditPrompts.js"
import { defaultWorldConfig, generateWorld, questionPrompt, trainingSequences } from "../src/world/World.js"
import { worldEvaluationContexts, worldFormat } from "../src/world/WorldTask.js"
import { charFormat } from "./support/CharFormat.js"

const config = tinyLlama({ hiddenSize: 32, intermediateSize: 64, headDim: 8 })

const modelLayer = tinyLanguageModel(config, initWeights(config, 3, 0.2))
const trainerLayer = LoraTrainer.layer.pipe(Layer.provideMerge(modelLayer))

const fact = (subject: string, answer: string): KnowledgeContext => ({
  title: subject,
  context: `${subject} ${answer}.`,
  questions: [{ question: `${subject} `, answer }]
})

const zed = fact("zed is", "blue")

const innerLoop = (input: typeof InnerLoopConfig.Encoded = {}) =>
  Schema.decodeSync(InnerLoopConfig)({ rank: 4, alpha: 8, learningRate: 1e-2, steps: 30, ...input })

const numTensors = Effect.map(Effect.flatMap(TensorRuntime.TensorRuntime, (r) => r.info), (i) => i.numTensors)

const comparable = (o: InnerLoopOutcome) => ({
  correct: o.correct,
  total: o.total,
  answers: o.answers,
  adapterId: o.adapterId,
  trainingSequences: o.trainingSequences
})

describe("the inner loop on a real tiny model", () => {
  it.effect("the adapted model answers what it was trained on; the unadapted one does not", () =>
    Effect.gen(function*() {
      const before = yield* numTensors
      const [unadapted] = yield* answerUnadapted([{ contexts: [zed] }], charFormat)
      expect(unadapted!.answers.map((a) => a.score)).toEqual([0])
      expect(unadapted!.answers[0]!.answer).not.toMatch(/^blue/)
      expect([unadapted!.accuracy, unadapted!.adapterId, unadapted!.trainingSequences]).toEqual([0, undefined, 0])

      const [adapted] = yield* adaptAndAnswer([{ contexts: [zed], selfEdits: [""], seed: 1 }], charFormat, innerLoop())
      expect(adapted!.answers).toEqual([{ question: "zed is ", gold: "blue", answer: "blue.", score: 1 }])
      expect([adapted!.accuracy, adapted!.correct, adapted!.total, adapted!.trainingSequences]).toEqual([1, 1, 1, 1])
      expect(adapted!.adapterId).toMatch(/^lora-/)
      expect(adapted!.finalLoss).toBeLessThan(0.5)
      expect(adapted!.seconds).toBeGreaterThan(0)
      // Adapting left no tensor behind (the base weights are still the model's).
      expect(yield* numTensors).toBe(before)
      // The base model is untouched by the adapter.
      const [again] = yield* answerUnadapted([{ contexts: [zed] }], charFormat)
      expect(again!.answers).toEqual(unadapted!.answers)
      expect(yield* numTensors).toBe(before)
    }).pipe(Effect.provide(trainerLayer)))

  it.effect("batchAdapters 2 gives the outcomes of batchAdapters 1, in item order", () =>
    Effect.gen(function*() {
      const items: ReadonlyArray<InnerLoopItem> = [
        { contexts: [zed], selfEdits: [""], seed: 1 },
        { contexts: [fact("kim has", "six")], selfEdits: ["kim has six."], seed: 2 },
        // Two passages in one adapter: the answers of both, in order.
        { contexts: [fact("the sky is", "red"), fact("ann got", "gold")], selfEdits: ["", ""], seed: 3 }
      ]
      const before = yield* numTensors
      const one = yield* adaptAndAnswer(items, charFormat, innerLoop({ batchAdapters: 1 }))
      const two = yield* adaptAndAnswer(items, charFormat, innerLoop({ batchAdapters: 2 }))
      expect(yield* numTensors).toBe(before)
      expect(one.map((o) => o.total)).toEqual([1, 1, 2])
      expect(one.map((o) => o.trainingSequences)).toEqual([1, 2, 2])
      expect(one[2]!.answers.map((a) => a.gold)).toEqual(["red", "gold"])
      expect(two.map(comparable)).toEqual(one.map(comparable))
      one.forEach((o, i) => {
        expect(Math.abs(o.accuracy - two[i]!.accuracy)).toBeLessThan(1e-6)
        expect(Math.abs(o.finalLoss! - two[i]!.finalLoss!)).toBeLessThan(1e-3)
      })
      // Training worked for every item (the comparison is not between two untrained models).
      expect(one.map((o) => o.accuracy)).toEqual([1, 1, 1])
      // A memory budget too small for two adapters' activations trains them one at a time.
      const tight = yield* adaptAndAnswer(items, charFormat, innerLoop({ batchAdapters: 3, memoryBudgetMB: 1e-3 }))
      expect(tight.map(comparable)).toEqual(one.map(comparable))
    }).pipe(Effect.provide(trainerLayer)))

  it.effect("answerQuestions with no questions asks nothing", () =>
    Effect.gen(function*() {
      expect(yield* answerQuestions([{ ...zed, questions: [] }], charFormat)).toEqual([])
      const [empty] = yield* answerUnadapted([{ contexts: [] }], charFormat)
      expect([empty!.accuracy, empty!.total]).toEqual([0, 0])
    }).pipe(Effect.provide(modelLayer)))
})

describe("squadFormat", () => {
  const passage: KnowledgeContext = {
    title: "Eiffel Tower",
    context: "  The tower is in Paris.  ",
    questions: [{ question: "Where is the tower?", answer: "Paris" }]
  }

  it("trains on the passage alone for an empty self-edit", () => {
    const format = squadFormat()
    expect(format.trainingSequences(passage, "")).toEqual(["Eiffel Tower\nThe tower is in Paris."])
    expect(format.trainingSequences(passage, "  \n ")).toEqual(["Eiffel Tower\nThe tower is in Paris."])
  })

  it("splits self-edits as SEAL does, title-prefixed, the passage last", () => {
    const format = squadFormat()
    expect(format.trainingSequences(passage, "Implications:\n1. It is tall.\n2. It is iron.\n")).toEqual([
      "Eiffel Tower\n1. It is tall.",
      "Eiffel Tower\n2. It is iron.",
      "Eiffel Tower\nThe tower is in Paris."
    ])
    expect(format.trainingSequences(passage, "It is tall.\n\nIt is iron.")).toEqual([
      "Eiffel Tower\nIt is tall.",
      "Eiffel Tower\nIt is iron.",
      "Eiffel Tower\nThe tower is in Paris."
    ])
    expect(
      format.trainingSequences(passage, "Question 1: Where?\nAnswer: Paris.\nQuestion 2: What?\nAnswer: A tower.")
    ).toEqual([
      "Eiffel Tower\nQuestion 1: Where?\nAnswer: Paris.",
      "Eiffel Tower\nQuestion 2: What?\nAnswer: A tower.",
      "Eiffel Tower\nThe tower is in Paris."
    ])
    expect(squadFormat({ split: "none" }).trainingSequences(passage, "It is tall.\nIt is iron.")).toEqual([
      "Eiffel Tower\nIt is tall.\nIt is iron.",
      "Eiffel Tower\nThe tower is in Paris."
    ])
  })

  it("asks SEAL's closed-book prompt and grades by exact match with SQuAD normalisation", () => {
    const format = squadFormat()
    expect(format.questionPrompt(passage, "Where is the tower?")).toBe(
      squadQuestionPrompt("Eiffel Tower", "Where is the tower?")
    )
    expect(format.questionPrompt(passage, "Where?")).toContain("Topic: Eiffel Tower\nWhere?\nAnswer:")
    expect(format.maxAnswerTokens).toBe(64)
    expect(format.grade("Paris", "Paris")).toBe(1)
    expect(format.grade("  the PARIS. ", "Paris")).toBe(1)
    expect(format.grade("The Eiffel Tower!", "eiffel tower")).toBe(1)
    // Only the first line counts.
    expect(format.grade("Paris\nIt is in France.", "Paris")).toBe(1)
    expect(format.grade("In Paris", "Paris")).toBe(0)
    expect(format.grade("Paris, France", "Paris")).toBe(0)
    expect(format.grade("", "Paris")).toBe(0)
  })
})

describe("worldFormat", () => {
  const world = generateWorld(defaultWorldConfig, 5)

  it("grades the first word by exact match", () => {
    const format = worldFormat(world)
    expect(format.grade("blue", "blue")).toBe(1)
    expect(format.grade("  blue \n", "blue")).toBe(1)
    expect(format.grade("blue <eos> chess", "blue")).toBe(1)
    expect(format.grade("blue\nred", "blue")).toBe(1)
    expect(format.grade("red blue", "blue")).toBe(0)
    expect(format.grade("Blue", "blue")).toBe(0)
    expect(format.grade("blues", "blue")).toBe(0)
    expect(format.grade("", "blue")).toBe(0)
    expect(format.maxAnswerTokens).toBe(2)
  })

  it("lays out the world's prompts and sequences; evaluation contexts carry ids, prompts and oracles", () => {
    const format = worldFormat(world)
    const contexts = worldEvaluationContexts(world, "heldOut", 3)
    expect(contexts.map((c) => c.id)).toEqual(world.entities.heldOut.slice(0, 3).map((e) => e.name))
    expect(worldEvaluationContexts(world, "rl").length).toBe(world.entities.rl.length)
    const first = contexts[0]!
    expect(first.context.title).toBe(first.id)
    expect(first.selfEditPrompt).toContain(first.context.context)
    expect(first.oracleSelfEdit!.split("\n").length).toBe(first.context.questions.length)
    const { prompts } = world.config
    expect(format.trainingSequences(first.context, first.oracleSelfEdit!)).toEqual(
      trainingSequences(prompts, first.context, first.oracleSelfEdit!)
    )
    const question = first.context.questions[0]!
    expect(format.questionPrompt(first.context, question.question)).toBe(
      questionPrompt(prompts, first.context.title, question.question)
    )
    // The oracle self-edit states every answer.
    for (const q of first.context.questions) expect(first.oracleSelfEdit).toContain(q.answer)
  })
})
