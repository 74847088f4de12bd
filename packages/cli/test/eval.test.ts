import { describe, expect, it } from "@effect/vitest"
import { Testing } from "@seal/gpu"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { expectOneLineError, seal, sealAsync } from "./support/Cli.js"

/**
 * `seal eval` end to end: the knowledge-tiny comparison on the bundled world model (with its
 * probes and the continual-edits matrix), and the --squad protocol's plumbing with a tiny
 * random-weight Hugging Face model.
 */
let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "seal-eval-"))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const readResults = (out: string) => JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8"))

describe("seal eval", () => {
  it("knowledge-tiny: the four rows, probes and a lower-triangular continual-edits matrix", async () => {
    const out = path.join(dir, "tiny")
    const run = await sealAsync([
      "eval",
      "--preset",
      "knowledge-tiny",
      "--seed",
      "1",
      "--out",
      out,
      "--backend",
      "wasm"
    ])
    expect(run.code, run.stderr).toBe(0)
    const results = readResults(out)
    expect(results.table.map((r: { method: string }) => r.method)).toEqual([
      "base",
      "passage-only",
      "self-edit",
      "oracle-self-edit"
    ])
    const row = (m: string) => results.table.find((r: { method: string }) => r.method === m)
    for (const r of results.table) {
      expect(r.passages).toBe(8)
      expect(r.std).toBeGreaterThanOrEqual(0)
      expect(r.secondsPerInnerLoop).toBeGreaterThan(0)
    }
    // The world's model knows nothing about held-out people until it is adapted; restating every
    // fact (the oracle) teaches it most of them.
    expect(row("base").accuracy).toBeLessThan(0.3)
    expect(row("oracle-self-edit").accuracy).toBeGreaterThan(row("base").accuracy + 0.2)
    expect(results.contexts).toHaveLength(8)
    expect(results.probes.openBookHeldOut).toBeGreaterThan(0.5)
    expect(results.continual.map((c: { method: string }) => c.method)).toEqual([
      "passage-only",
      "self-edit",
      "oracle-self-edit"
    ])
    for (const c of results.continual) {
      expect(c.matrix.map((r: Array<number>) => r.length)).toEqual([1, 2, 3, 4])
      expect(c.backwardTransfer).toBeGreaterThanOrEqual(-1)
      expect(c.backwardTransfer).toBeLessThanOrEqual(1)
    }
    // A second run never reuses the directory.
    expectOneLineError(
      seal("eval", "--preset", "knowledge-tiny", "--out", out, "--backend", "wasm"),
      /^seal: RunDirectoryError: .*is not empty/
    )
  }, 300_000)

  it("--squad runs SEAL's protocol on SQuAD passages with a user-supplied model", async () => {
    const model = path.join(dir, "tiny-hf")
    await Effect.runPromise(
      Testing.HfFixture.writeTinyHfCheckpoint(model, {
        config: { ...Testing.HfFixture.tinyLlamaConfig, maxPositions: 2048 },
        seed: 5
      })
    )
    const out = path.join(dir, "squad")
    const run = await sealAsync([
      "eval",
      "--squad",
      "--model",
      model,
      "--passages",
      "1",
      "--self-edit-tokens",
      "8",
      "--out",
      out,
      "--backend",
      "wasm"
    ])
    expect(run.code, run.stderr).toBe(0)
    const results = readResults(out)
    expect(results.task).toBe("squad")
    expect(results.table.map((r: { method: string }) => r.method)).toEqual([
      "base",
      "passage-only",
      "self-edit",
      "oracle-self-edit"
    ])
    expect(results.contexts.map((c: { id: string }) => c.id)).toHaveLength(1)
    expect(results.probes).toBeUndefined()
    // --squad needs a model that reads English.
    expectOneLineError(
      seal("eval", "--squad", "--out", path.join(dir, "never")),
      /^seal: SquadDataError: .*--model/
    )
  }, 300_000)
})
