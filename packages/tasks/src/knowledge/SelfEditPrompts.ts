/**
 * Prompts of the knowledge-incorporation task: the self-edit prompts a base model completes to
 * write its own training data, user templates in the same `{title}` / `{context}` syntax, and the
 * closed-book question prompt used to score an adapted model.
 */
import { Data, Either, Schema } from "effect"
import type { PassageText, SquadPassage } from "./SquadData.js"

/** The five self-edit prompt formats of SEAL's knowledge-incorporation experiments. */
export const SelfEditFormat = Schema.Literal(
  "implications",
  "implications-long",
  "implications-very-long",
  "rewrite",
  "self-qa"
)
export type SelfEditFormat = typeof SelfEditFormat.Type

const implications = (size: string) =>
  `Let's read the following passage and produce ${size} of implications derived directly or indirectly from the content.\n\n` +
  "Passage:\n{title}\n{context}\n\n" +
  "Implications:\n"

/**
 * The templates, verbatim. "implications" is checked against the `prompt` field SEAL stored next
 * to each of its 200 evaluation self-edits; the two long variants differ from it only in the list
 * size. "rewrite" and "self-qa" are reconstructed from the issue text (same frame as
 * "implications", with the instruction and the trailing cue the issue quotes); "self-qa" ends in
 * "Question 1: " so the model starts writing the first question straight away.
 */
export const selfEditTemplates: { readonly [F in SelfEditFormat]: string } = {
  "implications": implications("a list"),
  "implications-long": implications("a long list"),
  "implications-very-long": implications("a very long list"),
  "rewrite":
    "Let's read the following passage and rewrite it in a few different ways, each one separated by a newline.\n\n" +
    "Passage:\n{title}\n{context}\n\n" +
    "Rewritten passages:\n",
  "self-qa": "Let's read the following passage and rewrite it in a question-answer format.\n\n" +
    "Passage:\n{title}\n{context}\n\n" +
    "Question 1: "
}

/** A template that does not parse: `reason` says how, `position` is the offset in `template`. */
export class PromptTemplateError extends Data.TaggedError("PromptTemplateError")<{
  readonly reason: "UnknownPlaceholder" | "UnbalancedBrace"
  readonly template: string
  readonly position: number
  readonly placeholder?: string | undefined
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

export type TemplatePart =
  | { readonly _tag: "Text"; readonly text: string }
  | { readonly _tag: "Placeholder"; readonly name: PlaceholderName }

export const placeholderNames = ["title", "context"] as const
export type PlaceholderName = typeof placeholderNames[number]

/** A parsed template: rendering substitutes into the parts, so braces in a passage stay literal. */
export interface PromptTemplate {
  readonly source: string
  readonly parts: ReadonlyArray<TemplatePart>
}

const isPlaceholderName = (name: string): name is PlaceholderName =>
  (placeholderNames as ReadonlyArray<string>).includes(name)

/**
 * Parses a template the way Python's `str.format` reads SEAL's: `{title}` and `{context}` are
 * substituted, `{{` and `}}` stand for literal braces, and any other `{...}` is an error rather
 * than text that would silently reach the model.
 */
export const parsePromptTemplate = (source: string): Either.Either<PromptTemplate, PromptTemplateError> => {
  const parts: Array<TemplatePart> = []
  let text = ""
  let i = 0
  while (i < source.length) {
    const ch = source[i]!
    if (ch === "{" && source[i + 1] === "{") {
      text += "{"
      i += 2
    } else if (ch === "}" && source[i + 1] === "}") {
      text += "}"
      i += 2
    } else if (ch === "{") {
      const close = source.indexOf("}", i + 1)
      const nextOpen = source.indexOf("{", i + 1)
      if (close === -1 || (nextOpen !== -1 && nextOpen < close)) {
        return Either.left(
          new PromptTemplateError({
            reason: "UnbalancedBrace",
            template: source,
            position: i,
            detail: `unclosed "{" at offset ${i} (write "{{" for a literal brace)`
          })
        )
      }
      const name = source.slice(i + 1, close)
      if (!isPlaceholderName(name)) {
        return Either.left(
          new PromptTemplateError({
            reason: "UnknownPlaceholder",
            template: source,
            position: i,
            placeholder: name,
            detail: `unknown placeholder "{${name}}" at offset ${i}; known: ${
              placeholderNames.map((n) => `{${n}}`).join(", ")
            }`
          })
        )
      }
      if (text !== "") parts.push({ _tag: "Text", text })
      text = ""
      parts.push({ _tag: "Placeholder", name })
      i = close + 1
    } else if (ch === "}") {
      return Either.left(
        new PromptTemplateError({
          reason: "UnbalancedBrace",
          template: source,
          position: i,
          detail: `unmatched "}" at offset ${i} (write "}}" for a literal brace)`
        })
      )
    } else {
      text += ch
      i += 1
    }
  }
  if (text !== "") parts.push({ _tag: "Text", text })
  return Either.right({ source, parts })
}

export const renderPromptTemplate = (template: PromptTemplate, passage: PassageText): string =>
  template.parts.map((part) => part._tag === "Text" ? part.text : passage[part.name]).join("")

// The built-in templates are constants covered by tests, so a parse failure here is a bug.
const builtIn: { readonly [F in SelfEditFormat]: PromptTemplate } = Object.fromEntries(
  SelfEditFormat.literals.map((format) => [format, Either.getOrThrow(parsePromptTemplate(selfEditTemplates[format]))])
) as { readonly [F in SelfEditFormat]: PromptTemplate }

export const selfEditTemplate = (format: SelfEditFormat): PromptTemplate => builtIn[format]

/** The prompt a model completes to write a self-edit for `passage`. */
export const selfEditPrompt = (format: SelfEditFormat, passage: PassageText): string =>
  renderPromptTemplate(builtIn[format], passage)

/** A user template (`{title}`, `{context}`) rendered for `passage`. */
export const customSelfEditPrompt = (
  template: string,
  passage: PassageText
): Either.Either<string, PromptTemplateError> =>
  Either.map(parsePromptTemplate(template), (parsed) => renderPromptTemplate(parsed, passage))

/**
 * The closed-book question prompt: the adapted model sees the topic and the question but not the
 * passage, so it can only answer from what the LoRA update put into its weights. Decode greedily,
 * up to `questionAnswerMaxTokens` tokens.
 */
export const questionPrompt = (title: string, question: string): string =>
  `Let's answer a question directly and concisely.\nQuestion: Topic: ${title}\n${question}\nAnswer:\n`

/** SEAL's answer budget for the closed-book questions. */
export const questionAnswerMaxTokens = 64

export interface QuestionItem {
  readonly question: string
  readonly answer: string
  readonly prompt: string
}

/** Every question of a passage with its closed-book prompt and gold answer. */
export const questionPrompts = (passage: Pick<SquadPassage, "title" | "questions">): Array<QuestionItem> =>
  passage.questions.map((q) => ({
    question: q.question,
    answer: q.answer,
    prompt: questionPrompt(passage.title, q.question)
  }))
