import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { expectOneLineError, type Run, seal, sealAsync } from "./support/Cli.js"

// Settings that make stories260K memorise an unseen sentence (see gpu/test/lora-stories.test.ts).
const sentence = "The purple robot named Zibbo sang to the moon every Tuesday."
const promptText = "The purple robot"

describe("seal lora-train", () => {
  let dir: string
  let data: string
  let adapter: string
  let trained: Run
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "seal-lora-cli-"))
    data = path.join(dir, "sentence.jsonl")
    fs.writeFileSync(data, JSON.stringify({ text: sentence }) + "\n")
    adapter = path.join(dir, "adapter")
    trained = await sealAsync([
      "lora-train",
      ...["--data", data, "--out", adapter, "--steps", "30", "--lr", "1e-2", "--rank", "8", "--alpha", "16"],
      ...["--targets", "all", "--seed", "1"]
    ])
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it("trains on one sentence, reports progress, saves a PEFT adapter and generate --adapter recites it", () => {
    expect(trained.code, trained.stderr).toBe(0)
    const progress = trained.stderr.split("\n").filter((l) => l.startsWith("step "))
    expect(progress).toHaveLength(30)
    expect(progress[0]).toMatch(/^step 1\/30 {2}loss \d+\.\d{4} {2}lr 1\.00e-2 {2}\d+ tokens\/s$/)
    const summary = trained.stdout.trim()
    expect(summary).toMatch(/^trained lora-[0-9a-f]{16}: 30 steps, final loss \d+\.\d{4}, [\d.]+ s, \d+ tokens\/s/)
    expect(Number(/final loss ([\d.]+)/.exec(summary)![1])).toBeLessThan(0.05)
    expect(fs.readdirSync(adapter).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"])
    const config = JSON.parse(fs.readFileSync(path.join(adapter, "adapter_config.json"), "utf8"))
    expect(config).toMatchObject({ peft_type: "LORA", r: 8, lora_alpha: 16, seal: { trainedSteps: 30 } })

    const args = ["generate", "--prompt", promptText, "--max-tokens", "24", "--json"]
    const withAdapter = seal(...args, "--adapter", adapter)
    expect(withAdapter.code, withAdapter.stderr).toBe(0)
    const out = JSON.parse(withAdapter.stdout.trim()) as { adapter: string; text: string }
    expect((promptText + out.text).startsWith(sentence)).toBe(true)
    expect(summary).toContain(out.adapter)
    // Without the adapter the model says something else.
    const plain = JSON.parse(seal(...args).stdout.trim()) as { text: string }
    expect((promptText + plain.text).startsWith(sentence)).toBe(false)
  })

  it("generate refuses an adapter of another model, one of unknown parentage and a missing one", async () => {
    expect(trained.code).toBe(0)
    const configPath = path.join(adapter, "adapter_config.json")
    const config = JSON.parse(fs.readFileSync(configPath, "utf8"))
    const copy = (name: string, json: unknown) => {
      const target = path.join(dir, name)
      fs.mkdirSync(target)
      fs.copyFileSync(path.join(adapter, "adapter_model.safetensors"), path.join(target, "adapter_model.safetensors"))
      fs.writeFileSync(path.join(target, "adapter_config.json"), JSON.stringify(json))
      return target
    }
    const stale = copy("stale", { ...config, seal: { ...config.seal, parentModelHash: "f".repeat(64) } })
    const { seal: _, ...peftOnly } = config
    const foreign = copy("foreign", peftOnly)
    const gen = (...extra: Array<string>) =>
      sealAsync(["generate", "--prompt", promptText, "--max-tokens", "4", ...extra])
    const [staleRun, unknownRun, allowedRun, missingRun] = await Promise.all([
      gen("--adapter", stale),
      gen("--adapter", foreign),
      gen("--adapter", foreign, "--allow-unknown-parent"),
      gen("--adapter", path.join(dir, "nowhere"))
    ])
    expectOneLineError(
      staleRun!,
      /^seal: AdapterIoError: .*stale.*adapter_config\.json \(seal\.parentModelHash\): .*ffffffffffff/
    )
    expectOneLineError(unknownRun!, /^seal: AdapterIoError: .*foreign.*--allow-unknown-parent/)
    expect(allowedRun!.code, allowedRun!.stderr).toBe(0)
    expect(allowedRun!.stdout.startsWith("The purple robot named")).toBe(true)
    expectOneLineError(missingRun!, /^seal: AdapterIoError: .*nowhere.*adapter_config\.json: no such file/)
  })

  it("bad input is one clear line and a non-zero exit, and leaves no adapter behind", async () => {
    const write = (name: string, text: string) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, text)
      return file
    }
    const empty = write("empty.jsonl", "")
    const notJson = write("not-json.jsonl", `{"text": "one"}\n\n{"text": "three"\n`)
    const wrongFields = write("fields.jsonl", `{"text": "one"}\n{"prompt": "two", "answer": "x"}\n`)
    const out = path.join(dir, "never")
    const train = (...extra: Array<string>) =>
      sealAsync(["lora-train", "--out", out, ...(extra.includes("--data") ? [] : ["--data", data]), ...extra])
    const cases: Array<[Promise<Run>, RegExp]> = [
      [train("--rank", "0"), /^seal: LoraConfigError: .*rank.*got 0$/],
      [train("--lr", "0"), /^seal: TrainingError: --lr must be a number > 0, got 0$/],
      [train("--lr=-0.001"), /^seal: TrainingError: --lr must be a number > 0, got -0\.001$/],
      [train("--targets", "q,qkv_proj"), /^seal: LoraConfigError: .*unknown target module "qkv_proj"/],
      [train("--data", empty), /^seal: DatasetError: .*empty\.jsonl: the file is empty/],
      [train("--data", notJson), /^seal: DatasetError: .*not-json\.jsonl:3: not valid JSON/],
      [train("--data", wrongFields), /^seal: DatasetError: .*fields\.jsonl:2 \(completion\): is missing$/],
      [train("--data", path.join(dir, "missing.jsonl")), /^seal: DatasetError: .*missing\.jsonl: no such file$/],
      [train("--data", data, "--model", path.join(dir, "no-model.gguf")), /^seal: CheckpointError: .*no-model\.gguf/]
    ]
    const runs = await Promise.all(cases.map(([run]) => run))
    runs.forEach((run, i) => expectOneLineError(run, cases[i]![1]))
    expect(fs.existsSync(out)).toBe(false)

    // An --out that holds something else is refused before any training.
    const busy = path.join(dir, "busy")
    fs.mkdirSync(busy)
    fs.writeFileSync(path.join(busy, "notes.txt"), "keep me")
    const refused = await sealAsync(["lora-train", "--data", data, "--out", busy])
    expectOneLineError(refused, /^seal: AdapterIoError: .*busy: holds notes\.txt/)
    expect(refused.stderr).not.toMatch(/^step /m)
    expect(fs.readdirSync(busy)).toEqual(["notes.txt"])
  })

  it("running out of the wasm heap is a typed error with advice, not a crash", async () => {
    // ~1,900 tokens in one example: its attention activations and gradients pass 4 GiB.
    const long = path.join(dir, "long.jsonl")
    const words =
      "the purple robot sang a song about the moon and the stars and a little cat who lived in a big red house near the sea "
    fs.writeFileSync(long, JSON.stringify({ text: words.repeat(37).trim() }) + "\n")
    const out = path.join(dir, "oom-adapter")
    const run = await sealAsync(["lora-train", "--data", long, "--out", out, "--steps", "2", "--backend", "wasm"])
    expectOneLineError(run, /^seal: TrainingError: the wasm backend ran out of heap .*smaller batch size.*tfjs-node/)
    expect(fs.existsSync(out)).toBe(false)
  })
})
