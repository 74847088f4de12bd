/**
 * An inner loop's failures as the outer loop sees them: training and LoRA-config failures are
 * `Training`, generation failures `Evaluation` (the `RewardError` of `@seal/core/TaskReward`).
 */
import { RewardError } from "@seal/core/TaskReward"
import type { GenerationError } from "@seal/gpu/LanguageModel"
import type { LoraConfigError } from "@seal/gpu/lora/LoraAdapter"
import type { TrainingError } from "@seal/gpu/train/Trainer"
import { Effect } from "effect"

export const asRewardError = <A, R>(
  innerLoop: Effect.Effect<A, TrainingError | LoraConfigError | GenerationError, R>
): Effect.Effect<A, RewardError, R> =>
  innerLoop.pipe(
    Effect.catchTags({
      TrainingError: (e) => Effect.fail(new RewardError({ reason: "Training", detail: e.message })),
      LoraConfigError: (e) => Effect.fail(new RewardError({ reason: "Training", detail: e.message })),
      GenerationError: (e) => Effect.fail(new RewardError({ reason: "Evaluation", detail: e.message }))
    })
  )
