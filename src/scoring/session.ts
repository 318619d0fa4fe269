/**
 * ONNX Runtime sessions per worker process, keyed by the model's sha256 (plus store and version, since
 * the same bytes may be registered under two manifests), checked against the manifest when created, so
 * a manifest that does not match the model fails before any chunk is scored. The cache is a bounded LRU
 * (`SCORELINE_MODEL_CACHE` sessions, default 8): the least recently used idle session is released when
 * a new one would exceed the bound; a session inside `runModel` is never released under it.
 */
import * as ort from 'onnxruntime-node';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ConfigError, ModelError } from '../errors';
import { inferenceDuration, modelLoadDuration, startTimer } from '../obs/metrics';
import type { ModelManifest, TensorDtype } from '../models/manifest';
import { buffers } from '../io/buffers';
import type { LoadedModel } from '../models/store';
import type { PinnedModel } from '../types';
import { extractOutput, type BuiltTensor, type OutputColumn } from './tensor';

export interface ScoringSession {
  model: LoadedModel;
  session: ort.InferenceSession;
  /** Only the mapped outputs: ZipMap and other non-tensor outputs are never fetched. */
  fetches: string[];
  /** As created with (a session released by the cache and used again is reopened the same way). */
  intraOpThreads?: number;
}

const ORT_TYPE: Record<TensorDtype, ort.Tensor.Type> = { float32: 'float32', float64: 'float64', int64: 'int64', int32: 'int32' };

export interface SessionOptions {
  /** Intra-op threads per session. Default: 1, since concurrent activities already use the cores. */
  intraOpThreads?: number;
  /** Sessions kept per process (LRU). Default: SCORELINE_MODEL_CACHE, else 8. */
  maxSessions?: number;
}

export const DEFAULT_MODEL_CACHE = 8;

/** `SCORELINE_MODEL_CACHE`: sessions a worker keeps per process and per inference thread (default 8). */
export function modelCacheSize(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SCORELINE_MODEL_CACHE;
  if (raw === undefined || raw === '') return DEFAULT_MODEL_CACHE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`SCORELINE_MODEL_CACHE=${raw}: expected a whole number of sessions ≥ 1 (default ${DEFAULT_MODEL_CACHE})`);
  return n;
}

/** Per-session bookkeeping: how many runs are inside it, and whether the cache has let go of it. */
interface Usage {
  inUse: number;
  /** Evicted or closed: released as soon as it is idle; a late user reopens it for its own run only. */
  retired: boolean;
  released: boolean;
  reopening?: Promise<void>;
  owner?: SessionCache;
}
const usage = new WeakMap<ScoringSession, Usage>();
const usageOf = (s: ScoringSession): Usage => {
  let u = usage.get(s);
  if (!u) usage.set(s, (u = { inUse: 0, retired: false, released: false }));
  return u;
};

interface CacheEntry {
  key: string;
  session: Promise<ScoringSession>;
  loaded?: ScoringSession;
}

export class SessionCache {
  /** Insertion order is recency order: a hit moves its entry to the end. */
  private readonly entries = new Map<string, CacheEntry>();
  readonly maxSessions: number;
  /** Sessions released because the cache was full (for tests and metrics). */
  evictions = 0;

  constructor(private readonly options: SessionOptions = {}) {
    this.maxSessions = options.maxSessions ?? modelCacheSize();
  }

  get(model: LoadedModel): Promise<ScoringSession> {
    return this.getPinned(model.pin, async () => model);
  }

  /**
   * The session for a pinned model; `load` (which verifies the file's hash) runs only on a cache miss.
   * Keyed by sha256, store and version: the same bytes registered twice with different manifests are
   * checked against (and scored with) each manifest.
   */
  getPinned(pin: Pick<PinnedModel, 'name' | 'version' | 'sha256' | 'store'>, load: () => Promise<LoadedModel>): Promise<ScoringSession> {
    const key = `${pin.sha256}/${pin.store}/${pin.name}:${pin.version}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.session;
    }
    const entry: CacheEntry = { key, session: Promise.resolve() as never };
    entry.session = load()
      .then((model) => createSession(model, this.options))
      .then((s) => {
        entry.loaded = s;
        usageOf(s).owner = this;
        if (this.entries.get(key) !== entry) retire(s); // closed while loading
        this.trim();
        return s;
      });
    this.entries.set(key, entry);
    entry.session.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key); // a failed load is not cached
    });
    return entry.session;
  }

  /** Release least recently used idle sessions until the cache is within its bound. */
  trim(): void {
    const newest = [...this.entries.keys()].at(-1);
    for (const entry of this.entries.values()) {
      if (this.entries.size <= this.maxSessions) return;
      // Loading, inside a run, or just handed out (the newest): keep. The cache may exceed its bound
      // while more sessions than that are in use, and shrinks back as they finish.
      if (!entry.loaded || usageOf(entry.loaded).inUse > 0 || entry.key === newest) continue;
      this.entries.delete(entry.key);
      this.evictions++;
      retire(entry.loaded);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  /** Release every session (one still inside a run is released when that run ends). */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(all.map(async (e) => retire(await e.session)));
  }
}

function retire(s: ScoringSession): void {
  const u = usageOf(s);
  u.retired = true;
  if (u.inUse === 0 && !u.released) {
    u.released = true;
    void s.session.release().catch(() => undefined);
  }
}

/**
 * Run `fn` with the session marked in use, so the cache cannot release it meanwhile. A session the
 * cache released between being handed out and being used is reopened (from the verified bytes) for
 * this use and released again afterwards.
 */
export async function withSession<T>(s: ScoringSession, fn: (session: ort.InferenceSession) => Promise<T>): Promise<T> {
  const u = usageOf(s);
  u.inUse++;
  try {
    if (u.released) {
      u.reopening ??= reopen(s, u).finally(() => (u.reopening = undefined));
      await u.reopening;
    }
    return await fn(s.session);
  } finally {
    u.inUse--;
    if (u.inUse === 0) {
      if (u.retired) retire(s);
      else u.owner?.trim();
    }
  }
}

async function reopen(s: ScoringSession, u: Usage): Promise<void> {
  const bytes = await readFile(s.model.modelPath);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (s.model.pin.sha256 && sha256 !== s.model.pin.sha256) {
    throw new ModelError(`${s.model.modelPath} hashes to ${sha256} but the run pinned ${s.model.pin.sha256}; the model file changed during the run`);
  }
  s.session = await ort.InferenceSession.create(bytes, sessionOptions(s.intraOpThreads));
  u.released = false;
}

const sessionOptions = (intraOpThreads = 1): ort.InferenceSession.SessionOptions => ({
  intraOpNumThreads: intraOpThreads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});

export async function createSession(model: LoadedModel, options: SessionOptions = {}): Promise<ScoringSession> {
  let session: ort.InferenceSession;
  const loadSeconds = startTimer();
  try {
    session = await ort.InferenceSession.create(model.modelPath, sessionOptions(options.intraOpThreads));
  } catch (err) {
    throw new ModelError(`model ${model.pin.name}:${model.pin.version}: ONNX Runtime cannot load ${model.modelPath}: ${(err as Error).message}`);
  }
  validateManifest(model.manifest, session, `${model.pin.name}:${model.pin.version}`);
  modelLoadDuration.labels(model.pin.name).observe(loadSeconds());
  return { model, session, fetches: [...new Set(model.manifest.outputs.map((o) => o.tensor))], intraOpThreads: options.intraOpThreads };
}

/** The manifest must name real inputs/outputs with matching dtype and width. */
export function validateManifest(manifest: ModelManifest, session: ort.InferenceSession, label: string): void {
  const problems: string[] = [];
  const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]));
  const outputs = new Map(session.outputMetadata.map((m) => [m.name, m]));
  for (const spec of manifest.inputs) {
    const meta = inputs.get(spec.name);
    if (!meta) {
      problems.push(`input "${spec.name}" is not a model input (model inputs: ${[...inputs.keys()].join(', ')})`);
      continue;
    }
    if (!meta.isTensor) {
      problems.push(`input "${spec.name}" is not a tensor`);
      continue;
    }
    if (meta.type !== ORT_TYPE[spec.dtype]) problems.push(`input "${spec.name}" is ${meta.type} in the model but ${spec.dtype} in the manifest`);
    const width = meta.shape.length === 2 ? meta.shape[1] : undefined;
    if (meta.shape.length !== 2 && meta.shape.length !== 0) {
      problems.push(`input "${spec.name}" has rank ${meta.shape.length} ([${meta.shape.join(', ')}]); Scoreline feeds [N, F] tensors`);
    } else if (typeof width === 'number' && width !== spec.shape[1]) {
      problems.push(`input "${spec.name}" takes ${width} features but the manifest maps ${spec.shape[1]} columns`);
    }
  }
  const mapped = new Set(manifest.inputs.map((i) => i.name));
  for (const name of inputs.keys()) if (!mapped.has(name)) problems.push(`model input "${name}" is not fed by the manifest`);
  for (const spec of manifest.outputs) {
    const meta = outputs.get(spec.tensor);
    if (!meta) {
      problems.push(`output "${spec.tensor}" is not a model output (model outputs: ${[...outputs.keys()].join(', ')})`);
      continue;
    }
    if (!meta.isTensor) {
      problems.push(`output "${spec.tensor}" is not a tensor (e.g. a ZipMap); map a tensor output instead (skl2onnx: options zipmap=False)`);
      continue;
    }
    const width = meta.shape.length >= 2 ? meta.shape[1] : 1;
    if (spec.index !== undefined && typeof width === 'number' && spec.index >= width) {
      problems.push(`output "${spec.tensor}" has ${width} columns; index ${spec.index} is out of range`);
    }
    if (spec.index === undefined && typeof width === 'number' && width > 1) {
      problems.push(`output "${spec.tensor}" has ${width} columns; set index: to pick one`);
    }
  }
  if (problems.length) throw new ModelError(`model ${label}: manifest does not match the model:\n  - ${problems.join('\n  - ')}`);
}

/** Run one batch; returns the mapped output columns by output column name. */
export async function runModel(s: ScoringSession, tensors: BuiltTensor[], rows: number): Promise<Map<string, OutputColumn>> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of tensors) feeds[t.name] = new ort.Tensor(ORT_TYPE[t.dtype], t.data, t.dims);
  let results: ort.InferenceSession.OnnxValueMapType;
  const inferSeconds = startTimer();
  try {
    results = await withSession(s, (session) => session.run(feeds, s.fetches));
    inferenceDuration.labels(s.model.pin.name).observe(inferSeconds());
  } catch (err) {
    // ONNX Runtime refusing the input is the model's verdict, the same on every retry.
    throw new ModelError(`model ${s.model.pin.name}:${s.model.pin.version}: inference failed: ${(err as Error).message}`);
  }
  const out = outputColumns(s.model, results as Record<string, { dims: readonly number[]; data: unknown }>, rows);
  for (const t of Object.values(results)) t.dispose?.();
  for (const t of tensors) buffers.giveArray(t.data); // done with the inputs: reuse for the next chunk
  return out;
}

/** The manifest's output columns from raw output tensors (from this thread or an inference thread). */
export function outputColumns(model: LoadedModel, outputs: Record<string, { dims: readonly number[]; data: unknown }>, rows: number): Map<string, OutputColumn> {
  const label = `${model.pin.name}:${model.pin.version}`;
  const columns = new Map<string, OutputColumn>();
  for (const spec of model.manifest.outputs) {
    const tensor = outputs[spec.tensor];
    columns.set(spec.column, extractOutput(spec, tensor.dims, tensor.data as ArrayLike<number | bigint>, rows, label));
  }
  return columns;
}
