import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import {
  buildCorpus,
  CorpusConfig,
  type CorpusDocument,
  corpusStats,
  defaultCorpusConfig,
  documentKinds,
  toExample,
  toJsonLines
} from "../src/world/Corpus.js"
import { selfEditQuality } from "../src/world/SelfEdits.js"
import { defaultWorldConfig, entityByName, fullName, generateWorld, worldTokenizer } from "../src/world/World.js"

const world = generateWorld(defaultWorldConfig, 21)
const tokenizer = worldTokenizer(defaultWorldConfig)
const corpus = buildCorpus(world, defaultCorpusConfig, 5)
const documents = [...corpus.warmup, ...corpus.main]
const stats = corpusStats(corpus, tokenizer)

const small = Schema.decodeSync(CorpusConfig)({
  passageRenderings: 2,
  restatementRepeats: 1,
  qaRepeats: 1,
  freshSelfEdits: 200,
  openBookDocuments: 200
})

/** Every "first last" pair of consecutive words in the document. */
const bigrams = (doc: CorpusDocument): Set<string> => {
  const words = tokenizer.words(`${doc.prompt}${doc.completion}`)
  const out = new Set<string>()
  for (let i = 0; i + 1 < words.length; i++) out.add(`${words[i]} ${words[i + 1]}`)
  return out
}

describe("buildCorpus", () => {
  it("is a pure function of world, config and seed", () => {
    expect(buildCorpus(world, small, 1)).toEqual(buildCorpus(world, small, 1))
    expect(buildCorpus(world, small, 1).main).not.toEqual(buildCorpus(world, small, 2).main)
    // Each part has its own stream: more open-book documents leave the passages as they were.
    const passages = (c: ReturnType<typeof buildCorpus>) => c.main.filter((d) => d.kind === "passage")
    const more = buildCorpus(world, { ...small, openBookDocuments: 300 }, 1)
    expect(new Set(passages(more).map((d) => d.completion))).toEqual(
      new Set(passages(buildCorpus(world, small, 1)).map((d) => d.completion))
    )
  })

  it("never mentions an RL or held-out person, nor their names", () => {
    const forbidden = new Set([...world.entities.rl, ...world.entities.heldOut].map((e) => e.name))
    const pretraining = new Set(world.entities.pretrain.map((e) => e.name))
    const fresh = new Set(world.freshNames.map(fullName))
    const everyone = entityByName(world)
    const leaks: Array<string> = []
    const unknownNames = new Set<string>()
    for (const doc of documents) {
      for (const pair of bigrams(doc)) {
        if (forbidden.has(pair)) leaks.push(`${doc.kind}: ${pair}`)
        else if (doc.kind !== "freshSelfEdit" && doc.kind !== "openBookQa" && everyone.has(pair)) {
          if (!pretraining.has(pair)) unknownNames.add(pair)
        }
      }
    }
    expect(leaks).toEqual([])
    expect([...unknownNames]).toEqual([])
    // Fresh documents use fresh names only.
    for (const doc of documents.filter((d) => d.kind === "freshSelfEdit" || d.kind === "openBookQa")) {
      const title = doc.prompt.split("\n")[1]!
      expect(fresh.has(title), title).toBe(true)
    }
  })

  it("uses only the world's vocabulary", () => {
    expect(documents.filter((d) => !tokenizer.covers(d.prompt + d.completion))).toEqual([])
  })

  it("puts copying first: the warm-up is repeated passages, open-book questions and oracle self-edits", () => {
    expect(new Set(corpus.warmup.map((d) => d.kind))).toEqual(new Set(["freshSelfEdit", "openBookQa", "repeat"]))
    expect(new Set(corpus.main.map((d) => d.kind))).toEqual(new Set(documentKinds.filter((k) => k !== "repeat")))
    for (const doc of corpus.warmup.filter((d) => d.kind === "freshSelfEdit").slice(0, 500)) {
      const [, title, passage] = doc.prompt.split("\n")
      // The fresh person's facts are whatever the passage says (partial people lack some).
      const facts = world.attributes.flatMap((a) => {
        const value = passage!.split(" ").find((w) => a.values.includes(w))
        return value === undefined ? [] : [{ attribute: a.name, value }]
      })
      const [first, last] = title!.split(" ")
      const person = { first: first!, last: last!, gender: "female" as const, name: title!, facts }
      expect(selfEditQuality(world, person, doc.completion)).toMatchObject({ correct: 1, incorrect: 0 })
    }
  })

  it("answers open-book questions from the passage in the prompt", () => {
    for (const doc of documents.filter((d) => d.kind === "openBookQa").slice(0, 500)) {
      const passage = doc.prompt.split("\n")[2]!.split(" ")
      const answers = doc.completion.split("\n").filter((_, i) => i % 3 === 0)
      const values = passage.filter((w) => world.attributes.some((a) => a.values.includes(w)))
      expect(answers.length).toBe(values.length)
      expect(new Set(answers)).toEqual(new Set(values))
    }
  })

  it("reads fresh passages twice in the repeat documents, some about partial people", () => {
    const repeats = corpus.warmup.filter((d) => d.kind === "repeat")
    expect(repeats).toHaveLength(defaultCorpusConfig.repeatDocuments)
    let partial = 0
    for (const doc of repeats) {
      const lines = doc.completion.split("\n")
      expect(lines).toHaveLength(4)
      expect(lines.slice(2)).toEqual(lines.slice(0, 2))
      const values = lines[1]!.split(" ").filter((w) => world.attributes.some((a) => a.values.includes(w)))
      if (values.length < world.attributes.length) partial++
    }
    // Half the fresh people are partial, and a partial person keeps all five with probability 1/5.
    expect(partial / repeats.length).toBeGreaterThan(0.35)
    expect(partial / repeats.length).toBeLessThan(0.45)
  })

  it("keeps the closed-book questions of the passage-only people out", () => {
    expect(corpus.qaPeople).toHaveLength(150)
    expect(corpus.passageOnlyPeople).toHaveLength(150)
    const asked = new Set(
      documents.filter((d) => d.kind === "closedBookQa").map((d) => d.prompt.split(" ").slice(3, 5).join(" "))
    )
    expect(asked).toEqual(new Set(corpus.qaPeople))
    // ... but they are read like everyone else.
    const read = new Set(documents.filter((d) => d.kind === "passage").map((d) => d.completion.split("\n")[0]))
    for (const name of corpus.passageOnlyPeople) expect(read.has(name)).toBe(true)
  })

  it("writes training examples in the shapes the trainers read", () => {
    const passage = corpus.main.find((d) => d.kind === "passage")!
    expect(toExample(passage)).toEqual({ text: passage.completion })
    const qa = corpus.main.find((d) => d.kind === "closedBookQa")!
    expect(toExample(qa)).toEqual({ prompt: qa.prompt, completion: qa.completion })
    const lines = toJsonLines([passage, qa]).trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(lines).toEqual([toExample(passage), toExample(qa)])
  })
})

describe("corpusStats", () => {
  it("reports a default corpus of 1-3M tokens over a vocabulary under 400", () => {
    expect(stats.vocabSize).toBeLessThanOrEqual(400)
    expect(stats.total.tokens).toBeGreaterThan(1_000_000)
    expect(stats.total.tokens).toBeLessThan(3_000_000)
    expect(stats.total.documents).toBe(documents.length)
    const sum = documentKinds.reduce((acc, k) => acc + stats.byKind[k].tokens, 0)
    expect(sum).toBe(stats.total.tokens)
    expect(stats.warmup.tokens + stats.main.tokens).toBe(stats.total.tokens)
    expect(stats.maxTokens).toBeLessThanOrEqual(128)
  })

  it("counts tokens with BOS and EOS, and targets as completion plus EOS", () => {
    const qa = corpus.main.find((d) => d.kind === "closedBookQa")!
    const one = corpusStats({ warmup: [], main: [qa], qaPeople: [], passageOnlyPeople: [] }, tokenizer)
    expect(one.total).toEqual({
      documents: 1,
      tokens: tokenizer.encode(qa.prompt + qa.completion).length + 1,
      targetTokens: 2
    })
  })
})
