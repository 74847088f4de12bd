import { describe, expect, it } from "@effect/vitest"
import {
  Policy,
  type PolicyExample,
  type PolicyGradientOptions,
  type PolicyGradientSample,
  type SupervisedOptions
} from "@seal/core/Policy"
import { mixSeed, stringHash as stringSeed } from "@seal/core/Seeds"
import { type SamplingParams, type SelfEditContext, SelfEditSampler } from "@seal/core/SelfEditSampler"
import { type RewardRequest, TaskReward } from "@seal/core/TaskReward"
import { Effect, Layer, Schema } from "effect"
import * as GRPO from "../src/GRPO.js"
import * as Journal from "../src/Journal.js"
import type { RewardEvent } from "../src/Journal.js"
import { Optimizer, type RoundMetrics } from "../src/Optimizer.js"
import * as ReSTEM from "../src/ReSTEM.js"
import type { ScoredSample } from "../src/Scoring.js"

// A mock world: the generator writes "good" with probability p and "bad" otherwise; the task rewards
// "good" with 1 and "bad" with 0. The policy's updates move p the way the optimizer asks.

const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

interface World {
  p: number
  readonly p0: number
  /** What happened, in order: "sample", "reset", "supervised", "policyGradient". */
  readonly log: Array<string>
  readonly requests: Array<RewardRequest>
  evaluateCalls: number
  readonly sampleCalls: Array<SamplingParams>
  readonly supervised: Array<{ examples: ReadonlyArray<PolicyExample>; options: SupervisedOptions }>
  readonly policyGradient: Array<{ samples: ReadonlyArray<PolicyGradientSample>; options: PolicyGradientOptions }>
}

const makeWorld = (
  p0: number,
  reward: (request: RewardRequest) => number = (r) => (r.selfEdit === "good" ? 1 : 0)
) => {
  const world: World = {
    p: p0,
    p0,
    log: [],
    requests: [],
    evaluateCalls: 0,
    sampleCalls: [],
    supervised: [],
    policyGradient: []
  }
  const sampler = Layer.succeed(SelfEditSampler, {
    sample: (contexts, params) =>
      Effect.sync(() => {
        world.log.push("sample")
        world.sampleCalls.push(params)
        return contexts.map((c) =>
          Array.from({ length: params.k }, (_, j) => {
            const text = mulberry32(mixSeed(params.seed, stringSeed(c.id), j))() < world.p ? "good" : "bad"
            return { contextId: c.id, index: j, text, tokens: text.length, finishReason: "eos" as const }
          })
        )
      })
  })
  const task = Layer.succeed(TaskReward, {
    evaluate: (requests) =>
      Effect.sync(() => {
        world.evaluateCalls++
        world.requests.push(...requests)
        return requests.map((r) => ({
          contextId: r.contextId,
          reward: reward(r),
          correct: 0,
          total: 1,
          seconds: 0.25,
          adapterId: undefined
        }))
      })
  })
  const policy = Layer.succeed(Policy, {
    current: Effect.sync(() => `p=${world.p}`),
    supervised: (examples, options) =>
      Effect.sync(() => {
        world.log.push("supervised")
        world.supervised.push({ examples, options })
        const share = examples.filter((e) => e.completion === "good").length / examples.length
        world.p += 0.5 * (share - world.p)
        return { steps: examples.length, firstLoss: 2, finalLoss: 1, seconds: 1, tokensPerSecond: 100 }
      }),
    policyGradient: (samples, options) =>
      Effect.sync(() => {
        world.log.push("policyGradient")
        world.policyGradient.push({ samples, options })
        const push = samples.filter((s) => s.completion === "good").reduce((a, s) => a + s.advantage, 0)
        world.p = Math.min(0.98, Math.max(0.02, world.p + options.learningRate * push))
        return {
          steps: options.passes,
          firstLoss: 0,
          finalLoss: -push,
          seconds: 1,
          tokensPerSecond: 50,
          clippedFraction: 0.125,
          meanKl: 0.01
        }
      }),
    reset: Effect.sync(() => {
      world.log.push("reset")
      world.p = world.p0
    }),
    save: () => Effect.void,
    load: () => Effect.void
  })
  return { world, layer: Layer.mergeAll(sampler, task, policy) }
}

const contexts: Array<SelfEditContext> = Array.from({ length: 8 }, (_, i) => ({ id: `ctx-${i}`, prompt: `P${i}:` }))

/** Runs rounds 1..n of `optimizer` against the world, with an in-memory journal. */
const runRounds = (
  optimizer: Layer.Layer<Optimizer>,
  world: Layer.Layer<SelfEditSampler | TaskReward | Policy>,
  rounds: number,
  ctxs: ReadonlyArray<SelfEditContext> = contexts
) =>
  Effect.gen(function*() {
    const opt = yield* Optimizer
    const journal = yield* Journal.inMemory()
    const metrics: Array<RoundMetrics> = []
    for (let round = 1; round <= rounds; round++) {
      metrics.push(yield* opt.round({ round, contexts: ctxs, journal, seed: 17 }))
    }
    return { metrics, events: yield* journal.events }
  }).pipe(Effect.provide(Layer.merge(optimizer, world)))

/** A round's metrics recomputed from the journal's reward events (k samples per context). */
const fromEvents = (events: ReadonlyArray<Journal.RunEvent>, round: number) => {
  const rewards = events.filter((e): e is Journal.RewardEvent => e.type === "reward" && e.round === round)
  const groups = new Map<string, Array<Journal.RewardEvent>>()
  for (const e of rewards) groups.set(e.contextId, [...(groups.get(e.contextId) ?? []), e])
  const tied = [...groups.values()].filter((g) => g.every((e) => e.reward === g[0]!.reward)).length
  return {
    samples: rewards.length,
    good: rewards.filter((e) => e.selfEdit === "good").length,
    groupsWithGood: [...groups.values()].filter((g) => g.some((e) => e.selfEdit === "good")).length,
    zeroVarianceGroups: tied / groups.size,
    selfEditTokens: rewards.reduce((a, e) => a + e.tokens, 0) / rewards.length,
    rewardMean: rewards.reduce((a, e) => a + e.reward, 0) / rewards.length
  }
}

const restem = (patch: object = {}) =>
  Schema.decodeSync(ReSTEM.ReSTEMConfig)({ sampling: { k: 4, maxTokens: 32, evalBatch: 5 }, ...patch })
const grpo = (patch: object = {}) =>
  Schema.decodeSync(GRPO.GRPOConfig)({
    sampling: { k: 4, maxTokens: 32, evalBatch: 5 },
    update: { learningRate: 0.05, passes: 3 },
    ...patch
  })

describe("ReST-EM", () => {
  it.effect("over three rounds raises the share of good self-edits; round metrics match the journal", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld(0.3)
      const { events, metrics } = yield* runRounds(ReSTEM.layer(restem()), layer, 3)
      expect(world.p).toBeGreaterThan(0.8)
      expect(metrics.map((m) => m.round)).toEqual([1, 2, 3])
      expect(metrics[2]!.rewardMean).toBeGreaterThan(metrics[0]!.rewardMean)
      for (const m of metrics) {
        const e = fromEvents(events, m.round)
        expect(m.contexts).toBe(8)
        expect(m.samples).toBe(32)
        expect(e.samples).toBe(32)
        // `best` keeps a context's best sample when it beats minReward 0: one per context that has a good one.
        expect(m.acceptance).toBeCloseTo(e.groupsWithGood / 32, 12)
        expect(m.zeroVarianceGroups).toBeCloseTo(e.zeroVarianceGroups, 12)
        expect(m.selfEditTokens).toBeCloseTo(e.selfEditTokens, 12)
        expect(m.rewardMean).toBeCloseTo(e.rewardMean, 12)
        const mean = e.rewardMean
        expect(m.rewardStd).toBeCloseTo(Math.sqrt(mean * (1 - mean)), 12)
        expect(m.secondsPerEvaluation).toBeCloseTo(0.25, 12)
        expect(m.updateSteps).toBe(e.groupsWithGood)
        expect(m.updateLoss).toBe(1)
        expect(m.updateTokensPerSecond).toBe(100)
      }
      // The metrics are not trivially constant: the rounds saw different mixes.
      expect(new Set(metrics.map((m) => m.acceptance)).size).toBeGreaterThan(1)
      expect(metrics.some((m) => m.zeroVarianceGroups > 0 && m.zeroVarianceGroups < 1)).toBe(true)
      // Every update trained on (context prompt, good self-edit) only, with the config's options.
      expect(world.supervised).toHaveLength(3)
      for (const { examples, options } of world.supervised) {
        expect(examples.every((x) => x.completion === "good")).toBe(true)
        expect(examples.every((x) => /^P\d:$/.test(x.prompt))).toBe(true)
        expect(new Set(examples.map((x) => x.prompt)).size).toBe(examples.length)
        expect(options).toMatchObject({ learningRate: 1e-3, epochs: 2, batchSize: 4 })
      }
      // Each round samples with its own seed, and the samplers' settings come from the config.
      expect(new Set(world.sampleCalls.map((s) => s.seed)).size).toBe(3)
      expect(world.sampleCalls[0]).toMatchObject({ k: 4, maxTokens: 32, temperature: 1, topP: 1 })
      // Batches of evalBatch requests: 32 samples -> 7 calls per round.
      expect(world.evaluateCalls).toBe(3 * 7)
      // One update event per round, recording the examples.
      const updates = events.filter((e): e is Journal.UpdateEvent => e.type === "update")
      expect(updates.map((u) => [u.round, u.examples])).toEqual(
        metrics.map((m) => [m.round, fromEvents(events, m.round).groupsWithGood])
      )
    }))

  it.effect("a round with nothing worth keeping makes no update", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld(0.5, () => 0)
      const { events, metrics } = yield* runRounds(ReSTEM.layer(restem()), layer, 1)
      expect(world.supervised).toHaveLength(0)
      expect(metrics[0]).toMatchObject({ acceptance: 0, zeroVarianceGroups: 1, updateSteps: 0, updateLoss: null })
      expect(events.find((e) => e.type === "update")).toMatchObject({ examples: 0, steps: 0, firstLoss: null })
    }))

  it.effect("threshold keeps every sample at or above the threshold", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld(0.5)
      const { events, metrics } = yield* runRounds(ReSTEM.layer(restem({ selection: "threshold" })), layer, 1)
      const e = fromEvents(events, 1)
      expect(metrics[0]!.acceptance).toBeCloseTo(e.good / 32, 12)
      expect(world.supervised[0]!.examples).toHaveLength(e.good)
      expect(e.good).toBeGreaterThan(e.groupsWithGood) // more than `best` would keep
    }))

  it.effect("positive-gain scores the empty self-edit once per context (journal round 0, sample -1)", () =>
    Effect.gen(function*() {
      // The empty self-edit earns 0.5 on most contexts but 1 on ctx-0 and ctx-1: nothing beats it there.
      const baseline = (id: string) => (id === "ctx-0" || id === "ctx-1" ? 1 : 0.5)
      const { layer, world } = makeWorld(
        0.5,
        (r) => (r.selfEdit === "" ? baseline(r.contextId) : r.selfEdit === "good" ? 1 : 0)
      )
      const { events, metrics } = yield* runRounds(
        ReSTEM.layer(restem({ selection: "positive-gain" })),
        layer,
        2
      )
      const empty = world.requests.filter((r) => r.selfEdit === "")
      expect(empty.map((r) => r.contextId).sort()).toEqual(contexts.map((c) => c.id).sort())
      const baselineEvents = events.filter((e): e is Journal.RewardEvent => e.type === "reward" && e.round === 0)
      expect(baselineEvents).toHaveLength(8)
      for (const e of baselineEvents) {
        expect(e.sample).toBe(-1)
        expect(e.selfEdit).toBe("")
        expect(e.reward).toBe(baseline(e.contextId))
      }
      // Kept: the good samples of contexts other than ctx-0 and ctx-1.
      for (const [i, round] of [1, 2].entries()) {
        const rewards = events.filter((e): e is Journal.RewardEvent => e.type === "reward" && e.round === round)
        const expected = rewards.filter((e) => e.selfEdit === "good" && baseline(e.contextId) < 1)
        expect(expected.length).toBeGreaterThan(0)
        expect(rewards.some((e) => e.selfEdit === "good" && baseline(e.contextId) === 1)).toBe(true)
        expect(world.supervised[i]!.examples.map((x) => x.prompt).sort()).toEqual(
          expected.map((e) => contexts.find((c) => c.id === e.contextId)!.prompt).sort()
        )
        // Acceptance counts the sampled self-edits only, not the baselines.
        expect(metrics[i]!.samples).toBe(32)
        expect(metrics[i]!.acceptance).toBeCloseTo(expected.length / 32, 12)
      }
    }))

  it.effect("restartFromBase resets the generator before each round's update, after sampling", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld(0.3)
      yield* runRounds(ReSTEM.layer(restem({ restartFromBase: true })), layer, 3)
      expect(world.log).toEqual([
        "sample",
        "reset",
        "supervised",
        "sample",
        "reset",
        "supervised",
        "sample",
        "reset",
        "supervised"
      ])
      // Each update starts from the base p: all-good data moves 0.3 halfway to 1.
      expect(world.p).toBeCloseTo(0.65, 12)

      const continued = makeWorld(0.3)
      yield* runRounds(ReSTEM.layer(restem()), continued.layer, 3)
      expect(continued.world.log).not.toContain("reset")
      expect(continued.world.p).toBeGreaterThan(0.8)
    }))
})

describe("select", () => {
  const scored = (rewards: ReadonlyArray<number>): Array<ScoredSample> =>
    rewards.map((reward, index) => ({
      sample: { contextId: "c", index, text: `s${index}`, tokens: 1, finishReason: "eos" },
      reward,
      events: []
    }))
  const base = { selection: "best", minReward: 0, threshold: 0.5 } as const
  const indices = (xs: ReadonlyArray<ScoredSample>) => xs.map((x) => x.sample.index)

  it("best keeps the single best sample above minReward (the first on ties)", () => {
    expect(indices(ReSTEM.select(base, scored([0.2, 0.7, 0.4]), undefined))).toEqual([1])
    expect(indices(ReSTEM.select(base, scored([0.7, 0.2, 0.7]), undefined))).toEqual([0])
    expect(indices(ReSTEM.select(base, scored([0, 0, 0]), undefined))).toEqual([])
    expect(indices(ReSTEM.select({ ...base, minReward: 0.7 }, scored([0.2, 0.7]), undefined))).toEqual([])
    expect(indices(ReSTEM.select({ ...base, minReward: 0.6 }, scored([0.2, 0.7]), undefined))).toEqual([1])
    expect(indices(ReSTEM.select(base, [], undefined))).toEqual([])
  })

  it("threshold keeps every sample with reward >= threshold", () => {
    const config = { ...base, selection: "threshold" } as const
    expect(indices(ReSTEM.select(config, scored([0.5, 0.49, 0.9, 0.1, 0.5]), undefined))).toEqual([0, 2, 4])
    expect(indices(ReSTEM.select({ ...config, threshold: 0.95 }, scored([0.5, 0.9]), undefined))).toEqual([])
  })

  it("positive-gain keeps samples strictly above the baseline (0 when there is none)", () => {
    const config = { ...base, selection: "positive-gain" } as const
    expect(indices(ReSTEM.select(config, scored([0.3, 0.5, 0.6, 0.2]), 0.5))).toEqual([2])
    expect(indices(ReSTEM.select(config, scored([0, 0.1]), undefined))).toEqual([1])
    expect(indices(ReSTEM.select(config, scored([0.3, 0.5]), 1))).toEqual([])
  })
})

describe("GRPO", () => {
  it("advantages: group-normalised with std scaling, centred without, zeros for a tied group", () => {
    const scaled = GRPO.advantages([1, 0, 0, 1], true)
    scaled.forEach((a, i) => expect(a).toBeCloseTo([1, -1, -1, 1][i]!, 5))
    expect(GRPO.advantages([1, 0, 0, 1], false)).toEqual([0.5, -0.5, -0.5, 0.5])
    // mean 0.5, population std sqrt(0.125)
    const r = [0, 0.5, 1, 0.5]
    const s = Math.sqrt(0.125)
    GRPO.advantages(r, true).forEach((a, i) => expect(a).toBeCloseTo((r[i]! - 0.5) / s, 5))
    expect(GRPO.advantages(r, false)).toEqual([-0.5, 0, 0.5, 0])
    expect(GRPO.advantages([0.3, 0.3, 0.3], true)).toEqual([0, 0, 0])
    expect(GRPO.advantages([0.3, 0.3, 0.3], false)).toEqual([0, 0, 0])
    expect(GRPO.advantages([1, 1 + 1e-14], true)).toEqual([0, 0])
    // Scaling keeps the sign and sums to zero.
    const a = GRPO.advantages([0.1, 0.9, 0.4], true)
    expect(a.reduce((x, y) => x + y, 0)).toBeCloseTo(0, 9)
    expect(a.map(Math.sign)).toEqual([-1, 1, -1])
  })

  it.effect("raises the share of good self-edits, passing each sample its group advantage", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld(0.3)
      const { events, metrics } = yield* runRounds(GRPO.layer(grpo()), layer, 3)
      expect(world.p).toBeGreaterThan(0.6)
      expect(world.policyGradient.length).toBe(3)
      for (const [i, m] of metrics.entries()) {
        const e = fromEvents(events, m.round)
        const informative = Math.round((1 - e.zeroVarianceGroups) * 8) * 4
        expect(m.acceptance).toBeCloseTo(informative / 32, 12)
        expect(m.zeroVarianceGroups).toBeCloseTo(e.zeroVarianceGroups, 12)
        expect(m.selfEditTokens).toBeCloseTo(e.selfEditTokens, 12)
        expect(m.updateSteps).toBe(3)
        // Tied groups are left out of the batch (klCoef 0); the rest carry their advantages.
        const { options, samples } = world.policyGradient[i]!
        expect(samples).toHaveLength(informative)
        const rewards = events.filter((x): x is Journal.RewardEvent => x.type === "reward" && x.round === m.round)
        for (const c of contexts) {
          const group = rewards.filter((x) => x.contextId === c.id).sort((a, b) => a.sample - b.sample)
          const expected = GRPO.advantages(group.map((x) => x.reward), true)
          const sent = samples.filter((s) => s.prompt === c.prompt)
          if (expected.every((a) => a === 0)) expect(sent).toEqual([])
          else {
            expect(sent.map((s) => s.advantage)).toEqual(expected)
            expect(sent.map((s) => s.completion)).toEqual(group.map((x) => x.selfEdit))
            expect(sent.every((s) => s.endsWithEos)).toBe(true)
          }
        }
        expect(options).toMatchObject({
          learningRate: 0.05,
          passes: 3,
          batchSize: 8,
          clip: 0.2,
          klCoef: 0,
          lengthNorm: "sequence",
          maxTokens: 32
        })
      }
      const updates = events.filter((e): e is Journal.UpdateEvent => e.type === "update")
      expect(updates.map((u) => u.clippedFraction)).toEqual([0.125, 0.125, 0.125])
    }))

  it.effect("with noisy rewards averaged over reward seeds it still raises p", () =>
    Effect.gen(function*() {
      const noise = (seed: number) => (mulberry32(seed)() - 0.5) * 0.6
      const { layer, world } = makeWorld(0.3, (r) => (r.selfEdit === "good" ? 0.7 : 0.3) + noise(r.seed))
      const { events, metrics } = yield* runRounds(
        GRPO.layer(grpo({ sampling: { k: 4, maxTokens: 32, rewardSeeds: 3, evalBatch: 7 } })),
        layer,
        3
      )
      expect(world.p).toBeGreaterThan(0.5)
      // Three evaluations per sample. Common random numbers: the k samples of a context share
      // their three inner-loop seeds, so one round has 3 seeds per context, not per sample.
      expect(events.filter((e) => e.type === "reward")).toHaveLength(3 * 32 * 3)
      expect(new Set(world.requests.map((r) => r.seed)).size).toBe(3 * 8 * 3)
      const rewardEventsOf = events.filter((e) => e.type === "reward") as Array<RewardEvent>
      const seedsOf = (contextId: string, sample: number) =>
        rewardEventsOf.filter((e) => e.round === 1 && e.contextId === contextId && e.sample === sample).map((e) =>
          e.seed
        )
      const first = rewardEventsOf[0]!.contextId
      expect(seedsOf(first, 1)).toEqual(seedsOf(first, 0))
      // With shared seeds the noise cancels within a group: a group ties exactly when its k
      // samples are the same text.
      metrics.forEach((m, r) => {
        const round = rewardEventsOf.filter((e) => e.round === r + 1)
        const contexts = [...new Set(round.map((e) => e.contextId))]
        const homogeneous = contexts.filter((c) =>
          new Set(round.filter((e) => e.contextId === c).map((e) => e.selfEdit)).size === 1
        )
        expect(m.zeroVarianceGroups).toBeCloseTo(homogeneous.length / contexts.length, 12)
      })
    }))

  it.effect("all-equal rewards: every group is tied, zeroVarianceGroups is 1 and no update runs", () =>
    Effect.gen(function*() {
      for (const klCoef of [0, 0.1]) {
        const { layer, world } = makeWorld(0.5, () => 0.4)
        const { events, metrics } = yield* runRounds(GRPO.layer(grpo({ update: { klCoef } })), layer, 2)
        expect(world.policyGradient).toHaveLength(0)
        expect(world.log).not.toContain("policyGradient")
        expect(world.p).toBe(0.5)
        for (const m of metrics) {
          expect(m).toMatchObject({
            zeroVarianceGroups: 1,
            acceptance: 0,
            updateSteps: 0,
            updateLoss: null
          })
          expect(m.rewardMean).toBeCloseTo(0.4, 12)
          expect(m.rewardStd).toBeCloseTo(0, 12)
        }
        const updates = events.filter((e): e is Journal.UpdateEvent => e.type === "update")
        expect(updates.map((u) => [u.steps, u.clippedFraction])).toEqual([[0, 0], [0, 0]])
        // With a KL penalty the tied samples stay in the batch (they still feel the KL), without they go.
        expect(updates.map((u) => u.examples)).toEqual(klCoef > 0 ? [32, 32] : [0, 0])
      }
    }))

  it("needs k >= 2", () => {
    expect(() => Schema.decodeSync(GRPO.GRPOConfig)({ sampling: { k: 1 } })).toThrow(/k >= 2/)
  })
})
