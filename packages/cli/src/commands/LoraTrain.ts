import { Command, Options } from "@effect/cli"
import type { Loss } from "@seal/gpu"
import { Dataset, LanguageModel, LoraAdapter, LoraTrainer, PeftIo, TensorRuntime, Trainer } from "@seal/gpu"
import { Console, Effect, Layer, Option, Runtime } from "effect"
import { backendOption, modelOption, runtimeLayer } from "./Shared.js"

type ProjectionName = LoraAdapter.LoraConfig["targets"][number]

const allProjections: ReadonlyArray<ProjectionName> = ["q", "k", "v", "o", "gate", "up", "down"]

const options = {
  model: modelOption,
  data: Options.text("data").pipe(
    Options.withDescription(
      "Training data, JSON Lines: one {\"text\": ...} or {\"prompt\": ..., \"completion\": ...} per line"
    )
  ),
  out: Options.text("out").pipe(
    Options.withDescription("Directory to save the adapter in (PEFT layout); must be new, empty or an adapter")
  ),
  rank: Options.integer("rank").pipe(Options.withDescription("LoRA rank r (default 8)"), Options.withDefault(8)),
  alpha: Options.float("alpha").pipe(
    Options.withDescription("LoRA alpha; the update is scaled by alpha / r (default 16)"),
    Options.withDefault(16)
  ),
  dropout: Options.float("dropout").pipe(
    Options.withDescription("Dropout on the adapter's input while training (default 0)"),
    Options.withDefault(0)
  ),
  rsLora: Options.boolean("rslora").pipe(Options.withDescription("Scale by alpha / sqrt(r) (rsLoRA)")),
  targets: Options.text("targets").pipe(
    Options.withDescription(
      "Comma-separated projections to adapt: q,k,v,o,gate,up,down (or q_proj, ...), or all (default q,v)"
    ),
    Options.withDefault("q,v")
  ),
  learningRate: Options.float("lr").pipe(
    Options.withDescription("Peak learning rate (default 1e-4)"),
    Options.withDefault(1e-4)
  ),
  epochs: Options.float("epochs").pipe(
    Options.withDescription("Passes over the data when --steps is not given (default 1)"),
    Options.withDefault(1)
  ),
  steps: Options.integer("steps").pipe(Options.withDescription("Optimizer steps"), Options.optional),
  batchSize: Options.integer("batch-size").pipe(
    Options.withDescription("Examples per micro-batch"),
    Options.withDefault(1)
  ),
  gradAccum: Options.integer("grad-accum").pipe(
    Options.withDescription("Micro-batches per optimizer step"),
    Options.withDefault(1)
  ),
  seed: Options.integer("seed").pipe(
    Options.withDescription("Seeds the adapter's initialisation, the data order and dropout"),
    Options.withDefault(0)
  ),
  schedule: Options.choice("schedule", ["constant", "linear", "cosine"]).pipe(
    Options.withDescription("Learning-rate schedule after warmup (default constant)"),
    Options.withDefault("constant" as const)
  ),
  warmup: Options.integer("warmup").pipe(Options.withDescription("Linear warmup steps"), Options.withDefault(0)),
  allTokens: Options.boolean("all-tokens", { negationNames: ["completion-only"] }).pipe(
    Options.withDescription(
      "Train on prompt tokens too; --completion-only (the default) scores only completions of prompt/completion lines"
    )
  ),
  backend: backendOption
}

type Args = Command.Command.ParseConfig<typeof options>

const parseTargets = (spec: string): Effect.Effect<Array<ProjectionName>, LoraAdapter.LoraConfigError> =>
  Effect.gen(function*() {
    const names = spec.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0)
    if (names.length === 1 && names[0] === "all") return [...allProjections]
    const targets: Array<ProjectionName> = []
    for (const name of names) {
      const target = allProjections.find((p) => p === name) ?? PeftIo.projectionOfPeftModule(name)
      if (target === undefined) {
        return yield* new LoraAdapter.LoraConfigError({
          reason: "UnknownTarget",
          field: "targets",
          detail: `unknown target module "${name}" in --targets (known: ${
            allProjections.join(", ")
          }, their q_proj-style names, or all)`
        })
      }
      targets.push(target)
    }
    return targets
  })

/** Every option checked before the model is loaded, so a typo costs no loading time. */
const checkArgs = (args: Args) =>
  Effect.gen(function*() {
    const targets = yield* parseTargets(args.targets)
    const config = yield* LoraTrainer.checkLoraConfig({
      rank: args.rank,
      alpha: args.alpha,
      dropout: args.dropout,
      targets,
      rsLora: args.rsLora
    })
    const bad = (detail: string) => new Trainer.TrainingError({ reason: "BadOptions", detail })
    // The trainer accepts a rate of 0 (a dry run); from the command line it is a mistake.
    if (!(Number.isFinite(args.learningRate) && args.learningRate > 0)) {
      return yield* bad(`--lr must be a number > 0, got ${args.learningRate}`)
    }
    const positive = (flag: string, v: number) =>
      Number.isInteger(v) && v >= 1 ? Effect.void : Effect.fail(bad(`${flag} must be an integer >= 1, got ${v}`))
    yield* positive("--batch-size", args.batchSize)
    yield* positive("--grad-accum", args.gradAccum)
    if (Option.isSome(args.steps)) yield* positive("--steps", args.steps.value)
    if (!(args.epochs > 0)) return yield* bad(`--epochs must be > 0, got ${args.epochs}`)
    if (!(Number.isInteger(args.warmup) && args.warmup >= 0)) {
      return yield* bad(`--warmup must be an integer >= 0, got ${args.warmup}`)
    }
    const request: Trainer.TrainOptions = {
      learningRate: args.learningRate,
      batchSize: args.batchSize,
      gradientAccumulation: args.gradAccum,
      steps: Option.getOrUndefined(args.steps),
      epochs: args.epochs,
      seed: args.seed,
      schedule: { kind: args.schedule, warmupSteps: args.warmup }
    }
    return { config, request }
  })

/** Non-padding tokens of each planned step, to report tokens/s as training goes. */
const tokensPerStep = (
  examples: ReadonlyArray<Loss.TokenizedExample>,
  request: Trainer.TrainOptions
): Array<number> =>
  Trainer.planSteps(examples.length, request).map((step) =>
    step.microBatches.reduce((n, batch) => n + batch.reduce((m, i) => m + examples[i]!.ids.length, 0), 0)
  )

const train = (
  args: Args,
  checked: Effect.Effect.Success<ReturnType<typeof checkArgs>>,
  examples: ReadonlyArray<Loss.Example>
) =>
  Effect.gen(function*() {
    const runtime = yield* TensorRuntime.TensorRuntime
    const model = yield* LanguageModel.LanguageModel
    const trainer = yield* LoraTrainer.LoraTrainer
    const tokenized = yield* trainer.tokenize(examples, { completionOnly: !args.allTokens })
    const adapter = yield* trainer.createAdapter(checked.config, { seed: args.seed })
    const stepTokens = tokensPerStep(tokenized, checked.request)
    const total = stepTokens.length
    // About 100 progress lines at most, always the first and the last step.
    const every = Math.max(1, Math.ceil(total / 100))
    const run = Runtime.runSync(yield* Effect.runtime<never>())
    yield* Console.error(
      `lora-train: ${examples.length} example(s), ${total} step(s), rank ${checked.config.rank}, ` +
        `targets ${checked.config.targets.join(",")}, ${model.config.numLayers} layers, backend ${runtime.backend}`
    )
    let seenTokens = 0
    const result = yield* trainer.train(adapter, tokenized, {
      ...checked.request,
      // The trainer's loop is synchronous; its callback prints through the Console service.
      onStep: (p) => {
        seenTokens += stepTokens[p.step - 1] ?? 0
        if (p.step !== 1 && p.step !== p.totalSteps && p.step % every !== 0) return
        const perSecond = p.elapsedMs > 0 ? seenTokens / (p.elapsedMs / 1000) : 0
        run(
          Console.error(
            `step ${p.step}/${p.totalSteps}  loss ${p.loss.toFixed(4)}  lr ${p.learningRate.toExponential(2)}  ` +
              `${perSecond.toFixed(0)} tokens/s`
          )
        )
      }
    })
    yield* PeftIo.saveAdapter(args.out, result.adapter, { baseModelNameOrPath: args.model })
    const finalLoss = result.losses[result.losses.length - 1]
    yield* Console.log(
      `trained ${result.adapter.id}: ${result.steps} steps, final loss ${finalLoss?.toFixed(4) ?? "n/a"}, ` +
        `${result.seconds.toFixed(2)} s, ${result.tokensPerSecond.toFixed(0)} tokens/s; saved to ${args.out}`
    )
  })

const modelLayers = (path: string, backend: TensorRuntime.BackendChoice) =>
  LoraTrainer.layer.pipe(
    Layer.provideMerge(LanguageModel.layer(path)),
    Layer.provideMerge(runtimeLayer(backend))
  )

export const loraTrainCommand = Command.make("lora-train", options, (args) =>
  Effect.gen(function*() {
    const checked = yield* checkArgs(args)
    // Fail now rather than after training if the adapter could not be saved there.
    yield* PeftIo.checkAdapterTarget(args.out)
    const examples = yield* Dataset.readJsonlExamples(args.data)
    yield* train(args, checked, examples).pipe(Effect.provide(modelLayers(args.model, args.backend)))
  })).pipe(
    Command.withDescription("Train a LoRA adapter on a JSON Lines file and save it in the PEFT layout")
  )
