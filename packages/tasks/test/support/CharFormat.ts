import type { KnowledgeFormat } from "../../src/knowledge/InnerLoop.js"

/**
 * A knowledge layout the tiny char model (`TinyModel.charTokenizer`) can learn: a self-edit's
 * non-empty lines and then the passage are the training sequences, the question is a prefix of a
 * fact (asked as is) and the answer graded is its next word.
 */
export const charFormat: KnowledgeFormat = {
  trainingSequences: (context, selfEdit) => [
    ...selfEdit.split("\n").map((l) => l.trim()).filter((l) => l !== ""),
    context.context
  ],
  questionPrompt: (_, question) => question,
  maxAnswerTokens: 6,
  grade: (answer, gold) => ((answer.split(/[ .]/)[0] ?? "") === gold ? 1 : 0)
}
