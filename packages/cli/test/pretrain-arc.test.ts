import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { expectOneLineError, type Run, sealAsync } from "./support/Cli.js"

/** A refusal: the one-line error, and no training step was run. */
const expectRefused = (run: Run, pattern: RegExp) => {
  expectOneLineError(run, pattern)
  expect(run.stderr).not.toMatch(/^step /m)
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * A 16-wide one-layer model with a 64-token context: only the smallest pretraining tasks (3x3
 * grids and the like) have two pairs that fit, so one pass of one view is a dozen sequences and
 * a few steps. About 2 s on the cpu backend, most of it starting the CLI.
 */
const tinyConfig = {
  model: { hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 64 },
  training: { passes: 1, viewsPerTask: 1, batchSequences: 4, checkpointEverySteps: 2, warmupSteps: 1 }
}

/** The pretraining split of the bundled data (ArcSplits.ts). */
const pretrainTasks = 359

describe("seal pretrain --task arc", () => {
  let dir: string
  let configFile: string
  let out: string
  let trained: Run
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "seal-pretrain-arc-cli-"))
    configFile = path.join(dir, "tiny.json")
    fs.writeFileSync(configFile, JSON.stringify(tinyConfig))
    out = path.join(dir, "run")
    trained = await sealAsync(["pretrain", "--task", "arc", "--config", configFile, "--out", out, "--backend", "cpu"])
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it("pretrains on the tasks that fit, prints the summary and writes the model with its provenance", () => {
    expect(trained.code, trained.stderr).toBe(0)
    const model = path.join(out, "model")
    const summary = trained.stdout.trim().split("\n")
    expect(summary).toHaveLength(1)
    const match = /^pretrained (\d+) steps on (\d+) ARC tasks \((\d+) tokens\); model in (.*)$/.exec(summary[0]!)
    expect(match, trained.stdout).not.toBeNull()
    const [steps, tasks, tokens] = [Number(match![1]), Number(match![2]), Number(match![3])]
    expect(match![4]).toBe(model)

    expect(fs.readdirSync(model).sort()).toEqual([
      "config.json",
      "model.safetensors",
      "seal-arc.json",
      "tokenizer.json",
      "tokenizer_config.json"
    ])
    const provenance = JSON.parse(fs.readFileSync(path.join(model, "seal-arc.json"), "utf8"))
    expect(provenance.config).toMatchObject({ ...tinyConfig, seed: 0 })
    expect(JSON.parse(fs.readFileSync(path.join(out, "pretrain-config.json"), "utf8"))).toEqual(provenance.config)
    // Only a few tasks fit the 64-token context; the rest are recorded as skipped.
    expect(tasks).toBe(provenance.splits.pretrain.length)
    expect(tasks).toBeGreaterThanOrEqual(2)
    expect(tasks).toBeLessThan(30)
    expect(tasks + provenance.splits.pretrainSkipped.length).toBe(pretrainTasks)
    expect(provenance.splits.rl).toHaveLength(41)
    expect(provenance.splits["evaluation-seal"]).toHaveLength(10)
    expect(provenance.splits["evaluation-small"]).toHaveLength(41)
    expect(provenance.stats).toMatchObject({ steps, plannedTokens: tokens, sequences: tasks })
    expect(steps).toBe(Math.ceil(tasks / tinyConfig.training.batchSequences))

    // Progress: a line per checkpoint on stderr, a line per step in progress.jsonl.
    expect(trained.stderr).toContain(`pretrain: ARC, run directory ${out}`)
    const progress = trained.stderr.split("\n").filter((l) => l.startsWith("step "))
    const expected = Array.from({ length: Math.ceil(steps / 2) }, (_, i) => String(Math.min(2 * (i + 1), steps)))
    expect(progress.map((l) => new RegExp(`^step (\\d+)/${steps} {2}loss \\d+\\.\\d{4}`).exec(l)?.[1])).toEqual(
      expected
    )
    expect(fs.readFileSync(path.join(out, "progress.jsonl"), "utf8").trim().split("\n")).toHaveLength(steps)
    expect(fs.readdirSync(path.join(out, "checkpoints"))).toEqual([`step-${String(steps).padStart(6, "0")}`])
  })

  it("--resume of the finished run trains nothing and leaves the model as it was", async () => {
    expect(trained.code, trained.stderr).toBe(0)
    const weights = fs.readFileSync(path.join(out, "model", "model.safetensors"))
    const progress = fs.readFileSync(path.join(out, "progress.jsonl"), "utf8")
    const resumed = await sealAsync(["pretrain", "--task", "arc", "--resume", out, "--backend", "cpu"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stderr).toContain(`pretrain: ARC, run directory ${out} (resuming)`)
    expect(resumed.stderr).not.toMatch(/^step /m)
    expect(resumed.stdout.trim()).toBe(trained.stdout.trim())
    expect(fs.readFileSync(path.join(out, "model", "model.safetensors")).equals(weights)).toBe(true)
    expect(fs.readFileSync(path.join(out, "progress.jsonl"), "utf8")).toBe(progress)
  })

  it("a bad config or --resume with --seed is one clear line, exit code 1, before any work", async () => {
    const write = (name: string, value: unknown) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, JSON.stringify(value))
      return file
    }
    const misspelt = write("misspelt.json", { model: { ...tinyConfig.model, hiddenSze: 16 } })
    const noPasses = write("no-passes.json", { training: { passes: 0 } })
    const worldConfig = write("world.json", { training: { mainPasses: 1 } })
    const never = path.join(dir, "never")
    const fresh = (file: string, ...extra: Array<string>) =>
      sealAsync(["pretrain", "--task", "arc", "--config", file, "--out", never, "--backend", "cpu", ...extra])
    const checkpoints = fs.readdirSync(path.join(out, "checkpoints"))
    const cases: Array<[Promise<Run>, RegExp]> = [
      [fresh(misspelt), new RegExp(`^seal: PretrainError: ${escape(misspelt)}: model\\.hiddenSze: is unexpected`)],
      [fresh(noPasses), new RegExp(`^seal: PretrainError: ${escape(noPasses)}: training\\.passes: .*positive`)],
      [
        fresh(worldConfig),
        new RegExp(`^seal: PretrainError: ${escape(worldConfig)}: training\\.mainPasses: is unexpected`)
      ],
      [
        sealAsync(["pretrain", "--task", "arc", "--resume", out, "--seed", "3", "--backend", "cpu"]),
        /^seal: PretrainError: --resume: .*drop --config, --seed, --init and --out/
      ],
      [
        sealAsync([
          "pretrain",
          "--task",
          "arc",
          "--resume",
          out,
          "--init",
          path.join(out, "model"),
          "--backend",
          "cpu"
        ]),
        /^seal: PretrainError: --resume: .*drop --config, --seed, --init and --out/
      ]
    ]
    const runs = await Promise.all(cases.map(([run]) => run))
    runs.forEach((run, i) => {
      expectRefused(run, cases[i]![1])
      // Refused before the run directory was even named.
      expect(run.stderr).not.toContain("run directory")
      expect(run.stdout).toBe("")
    })
    expect(fs.existsSync(never)).toBe(false)
    // --init of a model of another shape: refused, naming init and the field, leaving no directory.
    const wider = write("wider.json", { ...tinyConfig, model: { ...tinyConfig.model, hiddenSize: 32 } })
    const mismatched = await fresh(wider, "--init", path.join(out, "model"))
    expectRefused(mismatched, /^seal: PretrainError: init: .*model has hiddenSize 16, the run's model needs 32$/)
    expect(fs.existsSync(never)).toBe(false)
    // The finished run was left alone by the refused --resume.
    expect(fs.readdirSync(path.join(out, "checkpoints"))).toEqual(checkpoints)
  })
})
