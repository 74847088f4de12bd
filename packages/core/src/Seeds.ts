/**
 * Seeds from names and indices, shared by every package that derives a stream from a context id
 * (sampling, rewards), so the same id gives the same number everywhere.
 */

/** FNV-1a over the UTF-16 code units: a stable 32-bit number for a string. */
export const stringHash = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/** Mixes integers into one 31-bit seed (order matters). */
export const mixSeed = (...parts: ReadonlyArray<number>): number => {
  let h = 0x811c9dc5
  for (const p of parts) {
    h ^= p >>> 0
    h = Math.imul(h, 0x01000193) >>> 0
    h ^= h >>> 15
  }
  return h & 0x7fffffff
}
