/**
 * Turns a self-edit into the sequences the inner LoRA loop trains on, as SEAL's reference builds
 * them: each piece of the self-edit prefixed with the passage title (`"{title}\n{piece}"`), then the
 * passage itself (`"{title}\n{context}"`) as the last sequence. The title prefix matters because
 * the closed-book questions name the topic; it ties the new facts to the cue the model is asked
 * with.
 */
import { makeRng, shuffleInPlace } from "@seal/gpu/model/Sampling"
import type { PassageText } from "./SquadData.js"

/**
 * How a self-edit is cut into sequences.
 * - `auto`: the reference's default — question-answer pairs when the text looks like self-QA
 *   (has "Question N:" and "Answer:"), otherwise one sequence per non-empty line.
 * - `lines`: one sequence per non-empty line.
 * - `qa`: one sequence per "Question N:" block (for the self-qa prompt).
 * - `segments`: the reference without line splitting: pieces separated by `---` lines.
 * - `none`: the whole self-edit as one sequence.
 */
export type SplitMode = "auto" | "lines" | "qa" | "segments" | "none"

export interface TrainingSequenceOptions {
  /** Default `auto`. */
  readonly split?: SplitMode | undefined
  /** Append `"{title}\n{context}"` as the last sequence (default true). */
  readonly includePassage?: boolean | undefined
}

const questionStart = /Question\s+\d+:/
const answerMarker = /Answer\s*:/
const questionBoundary = /\n(?=Question\s+\d+:)/

/** True when a completion reads as question-answer pairs, which the reference splits by pair. */
export const looksLikeSelfQa = (selfEdit: string): boolean =>
  questionStart.test(selfEdit) && answerMarker.test(selfEdit)

const segments = (selfEdit: string): Array<string> => {
  const parts = selfEdit.split("---").map((s) => s.trim()).filter((s) => s !== "")
  return parts.length > 0 ? parts : [selfEdit.trim()]
}

const lines = (selfEdit: string): Array<string> => {
  const out = segments(selfEdit).flatMap((segment) =>
    segment.split(/\r\n|\r|\n/).map((line) => line.trim()).filter((line) => line !== "")
  )
  // Models often open with a preamble ("Sure, here are the implications:", "**Implications:**")
  // before a numbered list; the reference drops that first line when the second starts the list.
  return out.length > 1 && out[1]!.startsWith("1.") ? out.slice(1) : out
}

// Pairs are trimmed, unlike the reference, which keeps the blank line between pairs at the end of
// each one: a trailing newline only teaches the model to emit one.
const qaPairs = (selfEdit: string): Array<string> => {
  const pairs = selfEdit.trim().split(questionBoundary).map((pair) => pair.trim()).filter((pair) => pair !== "")
  // The self-qa prompt ends in "Question 1: ", so the completion starts mid-pair; put the cue back
  // so every pair reads the same way.
  if (pairs.length > 0 && !pairs[0]!.startsWith("Question")) pairs[0] = `Question 1: ${pairs[0]}`
  return pairs
}

/** The pieces of a self-edit, before the title prefix. Empty pieces are dropped. */
export const splitSelfEdit = (selfEdit: string, split: SplitMode = "auto"): Array<string> => {
  switch (split) {
    case "auto":
      return looksLikeSelfQa(selfEdit) ? qaPairs(selfEdit) : lines(selfEdit)
    case "lines":
      return lines(selfEdit)
    case "qa":
      return qaPairs(selfEdit)
    case "segments":
      return segments(selfEdit).filter((s) => s !== "")
    case "none": {
      const whole = selfEdit.trim()
      return whole === "" ? [] : [whole]
    }
  }
}

export const trainingSequence = (title: string, text: string): string => `${title}\n${text}`

/** The training sequences for one passage and one self-edit. */
export const trainingSequences = (
  passage: PassageText,
  selfEdit: string,
  options: TrainingSequenceOptions = {}
): Array<string> => {
  const pieces = splitSelfEdit(selfEdit, options.split ?? "auto").map((piece) => trainingSequence(passage.title, piece))
  if (options.includePassage ?? true) pieces.push(trainingSequence(passage.title, passage.context.trim()))
  return pieces
}

export interface DocumentSelfEdit {
  readonly passage: PassageText
  readonly selfEdit: string
}

export interface MultiDocumentOptions extends TrainingSequenceOptions {
  /** Seed of the shuffle; the same seed and inputs give the same dataset. */
  readonly seed: number
}

/** Fisher–Yates over a seeded stream, so datasets reproduce across runs and machines. */
export const seededShuffle = <A>(items: ReadonlyArray<A>, seed: number): Array<A> =>
  shuffleInPlace(items.slice(), makeRng(seed))

/**
 * The multi-document (continued pretraining) setting: the sequences of several passages in one
 * dataset, shuffled so one adapter update sees the documents interleaved rather than in order.
 */
export const multiDocumentSequences = (
  documents: ReadonlyArray<DocumentSelfEdit>,
  options: MultiDocumentOptions
): Array<string> =>
  seededShuffle(documents.flatMap((doc) => trainingSequences(doc.passage, doc.selfEdit, options)), options.seed)
