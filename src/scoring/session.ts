/**
 * One ONNX Runtime session per model version (keyed by sha256) per worker process, checked against its manifest
 * when it is created, so a manifest that does not match the model fails before any chunk is scored.
 */
import * as ort from 'onnxruntime-node';
import { ModelError } from '../errors';
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
}

const ORT_TYPE: Record<TensorDtype, ort.Tensor.Type> = { float32: 'float32', float64: 'float64', int64: 'int64', int32: 'int32' };

export interface SessionOptions {
  /** Intra-op threads per session. Default: 1, since concurrent activities already use the cores. */
  intraOpThreads?: number;
}

export class SessionCache {
  private readonly sessions = new Map<string, Promise<ScoringSession>>();

  constructor(private readonly options: SessionOptions = {}) {}

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
    let entry = this.sessions.get(key);
    if (!entry) {
      entry = load().then((model) => createSession(model, this.options));
      this.sessions.set(key, entry);
      entry.catch(() => this.sessions.delete(key)); // a failed load is not cached
    }
    return entry;
  }

  get size(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.allSettled(all.map(async (s) => (await s).session.release()));
  }
}

export async function createSession(model: LoadedModel, options: SessionOptions = {}): Promise<ScoringSession> {
  let session: ort.InferenceSession;
  const loadSeconds = startTimer();
  try {
    session = await ort.InferenceSession.create(model.modelPath, {
      intraOpNumThreads: options.intraOpThreads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
  } catch (err) {
    throw new ModelError(`model ${model.pin.name}:${model.pin.version}: ONNX Runtime cannot load ${model.modelPath}: ${(err as Error).message}`);
  }
  validateManifest(model.manifest, session, `${model.pin.name}:${model.pin.version}`);
  return { model, session, fetches: [...new Set(model.manifest.outputs.map((o) => o.tensor))] };
  modelLoadDuration.labels(model.pin.name).observe(loadSeconds());
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
    results = await s.session.run(feeds, s.fetches);
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
