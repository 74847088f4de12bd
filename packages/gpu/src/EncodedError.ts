/**
 * A failure as plain data, to cross a worker thread's boundary (structured clone drops an error's
 * class): a tagged error's tag and own fields, anything else as a `Defect` with its message. Each
 * side rebuilds the typed errors it knows from the tag.
 */
export interface EncodedError {
  readonly tag: string
  readonly message: string
  readonly fields: Readonly<Record<string, unknown>>
}

export const encodeError = (error: unknown): EncodedError => {
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    const fields = Object.fromEntries(
      Object.entries(error).filter(([key, value]) => key !== "_tag" && typeof value !== "function")
    )
    return { tag: error._tag, message: String((error as { message?: unknown }).message ?? ""), fields }
  }
  return { tag: "Defect", message: error instanceof Error ? error.message : String(error), fields: {} }
}
