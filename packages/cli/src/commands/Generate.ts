import { Command, Options } from "@effect/cli"
import { LanguageModel } from "@seal/gpu"
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
  backend: backendOption
}

export const generateCommand = Command.make("generate", options, (args) =>
  Effect.gen(function*() {
    const model = yield* LanguageModel.LanguageModel
    const started = performance.now()
    const [result] = yield* model.generate([args.prompt], {
      maxTokens: args.maxTokens,
      temperature: args.temperature,
      topP: Option.getOrUndefined(args.topP),
      topK: Option.getOrUndefined(args.topK),
      seed: args.seed,
      stop: args.stop
    })
    const seconds = (performance.now() - started) / 1000
    if (args.json) {
      yield* Console.log(JSON.stringify({
        model: model.source.path,
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
    Effect.provide(LanguageModel.layer(args.model).pipe(Layer.provide(runtimeLayer(args.backend))))
  )).pipe(Command.withDescription("Generate text from a prompt with a GGUF or Hugging Face checkpoint"))
