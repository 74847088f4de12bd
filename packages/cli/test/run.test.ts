import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { expectOneLineError, type Run, seal, sealAsync } from "./support/Cli.js"

/**
 * `seal run` end to end on the bundled world model with the knowledge-tiny preset: results, the
 * run directory, a SIGKILL mid-round and `--resume` to the identical results.json, and bad
 * configs refused before any work.
 */
let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "seal-run-"))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const rewardEvents = (runDir: string) => {
  try {
    return fs.readFileSync(path.join(runDir, "events.jsonl"), "utf8").split("\n").filter((l) =>
      l.includes("\"type\":\"reward\"")
    ).length
  } catch {
    return 0
  }
}

describe("seal run --preset knowledge-tiny", () => {
  it("writes the table, resumes after SIGKILL mid-round to the identical results.json", async () => {
    const whole = path.join(dir, "whole")
    const killed = path.join(dir, "killed")
    const args = (
      out: string
    ) => ["run", "--preset", "knowledge-tiny", "--seed", "3", "--out", out, "--backend", "wasm"]

    const first = await sealAsync(args(whole))
    expect(first.code, first.stderr).toBe(0)
    const results = JSON.parse(fs.readFileSync(path.join(whole, "results.json"), "utf8"))
    expect(results.table.map((r: { method: string }) => r.method)).toEqual([
      "base",
      "passage-only",
      "self-edit",
      "seal-round-1",
      "oracle-self-edit"
    ])
    for (const row of results.table) {
      expect(row.accuracy).toBeGreaterThanOrEqual(0)
      expect(row.accuracy).toBeLessThanOrEqual(1)
      expect(row.passages).toBe(8)
    }
    expect(results.rounds).toHaveLength(1)
    expect(results.rounds[0].samples).toBe(32)
    for (const f of ["config.json", "events.jsonl", "baselines.json", "timings.json", "rounds/round-01/round.json"]) {
      expect(fs.existsSync(path.join(whole, f)), f).toBe(true)
    }
    expect(rewardEvents(whole)).toBe(32)

    // The same run, killed once it has recorded some of round 1's rewards but not all.
    const interrupted: Run = await sealAsync(args(killed), (child) => {
      const timer = setInterval(() => {
        if (rewardEvents(killed) >= 4) {
          clearInterval(timer)
          child.kill("SIGKILL")
        }
      }, 20)
      child.on("close", () => clearInterval(timer))
    })
    expect(interrupted.signal).toBe("SIGKILL")
    const recorded = rewardEvents(killed)
    expect(recorded).toBeGreaterThanOrEqual(4)
    expect(recorded).toBeLessThan(32)
    expect(fs.existsSync(path.join(killed, "results.json"))).toBe(false)

    const resumed = await sealAsync(["run", "--resume", killed, "--backend", "wasm"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(fs.readFileSync(path.join(killed, "results.json"), "utf8")).toBe(
      fs.readFileSync(path.join(whole, "results.json"), "utf8")
    )
    // Nothing recorded before the kill was evaluated again.
    expect(rewardEvents(killed)).toBe(32)

    // Ctrl-C (SIGINT): the run stops at the next point it can be interrupted (between batched
    // passes), exits 130 without a results.json, and resumes to the same results.
    const interruptedDir = path.join(dir, "interrupted")
    const stopped = await sealAsync(args(interruptedDir), (child) => {
      const timer = setInterval(() => {
        if (rewardEvents(interruptedDir) >= 4) {
          clearInterval(timer)
          child.kill("SIGINT")
        }
      }, 20)
      child.on("close", () => clearInterval(timer))
    })
    expect(stopped.code === 130 || stopped.signal === "SIGINT", `${stopped.code} ${stopped.signal}`).toBe(true)
    expect(fs.existsSync(path.join(interruptedDir, "results.json"))).toBe(false)
    const again = await sealAsync(["run", "--resume", interruptedDir, "--backend", "wasm"])
    expect(again.code, again.stderr).toBe(0)
    expect(fs.readFileSync(path.join(interruptedDir, "results.json"), "utf8")).toBe(
      fs.readFileSync(path.join(whole, "results.json"), "utf8")
    )
  }, 600_000)

  it("the generator can be another model of the same world (and must be)", async () => {
    const bundled = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..", "..", "models", "world-base")
    const copy = path.join(dir, "generator")
    fs.cpSync(bundled, copy, { recursive: true })
    const config = path.join(dir, "two-roles.json")
    fs.writeFileSync(
      config,
      JSON.stringify({
        generatorModel: copy,
        heldOutContexts: 2,
        rlContexts: 4,
        rounds: 1,
        restEm: { sampling: { k: 2 } },
        evaluation: { selfEdits: { samples: 1 } }
      })
    )
    const out = path.join(dir, "two-roles")
    const run = await sealAsync(["run", "--config", config, "--out", out, "--backend", "wasm"])
    expect(run.code, run.stderr).toBe(0)
    const saved = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"))
    expect(saved.generatorModel).toBe(copy)
    expect(saved.model).toBe(path.resolve(bundled))
    expect(fs.existsSync(path.join(out, "rounds", "round-01", "policy", "adapter_model.safetensors"))).toBe(true)

    // A generator from another world is refused before any work.
    const other = path.join(dir, "other-world")
    fs.cpSync(bundled, other, { recursive: true })
    const provenance = JSON.parse(fs.readFileSync(path.join(other, "seal-world.json"), "utf8"))
    provenance.config.worldSeed = 1
    fs.writeFileSync(path.join(other, "seal-world.json"), JSON.stringify(provenance))
    const mismatched = path.join(dir, "mismatched.json")
    fs.writeFileSync(mismatched, JSON.stringify({ generatorModel: other }))
    expectOneLineError(
      seal("run", "--config", mismatched, "--out", path.join(dir, "never-2")),
      /^seal: ConfigError: .*mismatched\.json \(generatorModel\): .*another world/
    )
    expect(fs.existsSync(path.join(dir, "never-2"))).toBe(false)
  }, 300_000)

  it("refuses bad configs before any work, naming the field", async () => {
    const write = (name: string, value: unknown) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, JSON.stringify(value))
      return file
    }
    const out = path.join(dir, "never")
    const cases: Array<[Promise<Run>, RegExp]> = [
      [
        sealAsync(["run", "--config", write("k.json", { restEm: { sampling: { k: -2 } } }), "--out", out]),
        /^seal: ConfigError: .*k\.json \(restEm\.sampling\.k\): /
      ],
      [
        sealAsync(["run", "--config", write("typo.json", { round: 3 }), "--out", out]),
        /^seal: ConfigError: .*typo\.json \(round\): .*unexpected/
      ],
      [
        sealAsync(["run", "--config", write("many.json", { heldOutContexts: 500 }), "--out", out]),
        /^seal: ConfigError: .*many\.json \(heldOutContexts\): 500 asked, but the model's world has 50/
      ],
      [
        sealAsync(["run", "--config", write("model.json", { model: path.join(dir, "no-model") }), "--out", out]),
        /^seal: WorldModelError: .*no-model.*seal-world\.json: missing/
      ],
      [
        sealAsync(["run", "--config", path.join(dir, "absent.json"), "--out", out]),
        /^seal: RunDirectoryError: .*absent\.json: no such file/
      ]
    ]
    const runs = await Promise.all(cases.map(([run]) => run))
    runs.forEach((run, i) => expectOneLineError(run, cases[i]![1]))
    expect(fs.existsSync(out)).toBe(false)
    const preset = await sealAsync(["run", "--preset", "knowledge-huge", "--out", out])
    expect(preset.code).not.toBe(0)
    expect(preset.stdout + preset.stderr).toMatch(/knowledge-tiny/)
    expect(fs.existsSync(out)).toBe(false)
  }, 120_000)
})
