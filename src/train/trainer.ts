// The training loop: seeded sample order, collation (src/train/data.ts), gradient accumulation
// over micro-batches, AdamW with clipping and a warmup + decay schedule (src/train/optim.ts),
// per-step records (loss split into generation and retrieval, tokens/s), and checkpoints that
// resume with no loss of progress.
//
// Reproducibility: every random choice is a pure function of (seed, position), never of a
// running generator whose state could be lost:
//   - sample order: epoch e is the permutation shuffle(0..N−1, Rng(mix(seed, e))); optimizer
//     step s takes run positions [s·B·G, (s+1)·B·G) (B samples per micro-batch, G micro-batches);
//   - collation of micro-batch m of step s uses Rng(mix(seed, s, m));
//   - LoRA dropout masks are keyed by the TrainModel's micro-step counter (restored on resume).
// So the whole "RNG state" of a run is (seed, step, micro-step counter), and a checkpoint holds it
// with every trainable parameter's f32 master, AdamW moments and step count. Resuming from the
// checkpoint of step k and training to n gives the same losses and weights, bit for bit, as
// training straight to n (test/train-cli.test.ts).
//
// Loss normalisation over an accumulated step: L_gen is divided by the generation tokens of all
// G micro-batches and L_ret by all their pairs, so G micro-batches of B equal one batch of G·B.
//
// Divergence: a step whose loss or gradient norm is NaN/inf throws NonFiniteError naming the step
// (both are read back every step already, so the check costs no sync). It is not recorded. AdamW
// skips an update whose gradient is non-finite, and the step and micro-step counters are then
// wound back: the trainer is in the state of the last finite step. (A finite gradient with an
// infinite loss has been applied; the counters stay.) The caller keeps its last checkpoint and
// saves nothing more (src/cli/train.ts).

import { LoadError, NonFiniteError, UsageError } from "../errors.js";
import { SafetensorsFile } from "../io/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../io/safetensors-write.js";
import { bytesSource } from "../io/source.js";
import { f32ArrayToF16 } from "../util/f16.js";
import { Rng } from "../util/rng.js";
import { collate, type CollateOptions, type TrainData } from "./data.js";
import { trainStep, type TrainModel } from "./model.js";
import { AdamW, type ScheduleOptions } from "./optim.js";
import { checkOutput, nodeIo, recoverOutput, writeDirAtomic } from "../io/output.js";

export interface TrainerOptions {
  /** Optimizer steps of the whole run (the schedule's length). */
  steps: number;
  lr: number;
  /** Samples per micro-batch (default 1). */
  batchSize?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  seed?: number;
  warmupSteps?: number;
  decay?: ScheduleOptions["decay"];
  minLrRatio?: number;
  weightDecay?: number;
  /** Global gradient-norm clip (default 1; 0 disables). */
  maxGradNorm?: number;
  lambdaGen?: number;
  lambdaRet?: number;
  collate?: CollateOptions;
}

/** One optimizer step's record (the --log JSONL line). */
export interface StepRecord {
  /** Optimizer steps completed (1-based). */
  step: number;
  loss: number;
  loss_gen: number;
  loss_ret: number;
  lr: number;
  grad_norm: number;
  tokens: number;
  tokens_per_s: number;
  gen_tokens: number;
  pairs: number;
  pairs_correct: number;
  seconds: number;
}

/** What a checkpoint's trainer_state.json holds. */
export interface TrainerState {
  format: "onegen-train-checkpoint";
  version: 1;
  step: number;
  /** The TrainModel's micro-step counter (LoRA dropout masks). */
  microSteps: number;
  /** The optimizer's step count. */
  optimizerSteps: number;
  /** The random state: seed plus the counters above (every stream is derived from them). */
  rng: { seed: number; scheme: "counter" };
  mode: "full" | "lora";
  options: Required<Omit<TrainerOptions, "collate">> & { collate: CollateOptions };
  samples: number;
  documents: number;
  params: { name: string; shape: number[] }[];
  history: StepRecord[];
}

export const CHECKPOINT_STATE = "trainer_state.json";
export const CHECKPOINT_TENSORS = "optimizer.safetensors";

/** Combines integers into a 32-bit seed (murmur3 finaliser over a running hash). */
export function mixSeed(...xs: number[]): number {
  let h = 0x9e3779b9;
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** The permutation of sample indices of one epoch. */
export function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  const rng = new Rng(mixSeed(seed, 0x5eed, epoch));
  const a = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

function resolveOptions(o: TrainerOptions): Required<Omit<TrainerOptions, "collate">> & { collate: CollateOptions } {
  const r = {
    steps: o.steps,
    lr: o.lr,
    batchSize: o.batchSize ?? 1,
    gradAccum: o.gradAccum ?? 1,
    seed: o.seed ?? 0,
    warmupSteps: o.warmupSteps ?? 0,
    decay: o.decay ?? ("cosine" as const),
    minLrRatio: o.minLrRatio ?? 0,
    weightDecay: o.weightDecay ?? 0,
    maxGradNorm: o.maxGradNorm ?? 1,
    lambdaGen: o.lambdaGen ?? 1,
    lambdaRet: o.lambdaRet ?? 1,
    collate: { ...(o.collate ?? {}) },
  };
  for (const k of ["steps", "batchSize", "gradAccum"] as const) if (!Number.isInteger(r[k]) || r[k] < 1) throw new UsageError(`trainer: ${k} must be a positive integer, got ${r[k]}`);
  if (!Number.isInteger(r.seed) || r.seed < 0) throw new UsageError(`trainer: seed must be a non-negative integer, got ${r.seed}`);
  if (!Number.isInteger(r.warmupSteps) || r.warmupSteps < 0) throw new UsageError(`trainer: warmupSteps must be a non-negative integer, got ${r.warmupSteps}`);
  if (!(r.lr > 0) || !Number.isFinite(r.lr)) throw new UsageError(`trainer: lr must be a finite number > 0, got ${r.lr}`);
  if (r.decay !== "constant" && r.warmupSteps >= r.steps) throw new UsageError(`trainer: warmup (${r.warmupSteps} steps) must be shorter than the run (${r.steps} steps) for a ${r.decay} decay`);
  return r;
}

export class Trainer {
  private stepDone = 0;
  private readonly order = new Map<number, Uint32Array>();
  readonly history: StepRecord[] = [];

  private constructor(
    readonly model: TrainModel,
    readonly data: TrainData,
    readonly optimizer: AdamW,
    readonly options: Required<Omit<TrainerOptions, "collate">> & { collate: CollateOptions },
  ) {}

  static async create(model: TrainModel, data: TrainData, opts: TrainerOptions): Promise<Trainer> {
    const o = resolveOptions(opts);
    const optimizer = await AdamW.create(model.ctx, model.params, {
      lr: o.lr,
      weightDecay: o.weightDecay,
      maxGradNorm: o.maxGradNorm,
      schedule: { warmupSteps: o.warmupSteps, totalSteps: o.steps, decay: o.decay, minLrRatio: o.minLrRatio },
    });
    return new Trainer(model, data, optimizer, o);
  }

  /** Optimizer steps completed. */
  get step(): number {
    return this.stepDone;
  }
  get done(): boolean {
    return this.stepDone >= this.options.steps;
  }

  /** Sample indices of micro-batch m of optimizer step s. */
  microBatch(s: number, m: number): number[] {
    const { batchSize: B, gradAccum: G, seed } = this.options;
    const N = this.data.samples.length;
    const out: number[] = [];
    for (let i = 0; i < B; i++) {
      const k = (s * G + m) * B + i;
      const epoch = Math.floor(k / N);
      let perm = this.order.get(epoch);
      if (!perm) {
        perm = epochOrder(N, seed, epoch);
        this.order.clear();
        this.order.set(epoch, perm);
      }
      out.push(perm[k % N]!);
    }
    return out;
  }

  /** Runs one optimizer step (G micro-batches) and returns its record. */
  async trainOneStep(): Promise<StepRecord> {
    if (this.done) throw new UsageError(`trainer: all ${this.options.steps} steps are done`);
    const o = this.options;
    const s = this.stepDone;
    const started = performance.now();
    const micro = Array.from({ length: o.gradAccum }, (_, m) => collate(this.data, this.microBatch(s, m), new Rng(mixSeed(o.seed, s, m)), o.collate));
    const genTotal = micro.reduce((a, c) => a + c.genTokens, 0);
    const pairTotal = micro.reduce((a, c) => a + c.pairs, 0);
    const lr = this.optimizer.nextLr;
    let lossGen = 0;
    let lossRet = 0;
    let pairsCorrect = 0;
    let tokens = 0;
    for (const [m, c] of micro.entries()) {
      const r = await trainStep(this.model, c.batch, {
        lambdaGen: o.lambdaGen,
        lambdaRet: o.lambdaRet,
        accumulate: m > 0,
        genNormalizer: Math.max(genTotal, 1),
        retNormalizer: Math.max(pairTotal, 1),
      });
      lossGen += r.lossGen;
      lossRet += r.lossRet;
      pairsCorrect += r.pairsCorrect;
      tokens += c.tokens;
    }
    await this.optimizer.step();
    const { norm } = await this.optimizer.lastGradNorm(); // also waits for the update
    const loss = o.lambdaGen * lossGen + o.lambdaRet * lossRet;
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
      if (!Number.isFinite(norm)) {
        // AdamW skipped the update (kernels/adamw.wgsl, STEP): undo the counters too
        this.optimizer.setStepCount(this.optimizer.stepCount - 1);
        this.model.steps -= o.gradAccum;
      }
      throw new NonFiniteError(`training diverged at step ${s + 1}: loss ${loss} (generation ${lossGen}, retrieval ${lossRet}), gradient norm ${norm}`);
    }
    const seconds = (performance.now() - started) / 1000;
    this.stepDone++;
    const rec: StepRecord = {
      step: this.stepDone,
      loss,
      loss_gen: lossGen,
      loss_ret: lossRet,
      lr,
      grad_norm: norm,
      tokens,
      tokens_per_s: seconds > 0 ? tokens / seconds : 0,
      gen_tokens: genTotal,
      pairs: pairTotal,
      pairs_correct: pairsCorrect,
      seconds,
    };
    this.history.push(rec);
    return rec;
  }

  /**
   * Trains until `until` steps are done (default: the run's total). After each step: onStep, and
   * every `saveEvery` steps (and at the end when saveEvery is set) checkpoint(step).
   */
  async run(opts: { until?: number; saveEvery?: number; onStep?: (r: StepRecord) => void | Promise<void>; checkpoint?: (step: number) => Promise<void> } = {}): Promise<StepRecord[]> {
    const until = Math.min(opts.until ?? this.options.steps, this.options.steps);
    const out: StepRecord[] = [];
    while (this.stepDone < until) {
      const r = await this.trainOneStep();
      out.push(r);
      await opts.onStep?.(r);
      if (opts.checkpoint && opts.saveEvery && (this.stepDone % opts.saveEvery === 0 || this.stepDone === this.options.steps)) await opts.checkpoint(this.stepDone);
    }
    return out;
  }

  // ---------------------------------------------------------------- checkpoints

  /** trainer_state.json and the tensors (param/NAME, m/NAME, v/NAME as F32). */
  async checkpoint(): Promise<{ state: TrainerState; tensors: Map<string, TensorToWrite> }> {
    const tensors = new Map<string, TensorToWrite>();
    for (const p of this.model.params) {
      const st = this.optimizer.state(p.name);
      for (const [prefix, t] of [["param", st.master], ["m", st.m], ["v", st.v]] as const) {
        tensors.set(`${prefix}/${p.name}`, { dtype: "F32", shape: p.weight.shape, data: (await t.read()) as Float32Array });
      }
    }
    const state: TrainerState = {
      format: "onegen-train-checkpoint",
      version: 1,
      step: this.stepDone,
      microSteps: this.model.steps,
      optimizerSteps: this.optimizer.stepCount,
      rng: { seed: this.options.seed, scheme: "counter" },
      mode: this.model.lora ? "lora" : "full",
      options: this.options,
      samples: this.data.samples.length,
      documents: this.data.docs.length,
      params: this.model.params.map((p) => ({ name: p.name, shape: [...p.weight.shape] })),
      history: [...this.history],
    };
    return { state, tensors };
  }

  /**
   * Writes a checkpoint directory atomically (trainer_state.json + optimizer.safetensors, through
   * src/io/output.ts): `dir` must be absent, empty or a checkpoint, and its parent must exist.
   */
  async saveCheckpoint(dir: string, opts: { flag?: string } = {}): Promise<void> {
    await checkOutput({ flag: opts.flag ?? "saveCheckpoint: dir", path: dir, kind: "checkpoint" }); // before reading the tensors back
    const { state, tensors } = await this.checkpoint();
    await writeDirAtomic(
      dir,
      "checkpoint",
      async (w) => {
        await w.writeFile(CHECKPOINT_TENSORS, writeSafetensors(tensors, { format: "onegen-train" }));
        await w.writeFile(CHECKPOINT_STATE, JSON.stringify(state, null, 2) + "\n");
      },
      { flag: opts.flag ?? "saveCheckpoint: dir" },
    );
  }

  /**
   * Restores parameters, optimizer moments and counters from a checkpoint of the same run
   * (same data, mode, parameters and trajectory options; anything else is a UsageError naming it).
   */
  async restore(state: TrainerState, tensors: ReadonlyMap<string, Float32Array>, where = "checkpoint"): Promise<void> {
    if (typeof state !== "object" || state === null) throw new LoadError(`${where}: ${CHECKPOINT_STATE} is not a JSON object`);
    if (state.format !== "onegen-train-checkpoint" || state.version !== 1) throw new LoadError(`${where}: not a training checkpoint (format ${JSON.stringify(state.format)}, version ${state.version})`);
    // Counters and lists from the file, checked before anything uses them.
    for (const k of ["step", "microSteps", "optimizerSteps", "samples", "documents"] as const) {
      const v: unknown = state[k];
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new LoadError(`${where}: ${CHECKPOINT_STATE} field '${k}' must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
    if (typeof state.options !== "object" || state.options === null) throw new LoadError(`${where}: ${CHECKPOINT_STATE} field 'options' must be an object`);
    if (!Array.isArray(state.params) || state.params.some((p) => typeof p !== "object" || p === null || typeof p.name !== "string")) throw new LoadError(`${where}: ${CHECKPOINT_STATE} field 'params' must be a list of {name, shape}`);
    if (!Array.isArray(state.history) || state.history.length > state.step) {
      throw new LoadError(`${where}: ${CHECKPOINT_STATE} field 'history' must be a list of at most one record per step (${state.step}), got ${Array.isArray(state.history) ? `${state.history.length} records` : JSON.stringify(state.history)}`);
    }
    const mode = this.model.lora ? "lora" : "full";
    if (state.mode !== mode) throw new UsageError(`${where}: the checkpoint is a ${state.mode} fine-tuning run, this one is ${mode}`);
    const mism: string[] = [];
    const a = state.options as unknown as Record<string, unknown>;
    const b = this.options as unknown as Record<string, unknown>;
    for (const k of Object.keys(b)) if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) mism.push(`${k} ${JSON.stringify(a[k])} → ${JSON.stringify(b[k])}`);
    if (state.samples !== this.data.samples.length) mism.push(`samples ${state.samples} → ${this.data.samples.length}`);
    if (state.documents !== this.data.docs.length) mism.push(`documents ${state.documents} → ${this.data.docs.length}`);
    if (mism.length > 0) throw new UsageError(`${where}: resuming needs the options and data of the interrupted run; changed: ${mism.join(", ")}`);
    const names = this.model.params.map((p) => p.name);
    const saved = state.params.map((p) => p.name);
    if (JSON.stringify(names) !== JSON.stringify(saved)) throw new UsageError(`${where}: the checkpoint's parameters differ from this model's (${saved.length} vs ${names.length}; first: ${saved[0]} vs ${names[0]})`);
    if (state.step > this.options.steps) throw new UsageError(`${where}: the checkpoint is at step ${state.step}, past the run's ${this.options.steps} steps`);
    const ctx = this.model.ctx;
    for (const p of this.model.params) {
      const st = this.optimizer.state(p.name);
      const get = (prefix: string): Float32Array => {
        const t = tensors.get(`${prefix}/${p.name}`);
        if (!t) throw new LoadError(`${where}: tensor '${prefix}/${p.name}' is missing`);
        if (t.length !== p.weight.numel) throw new LoadError(`${where}: tensor '${prefix}/${p.name}' has ${t.length} values, the parameter ${p.weight.numel}`);
        return t;
      };
      const master = get("param");
      ctx.write(st.master, master);
      if (p.weight !== st.master) ctx.write(p.weight, p.weight.dtype === "f16" ? f32ArrayToF16(master) : master);
      ctx.write(st.m, get("m"));
      ctx.write(st.v, get("v"));
    }
    setOptimizerSteps(this.optimizer, state.optimizerSteps);
    this.model.steps = state.microSteps;
    this.stepDone = state.step;
    this.history.length = 0;
    this.history.push(...state.history);
    await ctx.sync();
  }

  /** Reads a checkpoint directory and restores from it. */
  async resume(dir: string): Promise<void> {
    const { state, tensors } = await readCheckpoint(dir);
    await this.restore(state, tensors, dir);
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}

/**
 * AdamW keeps its step count private and has no restore method (src/train/optim.ts); the count
 * drives the bias corrections and the schedule, so a resumed run must set it. Narrow, checked.
 */
function setOptimizerSteps(opt: AdamW, t: number): void {
  if (!Number.isInteger(t) || t < 0) throw new LoadError(`checkpoint: optimizer step count ${t} is not a non-negative integer`);
  opt.setStepCount(t);
}

/** Reads trainer_state.json + optimizer.safetensors of a checkpoint directory. */
export async function readCheckpoint(dir: string): Promise<{ state: TrainerState; tensors: Map<string, Float32Array> }> {
  const { fs, path } = await nodeIo();
  await recoverOutput(dir); // a save interrupted while swapping leaves the checkpoint aside
  let stateText: string;
  let bytes: Uint8Array;
  try {
    stateText = new TextDecoder().decode(await fs.readFile(path.join(dir, CHECKPOINT_STATE)));
    bytes = await fs.readFile(path.join(dir, CHECKPOINT_TENSORS));
  } catch (e) {
    throw new LoadError(`'${dir}' is not a training checkpoint: ${(e as Error).message}`, `give a checkpoint directory (it holds ${CHECKPOINT_STATE} and ${CHECKPOINT_TENSORS})`);
  }
  let state: TrainerState;
  try {
    state = JSON.parse(stateText) as TrainerState;
  } catch (e) {
    throw new LoadError(`${path.join(dir, CHECKPOINT_STATE)}: not valid JSON (${(e as Error).message})`);
  }
  const file = await SafetensorsFile.open(bytesSource(new Uint8Array(bytes), path.join(dir, CHECKPOINT_TENSORS)));
  const tensors = new Map<string, Float32Array>();
  for (const name of file.names()) tensors.set(name, await file.readF32(name));
  return { state, tensors };
}
