/**
 * The word-level vocabulary of the ARC models: one token per cell colour, a row end, the markers
 * of a task's sequence, and the words of the JSON tool config (SEAL's self-edit for ARC). Every
 * token is a word, so decoding joins tokens with spaces and a decoded tool config is valid JSON.
 *
 * The ids are fixed by this list's order: a checkpoint's `tokenizer.json` records them, and a
 * model pretrained on this vocabulary keeps meaning what it learnt only while the list is
 * unchanged. Append; never reorder.
 */

export const specialTokens = { unk: "<unk>", bos: "<s>", eos: "</s>", pad: "<pad>" } as const

/** Colours 0-9: the cell tokens (and the digits of `num_train_epochs`). */
export const colourTokens = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] as const

export const rowEnd = "\n"
/** Starts an example's input grid. */
export const inputMarker = "in"
/** Starts an example's output grid. */
export const outputMarker = "out"
/** Ends an example (after its output grid). */
export const exampleEnd = "end"
/** Ends the demonstrations in a self-edit prompt; the tool config follows. */
export const configMarker = "config"

/** The words a tool config is written with (see `ToolConfig.ts` for the grammar). */
export const configTokens = [
  "{",
  "}",
  ":",
  ",",
  "true",
  "false",
  "\"data_generation\"",
  "\"use_basic_augmentations\"",
  "\"use_size_augmentations\"",
  "\"use_chain_augmentations\"",
  "\"use_repeat_augmentations\"",
  "\"training\"",
  "\"strategy\"",
  "\"train_using_all_tokens\"",
  "\"train_using_output_tokens\"",
  "\"learning_rate\"",
  "\"num_train_epochs\"",
  "1e-4",
  "3e-4",
  "1e-3",
  "3e-3",
  "1e-2",
  "10"
] as const

export const arcTokens: ReadonlyArray<string> = [
  specialTokens.unk,
  specialTokens.bos,
  specialTokens.eos,
  specialTokens.pad,
  ...colourTokens,
  rowEnd,
  inputMarker,
  outputMarker,
  exampleEnd,
  configMarker,
  ...configTokens
]

const idOf = (token: string): number => {
  const id = arcTokens.indexOf(token)
  if (id < 0) throw new Error(`ArcVocabulary: ${JSON.stringify(token)} is not in the vocabulary`)
  return id
}

/** Fixed ids of the tokens the grid format uses. */
export const ids = {
  unk: idOf(specialTokens.unk),
  bos: idOf(specialTokens.bos),
  eos: idOf(specialTokens.eos),
  pad: idOf(specialTokens.pad),
  /** `colour + colour0` is the id of that colour. */
  colour0: idOf("0"),
  rowEnd: idOf(rowEnd),
  input: idOf(inputMarker),
  output: idOf(outputMarker),
  exampleEnd: idOf(exampleEnd),
  config: idOf(configMarker)
} as const

/** The id of any token of the vocabulary (throws on a word that is not in it: a programming error). */
export const tokenId = idOf
