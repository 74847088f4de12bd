/**
 * A world model's world: `seal pretrain` writes the world config and seed next to the weights
 * (`seal-world.json`), and generation is deterministic, so the people, passages and questions a
 * model was (and was not) trained on can always be rebuilt from its directory.
 */
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { PretrainConfig } from "./Pretrain.js"
import { generateWorld, type World } from "./World.js"

/** The model's world could not be recovered from its directory. */
export class WorldModelError extends Data.TaggedError("WorldModelError")<{
  readonly file: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.file}: ${this.detail}`
  }
}

/** The provenance file `seal pretrain` writes next to a world model. */
export const provenanceFile = "seal-world.json"

/**
 * Regenerates the world a pretrained model was trained in, from the `seal-world.json` in its
 * directory (the world config and seed are all it takes: generation is deterministic).
 */
export const worldOfModel = (
  modelDir: string
): Effect.Effect<{ world: World; config: PretrainConfig }, WorldModelError> =>
  Effect.gen(function*() {
    const file = Path.join(modelDir, provenanceFile)
    const text = yield* Effect.tryPromise({
      try: () => Fs.promises.readFile(file, "utf8"),
      catch: () =>
        new WorldModelError({
          file,
          detail:
            "missing: a synthetic-world model directory (from seal pretrain) carries one; use --squad for other models"
        })
    })
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as { config?: unknown },
      catch: () => new WorldModelError({ file, detail: "not JSON" })
    })
    const config = yield* Schema.decodeUnknownEither(PretrainConfig)(json.config ?? {}).pipe(
      Either.mapLeft((e) => {
        const issue = ParseResult.ArrayFormatter.formatErrorSync(e)[0]
        return new WorldModelError({
          file,
          detail: `config.${issue?.path.map(String).join(".") ?? ""}: ${issue?.message ?? e.message}`
        })
      })
    )
    return { world: generateWorld(config.world, config.worldSeed), config }
  })
