import { Command } from "@effect/cli"
import { evalCommand } from "./commands/Eval.js"
import { generateCommand } from "./commands/Generate.js"
import { loraTrainCommand } from "./commands/LoraTrain.js"
import { pretrainCommand } from "./commands/Pretrain.js"
import { runCommand } from "./commands/Run.js"

export const seal = Command.make("seal").pipe(
  Command.withDescription("SEAL: self-adapting language models on Effect and TensorFlow.js"),
  Command.withSubcommands([generateCommand, loraTrainCommand, pretrainCommand, evalCommand, runCommand])
)

export const cli = Command.run(seal, { name: "seal", version: "0.1.0" })
