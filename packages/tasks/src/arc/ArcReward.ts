/**
 * Few-shot ARC's `TaskReward`: a request's self-edit is a tool config (JSON text); the inner loop
 * (`adaptAndSolve`) trains on the task's demonstrations under it and predicts the test outputs.
 * The reward is 1 when the task is solved (pass@2), else 0, or, with `reward: "cells"`, the share
 * of test-output cells the first attempt gets right: a softer signal for a small model that
 * rarely solves a task outright. A self-edit that is not a valid config, or one over the step
 * limit, earns 0 (the reference's rule).
 */
import { RewardError, TaskReward } from "@seal/core/TaskReward"
import type * as LanguageModel from "@seal/gpu/LanguageModel"
import type * as LoraTrainer from "@seal/gpu/LoraTrainer"
import { Effect, Either, Layer } from "effect"
import { asRewardError } from "../RewardFailures.js"
import { adaptAndSolve, type ArcInnerLoopConfig, type ArcOutcome } from "./ArcInnerLoop.js"
import type { ArcTask } from "./Grid.js"
import { parseToolConfig } from "./ToolConfig.js"

export type ArcRewardKind = "solved" | "cells"

export interface ArcRewardOptions {
  readonly tasks: ReadonlyMap<string, ArcTask>
  readonly innerLoop: ArcInnerLoopConfig
  readonly reward: ArcRewardKind
}

/** An outcome's reward under `kind`. */
export const arcReward = (outcome: Pick<ArcOutcome, "solved" | "cellAccuracy">, kind: ArcRewardKind): number =>
  kind === "solved" ? (outcome.solved ? 1 : 0) : outcome.cellAccuracy

export const make = (options: ArcRewardOptions) =>
  Effect.gen(function*() {
    const context = yield* Effect.context<LanguageModel.LanguageModel | LoraTrainer.LoraTrainer>()
    return TaskReward.of({
      evaluate: (requests) =>
        Effect.gen(function*() {
          const items = yield* Effect.forEach(requests, (r) => {
            const task = options.tasks.get(r.contextId)
            if (task === undefined) {
              return Effect.fail(
                new RewardError({ reason: "UnknownContext", contextId: r.contextId, detail: "no such ARC task" })
              )
            }
            const parsed = parseToolConfig(r.selfEdit)
            return Effect.succeed({
              task,
              config: Either.getOrUndefined(parsed),
              seed: r.seed,
              valid: Either.isRight(parsed)
            })
          })
          const valid = items.filter((item) => item.valid)
          const outcomes = yield* asRewardError(adaptAndSolve(valid, options.innerLoop)).pipe(Effect.provide(context))
          let next = 0
          return items.map((item, i) => {
            const outcome = item.valid ? outcomes[next++] : undefined
            return {
              contextId: requests[i]!.contextId,
              reward: outcome === undefined ? 0 : arcReward(outcome, options.reward),
              correct: outcome?.solved === true ? 1 : 0,
              total: 1,
              seconds: outcome?.seconds ?? 0,
              adapterId: outcome?.adapterId
            }
          })
        })
    })
  })

/** The reward over the `LanguageModel` and `LoraTrainer` in context. */
export const layer = (
  options: ArcRewardOptions
): Layer.Layer<TaskReward, never, LanguageModel.LanguageModel | LoraTrainer.LoraTrainer> =>
  Layer.effect(TaskReward, make(options))
