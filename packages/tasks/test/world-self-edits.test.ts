import { describe, expect, it } from "@effect/vitest"
import { makeRng } from "@seal/gpu/model/Sampling"
import { Schema } from "effect"
import {
  meanQuality,
  oracleSelfEdit,
  passageOrder,
  sampleSelfEdit,
  sampleSelfEditLines,
  SelfEditMix,
  selfEditQuality
} from "../src/world/SelfEdits.js"
import { defaultWorldConfig, generateWorld, type Person, worldTokenizer } from "../src/world/World.js"

const world = generateWorld(defaultWorldConfig, 3)
const defaultMix = Schema.decodeSync(SelfEditMix)({})

const ana: Person = {
  first: "ana",
  last: "smith",
  gender: "female",
  name: "ana smith",
  facts: [
    { attribute: "city", value: "paris" },
    { attribute: "year", value: "1975" },
    { attribute: "employer", value: "acme" },
    { attribute: "hobby", value: "rowing" },
    { attribute: "colour", value: "red" }
  ]
}

describe("oracle self-edit", () => {
  it("restates every fact with the question's key words, in the given order", () => {
    expect(oracleSelfEdit(world, ana)).toBe([
      "ana smith 's city is paris",
      "ana smith 's birth year is 1975",
      "ana smith 's employer is acme",
      "ana smith 's hobby is rowing",
      "ana smith 's favourite colour is red"
    ].join("\n"))
    expect(oracleSelfEdit(world, ana, ["hobby", "city"])).toBe(
      "ana smith 's hobby is rowing\nana smith 's city is paris"
    )
  })

  it("follows the passage's order when asked to", () => {
    const passage = "meet ana smith . she enjoys rowing . her city is paris . red is her favourite colour ."
    expect(passageOrder(ana, passage)).toEqual(["hobby", "city", "colour", "year", "employer"])
  })
})

describe("selfEditQuality", () => {
  it("scores the oracle as all correct", () => {
    expect(selfEditQuality(world, ana, oracleSelfEdit(world, ana))).toEqual({
      lines: 5,
      correct: 1,
      incorrect: 0,
      correctStatements: 5,
      wrongStatements: 0,
      unboundLines: 0
    })
  })

  it("counts wrong values, unbound lines and other people on known texts", () => {
    const text = [
      "ana smith 's city is paris",
      "ana smith 's hobby is chess", // wrong value
      "she enjoys rowing", // right value, but no name: binds nothing
      "ana smith is a woman", // no value
      "omar chen 's employer is acme", // someone else
      "",
      "ana smith was born in 1975 and works at acme", // two facts on one line
      "red is ana smith 's favourite colour",
      "ana smith 's favourite colour is blue" // contradicts the line above
    ].join("\n")
    expect(selfEditQuality(world, ana, text)).toEqual({
      lines: 8,
      correct: 4 / 5,
      incorrect: 2 / 5,
      correctStatements: 4,
      wrongStatements: 2,
      unboundLines: 2
    })
  })

  it("scores empty and off-topic text as nothing", () => {
    expect(selfEditQuality(world, ana, "")).toMatchObject({ lines: 0, correct: 0, incorrect: 0 })
    expect(selfEditQuality(world, ana, "this is a short passage\n\nana smith")).toMatchObject({
      lines: 2,
      correct: 0,
      incorrect: 0,
      unboundLines: 0
    })
    expect(meanQuality([])).toMatchObject({ correct: 0, lines: 0 })
  })
})

describe("sampled self-edits", () => {
  const people = world.entities.pretrain
  const order = ana.facts.map((f) => f.attribute)

  it("are reproducible from the seed", () => {
    const draw = (seed: number) => {
      const rng = makeRng(seed)
      return people.slice(0, 20).map((p) => sampleSelfEdit(world, p, order, defaultMix, rng))
    }
    expect(draw(1)).toEqual(draw(1))
    expect(draw(1)).not.toEqual(draw(2))
  })

  it("mix useful, partial, unbound and wrong lines at the configured rates", () => {
    const rng = makeRng(9)
    const qualities = people.flatMap((p) =>
      Array.from({ length: 10 }, () => selfEditQuality(world, p, sampleSelfEdit(world, p, order, defaultMix, rng)))
    )
    const mean = meanQuality(qualities)
    // restatement + paraphrase = 0.65 of the weight; wrong 0.1; omit 0.15.
    expect(mean.correct).toBeGreaterThan(0.6)
    expect(mean.correct).toBeLessThan(0.7)
    expect(mean.incorrect).toBeGreaterThan(0.08)
    expect(mean.incorrect).toBeLessThan(0.12)
    expect(mean.unboundLines).toBeGreaterThan(0.3)
    // Quality varies between self-edits, which is what best-of-k selection needs.
    const perfect = qualities.filter((q) => q.correct === 1 && q.incorrect === 0).length / qualities.length
    const bad = qualities.filter((q) => q.incorrect >= 0.2).length / qualities.length
    expect(perfect).toBeGreaterThan(0.05)
    expect(bad).toBeGreaterThan(0.2)
  })

  it("follow the weights exactly at the extremes", () => {
    const rng = makeRng(4)
    const only = (kind: "restatement" | "echo" | "wrong" | "omit") =>
      Schema.decodeSync(SelfEditMix)({
        restatement: kind === "restatement" ? 1 : 0,
        paraphrase: 0,
        echo: kind === "echo" ? 1 : 0,
        wrong: kind === "wrong" ? 1 : 0,
        omit: kind === "omit" ? 1 : 0,
        irrelevantLines: 0,
        passageOrderRate: 1
      })
    const p = people[0]!
    expect(sampleSelfEdit(world, p, order, only("restatement"), rng)).toBe(oracleSelfEdit(world, p, order))
    expect(selfEditQuality(world, p, sampleSelfEdit(world, p, order, only("wrong"), rng))).toMatchObject({
      correct: 0,
      incorrect: 1
    })
    expect(selfEditQuality(world, p, sampleSelfEdit(world, p, order, only("echo"), rng))).toMatchObject({
      correct: 0,
      incorrect: 0,
      unboundLines: 5
    })
    // Everything omitted still leaves one harmless line: an empty completion trains nothing.
    const omitted = sampleSelfEditLines(world, p, order, only("omit"), rng)
    expect(omitted).toHaveLength(1)
    expect(omitted[0]!.kind).toBe("irrelevant")
  })

  it("only use words of the world's vocabulary", () => {
    const tokenizer = worldTokenizer(defaultWorldConfig)
    const rng = makeRng(2)
    for (const p of people) {
      expect(tokenizer.covers(sampleSelfEdit(world, p, order, { ...defaultMix, irrelevantLines: 3 }, rng))).toBe(true)
    }
  })
})
