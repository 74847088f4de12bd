import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import { expectOneLineError, type Run, sealAsync } from "./support/Cli.js"

/**
 * `seal run` on few-shot ARC end to end, on the cpu backend, with a tiny ARC model pretrained
 * here (the bundled models/arc-base is not needed): the results table and the run directory, a
 * SIGKILL mid-round and `--resume` to the identical results.json, GRPO, and bad configs refused
 * before any work.
 */

/**
 * A 16-wide one-layer model with a 224-token context, one pass of one view (about 15 s on a
 * loaded machine). 224 is the smallest context in which the first two `evaluation-small` tasks
 * have a prompt that fits (at 192 the held-out rows would predict nothing at all), and one of the
 * two first RL tasks trains and predicts (the other is refused: no training sequence fits).
 */
const tinyModel = {
  model: { hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 224 },
  training: { passes: 1, viewsPerTask: 1, batchSequences: 4, checkpointEverySteps: 100, warmupSteps: 1 }
}

const oracleCandidate = {
  data_generation: {
    use_basic_augmentations: false,
    use_size_augmentations: false,
    use_chain_augmentations: false,
    use_repeat_augmentations: false
  },
  training: { strategy: "train_using_output_tokens", learning_rate: 3e-3, num_train_epochs: 1 }
}

/**
 * Two held-out tasks, two RL tasks with two samples each, one round. Rewards are scored two at a
 * time (`evalBatch: 2`), so a round records its rewards in two appends and can be killed between
 * them. `threshold: 0` keeps every sample (the tiny model earns no reward), so the round really
 * updates the generator and the `seal` row is the updated one's.
 */
const arcExperiment = (model: string) => ({
  task: "arc",
  model,
  heldOutSets: ["evaluation-small"],
  heldOutTasks: 2,
  rlTasks: 2,
  rounds: 1,
  restEm: { sampling: { k: 2, evalBatch: 2 }, selection: "threshold", threshold: 0 },
  grpo: { sampling: { k: 2, evalBatch: 2 } },
  evaluation: {
    selfEdits: { samples: 1 },
    innerLoop: { maxSequences: 2, views: 1, rank: 4 },
    oracleCandidates: [oracleCandidate]
  }
})

/** The RL split of the bundled data (ArcSplits.ts). */
const rlSplit = 41

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const events = (runDir: string): Array<{ type: string; [key: string]: unknown }> => {
  try {
    return fs.readFileSync(path.join(runDir, "events.jsonl"), "utf8").split("\n").filter((l) => l.trim() !== "")
      .flatMap((l) => {
        try {
          return [JSON.parse(l)]
        } catch {
          return [] // a line being appended
        }
      })
  } catch {
    return []
  }
}

const rewardEvents = (runDir: string) => events(runDir).filter((e) => e.type === "reward").length

/** A JSON value without its `secondsPerInnerLoop` fields (the only ones that may differ). */
const untimed = (value: unknown): unknown =>
  JSON.parse(JSON.stringify(value, (key, v) => (key === "secondsPerInnerLoop" ? undefined : v)))

const read = (file: string) => fs.readFileSync(file, "utf8")
const readJson = (file: string) => JSON.parse(read(file))

interface Row {
  readonly set: string
  readonly method: string
  readonly accuracy: number
  readonly solved: number
  readonly pairs: number
  readonly tasks: number
  readonly cellAccuracy: number
  readonly solutionLikelihood: number
  readonly solvedTasks: ReadonlyArray<string>
  readonly refused: number
  readonly config?: string
}

let dir: string
let model: string
let configFile: string
let wholeDir: string
let whole: Run
let grpoDir: string
let grpo: Run
const runArgs = (out: string) => ["run", "--config", configFile, "--out", out, "--backend", "cpu"]

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "seal-run-arc-"))
  const modelConfig = path.join(dir, "tiny-model.json")
  fs.writeFileSync(modelConfig, JSON.stringify(tinyModel))
  const pretrained = await sealAsync([
    "pretrain",
    "--task",
    "arc",
    "--config",
    modelConfig,
    "--out",
    path.join(dir, "pretrain"),
    "--backend",
    "cpu"
  ])
  if (pretrained.code !== 0) throw new Error(`seal pretrain --task arc failed:\n${pretrained.stderr}`)
  model = path.join(dir, "pretrain", "model")
  configFile = path.join(dir, "arc.json")
  fs.writeFileSync(configFile, JSON.stringify(arcExperiment(model)))
  wholeDir = path.join(dir, "whole")
  grpoDir = path.join(dir, "grpo")
  // Two processes at once: on a 2-core machine the GRPO run costs (almost) no extra time.
  const [wholeRun, grpoRun] = await Promise.all([
    sealAsync([...runArgs(wholeDir), "--workers", "2"]),
    sealAsync([...runArgs(grpoDir), "--optimizer", "grpo"])
  ])
  whole = wholeRun
  grpo = grpoRun
}, 300_000)
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("seal run on an ARC config", () => {
  it("writes the table for the held-out set, the rounds and the run directory", () => {
    expect(whole.code, whole.stderr).toBe(0)
    expect(whole.stderr).toContain(`run: custom-arc, rest-em, 1 round(s), seed 0, directory ${wholeDir}`)
    const results = readJson(path.join(wholeDir, "results.json"))
    expect(results).toMatchObject({
      command: "run",
      task: "arc",
      experiment: "custom-arc",
      optimizer: "rest-em",
      reward: "cells",
      seed: 0
    })
    expect(Object.keys(results.heldOut)).toEqual(["evaluation-small"])
    const heldOut: Array<string> = results.heldOut["evaluation-small"]
    expect(heldOut).toHaveLength(2)
    expect(results.rlTasks).toHaveLength(2)
    for (const id of [...heldOut, ...results.rlTasks]) expect(id).toMatch(/^[0-9a-f]{8}$/)
    expect(new Set([...heldOut, ...results.rlTasks]).size).toBe(4)

    const table: Array<Row> = results.table
    expect(table.map((r) => [r.set, r.method])).toEqual([
      ["evaluation-small", "icl"],
      ["evaluation-small", "self-edit"],
      ["evaluation-small", "seal"],
      ["evaluation-small", "oracle"]
    ])
    for (const row of table) {
      expect(row.tasks, row.method).toBe(2)
      // icl and oracle: one pair per task; self-edit and seal: `samples` (1) configs per task.
      expect(row.pairs, row.method).toBe(2)
      expect(row.solved).toBeGreaterThanOrEqual(0)
      expect(row.solved).toBeLessThanOrEqual(row.pairs)
      expect(row.accuracy).toBeCloseTo(row.solved / row.pairs, 12)
      for (const x of [row.accuracy, row.cellAccuracy, row.solutionLikelihood]) {
        expect(x).toBeGreaterThanOrEqual(0)
        expect(x).toBeLessThanOrEqual(1)
      }
      // Every pair gets a probability for the true outputs, however wrong its attempts.
      if (row.refused < row.pairs) expect(row.solutionLikelihood).toBeGreaterThan(0)
      expect(row.refused).toBeGreaterThanOrEqual(0)
      expect(row.refused).toBeLessThanOrEqual(row.pairs)
      for (const id of row.solvedTasks) expect(heldOut).toContain(id)
      expect(row.solvedTasks.length).toBeLessThanOrEqual(row.solved)
      // results.json holds no timing: it must not depend on how fast the machine was.
      expect(row).not.toHaveProperty("secondsPerInnerLoop")
    }
    expect(table[0]!.refused).toBe(0)
    expect(table[3]!.config).toBe("none|output_tokens|lr=0.003|epochs=1")
    expect(table.slice(0, 3).every((r) => r.config === undefined)).toBe(true)

    expect(results.rounds).toHaveLength(1)
    expect(results.rounds[0]).toMatchObject({ round: 1, contexts: 2, samples: 4, acceptance: 1 })
    expect(results.rounds[0].updateSteps).toBeGreaterThan(0)

    // Every reward evaluation is an event (2 tasks x 2 samples), then the round's one update.
    const log = events(wholeDir)
    const rewards = log.filter((e) => e.type === "reward")
    expect(rewards).toHaveLength(4)
    expect(rewards.map((e) => `${e.contextId}/${e.sample}`).sort()).toEqual(
      results.rlTasks.flatMap((id: string) => [`${id}/0`, `${id}/1`]).sort()
    )
    for (const e of rewards) {
      expect(e.round).toBe(1)
      expect(e.reward).toBeGreaterThanOrEqual(0)
      expect(e.reward).toBeLessThanOrEqual(1)
      // The self-edit is a tool config (the grammar mask makes every sample one).
      expect(JSON.parse(e.selfEdit as string)).toHaveProperty("training")
    }
    expect(log.filter((e) => e.type === "update")).toMatchObject([{ round: 1, examples: 4 }])

    const saved = readJson(path.join(wholeDir, "config.json"))
    expect(saved).toMatchObject({ experiment: arcExperiment(model), seed: 0, model })
    expect(saved.experiment.optimizer).toBe("rest-em")
    const baselines = readJson(path.join(wholeDir, "baselines.json"))
    expect(Object.keys(baselines)).toEqual(["evaluation-small"])
    expect(baselines["evaluation-small"].icl.method).toBe("icl")
    expect(baselines["evaluation-small"].candidates).toHaveLength(1)
    expect(readJson(path.join(wholeDir, "timings.json"))).toMatchObject({ backend: "cpu", innerLoopWorkers: 2 })
    for (
      const f of [
        "rounds/round-00/eval.json",
        "rounds/round-01/eval.json",
        "rounds/round-01/round.json",
        "rounds/round-01/policy/adapter_model.safetensors"
      ]
    ) expect(fs.existsSync(path.join(wholeDir, f)), f).toBe(true)

    // The table on stdout, a line per row, then where the results are.
    const lines = whole.stdout.trim().split("\n")
    expect(lines).toHaveLength(6)
    expect(lines[0]).toMatch(/^set +method +solved +cells +p\(answer\)$/)
    table.forEach((row, i) => {
      expect(lines[i + 1]).toMatch(
        new RegExp(
          `^evaluation-small +${row.method} .* ${
            row.solutionLikelihood.toFixed(3)
          } +\\(${row.solved}/${row.pairs} pairs, 2 tasks\\)$`
        )
      )
    })
    expect(lines[5]).toBe(`results: ${path.join(wholeDir, "results.json")}`)
  })

  it("killed with SIGKILL mid-round, --resume ends with the identical results.json, whatever the workers", async () => {
    expect(whole.code, whole.stderr).toBe(0)
    // The same command in another directory, in this process instead of two worker threads,
    // killed once the round has recorded some rewards.
    const killed = path.join(dir, "killed")
    const interrupted = await sealAsync([...runArgs(killed), "--workers", "1"], (child) => {
      const timer = setInterval(() => {
        if (rewardEvents(killed) >= 1) {
          clearInterval(timer)
          child.kill("SIGKILL")
        }
      }, 20)
      child.on("close", () => clearInterval(timer))
    })
    expect(interrupted.signal, interrupted.stderr).toBe("SIGKILL")
    const recorded = rewardEvents(killed)
    expect(recorded).toBeGreaterThanOrEqual(1)
    expect(recorded).toBeLessThan(4)
    expect(fs.existsSync(path.join(killed, "results.json"))).toBe(false)
    expect(fs.existsSync(path.join(killed, "rounds", "round-01", "round.json"))).toBe(false)

    const resumed = await sealAsync(["run", "--resume", killed, "--backend", "cpu", "--workers", "1"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(readJson(path.join(killed, "timings.json")).innerLoopWorkers).toBe(1)
    expect(resumed.stderr).toContain(`run: custom-arc, rest-em, 1 round(s), seed 0, directory ${killed}`)
    // The baselines came from the killed process, the rest from the resumed one: the same
    // results as the uninterrupted run in its own directory.
    expect(read(path.join(killed, "results.json"))).toBe(read(path.join(wholeDir, "results.json")))
    expect(untimed(readJson(path.join(killed, "baselines.json")))).toEqual(
      untimed(readJson(path.join(wholeDir, "baselines.json")))
    )
    expect(resumed.stdout.replaceAll(killed, wholeDir)).toBe(whole.stdout)
    // Nothing recorded before the kill was evaluated again; the round updated once.
    expect(rewardEvents(killed)).toBe(4)
    expect(events(killed).filter((e) => e.type === "update")).toHaveLength(1)
  })

  it("--optimizer grpo runs the same experiment with GRPO", () => {
    expect(whole.code, whole.stderr).toBe(0)
    const out = grpoDir
    expect(grpo.code, grpo.stderr).toBe(0)
    expect(grpo.stderr).toContain(`run: custom-arc, grpo, 1 round(s), seed 0, directory ${out}`)
    expect(readJson(path.join(out, "config.json")).experiment.optimizer).toBe("grpo")
    const results = readJson(path.join(out, "results.json"))
    const reference = readJson(path.join(wholeDir, "results.json"))
    expect(results.optimizer).toBe("grpo")
    expect(results.heldOut).toEqual(reference.heldOut)
    expect(results.rlTasks).toEqual(reference.rlTasks)
    const table: Array<Row> = results.table
    expect(table.map((r) => r.method)).toEqual(["icl", "self-edit", "seal", "oracle"])
    // Every row but `seal` is computed before RL, so it cannot depend on the optimizer.
    const byMethod = (rows: Array<Row>, method: string) => rows.find((r) => r.method === method)
    for (const method of ["icl", "self-edit", "oracle"]) {
      expect(byMethod(table, method), method).toEqual(byMethod(reference.table, method))
    }
    expect(results.rounds).toHaveLength(1)
    expect(results.rounds[0]).toMatchObject({ round: 1, contexts: 2, samples: 4 })
    expect(rewardEvents(out)).toBe(4)
    const updates = events(out).filter((e) => e.type === "update")
    expect(updates).toHaveLength(1)
    expect(updates[0]).toHaveProperty("clippedFraction")
    expect(updates[0]).toHaveProperty("meanKl")
  })

  it("refuses bad configs before any work, naming the field", async () => {
    expect(whole.code, whole.stderr).toBe(0)
    const write = (name: string, value: unknown) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, JSON.stringify(value))
      return file
    }
    const base = arcExperiment(model)
    const typo = write("typo.json", { ...base, round: 3 })
    const many = write("many.json", { ...base, rlTasks: rlSplit + 1 })
    const nowhere = path.join(dir, "no-model")
    const noModel = write("no-model.json", { ...base, model: nowhere })
    const views = write("views.json", { ...base, evaluation: { ...base.evaluation, innerLoop: { views: 9 } } })
    const worldModel = fileURLToPath(new URL("../../../models/world-base", import.meta.url))
    const notArc = write("not-arc.json", { ...base, model: worldModel })
    const out = path.join(dir, "never")
    const fresh = (file: string) => sealAsync(["run", "--config", file, "--out", out, "--backend", "cpu"])
    const before = fs.readdirSync(wholeDir, { recursive: true }).map(String).sort()
    const wholeEvents = read(path.join(wholeDir, "events.jsonl"))
    const cases: Array<[Promise<Run>, RegExp]> = [
      [fresh(typo), new RegExp(`^seal: ConfigError: ${escape(typo)} \\(round\\): is unexpected`)],
      [
        fresh(many),
        new RegExp(
          `^seal: ConfigError: ${escape(many)} \\(rlTasks\\): ${rlSplit + 1} asked, but the RL split has ${rlSplit}$`
        )
      ],
      [
        fresh(noModel),
        new RegExp(`^seal: ConfigError: ${escape(noModel)} \\(model\\): ${escape(nowhere)} is not a model directory$`)
      ],
      [
        fresh(views),
        new RegExp(`^seal: ConfigError: ${escape(views)} \\(evaluation\\.innerLoop\\.views\\): .*between 1 and 8`)
      ],
      [
        fresh(notArc),
        new RegExp(
          `^seal: ConfigError: ${escape(notArc)} \\(model\\): .*vocabulary of 252, not the ARC vocabulary's 42$`
        )
      ],
      [
        sealAsync(["run", "--resume", wholeDir, "--seed", "3", "--backend", "cpu"]),
        /^seal: ConfigError: --resume: .*drop --config, --out, --optimizer and --seed$/
      ],
      [
        sealAsync(["run", "--resume", wholeDir, "--optimizer", "grpo", "--backend", "cpu"]),
        /^seal: ConfigError: --resume: .*drop --config, --out, --optimizer and --seed$/
      ],
      [
        sealAsync(["run", "--config", configFile, "--out", out, "--backend", "cpu", "--workers", "0"]),
        /^seal: ConfigError: --workers: must be an integer >= 1, got 0$/
      ],
      [
        sealAsync(["run", "--preset", "knowledge-tiny", "--out", out, "--backend", "cpu", "--workers", "2"]),
        /^seal: ConfigError: --workers: only ARC runs train in worker threads/
      ]
    ]
    const runs = await Promise.all(cases.map(([run]) => run))
    runs.forEach((run, i) => {
      expectOneLineError(run, cases[i]![1])
      // Refused before the run was even announced.
      expect(run.stderr).not.toMatch(/^run: /m)
      expect(run.stdout).toBe("")
    })
    expect(fs.existsSync(out)).toBe(false)
    // The finished run was left alone by the refused --resume.
    expect(fs.readdirSync(wholeDir, { recursive: true }).map(String).sort()).toEqual(before)
    expect(read(path.join(wholeDir, "events.jsonl"))).toBe(wholeEvents)
  })
})
