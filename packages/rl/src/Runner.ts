/**
 * Runs an optimizer's rounds in a run directory, resumably:
 *
 *     config.json                 the resolved config (written by the caller)
 *     events.jsonl                every reward evaluation and update, appended as it finishes
 *     rounds/round-NN/policy/     the generator after round NN (absent while it is the base)
 *     rounds/round-NN/eval.json   the held-out evaluation with that generator
 *     rounds/round-NN/round.json  the round's metrics: written last, it marks the round done
 *
 * Killed at any point, a resumed run loads the generator of the last finished round, replays the
 * unfinished round (samples are deterministic; recorded rewards are read back, not recomputed)
 * and ends with the same results as an uninterrupted run.
 */
import { Policy } from "@seal/core/Policy"
import type { PolicyError } from "@seal/core/Policy"
import * as RunDirectory from "@seal/core/RunDirectory"
import type { SelfEditContext, SelfEditSampler } from "@seal/core/SelfEditSampler"
import type { TaskReward } from "@seal/core/TaskReward"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Journal from "./Journal.js"
import { Optimizer, type OptimizerFailure, type RoundMetrics } from "./Optimizer.js"
import { mixSeed } from "./Scoring.js"

export interface RunSpec<Evaluation, E, R> {
  readonly dir: string
  readonly rounds: number
  readonly seed: number
  readonly contexts: ReadonlyArray<SelfEditContext>
  /** Contexts drawn (seeded, per round) from `contexts`; all of them when absent. */
  readonly contextsPerRound?: number | undefined
  /** Held-out evaluation of the current generator; `round` 0 is before any update. */
  readonly evaluate: (round: number) => Effect.Effect<Evaluation, E, R>
  readonly onRound?: ((metrics: RoundMetrics) => Effect.Effect<void>) | undefined
}

export interface RunOutcome<Evaluation> {
  readonly rounds: ReadonlyArray<RoundMetrics>
  /** `evaluations[r]`: after round r (0: before RL). */
  readonly evaluations: ReadonlyArray<Evaluation>
}

export const roundDir = (dir: string, round: number) =>
  Path.join(dir, "rounds", `round-${String(round).padStart(2, "0")}`)

const exists = (path: string) => Effect.promise(() => Fs.promises.access(path).then(() => true, () => false))

/** The contexts of round `round`: a seeded subset of `count`, in their original order. */
export const roundContexts = <C>(
  contexts: ReadonlyArray<C>,
  count: number | undefined,
  seed: number,
  round: number
) => {
  if (count === undefined || count >= contexts.length) return [...contexts]
  const keys = contexts.map((_, i) => ({ i, key: mixSeed(seed, round, i) }))
  const chosen = new Set(keys.sort((a, b) => a.key - b.key || a.i - b.i).slice(0, count).map((k) => k.i))
  return contexts.filter((_, i) => chosen.has(i))
}

export const run = <Evaluation, E, R>(
  spec: RunSpec<Evaluation, E, R>
): Effect.Effect<
  RunOutcome<Evaluation>,
  E | OptimizerFailure | PolicyError | RunDirectory.RunDirectoryError,
  R | Optimizer | Policy | SelfEditSampler | TaskReward
> =>
  Effect.gen(function*() {
    const optimizer = yield* Optimizer
    const policy = yield* Policy
    const journal = yield* Journal.open(Path.join(spec.dir, "events.jsonl"))
    const metrics: Array<RoundMetrics> = []
    const evaluations: Array<Evaluation> = []

    // Finished rounds are read back; the generator is restored from the last one.
    let next = 1
    while (next <= spec.rounds && (yield* exists(Path.join(roundDir(spec.dir, next), "round.json")))) {
      const saved = (yield* RunDirectory.readJson(Path.join(roundDir(spec.dir, next), "round.json"))) as {
        metrics: RoundMetrics
      }
      metrics.push(saved.metrics)
      next++
    }
    yield* policy.reset
    if (next > 1 && (yield* exists(Path.join(roundDir(spec.dir, next - 1), "policy")))) {
      yield* policy.load(Path.join(roundDir(spec.dir, next - 1), "policy"))
    }

    const evaluateRound = (round: number) =>
      Effect.gen(function*() {
        const file = Path.join(roundDir(spec.dir, round), "eval.json")
        if (yield* exists(file)) return (yield* RunDirectory.readJson(file)) as Evaluation
        const evaluation = yield* spec.evaluate(round)
        yield* Effect.promise(() => Fs.promises.mkdir(roundDir(spec.dir, round), { recursive: true }))
        yield* RunDirectory.writeJson(file, evaluation)
        return evaluation
      })

    // Round 0's evaluation uses the base generator: run it before loading would be wrong, so it
    // is only computed here when no round has finished (later it is on disk already).
    for (let r = 0; r < next; r++) {
      if (r > 0 || next === 1) evaluations.push(yield* evaluateRound(r))
      else evaluations.push((yield* RunDirectory.readJson(Path.join(roundDir(spec.dir, 0), "eval.json"))) as Evaluation)
    }

    for (let round = next; round <= spec.rounds; round++) {
      const contexts = roundContexts(spec.contexts, spec.contextsPerRound, spec.seed, round)
      const m = yield* optimizer.round({ round, contexts, journal, seed: spec.seed })
      const dir = roundDir(spec.dir, round)
      yield* Effect.promise(() => Fs.promises.mkdir(dir, { recursive: true }))
      yield* policy.save(Path.join(dir, "policy"))
      evaluations.push(yield* evaluateRound(round))
      yield* RunDirectory.writeJson(Path.join(dir, "round.json"), { metrics: m })
      metrics.push(m)
      if (spec.onRound !== undefined) yield* spec.onRound(m)
    }
    return { rounds: metrics, evaluations }
  })
