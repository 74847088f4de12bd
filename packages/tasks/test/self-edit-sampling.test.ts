import { describe, expect, it } from "@effect/vitest"
import type { SampledSelfEdit, SamplingParams, SelfEditContext } from "@seal/core/SelfEditSampler"
import { SelfEditSampler } from "@seal/core/SelfEditSampler"
import { LanguageModel } from "@seal/gpu/LanguageModel"
import { initWeights } from "@seal/gpu/model/InitWeights"
import { tinyLanguageModel, tinyLlama } from "@seal/gpu/testing/TinyModel"
import { type Context, Effect, Layer } from "effect"
import * as SelfEditSampling from "../src/SelfEditSampling.js"
import { sampleSeed } from "../src/SelfEditSampling.js"

const config = tinyLlama()

// Large initial weights so that temperature-1 samples are varied but not uniform noise.
const modelLayer = tinyLanguageModel(config, initWeights(config, 21, 0.3))

/** Runs `f` with a real sampler (rows in batches of `batchRows`) over the tiny model. */
const withSampler = <A, E>(
  batchRows: number,
  f: (sampler: Context.Tag.Service<typeof SelfEditSampler>) => Effect.Effect<A, E>
) =>
  Effect.flatMap(SelfEditSampler, f).pipe(
    Effect.provide(SelfEditSampling.layer({ batchRows }).pipe(Layer.provide(modelLayer)))
  )

const contexts: ReadonlyArray<SelfEditContext> = [
  { id: "alpha", prompt: "the cat sat on the mat." },
  { id: "beta", prompt: "a dog ran." },
  { id: "gamma", prompt: "we sing songs about the moon and sun." }
]

const params: SamplingParams = { k: 3, temperature: 1, maxTokens: 8, seed: 7 }

/** `contextId/index -> text`, for comparing results across orders and batchings. */
const byKey = (result: ReadonlyArray<ReadonlyArray<SampledSelfEdit>>) =>
  new Map(result.flat().map((s) => [`${s.contextId}/${s.index}`, s.text]))

describe("SelfEditSampling over a real tiny model", () => {
  it.effect("returns k samples per context in context order, with ids, indices and token counts", () =>
    withSampler(32, (sampler) =>
      Effect.gen(function*() {
        const result = yield* sampler.sample(contexts, params)
        expect(result.map((row) => row.map((s) => `${s.contextId}/${s.index}`))).toEqual(
          contexts.map((c) => [0, 1, 2].map((j) => `${c.id}/${j}`))
        )
        for (const s of result.flat()) {
          expect(["length", "eos", "stop", "context"]).toContain(s.finishReason)
          expect(s.tokens).toBeGreaterThanOrEqual(0)
          expect(s.tokens).toBeLessThanOrEqual(params.maxTokens)
          if (s.finishReason === "length") expect(s.tokens).toBe(params.maxTokens)
        }
        // Random weights at temperature 1: something is generated.
        expect(result.flat().some((s) => s.text.length > 0)).toBe(true)
        expect(yield* sampler.sample([], params)).toEqual([])
      })))

  it.effect("is reproducible for the same seed and independent of context order and batchRows", () =>
    Effect.gen(function*() {
      const reference = yield* withSampler(32, (s) => s.sample(contexts, params))
      const again = yield* withSampler(32, (s) => s.sample(contexts, params))
      expect(again).toEqual(reference)
      const expected = byKey(reference)
      expect(expected.size).toBe(9)
      // Reversed contexts: each (id, index) still gets the same text.
      const reversed = yield* withSampler(32, (s) => s.sample([...contexts].reverse(), params))
      expect(reversed.map((row) => row[0]!.contextId)).toEqual(["gamma", "beta", "alpha"])
      expect(byKey(reversed)).toEqual(expected)
      // Batches of 1, 2 and 4 rows put a row next to different prompts (and paddings), or alone.
      for (const batchRows of [1, 2, 4]) {
        const batched = yield* withSampler(batchRows, (s) => s.sample(contexts, params))
        expect(byKey(batched)).toEqual(expected)
        expect(batched.flat().map((x) => x.tokens)).toEqual(reference.flat().map((x) => x.tokens))
      }
      // A subset, and a larger k, keep the samples they share.
      const subset = yield* withSampler(32, (s) => s.sample([contexts[1]!], { ...params, k: 5 }))
      for (const sample of subset[0]!.slice(0, 3)) {
        expect(sample.text).toBe(expected.get(`beta/${sample.index}`))
      }
    }))

  it.effect("samples differ across indices and across seeds; greedy samples are all equal", () =>
    Effect.gen(function*() {
      const [a, b] = yield* withSampler(
        32,
        (s) => Effect.all([s.sample(contexts, params), s.sample(contexts, { ...params, seed: 8 })])
      )
      for (const row of a) expect(new Set(row.map((s) => s.text)).size).toBe(3)
      const differing = a.flat().filter((s, i) => s.text !== b.flat()[i]!.text)
      expect(differing.length).toBeGreaterThanOrEqual(8)
      const greedy = yield* withSampler(2, (s) => s.sample(contexts, { ...params, temperature: 0 }))
      for (const row of greedy) expect(new Set(row.map((s) => s.text)).size).toBe(1)
    }))

  it.effect("sample j of a context draws from the stream sampleSeed(seed, id, j)", () =>
    Effect.gen(function*() {
      const result = yield* withSampler(32, (s) => s.sample(contexts, params))
      const direct = yield* Effect.flatMap(LanguageModel, (model) =>
        model.generate(
          contexts.flatMap((c) => [0, 1, 2].map(() => c.prompt)),
          {
            maxTokens: params.maxTokens,
            temperature: params.temperature,
            rowSeeds: contexts.flatMap((c) => [0, 1, 2].map((j) => sampleSeed(params.seed, c.id, j)))
          }
        )).pipe(Effect.provide(modelLayer))
      expect(result.flat().map((s) => s.text)).toEqual(direct.map((g) => g.text))
      // The derived seeds are distinct per context, index and base seed.
      const seeds = new Set(
        [7, 8].flatMap((seed) => contexts.flatMap((c) => [0, 1, 2].map((j) => sampleSeed(seed, c.id, j))))
      )
      expect(seeds.size).toBe(18)
    }))

  it.effect("bad requests are SamplingError BadRequest", () =>
    withSampler(32, (sampler) =>
      Effect.gen(function*() {
        for (const k of [0, -1, 1.5]) {
          const error = yield* Effect.flip(sampler.sample(contexts, { ...params, k }))
          expect(error._tag).toBe("SamplingError")
          expect(error.reason).toBe("BadRequest")
          expect(error.message).toContain("k must be")
        }
        // A bad generation request surfaces with the model's reason.
        const negative = yield* Effect.flip(sampler.sample(contexts, { ...params, temperature: -1 }))
        expect([negative._tag, negative.reason]).toEqual(["SamplingError", "BadRequest"])
        const topP = yield* Effect.flip(sampler.sample(contexts, { ...params, topP: 0 }))
        expect(topP.reason).toBe("BadRequest")
      })))
})

describe("SelfEditSampling.layerTest", () => {
  it.effect("returns what write says, with the derived seed, k per context", () =>
    Effect.gen(function*() {
      const sampler = yield* SelfEditSampler
      const result = yield* sampler.sample(contexts.slice(0, 2), { ...params, k: 2 })
      expect(result.map((row) => row.map((s) => s.text))).toEqual([
        [`alpha 0 ${sampleSeed(7, "alpha", 0)}`, `alpha 1 ${sampleSeed(7, "alpha", 1)}`],
        [`beta 0 ${sampleSeed(7, "beta", 0)}`, `beta 1 ${sampleSeed(7, "beta", 1)}`]
      ])
      expect(result[1]![1]).toMatchObject({ contextId: "beta", index: 1, tokens: 3, finishReason: "eos" })
    }).pipe(Effect.provide(SelfEditSampling.layerTest((id, index, seed) => `${id} ${index} ${seed}`))))
})
