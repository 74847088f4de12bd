/**
 * A seeded synthetic knowledge world for proving the SEAL loop with a model trained from scratch:
 * people with one-word attributes (city, birth year, employer, hobby, favourite colour), a passage
 * about each, one closed-book question per attribute, and splits by person:
 *
 * - `pretrain`: the only people the pretraining corpus mentions;
 * - `rl`: contexts for the outer loop (self-edit sampling and rewards);
 * - `heldOut`: evaluation only.
 *
 * RL and held-out people never appear in the corpus, and the corpus's "fresh" people (made up per
 * document to teach copying) are drawn from names no split uses.
 *
 * The world also fixes the prompt templates (a compact version of SEAL's, since every token costs
 * time on a CPU) and the vocabulary of the word-level tokenizer: every word it can produce is one
 * token, so every answer is one token.
 */
import { deriveSeed, makeRng } from "@seal/gpu/model/Sampling"
import { makeWordLevelTokenizer, type WordLevelTokenizer } from "@seal/gpu/tokenizer/WordLevel"
import { Data, Either, ParseResult, Schema } from "effect"
import {
  attributeLexicon,
  type AttributeName,
  attributeNames,
  femaleFirstNames,
  type Gender,
  lastNames,
  maleFirstNames,
  pronouns,
  traits
} from "./Lexicon.js"
import { fillTemplate, PassageConfig, passageTemplateWords, renderPassage, templateWords } from "./Passages.js"
import { pick, type Rng, shuffled } from "./Random.js"
import { selfEditTemplateWords } from "./SelfEdits.js"

/** A template string that must contain each of `placeholders`. */
const Template = (defaultValue: string, placeholders: ReadonlyArray<string>) =>
  Schema.optionalWith(
    Schema.String.pipe(Schema.filter((t) => {
      const missing = placeholders.filter((p) => !t.includes(`{${p}}`))
      return missing.length === 0 || `must contain ${missing.map((p) => `{${p}}`).join(", ")}`
    })),
    { default: () => defaultValue }
  )

/**
 * The prompts of the world, compact versions of SEAL's (implications prompt, closed-book question
 * prompt, "{title}\n{line}" training sequences). Prompts end in a newline so that the completion
 * is always a separate word, whatever tokenizes the joint text.
 */
export const WorldPrompts = Schema.Struct({
  /** SEAL: "Let's read the following passage and produce a list of implications ...". */
  selfEdit: Template("passage:\n{title}\n{context}\nimplications:\n", ["title", "context"]),
  /** SEAL: "Let's answer a question directly and concisely.\nQuestion: Topic: {title}\n{question}\nAnswer:\n". */
  question: Template("question: {question}\nanswer:\n", ["question"]),
  /** Open-book question (the copy-first warm-up): the passage, then the closed-book question prompt. */
  openBookQuestion: Template("passage:\n{title}\n{context}\nquestion: {question}\nanswer:\n", [
    "context",
    "question"
  ]),
  /** One inner-loop training sequence; SEAL's is "{title}\n{line}". */
  trainingSequence: Template("{title}\n{text}", ["text"])
}).annotations({ identifier: "WorldPrompts" })
export type WorldPrompts = typeof WorldPrompts.Type

const valueCount = (attribute: AttributeName, byDefault: number) =>
  Schema.optionalWith(
    Schema.Int.pipe(Schema.between(2, attributeLexicon[attribute].values.length)),
    { default: () => byDefault }
  )

export const ValueCounts = Schema.Struct({
  city: valueCount("city", 20),
  year: valueCount("year", 30),
  employer: valueCount("employer", 20),
  hobby: valueCount("hobby", 15),
  colour: valueCount("colour", 10)
})
export type ValueCounts = typeof ValueCounts.Type

const PositiveInt = Schema.Int.pipe(Schema.positive())

export const WorldConfig = Schema.Struct({
  /** Which attributes people have, in the world's canonical order. */
  attributes: Schema.optionalWith(
    Schema.Array(Schema.Literal(...attributeNames)).pipe(
      Schema.minItems(1),
      Schema.filter((as) => new Set(as).size === as.length || "attributes must not repeat")
    ),
    { default: () => [...attributeNames] }
  ),
  /** How many values of each attribute's list are used (a prefix of the lexicon's list). */
  values: Schema.optionalWith(ValueCounts, { default: () => Schema.decodeSync(ValueCounts)({}) }),
  /** First names per gender (of 20) and last names (of 40): names are all first x last pairs. */
  firstNamesPerGender: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, femaleFirstNames.length)), {
    default: () => 20
  }),
  lastNames: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, lastNames.length)), { default: () => 40 }),
  pretrainEntities: Schema.optionalWith(PositiveInt, { default: () => 300 }),
  rlEntities: Schema.optionalWith(PositiveInt, { default: () => 150 }),
  heldOutEntities: Schema.optionalWith(PositiveInt, { default: () => 50 }),
  /** Names kept out of every split, for the corpus's made-up people; at least this many. */
  minFreshNames: Schema.optionalWith(PositiveInt, { default: () => 200 }),
  passage: Schema.optionalWith(PassageConfig, { default: () => Schema.decodeSync(PassageConfig)({}) }),
  prompts: Schema.optionalWith(WorldPrompts, { default: () => Schema.decodeSync(WorldPrompts)({}) })
}).pipe(
  Schema.filter((c) => {
    const names = 2 * c.firstNamesPerGender * c.lastNames
    const used = c.pretrainEntities + c.rlEntities + c.heldOutEntities
    return names - used >= c.minFreshNames ||
      `${names} names cannot hold ${used} people and ${c.minFreshNames} fresh names; add names or shrink the splits`
  })
).annotations({ identifier: "WorldConfig" })
export type WorldConfig = typeof WorldConfig.Type
export type WorldConfigEncoded = typeof WorldConfig.Encoded

/** A world config that does not decode; `field` is the path of the first problem. */
export class WorldError extends Data.TaggedError("WorldError")<{
  readonly reason: "InvalidConfig"
  readonly field: string
  readonly detail: string
}> {
  override get message(): string {
    return `world config${this.field === "" ? "" : ` (${this.field})`}: ${this.detail}`
  }
}

export const decodeWorldConfig = (input: unknown): Either.Either<WorldConfig, WorldError> =>
  Schema.decodeUnknownEither(WorldConfig)(input).pipe(
    Either.mapLeft((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      return new WorldError({
        reason: "InvalidConfig",
        field: issue === undefined ? "" : issue.path.map(String).join("."),
        detail: issue?.message ?? error.message
      })
    })
  )

/** All defaults: 300 / 150 / 50 people, five attributes, shuffled passages. */
export const defaultWorldConfig: WorldConfig = Schema.decodeSync(WorldConfig)({})

export interface WorldAttribute {
  readonly name: AttributeName
  /** The words naming it in questions, keyed sentences and restatements ("birth year"). */
  readonly key: string
  /** The noun of "paris is a city". */
  readonly kind: string
  /** The values this world uses. */
  readonly values: ReadonlyArray<string>
}

export interface Fact {
  readonly attribute: AttributeName
  readonly value: string
}

export interface PersonName {
  readonly first: string
  readonly last: string
  readonly gender: Gender
}

export interface Person extends PersonName {
  /** "first last", the title of the person's context. */
  readonly name: string
  /** One per world attribute, in the world's attribute order. */
  readonly facts: ReadonlyArray<Fact>
}

export type Split = "pretrain" | "rl" | "heldOut"
export const splits: ReadonlyArray<Split> = ["pretrain", "rl", "heldOut"]

export interface Entity extends Person {
  readonly split: Split
  /** The canonical rendering of the passage: the context RL and evaluation use. */
  readonly passage: string
}

export interface World {
  readonly config: WorldConfig
  readonly seed: number
  readonly attributes: ReadonlyArray<WorldAttribute>
  readonly entities: { readonly [S in Split]: ReadonlyArray<Entity> }
  /** Names in no split: the pool of the corpus's made-up people. */
  readonly freshNames: ReadonlyArray<PersonName>
}

/** The world's attribute table for `config`. */
export const worldAttributes = (config: WorldConfig): Array<WorldAttribute> =>
  config.attributes.map((name) => ({
    name,
    key: attributeLexicon[name].key,
    kind: attributeLexicon[name].kind,
    values: attributeLexicon[name].values.slice(0, config.values[name])
  }))

/** Every name `config` allows, in a fixed order. */
export const allNames = (config: WorldConfig): Array<PersonName> => {
  const names: Array<PersonName> = []
  for (const [gender, firsts] of [["female", femaleFirstNames], ["male", maleFirstNames]] as const) {
    for (const first of firsts.slice(0, config.firstNamesPerGender)) {
      for (const last of lastNames.slice(0, config.lastNames)) names.push({ first, last, gender })
    }
  }
  return names
}

export const fullName = (name: Pick<PersonName, "first" | "last">): string => `${name.first} ${name.last}`

/** A person with `name` and uniformly drawn attribute values. */
export const drawPerson = (attributes: ReadonlyArray<WorldAttribute>, name: PersonName, rng: Rng): Person => ({
  ...name,
  name: fullName(name),
  facts: attributes.map((a) => ({ attribute: a.name, value: pick(rng, a.values) }))
})

/** Looks up an attribute's key words in a world's table. */
export const attributeKey = (attributes: ReadonlyArray<WorldAttribute>) => (name: AttributeName): string =>
  attributes.find((a) => a.name === name)?.key ?? attributeLexicon[name].key

/**
 * Generates the world for a decoded `config`: names are shuffled and dealt to the splits in
 * order (pretraining, RL, held-out), attribute values are uniform and independent, and each
 * person gets one canonical passage. Independent streams derived from `seed` drive the three, so
 * changing the passage options does not change who is in which split.
 */
export const generateWorld = (config: WorldConfig, seed: number): World => {
  const attributes = worldAttributes(config)
  const names = shuffled(makeRng(deriveSeed(seed, 0)), allNames(config))
  const factRng = makeRng(deriveSeed(seed, 1))
  const passageRng = makeRng(deriveSeed(seed, 2))
  const keys = attributeKey(attributes)
  const sizes: { readonly [S in Split]: number } = {
    pretrain: config.pretrainEntities,
    rl: config.rlEntities,
    heldOut: config.heldOutEntities
  }
  let next = 0
  const entities = {} as { [S in Split]: ReadonlyArray<Entity> }
  for (const split of splits) {
    entities[split] = names.slice(next, next + sizes[split]).map((name) => {
      const person = drawPerson(attributes, name, factRng)
      return { ...person, split, passage: renderPassage(person, keys, config.passage, passageRng) }
    })
    next += sizes[split]
  }
  return { config, seed, attributes, entities, freshNames: names.slice(next) }
}

/** The closed-book question about one attribute. */
export const questionForm = "what is {n} 's {key} ?"

/** One closed-book question: "what is ana smith 's hobby ?". */
export const questionText = (person: Pick<Person, "name">, key: string): string =>
  fillTemplate(questionForm, { n: person.name, key })

export interface KnowledgeQuestion {
  readonly question: string
  readonly answer: string
}

/** SEAL's context record (the shape of a SQuAD passage with its questions). */
export interface KnowledgeContext {
  readonly title: string
  readonly context: string
  readonly questions: ReadonlyArray<KnowledgeQuestion>
}

/** The questions about `person`, one per attribute, each answered by one word. */
export const questions = (world: Pick<World, "attributes">, person: Person): Array<KnowledgeQuestion> => {
  const keys = attributeKey(world.attributes)
  return person.facts.map((fact) => ({ question: questionText(person, keys(fact.attribute)), answer: fact.value }))
}

/** `entity` as a SEAL context, so that the task code treats SQuAD and the world alike. */
export const toKnowledgeContext = (world: Pick<World, "attributes">, entity: Entity): KnowledgeContext => ({
  title: entity.name,
  context: entity.passage,
  questions: questions(world, entity)
})

/** The contexts of one split. */
export const knowledgeContexts = (world: World, split: Split): Array<KnowledgeContext> =>
  world.entities[split].map((e) => toKnowledgeContext(world, e))

/** The self-edit prompt for a context. */
export const selfEditPrompt = (prompts: WorldPrompts, context: { readonly title: string; readonly context: string }) =>
  fillTemplate(prompts.selfEdit, { title: context.title, context: context.context })

/** The closed-book question prompt; the answer is the completion that follows. */
export const questionPrompt = (prompts: WorldPrompts, title: string, question: string): string =>
  fillTemplate(prompts.question, { title, question })

/** The open-book question prompt (passage, then question). */
export const openBookQuestionPrompt = (
  prompts: WorldPrompts,
  context: { readonly title: string; readonly context: string },
  question: string
): string => fillTemplate(prompts.openBookQuestion, { title: context.title, context: context.context, question })

/** One inner-loop training sequence (SEAL's "{title}\n{line}"). */
export const trainingSequence = (prompts: WorldPrompts, title: string, text: string): string =>
  fillTemplate(prompts.trainingSequence, { title, text })

/**
 * The inner loop's training sequences for a self-edit, as SEAL builds them: one per non-empty
 * line, then the passage.
 */
export const trainingSequences = (
  prompts: WorldPrompts,
  context: { readonly title: string; readonly context: string },
  selfEdit: string,
  options: { readonly includePassage?: boolean } = {}
): Array<string> => [
  ...selfEdit.split("\n").map((l) => l.trim()).filter((l) => l.length > 0).map((l) =>
    trainingSequence(prompts, context.title, l)
  ),
  ...(options.includePassage === false ? [] : [trainingSequence(prompts, context.title, context.context)])
]

/** The special tokens of the world's tokenizer, ids 0-3; the newline token is id 4. */
export const specialTokens = { pad: "<pad>", bos: "<bos>", eos: "<eos>", unk: "<unk>" } as const

/**
 * The world's vocabulary, in id order: specials, newline, template words (prompts, passages,
 * self-edit lines, attribute keys and kinds), pronouns and traits, then names and values. It
 * depends on the config only, never on the seed, so one tokenizer serves every world of a config.
 */
export const worldVocabulary = (config: WorldConfig): Array<string> => {
  const attributes = worldAttributes(config)
  const names = allNames(config)
  const words = [
    specialTokens.pad,
    specialTokens.bos,
    specialTokens.eos,
    specialTokens.unk,
    "\n",
    ...templateWords([...Object.values(config.prompts).map((t) => t.replace(/\n/g, " ")), questionForm]),
    ...passageTemplateWords,
    ...selfEditTemplateWords,
    ...attributes.flatMap((a) => [...a.key.split(" "), a.kind]),
    ...(["female", "male"] as const).flatMap((g) => Object.values(pronouns[g])),
    ...traits,
    ...names.map((n) => n.first),
    ...names.map((n) => n.last),
    ...attributes.flatMap((a) => a.values)
  ]
  return [...new Set(words)]
}

/** The word-level tokenizer of `config`'s worlds (BOS added by default, as training expects). */
export const worldTokenizer = (config: WorldConfig): WordLevelTokenizer =>
  Either.getOrThrowWith(
    makeWordLevelTokenizer(worldVocabulary(config), specialTokens),
    (error) => new Error(`the world's vocabulary is malformed: ${error.message}`)
  )

/** Every person of the world by name. */
export const entityByName = (world: World): ReadonlyMap<string, Entity> =>
  new Map(splits.flatMap((s) => world.entities[s].map((e) => [e.name, e] as const)))
