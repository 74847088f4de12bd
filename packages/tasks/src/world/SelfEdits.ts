/**
 * Self-edits for the synthetic world: lists of lines a model could write after the world's
 * implications prompt, of controlled usefulness, for the pretraining corpus; the oracle self-edit;
 * and a scorer of any text against a person's facts.
 *
 * Line kinds, most useful first:
 * - `restatement`: "ana smith 's hobby is rowing", keyed by the attribute words the question uses,
 *   so it binds name, question cue and value in one line (the oracle is all of these);
 * - `paraphrase`: another surface form with the name, "ana smith enjoys rowing";
 * - `echo`: the passage's sentence with its pronoun, "she enjoys rowing", which binds nothing;
 * - `wrong`: a restatement or paraphrase with another value, which teaches a false fact;
 * - `irrelevant`: "paris is a city", "ana smith is a woman", "she is calm";
 * - an omitted attribute (no line).
 *
 * Mixed usefulness is the point: the base model should write self-edits that vary in quality, so
 * that sampling several and keeping the best (ReST-EM) has something to select.
 */
import { Schema } from "effect"
import { type AttributeName, pronouns, traits } from "./Lexicon.js"
import { attributeForms, attributeSentence, fillTemplate, keyedForm, templateWords } from "./Passages.js"
import { pick, pickOther, pickWeighted, type Rng, shuffled } from "./Random.js"
import type { Fact, Person, World, WorldAttribute } from "./World.js"

const Weight = Schema.Number.pipe(Schema.nonNegative())
const Probability = Schema.Number.pipe(Schema.between(0, 1))

/**
 * How self-edits in the corpus are drawn. Each attribute of the person gets one line whose kind is
 * drawn with the weights below (`omit`: no line). `spread` varies the harmful weights (`wrong`,
 * `omit`) between documents: each self-edit scales them by `1 + spread * (2u - 1)` with u uniform
 * in [0, 1), so their mean is kept and some self-edits are much better than others.
 */
export const SelfEditMix = Schema.Struct({
  restatement: Schema.optionalWith(Weight, { default: () => 0.5 }),
  paraphrase: Schema.optionalWith(Weight, { default: () => 0.15 }),
  echo: Schema.optionalWith(Weight, { default: () => 0.1 }),
  wrong: Schema.optionalWith(Weight, { default: () => 0.1 }),
  omit: Schema.optionalWith(Weight, { default: () => 0.15 }),
  /** Expected irrelevant lines per self-edit (each placed at random). */
  irrelevantLines: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 10)), { default: () => 0.7 }),
  spread: Schema.optionalWith(Probability, { default: () => 1 }),
  /** Probability that the lines follow the passage's order rather than a shuffled one. */
  passageOrderRate: Schema.optionalWith(Probability, { default: () => 0.7 })
}).pipe(
  Schema.filter((m) => m.restatement + m.paraphrase + m.echo + m.wrong + m.omit > 0 || "the weights cannot all be 0")
).annotations({ identifier: "SelfEditMix" })
export type SelfEditMix = typeof SelfEditMix.Type

export const lineKinds = ["restatement", "paraphrase", "echo", "wrong", "omit"] as const
export type LineKind = typeof lineKinds[number] | "irrelevant"

/** The restatement template; no final period, since each line is its own training sequence. */
export const restatementForm = "{n} 's {key} is {v}"

export const irrelevantForms: ReadonlyArray<string> = [
  "{n} is a {noun}",
  "the passage is about {n}",
  "{x} is a {kind}",
  "{s} is {trait}",
  "this is a short passage"
]

/** Words self-edit lines use beyond those of passages, names and values. */
export const selfEditTemplateWords: ReadonlyArray<string> = templateWords([restatementForm, ...irrelevantForms])

const attributeOf = (world: Pick<World, "attributes">, name: AttributeName): WorldAttribute =>
  world.attributes.find((a) => a.name === name)!

const withoutPeriod = (sentence: string): string => sentence.replace(/ \.$/, "")

/** "ana smith 's hobby is rowing". */
export const restatement = (person: Pick<Person, "name">, key: string, value: string): string =>
  fillTemplate(restatementForm, { n: person.name, key, v: value })

/** The oracle self-edit: every fact restated, one per line, in `order` (default: the world's). */
export const oracleSelfEdit = (
  world: Pick<World, "attributes">,
  person: Person,
  order: ReadonlyArray<AttributeName> = person.facts.map((f) => f.attribute)
): string =>
  order.flatMap((attribute) => {
    const fact = person.facts.find((f) => f.attribute === attribute)
    return fact === undefined ? [] : [restatement(person, attributeOf(world, attribute).key, fact.value)]
  }).join("\n")

/**
 * The order in which `person`'s values appear in `passage` (attributes whose value is absent go
 * last, in the world's order). Self-edit lines that follow it are easier to copy.
 */
export const passageOrder = (person: Person, passage: string): Array<AttributeName> => {
  const words = passage.split(/\s+/)
  const at = (fact: Fact) => {
    const i = words.indexOf(fact.value)
    return i < 0 ? Number.MAX_SAFE_INTEGER : i
  }
  return [...person.facts].sort((a, b) => at(a) - at(b)).map((f) => f.attribute)
}

export interface SelfEditLine {
  readonly kind: LineKind
  readonly text: string
  readonly attribute?: AttributeName
}

/** One line of `kind` about `fact`. */
const factLine = (
  world: Pick<World, "attributes">,
  person: Person,
  fact: Fact,
  kind: Exclude<typeof lineKinds[number], "omit">,
  rng: Rng
): string => {
  const attribute = attributeOf(world, fact.attribute)
  switch (kind) {
    case "restatement":
      return restatement(person, attribute.key, fact.value)
    case "paraphrase":
      return withoutPeriod(
        attributeSentence(person, fact, attribute.key, pick(rng, attributeForms[fact.attribute]), true)
      )
    case "echo":
      return withoutPeriod(
        attributeSentence(person, fact, attribute.key, pick(rng, [keyedForm, ...attributeForms[fact.attribute]]), false)
      )
    case "wrong": {
      const wrong = { attribute: fact.attribute, value: pickOther(rng, attribute.values, fact.value) }
      return rng() < 0.5
        ? restatement(person, attribute.key, wrong.value)
        : withoutPeriod(
          attributeSentence(person, wrong, attribute.key, pick(rng, attributeForms[fact.attribute]), true)
        )
    }
  }
}

const irrelevantLine = (world: Pick<World, "attributes">, person: Person, rng: Rng): string => {
  const other = pick(rng, world.attributes)
  return fillTemplate(pick(rng, irrelevantForms), {
    n: person.name,
    noun: pronouns[person.gender].noun,
    s: pronouns[person.gender].s,
    trait: pick(rng, traits),
    x: pick(rng, other.values),
    kind: other.kind
  })
}

/**
 * Draws one self-edit for `person` under `mix`. `order` is the order of the facts in the passage
 * the self-edit is written from (see `passageOrder`).
 */
export const sampleSelfEditLines = (
  world: Pick<World, "attributes">,
  person: Person,
  order: ReadonlyArray<AttributeName>,
  mix: SelfEditMix,
  rng: Rng
): Array<SelfEditLine> => {
  const scale = (weight: number) => weight * (1 + mix.spread * (2 * rng() - 1))
  const weights = [mix.restatement, mix.paraphrase, mix.echo, scale(mix.wrong), scale(mix.omit)]
  const attributes = rng() < mix.passageOrderRate ? order : shuffled(rng, order)
  const lines: Array<SelfEditLine> = []
  for (const attribute of attributes) {
    const fact = person.facts.find((f) => f.attribute === attribute)
    if (fact === undefined) continue
    const kind = lineKinds[pickWeighted(rng, weights)]!
    if (kind === "omit") continue
    lines.push({ kind, text: factLine(world, person, fact, kind, rng), attribute })
  }
  // Whole lines plus one more with the fractional part's probability: the mean is exact.
  const irrelevant = Math.floor(mix.irrelevantLines) + (rng() < mix.irrelevantLines % 1 ? 1 : 0)
  for (let i = 0; i < irrelevant; i++) {
    lines.splice(Math.floor(rng() * (lines.length + 1)), 0, {
      kind: "irrelevant",
      text: irrelevantLine(world, person, rng)
    })
  }
  // An empty self-edit would be an empty completion; say something harmless instead.
  if (lines.length === 0) lines.push({ kind: "irrelevant", text: irrelevantLine(world, person, rng) })
  return lines
}

/** `sampleSelfEditLines` as the text a model would write: one line each. */
export const sampleSelfEdit = (
  world: Pick<World, "attributes">,
  person: Person,
  order: ReadonlyArray<AttributeName>,
  mix: SelfEditMix,
  rng: Rng
): string => sampleSelfEditLines(world, person, order, mix, rng).map((l) => l.text).join("\n")

export interface SelfEditQuality {
  /** Non-empty lines. */
  readonly lines: number
  /** Fraction of the person's attributes that some line states correctly together with the full name. */
  readonly correct: number
  /** Fraction of the person's attributes that some line gives a wrong value for, with the full name. */
  readonly incorrect: number
  /** Value mentions bound to the name: right, and wrong. */
  readonly correctStatements: number
  readonly wrongStatements: number
  /** Lines with a value but not the full name (pronoun echoes, "paris is a city"): they bind nothing. */
  readonly unboundLines: number
}

/**
 * How well `text` restates `person`'s facts. A statement is a value word (of any of the world's
 * attributes) on a line that contains the person's full name; it is correct when it is the
 * person's value for that attribute. Which attribute a value belongs to is read off the word
 * itself, since value lists are disjoint; the key words on the line are not checked.
 */
export const selfEditQuality = (world: Pick<World, "attributes">, person: Person, text: string): SelfEditQuality => {
  const facts = new Map(person.facts.map((f) => [f.attribute, f.value]))
  // Every value word of the world, to its attribute (the value lists are disjoint).
  const valueAttribute = new Map(world.attributes.flatMap((a) => a.values.map((v) => [v, a.name] as const)))
  const right = new Set<AttributeName>()
  const wrong = new Set<AttributeName>()
  let lines = 0
  let correctStatements = 0
  let wrongStatements = 0
  let unboundLines = 0
  for (const line of text.split("\n")) {
    const words = line.split(/\s+/).filter((w) => w.length > 0)
    if (words.length === 0) continue
    lines++
    const named = words.some((w, i) => w === person.first && words[i + 1] === person.last)
    const values = words.flatMap((w) => {
      const attribute = valueAttribute.get(w)
      return attribute === undefined || !facts.has(attribute) ? [] : [[attribute, w] as const]
    })
    if (values.length === 0) continue
    if (!named) {
      unboundLines++
      continue
    }
    for (const [attribute, value] of values) {
      if (facts.get(attribute) === value) {
        right.add(attribute)
        correctStatements++
      } else {
        wrong.add(attribute)
        wrongStatements++
      }
    }
  }
  const n = Math.max(1, person.facts.length)
  return { lines, correct: right.size / n, incorrect: wrong.size / n, correctStatements, wrongStatements, unboundLines }
}

/** The mean of several qualities (e.g. over a split's self-edits). */
export const meanQuality = (qualities: ReadonlyArray<SelfEditQuality>): SelfEditQuality => {
  const n = Math.max(1, qualities.length)
  const mean = (f: (q: SelfEditQuality) => number) => qualities.reduce((acc, q) => acc + f(q), 0) / n
  return {
    lines: mean((q) => q.lines),
    correct: mean((q) => q.correct),
    incorrect: mean((q) => q.incorrect),
    correctStatements: mean((q) => q.correctStatements),
    wrongStatements: mean((q) => q.wrongStatements),
    unboundLines: mean((q) => q.unboundLines)
  }
}
