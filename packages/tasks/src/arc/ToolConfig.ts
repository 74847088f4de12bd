/**
 * SEAL's few-shot ARC self-edit: a JSON tool config that picks the data augmentations and the
 * test-time training hyperparameters for one task.
 *
 *     { "data_generation": { "use_basic_augmentations": true, "use_size_augmentations": false,
 *                            "use_chain_augmentations": false, "use_repeat_augmentations": true },
 *       "training": { "strategy": "train_using_output_tokens", "learning_rate": 1e-4,
 *                     "num_train_epochs": 3 } }
 *
 * The reference resamples until the model's text parses. Here the model writes the config in the
 * word tokens of `ArcVocabulary` under a grammar (`toolConfigGrammar`), enforced while decoding by
 * `toolConfigMask`, so every sample is a valid config. The grammar fixes the key order and lets
 * the model choose only the values: the four booleans, the strategy, a learning rate among
 * `toolConfigLearningRates` and an epoch count among `toolConfigEpochs`, 1600 configs in all.
 *
 * `parseToolConfig` reads any text (an unconstrained model, a user's file): JSON with arbitrary
 * whitespace, checked against the `ToolConfig` schema.
 */
import type { LogitMask } from "@seal/gpu/model/Generate"
import type { Tokenizer } from "@seal/gpu/tokenizer/Tokenizer"
import { Data, Either, ParseResult, Schema } from "effect"

export const ToolConfigStrategy = Schema.Literal("train_using_all_tokens", "train_using_output_tokens")
export type ToolConfigStrategy = typeof ToolConfigStrategy.Type

export const ToolConfig = Schema.Struct({
  data_generation: Schema.Struct({
    use_basic_augmentations: Schema.Boolean,
    use_size_augmentations: Schema.Boolean,
    use_chain_augmentations: Schema.Boolean,
    use_repeat_augmentations: Schema.Boolean
  }),
  training: Schema.Struct({
    strategy: ToolConfigStrategy,
    learning_rate: Schema.Number.pipe(Schema.finite(), Schema.positive()),
    num_train_epochs: Schema.Number.pipe(Schema.int(), Schema.greaterThanOrEqualTo(1))
  })
}).annotations({ identifier: "ToolConfig" })
export type ToolConfig = typeof ToolConfig.Type

/**
 * A tool config text that is not a valid config. InvalidJson: the text does not parse (no
 * `field`); Malformed: it parses but `field` (a path such as `training.learning_rate`) is
 * missing, unknown or out of range.
 */
export class ToolConfigError extends Data.TaggedError("ToolConfigError")<{
  readonly reason: "InvalidJson" | "Malformed"
  readonly field?: string | undefined
  readonly detail: string
}> {
  override get message(): string {
    return this.field === undefined || this.field === ""
      ? `tool config: ${this.detail}`
      : `tool config (${this.field}): ${this.detail}`
  }
}

// Schema prints the offending value in full; a whole config in an error line helps nobody.
const maxDetailLength = 200

const clip = (text: string): string => text.length <= maxDetailLength ? text : `${text.slice(0, maxDetailLength)}…`

const decodeConfig = Schema.decodeUnknownEither(ToolConfig, { onExcessProperty: "error" })

/**
 * Parses a tool config from any text: `JSON.parse` (so any JSON whitespace), then the schema.
 * Unknown keys are errors (a misspelt key would otherwise be silently dropped); `learning_rate`
 * must be finite and > 0, `num_train_epochs` an integer >= 1. The error names the first field at
 * fault.
 */
export const parseToolConfig = (text: string): Either.Either<ToolConfig, ToolConfigError> =>
  Either.try({
    try: () => JSON.parse(text) as unknown,
    catch: (e) =>
      new ToolConfigError({ reason: "InvalidJson", detail: clip(e instanceof Error ? e.message : String(e)) })
  }).pipe(
    Either.flatMap((json) =>
      decodeConfig(json).pipe(
        Either.mapLeft((error) => {
          const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
          const field = issue === undefined || issue.path.length === 0 ? undefined : issue.path.map(String).join(".")
          return new ToolConfigError({ reason: "Malformed", field, detail: clip(issue?.message ?? error.message) })
        })
      )
    )
  )

// ---------------------------------------------------------------------------------------------
// The grammar

/**
 * A config of the shape fixed searches use (arc-demo's oracle, the probes): the basic family or
 * no augmentation, output-token loss, the given learning rate and epochs.
 */
export const outputTokenConfig = (basic: boolean, learningRate: number, epochs: number): ToolConfig => ({
  data_generation: {
    use_basic_augmentations: basic,
    use_size_augmentations: false,
    use_chain_augmentations: false,
    use_repeat_augmentations: false
  },
  training: { strategy: "train_using_output_tokens", learning_rate: learningRate, num_train_epochs: epochs }
})

/** The learning rates the ARC vocabulary can write, as the tokens `1e-4` ... `1e-2`. */
export const toolConfigLearningRates: ReadonlyArray<number> = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]

/** The epoch counts the ARC vocabulary can write: the digit tokens `1`..`9` and the token `10`. */
export const toolConfigEpochs: ReadonlyArray<number> = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]

export const toolConfigStrategies: ReadonlyArray<ToolConfigStrategy> = ToolConfigStrategy.literals

type Section = "data_generation" | "training"

/** One token of the grammar: forced (`Fixed`) or chosen by the model among `tokens` (`Choice`). */
export type ToolConfigSlot =
  | { readonly _tag: "Fixed"; readonly token: string }
  | {
    readonly _tag: "Choice"
    readonly section: Section
    readonly key: string
    /** `section.key`, as `ToolConfigError.field` names it. */
    readonly field: string
    /** The tokens the model may write here, in enumeration order. */
    readonly tokens: ReadonlyArray<string>
  }

const booleanTokens = ["true", "false"]

/** The sections and keys in the order the grammar writes them, with each value's tokens. */
const layout: ReadonlyArray<readonly [Section, ReadonlyArray<readonly [string, ReadonlyArray<string>]>]> = [
  ["data_generation", [
    ["use_basic_augmentations", booleanTokens],
    ["use_size_augmentations", booleanTokens],
    ["use_chain_augmentations", booleanTokens],
    ["use_repeat_augmentations", booleanTokens]
  ]],
  ["training", [
    ["strategy", toolConfigStrategies.map((s) => JSON.stringify(s))],
    ["learning_rate", ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2"]],
    ["num_train_epochs", toolConfigEpochs.map(String)]
  ]]
]

const fixed = (token: string): ToolConfigSlot => ({ _tag: "Fixed", token })

/**
 * The tool config as the sequence of tokens the model writes, one slot per token:
 * `{ "data_generation" : { "use_basic_augmentations" : <bool> , ... } , "training" : { ... } }`.
 * After the last slot only EOS may follow.
 */
export const toolConfigGrammar: ReadonlyArray<ToolConfigSlot> = [
  fixed("{"),
  ...layout.flatMap(([section, entries], i) => [
    ...(i > 0 ? [fixed(",")] : []),
    fixed(JSON.stringify(section)),
    fixed(":"),
    fixed("{"),
    ...entries.flatMap(([key, tokens], j): Array<ToolConfigSlot> => [
      ...(j > 0 ? [fixed(",")] : []),
      fixed(JSON.stringify(key)),
      fixed(":"),
      { _tag: "Choice", section, key, field: `${section}.${key}`, tokens }
    ]),
    fixed("}")
  ]),
  fixed("}")
]

/** The number of tokens of every grammar config (EOS not counted): `maxTokens` must exceed it. */
export const toolConfigLength = toolConfigGrammar.length

const choiceSlots = toolConfigGrammar.filter((s): s is Extract<ToolConfigSlot, { _tag: "Choice" }> =>
  s._tag === "Choice"
)

/** Every choice token is a JSON literal (`true`, `"train_using_all_tokens"`, `3e-4`, `7`). */
const tokenValue = (token: string): unknown => JSON.parse(token)

const fieldValue = (config: ToolConfig, section: Section, key: string): unknown =>
  (config[section] as Record<string, unknown>)[key]

const choiceToken = (config: ToolConfig, slot: Extract<ToolConfigSlot, { _tag: "Choice" }>): string | undefined => {
  const value = fieldValue(config, slot.section, slot.key)
  return slot.tokens.find((t) => tokenValue(t) === value)
}

/** Whether every value of `config` can be written in the grammar (and so has `toolConfigText`). */
export const inToolConfigGrammar = (config: ToolConfig): boolean =>
  choiceSlots.every((slot) => choiceToken(config, slot) !== undefined)

/**
 * The canonical text of `config`: the grammar's tokens joined by single spaces, exactly what the
 * ARC tokenizer decodes a constrained sample to. Throws when a value is outside the grammar (a
 * learning rate other than `toolConfigLearningRates`, epochs outside 1..10); check with
 * `inToolConfigGrammar` first for configs that did not come from the grammar.
 */
export const toolConfigText = (config: ToolConfig): string =>
  toolConfigGrammar.map((slot) => {
    if (slot._tag === "Fixed") return slot.token
    const token = choiceToken(config, slot)
    if (token === undefined) {
      throw new Error(
        `toolConfigText: ${slot.field} = ${JSON.stringify(fieldValue(config, slot.section, slot.key))} is not one of ${
          slot.tokens.join(", ")
        }`
      )
    }
    return token
  }).join(" ")

/** A stable key for a config (for counting and deduplicating), e.g. `basic+repeat|output_tokens|lr=0.0001|epochs=3`. */
export const toolConfigKey = (config: ToolConfig): string => {
  const d = config.data_generation
  const augmentations = [
    d.use_basic_augmentations ? "basic" : undefined,
    d.use_size_augmentations ? "size" : undefined,
    d.use_chain_augmentations ? "chain" : undefined,
    d.use_repeat_augmentations ? "repeat" : undefined
  ].filter((a) => a !== undefined)
  const t = config.training
  return [
    augmentations.length === 0 ? "none" : augmentations.join("+"),
    t.strategy.replace(/^train_using_/, ""),
    `lr=${t.learning_rate}`,
    `epochs=${t.num_train_epochs}`
  ].join("|")
}

/**
 * Every config the grammar can produce (2^4 × 2 × 5 × 10 = 1600), the first choice slot
 * varying slowest, each slot's choices in the grammar's order.
 */
export const allToolConfigs = (): ReadonlyArray<ToolConfig> => {
  let combos: Array<ReadonlyArray<unknown>> = [[]]
  for (const slot of choiceSlots) {
    combos = combos.flatMap((prefix) => slot.tokens.map((t) => [...prefix, tokenValue(t)]))
  }
  return combos.map((values) => {
    const sections: Record<Section, Record<string, unknown>> = { data_generation: {}, training: {} }
    choiceSlots.forEach((slot, i) => {
      sections[slot.section][slot.key] = values[i]
    })
    return sections as unknown as ToolConfig
  })
}

// ---------------------------------------------------------------------------------------------
// Constrained decoding

/** The id of `word` when it is exactly one token of `tokenizer`. */
const singleTokenId = (tokenizer: Tokenizer, word: string): number => {
  const ids = tokenizer.encode(word, { addBos: false })
  if (ids.length !== 1 || tokenizer.decode(ids) !== word) {
    throw new Error(`toolConfigMask: ${JSON.stringify(word)} is not a single token of this tokenizer`)
  }
  return ids[0]!
}

/**
 * A logit mask that keeps generation inside `toolConfigGrammar`: given the ids a row has
 * generated so far, it allows exactly the tokens the grammar permits next (the forced token, the
 * choices of a choice slot, EOS after the closing brace) and sets every other logit to
 * `-Infinity`. A row whose ids already left the grammar (impossible under this mask) may only end.
 *
 * Every grammar word must be one token of `tokenizer` and it must have an EOS (the ARC tokenizer
 * does); otherwise this throws when the mask is made. Generate with the tokenizer's EOS as the
 * stop token and `maxTokens > toolConfigLength`.
 */
export const toolConfigMask = (tokenizer: Tokenizer): LogitMask => {
  const eos = tokenizer.eosId
  if (eos === undefined) throw new Error("toolConfigMask: the tokenizer has no EOS token")
  const allowed: ReadonlyArray<ReadonlyArray<number>> = toolConfigGrammar.map((slot) =>
    slot._tag === "Fixed"
      ? [singleTokenId(tokenizer, slot.token)]
      : slot.tokens.map((t) => singleTokenId(tokenizer, t))
  )
  const allowedSets = allowed.map((ids) => new Set(ids))
  const onlyEos: ReadonlyArray<number> = [eos]
  return ({ generated, logits }) => {
    const position = generated.length
    const onTrack = position < allowed.length && generated.every((id, i) => allowedSets[i]!.has(id))
    const next = onTrack ? allowed[position]! : onlyEos
    const kept = next.map((id) => {
      if (id >= logits.length) {
        throw new Error(`toolConfigMask: token ${id} is outside the model's ${logits.length} logits`)
      }
      return logits[id]!
    })
    logits.fill(-Infinity)
    next.forEach((id, i) => {
      logits[id] = kept[i]!
    })
  }
}

/** The config a (constrained or not) generation wrote: its ids decoded to text, then parsed. */
export const decodeToolConfig = (
  ids: ReadonlyArray<number>,
  tokenizer: Pick<Tokenizer, "decode">
): Either.Either<ToolConfig, ToolConfigError> => parseToolConfig(tokenizer.decode(ids))

// ---------------------------------------------------------------------------------------------
// Training budget

/** Optimizer steps of a test-time training run: `ceil(sequences / batchSize) × epochs`. */
export const optimizerSteps = (
  options: { readonly sequences: number; readonly epochs: number; readonly batchSize: number }
): number => Math.ceil(options.sequences / options.batchSize) * options.epochs

/**
 * The most optimizer steps a self-edit may ask for. SEAL's few-shot ARC evaluation gives reward 0
 * to a config whose test-time training would exceed 375 steps, so the policy cannot buy success
 * with unbounded compute.
 */
export const maxTrainingSteps = 375
