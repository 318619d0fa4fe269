/**
 * A small pool of inference threads (src/scoring/ort-worker.js). Each chunk's tensors are transferred
 * (not copied) to an idle thread, scored there, and the mapped outputs transferred back. Each thread
 * loads models by sha256 into its own bounded LRU of sessions (`cacheSize`, default SCORELINE_MODEL_CACHE).
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ModelError } from '../errors';
import { inferenceDuration } from '../obs/metrics';
import { buffers } from '../io/buffers';
import { packageRoot } from '../paths';
import { modelCacheSize, outputColumns, type ScoringSession } from './session';
import { firstOfEach, type TensorProfileSpec } from '../profile/chunk';
import type { ColumnProfile } from '../profile/sketch';
import type { BuiltTensor, OutputColumn } from './tensor';

type RawOutputs = Record<string, { dims: number[]; data: ArrayLike<number | bigint> }>;

/** A thread's answer: the fetched outputs, and the features' profiles when the job asked for them. */
interface Reply {
  outputs: RawOutputs;
  /** The features' profile, which the thread finishes after sending the outputs. */
  profiles?: Promise<ColumnProfile[]>;
}

/** A thread's message: the outputs (with `last` unless it goes on to profile), then the profile. */
interface ThreadReply {
  id: number;
  ok: boolean;
  outputs?: RawOutputs;
  profiles?: ColumnProfile[];
  inputs?: ArrayBuffer[];
  /** The job's outputs were sent before this error (it happened while profiling). */
  scored?: boolean;
  error?: string;
  cache?: ThreadCacheStats;
  /** The thread is done with the job and free for the next. */
  last: boolean;
}

interface Job {
  id: number;
  resolve: (reply: Reply) => void;
  reject: (err: Error) => void;
  message: unknown;
  transfer: ArrayBuffer[];
  /** Model name and dispatch time, for scoreline_inference_duration_seconds (queue wait excluded). */
  model: string;
  startedAt?: number;
  profiled?: { resolve: (p: ColumnProfile[]) => void; reject: (err: Error) => void };
}

interface Slot {
  worker: Worker;
  busy?: Job;
  /** The thread's session cache as of its last reply. */
  cache?: ThreadCacheStats;
}

export interface ThreadCacheStats {
  sessions: number;
  evictions: number;
}

/** Rows per session.run in the inference threads (SCORELINE_ORT_BATCH_ROWS, default 16,384; 0 = whole chunks): see ort-worker.js. */
function ortBatchRows(): number {
  const v = process.env.SCORELINE_ORT_BATCH_ROWS;
  return v !== undefined && v !== '' && Number.isInteger(Number(v)) && Number(v) >= 0 ? Number(v) : 16_384;
}

export interface InferencePoolOptions {
  /** Threads (default: cores). */
  size: number;
  /** ONNX Runtime intra-op threads per thread's session (default 1: the pool is the parallelism). */
  intraOpThreads?: number;
  /** Sessions each thread keeps (LRU; default SCORELINE_MODEL_CACHE, else 8). */
  cacheSize?: number;
  /** Rows per session.run (default SCORELINE_ORT_BATCH_ROWS, else 16,384; 0 = whole chunks). */
  batchRows?: number;
}

export class InferencePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  private readonly cacheSize: number;
  private readonly batchRows: number;

  constructor(private readonly options: InferencePoolOptions) {
    this.cacheSize = options.cacheSize ?? modelCacheSize();
    this.batchRows = options.batchRows ?? ortBatchRows();
  }

  private spawn(): Slot {
    const worker = new Worker(join(packageRoot(), 'src', 'scoring', 'ort-worker.js'), { workerData: { cacheSize: this.cacheSize, batchRows: this.batchRows } });
    worker.unref(); // an idle pool never keeps the process alive
    const slot: Slot = { worker };
    worker.on('message', (msg: ThreadReply) => {
      for (const b of msg.inputs ?? []) buffers.give(b);
      if (msg.cache) slot.cache = msg.cache;
      const job = slot.busy;
      if (job && job.id === msg.id) {
        if (msg.outputs) {
          if (job.startedAt !== undefined) inferenceDuration.labels(job.model).observe((performance.now() - job.startedAt) / 1000);
          job.resolve({ outputs: msg.outputs, profiles: msg.last ? undefined : new Promise((resolve, reject) => (job.profiled = { resolve, reject })) });
        } else if (msg.ok) {
          job.profiled?.resolve(msg.profiles ?? []);
        } else if (msg.scored) {
          job.profiled?.reject(new Error(`profiling the features failed: ${msg.error}`));
        } else {
          job.reject(new ModelError(`inference failed: ${msg.error}`));
        }
      }
      // The thread takes the next job once it has said its last word on this one (it may still profile).
      if (msg.last) {
        slot.busy = undefined;
        this.dispatch();
      }
    });
    worker.on('error', (err) => {
      // A crashed thread fails its job (the activity retries it) and is replaced on demand.
      const job = slot.busy;
      this.slots.splice(this.slots.indexOf(slot), 1);
      job?.reject(new Error(`inference thread crashed: ${err.message}`));
      job?.profiled?.reject(new Error(`inference thread crashed while profiling: ${err.message}`));
      this.dispatch();
    });
    this.slots.push(slot);
    return slot;
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.busy);
      if (!slot && this.slots.length < this.options.size) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift()!;
      slot.busy = job;
      slot.worker.ref();
      job.startedAt = performance.now();
      slot.worker.postMessage(job.message, job.transfer);
    }
    for (const s of this.slots) if (!s.busy) s.worker.unref();
  }

  /** Score one batch with a model already validated on this thread (`s`); returns output columns by name. */
  async run(s: ScoringSession, tensors: BuiltTensor[], rows: number): Promise<Map<string, OutputColumn>> {
    return (await this.execute(s, tensors, rows)).outputs;
  }

  /**
   * Score, and profile the feature tensors in the same thread (src/profile/kernel.js) while it holds
   * them: the worker's main thread, which reads and writes the chunks, does not pay for the profile,
   * and gets the outputs first, so it writes the chunk while the thread profiles.
   */
  async runProfiled(s: ScoringSession, tensors: BuiltTensor[], rows: number, profile: TensorProfileSpec[]): Promise<{ outputs: Map<string, OutputColumn>; features: Promise<ColumnProfile[]> }> {
    const { outputs, profiles } = await this.execute(s, tensors, rows, profile);
    const features = (profiles ?? Promise.resolve([])).then(firstOfEach);
    features.catch(() => undefined); // awaited by the caller after its write; never an unhandled rejection
    return { outputs, features };
  }

  private async execute(s: ScoringSession, tensors: BuiltTensor[], rows: number, profile?: TensorProfileSpec[]): Promise<{ outputs: Map<string, OutputColumn>; profiles?: Promise<ColumnProfile[]> }> {
    if (this.closed) throw new Error('inference pool is closed');
    const { pin, modelPath } = s.model;
    const message = {
      type: 'run',
      modelPath,
      sha256: pin.sha256,
      intraOpThreads: this.options.intraOpThreads ?? 1,
      tensors: tensors.map((t) => ({ name: t.name, dtype: t.dtype, dims: t.dims, data: t.data })),
      fetches: s.fetches,
      profile,
    };
    const transfer = tensors.map((t) => t.data.buffer as ArrayBuffer);
    const reply = await new Promise<Reply>((resolve, reject) => {
      const id = this.nextId++;
      this.queue.push({ id, resolve, reject, message: { ...message, id }, transfer, model: pin.name });
      this.dispatch();
    }).catch((err: Error) => {
      // ONNX Runtime refusing the input is the model's verdict (not retried); a crashed thread is retried.
      if (err instanceof ModelError) throw new ModelError(`model ${pin.name}:${pin.version}: ${err.message}`);
      throw err;
    });
    return { outputs: outputColumns(s.model, reply.outputs, rows), profiles: reply.profiles };
  }

  /** Each live thread's session cache, as of its last reply (threads that have not scored yet are left out). */
  cacheStats(): ThreadCacheStats[] {
    return this.slots.flatMap((s) => (s.cache ? [{ ...s.cache }] : []));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
