import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { sealAsync } from "./support/Cli.js"

/**
 * `seal run --preset arc-tiny` end to end on the bundled ARC model (models/arc-base): the rows of
 * the issue on the first two small evaluation tasks, with their ids, after one round over two RL
 * tasks. (`run-arc.test.ts` covers resume and refusals on a tiny model made in the test.)
 */
let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "seal-run-arc-preset-"))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("seal run --preset arc-tiny", () => {
  it("writes icl, self-edit, seal and oracle rows with the task ids used", async () => {
    const out = path.join(dir, "run")
    const run = await sealAsync(["run", "--preset", "arc-tiny", "--seed", "0", "--out", out, "--backend", "wasm"])
    expect(run.code, run.stderr).toBe(0)
    const results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8"))
    expect(results.task).toBe("arc")
    expect(results.heldOut["evaluation-small"]).toHaveLength(2)
    expect(results.rlTasks).toHaveLength(2)
    expect(results.table.map((r: { set: string; method: string }) => `${r.set}/${r.method}`)).toEqual([
      "evaluation-small/icl",
      "evaluation-small/self-edit",
      "evaluation-small/seal",
      "evaluation-small/oracle"
    ])
    for (const row of results.table) {
      expect(row.tasks).toBe(2)
      expect(row.accuracy).toBe(row.solved / row.pairs)
      expect(row.cellAccuracy).toBeGreaterThanOrEqual(0)
      expect(row.cellAccuracy).toBeLessThanOrEqual(1)
      for (const id of row.solvedTasks) expect(results.heldOut["evaluation-small"]).toContain(id)
    }
    expect(results.rounds).toHaveLength(1)
    expect(run.stdout).toMatch(/evaluation-small\s+oracle/)
  })
})
