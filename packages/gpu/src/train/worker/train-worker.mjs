// A worker thread of DataParallel.dataParallelStepTrainer: runs the TypeScript sources through
// tsx's loader, as bin/seal.mjs does for the CLI.
import { register } from "tsx/esm/api"

register()
await import("./TrainWorkerMain.ts")
