import { Command, Options } from "@effect/cli"
import { LanguageModel, LoraAdapter, PeftIo } from "@seal/gpu"
import { Console, Effect, Layer, Option } from "effect"
import { backendOption, modelOption, runtimeLayer } from "./Shared.js"

const options = {
  model: modelOption,
  prompt: Options.text("prompt").pipe(Options.withDescription("The prompt (BOS is prepended)")),
  maxTokens: Options.integer("max-tokens").pipe(Options.withDefault(64)),
  temperature: Options.float("temperature").pipe(
    Options.withDescription("0 is greedy"),
    Options.withDefault(0)
  ),
  topP: Options.float("top-p").pipe(Options.optional),
  topK: Options.integer("top-k").pipe(Options.optional),
  seed: Options.integer("seed").pipe(Options.withDefault(0)),
  stop: Options.text("stop").pipe(Options.repeated, Options.withDescription("Stop string (repeatable)")),
  json: Options.boolean("json").pipe(Options.withDescription("Print one JSON object")),
  adapter: Options.text("adapter").pipe(
    Options.withDescription("Generate with this LoRA adapter directory (PEFT layout) attached"),
    Options.optional
  ),
  allowUnknownParent: Options.boolean("allow-unknown-parent").pipe(
    Options.withDescription("Accept an --adapter that does not record its base model (e.g. one saved by Python PEFT)")
  ),
  backend: backendOption
}

/**
 * Loads the adapter at `dir` for `model` and uploads it for the scope's lifetime. Loading checks
 * it was trained on this very model (by weight hash) and fits its shapes, so an adapter of
 * another model fails instead of quietly producing garbage.
 */
const attachAdapter = (model: LanguageModel.LanguageModel["Type"], dir: string, allowUnknownParent: boolean) =>
  Effect.gen(function*() {
    const adapter = yield* PeftIo.loadAdapter(dir, {
      parentModelHash: LoraAdapter.hashDeviceWeights(model.weights),
      modelConfig: model.config,
      allowUnknownParent
    }).pipe(
      // The library's advice, in this command's terms.
      Effect.mapError((e) =>
        e.reason === "UnknownParent"
          ? new PeftIo.AdapterIoError({
            reason: e.reason,
            file: e.file,
            ...(e.field === undefined ? {} : { field: e.field }),
            detail: `${e.detail} (--allow-unknown-parent)`
          })
          : e
      )
    )
    const device = yield* Effect.acquireRelease(
      Effect.sync(() => LoraAdapter.uploadLora(adapter, false)),
      (d) => Effect.sync(() => LoraAdapter.disposeDeviceLora(d))
    )
    return { id: adapter.id, hook: LoraAdapter.loraHook(device) }
  })

export const generateCommand = Command.make("generate", options, (args) =>
  Effect.gen(function*() {
    const model = yield* LanguageModel.LanguageModel
    const adapter = Option.isSome(args.adapter)
      ? yield* attachAdapter(model, args.adapter.value, args.allowUnknownParent)
      : undefined
    const started = performance.now()
    const [result] = yield* model.generate([args.prompt], {
      maxTokens: args.maxTokens,
      temperature: args.temperature,
      topP: Option.getOrUndefined(args.topP),
      topK: Option.getOrUndefined(args.topK),
      seed: args.seed,
      stop: args.stop,
      hook: adapter?.hook
    })
    const seconds = (performance.now() - started) / 1000
    if (args.json) {
      yield* Console.log(JSON.stringify({
        model: model.source.path,
        ...(adapter === undefined ? {} : { adapter: adapter.id }),
        prompt: args.prompt,
        promptTokens: result!.promptTokens,
        tokens: result!.tokens,
        text: result!.text,
        finishReason: result!.finishReason,
        seconds
      }))
    } else {
      yield* Console.log(args.prompt + result!.text)
    }
  }).pipe(
    Effect.scoped,
    Effect.provide(LanguageModel.layer(args.model).pipe(Layer.provide(runtimeLayer(args.backend))))
  )).pipe(Command.withDescription("Generate text from a prompt with a GGUF or Hugging Face checkpoint"))
