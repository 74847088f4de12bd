/**
 * The knowledge task's `TaskReward`: a request's self-edit (with its passage) goes through the
 * inner loop (`adaptAndAnswer`), and the reward is the share of the passage's questions the
 * adapted model answers right. Contexts are the task's, looked up by id.
 */
import { RewardError, TaskReward } from "@seal/core/TaskReward"
import type * as LanguageModel from "@seal/gpu/LanguageModel"
import type * as LoraTrainer from "@seal/gpu/LoraTrainer"
import { Effect, Layer } from "effect"
import { asRewardError } from "../RewardFailures.js"
import { adaptAndAnswer, type InnerLoopConfig, type KnowledgeContext, type KnowledgeFormat } from "./InnerLoop.js"

export interface KnowledgeRewardOptions {
  readonly contexts: ReadonlyMap<string, KnowledgeContext>
  readonly format: KnowledgeFormat
  readonly innerLoop: InnerLoopConfig
}

export const make = (options: KnowledgeRewardOptions) =>
  Effect.gen(function*() {
    const context = yield* Effect.context<LanguageModel.LanguageModel | LoraTrainer.LoraTrainer>()
    return TaskReward.of({
      evaluate: (requests) =>
        Effect.gen(function*() {
          const items = yield* Effect.forEach(requests, (r) => {
            const found = options.contexts.get(r.contextId)
            return found === undefined
              ? Effect.fail(
                new RewardError({ reason: "UnknownContext", contextId: r.contextId, detail: "no such context" })
              )
              : Effect.succeed({ contexts: [found], selfEdits: [r.selfEdit], seed: r.seed })
          })
          const outcomes = yield* asRewardError(adaptAndAnswer(items, options.format, options.innerLoop)).pipe(
            Effect.provide(context)
          )
          return outcomes.map((o, i) => ({
            contextId: requests[i]!.contextId,
            reward: o.accuracy,
            correct: o.correct,
            total: o.total,
            seconds: o.seconds,
            adapterId: o.adapterId
          }))
        })
    })
  })

/** The reward over the `LanguageModel` and `LoraTrainer` in context. */
export const layer = (
  options: KnowledgeRewardOptions
): Layer.Layer<TaskReward, never, LanguageModel.LanguageModel | LoraTrainer.LoraTrainer> =>
  Layer.effect(TaskReward, make(options))
