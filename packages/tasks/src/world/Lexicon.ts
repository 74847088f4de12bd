/**
 * The words of the synthetic knowledge world: names, attribute values and the few nouns and
 * pronouns the templates use. Everything is lower case and one word, so that the word-level
 * tokenizer gives every name part and every attribute value exactly one token. The lists are
 * pairwise disjoint (tested): a value word identifies its attribute, which is what lets
 * `selfEditQuality` score a line without parsing it.
 */

/** The attributes a person can have, in the canonical ("fixed") passage order. */
export const attributeNames = ["city", "year", "employer", "hobby", "colour"] as const
export type AttributeName = typeof attributeNames[number]

export interface AttributeLexicon {
  /** The words that name the attribute in questions, keyed sentences and restatements. */
  readonly key: string
  /** The noun used by "X is a <kind>" lines (irrelevant self-edit lines). */
  readonly kind: string
  /** Every value the attribute can take; a world uses a prefix of it. */
  readonly values: ReadonlyArray<string>
}

const years = Array.from({ length: 30 }, (_, i) => String(1961 + i))

export const attributeLexicon: { readonly [A in AttributeName]: AttributeLexicon } = {
  city: {
    key: "city",
    kind: "city",
    values: [
      "paris",
      "london",
      "tokyo",
      "berlin",
      "madrid",
      "rome",
      "vienna",
      "oslo",
      "lisbon",
      "dublin",
      "prague",
      "cairo",
      "lima",
      "quito",
      "delhi",
      "seoul",
      "sydney",
      "toronto",
      "boston",
      "denver"
    ]
  },
  year: { key: "birth year", kind: "year", values: years },
  employer: {
    key: "employer",
    kind: "company",
    values: [
      "acme",
      "globex",
      "initech",
      "zorbit",
      "veltra",
      "norvex",
      "quantek",
      "lumina",
      "brightcorp",
      "haldane",
      "orbis",
      "kestrel",
      "tundra",
      "solace",
      "meridian",
      "nimbus",
      "vertex",
      "halcyon",
      "zenith",
      "polaris"
    ]
  },
  hobby: {
    key: "hobby",
    kind: "hobby",
    values: [
      "rowing",
      "chess",
      "painting",
      "hiking",
      "fishing",
      "knitting",
      "surfing",
      "gardening",
      "cycling",
      "baking",
      "climbing",
      "dancing",
      "singing",
      "archery",
      "juggling"
    ]
  },
  colour: {
    key: "favourite colour",
    kind: "colour",
    values: ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "grey"]
  }
}

export const femaleFirstNames: ReadonlyArray<string> = [
  "ana",
  "maria",
  "lucia",
  "emma",
  "sofia",
  "clara",
  "nina",
  "julia",
  "elena",
  "ida",
  "rosa",
  "vera",
  "lena",
  "mia",
  "zoe",
  "alice",
  "hanna",
  "eva",
  "lily",
  "ruth"
]

export const maleFirstNames: ReadonlyArray<string> = [
  "omar",
  "paul",
  "ivan",
  "leo",
  "hugo",
  "marco",
  "tom",
  "victor",
  "felix",
  "sam",
  "noah",
  "jonas",
  "adam",
  "peter",
  "oscar",
  "max",
  "liam",
  "emil",
  "hans",
  "raul"
]

export const lastNames: ReadonlyArray<string> = [
  "smith",
  "jones",
  "garcia",
  "novak",
  "silva",
  "kim",
  "rossi",
  "muller",
  "berg",
  "costa",
  "weber",
  "lopez",
  "dubois",
  "moreau",
  "kowalski",
  "ivanov",
  "sato",
  "tanaka",
  "chen",
  "wang",
  "nguyen",
  "patel",
  "khan",
  "haddad",
  "cohen",
  "fischer",
  "wagner",
  "larsen",
  "nilsen",
  "hansen",
  "horvat",
  "popescu",
  "petrov",
  "jensen",
  "santos",
  "reyes",
  "ortiz",
  "castro",
  "vargas",
  "meyer"
]

export type Gender = "female" | "male"

/** Pronouns by gender: subject, possessive, object, and the noun of "X is a <noun>". */
export const pronouns: {
  readonly [G in Gender]: { readonly s: string; readonly p: string; readonly o: string; readonly noun: string }
} = {
  female: { s: "she", p: "her", o: "her", noun: "woman" },
  male: { s: "he", p: "his", o: "him", noun: "man" }
}

/** Adjectives of filler sentences ("she is calm ."): words no question asks about. */
export const traits: ReadonlyArray<string> = ["kind", "tall", "quiet", "funny", "busy", "calm", "shy", "clever"]
