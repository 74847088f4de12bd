/**
 * Few-shot ARC's `TaskReward`: a request's self-edit is a tool config (JSON text); the inner loop
 * (`adaptAndSolve`) trains on the task's demonstrations under it and predicts the test outputs.
 * The reward is 1 when the task is solved (pass@2), else 0; with `reward: "cells"`, the share
 * of test-output cells the first attempt gets right: a softer signal for a small model that
 * rarely solves a task outright; with `reward: "likelihood"`, the probability per token the
 * adapted model gives the true outputs (`solutionLikelihood`), softer still: it tells apart
 * configs whose attempts are equally wrong. A self-edit that is not a valid config, or one over
 * the step limit, earns 0 (the reference's rule).
 */
import { RewardError, TaskReward } from "@seal/core/TaskReward"
import { TrainingError } from "@seal/gpu/train/Trainer"
import { Effect, Layer } from "effect"
import { asRewardError } from "../RewardFailures.js"
import type { ArcInnerLoopConfig, ArcOutcome } from "./ArcInnerLoop.js"
import { ArcSolver, solveSelfEdits } from "./ArcSolver.js"
import type { ArcTask } from "./Grid.js"

export type ArcRewardKind = "solved" | "cells" | "likelihood"

export interface ArcRewardOptions {
  readonly tasks: ReadonlyMap<string, ArcTask>
  readonly innerLoop: ArcInnerLoopConfig
  readonly reward: ArcRewardKind
}

/** An outcome's reward under `kind`. */
export const arcReward = (
  outcome: Pick<ArcOutcome, "solved" | "cellAccuracy" | "solutionLikelihood">,
  kind: ArcRewardKind
): number =>
  kind === "solved" ? (outcome.solved ? 1 : 0) : kind === "cells" ? outcome.cellAccuracy : outcome.solutionLikelihood

export const make = (options: ArcRewardOptions) =>
  Effect.gen(function*() {
    const solver = yield* ArcSolver
    return TaskReward.of({
      evaluate: (requests) =>
        Effect.gen(function*() {
          const items = yield* Effect.forEach(requests, (r) => {
            const task = options.tasks.get(r.contextId)
            return task === undefined
              ? Effect.fail(
                new RewardError({ reason: "UnknownContext", contextId: r.contextId, detail: "no such ARC task" })
              )
              : Effect.succeed({ task, selfEdit: r.selfEdit, seed: r.seed })
          })
          const solved = yield* asRewardError(
            solveSelfEdits(items, options.innerLoop).pipe(
              Effect.provideService(ArcSolver, solver),
              // A worker that died is a failure to train, like any other.
              Effect.catchTag(
                "ArcSolverError",
                (e) => Effect.fail(new TrainingError({ reason: "Backend", detail: e.message }))
              )
            )
          )
          return solved.map(({ outcome }, i) => ({
            contextId: requests[i]!.contextId,
            reward: arcReward(outcome, options.reward),
            correct: outcome.solved ? 1 : 0,
            total: 1,
            seconds: outcome.seconds,
            adapterId: outcome.adapterId
          }))
        })
    })
  })

/** The reward over the `ArcSolver` in context. */
export const layer = (
  options: ArcRewardOptions
): Layer.Layer<TaskReward, never, ArcSolver> => Layer.effect(TaskReward, make(options))
