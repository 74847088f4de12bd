import { describe, expect, it } from "@effect/vitest"
import { tinyLlama } from "../src/testing/TinyModel.js"
import { adaptersWithinBudget, batchedTrainingBytes } from "../src/train/MemoryBudget.js"

describe("memory budget of a batched LoRA pass", () => {
  const config = tinyLlama()

  it("grows linearly in rows, faster than linearly in steps, and with the model", () => {
    const one = batchedTrainingBytes(config, 1, 32)
    expect(batchedTrainingBytes(config, 3, 32)).toBe(3 * one)
    expect(batchedTrainingBytes(config, 1, 64)).toBeGreaterThan(2 * one)
    expect(batchedTrainingBytes({ ...config, numLayers: config.numLayers * 2 }, 1, 32)).toBeGreaterThan(one)
  })

  it("fits as many adapters as the budget holds, at least 1 and at most the cap", () => {
    const per = batchedTrainingBytes(config, 2, 40)
    expect(adaptersWithinBudget(config, 2, 40, 2.5 * per, 16)).toBe(2)
    expect(adaptersWithinBudget(config, 2, 40, 100 * per, 16)).toBe(16)
    expect(adaptersWithinBudget(config, 2, 40, 0.1 * per, 16)).toBe(1)
  })
})
