import { describe, expect, it } from "@effect/vitest"
import { Testing } from "@seal/gpu"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { expectOneLineError, seal } from "./support/Cli.js"

const bundledModel = fileURLToPath(new URL("../../../models/stories260K.gguf", import.meta.url))
const fixture = JSON.parse(
  fs.readFileSync(
    new URL("../../gpu/test/fixtures/stories260K.once-upon-a-time.greedy64.json", import.meta.url),
    "utf8"
  )
) as { prompt_tokens: Array<number>; generated_tokens: Array<number> }

describe("seal generate", () => {
  it("--json on the bundled model reproduces the reference greedy decoding", () => {
    const run = seal("generate", "--prompt", "Once upon a time", "--max-tokens", "64", "--temperature", "0", "--json")
    expect(run.code).toBe(0)
    const out = JSON.parse(run.stdout.trim()) as { promptTokens: Array<number>; tokens: Array<number>; text: string }
    expect(out.promptTokens).toEqual(fixture.prompt_tokens)
    expect(out.tokens).toEqual(fixture.generated_tokens)
    expect(out.text.length).toBeGreaterThan(0)
  })

  it("sampling with a seed is reproducible", () => {
    const args = ["generate", "--model", bundledModel, "--prompt", "Lily", "--max-tokens", "20", "--temperature", "1"]
    const a = seal(...args, "--top-p", "0.9", "--seed", "4", "--json")
    const b = seal(...args, "--top-p", "0.9", "--seed", "4", "--json")
    expect(a.code).toBe(0)
    expect(JSON.parse(a.stdout).tokens).toEqual(JSON.parse(b.stdout).tokens)
  })

  it("a truncated GGUF is a one-line error naming the file", () => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "seal-cli-"))
    const truncated = path.join(dir, "truncated.gguf")
    fs.writeFileSync(truncated, fs.readFileSync(bundledModel).subarray(0, 300_000))
    expectOneLineError(seal("generate", "--model", truncated, "--prompt", "x"), /CheckpointError: .*truncated\.gguf/)
    fs.rmSync(dir, { recursive: true })
  })

  it.effect("a lying safetensors header, a missing tokenizer and an unknown architecture are one-line errors", () =>
    Effect.gen(function*() {
      const config = Testing.HfFixture.tinyLlamaConfig
      const lying = yield* Testing.HfFixture.tempDir("seal-cli-lying-")
      yield* Testing.HfFixture.writeTinyHfCheckpoint(lying, { config, seed: 1 })
      yield* Testing.HfFixture.rewriteSafetensorsHeader(path.join(lying, "model.safetensors"), (header) => {
        const entry = header["model.norm.weight"] as { data_offsets: [number, number] }
        entry.data_offsets = [entry.data_offsets[0], entry.data_offsets[1] + 4096]
        return header
      })
      expectOneLineError(seal("generate", "--model", lying, "--prompt", "x"), /model\.safetensors.*model\.norm\.weight/)

      const noTokenizer = yield* Testing.HfFixture.tempDir("seal-cli-notok-")
      yield* Testing.HfFixture.writeTinyHfCheckpoint(noTokenizer, { config, seed: 1, tokenizer: false })
      expectOneLineError(seal("generate", "--model", noTokenizer, "--prompt", "x"), /tokenizer\.json/)

      const gpt2 = yield* Testing.HfFixture.tempDir("seal-cli-gpt2-")
      yield* Testing.HfFixture.writeTinyHfCheckpoint(gpt2, { config, seed: 1 })
      const configPath = path.join(gpt2, "config.json")
      const json = JSON.parse(fs.readFileSync(configPath, "utf8"))
      fs.writeFileSync(configPath, JSON.stringify({ ...json, architectures: ["GPT2LMHeadModel"], model_type: "gpt2" }))
      expectOneLineError(seal("generate", "--model", gpt2, "--prompt", "x"), /config\.json.*GPT2LMHeadModel/)
    }).pipe(Effect.scoped))

  it("a missing model file and an unavailable backend are one-line errors", () => {
    expectOneLineError(seal("generate", "--model", "/nonexistent/model.gguf", "--prompt", "x"), /nonexistent/)
    const gpu = seal("generate", "--backend", "node-gpu", "--prompt", "x")
    expectOneLineError(gpu, /npm install @tensorflow\/tfjs-node-gpu/)
  })
})
