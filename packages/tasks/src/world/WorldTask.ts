/**
 * The synthetic world as a knowledge task: its text layout (the world's compact prompts, one-word
 * answers graded by exact match) and its evaluation contexts (a split's people, each with the
 * canonical passage, the self-edit prompt and the oracle self-edit).
 */
import type { EvaluationContext } from "../knowledge/Evaluation.js"
import type { KnowledgeFormat } from "../knowledge/InnerLoop.js"
import { oracleSelfEdit } from "./SelfEdits.js"
import {
  questionPrompt,
  selfEditPrompt,
  type Split,
  toKnowledgeContext,
  trainingSequences,
  type World
} from "./World.js"

/** The world's layout: SEAL's sequence rule with the world's prompts; answers are one word. */
export const worldFormat = (world: Pick<World, "config">): KnowledgeFormat => ({
  trainingSequences: (context, selfEdit) => trainingSequences(world.config.prompts, context, selfEdit),
  questionPrompt: (context, question) => questionPrompt(world.config.prompts, context.title, question),
  // The answer word, then EOS; a second token is room for a model that does not stop.
  maxAnswerTokens: 2,
  grade: (answer, gold) => ((answer.trim().split(/\s+/)[0] ?? "") === gold ? 1 : 0)
})

/** The first `count` people of `split` (all when absent) as evaluation contexts, ids = names. */
export const worldEvaluationContexts = (world: World, split: Split, count?: number): Array<EvaluationContext> =>
  world.entities[split].slice(0, count).map((entity) => {
    const context = toKnowledgeContext(world, entity)
    return {
      id: entity.name,
      context,
      selfEditPrompt: selfEditPrompt(world.config.prompts, context),
      oracleSelfEdit: oracleSelfEdit(world, entity)
    }
  })
