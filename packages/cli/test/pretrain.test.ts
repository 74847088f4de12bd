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

/** 100 documents, 13 steps of a 16-wide one-layer model: a few seconds on the cpu backend. */
const tinyConfig = {
  world: { pretrainEntities: 8, rlEntities: 4, heldOutEntities: 4 },
  corpus: {
    passageRenderings: 1,
    restatementRepeats: 1,
    qaRepeats: 1,
    selfEditsPerPerson: 1,
    freshSelfEdits: 8,
    openBookDocuments: 8,
    repeatDocuments: 8
  },
  model: { hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32 },
  training: { warmupPasses: 1, mainPasses: 1, batchDocuments: 8, checkpointEverySteps: 5, warmupSteps: 2 }
}

describe("seal pretrain", () => {
  let dir: string
  let configFile: string
  let out: string
  let trained: Run
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "seal-pretrain-cli-"))
    configFile = path.join(dir, "tiny.json")
    fs.writeFileSync(configFile, JSON.stringify(tinyConfig))
    out = path.join(dir, "run")
    trained = await sealAsync(["pretrain", "--config", configFile, "--out", out, "--backend", "cpu"])
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it("pretrains into --out, reports progress per checkpoint and prints the model path", () => {
    expect(trained.code, trained.stderr).toBe(0)
    const model = path.join(out, "model")
    const [summary, probes] = trained.stdout.trim().split("\n")
    expect(summary).toBe(`pretrained 13 steps; model in ${model}`)
    expect(probes).toMatch(/^probes: open-book \d+\.\d% on held-out people, .* restate \d+\.\d% of facts correctly/)
    const probed = JSON.parse(fs.readFileSync(path.join(model, "probes.json"), "utf8"))
    expect(Object.keys(probed).sort()).toEqual([
      "closedBookHeldOut",
      "closedBookPretrain",
      "openBookHeldOut",
      "people",
      "selfEdits"
    ])
    expect(probed.people).toBe(4)
    expect(trained.stderr).toContain(`pretrain: run directory ${out}`)
    const progress = trained.stderr.split("\n").filter((l) => l.startsWith("step "))
    expect(progress.map((l) => /^step (\d+)\/13 {2}loss \d+\.\d{4} {2}lr /.exec(l)?.[1])).toEqual(["5", "10", "13"])
    expect(fs.readdirSync(model).sort()).toEqual([
      "config.json",
      "model.safetensors",
      "probes.json",
      "seal-world.json",
      "tokenizer.json",
      "tokenizer_config.json"
    ])
    const provenance = JSON.parse(fs.readFileSync(path.join(model, "seal-world.json"), "utf8"))
    expect(provenance.config).toMatchObject({ ...tinyConfig, seed: 0 })
    const saved = JSON.parse(fs.readFileSync(path.join(out, "pretrain-config.json"), "utf8"))
    expect(saved).toEqual(provenance.config)
    expect(fs.readFileSync(path.join(out, "progress.jsonl"), "utf8").trim().split("\n")).toHaveLength(13)
  })

  it("refuses to overwrite a run, and --resume of a finished run only rewrites the model", async () => {
    expect(trained.code, trained.stderr).toBe(0)
    const progress = fs.readFileSync(path.join(out, "progress.jsonl"), "utf8")
    const weights = fs.readFileSync(path.join(out, "model", "model.safetensors"))
    const again = await sealAsync(["pretrain", "--config", configFile, "--out", out, "--backend", "cpu"])
    expectRefused(again, new RegExp(`^seal: PretrainError: ${escape(out)}: .*not empty.*--resume`))
    expect(fs.readFileSync(path.join(out, "progress.jsonl"), "utf8")).toBe(progress)

    const resumed = await sealAsync(["pretrain", "--resume", out, "--backend", "cpu"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stderr).toContain(`pretrain: run directory ${out} (resuming)`)
    expect(resumed.stdout.trim().split("\n")[0]).toBe(`pretrained 13 steps; model in ${path.join(out, "model")}`)
    expect(resumed.stderr).not.toMatch(/^step /m)
    expect(fs.readFileSync(path.join(out, "model", "model.safetensors")).equals(weights)).toBe(true)
    expect(fs.readFileSync(path.join(out, "progress.jsonl"), "utf8")).toBe(progress)
  })

  it("bad arguments and config files are one clear line, exit code 1, and leave no run behind", async () => {
    const write = (name: string, text: string) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, text)
      return file
    }
    const badHeads = write("heads.json", JSON.stringify({ model: { numHeads: 3 } }))
    const badRate = write("rate.json", JSON.stringify({ training: { learningRate: -1 } }))
    const notJson = write("not-json.json", "{ \"model\": ")
    const notObject = write("array.json", "[1, 2]")
    const missing = path.join(dir, "missing.json")
    const never = path.join(dir, "never")
    const fresh = (...extra: Array<string>) => sealAsync(["pretrain", "--out", never, "--backend", "cpu", ...extra])
    const cases: Array<[Promise<Run>, RegExp]> = [
      [
        sealAsync(["pretrain", "--resume", path.join(dir, "run"), "--seed", "3"]),
        /^seal: PretrainError: --resume: .*drop --config, --seed, --init and --out/
      ],
      [
        sealAsync(["pretrain", "--resume", path.join(dir, "run"), "--config", configFile]),
        /^seal: PretrainError: --resume: /
      ],
      [
        fresh("--config", badHeads),
        new RegExp(`^seal: PretrainError: ${escape(badHeads)}: model: hiddenSize must be a multiple of numHeads$`)
      ],
      [
        fresh("--config", badRate),
        new RegExp(`^seal: PretrainError: ${escape(badRate)}: training\\.learningRate: .*positive`)
      ],
      [fresh("--config", badRate, "--seed=-1"), /^seal: PretrainError: --seed: must be an integer >= 0, got -1$/],
      [fresh("--workers", "0"), /^seal: PretrainError: --workers: must be an integer >= 1, got 0$/],
      [fresh("--config", notJson), new RegExp(`^seal: CheckpointError: ${escape(notJson)}: not JSON$`)],
      [fresh("--config", notObject), new RegExp(`^seal: PretrainError: ${escape(notObject)}: must be an object$`)],
      [fresh("--config", missing), new RegExp(`^seal: CheckpointError: ${escape(missing)}: cannot read`)],
      [
        sealAsync(["pretrain", "--resume", never, "--backend", "cpu"]),
        new RegExp(`^seal: PretrainError: ${escape(path.join(never, "pretrain-config.json"))}: no pretraining run`)
      ]
    ]
    const runs = await Promise.all(cases.map(([run]) => run))
    runs.forEach((run, i) => expectRefused(run, cases[i]![1]))
    expect(fs.existsSync(never)).toBe(false)
    // The finished run was left alone by the refused --resume calls.
    expect(fs.readdirSync(path.join(dir, "run", "checkpoints"))).toEqual(["step-000013"])
  })
})
