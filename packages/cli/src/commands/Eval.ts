import { Command, Options } from "@effect/cli"
import * as RunDirectory from "@seal/core/RunDirectory"
import { Checkpoint, LanguageModel, LoraTrainer, TensorRuntime } from "@seal/gpu"
import { continualEdits } from "@seal/tasks/knowledge/ContinualEdits"
import type { EvaluationContext, EvaluationReport } from "@seal/tasks/knowledge/Evaluation"
import { evaluateKnowledge, EvaluationConfig } from "@seal/tasks/knowledge/Evaluation"
import type { KnowledgeFormat } from "@seal/tasks/knowledge/InnerLoop"
import { squadFormat } from "@seal/tasks/knowledge/InnerLoop"
import { selfEditPrompt as squadSelfEditPrompt } from "@seal/tasks/knowledge/SelfEditPrompts"
import * as SelfEditSource from "@seal/tasks/knowledge/SelfEditSource"
import * as SquadData from "@seal/tasks/knowledge/SquadData"
import * as SelfEditSampling from "@seal/tasks/SelfEditSampling"
import { probeWorld } from "@seal/tasks/world/Probes"
import type { World } from "@seal/tasks/world/World"
import { worldOfModel } from "@seal/tasks/world/WorldModel"
import { worldEvaluationContexts, worldFormat } from "@seal/tasks/world/WorldTask"
import { Console, Effect, Layer, Option, Schema } from "effect"
import * as Os from "node:os"
import * as Path from "node:path"
import { bundledDataPath, bundledWorldModelPath } from "../Defaults.js"
import { ConfigError, preset as experimentPreset, presetNames } from "../Experiment.js"
import { backendOption, runtimeLayer } from "./Shared.js"

const options = {
  preset: Options.choice("preset", presetNames).pipe(
    Options.withDescription("Which evaluation: knowledge-tiny (8 held-out people) or knowledge-demo (all 50)"),
    Options.withDefault("knowledge-demo" as const)
  ),
  seed: Options.integer("seed").pipe(
    Options.withDescription("Seeds self-edit sampling and every adapter"),
    Options.withDefault(0)
  ),
  out: Options.text("out").pipe(
    Options.withDescription("Run directory to create (default: runs/eval-<preset>-<time>); must be new"),
    Options.optional
  ),
  model: Options.text("model").pipe(
    Options.withDescription("Model directory (default: the bundled world model, models/world-base)"),
    Options.optional
  ),
  squad: Options.boolean("squad").pipe(
    Options.withDescription("Run the protocol on SQuAD passages (SEAL's seed-42 order) with --model")
  ),
  passages: Options.integer("passages").pipe(
    Options.withDescription("With --squad: how many evaluation passages (default 20, at most 200)"),
    Options.withDefault(20)
  ),
  selfEditTokens: Options.integer("self-edit-tokens").pipe(
    Options.withDescription("With --squad: the self-edit generation budget (default 512)"),
    Options.withDefault(512)
  ),
  backend: backendOption
}

type Args = Command.Command.ParseConfig<typeof options>

interface Plan {
  readonly modelDir: string
  readonly contexts: ReadonlyArray<EvaluationContext>
  readonly format: KnowledgeFormat
  readonly config: EvaluationConfig
  readonly continualPassages: number
  readonly description: Record<string, unknown>
  /** The world, for the pre-adaptation probes (synthetic-world plans only). */
  readonly world?: World | undefined
}

const worldPlan = (args: Args) =>
  Effect.gen(function*() {
    const modelDir = Option.getOrElse(args.model, () => bundledWorldModelPath)
    const preset = experimentPreset(args.preset)
    const { world, config } = yield* worldOfModel(modelDir)
    return {
      modelDir,
      contexts: worldEvaluationContexts(world, "heldOut", preset.heldOutContexts),
      format: worldFormat(world),
      config: preset.evaluation,
      continualPassages: preset.continualPassages,
      world,
      description: { task: "synthetic-world", preset: preset.name, worldSeed: config.worldSeed, split: "heldOut" }
    } satisfies Plan
  })

/** SQuAD passages in SEAL's evaluation order; GPT-4.1's stored self-edits are the oracle row. */
const squadPlan = (args: Args) =>
  Effect.gen(function*() {
    if (Option.isNone(args.model)) {
      return yield* new SquadData.SquadDataError({
        file: "--model",
        reason: "Mismatch",
        detail: "--squad needs a model that reads English (a Hugging Face directory or GGUF); pass --model"
      })
    }
    const files = SquadData.squadFiles(bundledDataPath)
    const oracle = yield* SelfEditSource.load({
      selfEdits: files.selfEdits.gpt41,
      squad: files.squad,
      shuffle: files.shuffle
    })
    const count = Math.min(args.passages, oracle.size)
    const contexts: Array<EvaluationContext> = []
    for (let position = 0; position < count; position++) {
      const set = yield* oracle.get(position)
      contexts.push({
        id: `squad-${set.passage.index}`,
        context: set.passage,
        selfEditPrompt: squadSelfEditPrompt("implications", set.passage),
        oracleSelfEdit: set.completions[0]
      })
    }
    if (!(args.selfEditTokens >= 1)) {
      return yield* new ConfigError({
        source: "--self-edit-tokens",
        field: "",
        detail: `must be an integer >= 1, got ${args.selfEditTokens}`
      })
    }
    return {
      modelDir: args.model.value,
      contexts,
      format: squadFormat(),
      config: Schema.decodeSync(EvaluationConfig)({ selfEdits: { samples: 1, maxTokens: args.selfEditTokens } }),
      continualPassages: 0,
      description: { task: "squad", passages: count, oracle: "gpt4_1_val.json" }
    } satisfies Plan
  })

const printTable = (report: EvaluationReport) =>
  Console.log(
    ["method              accuracy   std     s/inner-loop"]
      .concat(report.table.map((r) =>
        `${r.method.padEnd(20)}${(100 * r.accuracy).toFixed(1).padStart(6)}%  ${
          (100 * r.std).toFixed(1).padStart(5)
        }%  ${r.secondsPerInnerLoop.toFixed(2).padStart(8)}`
      ))
      .join("\n")
  )

/**
 * The continual-edits matrices on the first passages: passage only, the model's first sampled
 * self-edit, and the oracle self-edit, each merged after every passage.
 */
const continualRows = (plan: Plan, report: EvaluationReport) =>
  Effect.gen(function*() {
    const checkpoint = yield* Checkpoint.loadCheckpoint(plan.modelDir)
    const contexts = plan.contexts.slice(0, plan.continualPassages)
    const methods = [
      { method: "passage-only", selfEdits: contexts.map(() => "") },
      { method: "self-edit", selfEdits: contexts.map((_, i) => report.contexts[i]?.selfEdits[0]?.text ?? "") },
      { method: "oracle-self-edit", selfEdits: contexts.map((c) => c.oracleSelfEdit ?? "") }
    ]
    const rows = []
    for (const m of methods) {
      const result = yield* continualEdits(
        checkpoint,
        contexts.map((c) => c.context),
        m.selfEdits,
        plan.format,
        plan.config.innerLoop,
        0
      )
      yield* Console.error(
        `eval: continual ${m.method}: backward transfer ${(100 * result.backwardTransfer).toFixed(1)} points`
      )
      rows.push({ method: m.method, passages: contexts.map((c) => c.id), ...result })
    }
    return rows
  })

const run = (args: Args) =>
  Effect.gen(function*() {
    const plan: Plan = args.squad ? yield* squadPlan(args) : yield* worldPlan(args)
    const name = args.squad ? "eval-squad" : `eval-${args.preset}-s${args.seed}`
    const dir = yield* RunDirectory.createFresh(
      Option.getOrElse(args.out, () => Path.join("runs", RunDirectory.timestampedName(name)))
    )
    yield* Console.error(`eval: ${plan.contexts.length} passages, model ${plan.modelDir}, run directory ${dir}`)
    const started = new Date()
    const begin = performance.now()
    const layers = Layer.mergeAll(LoraTrainer.layer, SelfEditSampling.layer()).pipe(
      Layer.provideMerge(LanguageModel.layer(plan.modelDir)),
      Layer.provideMerge(runtimeLayer(args.backend))
    )
    const { report, continual, probes, backend } = yield* Effect.gen(function*() {
      const runtime = yield* TensorRuntime.TensorRuntime
      const report = yield* evaluateKnowledge(plan.contexts, plan.format, plan.config, args.seed, (p) =>
        Console.error(
          `eval: ${p.method} done (${p.total} passages, ${((performance.now() - begin) / 1000).toFixed(0)} s)`
        ))
      const continual = plan.continualPassages === 0 ? undefined : yield* continualRows(plan, report)
      const probes = plan.world === undefined ? undefined : yield* probeWorld(plan.world, plan.contexts.length)
      return { report, continual, probes, backend: runtime.backend }
    }).pipe(Effect.provide(layers))
    const results = {
      command: "eval",
      ...plan.description,
      seed: args.seed,
      model: plan.modelDir,
      backend,
      machine: { cpus: Os.cpus().length, cpu: Os.cpus()[0]?.model ?? "unknown", platform: process.platform },
      startedAt: started.toISOString(),
      wallSeconds: (performance.now() - begin) / 1000,
      config: Schema.encodeSync(EvaluationConfig)(plan.config),
      table: report.table,
      ...(probes === undefined ? {} : { probes }),
      ...(continual === undefined ? {} : { continual }),
      contexts: report.contexts
    }
    yield* RunDirectory.writeJson(Path.join(dir, "results.json"), results)
    yield* printTable(report)
    if (probes !== undefined) {
      yield* Console.log(
        `before adaptation: open-book ${(100 * probes.openBookHeldOut).toFixed(1)}% on held-out people; ` +
          `greedy self-edits restate ${(100 * probes.selfEdits.correct).toFixed(1)}% of facts correctly, ` +
          `${(100 * probes.selfEdits.incorrect).toFixed(1)}% wrongly`
      )
    }
    yield* Console.log(`results: ${Path.join(dir, "results.json")}`)
  })

export const evalCommand = Command.make("eval", options, run).pipe(
  Command.withDescription(
    "Knowledge incorporation without RL: base, passage-only, own self-edits and oracle self-edits on held-out passages"
  )
)
