import { describe, expect, it } from "@effect/vitest"
import { makeRng } from "@seal/gpu/model/Sampling"
import { Either } from "effect"
import {
  attributeLexicon,
  attributeNames,
  femaleFirstNames,
  lastNames,
  maleFirstNames,
  pronouns,
  traits
} from "../src/world/Lexicon.js"
import { passageSentences, passageTemplateWords } from "../src/world/Passages.js"
import { selfEditTemplateWords } from "../src/world/SelfEdits.js"
import {
  attributeKey,
  decodeWorldConfig,
  defaultWorldConfig,
  fullName,
  generateWorld,
  knowledgeContexts,
  openBookQuestionPrompt,
  questionPrompt,
  selfEditPrompt,
  splits,
  toKnowledgeContext,
  trainingSequences,
  type WorldConfig,
  worldTokenizer,
  worldVocabulary
} from "../src/world/World.js"

const config = (input: Record<string, unknown> = {}): WorldConfig => Either.getOrThrow(decodeWorldConfig(input))

const world = generateWorld(defaultWorldConfig, 11)
const tokenizer = worldTokenizer(defaultWorldConfig)
const everyone = splits.flatMap((s) => world.entities[s])

describe("world config", () => {
  it("decodes defaults: 300 / 150 / 50 people, five attributes, FEASIBILITY's value counts", () => {
    expect(defaultWorldConfig.pretrainEntities).toBe(300)
    expect(defaultWorldConfig.rlEntities).toBe(150)
    expect(defaultWorldConfig.heldOutEntities).toBe(50)
    expect(defaultWorldConfig.attributes).toEqual(attributeNames)
    expect(defaultWorldConfig.values).toEqual({ city: 20, year: 30, employer: 20, hobby: 15, colour: 10 })
    expect(defaultWorldConfig.passage.order).toBe("shuffled")
    expect(config({ passage: { order: "fixed" } }).passage).toMatchObject({ order: "fixed", keyedRate: 0.5 })
  })

  it("rejects configs that cannot be generated, naming the field", () => {
    const failure = (input: Record<string, unknown>) =>
      Either.match(decodeWorldConfig(input), { onLeft: (e) => e, onRight: () => undefined })
    expect(failure({ values: { hobby: 16 } })?.field).toBe("values.hobby")
    expect(failure({ attributes: ["city", "city"] })?.detail).toContain("must not repeat")
    expect(failure({ lastNames: 5 })?.detail).toContain("names cannot hold")
    expect(failure({ prompts: { question: "no placeholder" } })?.detail).toContain("{question}")
    expect(failure({ passage: { keyedRate: 2 } })?.field).toBe("passage.keyedRate")
  })
})

describe("generateWorld", () => {
  it("is a pure function of config and seed", () => {
    expect(generateWorld(defaultWorldConfig, 11)).toEqual(world)
    const other = generateWorld(defaultWorldConfig, 12)
    expect(other.entities.heldOut.map((e) => e.name)).not.toEqual(world.entities.heldOut.map((e) => e.name))
    // Passage options do not move anyone between splits.
    const fixed = generateWorld(config({ passage: { order: "fixed" } }), 11)
    expect(fixed.entities.rl.map((e) => [e.name, e.facts])).toEqual(world.entities.rl.map((e) => [e.name, e.facts]))
  })

  it("deals disjoint splits of the configured sizes and keeps fresh names out of all of them", () => {
    expect(world.entities.pretrain).toHaveLength(300)
    expect(world.entities.rl).toHaveLength(150)
    expect(world.entities.heldOut).toHaveLength(50)
    const names = everyone.map((e) => e.name)
    expect(new Set(names).size).toBe(500)
    const fresh = world.freshNames.map(fullName)
    expect(fresh).toHaveLength(2 * 20 * 40 - 500)
    expect(fresh.filter((n) => names.includes(n))).toEqual([])
    for (const split of splits) for (const e of world.entities[split]) expect(e.split).toBe(split)
  })

  it("gives everyone one value per attribute from the world's lists", () => {
    for (const e of everyone) {
      expect(e.facts.map((f) => f.attribute)).toEqual(defaultWorldConfig.attributes)
      for (const f of e.facts) {
        expect(attributeLexicon[f.attribute].values.slice(0, defaultWorldConfig.values[f.attribute])).toContain(f.value)
      }
    }
    // Every value shows up: attributes are drawn uniformly, not from a narrow band.
    for (const a of world.attributes) {
      const seen = new Set(everyone.flatMap((e) => e.facts.filter((f) => f.attribute === a.name).map((f) => f.value)))
      expect(seen.size).toBe(a.values.length)
    }
  })

  it("writes passages of about 30-50 tokens that state every fact", () => {
    const lengths = everyone.map((e) => tokenizer.words(`${e.name}\n${e.passage}`).length)
    const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length
    expect(mean).toBeGreaterThan(30)
    expect(mean).toBeLessThan(50)
    expect(Math.max(...lengths)).toBeLessThanOrEqual(60)
    for (const e of everyone) {
      const words = e.passage.split(" ")
      for (const f of e.facts) expect(words).toContain(f.value)
      // Pronouns carry the facts: the name is said once, in the introduction.
      expect(e.passage.split(e.name).length - 1).toBe(1)
    }
  })

  it("shuffles the attribute order by default and keeps it fixed on request", () => {
    const keys = attributeKey(world.attributes)
    const orders = (order: "shuffled" | "fixed") => {
      const rng = makeRng(5)
      const passage = config({ passage: { order, keyedRate: 1 } }).passage
      return world.entities.pretrain.slice(0, 50).map((e) =>
        passageSentences(e, keys, passage, rng).flatMap((s) => (s.attribute === undefined ? [] : [s.attribute]))
          .join(",")
      )
    }
    expect(new Set(orders("fixed"))).toEqual(new Set([attributeNames.join(",")]))
    expect(new Set(orders("shuffled")).size).toBeGreaterThan(20)
  })

  it("uses the keyed form at the configured rate", () => {
    const keys = attributeKey(world.attributes)
    const keyedShare = (keyedRate: number) => {
      const rng = makeRng(3)
      const passage = config({ passage: { keyedRate } }).passage
      const sentences = world.entities.pretrain.flatMap((e) => passageSentences(e, keys, passage, rng))
        .filter((s) => s.attribute !== undefined)
      return sentences.filter((s) => s.keyed).length / sentences.length
    }
    expect(keyedShare(0)).toBe(0)
    expect(keyedShare(1)).toBe(1)
    expect(keyedShare(0.5)).toBeGreaterThan(0.45)
    expect(keyedShare(0.5)).toBeLessThan(0.55)
    const sentence = passageSentences(
      world.entities.rl[0]!,
      keys,
      config({ passage: { keyedRate: 1 } }).passage,
      makeRng(1)
    )
    const fact = world.entities.rl[0]!.facts.find((f) => f.attribute === "hobby")!
    expect(sentence.map((s) => s.text)).toContain(
      `${pronouns[world.entities.rl[0]!.gender].p} hobby is ${fact.value} .`
    )
  })
})

describe("vocabulary and tokenizer", () => {
  it("stays under 400 tokens, specials first, and depends on the config only", () => {
    const vocabulary = worldVocabulary(defaultWorldConfig)
    expect(vocabulary.length).toBeLessThanOrEqual(400)
    expect(vocabulary.slice(0, 5)).toEqual(["<pad>", "<bos>", "<eos>", "<unk>", "\n"])
    expect(tokenizer.vocabSize).toBe(vocabulary.length)
    expect(worldTokenizer(config({ rlEntities: 10 })).tokens).toEqual(tokenizer.tokens)
    expect(worldVocabulary(config({ values: { year: 5 } })).length).toBe(vocabulary.length - 25)
  })

  it("keeps the word lists disjoint, so a value word names its attribute", () => {
    const lists: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
      ["first names", [...femaleFirstNames, ...maleFirstNames]],
      ["last names", lastNames],
      ...attributeNames.map((a) => [a, attributeLexicon[a].values] as const),
      ["traits", traits],
      // Template words may repeat among themselves ("is"), never elsewhere.
      ["templates", [
        ...new Set([
          ...passageTemplateWords,
          ...selfEditTemplateWords,
          ...attributeNames.flatMap((a) => [...attributeLexicon[a].key.split(" "), attributeLexicon[a].kind]),
          ...Object.values(pronouns).flatMap((p) => Object.values(p)),
          "what",
          "?",
          "passage:",
          "answer:",
          "question:"
        ])
      ]]
    ]
    const owner = new Map<string, string>()
    for (const [name, words] of lists) {
      for (const word of words) {
        expect(owner.get(word), `${word} in ${name} and ${owner.get(word)}`).toBeUndefined()
        owner.set(word, name)
      }
    }
  })

  it("makes every answer exactly one known token and covers every prompt", () => {
    const prompts = world.config.prompts
    for (const e of everyone) {
      const context = toKnowledgeContext(world, e)
      expect(tokenizer.covers(selfEditPrompt(prompts, context))).toBe(true)
      for (const q of context.questions) {
        const ids = tokenizer.encode(q.answer, { addBos: false })
        expect(ids).toHaveLength(1)
        expect(ids[0]).not.toBe(tokenizer.unkId)
        expect(tokenizer.covers(questionPrompt(prompts, context.title, q.question))).toBe(true)
        expect(tokenizer.covers(openBookQuestionPrompt(prompts, context, q.question))).toBe(true)
      }
    }
  })
})

describe("SEAL contexts", () => {
  it("expresses a person as {title, context, questions} with one question per attribute", () => {
    const e = world.entities.heldOut[0]!
    const context = toKnowledgeContext(world, e)
    expect(context.title).toBe(e.name)
    expect(context.context).toBe(e.passage)
    expect(context.questions).toEqual(
      e.facts.map((f) => ({
        question: `what is ${e.name} 's ${attributeLexicon[f.attribute].key} ?`,
        answer: f.value
      }))
    )
    expect(knowledgeContexts(world, "rl")).toHaveLength(150)
  })

  it("renders the compact prompts and SEAL's training sequences", () => {
    const context = { title: "ana smith", context: "meet ana smith . her hobby is rowing ." }
    const prompts = world.config.prompts
    expect(selfEditPrompt(prompts, context)).toBe(
      "passage:\nana smith\nmeet ana smith . her hobby is rowing .\nimplications:\n"
    )
    expect(questionPrompt(prompts, "ana smith", "what is ana smith 's hobby ?")).toBe(
      "question: what is ana smith 's hobby ?\nanswer:\n"
    )
    expect(trainingSequences(prompts, context, "ana smith 's hobby is rowing\n\n she is kind \n")).toEqual([
      "ana smith\nana smith 's hobby is rowing",
      "ana smith\nshe is kind",
      "ana smith\nmeet ana smith . her hobby is rowing ."
    ])
    const custom = config({ prompts: { question: "topic: {title}\n{question}\nanswer:\n" } }).prompts
    expect(questionPrompt(custom, "ana smith", "q ?")).toBe("topic: ana smith\nq ?\nanswer:\n")
    expect(worldVocabulary(config({ prompts: { question: "topic: {title}\n{question}\nanswer:\n" } }))).toContain(
      "topic:"
    )
  })
})
