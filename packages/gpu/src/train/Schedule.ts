/**
 * Learning-rate schedules as pure functions of the step, as in nanoGPT's `get_lr`: a linear
 * warmup, then constant, linear decay to zero or cosine decay to `minLearningRate`.
 */

export type ScheduleKind = "constant" | "linear" | "cosine"

export interface ScheduleOptions {
  readonly kind: ScheduleKind
  /** Steps of linear warmup from `peak / (warmup + 1)` up to the peak (default 0). */
  readonly warmupSteps?: number | undefined
  /** The floor cosine decays to (default 0). */
  readonly minLearningRate?: number | undefined
}

/**
 * The learning rate of optimizer step `step` (0-based) out of `totalSteps`. Warmup starts above
 * zero (`(step + 1) / (warmup + 1)`), so no step of a short run is wasted at rate 0.
 */
export const learningRateAt = (
  schedule: ScheduleOptions,
  peak: number,
  step: number,
  totalSteps: number
): number => {
  const warmup = Math.max(0, Math.floor(schedule.warmupSteps ?? 0))
  if (step < warmup) return (peak * (step + 1)) / (warmup + 1)
  const decaySteps = Math.max(1, totalSteps - warmup)
  const progress = Math.min(1, (step - warmup) / decaySteps)
  switch (schedule.kind) {
    case "constant":
      return peak
    case "linear":
      // Hugging Face's linear schedule: the last step still moves, by peak / decaySteps.
      return peak * (1 - progress)
    case "cosine": {
      const floor = schedule.minLearningRate ?? 0
      return floor + 0.5 * (1 + Math.cos(Math.PI * progress)) * (peak - floor)
    }
  }
}
