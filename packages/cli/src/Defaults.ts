import { fileURLToPath } from "node:url"

/** The model bundled with the repository (see models/README.md). */
export const bundledModelPath = fileURLToPath(new URL("../../../models/stories260K.gguf", import.meta.url))
