import * as tf from "@tensorflow/tfjs-core"
import type { GradConfig, NamedAttrMap } from "@tensorflow/tfjs-core"

/**
 * Backward functions for the kernels the transformer and the loss run.
 *
 * `@tensorflow/tfjs-core` ships its gradient definitions only as extensionless ES modules
 * (`dist/register_all_gradients.js`) that Node cannot load, and its CommonJS bundle has none,
 * so `tf.grad` on a bare tfjs-core throws "gradient function not found". The union package
 * `@tensorflow/tfjs` would register them, but this project depends on tfjs-core and the
 * backends only. So we register our own, written from the derivatives, for exactly the kernels
 * on the path from a LoRA or base weight to the loss; a kernel that already has a gradient
 * (say `@tensorflow/tfjs` is loaded too) keeps it.
 *
 * Broadcasting binary ops reduce their incoming gradient back to each input's shape. The
 * gradient registry is global, and tfjs saves a kernel's inputs for backward only if a gradient
 * was registered when the kernel ran, so call `ensureGradients()` before the first forward pass
 * that should be differentiated.
 */

/** Sums `dy` down to `shape` over the axes that broadcasting expanded. */
export const reduceTo = (dy: tf.Tensor, shape: ReadonlyArray<number>): tf.Tensor => {
  if (dy.shape.length === shape.length && dy.shape.every((d, i) => d === shape[i])) return dy
  const lead = dy.rank - shape.length
  const axes: Array<number> = []
  for (let i = 0; i < dy.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && dy.shape[i] !== 1)) axes.push(i)
  }
  const summed = axes.length === 0 ? dy : tf.sum(dy, axes)
  return tf.reshape(summed, [...shape])
}

const normalizeAxes = (axis: unknown, rank: number): Array<number> => {
  const list = axis === undefined || axis === null
    ? Array.from({ length: rank }, (_, i) => i)
    : Array.isArray(axis)
    ? (axis as Array<number>)
    : [axis as number]
  return list.map((a) => (a < 0 ? a + rank : a))
}

/** `dy` of a reduction over `axis` broadcast back to `shape`. */
const unreduce = (dy: tf.Tensor, shape: ReadonlyArray<number>, axis: unknown): tf.Tensor => {
  const axes = normalizeAxes(axis, shape.length)
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d))
  return tf.mul(tf.reshape(dy, kept), tf.ones([...shape]))
}

const single = (dy: tf.Tensor | Array<tf.Tensor>): tf.Tensor => (Array.isArray(dy) ? dy[0]! : dy)

const attr = <T>(attrs: NamedAttrMap, name: string): T => (attrs as unknown as Record<string, T>)[name]!

const configs: ReadonlyArray<GradConfig> = [
  {
    kernelName: tf.Add,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => reduceTo(single(dy), a!.shape),
      b: () => reduceTo(single(dy), b!.shape)
    })
  },
  {
    kernelName: tf.AddN,
    saveAllInputs: true,
    gradFunc: (dy, saved) => Object.fromEntries(saved.map((_, i) => [String(i), () => tf.clone(single(dy))]))
  },
  {
    kernelName: tf.Sub,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => reduceTo(single(dy), a!.shape),
      b: () => reduceTo(tf.neg(single(dy)), b!.shape)
    })
  },
  {
    kernelName: tf.Multiply,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => reduceTo(tf.mul(single(dy), tf.cast(b!, "float32")), a!.shape),
      b: () => reduceTo(tf.mul(single(dy), tf.cast(a!, "float32")), b!.shape)
    })
  },
  {
    kernelName: tf.RealDiv,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => reduceTo(tf.div(single(dy), b!), a!.shape),
      // d(a/b)/db = -a / b²
      b: () => reduceTo(tf.neg(tf.div(tf.mul(single(dy), a!), tf.square(b!))), b!.shape)
    })
  },
  { kernelName: tf.Neg, gradFunc: (dy) => ({ x: () => tf.neg(single(dy)) }) },
  { kernelName: tf.Identity, gradFunc: (dy) => ({ x: () => tf.clone(single(dy)) }) },
  { kernelName: tf.Cast, gradFunc: (dy) => ({ x: () => tf.clone(single(dy)) }) },
  {
    kernelName: tf.Reshape,
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.reshape(single(dy), x!.shape) })
  },
  {
    kernelName: tf.ExpandDims,
    inputsToSave: ["input"],
    gradFunc: (dy, [input]) => ({ input: () => tf.reshape(single(dy), input!.shape) })
  },
  {
    kernelName: tf.Transpose,
    gradFunc: (dy, _saved, attrs) => {
      const perm = attr<Array<number>>(attrs, "perm")
      const inverse = new Array<number>(perm.length)
      perm.forEach((p, i) => (inverse[p] = i))
      return { x: () => tf.transpose(single(dy), inverse) }
    }
  },
  {
    // C = op(A) · op(B); each case is the product rule with the transposes carried through.
    kernelName: tf.BatchMatMul,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b], attrs) => {
      const g = single(dy)
      const ta = attr<boolean>(attrs, "transposeA") === true
      const tb = attr<boolean>(attrs, "transposeB") === true
      const dA = () => {
        const d = !ta
          ? (tb ? tf.matMul(g, b!) : tf.matMul(g, b!, false, true))
          : (tb ? tf.matMul(b!, g, true, true) : tf.matMul(b!, g, false, true))
        return reduceTo(d, a!.shape)
      }
      const dB = () => {
        const d = !tb
          ? (ta ? tf.matMul(a!, g) : tf.matMul(a!, g, true, false))
          : (ta ? tf.matMul(g, a!, true, true) : tf.matMul(g, a!, true, false))
        return reduceTo(d, b!.shape)
      }
      return { a: dA, b: dB }
    }
  },
  {
    kernelName: tf.Square,
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(single(dy), tf.mul(x!, 2)) })
  },
  {
    kernelName: tf.Rsqrt,
    inputsToSave: ["x"],
    // d x^(-1/2) / dx = -1/2 · x^(-3/2)
    gradFunc: (dy, [x]) => ({ x: () => tf.div(tf.mul(single(dy), -0.5), tf.mul(x!, tf.sqrt(x!))) })
  },
  {
    kernelName: tf.Exp,
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(single(dy), y!) })
  },
  {
    kernelName: tf.Log,
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.div(single(dy), x!) })
  },
  {
    kernelName: tf.Sigmoid,
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(single(dy), tf.mul(y!, tf.sub(1, y!))) })
  },
  {
    kernelName: tf.Softmax,
    outputsToSave: [true],
    gradFunc: (dy, [y], attrs) => {
      const dim = attr<number>(attrs, "dim")
      return {
        logits: () => {
          const g = single(dy)
          return tf.mul(y!, tf.sub(g, tf.sum(tf.mul(g, y!), dim, true)))
        }
      }
    }
  },
  {
    kernelName: tf.Sum,
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => ({ x: () => unreduce(single(dy), x!.shape, attr(attrs, "axis")) })
  },
  {
    kernelName: tf.Mean,
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const axes = normalizeAxes(attr(attrs, "axis"), x!.rank)
      const count = axes.reduce((n, a) => n * x!.shape[a]!, 1)
      return { x: () => tf.div(unreduce(single(dy), x!.shape, axes), count) }
    }
  },
  {
    kernelName: tf.Concat,
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const rank = saved[0]!.rank
      const axis = normalizeAxes(attr(attrs, "axis"), rank)[0]!
      const sizes = saved.map((t) => t.shape[axis]!)
      const grads: Record<string, () => tf.Tensor> = {}
      saved.forEach((_, i) => {
        grads[String(i)] = () => tf.split(single(dy), sizes, axis)[i]!
      })
      return grads
    }
  },
  {
    kernelName: tf.SplitV,
    gradFunc: (dy, _saved, attrs) => ({
      x: () => tf.concat(Array.isArray(dy) ? dy : [dy], attr<number>(attrs, "axis"))
    })
  },
  {
    kernelName: tf.Slice,
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const rank = x!.rank
      const rawBegin = attr<number | Array<number>>(attrs, "begin")
      const rawSize = attr<number | Array<number>>(attrs, "size")
      const begin = Array.isArray(rawBegin) ? rawBegin : [rawBegin]
      const size = Array.isArray(rawSize) ? rawSize : [rawSize]
      const paddings = Array.from({ length: rank }, (_, i) => {
        const b = begin[i] ?? 0
        const s = size[i] === undefined || size[i] === -1 ? x!.shape[i]! - b : size[i]!
        return [b, x!.shape[i]! - b - s] as [number, number]
      })
      return { x: () => tf.pad(single(dy), paddings) }
    }
  },
  {
    // Each output element comes from `index mod size` along every axis, so the gradient sums the
    // tiles. Reduce one tiled axis at a time, keeping every intermediate at rank <= 4.
    kernelName: tf.Tile,
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => ({
      x: () => {
        const reps = attr<Array<number>>(attrs, "reps")
        let g = single(dy)
        const shape = [...g.shape]
        reps.forEach((r, axis) => {
          if (r === 1) return
          const before = shape.slice(0, axis).reduce((n, d) => n * d, 1)
          const after = shape.slice(axis + 1).reduce((n, d) => n * d, 1)
          const size = x!.shape[axis]!
          g = tf.sum(tf.reshape(g, [before, r, size, after]), 1)
          shape[axis] = size
          g = tf.reshape(g, shape)
        })
        return tf.reshape(g, x!.shape)
      }
    })
  },
  {
    // The embedding lookup: scatter-add each gathered row's gradient back onto its id.
    kernelName: tf.GatherV2,
    inputsToSave: ["x", "indices"],
    gradFunc: (dy, [x, indices], attrs) => {
      const axis = normalizeAxes(attr(attrs, "axis") ?? 0, x!.rank)[0]!
      const batchDims = attr<number | undefined>(attrs, "batchDims") ?? 0
      if (axis !== 0 || batchDims !== 0) {
        throw new Error(`gather gradient is implemented for axis 0 without batchDims (got ${axis}, ${batchDims})`)
      }
      return {
        x: () => {
          const inner = x!.shape.slice(1)
          const rows = tf.reshape(single(dy), [indices!.size, ...inner])
          return tf.unsortedSegmentSum(rows, tf.reshape(indices!, [indices!.size]) as tf.Tensor1D, x!.shape[0]!)
        },
        indices: () => tf.zeros(indices!.shape, "float32")
      }
    }
  }
]

let registered = false

/** Registers the gradients above for every kernel that has none yet; cheap after the first call. */
export const ensureGradients = (): void => {
  if (registered) return
  for (const config of configs) {
    if (tf.getGradient(config.kernelName) === undefined) tf.registerGradient(config)
  }
  registered = true
}

/** The kernels this module can differentiate. */
export const differentiableKernels: ReadonlyArray<string> = configs.map((c) => c.kernelName)
