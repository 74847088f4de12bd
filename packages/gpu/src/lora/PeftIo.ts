/**
 * Saving and loading LoRA adapters in the Hugging Face PEFT layout, so an adapter trained here
 * loads with `PeftModel.from_pretrained` and one trained with PEFT loads here:
 *
 * - `adapter_config.json`: PEFT's `LoraConfig` fields, plus our identity under the `seal` key
 *   (PEFT drops keys it does not know when it loads a config);
 * - `adapter_model.safetensors`: `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`
 *   `[r, in]` and `...lora_B.weight` `[out, r]` for each adapted projection (`mlp.*` for
 *   gate/up/down), in float32.
 *
 * The identity is what keeps an adapter from being used with a model it was not trained on:
 * `loadAdapter` compares its `parentModelHash` with the loaded model's.
 */
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { CheckpointError } from "../checkpoint/CheckpointError.js"
import { readSafetensors, writeSafetensors } from "../checkpoint/Safetensors.js"
import type { HostTensor, ModelConfig } from "../model/ModelConfig.js"
import type { ProjectionName } from "../model/Transformer.js"
import { projectionNames } from "../model/Transformer.js"
import type { LoraAdapter, LoraConfig, LoraModule } from "./LoraAdapter.js"
import { projectionDims, validateLoraConfig } from "./LoraAdapter.js"

export const adapterConfigFile = "adapter_config.json"
export const adapterWeightsFile = "adapter_model.safetensors"

/** `parentModelHash` of an adapter whose base model is not recorded (one saved by Python PEFT). */
export const unknownParentModelHash = "unknown"

/**
 * Anything wrong with an adapter directory. `file` is the file at fault and `field` the JSON
 * key or tensor name, so one line tells the user what to fix.
 */
export class AdapterIoError extends Data.TaggedError("AdapterIoError")<{
  /**
   * NotFound: a missing file; Malformed: unreadable JSON, a bad field or tensor; Unsupported: a
   * PEFT feature we cannot apply (DoRA, biases, per-module ranks, ...); ShapeMismatch: tensors
   * that do not fit the model; StaleAdapter: the adapter records another base model;
   * UnknownParent: the adapter records no base model and the caller did not allow that;
   * WriteFailed: the adapter could not be saved.
   */
  readonly reason:
    | "NotFound"
    | "Malformed"
    | "Unsupported"
    | "ShapeMismatch"
    | "StaleAdapter"
    | "UnknownParent"
    | "WriteFailed"
  readonly file: string
  readonly field?: string
  readonly detail: string
}> {
  override get message(): string {
    const where = this.field === undefined ? this.file : `${this.file} (${this.field})`
    return `${where}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------
// Names

interface HfModule {
  readonly block: "self_attn" | "mlp"
  readonly name: string
}

const hfModules: Record<ProjectionName, HfModule> = {
  q: { block: "self_attn", name: "q_proj" },
  k: { block: "self_attn", name: "k_proj" },
  v: { block: "self_attn", name: "v_proj" },
  o: { block: "self_attn", name: "o_proj" },
  gate: { block: "mlp", name: "gate_proj" },
  up: { block: "mlp", name: "up_proj" },
  down: { block: "mlp", name: "down_proj" }
}

/** PEFT's `target_modules` name of a projection (`q` → `q_proj`). */
export const peftModuleName = (target: ProjectionName): string => hfModules[target].name

const byHfName: ReadonlyMap<string, ProjectionName> = new Map(
  projectionNames.map((p) => [hfModules[p].name, p] as const)
)

/** The projection a PEFT module name denotes (`q_proj` → `q`), if it is one of ours. */
export const projectionOfPeftModule = (name: string): ProjectionName | undefined => byHfName.get(name)

/** The safetensors name of a module's `lora_A` or `lora_B` weight, as PEFT saves it. */
export const peftTensorName = (layer: number, target: ProjectionName, which: "A" | "B"): string => {
  const m = hfModules[target]
  return `base_model.model.model.layers.${layer}.${m.block}.${m.name}.lora_${which}.weight`
}

const tensorNamePattern =
  /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z]+_proj)\.lora_(A|B)\.weight$/

const parseTensorName = (
  name: string
): { readonly layer: number; readonly target: ProjectionName; readonly which: "A" | "B" } | undefined => {
  const match = tensorNamePattern.exec(name)
  if (match === null) return undefined
  const target = byHfName.get(match[3]!)
  if (target === undefined || hfModules[target].block !== match[2]) return undefined
  return { layer: Number(match[1]), target, which: match[4] as "A" | "B" }
}

// ---------------------------------------------------------------------------------------------
// adapter_config.json

const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())

/** Our identity, under the `seal` key. */
const SealIdentity = Schema.Struct({
  id: Schema.String,
  parentModelHash: Schema.String,
  createdAtStep: NonNegativeInt,
  trainedSteps: NonNegativeInt
})

/** The `LoraConfig` fields we read; everything else PEFT writes is ignored. */
const PeftLoraConfig = Schema.Struct({
  peft_type: Schema.String,
  r: Schema.Int.pipe(Schema.positive()),
  lora_alpha: Schema.Number,
  lora_dropout: Schema.optional(Schema.Number),
  // A list, or a regex string that PEFT matched against module names (then the tensors say).
  target_modules: Schema.optional(Schema.NullOr(Schema.Union(Schema.String, Schema.Array(Schema.String)))),
  use_rslora: Schema.optional(Schema.Boolean),
  bias: Schema.optional(Schema.String),
  use_dora: Schema.optional(Schema.Boolean),
  fan_in_fan_out: Schema.optional(Schema.Boolean),
  modules_to_save: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  rank_pattern: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
  alpha_pattern: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown }))),
  layers_to_transform: Schema.optional(Schema.NullOr(Schema.Union(Schema.Int, Schema.Array(Schema.Int)))),
  seal: Schema.optional(SealIdentity)
})

export interface SaveAdapterOptions {
  /** Written as PEFT's `base_model_name_or_path` (default null). */
  readonly baseModelNameOrPath?: string | undefined
}

/** The `adapter_config.json` object for `adapter`, keys sorted as PEFT writes them. */
export const peftConfigJson = (adapter: LoraAdapter, options: SaveAdapterOptions = {}): Record<string, unknown> => ({
  alpha_pattern: {},
  auto_mapping: null,
  base_model_name_or_path: options.baseModelNameOrPath ?? null,
  bias: "none",
  fan_in_fan_out: false,
  inference_mode: true,
  init_lora_weights: true,
  layers_pattern: null,
  layers_to_transform: null,
  lora_alpha: adapter.config.alpha,
  lora_dropout: adapter.config.dropout,
  modules_to_save: null,
  peft_type: "LORA",
  r: adapter.config.rank,
  rank_pattern: {},
  revision: null,
  target_modules: projectionNames.filter((p) => adapter.config.targets.includes(p)).map(peftModuleName),
  task_type: "CAUSAL_LM",
  use_dora: false,
  use_rslora: adapter.config.rsLora === true,
  seal: {
    id: adapter.id,
    parentModelHash: adapter.parentModelHash,
    createdAtStep: adapter.createdAtStep,
    trainedSteps: adapter.trainedSteps
  }
})

/** The tensors of `adapter_model.safetensors`: A then B per module, in module order. */
export const peftTensors = (adapter: LoraAdapter): Map<string, HostTensor> => {
  const tensors = new Map<string, HostTensor>()
  for (const m of adapter.modules) {
    tensors.set(peftTensorName(m.layer, m.target, "A"), m.a)
    tensors.set(peftTensorName(m.layer, m.target, "B"), m.b)
  }
  return tensors
}

// ---------------------------------------------------------------------------------------------
// Saving

/** What may sit in a directory that `saveAdapter` replaces: an earlier adapter and PEFT's card. */
const replaceableEntries: ReadonlySet<string> = new Set([
  adapterConfigFile,
  adapterWeightsFile,
  "adapter_model.bin",
  "README.md"
])

const osMessage = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const errnoCode = (cause: unknown): unknown => (cause as { readonly code?: unknown } | undefined)?.code

/** A file-system call whose failure stays the raw error, so its errno code can be inspected. */
const attempt = <A>(f: () => Promise<A>): Effect.Effect<A, unknown> => Effect.tryPromise({ try: f, catch: (e) => e })

/**
 * Fails unless `dir` can take an adapter: it does not exist, is empty, or holds only an earlier
 * adapter. Anything else (a file, a training run's output with checkpoints in it) is refused
 * rather than replaced. Callers run this before a long training run so it fails up front.
 */
export const checkAdapterTarget = (dir: string): Effect.Effect<void, AdapterIoError> =>
  Effect.gen(function*() {
    const refuse = (detail: string) => new AdapterIoError({ reason: "WriteFailed", file: dir, detail })
    const stat = yield* attempt(() => Fs.promises.stat(dir)).pipe(
      Effect.catchAll((cause) =>
        errnoCode(cause) === "ENOENT" ? Effect.succeed(undefined) : Effect.fail(refuse(osMessage(cause)))
      )
    )
    if (stat === undefined) return
    if (!stat.isDirectory()) return yield* refuse("exists and is not a directory")
    const entries = yield* Effect.tryPromise({
      try: () => Fs.promises.readdir(dir),
      catch: (cause) => refuse(`cannot list: ${osMessage(cause)}`)
    })
    const foreign = entries.filter((e) => !replaceableEntries.has(e))
    if (foreign.length > 0) {
      return yield* refuse(
        `holds ${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", ..." : ""}, not just an adapter; ` +
          "refusing to replace it (choose an empty or new directory)"
      )
    }
  })

const checkSavable = (file: string, adapter: LoraAdapter): Either.Either<void, AdapterIoError> => {
  const valid = validateLoraConfig(adapter.config)
  if (Either.isLeft(valid)) {
    return Either.left(
      new AdapterIoError({ reason: "Malformed", file, field: valid.left.field, detail: valid.left.detail })
    )
  }
  const r = adapter.config.rank
  const seen = new Set<string>()
  for (const m of adapter.modules) {
    const key = `${m.layer}.${m.target}`
    if (seen.has(key)) {
      return Either.left(
        new AdapterIoError({ reason: "Malformed", file, field: key, detail: "module appears twice in the adapter" })
      )
    }
    seen.add(key)
    if (m.a.shape.length !== 2 || m.a.shape[0] !== r || m.b.shape.length !== 2 || m.b.shape[1] !== r) {
      return Either.left(
        new AdapterIoError({
          reason: "ShapeMismatch",
          file,
          field: key,
          detail: `A [${m.a.shape}] and B [${m.b.shape}] are not [${r}, in] and [out, ${r}]`
        })
      )
    }
  }
  return Either.void
}

const fromCheckpointError = (e: CheckpointError): AdapterIoError =>
  new AdapterIoError({
    reason: e.reason === "NotFound" ? "NotFound" : e.reason === "ShapeMismatch" ? "ShapeMismatch" : "Malformed",
    file: e.file,
    ...(e.field === undefined ? {} : { field: e.field }),
    detail: e.detail
  })

/**
 * Writes `adapter` to `dir` in the PEFT layout. Both files are written into a temporary sibling
 * directory, which is then renamed to `dir` (an earlier adapter there is swapped out and
 * removed), so a reader never sees a config without its weights or a half-written file.
 * Parent directories are created as needed.
 */
export const saveAdapter = (
  dir: string,
  adapter: LoraAdapter,
  options: SaveAdapterOptions = {}
): Effect.Effect<void, AdapterIoError> =>
  Effect.gen(function*() {
    const target = Path.resolve(dir)
    yield* checkSavable(target, adapter)
    yield* checkAdapterTarget(target)
    const fail = (doing: string) => (cause: unknown) =>
      new AdapterIoError({ reason: "WriteFailed", file: target, detail: `cannot ${doing}: ${osMessage(cause)}` })
    const parent = Path.dirname(target)
    yield* Effect.tryPromise({
      try: () => Fs.promises.mkdir(parent, { recursive: true }),
      catch: fail("create the parent directory")
    })
    const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`
    const temp = Path.join(parent, `.${Path.basename(target)}.${suffix}.tmp`)
    const old = Path.join(parent, `.${Path.basename(target)}.${suffix}.old`)
    const removeQuietly = (path: string) =>
      Effect.tryPromise(() => Fs.promises.rm(path, { recursive: true, force: true })).pipe(Effect.ignore)

    const writeTemp = Effect.gen(function*() {
      yield* Effect.tryPromise({ try: () => Fs.promises.mkdir(temp), catch: fail("create a temporary directory") })
      const json = JSON.stringify(peftConfigJson(adapter, options), null, 2) + "\n"
      yield* Effect.tryPromise({
        try: async () => {
          const handle = await Fs.promises.open(Path.join(temp, adapterConfigFile), "wx")
          try {
            await handle.writeFile(json, "utf8")
            await handle.sync()
          } finally {
            await handle.close()
          }
        },
        catch: fail(`write ${adapterConfigFile}`)
      })
      yield* writeSafetensors(Path.join(temp, adapterWeightsFile), peftTensors(adapter), { format: "pt" }).pipe(
        Effect.mapError((e) =>
          new AdapterIoError({ reason: "WriteFailed", file: Path.join(target, adapterWeightsFile), detail: e.detail })
        )
      )
    })

    // rename(2) cannot replace a non-empty directory, so an existing adapter is moved aside
    // first and put back if the new one cannot take its place.
    const swapIn = Effect.gen(function*() {
      const existed = yield* attempt(() => Fs.promises.rename(target, old)).pipe(
        Effect.as(true),
        Effect.catchAll((cause) =>
          errnoCode(cause) === "ENOENT" ? Effect.succeed(false) : Effect.fail(fail("move the old adapter aside")(cause))
        )
      )
      yield* Effect.tryPromise({ try: () => Fs.promises.rename(temp, target), catch: fail("rename into place") }).pipe(
        Effect.tapError(() =>
          existed ? Effect.tryPromise(() => Fs.promises.rename(old, target)).pipe(Effect.ignore) : Effect.void
        )
      )
      if (existed) yield* removeQuietly(old)
    })

    yield* writeTemp.pipe(
      Effect.zipRight(swapIn),
      Effect.onError(() => removeQuietly(temp))
    )
  })

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadAdapterOptions {
  /** `hashDeviceWeights` / `hashWeights` of the model the adapter will be used with. */
  readonly parentModelHash?: string | undefined
  /** The model's shape: every tensor must fit it, and every adapted layer must be present. */
  readonly modelConfig?: ModelConfig | undefined
  /**
   * Accept an adapter that records no base model (saved by Python PEFT, without our `seal`
   * key); it loads with `parentModelHash` = `unknownParentModelHash`. Default false.
   */
  readonly allowUnknownParent?: boolean | undefined
}

/** Turns a schema failure into an AdapterIoError naming the first offending field. */
const schemaError = (file: string, error: ParseResult.ParseError): AdapterIoError => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const field = issue === undefined || issue.path.length === 0 ? undefined : issue.path.map(String).join(".")
  return new AdapterIoError({
    reason: "Malformed",
    file,
    ...(field === undefined ? {} : { field }),
    detail: issue?.message ?? error.message
  })
}

const short = (hash: string) => hash.slice(0, 12)

/**
 * Reads `dir/adapter_config.json` into a LoRA config and identity. Rejects PEFT features whose
 * effect we would silently drop (DoRA, trained biases, per-module ranks, extra saved modules).
 */
const readPeftConfig = (dir: string, options: LoadAdapterOptions) =>
  Effect.gen(function*() {
    const file = Path.join(dir, adapterConfigFile)
    const text = yield* Effect.tryPromise({
      try: () => Fs.promises.readFile(file, "utf8"),
      catch: (cause) =>
        new AdapterIoError({
          reason: errnoCode(cause) === "ENOENT" || errnoCode(cause) === "ENOTDIR" ? "NotFound" : "Malformed",
          file,
          detail: errnoCode(cause) === "ENOENT" || errnoCode(cause) === "ENOTDIR"
            ? "no such file (not a PEFT adapter directory?)"
            : `cannot read: ${osMessage(cause)}`
        })
    })
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) => new AdapterIoError({ reason: "Malformed", file, detail: `not valid JSON: ${osMessage(e)}` })
    })
    const c = yield* Schema.decodeUnknown(PeftLoraConfig)(json).pipe(Effect.mapError((e) => schemaError(file, e)))
    const unsupported = (field: string, detail: string) =>
      new AdapterIoError({ reason: "Unsupported", file, field, detail })
    if (c.peft_type !== "LORA") return yield* unsupported("peft_type", `${c.peft_type} adapters are not supported`)
    if (c.use_dora === true) return yield* unsupported("use_dora", "DoRA adapters are not supported")
    if (c.bias !== undefined && c.bias !== "none") {
      return yield* unsupported("bias", `bias "${c.bias}" is not supported (only "none")`)
    }
    if (c.fan_in_fan_out === true) {
      return yield* unsupported("fan_in_fan_out", "Conv1D-style adapters are not supported")
    }
    if (c.modules_to_save !== undefined && c.modules_to_save !== null && c.modules_to_save.length > 0) {
      return yield* unsupported("modules_to_save", `fully trained modules (${c.modules_to_save}) are not supported`)
    }
    for (const key of ["rank_pattern", "alpha_pattern"] as const) {
      const pattern = c[key]
      if (pattern !== undefined && pattern !== null && Object.keys(pattern).length > 0) {
        return yield* unsupported(key, "per-module ranks and alphas are not supported")
      }
    }

    // undefined: the tensors decide (a regex or missing `target_modules`).
    let targets: Array<ProjectionName> | undefined
    if (Array.isArray(c.target_modules)) {
      targets = []
      for (const name of c.target_modules as ReadonlyArray<string>) {
        const target = byHfName.get(name)
        if (target === undefined) {
          return yield* unsupported(
            "target_modules",
            `module "${name}" is not one of ${projectionNames.map(peftModuleName).join(", ")}`
          )
        }
        targets.push(target)
      }
    }

    let identity = c.seal
    if (identity !== undefined && identity.parentModelHash === unknownParentModelHash) identity = undefined
    if (identity === undefined && options.allowUnknownParent !== true) {
      return yield* new AdapterIoError({
        reason: "UnknownParent",
        file,
        field: "seal",
        detail: "the adapter does not record which model it was trained on (saved by PEFT?); " +
          "allow unknown-parent adapters to use it anyway"
      })
    }
    if (
      identity !== undefined && options.parentModelHash !== undefined &&
      identity.parentModelHash !== options.parentModelHash
    ) {
      return yield* new AdapterIoError({
        reason: "StaleAdapter",
        file,
        field: "seal.parentModelHash",
        detail: `adapter ${identity.id} was trained on model ${short(identity.parentModelHash)}, ` +
          `not the loaded model ${short(options.parentModelHash)}`
      })
    }
    const layers = c.layers_to_transform === undefined || c.layers_to_transform === null
      ? undefined
      : typeof c.layers_to_transform === "number"
      ? [c.layers_to_transform]
      : [...c.layers_to_transform]
    return {
      file,
      text,
      rank: c.r,
      alpha: c.lora_alpha,
      dropout: c.lora_dropout ?? 0,
      rsLora: c.use_rslora === true,
      targets,
      layers,
      identity
    }
  })

/**
 * Loads the adapter in `dir`. With `parentModelHash`, an adapter recording another base model
 * fails with "StaleAdapter"; with `modelConfig`, tensors that do not fit the model fail with
 * "ShapeMismatch" and missing ones with "Malformed", each naming the tensor. Tensors may be
 * F32, F16 or BF16.
 */
export const loadAdapter = (
  dir: string,
  options: LoadAdapterOptions = {}
): Effect.Effect<LoraAdapter, AdapterIoError> =>
  Effect.gen(function*() {
    const peft = yield* readPeftConfig(dir, options)
    const file = Path.join(dir, adapterWeightsFile)
    const tensors = yield* readSafetensors(file).pipe(Effect.mapError(fromCheckpointError))
    const fault = (reason: AdapterIoError["reason"], field: string, detail: string) =>
      new AdapterIoError({ reason, file, field, detail })

    const pairs = new Map<string, { layer: number; target: ProjectionName; a?: HostTensor; b?: HostTensor }>()
    for (const [name, tensor] of tensors) {
      const parsed = parseTensorName(name)
      if (parsed === undefined) {
        return yield* fault(
          "Unsupported",
          name,
          "not a LoRA weight of a Llama projection (expected base_model.model.model.layers.N.<self_attn|mlp>." +
            "<module>.lora_<A|B>.weight)"
        )
      }
      if (peft.targets !== undefined && !peft.targets.includes(parsed.target)) {
        return yield* fault("Malformed", name, `${peftModuleName(parsed.target)} is not in target_modules`)
      }
      const key = `${parsed.layer}.${parsed.target}`
      const pair = pairs.get(key) ?? { layer: parsed.layer, target: parsed.target }
      if (parsed.which === "A") pair.a = tensor
      else pair.b = tensor
      pairs.set(key, pair)
    }
    if (pairs.size === 0) return yield* fault("Malformed", "tensors", "the file holds no LoRA weights")

    const targets = peft.targets ?? projectionNames.filter((p) => [...pairs.values()].some((m) => m.target === p))
    const config: LoraConfig = {
      rank: peft.rank,
      alpha: peft.alpha,
      dropout: peft.dropout,
      targets,
      ...(peft.rsLora ? { rsLora: true } : {})
    }
    const valid = validateLoraConfig(config)
    if (Either.isLeft(valid)) {
      const field = { rank: "r", alpha: "lora_alpha", dropout: "lora_dropout", targets: "target_modules" }[
        valid.left.field
      ] ?? valid.left.field
      return yield* new AdapterIoError({ reason: "Malformed", file: peft.file, field, detail: valid.left.detail })
    }

    const r = peft.rank
    const modules: Array<LoraModule> = []
    for (const pair of pairs.values()) {
      const { layer, target } = pair
      if (pair.a === undefined || pair.b === undefined) {
        const missing = pair.a === undefined ? "A" : "B"
        return yield* fault(
          "Malformed",
          peftTensorName(layer, target, missing),
          `missing, while its lora_${missing === "A" ? "B" : "A"} is present`
        )
      }
      if (peft.layers !== undefined && !peft.layers.includes(layer)) {
        return yield* fault("Malformed", peftTensorName(layer, target, "A"), "layer not in layers_to_transform")
      }
      const dims = options.modelConfig === undefined ? undefined : projectionDims(options.modelConfig, target)
      if (options.modelConfig !== undefined && layer >= options.modelConfig.numLayers) {
        return yield* fault(
          "ShapeMismatch",
          peftTensorName(layer, target, "A"),
          `layer ${layer} does not exist: the model has ${options.modelConfig.numLayers} layers`
        )
      }
      const check = (which: "A" | "B", t: HostTensor, rows: number | undefined, cols: number | undefined) => {
        const ok = t.shape.length === 2 && (rows === undefined || t.shape[0] === rows) &&
          (cols === undefined || t.shape[1] === cols)
        const want = `[${rows ?? (which === "A" ? r : "out")}, ${cols ?? (which === "A" ? "in" : r)}]`
        return ok
          ? Either.void
          : Either.left(fault("ShapeMismatch", peftTensorName(layer, target, which), `[${t.shape}] should be ${want}`))
      }
      yield* check("A", pair.a, r, dims?.in)
      yield* check("B", pair.b, dims?.out, r)
      modules.push({ layer, target, a: pair.a, b: pair.b })
    }
    modules.sort((x, y) => x.layer - y.layer || projectionNames.indexOf(x.target) - projectionNames.indexOf(y.target))

    // With the model's shape known, every adapted (layer, target) must be there: a pruned or
    // half-copied file would otherwise load as a weaker adapter without a word.
    if (options.modelConfig !== undefined) {
      const present = new Set(modules.map((m) => `${m.layer}.${m.target}`))
      const layers = peft.layers ?? Array.from({ length: options.modelConfig.numLayers }, (_, i) => i)
      for (const layer of layers) {
        for (const target of targets) {
          if (!present.has(`${layer}.${target}`)) {
            return yield* fault("Malformed", peftTensorName(layer, target, "A"), "missing from the adapter")
          }
        }
      }
    }

    const identity = peft.identity
    return {
      id: identity?.id ?? `peft-${contentHash(peft.text, modules)}`,
      parentModelHash: identity?.parentModelHash ?? unknownParentModelHash,
      config: valid.right,
      createdAtStep: identity?.createdAtStep ?? 0,
      trainedSteps: identity?.trainedSteps ?? 0,
      modules
    }
  })

/** An id for an adapter without one: the same files give the same id. */
const contentHash = (configText: string, modules: ReadonlyArray<LoraModule>): string => {
  const hash = createHash("sha256").update(configText)
  for (const m of modules) {
    for (const t of [m.a, m.b]) hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
  }
  return hash.digest("hex").slice(0, 16)
}
