/**
 * Shared memory for data-parallel training (`DataParallel.ts`): every replica writes the
 * flattened gradient of each micro-batch it ran into that micro-batch's slot, waits at a barrier
 * for the others, and then reads every slot in micro-batch order. Summing them in that order is
 * exactly what one process accumulating all the micro-batches does, so a run's weights do not
 * depend on how many replicas shared it.
 *
 * Two sets of slots alternate by step: a replica may write step s+1's gradients while a slower
 * one still reads step s's, and cannot reach step s+2 (the first set again) before everyone
 * has passed step s+1's barrier, so one barrier per step is enough.
 */
import { Data } from "effect"

/** What the replicas share: made once by the coordinator, posted to every worker. */
export interface SharedReduceBuffers {
  /** `2 x slots x length` float32s. */
  readonly slots: SharedArrayBuffer
  /** Int32 control words: the barrier's count and generation, and the abort flag. */
  readonly control: SharedArrayBuffer
  readonly slotCount: number
  readonly length: number
  readonly replicas: number
}

const COUNT = 0
const GENERATION = 1
const ABORTED = 2

/** Buffers for `replicas` replicas exchanging up to `slotCount` vectors of `length` float32s a step. */
export const makeSharedReduce = (replicas: number, slotCount: number, length: number): SharedReduceBuffers => ({
  slots: new SharedArrayBuffer(2 * slotCount * length * Float32Array.BYTES_PER_ELEMENT),
  control: new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT),
  slotCount,
  length,
  replicas
})

/** Thrown in a replica waiting at the barrier once the coordinator aborts (another replica failed). */
export class ReduceAborted extends Data.TaggedError("ReduceAborted")<{ readonly message: string }> {
  constructor() {
    super({ message: "another replica failed; this one stopped at the gradient exchange" })
  }
}

/** Wakes every waiting replica with `ReduceAborted`: the coordinator calls it when a worker fails. */
export const abortSharedReduce = (buffers: SharedReduceBuffers): void => {
  const control = new Int32Array(buffers.control)
  Atomics.store(control, ABORTED, 1)
  Atomics.add(control, GENERATION, 1)
  Atomics.notify(control, GENERATION)
}

export interface Exchange {
  /**
   * Writes this replica's vectors (`micro-batch index -> vector`) for step `step`, waits for
   * every replica, and returns the `count` slots of the step in micro-batch order (views into
   * shared memory: read them before this replica's exchange two steps later).
   */
  readonly exchange: (step: number, local: ReadonlyMap<number, Float32Array>, count: number) => Array<Float32Array>
}

/** The exchange of one replica over shared buffers. Blocks its thread at the barrier (Atomics.wait). */
export const sharedExchange = (buffers: SharedReduceBuffers): Exchange => {
  const control = new Int32Array(buffers.control)
  const slot = (step: number, index: number) =>
    new Float32Array(buffers.slots, ((step % 2) * buffers.slotCount + index) * buffers.length * 4, buffers.length)
  const barrier = () => {
    const generation = Atomics.load(control, GENERATION)
    if (Atomics.load(control, ABORTED) === 1) throw new ReduceAborted()
    if (Atomics.add(control, COUNT, 1) === buffers.replicas - 1) {
      Atomics.store(control, COUNT, 0)
      Atomics.add(control, GENERATION, 1)
      Atomics.notify(control, GENERATION)
      return
    }
    while (Atomics.load(control, GENERATION) === generation) Atomics.wait(control, GENERATION, generation, 1000)
    if (Atomics.load(control, ABORTED) === 1) throw new ReduceAborted()
  }
  return {
    exchange: (step, local, count) => {
      if (count > buffers.slotCount) {
        throw new RangeError(`a step of ${count} micro-batches; the buffers hold ${buffers.slotCount}`)
      }
      for (const [index, vector] of local) {
        if (vector.length !== buffers.length) {
          throw new RangeError(`a vector of ${vector.length} values; the slots hold ${buffers.length}`)
        }
        slot(step, index).set(vector)
      }
      barrier()
      return Array.from({ length: count }, (_, index) => slot(step, index))
    }
  }
}
