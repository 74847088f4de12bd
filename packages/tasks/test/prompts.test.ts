import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { fileURLToPath } from "node:url"
import {
  customSelfEditPrompt,
  parsePromptTemplate,
  PromptTemplateError,
  questionAnswerMaxTokens,
  questionPrompt,
  questionPrompts,
  SelfEditFormat,
  selfEditPrompt,
  selfEditTemplates
} from "../src/knowledge/SelfEditPrompts.js"
import { loadSelfEditFile } from "../src/knowledge/SelfEditSource.js"
import { squadFiles } from "../src/knowledge/SquadData.js"

const files = squadFiles(fileURLToPath(new URL("../../../data/", import.meta.url)))
const passage = { title: "Oxygen", context: "Oxygen is a chemical element with symbol O." }

describe("self-edit prompts", () => {
  it.effect("'implications' reproduces the prompt SEAL stored with each of its 200 self-edit sets", () =>
    Effect.gen(function*() {
      for (const path of [files.selfEdits.base, files.selfEdits.iter2, files.selfEdits.gpt41]) {
        const records = yield* loadSelfEditFile(path)
        expect(records.length).toBe(200)
        for (const record of records) expect(selfEditPrompt("implications", record)).toBe(record.prompt)
      }
    }))

  it("renders the five formats verbatim", () => {
    const frame = (instruction: string, cue: string) =>
      `Let's read the following passage and ${instruction}.\n\nPassage:\nOxygen\nOxygen is a chemical element with symbol O.\n\n${cue}`
    const list = (size: string) =>
      frame(`produce ${size} of implications derived directly or indirectly from the content`, "Implications:\n")
    expect(SelfEditFormat.literals).toEqual([
      "implications",
      "implications-long",
      "implications-very-long",
      "rewrite",
      "self-qa"
    ])
    expect(selfEditPrompt("implications", passage)).toBe(list("a list"))
    expect(selfEditPrompt("implications-long", passage)).toBe(list("a long list"))
    expect(selfEditPrompt("implications-very-long", passage)).toBe(list("a very long list"))
    expect(selfEditPrompt("rewrite", passage)).toBe(
      frame("rewrite it in a few different ways, each one separated by a newline", "Rewritten passages:\n")
    )
    expect(selfEditPrompt("self-qa", passage)).toBe(frame("rewrite it in a question-answer format", "Question 1: "))
    expect(selfEditTemplates.implications).toBe(
      "Let's read the following passage and produce a list of implications derived directly or indirectly from the content.\n\nPassage:\n{title}\n{context}\n\nImplications:\n"
    )
  })

  it("keeps braces inside the passage literal", () => {
    const tricky = { title: "Sets {A}", context: "Let {title} be {{x}}." }
    expect(selfEditPrompt("implications", tricky)).toContain("Passage:\nSets {A}\nLet {title} be {{x}}.\n\n")
  })
})

describe("custom templates", () => {
  it("substitutes {title} and {context}, with {{ and }} for literal braces", () => {
    expect(Either.getOrThrow(customSelfEditPrompt("Facts about {title}:\n{context}\n{{json}}\n", passage))).toBe(
      "Facts about Oxygen:\nOxygen is a chemical element with symbol O.\n{json}\n"
    )
    expect(Either.getOrThrow(customSelfEditPrompt("no placeholders", passage))).toBe("no placeholders")
    expect(Either.getOrThrow(customSelfEditPrompt("{context}{context}", { title: "", context: "ab" }))).toBe("abab")
  })

  it("rejects unknown placeholders with a typed error", () => {
    const result = parsePromptTemplate("Passage: {title}\n{passage}\n")
    expect(Either.isLeft(result)).toBe(true)
    const error = Either.isLeft(result) ? result.left : undefined
    expect(error).toBeInstanceOf(PromptTemplateError)
    expect(error?.reason).toBe("UnknownPlaceholder")
    expect(error?.placeholder).toBe("passage")
    expect(error?.position).toBe(17)
    expect(error?.message).toContain("{passage}")
    for (const template of ["{}", "{ title }", "{title!r}", "{context:>10}"]) {
      const e = parsePromptTemplate(template)
      expect(Either.isLeft(e) && e.left.reason).toBe("UnknownPlaceholder")
    }
  })

  it("rejects unbalanced braces", () => {
    for (const [template, position] of [["{title", 0], ["a } b", 2], ["{ti{title}", 0]] as const) {
      const e = parsePromptTemplate(template)
      expect(Either.isLeft(e) && [e.left.reason, e.left.position]).toEqual(["UnbalancedBrace", position])
    }
  })
})

describe("closed-book questions", () => {
  it("formats the question prompt with the topic and no passage", () => {
    expect(questionPrompt("Super Bowl 50", "Where was the game played?")).toBe(
      "Let's answer a question directly and concisely.\nQuestion: Topic: Super Bowl 50\nWhere was the game played?\nAnswer:\n"
    )
    expect(questionAnswerMaxTokens).toBe(64)
    const items = questionPrompts({ title: "T", questions: [{ question: "Q?", answer: "A" }] })
    expect(items).toEqual([{
      question: "Q?",
      answer: "A",
      prompt: "Let's answer a question directly and concisely.\nQuestion: Topic: T\nQ?\nAnswer:\n"
    }])
  })
})
