/**
 * Test-time training data for one ARC task, from its demonstrations only (the test pair's output
 * is never seen): the tasks of the reference's test-time training, built as follows.
 *
 * - Leave-one-out: each demonstration in turn is the query, the others are its demonstrations.
 * - Leave-two-out (tasks with at least three demonstrations): each ordered choice of a query and
 *   one more held-out demonstration; the rest are the demonstrations.
 * - Each of those under every augmenter the tool config's families switch on, with a fresh
 *   colour permutation (0 fixed) and demonstration order; an augmented task with a grid over
 *   30x30 or a sequence over the model's context is dropped, as the reference drops it.
 *
 * The plain leave-one-out tasks come first, then the rest in a seeded random order, capped at
 * `maxSequences` (the reference caps the number of tasks too, and refuses configs whose
 * optimizer steps exceed 375: `ToolConfig.maxTrainingSteps`).
 */
import { mixSeed } from "@seal/core/Seeds"
import { makeRng } from "@seal/gpu/model/Sampling"
import type { TokenizedExample } from "@seal/gpu/train/Loss"
import { type ArcLoss, sequenceLength, taskSequence } from "./ArcFormat.js"
import {
  type AugmentationFlags,
  augmentersFor,
  augmentExample,
  colourPermutation,
  permuteExampleColours,
  shuffleExamples
} from "./Augmenters.js"
import type { ArcExample } from "./Grid.js"
import type { ToolConfig } from "./ToolConfig.js"

/** A training task: demonstrations and the query whose output is the target. */
export interface TestTimeTask {
  readonly demonstrations: ReadonlyArray<ArcExample>
  readonly query: ArcExample
  /** `identity`, or the augmenter's name. */
  readonly augmentation: string
}

export interface TestTimeDataOptions {
  /** The most training tasks kept. */
  readonly maxSequences: number
  /** The model's context: longer sequences are dropped. */
  readonly maxTokens: number
  readonly seed: number
}

const withoutIndices = <A>(items: ReadonlyArray<A>, drop: ReadonlyArray<number>): Array<A> =>
  items.filter((_, i) => !drop.includes(i))

/** The leave-one-out and leave-two-out tasks of a task's demonstrations, unaugmented. */
export const leaveOutTasks = (demonstrations: ReadonlyArray<ArcExample>): Array<TestTimeTask> => {
  const n = demonstrations.length
  const tasks: Array<TestTimeTask> = []
  if (n < 2) return tasks
  for (let i = 0; i < n; i++) {
    tasks.push({
      demonstrations: withoutIndices(demonstrations, [i]),
      query: demonstrations[i]!,
      augmentation: "identity"
    })
  }
  if (n >= 3) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i === j) continue
        tasks.push({
          demonstrations: withoutIndices(demonstrations, [i, j]),
          query: demonstrations[i]!,
          augmentation: "identity"
        })
      }
    }
  }
  return tasks
}

const fits = (task: TestTimeTask, maxTokens: number): boolean =>
  sequenceLength(task.demonstrations, task.query) <= maxTokens

/** The training tasks of `demonstrations` under the families of `flags` (see the module comment). */
export const testTimeTasks = (
  demonstrations: ReadonlyArray<ArcExample>,
  flags: AugmentationFlags,
  options: TestTimeDataOptions
): Array<TestTimeTask> => {
  const rng = makeRng(mixSeed(options.seed, 0x77))
  const base = leaveOutTasks(demonstrations)
  const leaveOneOut = base.filter((t) => t.demonstrations.length === demonstrations.length - 1)
  const rest: Array<TestTimeTask> = base.filter((t) => !leaveOneOut.includes(t))
  for (const augmenter of augmentersFor(flags, rng)) {
    for (const task of base) {
      const query = augmentExample(augmenter, task.query)
      const shown = task.demonstrations.map((d) => augmentExample(augmenter, d))
      if (query === undefined || shown.some((d) => d === undefined)) continue
      const colours = colourPermutation(rng)
      rest.push({
        demonstrations: shuffleExamples(shown.map((d) => permuteExampleColours(d!, colours)), rng),
        query: permuteExampleColours(query, colours),
        augmentation: augmenter.name
      })
    }
  }
  const kept = leaveOneOut.filter((t) => fits(t, options.maxTokens))
  for (const task of shuffleExamples(rest, rng)) {
    if (kept.length >= options.maxSequences) break
    if (fits(task, options.maxTokens)) kept.push(task)
  }
  return kept.slice(0, options.maxSequences)
}

/** The loss a tool config's `training.strategy` asks for. */
export const strategyLoss = (strategy: ToolConfig["training"]["strategy"]): ArcLoss =>
  strategy === "train_using_all_tokens" ? "all" : "output"

/** The tokenized training sequences of a tool config for a task's demonstrations. */
export const testTimeSequences = (
  demonstrations: ReadonlyArray<ArcExample>,
  config: ToolConfig,
  options: TestTimeDataOptions
): Array<TokenizedExample> => {
  const flags = {
    basic: config.data_generation.use_basic_augmentations,
    size: config.data_generation.use_size_augmentations,
    chain: config.data_generation.use_chain_augmentations,
    repeat: config.data_generation.use_repeat_augmentations
  }
  const loss = strategyLoss(config.training.strategy)
  return testTimeTasks(demonstrations, flags, options).map((t) => taskSequence(t.demonstrations, t.query, { loss }))
}
