import { describe, expect, it } from "@effect/vitest"
import { Policy, PolicyError } from "@seal/core/Policy"
import { mixSeed, stringHash as stringSeed } from "@seal/core/Seeds"
import { type SelfEditContext, SelfEditSampler } from "@seal/core/SelfEditSampler"
import { RewardError, type RewardRequest, TaskReward } from "@seal/core/TaskReward"
import { Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as GRPO from "../src/GRPO.js"
import type { RewardEvent, RunEvent } from "../src/Journal.js"
import * as ReSTEM from "../src/ReSTEM.js"
import * as Runner from "../src/Runner.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "seal-runner-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/**
 * A mock world: the generator writes "good" with probability p, "bad" otherwise; "good" earns 1
 * (plus seeded noise), "bad" 0. The policy's state is p, saved to and loaded from disk.
 */
const makeWorld = (p0: number) => {
  const world = {
    p: p0,
    requests: [] as Array<RewardRequest>,
    /** Fail `evaluate` once this many requests have been served. */
    failAfter: Infinity,
    /** Rewrites sampled texts (a generator that is not deterministic across runs). */
    rewrite: (text: string) => text,
    loads: [] as Array<string>
  }
  const sampler = Layer.succeed(SelfEditSampler, {
    sample: (contexts, params) =>
      Effect.sync(() =>
        contexts.map((c) =>
          Array.from({ length: params.k }, (_, j) => {
            const text = world.rewrite(
              mulberry32(mixSeed(params.seed, stringSeed(c.id), j))() < world.p ? "good" : "bad"
            )
            return { contextId: c.id, index: j, text, tokens: text.length, finishReason: "eos" as const }
          })
        )
      )
  })
  const task = Layer.succeed(TaskReward, {
    evaluate: (requests) =>
      world.requests.length + requests.length > world.failAfter
        ? Effect.fail(new RewardError({ reason: "Training", detail: "killed" }))
        : Effect.sync(() => {
          world.requests.push(...requests)
          return requests.map((r) => ({
            contextId: r.contextId,
            reward: r.selfEdit === "good" ? 0.8 + 0.2 * mulberry32(r.seed)() : 0.2 * mulberry32(r.seed)(),
            correct: 1,
            total: 1,
            seconds: 0.5,
            adapterId: `adapter-${r.seed}`
          }))
        })
  })
  const policy = Layer.succeed(Policy, {
    current: Effect.sync(() => `p=${world.p}`),
    supervised: (examples) =>
      Effect.sync(() => {
        const share = examples.filter((e) => e.completion === "good").length / examples.length
        world.p += 0.5 * (share - world.p)
        return { steps: examples.length, firstLoss: 2, finalLoss: 1, seconds: 1, tokensPerSecond: 100 }
      }),
    policyGradient: (samples, options) =>
      Effect.sync(() => {
        const push = samples.filter((s) => s.completion === "good").reduce((a, s) => a + s.advantage, 0)
        world.p = Math.min(0.98, Math.max(0.02, world.p + options.learningRate * push))
        return {
          steps: 1,
          firstLoss: 0,
          finalLoss: 0,
          seconds: 1,
          tokensPerSecond: 1,
          clippedFraction: 0,
          meanKl: 0
        }
      }),
    reset: Effect.sync(() => {
      world.p = p0
    }),
    save: (dir) =>
      Effect.try({
        try: () => {
          Fs.mkdirSync(dir, { recursive: true })
          Fs.writeFileSync(Path.join(dir, "p.json"), JSON.stringify(world.p))
        },
        catch: (e) => new PolicyError({ reason: "Io", detail: String(e) })
      }),
    load: (dir) =>
      Effect.try({
        try: () => {
          world.loads.push(dir)
          world.p = JSON.parse(Fs.readFileSync(Path.join(dir, "p.json"), "utf8")) as number
        },
        catch: (e) => new PolicyError({ reason: "Io", detail: String(e) })
      })
  })
  return { world, layer: Layer.mergeAll(sampler, task, policy) }
}

const contexts: Array<SelfEditContext> = Array.from({ length: 10 }, (_, i) => ({ id: `ctx-${i}`, prompt: `P${i}:` }))

const restem = ReSTEM.layer(
  Schema.decodeSync(ReSTEM.ReSTEMConfig)({ sampling: { k: 3, rewardSeeds: 2, evalBatch: 4 }, selection: "threshold" })
)

interface Evaluation {
  readonly round: number
  readonly p: number
}

/** Runs `rounds` rounds in `dir`, counting evaluation calls per round. */
const runIn = (
  dir: string,
  mock: ReturnType<typeof makeWorld>,
  evalCalls: Array<number>,
  options: { rounds?: number; contextsPerRound?: number; optimizer?: typeof restem } = {}
) =>
  Runner.run({
    dir,
    rounds: options.rounds ?? 3,
    seed: 5,
    contexts,
    contextsPerRound: options.contextsPerRound ?? 6,
    evaluate: (round): Effect.Effect<Evaluation> =>
      Effect.sync(() => {
        evalCalls.push(round)
        return { round, p: mock.world.p }
      })
  }).pipe(Effect.provide(Layer.merge(options.optimizer ?? restem, mock.layer)))

const rewardEvents = (dir: string) =>
  (Fs.readFileSync(Path.join(dir, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)) as Array<
    RunEvent
  >).filter((e): e is RewardEvent => e.type === "reward")

const keyOf = (e: RewardEvent) => `${e.round}|${e.contextId}|${e.sample}|${e.rewardSeed}`

describe("roundContexts", () => {
  const items = Array.from({ length: 20 }, (_, i) => `c${i}`)

  it("picks a seeded subset of the requested size, deterministically, in the original order", () => {
    const a = Runner.roundContexts(items, 7, 3, 1)
    expect(a).toHaveLength(7)
    expect(new Set(a).size).toBe(7)
    expect(a).toEqual(Runner.roundContexts(items, 7, 3, 1))
    expect(a.map((x) => items.indexOf(x))).toEqual([...a.map((x) => items.indexOf(x))].sort((x, y) => x - y))
    // Another round or seed draws another subset.
    expect(Runner.roundContexts(items, 7, 3, 2)).not.toEqual(a)
    expect(Runner.roundContexts(items, 7, 4, 1)).not.toEqual(a)
    // Over many rounds every context gets its turn.
    const seen = new Set(Array.from({ length: 30 }, (_, r) => Runner.roundContexts(items, 7, 3, r + 1)).flat())
    expect(seen.size).toBe(20)
  })

  it("all of them (a copy) when no count is given or the count covers them", () => {
    for (const count of [undefined, 20, 25]) {
      const all = Runner.roundContexts(items, count, 3, 1)
      expect(all).toEqual(items)
      expect(all).not.toBe(items)
    }
    expect(Runner.roundContexts(items, 0, 3, 1)).toEqual([])
  })
})

describe("Runner.run", () => {
  it.scoped("writes rounds/round-NN, evaluates rounds 0..R and records one reward event per evaluation", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const mock = makeWorld(0.3)
      const evalCalls: Array<number> = []
      const outcome = yield* runIn(dir, mock, evalCalls)
      expect(outcome.rounds.map((m) => m.round)).toEqual([1, 2, 3])
      expect(outcome.evaluations.map((e) => e.round)).toEqual([0, 1, 2, 3])
      expect(evalCalls).toEqual([0, 1, 2, 3])
      // The evaluation of round r sees the generator after round r.
      expect(outcome.evaluations[0]!.p).toBe(0.3)
      expect(outcome.evaluations[3]!.p).toBe(mock.world.p)
      expect(mock.world.p).toBeGreaterThan(0.6)
      expect(Fs.readdirSync(Path.join(dir, "rounds")).sort()).toEqual(["round-00", "round-01", "round-02", "round-03"])
      expect(Fs.readdirSync(Path.join(dir, "rounds", "round-00"))).toEqual(["eval.json"])
      for (const r of [1, 2, 3]) {
        const rd = Runner.roundDir(dir, r)
        expect(Fs.readdirSync(rd).sort()).toEqual(["eval.json", "policy", "round.json"])
        expect(JSON.parse(Fs.readFileSync(Path.join(rd, "round.json"), "utf8"))).toEqual({
          metrics: outcome.rounds[r - 1]
        })
        expect(JSON.parse(Fs.readFileSync(Path.join(rd, "eval.json"), "utf8"))).toEqual(outcome.evaluations[r])
      }
      // One reward event per (round, context, sample, reward seed); 6 of the 10 contexts per round.
      const events = rewardEvents(dir)
      expect(events).toHaveLength(3 * 6 * 3 * 2)
      expect(new Set(events.map(keyOf)).size).toBe(events.length)
      expect(mock.world.requests).toHaveLength(events.length)
      for (const r of [1, 2, 3]) {
        const chosen = Runner.roundContexts(contexts, 6, 5, r).map((c) => c.id)
        expect([...new Set(events.filter((e) => e.round === r).map((e) => e.contextId))].sort()).toEqual(
          [...chosen].sort()
        )
        // The metrics count the round's subset.
        expect(outcome.rounds[r - 1]).toMatchObject({ contexts: 6, samples: 18, secondsPerEvaluation: 0.5 })
      }
    }))

  it.scoped("resuming after the last round lost its round.json redoes only that round, without new rewards", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = makeWorld(0.3)
      const evalCalls: Array<number> = []
      const outcome = yield* runIn(dir, first, evalCalls)
      const eventsBefore = rewardEvents(dir)
      Fs.rmSync(Path.join(Runner.roundDir(dir, 3), "round.json"))

      const second = makeWorld(0.3)
      const resumed = yield* runIn(dir, second, evalCalls)
      expect(second.world.requests).toHaveLength(0)
      expect(second.world.loads).toEqual([Path.join(Runner.roundDir(dir, 2), "policy")])
      expect(resumed).toEqual(outcome)
      expect(second.world.p).toBe(first.world.p)
      // Evaluations were read back from eval.json: each round evaluated exactly once over both runs.
      expect(evalCalls).toEqual([0, 1, 2, 3])
      expect(rewardEvents(dir)).toEqual(eventsBefore)
      expect(Fs.existsSync(Path.join(Runner.roundDir(dir, 3), "round.json"))).toBe(true)
      // The redone round's update is not recorded twice: one update event per round.
      const updates = Fs.readFileSync(Path.join(dir, "events.jsonl"), "utf8").split("\n").filter((l) =>
        l.includes("\"type\":\"update\"")
      ).map((l) => JSON.parse(l).round)
      expect(updates).toEqual([1, 2, 3])

      // A finished run resumed again does nothing at all.
      const third = makeWorld(0.3)
      expect(yield* runIn(dir, third, evalCalls)).toEqual(outcome)
      expect(third.world.requests).toHaveLength(0)
      expect(evalCalls).toEqual([0, 1, 2, 3])
    }))

  it.scoped("a run killed mid-round resumes to the uninterrupted result, evaluating each reward once", () =>
    Effect.gen(function*() {
      const reference = yield* runIn(yield* tempDir, makeWorld(0.3), [])

      const dir = yield* tempDir
      const evalCalls: Array<number> = []
      const killed = makeWorld(0.3)
      // Rounds hold 36 evaluations in batches of 4: die inside round 2.
      killed.world.failAfter = 36 + 20
      const failure = yield* Effect.flip(runIn(dir, killed, evalCalls))
      expect(failure._tag).toBe("RewardError")
      expect(killed.world.requests).toHaveLength(56)
      expect(Fs.existsSync(Path.join(Runner.roundDir(dir, 1), "round.json"))).toBe(true)
      expect(Fs.existsSync(Runner.roundDir(dir, 2))).toBe(false)

      const resumed = makeWorld(0.3)
      const outcome = yield* runIn(dir, resumed, evalCalls)
      expect(outcome).toEqual(reference)
      // Only what the killed run had not finished was evaluated.
      expect(resumed.world.requests).toHaveLength(3 * 36 - 56)
      const seen = new Set(
        [...killed.world.requests, ...resumed.world.requests].map((r) => `${r.contextId}|${r.selfEdit}|${r.seed}`)
      )
      expect(seen.size).toBeLessThanOrEqual(3 * 36)
      const events = rewardEvents(dir)
      expect(events).toHaveLength(3 * 36)
      expect(new Set(events.map(keyOf)).size).toBe(3 * 36)
      expect(evalCalls).toEqual([0, 1, 2, 3])
    }))

  it.scoped("a generator that writes differently on resume is a JournalMismatch", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* runIn(dir, makeWorld(0.3), [], { rounds: 2 })
      Fs.rmSync(Path.join(Runner.roundDir(dir, 2), "round.json"))
      const drifted = makeWorld(0.3)
      drifted.world.rewrite = (text) => `${text}!`
      const failure = yield* Effect.flip(runIn(dir, drifted, [], { rounds: 2 }))
      expect(failure._tag).toBe("JournalMismatch")
      expect(failure.message).toContain("round 2")
      expect(drifted.world.requests).toHaveLength(0)
    }))

  it.scoped("GRPO runs resume the same way", () =>
    Effect.gen(function*() {
      const grpo = GRPO.layer(
        Schema.decodeSync(GRPO.GRPOConfig)({
          sampling: { k: 4, evalBatch: 8 },
          update: { learningRate: 0.05 }
        })
      )
      const dir = yield* tempDir
      const evalCalls: Array<number> = []
      const outcome = yield* runIn(dir, makeWorld(0.3), evalCalls, { optimizer: grpo, contextsPerRound: 10 })
      Fs.rmSync(Path.join(Runner.roundDir(dir, 3), "round.json"))
      Fs.rmSync(Path.join(Runner.roundDir(dir, 3), "eval.json"))
      const second = makeWorld(0.3)
      const resumed = yield* runIn(dir, second, evalCalls, { optimizer: grpo, contextsPerRound: 10 })
      expect(resumed).toEqual(outcome)
      expect(second.world.requests).toHaveLength(0)
      // eval.json was gone too, so round 3 was evaluated again (with the same generator).
      expect(evalCalls).toEqual([0, 1, 2, 3, 3])
      expect(outcome.evaluations[3]!.p).toBeGreaterThan(0.3)
    }))
})
