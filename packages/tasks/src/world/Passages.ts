/**
 * Passages about a person: an introduction that names them, then one sentence per attribute with
 * a pronoun as subject, each in one of several surface forms, in shuffled (or fixed) order.
 *
 * Why the shape: with pronouns and a shuffled order, nothing in the passage puts the name next to
 * a value, so training on the passage alone binds name and value weakly; restatements ("ana
 * smith 's hobby is rowing") bind them directly, which is the headroom self-edits can win
 * (FEASIBILITY: 38% passage-only against 80% with oracle restatements). The keyed form ("her
 * hobby is rowing") uses the same attribute words as the question and the restatement, so writing
 * a restatement from it is plain copying: after "hobby is", copy the word that followed "hobby is"
 * in the passage.
 *
 * Templates are words separated by single spaces; `{s}`, `{p}`, `{o}` are the subject, possessive
 * and object pronouns (or the name and "name 's"), `{v}` the value, `{key}` the attribute's key
 * words, `{n}` the name, `{noun}` "woman"/"man", `{trait}` a filler adjective.
 */
import { Schema } from "effect"
import { type AttributeName, attributeNames, type Gender, pronouns, traits } from "./Lexicon.js"
import { pick, type Rng, shuffled } from "./Random.js"

const Probability = Schema.Number.pipe(Schema.between(0, 1))

export const PassageConfig = Schema.Struct({
  /** `shuffled`: attribute sentences in random order (what makes passage-only training weak). */
  order: Schema.optionalWith(Schema.Literal("shuffled", "fixed"), { default: () => "shuffled" as const }),
  /** Probability that an attribute sentence takes the keyed form "her hobby is rowing ." */
  keyedRate: Schema.optionalWith(Probability, { default: () => 0.5 }),
  /** Probability that a sentence names the person instead of using a pronoun. */
  nameRepeatRate: Schema.optionalWith(Probability, { default: () => 0 }),
  /** Probability of one filler sentence ("she is calm .") at a random place after the introduction. */
  fillerRate: Schema.optionalWith(Probability, { default: () => 0.3 })
}).annotations({ identifier: "PassageConfig" })
export type PassageConfig = typeof PassageConfig.Type

/** What a passage needs to know about a person. */
export interface PassagePerson {
  readonly name: string
  readonly gender: Gender
  readonly facts: ReadonlyArray<{ readonly attribute: AttributeName; readonly value: string }>
}

/** The keyed form: the attribute's key words, as in the question and the restatement. */
export const keyedForm = "{p} {key} is {v} ."

/** Sentence forms per attribute; the keyed form is added to each. */
export const attributeForms: { readonly [A in AttributeName]: ReadonlyArray<string> } = {
  city: ["{s} lives in {v} .", "{s} moved to {v} .", "{v} is where {s} lives .", "{s} calls {v} home ."],
  year: ["{s} was born in {v} .", "{v} is the year {s} was born .", "{s} was born back in {v} ."],
  employer: ["{s} works at {v} .", "{s} is employed by {v} .", "{v} employs {o} .", "{s} has a job at {v} ."],
  hobby: ["{s} enjoys {v} .", "{s} spends weekends on {v} .", "for fun {s} does {v} .", "{s} is into {v} ."],
  colour: ["{s} likes {v} best .", "{v} is {p} favourite colour .", "{s} loves the colour {v} ."]
}

export const introForms: ReadonlyArray<string> = [
  "{n} is a {noun} .",
  "this is about {n} .",
  "meet {n} .",
  "here is what we know about {n} ."
]

export const fillerForms: ReadonlyArray<string> = ["{s} is {trait} .", "people say {s} is {trait} ."]

/** Fills `{name}` placeholders from `fields`; unknown placeholders are left as they are. */
export const fillTemplate = (template: string, fields: Readonly<Record<string, string>>): string =>
  template.replace(/\{(\w+)\}/g, (whole, name: string) => fields[name] ?? whole)

/** The words of `templates` other than placeholders, in order of first appearance. */
export const templateWords = (templates: ReadonlyArray<string>): Array<string> => {
  const seen = new Set<string>()
  for (const template of templates) {
    for (const word of template.split(/\s+/)) {
      if (word.length > 0 && !/^\{\w+\}$/.test(word)) seen.add(word)
    }
  }
  return [...seen]
}

/** Every word passages can contain besides names, values, attribute keys and traits. */
export const passageTemplateWords: ReadonlyArray<string> = templateWords([
  keyedForm,
  ...attributeNames.flatMap((a) => attributeForms[a]),
  ...introForms,
  ...fillerForms,
  "'s"
])

/** How the subject, possessive and object slots read for `person`: pronouns, or the name. */
export const references = (
  person: Pick<PassagePerson, "name" | "gender">,
  useName: boolean
): { readonly s: string; readonly p: string; readonly o: string } =>
  useName ? { s: person.name, p: `${person.name} 's`, o: person.name } : pronouns[person.gender]

/** One attribute sentence in form `form` (a template). */
export const attributeSentence = (
  person: PassagePerson,
  fact: { readonly attribute: AttributeName; readonly value: string },
  key: string,
  form: string,
  useName: boolean
): string => fillTemplate(form, { ...references(person, useName), v: fact.value, key })

export interface PassageSentence {
  readonly text: string
  /** The attribute the sentence states; absent for the introduction and filler. */
  readonly attribute?: AttributeName
  readonly keyed: boolean
}

/**
 * The sentences of one rendering of `person`'s passage. `keys` gives each attribute's key words
 * (the world's attribute table).
 */
export const passageSentences = (
  person: PassagePerson,
  keys: (attribute: AttributeName) => string,
  config: PassageConfig,
  rng: Rng
): Array<PassageSentence> => {
  const intro = fillTemplate(pick(rng, introForms), { n: person.name, noun: pronouns[person.gender].noun })
  const facts = config.order === "shuffled" ? shuffled(rng, person.facts) : person.facts
  const body: Array<PassageSentence> = facts.map((fact) => {
    const keyed = rng() < config.keyedRate
    const form = keyed ? keyedForm : pick(rng, attributeForms[fact.attribute])
    const useName = rng() < config.nameRepeatRate
    return {
      text: attributeSentence(person, fact, keys(fact.attribute), form, useName),
      attribute: fact.attribute,
      keyed
    }
  })
  if (rng() < config.fillerRate) {
    const filler = fillTemplate(pick(rng, fillerForms), { ...references(person, false), trait: pick(rng, traits) })
    body.splice(Math.floor(rng() * (body.length + 1)), 0, { text: filler, keyed: false })
  }
  return [{ text: intro, keyed: false }, ...body]
}

/** One rendering of `person`'s passage: its sentences joined by spaces. */
export const renderPassage = (
  person: PassagePerson,
  keys: (attribute: AttributeName) => string,
  config: PassageConfig,
  rng: Rng
): string => passageSentences(person, keys, config, rng).map((s) => s.text).join(" ")
