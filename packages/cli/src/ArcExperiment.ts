/**
 * An experiment on few-shot ARC, as one Schema: the held-out sets, the test-time-training inner
 * loop, the reward, the outer loop and the generator's adapter. A config file is an ARC
 * experiment when it says `"task": "arc"`; presets are values of it.
 */
import * as GRPO from "@seal/rl/GRPO"
import * as ReSTEM from "@seal/rl/ReSTEM"
import { ArcSelfEditSampling, defaultOracleCandidates, OracleCandidates } from "@seal/tasks/arc/ArcEvaluation"
import { ArcInnerLoopConfig } from "@seal/tasks/arc/ArcInnerLoop"
import { outputTokenConfig } from "@seal/tasks/arc/ToolConfig"
import { PolicyAdapterConfig } from "@seal/tasks/LoraPolicy"
import { Either, Schema } from "effect"
import { ConfigError, decodeWith } from "./Experiment.js"

const PositiveInt = Schema.Int.pipe(Schema.positive())

export const arcPresetNames = ["arc-tiny", "arc-demo"] as const
export type ArcPresetName = typeof arcPresetNames[number]

export const heldOutSetNames = ["evaluation-seal", "evaluation-small"] as const

export const ArcEvaluationConfig = Schema.Struct({
  selfEdits: Schema.optionalWith(ArcSelfEditSampling, { default: () => Schema.decodeSync(ArcSelfEditSampling)({}) }),
  innerLoop: Schema.optionalWith(ArcInnerLoopConfig, { default: () => Schema.decodeSync(ArcInnerLoopConfig)({}) }),
  /** The fixed configs the `oracle` row searches over. */
  oracleCandidates: Schema.optionalWith(OracleCandidates.pipe(Schema.minItems(1)), {
    default: () => defaultOracleCandidates
  })
}).annotations({ identifier: "ArcEvaluationConfig" })

export const ArcExperimentConfig = Schema.Struct({
  task: Schema.Literal("arc"),
  name: Schema.optionalWith(Schema.String, { default: () => "custom-arc" }),
  /** The ARC base model (a directory from `seal pretrain --task arc`); default: the bundled models/arc-base. */
  model: Schema.optional(Schema.String),
  /** Held-out sets evaluated, each in full unless `heldOutTasks` caps it (for tests). */
  heldOutSets: Schema.optionalWith(
    Schema.Array(Schema.Literal(...heldOutSetNames)).pipe(
      Schema.minItems(1),
      Schema.filter((ms) => new Set(ms).size === ms.length || "heldOutSets must not repeat")
    ),
    { default: () => [...heldOutSetNames] }
  ),
  /** The first n tasks of each held-out set (all when absent; only smoke tests should set it). */
  heldOutTasks: Schema.optional(PositiveInt),
  /** The first n tasks of the RL split (all when absent). */
  rlTasks: Schema.optional(PositiveInt),
  /** Tasks drawn per round from the RL tasks (all when absent). */
  contextsPerRound: Schema.optional(PositiveInt),
  rounds: Schema.optionalWith(Schema.Int.pipe(Schema.nonNegative()), { default: () => 1 }),
  optimizer: Schema.optionalWith(Schema.Literal("rest-em", "grpo"), { default: () => "rest-em" as const }),
  restEm: Schema.optionalWith(ReSTEM.ReSTEMConfig, { default: () => Schema.decodeSync(ReSTEM.ReSTEMConfig)({}) }),
  grpo: Schema.optionalWith(GRPO.GRPOConfig, { default: () => Schema.decodeSync(GRPO.GRPOConfig)({}) }),
  policy: Schema.optionalWith(PolicyAdapterConfig, { default: () => Schema.decodeSync(PolicyAdapterConfig)({}) }),
  /**
   * RL reward: `solved` (pass@2, 0/1), `cells` (first-attempt cell accuracy, softer) or
   * `likelihood` (the adapted model's probability per token of the true outputs, softest).
   */
  reward: Schema.optionalWith(Schema.Literal("solved", "cells", "likelihood"), { default: () => "cells" as const }),
  evaluation: Schema.optionalWith(ArcEvaluationConfig, { default: () => Schema.decodeSync(ArcEvaluationConfig)({}) })
}).annotations({ identifier: "ArcExperimentConfig" })
export type ArcExperimentConfig = typeof ArcExperimentConfig.Type
export type ArcExperimentConfigEncoded = typeof ArcExperimentConfig.Encoded

export const decodeArcExperiment: (input: unknown, source: string) => Either.Either<ArcExperimentConfig, ConfigError> =
  decodeWith(ArcExperimentConfig)

export const arcPresetInputs: { readonly [N in ArcPresetName]: ArcExperimentConfigEncoded } = {
  "arc-tiny": {
    task: "arc",
    name: "arc-tiny",
    heldOutSets: ["evaluation-small"],
    heldOutTasks: 2,
    rlTasks: 2,
    rounds: 1,
    restEm: { sampling: { k: 2, evalBatch: 4 } },
    grpo: { sampling: { k: 2, evalBatch: 4 } },
    evaluation: {
      selfEdits: { samples: 1 },
      innerLoop: { maxSequences: 8, views: 2 },
      oracleCandidates: defaultOracleCandidates.slice(0, 2)
    }
  },
  /**
   * Both held-out sets in full; one round over 16 of the 41 RL tasks, 4 configs each. Test-time
   * training is the cost (about 5-10 s a run on one core), so the inner loop keeps 12 sequences,
   * predicts in 8 views (4 symmetries, 4 with colours permuted) and ranks the candidates by their
   * likelihood under all views (on the 41 RL tasks this took two fixed configs from 2 and 2
   * tasks solved with 4 voting views to 7 and 6; models/README.md), and the oracle searches the
   * 3 configs FEASIBILITY.md's probe found best.
   * Two reward batches are in flight at once so that two worker threads stay busy in the round
   * (the outcomes do not depend on it: a batch trains the same passes either way).
   */
  "arc-demo": {
    task: "arc",
    name: "arc-demo",
    rounds: 1,
    contextsPerRound: 16,
    restEm: { sampling: { k: 4, evalBatch: 8, concurrency: 2 } },
    grpo: { sampling: { k: 4, evalBatch: 8, concurrency: 2 } },
    evaluation: {
      selfEdits: { samples: 1 },
      innerLoop: { maxSequences: 12, views: 4, colourViews: 4, ranking: "likelihood" },
      oracleCandidates: [
        outputTokenConfig(true, 3e-3, 5),
        outputTokenConfig(false, 3e-3, 5),
        outputTokenConfig(false, 1e-3, 5)
      ]
    }
  }
}

export const arcPreset = (name: ArcPresetName): ArcExperimentConfig =>
  Either.getOrThrow(decodeArcExperiment(arcPresetInputs[name], `preset ${name}`))
