import { describe, expect, it } from "@effect/vitest"
import { arcPreset, arcPresetNames } from "../src/ArcExperiment.js"
import { preset, presetNames } from "../src/Experiment.js"

describe("presets", () => {
  it("every knowledge preset decodes; knowledge-demo scores each self-edit with two inner-loop seeds", () => {
    for (const name of presetNames) expect(preset(name).name).toBe(name)
    const demo = preset("knowledge-demo")
    expect(demo.restEm.sampling.rewardSeeds).toBe(2)
    expect(demo.grpo.sampling.rewardSeeds).toBe(2)
  })

  it("every ARC preset decodes; arc-demo evaluates both held-out sets in full", () => {
    for (const name of arcPresetNames) expect(arcPreset(name).name).toBe(name)
    const demo = arcPreset("arc-demo")
    expect(demo.heldOutSets).toEqual(["evaluation-seal", "evaluation-small"])
    expect(demo.heldOutTasks).toBeUndefined()
    expect(demo.evaluation.oracleCandidates.length).toBeGreaterThan(0)
  })
})
