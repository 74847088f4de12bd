import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { loadSelfEditFile } from "../src/knowledge/SelfEditSource.js"
import { squadFiles } from "../src/knowledge/SquadData.js"
import {
  looksLikeSelfQa,
  multiDocumentSequences,
  seededShuffle,
  splitSelfEdit,
  trainingSequences
} from "../src/knowledge/TrainingSequences.js"

const files = squadFiles(fileURLToPath(new URL("../../../data/", import.meta.url)))
const passage = { title: "Oxygen", context: "  Oxygen is element 8.\n" }

describe("trainingSequences", () => {
  it("prefixes each non-empty line with the title and ends with the passage", () => {
    const selfEdit = "1. Oxygen has eight protons.\n\n  2. Oxygen is a gas at room temperature.  \n"
    expect(trainingSequences(passage, selfEdit)).toEqual([
      "Oxygen\n1. Oxygen has eight protons.",
      "Oxygen\n2. Oxygen is a gas at room temperature.",
      "Oxygen\nOxygen is element 8."
    ])
  })

  it("drops a preamble line before a numbered list, as the reference does", () => {
    expect(splitSelfEdit("**Implications:**\n\n1. A.\n2. B.")).toEqual(["1. A.", "2. B."])
    expect(splitSelfEdit("Sure! Here they are:\n1. A.\n2. B.")).toEqual(["1. A.", "2. B."])
    // Only when the second line starts the list: an unnumbered text keeps every line.
    expect(splitSelfEdit("First.\nSecond.")).toEqual(["First.", "Second."])
  })

  it("treats --- lines as separators", () => {
    expect(splitSelfEdit("A.\n---\nB.\nC.")).toEqual(["A.", "B.", "C."])
    expect(splitSelfEdit("A.\nB.\n---\nC.", "segments")).toEqual(["A.\nB.", "C."])
  })

  it("splits self-QA completions into question-answer pairs with the first cue restored", () => {
    const completion = "What is oxygen?\nAnswer: An element.\n\nQuestion 2: What is its symbol?\nAnswer: O.\n" +
      "Question 3: Its atomic number?\nAnswer: 8."
    expect(looksLikeSelfQa(completion)).toBe(true)
    const expected = [
      "Oxygen\nQuestion 1: What is oxygen?\nAnswer: An element.",
      "Oxygen\nQuestion 2: What is its symbol?\nAnswer: O.",
      "Oxygen\nQuestion 3: Its atomic number?\nAnswer: 8.",
      "Oxygen\nOxygen is element 8."
    ]
    expect(trainingSequences(passage, completion)).toEqual(expected)
    expect(trainingSequences(passage, completion, { split: "qa" })).toEqual(expected)
    // A completion that restates "Question 1:" keeps it once.
    expect(splitSelfEdit(`Question 1: ${completion}`, "qa")[0]).toBe("Question 1: What is oxygen?\nAnswer: An element.")
    // Lines mode does not pair them.
    expect(splitSelfEdit(completion, "lines")).toHaveLength(6)
  })

  it("supports no splitting and leaving the passage out", () => {
    const selfEdit = "1. A.\n2. B.\n"
    expect(trainingSequences(passage, selfEdit, { split: "none" })).toEqual([
      "Oxygen\n1. A.\n2. B.",
      "Oxygen\nOxygen is element 8."
    ])
    expect(trainingSequences(passage, selfEdit, { includePassage: false })).toEqual(["Oxygen\n1. A.", "Oxygen\n2. B."])
    expect(trainingSequences(passage, "  \n", { includePassage: false })).toEqual([])
    expect(trainingSequences(passage, "", { split: "none" })).toEqual(["Oxygen\nOxygen is element 8."])
    expect(splitSelfEdit("", "qa")).toEqual([])
  })

  it.effect("builds sequences from SEAL's stored self-edits", () =>
    Effect.gen(function*() {
      const base = yield* loadSelfEditFile(files.selfEdits.base)
      const record = base[0]!
      const sequences = trainingSequences(record, record.completions[0]!)
      expect(sequences).toHaveLength(11)
      expect(sequences[0]).toBe(
        "Genghis Khan\n1. The Shah's decision to fragment his army led to its downfall, as the Mongols were able to defeat small groups instead of facing a unified defense."
      )
      expect(sequences.at(-1)).toBe(`Genghis Khan\n${record.context}`)
      const gpt = yield* loadSelfEditFile(files.selfEdits.gpt41)
      const gptSequences = trainingSequences(gpt[0]!, gpt[0]!.completions[0]!)
      expect(gptSequences).toHaveLength(15)
      expect(gptSequences[0]).toMatch(/^Genghis Khan\n1\. The Shah’s army/)
      // Every stored self-edit yields title-prefixed, non-empty sequences.
      const bad = [...base, ...gpt].flatMap((r) =>
        r.completions.flatMap((c) =>
          trainingSequences(r, c).filter((s) => !s.startsWith(`${r.title}\n`) || s.trim() === r.title)
        )
      )
      expect(bad).toEqual([])
    }))
})

describe("multi-document sequences", () => {
  const documents = Array.from({ length: 4 }, (_, d) => ({
    passage: { title: `Doc${d}`, context: `Context ${d}.` },
    selfEdit: `1. Fact ${d}a.\n2. Fact ${d}b.\n3. Fact ${d}c.`
  }))

  it("concatenates every document's sequences and shuffles them with the given seed", () => {
    const a = multiDocumentSequences(documents, { seed: 7 })
    const unshuffled = documents.flatMap((d) => trainingSequences(d.passage, d.selfEdit))
    expect(a).toHaveLength(16)
    expect([...a].sort()).toEqual([...unshuffled].sort())
    expect(a).not.toEqual(unshuffled)
    expect(multiDocumentSequences(documents, { seed: 7 })).toEqual(a)
    expect(multiDocumentSequences(documents, { seed: 8 })).not.toEqual(a)
    const noPassages = multiDocumentSequences(documents, { seed: 7, includePassage: false })
    expect(noPassages).toHaveLength(12)
    expect(noPassages.some((s) => s.includes("Context"))).toBe(false)
  })

  it("shuffles deterministically without touching its input", () => {
    const items = Array.from({ length: 50 }, (_, i) => i)
    const once = seededShuffle(items, 42)
    expect(items).toEqual(Array.from({ length: 50 }, (_, i) => i))
    expect(once).toEqual(seededShuffle(items, 42))
    expect([...once].sort((x, y) => x - y)).toEqual(items)
    expect(seededShuffle([], 1)).toEqual([])
  })
})
