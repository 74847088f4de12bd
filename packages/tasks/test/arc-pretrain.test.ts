import { describe, expect, it } from "@effect/vitest"
import { stringHash } from "@seal/core/Seeds"
import { loadCheckpoint } from "@seal/gpu/checkpoint/Checkpoint"
import { readSafetensors } from "@seal/gpu/checkpoint/Safetensors"
import { initWeights } from "@seal/gpu/model/InitWeights"
import { makeRng } from "@seal/gpu/model/Sampling"
import { tempDir } from "@seal/gpu/testing/HfFixture"
import { paddedTokens } from "@seal/gpu/train/LengthBuckets"
import type { TokenizedExample } from "@seal/gpu/train/Loss"
import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import { Effect, Either, Exit, Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import { loadNamedArcSet } from "../src/arc/ArcData.js"
import {
  arcGridPositions,
  arcTokenizer,
  exampleIds,
  exampleLength,
  gridIds,
  gridLength,
  gridText
} from "../src/arc/ArcFormat.js"
import {
  type ArcPretrainConfig,
  type ArcPretrainConfigEncoded,
  type ArcPretrainResult,
  arcPretrainSpec,
  arcProvenanceFile,
  decodeArcPretrainConfig,
  packPairs,
  prepareArcPretraining,
  pretrainArc,
  randomView
} from "../src/arc/ArcPretrain.js"
import { type ArcSplits, arcSplits, loadArcSplits, smallTaskCells } from "../src/arc/ArcSplits.js"
import { ids } from "../src/arc/ArcVocabulary.js"
import { invertibleViews } from "../src/arc/Augmenters.js"
import { type ArcExample, type ArcTask, demonstrationCells, type Grid, makeGrid } from "../src/arc/Grid.js"
import { gridFamilies } from "../src/arc/SyntheticTasks.js"
import { parseToolConfig, toolConfigKey } from "../src/arc/ToolConfig.js"
import { PretrainError } from "../src/PretrainRun.js"

const dataDir = fileURLToPath(new URL("../../../data/", import.meta.url))

/** The four sets and their splits, loaded once (about a second). */
const sets = await Effect.runPromise(
  Effect.all({
    training: loadNamedArcSet(dataDir, "training"),
    evaluation: loadNamedArcSet(dataDir, "evaluation"),
    sealTraining: loadNamedArcSet(dataDir, "training-filtered"),
    sealEvaluation: loadNamedArcSet(dataDir, "evaluation-filtered")
  })
)
const splits: ArcSplits = await Effect.runPromise(loadArcSplits(dataDir))
const idsOf = (tasks: ReadonlyArray<ArcTask>) => tasks.map((t) => t.id)

const decode = (input: unknown): ArcPretrainConfig =>
  Either.getOrThrowWith(decodeArcPretrainConfig(input), (e) => new Error(e.message))

const failure = (input: unknown, source?: string): PretrainError =>
  Either.match(decodeArcPretrainConfig(input, source), {
    onLeft: (e) => e,
    onRight: () => {
      throw new Error(`${JSON.stringify(input)} decoded`)
    }
  })

const setupOf = (config: ArcPretrainConfig, tasks: ReadonlyArray<ArcTask>) =>
  Either.getOrThrowWith(prepareArcPretraining(config, tasks), (e) => new Error(e.message))

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)
const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
const key = (example: TokenizedExample) => JSON.stringify(example)
const sortedKeys = (examples: ReadonlyArray<TokenizedExample>) => examples.map(key).sort()

/** A `rows x columns` grid of one colour. */
const solid = (rows: number, columns: number, colour: number): Grid => makeGrid(rows, columns, () => colour)
const pair = (side: number, colour: number): ArcExample => ({
  input: solid(side, side, colour),
  output: makeGrid(side, side, (r, c) => (r + c + colour) % 10)
})

// ---------------------------------------------------------------------------------------------
// Splits

describe("ARC splits on the real data", () => {
  it("have the stated sizes, are disjoint, and keep every evaluation task out of pretraining and RL", () => {
    expect(splits.pretrain).toHaveLength(359)
    expect(splits.rl).toHaveLength(41)
    expect(splits["evaluation-seal"]).toHaveLength(10)
    expect(splits["evaluation-small"]).toHaveLength(41)

    const names = ["pretrain", "rl", "evaluation-seal", "evaluation-small"] as const
    const shared = (a: typeof names[number], b: typeof names[number]) => {
      const other = new Set(idsOf(splits[b]))
      return idsOf(splits[a]).filter((id) => other.has(id)).sort()
    }
    for (const name of names) expect(new Set(idsOf(splits[name])).size, name).toBe(splits[name].length)
    for (const [i, a] of names.entries()) {
      for (const b of names.slice(i + 1)) {
        if (a === "evaluation-seal" && b === "evaluation-small") continue
        expect(shared(a, b), `${a} / ${b}`).toEqual([])
      }
    }
    // The two evaluation splits are not disjoint: "every evaluation task within 300 cells" (41)
    // includes the 3 of SEAL's 10 that are small. Both are held out, so only reports that add
    // them up would double count.
    const sealSmall = splits["evaluation-seal"].filter((t) => demonstrationCells(t) <= smallTaskCells)
    expect(shared("evaluation-seal", "evaluation-small")).toEqual(idsOf(sealSmall).sort())
    expect(shared("evaluation-seal", "evaluation-small")).toEqual(["59341089", "66e6c45b", "68b67ca3"])

    // Pretraining and RL partition the 400 training tasks; no evaluation task is in either.
    expect([...idsOf(splits.pretrain), ...idsOf(splits.rl)].sort()).toEqual(idsOf(sets.training).sort())
    const evaluationIds = new Set(idsOf(sets.evaluation))
    expect(evaluationIds.size).toBe(400)
    expect([...idsOf(splits.pretrain), ...idsOf(splits.rl)].filter((id) => evaluationIds.has(id))).toEqual([])
    for (const id of [...idsOf(splits["evaluation-seal"]), ...idsOf(splits["evaluation-small"])]) {
      expect(evaluationIds.has(id), id).toBe(true)
    }
    expect(idsOf(splits["evaluation-seal"]).sort()).toEqual(idsOf(sets.sealEvaluation).sort())
  })

  it("put SEAL's 12 training tasks in RL, with the small tasks the hash rule picks", () => {
    const sealTraining = idsOf(sets.sealTraining)
    expect(sealTraining).toHaveLength(12)
    const rl = new Set(idsOf(splits.rl))
    for (const id of sealTraining) expect(rl.has(id), id).toBe(true)
    // The rest of RL is exactly the small training tasks hashing to 0 modulo 4.
    const hashed = sets.training.filter((t) =>
      !sealTraining.includes(t.id) && demonstrationCells(t) <= smallTaskCells && stringHash(t.id) % 4 === 0
    )
    expect(idsOf(splits.rl).filter((id) => !sealTraining.includes(id)).sort()).toEqual(idsOf(hashed).sort())
  })

  it("evaluation-small is exactly the evaluation tasks within 300 demonstration cells", () => {
    for (const task of splits["evaluation-small"]) {
      expect(demonstrationCells(task), task.id).toBeLessThanOrEqual(smallTaskCells)
    }
    const small = sets.evaluation.filter((t) => demonstrationCells(t) <= 300)
    expect(idsOf(splits["evaluation-small"]).sort()).toEqual(idsOf(small).sort())
    // The rule has something to reject.
    expect(sets.evaluation.some((t) => demonstrationCells(t) > 300)).toBe(true)
  })

  it("are deterministic", async () => {
    const again = await Effect.runPromise(loadArcSplits(dataDir))
    for (const name of ["pretrain", "rl", "evaluation-seal", "evaluation-small"] as const) {
      expect(idsOf(again[name]), name).toEqual(idsOf(splits[name]))
    }
    expect(arcSplits(sets)).toEqual(splits)
  })
})

// ---------------------------------------------------------------------------------------------
// packPairs

describe("packPairs", () => {
  // Lengths: 3 + 2 * side * (side + 1).
  const one = pair(1, 1) // 7 tokens
  const two = pair(2, 2) // 15 tokens
  const three = pair(3, 3) // 27 tokens
  const oneAgain = pair(1, 4) // 7 tokens

  /** The targets a sequence of `chosen` pairs must have, built from the grid layout. */
  const expectedMask = (chosen: ReadonlyArray<ArcExample>) => [
    0,
    ...chosen.flatMap((p, index) => [
      ...Array<number>(2 + gridLength(p.input)).fill(0),
      ...Array<number>(gridLength(p.output) + 1).fill(index > 0 ? 1 : 0)
    ])
  ]

  it("is BOS then the pairs in order, targeting exactly the output grid and end of every pair after the first", () => {
    const pairs = [three, one, two, oneAgain]
    const packed = packPairs(pairs, 1000)!
    expect(packed.ids).toEqual([ids.bos, ...pairs.flatMap(exampleIds)])
    expect(packed.ids).toHaveLength(1 + sum(pairs.map(exampleLength)))
    expect(packed.labelMask).toHaveLength(packed.ids.length)
    expect(packed.ids[0]).toBe(ids.bos)
    expect(packed.labelMask[0]).toBe(0)
    expect(packed.labelMask).toEqual(expectedMask(pairs))
    // Read back: the targeted tokens are the later pairs' output grids, each closed by `end`.
    const targeted = packed.ids.filter((_, t) => packed.labelMask[t] === 1)
    expect(targeted).toEqual(pairs.slice(1).flatMap((p) => [...gridIds(p.output), ids.exampleEnd]))
    // And every pair after the first: its `in`, input grid and `out` are not targets.
    let at = 1
    for (const [index, p] of pairs.entries()) {
      const tokens = exampleIds(p)
      expect(packed.ids.slice(at, at + tokens.length)).toEqual(tokens)
      const outAt = tokens.indexOf(ids.output)
      expect(packed.labelMask.slice(at, at + outAt + 1).every((m) => m === 0)).toBe(true)
      expect(packed.labelMask.slice(at + outAt + 1, at + tokens.length).every((m) => m === (index > 0 ? 1 : 0))).toBe(
        true
      )
      at += tokens.length
    }
  })

  it("never exceeds maxTokens: skips pairs that do not fit and takes later ones that do", () => {
    const pairs = [one, three, oneAgain, two]
    // 1 + 7 + 7 + 15 = 30: the 27-token pair is skipped, the two after it are taken.
    const packed = packPairs(pairs, 30)!
    expect(packed.ids).toEqual([ids.bos, ...exampleIds(one), ...exampleIds(oneAgain), ...exampleIds(two)])
    expect(packed.ids).toHaveLength(30)
    expect(packed.labelMask).toEqual(expectedMask([one, oneAgain, two]))
    // One token short: the last pair no longer fits.
    expect(packPairs(pairs, 29)!.ids).toEqual([ids.bos, ...exampleIds(one), ...exampleIds(oneAgain)])
    // A pair that does not fit first does not stop a later one from being first.
    expect(packPairs([three, one, two], 23)!.ids).toEqual([ids.bos, ...exampleIds(one), ...exampleIds(two)])
    expect(packPairs([three, one, two], 23)!.labelMask).toEqual(expectedMask([one, two]))
    for (let maxTokens = 15; maxTokens <= 80; maxTokens++) {
      const p = packPairs([three, two, one, three, oneAgain, two], maxTokens)
      if (p !== undefined) expect(p.ids.length, `maxTokens ${maxTokens}`).toBeLessThanOrEqual(maxTokens)
    }
  })

  it("is undefined when fewer than two pairs fit", () => {
    expect(packPairs([], 100)).toBeUndefined()
    expect(packPairs([one], 100)).toBeUndefined()
    expect(packPairs([three, three], 54)).toBeUndefined()
    expect(packPairs([three, three], 55)).toBeDefined()
    expect(packPairs([one, oneAgain], 15)).toBeDefined()
    expect(packPairs([one, oneAgain], 14)).toBeUndefined()
    expect(packPairs([three, one, three], 34)).toBeUndefined()
    expect(packPairs([three, one, three], 35)).toBeDefined()
    expect(packPairs([one, two], 1)).toBeUndefined()
  })

  it("with a tool config: the pairs leave it room, then `config`, the config and EOS, all targets but `config`", () => {
    const configIds = [40, 41, 30, 31]
    const pairs = [one, two, oneAgain]
    const packed = packPairs(pairs, 1000, configIds)!
    expect(packed.ids).toEqual([ids.bos, ...pairs.flatMap(exampleIds), ids.config, ...configIds, ids.eos])
    expect(packed.labelMask).toEqual([...expectedMask(pairs), 0, 1, 1, 1, 1, 1])
    // 1 + 7 + 15 + 6 = 29: the last pair needs 7 more tokens than that.
    expect(packPairs(pairs, 35, configIds)!.ids).toHaveLength(29)
    expect(packPairs(pairs, 36, configIds)!.ids).toHaveLength(36)
    expect(packPairs([one, two], 28, configIds)).toBeUndefined()
  })

  it("packs real tasks into valid sequences", () => {
    const tokenizer = arcTokenizer()
    for (const task of splits.pretrain.slice(0, 40)) {
      const pairs = [...task.train, ...task.test]
      const packed = packPairs(pairs, 512)
      if (packed === undefined) continue
      expect(packed.ids.length).toBeLessThanOrEqual(512)
      expect(packed.ids).not.toContain(tokenizer.unkId)
      const text = tokenizer.decode(packed.ids.slice(1))
      expect(text.startsWith("in ")).toBe(true)
      expect(text).toContain(gridText(pairs.find((p) => exampleLength(p) < 512)!.input).trim())
    }
  })
})

// ---------------------------------------------------------------------------------------------
// randomView

type Pair = { readonly input: Grid; readonly output: Grid }

/**
 * Extends a colour mapping (`forward[original] = viewed`, `backward` its inverse) so that `viewed`
 * is `original` with colours mapped; undefined if the shapes differ or the mapping would be
 * inconsistent or not injective.
 */
const extendMapping = (
  forward: ReadonlyArray<number>,
  backward: ReadonlyArray<number>,
  original: Grid,
  viewed: Grid
): { forward: Array<number>; backward: Array<number> } | undefined => {
  if (original.length !== viewed.length) return undefined
  const f = [...forward]
  const b = [...backward]
  for (const [r, row] of original.entries()) {
    const other = viewed[r]!
    if (row.length !== other.length) return undefined
    for (const [c, colour] of row.entries()) {
      const image = other[c]!
      if (f[colour] === -1 && b[image] === -1) {
        f[colour] = image
        b[image] = colour
      } else if (f[colour] !== image || b[image] !== colour) {
        return undefined
      }
    }
  }
  return { forward: f, backward: b }
}

/**
 * The symmetry (by name) and colour mapping under which `viewed` is a reordering of `original`,
 * every pair under the same symmetry and the same colour mapping, with 0 fixed; undefined if none.
 */
const explainView = (
  original: ReadonlyArray<Pair>,
  viewed: ReadonlyArray<Pair>
): { symmetry: string; colours: Array<number> } | undefined => {
  if (original.length !== viewed.length) return undefined
  for (const symmetry of invertibleViews) {
    const undone: Array<Pair> = []
    for (const p of viewed) {
      const input = symmetry.invert(p.input)
      const output = symmetry.invert(p.output)
      if (input === undefined || output === undefined) break
      undone.push({ input, output })
    }
    if (undone.length !== viewed.length) continue
    // Match every undone pair to a distinct original pair under one colour mapping (backtracking).
    const used = Array<boolean>(original.length).fill(false)
    const match = (
      i: number,
      forward: ReadonlyArray<number>,
      backward: ReadonlyArray<number>
    ): Array<number> | undefined => {
      if (i === undone.length) return [...forward]
      for (const [j, candidate] of original.entries()) {
        if (used[j]) continue
        const afterInput = extendMapping(forward, backward, candidate.input, undone[i]!.input)
        if (afterInput === undefined) continue
        const afterOutput = extendMapping(afterInput.forward, afterInput.backward, candidate.output, undone[i]!.output)
        if (afterOutput === undefined) continue
        used[j] = true
        const found = match(i + 1, afterOutput.forward, afterOutput.backward)
        if (found !== undefined) return found
        used[j] = false
      }
      return undefined
    }
    const start = Array<number>(10).fill(-1)
    start[0] = 0
    const colours = match(0, start, start)
    if (colours !== undefined) return { symmetry: symmetry.name, colours }
  }
  return undefined
}

describe("randomView", () => {
  const tasks = splits.pretrain.filter((t) => demonstrationCells(t) <= 400).slice(0, 25)

  it("is a reordering of the task's pairs under one symmetry of the square and one colour permutation fixing 0", () => {
    expect(tasks.length).toBe(25)
    const symmetries = new Set<string>()
    for (const task of tasks) {
      const pairs = [...task.train, ...task.test]
      for (const seed of [1, 2, 3]) {
        const before = JSON.stringify(task)
        const view = randomView(task, makeRng(seed))
        expect(JSON.stringify(task), "the task is not modified").toBe(before)
        expect(view).toHaveLength(pairs.length)
        const explained = explainView(pairs, view)
        expect(explained, `${task.id} seed ${seed}`).toBeDefined()
        expect(explained!.colours[0]).toBe(0)
        symmetries.add(explained!.symmetry)
      }
    }
    // The views are not all the same symmetry.
    expect(symmetries.size).toBeGreaterThan(2)
  })

  it("the checker is not vacuous: it rejects a changed cell, a dropped pair and a recoloured 0", () => {
    const task = tasks.find((t) => t.train.some((p) => p.input.flat().includes(0)))!
    const pairs = [...task.train, ...task.test]
    const view = randomView(task, makeRng(7))
    expect(explainView(pairs, view)).toBeDefined()
    const [first, ...rest] = view
    const changed = first!.output.map((row, r) => row.map((cell, c) => (r === 0 && c === 0 ? (cell + 1) % 10 : cell)))
    expect(explainView(pairs, [{ input: first!.input, output: changed }, ...rest])).toBeUndefined()
    expect(explainView(pairs, rest)).toBeUndefined()
    // 0 <-> some other colour swapped everywhere: a consistent permutation, but 0 moved.
    const other = pairs.flatMap((p) => [...p.input.flat(), ...p.output.flat()]).find((c) => c !== 0)!
    const swap = (g: Grid) => g.map((row) => row.map((c) => (c === 0 ? other : c === other ? 0 : c)))
    expect(explainView(pairs, pairs.map((p) => ({ input: swap(p.input), output: swap(p.output) })))).toBeUndefined()
    expect(explainView(pairs, pairs)?.symmetry).toBe("Identity()")
  })

  it("is deterministic for a seed and varies with it", () => {
    for (const task of tasks.slice(0, 5)) {
      expect(randomView(task, makeRng(11))).toEqual(randomView(task, makeRng(11)))
      const views = new Set([1, 2, 3, 4, 5, 6].map((seed) => JSON.stringify(randomView(task, makeRng(seed)))))
      expect(views.size, task.id).toBeGreaterThan(1)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Config and preparation

describe("decodeArcPretrainConfig", () => {
  it("fills every field with a default and survives the JSON round trip a resume makes", () => {
    // The default values are tuned elsewhere; pinned here are the fields, not the numbers.
    const defaults = decode({})
    expect(Object.keys(defaults).sort()).toEqual(["model", "seed", "training"])
    expect(Object.keys(defaults.model).sort()).toEqual(
      ["gridPositions", "hiddenSize", "intermediateSize", "maxPositions", "numHeads", "numLayers", "ropeTheta"]
    )
    expect(Object.keys(defaults.training).sort()).toEqual([
      "batchSequences",
      "beta1",
      "beta2",
      "checkpointEverySteps",
      "configShare",
      "gradientClip",
      "learningRate",
      "microBatchTokens",
      "minLearningRateRatio",
      "passes",
      "syntheticFamilies",
      "syntheticTasksPerPass",
      "viewsPerTask",
      "warmupSteps",
      "weightDecay"
    ])
    for (const [field, value] of [...Object.entries(defaults.model), ...Object.entries(defaults.training)]) {
      if (field === "syntheticFamilies") continue
      expect(field === "gridPositions" ? typeof value === "boolean" : Number.isFinite(value), field).toBe(true)
    }
    expect(defaults.seed).toBe(0)
    // The cell families by default: the bundled model's recipe draws the tasks it drew.
    expect(defaults.training.syntheticFamilies).toEqual(gridFamilies.map((f) => f.name))
    expect(decode(JSON.parse(JSON.stringify(defaults)))).toEqual(defaults)
    // An explicit field overrides its default and leaves the others.
    const tiny = decode({ model: { hiddenSize: 16, numHeads: 2 }, training: { passes: 2 }, seed: 3 })
    expect(tiny.model).toEqual({ ...defaults.model, hiddenSize: 16, numHeads: 2 })
    expect(tiny.training).toEqual({ ...defaults.training, passes: 2 })
    expect(tiny.seed).toBe(3)
    expect(decode(JSON.parse(JSON.stringify(tiny)))).toEqual(tiny)
  })

  it("decodes every recipe in models/recipes (their family names included)", () => {
    const recipes = fileURLToPath(new URL("../../../models/recipes/", import.meta.url))
    const files = Fs.readdirSync(recipes).filter((f) => f.endsWith(".json"))
    expect(files.length).toBeGreaterThanOrEqual(4)
    for (const file of files) {
      const config = decode(JSON.parse(Fs.readFileSync(Path.join(recipes, file), "utf8")))
      expect(config.training.syntheticTasksPerPass, file).toBeGreaterThan(0)
    }
  })

  it("rejects unknown keys and bad values, naming the source and the field", () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ training: { passes: 0 } }, "config: training.passes", /positive/],
      [{ training: { viewsPerTask: 1.5 } }, "config: training.viewsPerTask", /integer/],
      [{ training: { batchSequences: "8" } }, "config: training.batchSequences", /Expected number/],
      [{ training: { learningRate: -1 } }, "config: training.learningRate", /positive/],
      [{ training: { beta2: 2 } }, "config: training.beta2", /2/],
      [{ model: { hiddenSze: 16 } }, "config: model.hiddenSze", /is unexpected/],
      [{ model: { numHeads: 3 } }, "config: model", /multiple of numHeads/],
      [{ model: { maxPositions: 0 } }, "config: model.maxPositions", /positive/],
      [{ model: { gridPositions: "yes" } }, "config: model.gridPositions", /boolean/],
      [{ training: { configShare: 1.5 } }, "config: training.configShare", /1/],
      [{ trainig: { passes: 2 } }, "config: trainig", /is unexpected/],
      // A world config is not an ARC config.
      [{ training: { mainPasses: 2 } }, "config: training.mainPasses", /is unexpected/],
      [{ seed: -1 }, "config: seed", /non-negative/],
      [
        { training: { syntheticFamilies: ["crop", "mirror"] } },
        "config: training.syntheticFamilies.1",
        /unknown family "mirror"; the families are geometry, /
      ],
      [{ training: { syntheticFamilies: [] } }, "config: training.syntheticFamilies", /at least 1/],
      [null, "config", /Expected/]
    ]
    for (const [input, field, detail] of cases) {
      const error = failure(input)
      expect(error).toBeInstanceOf(PretrainError)
      expect(error.reason, JSON.stringify(input)).toBe("InvalidConfig")
      expect(error.field, JSON.stringify(input)).toBe(field)
      expect(error.detail, JSON.stringify(input)).toMatch(detail)
      expect(error.message).toBe(`${field}: ${error.detail}`)
    }
    expect(failure({ training: { passes: 0 } }, "tiny.json").field).toBe("tiny.json: training.passes")
  })
})

describe("prepareArcPretraining", () => {
  const config = decode({
    model: { hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 256 },
    training: { passes: 2, viewsPerTask: 2, batchSequences: 4 },
    seed: 5
  })
  const tasks = splits.pretrain.slice(0, 30)

  it("is deterministic, and the seed moves the views", () => {
    const a = setupOf(config, tasks)
    const b = setupOf(config, tasks)
    expect(b.examples).toEqual(a.examples)
    expect(b.plan).toEqual(a.plan)
    expect(b.stats).toEqual(a.stats)
    expect(b.taskIds).toEqual(a.taskIds)
    expect(b.skippedTaskIds).toEqual(a.skippedTaskIds)
    expect(setupOf({ ...config, seed: 6 }, tasks).examples).not.toEqual(a.examples)
    expect(a.modelConfig).toMatchObject({
      architecture: "llama",
      vocabSize: arcTokenizer().vocabSize,
      hiddenSize: 16,
      numLayers: 1,
      numHeads: 2,
      headDim: 8,
      intermediateSize: 32,
      maxPositions: 256,
      tieEmbeddings: true,
      gridPositions: arcGridPositions
    })
    expect(setupOf(decode({ ...config, model: { ...config.model, gridPositions: false } }), tasks).modelConfig)
      .not.toHaveProperty("gridPositions")
    expect(a.tokenizer.vocabSize).toBe(arcTokenizer().vocabSize)
  })

  it("ends `configShare` of the sequences with a uniformly drawn, valid tool config", () => {
    const tokenizer = arcTokenizer()
    const setupWith = (share: number) =>
      setupOf(decode({ ...config, training: { ...config.training, configShare: share } }), tasks)
    const withConfig = (share: number) => setupWith(share).examples.filter((e) => e.ids.includes(ids.config))
    expect(withConfig(0)).toEqual([])
    // Every view is kept: one too long to leave room for a config goes without.
    expect(setupWith(1).stats.sequences).toBe(setupWith(0).stats.sequences)
    const all = withConfig(1)
    expect(all.length).toBeGreaterThan(setupWith(1).stats.sequences * 0.6)
    const keys = new Set<string>()
    for (const example of all) {
      const at = example.ids.indexOf(ids.config)
      expect(example.ids[example.ids.length - 1]).toBe(ids.eos)
      const text = tokenizer.decode(example.ids.slice(at + 1, -1))
      const parsed = parseToolConfig(text)
      expect(Either.isRight(parsed), text).toBe(true)
      if (Either.isRight(parsed)) keys.add(toolConfigKey(parsed.right))
      expect(example.labelMask.slice(at)).toEqual([0, ...example.ids.slice(at + 1).map(() => 1)])
    }
    // Uniform over 1,600 configs: the draws are nearly all distinct.
    expect(keys.size).toBeGreaterThan(all.length * 0.8)
    const quarter = withConfig(0.25).length / all.length
    expect(quarter).toBeGreaterThan(0.1)
    expect(quarter).toBeLessThan(0.4)
  })

  it("a task's sequences do not depend on which other tasks are present", () => {
    const setup = setupOf(config, tasks)
    const fitting = tasks.filter((t) => setup.taskIds.includes(t.id))
    expect(fitting.length).toBeGreaterThanOrEqual(3)
    const [a, x, b] = [fitting[0]!, fitting[1]!, fitting[fitting.length - 1]!]
    const alone = (task: ArcTask) => setupOf(config, [task]).examples
    const together = setupOf(config, [b, x, a]).examples
    // Every sequence of X alone is among those of X with others, and the others add only theirs.
    const togetherKeys = new Set(together.map(key))
    for (const example of alone(x)) expect(togetherKeys.has(key(example))).toBe(true)
    expect(sortedKeys(together)).toEqual(sortedKeys([...alone(a), ...alone(x), ...alone(b)]))
    // And the same holds inside the full set of 30 tasks.
    expect(sortedKeys(setup.examples)).toEqual(
      sortedKeys(tasks.flatMap((t) => (setup.taskIds.includes(t.id) ? alone(t) : [])))
    )
  })

  it("has consistent statistics: every example planned once, in its pass", () => {
    const setup = setupOf(config, tasks)
    const lengths = setup.examples.map((e) => e.ids.length)
    expect(setup.stats.sequences).toBe(setup.examples.length)
    expect(setup.examples.length).toBeLessThanOrEqual(tasks.length * 2 * 2)
    expect(setup.stats.steps).toBe(setup.plan.length)
    expect(setup.stats.plannedTokens).toBe(sum(lengths))
    expect(setup.stats.targetTokens).toBe(sum(setup.examples.map((e) => sum(e.labelMask))))
    expect(setup.stats.paddedTokens).toBe(paddedTokens(setup.plan, lengths))
    expect(setup.stats.paddedTokens).toBeGreaterThanOrEqual(setup.stats.plannedTokens)

    const planned = setup.plan.flatMap((s) => s.microBatches.flat())
    expect([...planned].sort((p, q) => p - q)).toEqual(range(0, setup.examples.length))
    // Passes in order, each a contiguous block of fresh examples, batches of at most 4.
    const epochs = setup.plan.map((s) => s.epoch)
    expect(epochs).toEqual([...epochs].sort((p, q) => p - q))
    expect([...new Set(epochs)]).toEqual([0, 1])
    const pass0 = setup.plan.filter((s) => s.epoch === 0).flatMap((s) => s.microBatches.flat())
    expect([...pass0].sort((p, q) => p - q)).toEqual(range(0, pass0.length))
    for (const step of setup.plan) expect(step.microBatches.flat().length).toBeLessThanOrEqual(4)

    // Every sequence is BOS-led, fits the context, and has targets.
    for (const example of setup.examples) {
      expect(example.ids[0]).toBe(ids.bos)
      expect(example.labelMask[0]).toBe(0)
      expect(example.ids.length).toBeLessThanOrEqual(256)
      expect(sum(example.labelMask)).toBeGreaterThan(0)
    }
    // The fitting and skipped tasks partition the input, in its order.
    expect(setup.taskIds.length).toBeGreaterThan(0)
    expect(setup.skippedTaskIds.length).toBeGreaterThan(0)
    expect(idsOf(tasks).filter((id) => setup.taskIds.includes(id))).toEqual(setup.taskIds)
    expect([...setup.taskIds, ...setup.skippedTaskIds].sort()).toEqual(idsOf(tasks).sort())
  })

  it("adds `syntheticTasksPerPass` generated tasks to each pass, new in every pass, leaving the real tasks' sequences as they were", () => {
    const withSynthetic = decode({ ...config, training: { ...config.training, syntheticTasksPerPass: 6 } })
    const plain = setupOf(config, tasks)
    const mixed = setupOf(withSynthetic, tasks)
    const added = mixed.examples.filter((e) => !plain.examples.some((p) => key(p) === key(e)))
    // Generated tasks of more than 256 tokens for two pairs are skipped like real ones.
    expect(mixed.stats.syntheticSequences).toBe(mixed.examples.length - plain.examples.length)
    expect(mixed.stats.syntheticSequences).toBeGreaterThanOrEqual(8)
    expect(mixed.stats.syntheticSequences).toBeLessThanOrEqual(12)
    expect(added.length).toBe(mixed.stats.syntheticSequences)
    expect(plain.stats.syntheticSequences).toBe(0)
    expect(sortedKeys(mixed.examples.filter((e) => !added.includes(e)))).toEqual(sortedKeys(plain.examples))
    // Each pass plans its own generated sequences.
    const passOf = new Map(mixed.plan.flatMap((s) => s.microBatches.flat().map((i) => [i, s.epoch] as const)))
    const addedPasses = added.map((e) => passOf.get(mixed.examples.indexOf(e)))
    expect(new Set(addedPasses)).toEqual(new Set([0, 1]))
    expect(setupOf(withSynthetic, tasks).examples).toEqual(mixed.examples)
  })

  it("draws generated tasks from `syntheticFamilies` only", () => {
    const only = (families: ReadonlyArray<string>) =>
      setupOf(
        decode({ ...config, training: { ...config.training, syntheticTasksPerPass: 6, syntheticFamilies: families } }),
        tasks
      )
    const plain = setupOf(config, tasks)
    const added = (setup: ReturnType<typeof setupOf>) =>
      setup.examples.filter((e) => !plain.examples.some((p) => key(p) === key(e)))
    // Other tasks than the default families give, the same for the same families
    // (arc-synthetic.test.ts checks that `syntheticTask` keeps to the families it is given).
    const fills = added(only(["pattern-fill"]))
    const defaults = added(
      setupOf(decode({ ...config, training: { ...config.training, syntheticTasksPerPass: 6 } }), tasks)
    )
    expect(fills.length).toBeGreaterThan(0)
    expect(sortedKeys(fills)).not.toEqual(sortedKeys(defaults))
    expect(sortedKeys(added(only(["pattern-fill"])))).toEqual(sortedKeys(fills))
  })

  it("fails with DocumentTooLong when no task has two pairs within the context", () => {
    const error = Either.match(
      prepareArcPretraining({ ...config, model: { ...config.model, maxPositions: 20 } }, tasks),
      {
        onLeft: (e) => e,
        onRight: () => undefined
      }
    )
    expect(error?.reason).toBe("DocumentTooLong")
    expect(error?.field).toBe("model.maxPositions")
  })
})

// ---------------------------------------------------------------------------------------------
// A tiny run

/** Six of the smallest pretraining tasks (3x3 grids and smaller): every one fits 96 tokens. */
const smallTasks = [...splits.pretrain]
  .sort((a, b) => demonstrationCells(a) - demonstrationCells(b) || a.id.localeCompare(b.id))
  .slice(0, 6)
const tinySplits: ArcSplits = { ...splits, pretrain: smallTasks }

/**
 * The brief's tiny model. Two passes of batches of 2 (rather than one batch of 8) give the run
 * enough steps (about 6) to be stopped mid-window and resumed; a checkpoint every 2.
 */
const tinyInput = {
  model: { hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 96 },
  training: { passes: 2, viewsPerTask: 1, batchSequences: 2, checkpointEverySteps: 2, warmupSteps: 1 },
  seed: 2
} satisfies ArcPretrainConfigEncoded
const tinyConfig = decode(tinyInput)

describe("pretrainArc: a tiny run", () => {
  const scope = Effect.runSync(Scope.make())
  let wholeDir: string
  let whole: ArcPretrainResult
  let seen: Array<number>
  beforeAll(async () => {
    await tf.setBackend("cpu")
    wholeDir = await Effect.runPromise(tempDir("arc-pretrain-whole").pipe(Scope.extend(scope)))
    seen = []
    whole = await Effect.runPromise(
      pretrainArc(tinySplits, {
        dir: wholeDir,
        config: tinyConfig,
        onProgress: (p) => Effect.sync(() => seen.push(p.step))
      })
    )
  })
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  it("finishes and writes the model with its provenance", () =>
    Effect.runPromise(Effect.gen(function*() {
      const total = whole.totalSteps
      expect(total).toBe(whole.setup.plan.length)
      expect(total).toBeGreaterThanOrEqual(5)
      expect(whole.stepsDone).toBe(total)
      expect(whole.setup.taskIds).toEqual(idsOf(smallTasks))
      expect(whole.setup.skippedTaskIds).toEqual([])
      expect(seen).toEqual([...range(1, Math.floor(total / 2) + 1).map((k) => 2 * k), ...(total % 2 ? [total] : [])])
      expect(whole.modelDir).toBe(Path.join(wholeDir, "model"))
      expect(Fs.readdirSync(whole.modelDir!).sort()).toEqual([
        "config.json",
        "model.safetensors",
        arcProvenanceFile,
        "tokenizer.json",
        "tokenizer_config.json"
      ])
      expect(arcProvenanceFile).toBe("seal-arc.json")
      const provenance = JSON.parse(Fs.readFileSync(Path.join(whole.modelDir!, "seal-arc.json"), "utf8"))
      expect(provenance.config).toEqual(JSON.parse(JSON.stringify(tinyConfig)))
      expect(decode(provenance.config)).toEqual(tinyConfig)
      expect(provenance.stats).toEqual(whole.setup.stats)
      expect(provenance.splits).toEqual({
        pretrain: idsOf(smallTasks),
        pretrainSkipped: [],
        rl: idsOf(splits.rl),
        "evaluation-seal": idsOf(splits["evaluation-seal"]),
        "evaluation-small": idsOf(splits["evaluation-small"])
      })
      // The spec writes the same provenance the run did.
      expect(arcPretrainSpec(tinySplits).provenance(tinyConfig, whole.setup)).toEqual({
        file: "seal-arc.json",
        content: provenance
      })

      // A loadable model over the ARC vocabulary, whose weights trained away from the initial ones.
      const loaded = yield* loadCheckpoint(whole.modelDir!)
      expect(loaded.config).toEqual(whole.setup.modelConfig)
      expect(loaded.tokenizer.vocabSize).toBe(arcTokenizer().vocabSize)
      const grid = smallTasks[0]!.train[0]!.input
      expect(loaded.tokenizer.encode(gridText(grid), { addBos: false })).toEqual(gridIds(grid))
      const initial = initWeights(whole.setup.modelConfig, tinyConfig.seed)
      const final = yield* readSafetensors(Path.join(whole.modelDir!, "model.safetensors"))
      const embed = "model.embed_tokens.weight"
      expect(final.get(embed)!.data).not.toEqual(initial.get(embed)!.data)
    })))

  it.effect("a run stopped after k steps and resumed ends with byte-identical weights", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* tempDir("arc-pretrain-resumed")
      const total = whole.totalSteps
      const before = tf.memory().numTensors
      // Stop mid-window: windows [0, 2) and [2, 3).
      const first = yield* pretrainArc(tinySplits, { dir, config: tinyConfig, stopAfterSteps: 3 })
      expect(first.stepsDone).toBe(3)
      expect(first.modelDir).toBeUndefined()
      expect(Fs.existsSync(Path.join(dir, "model"))).toBe(false)
      expect(Fs.readdirSync(Path.join(dir, "checkpoints"))).toEqual(["step-000003"])
      // Resume (the config passed is ignored: the run's own is read back).
      const second = yield* pretrainArc(tinySplits, { dir, resume: true, config: { ...tinyConfig, seed: 99 } })
      expect(second.stepsDone).toBe(total)
      expect(second.modelDir).toBe(Path.join(dir, "model"))
      expect(tf.memory().numTensors).toBe(before)

      const bytes = (root: string, ...parts: Array<string>) => Fs.readFileSync(Path.join(root, ...parts))
      expect(bytes(dir, "model", "model.safetensors").equals(bytes(wholeDir, "model", "model.safetensors"))).toBe(
        true
      )
      expect(bytes(dir, "progress.jsonl").toString()).toBe(bytes(wholeDir, "progress.jsonl").toString())
      expect(bytes(dir, "model", "seal-arc.json").toString()).toBe(bytes(wholeDir, "model", "seal-arc.json").toString())
    })))

  it.effect("with `init` starts from that model's weights; a model of another shape is refused, naming init", () =>
    Effect.scoped(Effect.gen(function*() {
      const firstLoss = (dir: string) =>
        (JSON.parse(Fs.readFileSync(Path.join(dir, "progress.jsonl"), "utf8").split("\n")[0]!) as { loss: number })
          .loss
      // A learning rate too small to move anything: the result is the init model's weights.
      const dir = yield* tempDir("arc-pretrain-init")
      const still = decode({
        ...tinyInput,
        training: { ...tinyInput.training, learningRate: 1e-12, weightDecay: 0 },
        init: whole.modelDir!
      })
      const continued = yield* pretrainArc(tinySplits, { dir, config: still })
      const start = yield* readSafetensors(Path.join(whole.modelDir!, "model.safetensors"))
      const end = yield* readSafetensors(Path.join(continued.modelDir!, "model.safetensors"))
      for (const [name, tensor] of start) {
        const after = end.get(name)!.data
        expect(tensor.data.every((v, i) => Math.abs(v - after[i]!) < 1e-6), name).toBe(true)
      }
      // The trained weights fit the data better than the seeded random ones the whole run began with.
      expect(firstLoss(dir)).toBeLessThan(firstLoss(wholeDir))

      const wider = decode({ ...tinyInput, model: { ...tinyInput.model, hiddenSize: 32 }, init: whole.modelDir! })
      const refused = yield* Effect.flip(
        pretrainArc(tinySplits, { dir: yield* tempDir("arc-init-wider"), config: wider })
      )
      expect(refused).toBeInstanceOf(PretrainError)
      expect(refused.message).toMatch(/^init: .*model has hiddenSize 16, the run's model needs 32$/)
      const missing = decode({ ...tinyInput, init: Path.join(dir, "no-such-model") })
      const absent = yield* Effect.flip(
        pretrainArc(tinySplits, { dir: yield* tempDir("arc-init-absent"), config: missing })
      )
      expect(absent._tag).toBe("CheckpointError")
    })))
})
