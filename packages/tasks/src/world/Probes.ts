/**
 * What a world model can do before any adaptation, the checks FEASIBILITY asks for before RL:
 * can it copy (open-book questions about held-out people, passage in the prompt), what it
 * memorised (closed-book questions about pretraining people), and how good its own greedy
 * self-edits are (facts restated correctly with the name, per `selfEditQuality`).
 */
import { LanguageModel } from "@seal/gpu/LanguageModel"
import type { GenerationError } from "@seal/gpu/LanguageModel"
import { Effect } from "effect"
import { meanQuality, type SelfEditQuality, selfEditQuality } from "./SelfEdits.js"
import { type Entity, openBookQuestionPrompt, questionPrompt, questions, selfEditPrompt, type World } from "./World.js"
import { worldFormat } from "./WorldTask.js"

export interface WorldProbes {
  /** Held-out people, passage in the prompt. */
  readonly openBookHeldOut: number
  /** Pretraining people, no passage. */
  readonly closedBookPretrain: number
  /** Held-out people, no passage: the no-adaptation floor. */
  readonly closedBookHeldOut: number
  /** Greedy self-edits of held-out people. */
  readonly selfEdits: SelfEditQuality
  readonly people: number
}

/** Greedy answers graded as the world's task grades them (`worldFormat`). */
const accuracy = (
  world: World,
  prompts: ReadonlyArray<{ readonly prompt: string; readonly answer: string }>
): Effect.Effect<number, GenerationError, LanguageModel> =>
  Effect.gen(function*() {
    const model = yield* LanguageModel
    const format = worldFormat(world)
    let right = 0
    for (let i = 0; i < prompts.length; i += 64) {
      const chunk = prompts.slice(i, i + 64)
      const rows = yield* model.generate(chunk.map((p) => p.prompt), {
        maxTokens: format.maxAnswerTokens,
        temperature: 0
      })
      rows.forEach((row, j) => (right += format.grade(row.text, chunk[j]!.answer)))
    }
    return prompts.length === 0 ? 0 : right / prompts.length
  })

/** Probes `people` of each split (the first n). */
export const probeWorld = (
  world: World,
  people: number,
  maxSelfEditTokens = 96
): Effect.Effect<WorldProbes, GenerationError, LanguageModel> =>
  Effect.gen(function*() {
    const model = yield* LanguageModel
    const prompts = world.config.prompts
    const heldOut = world.entities.heldOut.slice(0, people)
    const pretrain = world.entities.pretrain.slice(0, people)
    const closed = (es: ReadonlyArray<Entity>) =>
      es.flatMap((e) =>
        questions(world, e).map((q) => ({ prompt: questionPrompt(prompts, e.name, q.question), answer: q.answer }))
      )
    const openBookHeldOut = yield* accuracy(
      world,
      heldOut.flatMap((e) =>
        questions(world, e).map((q) => ({
          prompt: openBookQuestionPrompt(prompts, { title: e.name, context: e.passage }, q.question),
          answer: q.answer
        }))
      )
    )
    const closedBookPretrain = yield* accuracy(world, closed(pretrain))
    const closedBookHeldOut = yield* accuracy(world, closed(heldOut))
    const selfEdits = yield* model.generate(
      heldOut.map((e) => selfEditPrompt(prompts, { title: e.name, context: e.passage })),
      { maxTokens: maxSelfEditTokens, temperature: 0 }
    )
    return {
      openBookHeldOut,
      closedBookPretrain,
      closedBookHeldOut,
      selfEdits: meanQuality(selfEdits.map((s, i) => selfEditQuality(world, heldOut[i]!, s.text))),
      people: heldOut.length
    }
  })
