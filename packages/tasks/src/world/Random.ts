/**
 * Draws over an explicit stream (`makeRng` from the sampler), so that every part of the world and
 * its corpus is a pure function of its seed.
 */
import { shuffleInPlace } from "@seal/gpu/model/Sampling"

export type Rng = () => number

/** A uniform integer in [0, n). */
export const randomInt = (rng: Rng, n: number): number => Math.floor(rng() * n)

export const pick = <A>(rng: Rng, items: ReadonlyArray<A>): A => items[randomInt(rng, items.length)]!

/** Fisher-Yates on a copy. */
export const shuffled = <A>(rng: Rng, items: ReadonlyArray<A>): Array<A> => shuffleInPlace(items.slice(), rng)

/** A value other than `value` from `values` (which must hold at least two distinct values). */
export const pickOther = <A>(rng: Rng, values: ReadonlyArray<A>, value: A): A => {
  const others = values.filter((v) => v !== value)
  return pick(rng, others)
}

/** Index drawn with probability proportional to `weights` (non-negative, not all zero). */
export const pickWeighted = (rng: Rng, weights: ReadonlyArray<number>): number => {
  const total = weights.reduce((a, b) => a + b, 0)
  let u = rng() * total
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i]!
    if (u < 0) return i
  }
  // Rounding can leave u at 0 after the last positive weight.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i
  return weights.length - 1
}
