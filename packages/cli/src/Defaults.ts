import { fileURLToPath } from "node:url"

/** The model bundled with the repository (see models/README.md). */
export const bundledModelPath = fileURLToPath(new URL("../../../models/stories260K.gguf", import.meta.url))

/** The synthetic-world base model bundled with the repository (see models/README.md). */
export const bundledWorldModelPath = fileURLToPath(new URL("../../../models/world-base", import.meta.url))

/** The ARC base model bundled with the repository (see models/README.md). */
export const bundledArcModelPath = fileURLToPath(new URL("../../../models/arc-base", import.meta.url))

/** The repository's data directory (SQuAD in SEAL's format, SEAL's self-edits). */
export const bundledDataPath = fileURLToPath(new URL("../../../data", import.meta.url))
