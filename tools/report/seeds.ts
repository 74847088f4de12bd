/**
 * Summarises `seal run` results over seeds: for each optimizer, every table row's accuracy as
 * mean ± std over the runs given (population std over seeds), and the gain of the last SEAL round
 * over the model's own pre-RL self-edits per seed.
 *
 *     npx tsx tools/report/seeds.ts runs/run-knowledge-demo-s0-... runs/run-knowledge-demo-s1-... ...
 *     npx tsx tools/report/seeds.ts results/knowledge-demo/rest-em-s*.json results/knowledge-demo/grpo-s*.json
 *
 * ARC results (rows with a held-out `set`) get one table per optimizer instead: per set and
 * method, the tasks solved in each seed, and the first attempt's cell accuracy as mean ± std.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

interface Row {
  readonly method: string
  readonly accuracy: number
  /** ARC only. */
  readonly set?: string
  readonly solved?: number
  readonly pairs?: number
  readonly cellAccuracy?: number
  readonly solvedTasks?: ReadonlyArray<string>
}
interface Results {
  readonly optimizer: string
  readonly seed: number
  readonly experiment: string
  readonly table: ReadonlyArray<Row>
}

const dirs = process.argv.slice(2)
if (dirs.length === 0) {
  console.error("usage: tsx tools/report/seeds.ts RUN_DIR...")
  process.exit(2)
}
// A run directory, or a results.json itself.
const runs = dirs.map((d) =>
  JSON.parse(Fs.readFileSync(d.endsWith(".json") ? d : Path.join(d, "results.json"), "utf8")) as Results
)
const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
const std = (xs: ReadonlyArray<number>) => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)))
const pct = (xs: ReadonlyArray<number>) => `${(100 * mean(xs)).toFixed(1)} ± ${(100 * std(xs)).toFixed(1)}`

const byOptimizer = new Map<string, Array<Results>>()
for (const r of runs) byOptimizer.set(r.optimizer, [...(byOptimizer.get(r.optimizer) ?? []), r])
const methods = [...new Set(runs.flatMap((r) => r.table.map((t) => t.method)))]
const optimizers = [...byOptimizer.keys()]

/** ARC: one table per optimizer, rows per (set, method). */
const arcTables = (): string =>
  optimizers.map((o) => {
    const group = byOptimizer.get(o)!
    const keys = [...new Set(group.flatMap((r) => r.table.map((t) => `${t.set}\t${t.method}`)))]
    const lines = [
      `${o}, seeds ${group.map((r) => r.seed).join(", ")}:`,
      "",
      "| set | method | solved per seed | tasks solved | cells right |",
      "|---|---|---|---|---|"
    ]
    for (const key of keys) {
      const [set, method] = key.split("\t")
      const rows = group.map((r) => r.table.find((t) => t.set === set && t.method === method)!)
      const solved = rows.map((t) => `${t.solved}/${t.pairs}`).join(", ")
      const ids = [...new Set(rows.flatMap((t) => t.solvedTasks ?? []))].join(", ") || "none"
      lines.push(`| ${set} | ${method} | ${solved} | ${ids} | ${pct(rows.map((t) => t.cellAccuracy ?? 0))}% |`)
    }
    return lines.join("\n")
  }).join("\n\n")

if (runs.every((r) => r.table.every((t) => t.set !== undefined))) {
  console.log(arcTables())
  process.exit(0)
}

const lines = [
  `| method | ${
    optimizers.map((o) => `${o} (seeds ${byOptimizer.get(o)!.map((r) => r.seed).join(", ")})`).join(" | ")
  } |`,
  `|---|${optimizers.map(() => "---").join("|")}|`
]
for (const m of methods) {
  const cells = optimizers.map((o) => {
    const xs = byOptimizer.get(o)!.flatMap((r) => r.table.filter((t) => t.method === m).map((t) => t.accuracy))
    return xs.length === 0 ? "" : pct(xs)
  })
  lines.push(`| ${m} | ${cells.join(" | ")} |`)
}
const gains = optimizers.map((o) => {
  const xs = byOptimizer.get(o)!.map((r) => {
    const seal = [...r.table].reverse().find((t) => t.method.startsWith("seal-round-"))
    const own = r.table.find((t) => t.method === "self-edit")
    return (seal?.accuracy ?? 0) - (own?.accuracy ?? 0)
  })
  return `${pct(xs)} points (per seed: ${xs.map((x) => (100 * x).toFixed(1)).join(", ")})`
})
lines.push(`| last round − own self-edits | ${gains.join(" | ")} |`)
console.log(lines.join("\n"))
