import { Command } from "@effect/cli"
import { generateCommand } from "./commands/Generate.js"
import { loraTrainCommand } from "./commands/LoraTrain.js"

export const seal = Command.make("seal").pipe(
  Command.withDescription("SEAL: self-adapting language models on Effect and TensorFlow.js"),
  Command.withSubcommands([generateCommand, loraTrainCommand])
)

export const cli = Command.run(seal, { name: "seal", version: "0.1.0" })
