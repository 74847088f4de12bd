/**
 * Which ARC tasks each stage may see, fixed by rules stated before any model was trained:
 *
 * - **evaluation-seal**: SEAL's 10 filtered evaluation tasks, all of them, whatever their size (a
 *   task too long for the model's context counts as unsolved).
 * - **evaluation-small**: every ARC evaluation task whose demonstrations total at most
 *   `smallTaskCells` (300) cells, inputs and outputs together: 41 tasks, 3 of them also SEAL's
 *   (59341089, 66e6c45b, 68b67ca3). The two sets are reported separately, never summed.
 * - **rl**: SEAL's 12 filtered training tasks, plus every other training task within the same
 *   size rule whose id hashes (FNV-1a) to 0 modulo `rlHashModulus` (4).
 * - **pretrain**: every other training task.
 *
 * No evaluation task is ever pretrained or trained on by RL, and no RL task is pretrained on.
 */
import { stringHash } from "@seal/core/Seeds"
import { Effect } from "effect"
import { type ArcDataError, loadNamedArcSet } from "./ArcData.js"
import type { ArcTask } from "./Grid.js"
import { demonstrationCells } from "./Grid.js"

export const smallTaskCells = 300
export const rlHashModulus = 4

export const splitNames = ["pretrain", "rl", "evaluation-seal", "evaluation-small"] as const
export type SplitName = typeof splitNames[number]

export interface ArcSplits {
  readonly pretrain: ReadonlyArray<ArcTask>
  readonly rl: ReadonlyArray<ArcTask>
  readonly "evaluation-seal": ReadonlyArray<ArcTask>
  readonly "evaluation-small": ReadonlyArray<ArcTask>
}

export const isSmallTask = (task: ArcTask): boolean => demonstrationCells(task) <= smallTaskCells

/**
 * The splits from the four sets `ArcData` loads. `sealTraining` and `sealEvaluation` are SEAL's
 * filtered subsets; their tasks are the same ids in `training` and `evaluation`.
 */
export const arcSplits = (sets: {
  readonly training: ReadonlyArray<ArcTask>
  readonly evaluation: ReadonlyArray<ArcTask>
  readonly sealTraining: ReadonlyArray<ArcTask>
  readonly sealEvaluation: ReadonlyArray<ArcTask>
}): ArcSplits => {
  const sealTrainingIds = new Set(sets.sealTraining.map((t) => t.id))
  const isRl = (task: ArcTask) =>
    sealTrainingIds.has(task.id) || (isSmallTask(task) && stringHash(task.id) % rlHashModulus === 0)
  return {
    pretrain: sets.training.filter((t) => !isRl(t)),
    rl: sets.training.filter(isRl),
    "evaluation-seal": sets.sealEvaluation,
    "evaluation-small": sets.evaluation.filter(isSmallTask)
  }
}

/** Loads the four ARC sets from a data directory laid out like the repository's `data/` and splits them. */
export const loadArcSplits = (dataDir: string): Effect.Effect<ArcSplits, ArcDataError> =>
  Effect.all({
    training: loadNamedArcSet(dataDir, "training"),
    evaluation: loadNamedArcSet(dataDir, "evaluation"),
    sealTraining: loadNamedArcSet(dataDir, "training-filtered"),
    sealEvaluation: loadNamedArcSet(dataDir, "evaluation-filtered")
  }).pipe(Effect.map(arcSplits))
