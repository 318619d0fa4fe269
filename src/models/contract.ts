/**
 * The model contract check of `scoreline models register --sample-from` (docs/models.md "Contract check"):
 * before a version is registered, check its manifest against the data it will score, run it on sample
 * rows, and say what it costs.
 *
 * 1. Plan the source exactly as a run plans it (the connector's `plan`, the pipeline's `chunk_rows`) and
 *    check every feature column is there and numeric (and the keys, for a pipeline), then read the first
 *    `sampleRows` rows with the connector's `read` — the code a run uses.
 * 2. Classify each feature column's cast into its input tensor under the cast policy (`exact`, `checked`:
 *    strict refuses a value that would change, `lossy`: may round silently), then build the tensors with
 *    `buildFeeds` — the run's own NULL and cast checks on every sampled value.
 * 3. Score the sample with a real ONNX Runtime session (`runModel`, as a worker without inference threads
 *    does) and time it; list the model's outputs with their declared types (ZipMap's
 *    `sequence<map<…>>` included: src/models/onnx-types.ts) and what Scoreline does with each.
 * 4. Measure ONNX Runtime's memory in a fresh child process (src/models/memory-probe.js) on the sample
 *    repeated to one inference slice (16,384 rows), add the chunk's own bytes per row, and find the
 *    largest `chunk_rows` whose estimated worker peak stays under the memory target (see `estimatePeak`).
 */
import { fork } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as arrow from 'apache-arrow';
import { createConnectors } from '../../connectors/index';
import type { Source, SourcePlan } from '../../connectors/types';
import { chunkRowsFor, NAME_PATTERN, renderTemplate, templateVars, type FeaturePolicy, type PipelineConfig } from '../config/pipeline';
import { ConfigError, errorMessage, InputError } from '../errors';
import { packageRoot } from '../paths';
import { describeBudget, quarantines, rejectBudget, type MaxRejected } from '../run/budget';
import { createSession, runModel, type ScoringSession } from '../scoring/session';
import { buildFeeds, keyText, type BuiltTensor, type OutputColumn, type TensorData } from '../scoring/tensor';
import type { Chunk, RunRef } from '../types';
import { featureColumns, type ModelManifest, type TensorDtype } from './manifest';
import { onnxOutputTypes } from './onnx-types';
import { DEFAULT_SAMPLE_ROWS } from './sample-rows';
import type { LoadedModel } from './store';

export { DEFAULT_SAMPLE_ROWS } from './sample-rows';
export const DEFAULT_MEMORY_TARGET = 1024 ** 3;
/** Rows the memory probe scores per session.run: one inference-thread slice (SCORELINE_ORT_BATCH_ROWS default). */
export const DEFAULT_PROBE_ROWS = 16_384;
/**
 * What a worker process holds before its chunks, measured with `scoreline worker` on Node 20 (2-core
 * development machine, demo models, `npm run bench`-style runs): ~262 MiB idle (Temporal SDK and its
 * workflow bundle, DuckDB, ONNX Runtime loaded in each inference thread) plus ~175 MiB that scoring adds
 * whatever the chunk size (V8 heap, DuckDB buffers, the buffer recycler, profiles). `--worker-base`
 * replaces it with a figure measured on your workers.
 */
export const DEFAULT_WORKER_BASE = 440 * 1024 ** 2;
const MAX_SUGGESTED_ROWS = 1_048_576;
const DTYPE_BYTES: Record<TensorDtype, number> = { float32: 4, float64: 8, int32: 4, int64: 8 };
const MiB = 1024 ** 2;
const n = (v: number) => v.toLocaleString('en-US');

/** Where the sample rows come from: a pipeline's source for a logical date, or Parquet files directly. */
export type SampleSource =
  | { kind: 'pipeline'; config: PipelineConfig; origin: string; logicalDate: string; projectDir: string }
  | { kind: 'parquet'; path: string; logicalDate: string };

export interface ContractOptions {
  /** The candidate (store version or file to register) with the manifest to check. */
  model: LoadedModel;
  source: SampleSource;
  sampleRows?: number;
  /** Bytes; default 1 GiB. */
  memoryTarget?: number;
  /** Chunk activities per worker (default SCORELINE_WORKER_CONCURRENCY, else 2 × cores). */
  concurrency?: number;
  /** Inference threads per worker (default SCORELINE_INFERENCE_THREADS, else cores; 0 = main thread). */
  inferenceThreads?: number;
  /** Rows per session.run in an inference thread (default SCORELINE_ORT_BATCH_ROWS, else 16,384; 0 = whole chunks). */
  ortBatchRows?: number;
  /** Bytes a worker holds besides its chunks and sessions (default DEFAULT_WORKER_BASE). */
  workerBase?: number;
  /** Timed runs on the sample (median reported); default 5. */
  timingRuns?: number;
  /** Skip the child-process memory probe (tests of other parts). */
  probe?: boolean;
}

export type CastClass = 'exact' | 'checked' | 'lossy' | 'refused';

export interface ColumnCheck {
  column: string;
  role: 'key' | 'feature';
  /** The source's type name (DuckDB, Snowflake or BigQuery), or null when the column is missing. */
  source_type: string | null;
  /** The Arrow type the connector reads it as. */
  read_as: string | null;
  /** `input dtype`, e.g. `features float32` (features only). */
  feeds: string | null;
  cast: CastClass | null;
  /** What the cast does, in words. */
  cast_note: string | null;
  status: 'ok' | 'missing' | 'not numeric' | 'failed';
  problem?: string;
}

export interface OutputCheck {
  tensor: string;
  type: string;
  is_tensor: boolean;
  produced_by: string | null;
  /** Manifest columns filled from it (`churn_probability ← [:, 1]`). */
  columns: string[];
  /** What a run does with it, in short: `fetched → churn_label`, `never fetched (ZipMap)`. */
  handling: string;
  /** For a non-tensor output: what it is and how to export a model whose output Scoreline can use. */
  note: string | null;
}

export interface PredictionStats {
  column: string;
  dtype: TensorDtype;
  min: number | null;
  max: number | null;
  mean: number | null;
  /** NaN or ±Infinity values. */
  non_finite: number;
}

export interface ContractReport {
  ok: boolean;
  problems: string[];
  warnings: string[];
  model: { name: string; version: string; sha256: string; path: string };
  source: {
    kind: 'pipeline' | 'parquet';
    /** Pipeline name, or the Parquet path as given. */
    name: string;
    logical_date: string;
    inputs: string[];
    rows: number | null;
    keys: string[];
    policy: { cast: FeaturePolicy['cast']; nulls: FeaturePolicy['nulls'] };
    policy_from: string;
  };
  columns: ColumnCheck[];
  outputs: OutputCheck[];
  sample: { rows_read: number; rows_scored: number; rows_rejected: number; rows_imputed: number; predictions: PredictionStats[] } | null;
  timing: {
    sample_rows: number;
    runs: number;
    /** Median session run (runModel: tensors in, output columns out) on the whole sample, per 1,000 rows. */
    ms_per_1k_rows: number;
    /** The same at one inference slice (probe_rows per run; the child process), per 1,000 rows. */
    ms_per_1k_rows_at_slice: number | null;
    slice_rows: number | null;
    /** 1000 / ms_per_1k_rows_at_slice (else of the sample) × 1000: one inference thread's throughput. */
    rows_per_s_per_thread: number;
  } | null;
  memory: {
    probe_rows: number;
    /** ONNX Runtime's working memory (peak RSS growth of session.run) per 1,000 rows. */
    ort_mib_per_1k_rows: number;
    /** A chunk's own data per 1,000 rows: the Arrow columns read, the input tensors, the prediction columns. */
    chunk_mib_per_1k_rows: number;
    total_mib_per_1k_rows: number;
    bytes_per_row: { read: number; tensors: number; predictions: number };
    /** ONNX Runtime start-up plus this model: the first session in a process. */
    session_mib: number;
    /** Each further session of the model. */
    extra_session_mib: number;
    peak_from: 'VmHWM' | 'maxRSS';
  } | null;
  chunk_rows: ChunkAdvice | null;
}

export interface ChunkAdvice {
  memory_target_mib: number;
  concurrency: number;
  inference_threads: number;
  ort_batch_rows: number;
  worker_base_mib: number;
  features: number;
  /** `chunk_rows: auto` for this many features. */
  auto: number;
  auto_peak_mib: number;
  /** The pipeline's `chunk_rows` (null for a Parquet path, or `auto`). */
  configured: number | null;
  configured_peak_mib: number | null;
  /** Largest chunk_rows (multiple of 4,096, ≤ 1,048,576) whose estimated peak fits; null if none does. */
  max_fit: number | null;
  max_fit_peak_mib: number | null;
  /** What to set: `auto` when auto fits, else max_fit; null when nothing fits. */
  suggested: 'auto' | number | null;
  suggested_peak_mib: number | null;
  formula: string;
  advice: string;
}

/** `1GiB`, `768MiB`, `1.5G` (binary units: Ki/Mi/Gi/Ti, with or without B; K/M/G/T without i are powers of 1000). */
export function parseSize(text: string, what = '--memory-target'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$/i.exec(text);
  if (!m || !m[2]) throw new ConfigError(`${what} ${text}: expected a size such as 1GiB, 768MiB or 2G`);
  const unit = m[2].toUpperCase();
  const power = 'KMGT'.indexOf(unit[0]) + 1;
  const bytes = Number(m[1]) * (unit.endsWith('I') ? 1024 : 1000) ** power;
  if (!(bytes > 0)) throw new ConfigError(`${what} ${text}: must be more than 0`);
  return Math.round(bytes);
}

/** A `--sample-from` value: a pipeline (name or YAML file), or a Parquet file, directory or glob. */
export function sampleSourceKind(from: string): 'pipeline' | 'parquet' {
  if (/\.ya?ml$/i.test(from)) return 'pipeline';
  if (/[*?[]/.test(from) || from.includes('{{') || /\.parquet$/i.test(from)) return 'parquet';
  const st = statSync(from, { throwIfNoEntry: false });
  if (st?.isDirectory() || st?.isFile()) return 'parquet';
  if (NAME_PATTERN.test(from)) return 'pipeline';
  throw new ConfigError(`--sample-from ${from}: not a pipeline name or YAML file, and no such Parquet file, directory or glob`);
}

export function defaultConcurrency(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SCORELINE_WORKER_CONCURRENCY);
  return env.SCORELINE_WORKER_CONCURRENCY && Number.isInteger(v) && v > 0 ? v : 2 * availableParallelism();
}

export function defaultInferenceThreads(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SCORELINE_INFERENCE_THREADS);
  return env.SCORELINE_INFERENCE_THREADS && Number.isInteger(v) && v >= 0 ? v : availableParallelism();
}

export function defaultOrtBatchRows(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SCORELINE_ORT_BATCH_ROWS;
  return v !== undefined && v !== '' && Number.isInteger(Number(v)) && Number(v) >= 0 ? Number(v) : DEFAULT_PROBE_ROWS;
}

const DEFAULT_POLICY: FeaturePolicy = { nulls: 'error', impute_values: {}, cast: 'strict' };

/** Run every check; problems make `ok` false (and the caller registers nothing). Never throws for a contract problem. */
export async function checkContract(opts: ContractOptions): Promise<ContractReport> {
  const { model } = opts;
  const manifest = model.manifest;
  const sampleRows = opts.sampleRows ?? DEFAULT_SAMPLE_ROWS;
  const src = opts.source;
  const config = src.kind === 'pipeline' ? src.config : parquetConfig(src.path);
  const policy = src.kind === 'pipeline' ? config.features : DEFAULT_POLICY;
  const keys = src.kind === 'pipeline' ? [...config.source.key] : [];
  const features = featureColumns(manifest);
  const report: ContractReport = {
    ok: false,
    problems: [],
    warnings: [],
    model: { name: model.pin.name, version: model.pin.version, sha256: model.pin.sha256, path: model.modelPath },
    source: {
      kind: src.kind,
      name: src.kind === 'pipeline' ? config.name : src.path,
      logical_date: src.logicalDate,
      inputs: [],
      rows: null,
      keys,
      policy: { cast: policy.cast, nulls: policy.nulls },
      policy_from: src.kind === 'pipeline' ? `pipeline ${config.name}` : 'the defaults; a pipeline given to --sample-from brings its own',
    },
    columns: [],
    outputs: describeOutputs(model),
    sample: null,
    timing: null,
    memory: null,
    chunk_rows: null,
  };
  for (const o of report.outputs) if (!o.is_tensor && o.columns.length) report.problems.push(`output "${o.tensor}" is ${o.type}, not a tensor, but the manifest maps it to ${o.columns.join(', ')}: ${zipmapAdvice(o.tensor)}`);

  const connectors = createConnectors({ baseDir: src.kind === 'pipeline' ? src.projectDir : process.cwd() });
  const source = connectors.source(config);
  const run: RunRef = { runId: `contract${Date.now()}${process.pid}`, workflowId: 'models-register', pipeline: config.name, logicalDate: src.logicalDate, trigger: 'cli' };
  let session: ScoringSession | undefined;
  try {
    // 1. The plan: inputs, schema, missing columns (every connector names them the same way).
    const chunkRows = chunkRowsFor(config, features.length);
    const wanted = [...new Set([...keys, ...features])];
    const missing = new Set<string>();
    let plan: SourcePlan | undefined;
    for (let attempt = 0; attempt < 2 && !plan; attempt++) {
      const columns = wanted.filter((c) => !missing.has(c));
      try {
        plan = await source.plan({ config, run, columns, chunkRows });
      } catch (err) {
        const named = missingColumns(err);
        if (!named || attempt > 0 || named.every((c) => missing.has(c))) {
          report.problems.push(`cannot read the source: ${errorMessage(err)}`);
          break;
        }
        named.forEach((c) => missing.add(c));
        report.problems.push(errorMessage(err));
      }
    }
    if (!plan) return report; // the source itself could not be planned: nothing to say about its columns
    report.source.inputs = plan.inputs;
    report.source.rows = plan.rows;
    if (plan.inputs.length === 0) {
      const pattern =
        config.source.kind !== 'parquet' ? undefined : src.kind === 'parquet' ? src.path : renderTemplate(config.source.path, templateVars(src.logicalDate, config.name), 'source.path');
      report.problems.push(`nothing to sample: ${pattern ? `nothing matches ${pattern}` : 'no input'}${src.kind === 'pipeline' ? ` for ${config.name} on ${src.logicalDate}` : ''}`);
      return report;
    }
    if (plan.rows === 0) {
      report.problems.push(`nothing to sample: ${plan.inputs.join(', ')} hold 0 rows (the check needs at least one row; register without --sample-from to skip it)`);
    }

    // 2. Columns: presence, numeric, cast class (by the Arrow type the connector reads).
    const schema = plan.schema;
    const numericFeatures = features.filter((f) => schema[f]?.numeric);
    let batches: arrow.RecordBatch[] = [];
    if (plan.rows > 0) {
      // Also with missing columns: the rest still show how they read and cast (the model then does not run).
      const presentKeys = keys.filter((k) => schema[k]);
      batches = await readSample(source, plan.chunks, [...new Set([...presentKeys, ...numericFeatures])], presentKeys, sampleRows);
    }
    const readTypes = new Map<string, arrow.DataType>();
    for (const b of batches.slice(0, 1)) for (const f of b.schema.fields) readTypes.set(f.name, f.type);
    const inputOf = new Map<string, { name: string; dtype: TensorDtype }>();
    for (const i of manifest.inputs) for (const c of i.columns) if (!inputOf.has(c)) inputOf.set(c, { name: i.name, dtype: i.dtype });
    for (const key of keys) {
      const s = schema[key];
      report.columns.push({
        column: key, role: 'key', source_type: s?.type ?? null, read_as: typeName(readTypes.get(key)), feeds: null, cast: null, cast_note: null,
        status: missing.has(key) ? 'missing' : 'ok', ...(missing.has(key) && { problem: 'key column missing from the source' }),
      });
    }
    for (const f of features) {
      const s = schema[f];
      const input = inputOf.get(f)!;
      const check: ColumnCheck = { column: f, role: 'feature', source_type: s?.type ?? null, read_as: typeName(readTypes.get(f)), feeds: `${input.name} ${input.dtype}`, cast: null, cast_note: null, status: 'ok' };
      if (missing.has(f) || (!s && plan.inputs.length > 0)) {
        check.status = 'missing';
        check.problem = 'missing from the source';
      } else if (s && !s.numeric) {
        check.status = 'not numeric';
        check.cast = 'refused';
        check.problem = `${s.type} cannot feed a ${input.dtype} tensor`;
        check.cast_note = 'not numeric: strings, dates and nested types never feed a tensor (cast it in the source)';
      } else if (readTypes.has(f)) {
        const c = castClass(readTypes.get(f)!, input.dtype, policy.cast);
        check.cast = c.cast;
        check.cast_note = c.note;
      }
      report.columns.push(check);
    }
    const notNumeric = report.columns.filter((c) => c.status === 'not numeric');
    if (notNumeric.length) {
      report.problems.push(`feature column(s) ${notNumeric.map((c) => `"${c.column}" (${c.source_type})`).join(', ')} are not numeric; the model needs numbers`);
    }
    if (report.problems.length || batches.length === 0) return report;

    // 3. The run's own tensor build (NULL and cast policy on every sampled value), then the model.
    session = await createSession(model, { intraOpThreads: 1 });
    const where = `sample of ${plan.inputs[0]}${plan.inputs.length > 1 ? ` (+${plan.inputs.length - 1} more)` : ''}`;
    const built: BuiltTensor[][] = [];
    const stats = { rowsIn: 0, rowsOut: 0, rejected: 0, imputed: 0, readBytes: 0 };
    const outputs: Map<string, OutputColumn>[] = [];
    // Every sampled row a run could not score (a NULL under nulls: error, a strict cast's loss), by
    // column: all of them, not just the first, so one check names everything to fix.
    const unscorable = new Map<string, { rows: number; first: string }>();
    let unscorableRows = 0;
    for (const batch of batches) {
      stats.readBytes += batchBytes(batch);
      let feeds;
      try {
        feeds = buildFeeds(batch, manifest, policy, where, { quarantine: true });
      } catch (err) {
        const message = errorMessage(err);
        const col = /column "([^"]+)"/.exec(message)?.[1];
        const check = report.columns.find((c) => c.column === col && c.role === 'feature');
        if (check) Object.assign(check, { status: 'failed', problem: message });
        report.problems.push(message);
        return report;
      }
      if (feeds.quarantined) {
        const q = feeds.quarantined;
        unscorableRows += q.rows.length;
        for (let i = 0; i < q.rows.length; i++) {
          const key = keyText(batch, keys, q.rows[i]);
          const seen = unscorable.get(q.columns[i]) ?? { rows: 0, first: `row ${stats.rowsIn + q.rows[i]}${key && ` (${key})`}: ${q.reasons[i]}` };
          seen.rows++;
          unscorable.set(q.columns[i], seen);
        }
      }
      stats.rowsIn += feeds.rowsIn;
      stats.rowsOut += feeds.rowsOut;
      stats.rejected += feeds.rowsRejected;
      stats.imputed += feeds.rowsImputed;
      if (feeds.rowsOut === 0) continue;
      built.push(feeds.tensors.map((t) => ({ ...t, data: t.data.slice() as TensorData })));
      try {
        outputs.push(await runModel(session, feeds.tensors, feeds.rowsOut));
      } catch (err) {
        report.problems.push(`the model failed on the sample: ${errorMessage(err)}`);
        return report;
      }
    }
    report.sample = { rows_read: stats.rowsIn, rows_scored: stats.rowsOut, rows_rejected: stats.rejected, rows_imputed: stats.imputed, predictions: predictionStats(manifest, outputs) };
    if (unscorableRows > 0) judgeUnscorable(report, unscorable, { rows: unscorableRows, sampled: stats.rowsIn, planned: plan.rows, budget: src.kind === 'pipeline' ? config.max_rejected : undefined });
    if (stats.rowsOut === 0 && unscorableRows === 0) {
      report.problems.push(`no sampled row could be scored: all ${stats.rowsIn} have a NULL feature and features.nulls is "skip"`);
      return report;
    }
    for (const p of report.sample.predictions) {
      if (p.non_finite) report.warnings.push(`prediction column ${p.column}: ${p.non_finite} of ${stats.rowsOut} sampled rows are NaN or infinite`);
    }
    if (stats.rejected) report.warnings.push(`${stats.rejected} of ${stats.rowsIn} sampled rows have a NULL feature and would be skipped (features.nulls: skip)`);

    // Time: the median of several runs on the whole sample (fresh copies: runModel recycles its inputs).
    const sample = concatTensors(built);
    const runs = Math.max(1, opts.timingRuns ?? 5);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const tensors = sample.map((t) => ({ ...t, data: t.data.slice() as TensorData }));
      const t0 = performance.now();
      await runModel(session, tensors, stats.rowsOut);
      times.push(performance.now() - t0);
    }
    const msPer1k = (median(times) / stats.rowsOut) * 1000;

    // 4. Memory, in a fresh process: the sample repeated to one inference slice.
    const ortBatchRows = opts.ortBatchRows ?? defaultOrtBatchRows();
    const probeRows = ortBatchRows > 0 ? Math.min(ortBatchRows, 65_536) : DEFAULT_PROBE_ROWS;
    const probe = opts.probe === false ? undefined : await runProbe(model.modelPath, repeatTensors(sample, stats.rowsOut, probeRows), session.fetches).catch((err: Error) => {
      report.warnings.push(`memory not measured: ${err.message}`);
      return undefined;
    });
    const sliceMs = probe ? median(probe.runMs) : undefined;
    report.timing = {
      sample_rows: stats.rowsOut,
      runs,
      ms_per_1k_rows: round(msPer1k, 3),
      ms_per_1k_rows_at_slice: sliceMs === undefined ? null : round((sliceMs / probeRows) * 1000, 3),
      slice_rows: probe ? probeRows : null,
      rows_per_s_per_thread: Math.round(1e6 / (sliceMs === undefined ? msPer1k : (sliceMs / probeRows) * 1000)),
    };
    const perRow = {
      read: stats.readBytes / stats.rowsIn,
      tensors: manifest.inputs.reduce((n, i) => n + i.shape[1] * DTYPE_BYTES[i.dtype], 0),
      predictions: manifest.outputs.reduce((n, o) => n + DTYPE_BYTES[o.dtype], 0),
    };
    const chunkBytesPerRow = perRow.read + perRow.tensors + perRow.predictions;
    if (probe) {
      const ortPerRow = probe.runBytes / probeRows;
      report.memory = {
        probe_rows: probeRows,
        ort_mib_per_1k_rows: round((ortPerRow * 1000) / MiB, 3),
        chunk_mib_per_1k_rows: round((chunkBytesPerRow * 1000) / MiB, 3),
        total_mib_per_1k_rows: round(((ortPerRow + chunkBytesPerRow) * 1000) / MiB, 3),
        bytes_per_row: { read: Math.round(perRow.read), tensors: perRow.tensors, predictions: perRow.predictions },
        session_mib: round(probe.runtimeBytes / MiB, 1),
        extra_session_mib: round(probe.sessionBytes / MiB, 1),
        peak_from: probe.peakFrom,
      };
      report.chunk_rows = adviseChunkRows({
        target: opts.memoryTarget ?? DEFAULT_MEMORY_TARGET,
        concurrency: opts.concurrency ?? defaultConcurrency(),
        threads: opts.inferenceThreads ?? defaultInferenceThreads(),
        ortBatchRows,
        workerBase: opts.workerBase ?? DEFAULT_WORKER_BASE,
        sessionBytes: probe.runtimeBytes,
        ortBytesPerRow: ortPerRow,
        chunkBytesPerRow,
        features: features.length,
        configured: src.kind === 'pipeline' && config.chunk_rows !== 'auto' ? config.chunk_rows : null,
      });
    }
    return report;
  } catch (err) {
    report.problems.push(errorMessage(err));
    return report;
  } finally {
    report.ok = report.problems.length === 0;
    if (session) await session.session.release().catch(() => undefined);
    // A warehouse source snapshots its input while planning: drop it again (as `scoreline validate` does).
    await source.cleanup?.(config, run).catch(() => undefined);
    await connectors.close?.().catch(() => undefined);
  }
}

/**
 * Sampled rows a run could not score: each column's count and first row go on its line of the report.
 * Without an error budget a run fails on the first, so they are a problem; with one (`max_rejected`),
 * a run quarantines them, so they are a warning unless the sample's share, scaled to the input, would
 * exceed the budget.
 */
function judgeUnscorable(report: ContractReport, byColumn: Map<string, { rows: number; first: string }>, n: { rows: number; sampled: number; planned: number; budget: MaxRejected | undefined }): void {
  const parts: string[] = [];
  for (const [column, { rows, first }] of byColumn) {
    const more = rows > 1 ? ` (and ${rows - 1} more row${rows > 2 ? 's' : ''})` : '';
    parts.push(`column "${column}" ${first}${more}`);
    const check = report.columns.find((c) => c.column === column && c.role === 'feature');
    if (check) Object.assign(check, { status: 'failed', problem: `${rows} of ${n.sampled} sampled rows cannot be scored; first: ${first}` });
  }
  const what = `${n.rows} of ${n.sampled} sampled rows cannot be scored: ${parts.join('; ')}`;
  if (!quarantines(n.budget)) {
    report.problems.push(`${what}. A run fails its chunk on such a row: fix the source, relax features.nulls / features.cast, or set max_rejected to quarantine such rows`);
    return;
  }
  const expected = Math.round((n.rows / n.sampled) * n.planned);
  const budget = `max_rejected: ${describeBudget(n.budget, n.planned)}`;
  if (expected > rejectBudget(n.budget, n.planned)) report.problems.push(`${what}. At this share ~${expected} of the input's ${n.planned} rows, over the error budget ${budget}: a run would fail`);
  else report.warnings.push(`${what}. A run quarantines such rows (~${expected} of ${n.planned} at this share, within ${budget})`);
}

/** A pipeline-shaped config for a Parquet path given directly: no keys, default feature policy. */
function parquetConfig(path: string): PipelineConfig {
  return {
    name: 'sample',
    source: { kind: 'parquet', path: resolve(path), key: [], on_empty: 'succeed', key_check: 'allow' },
    model: 'sample',
    sink: { kind: 'parquet', path: resolve('.scoreline-unused'), mode: 'append' },
    chunk_rows: 'auto',
    parallelism: 1,
    features: DEFAULT_POLICY,
    max_rejected: 0,
    keep_failed_staging: '0',
    profile: false,
    drift: { reference: 'previous', psi: 0.2 },
  } as PipelineConfig;
}

/** The columns a connector's "missing column(s) "a", "b" needed by the model or key" error names. */
function missingColumns(err: unknown): string[] | undefined {
  if (!(err instanceof InputError)) return undefined;
  const m = /missing column\(s\) ((?:"[^"]+"(?:, )?)+) needed by the model or key/.exec(err.message);
  return m ? [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]) : undefined;
}

/** The first `rows` rows in plan order: each chunk read by the connector, cut to what is still needed. */
async function readSample(source: Source, chunks: Chunk[], columns: string[], keys: string[], rows: number): Promise<arrow.RecordBatch[]> {
  const batches: arrow.RecordBatch[] = [];
  let left = rows;
  for (const chunk of chunks) {
    if (left <= 0) break;
    const take = Math.min(left, chunk.rows);
    const cut: Chunk = { ...chunk, rows: take, locator: { ...chunk.locator, rowEnd: chunk.locator.rowStart + take } };
    batches.push(await source.read(cut, columns, keys));
    left -= take;
  }
  return batches;
}

function typeName(type: arrow.DataType | undefined): string | null {
  if (!type) return null;
  if (arrow.DataType.isFloat(type)) return ['Float16', 'Float32', 'Float64'][(type as arrow.Float).precision];
  if (arrow.DataType.isInt(type)) return `${(type as arrow.Int).isSigned ? 'Int' : 'Uint'}${(type as arrow.Int).bitWidth}`;
  if (arrow.DataType.isBool(type)) return 'Bool';
  if (arrow.DataType.isUtf8(type)) return 'Utf8';
  return String(type);
}

/** What feeding a column of this Arrow type into a tensor of this dtype does, as src/scoring/tensor.ts does it. */
export function castClass(type: arrow.DataType, dtype: TensorDtype, cast: FeaturePolicy['cast']): { cast: CastClass; note: string } {
  const isFloat = arrow.DataType.isFloat(type);
  const isInt = arrow.DataType.isInt(type);
  const bits = isInt ? (type as arrow.Int).bitWidth : isFloat ? [16, 32, 64][(type as arrow.Float).precision] : 0;
  const signed = isInt && (type as arrow.Int).isSigned;
  const src = typeName(type);
  const exact = { cast: 'exact' as const, note: `${src} → ${dtype}: exact` };
  const checked = (strictNote: string, lenientNote: string) =>
    cast === 'strict' ? { cast: 'checked' as const, note: `${src} → ${dtype}: ${strictNote} (features.cast: strict)` } : { cast: 'lossy' as const, note: `${src} → ${dtype}: ${lenientNote} (features.cast: lenient, unchecked)` };
  if (arrow.DataType.isBool(type)) return { cast: 'exact', note: `Bool → ${dtype}: 0/1` };
  if (!isFloat && !isInt) return { cast: 'refused', note: `${src} never feeds a tensor (cast it in the source)` };
  if (isFloat && bits === 16) return { cast: 'refused', note: 'Float16 is not read into tensors' };
  switch (dtype) {
    case 'float32':
      if (isFloat && bits === 32) return exact;
      if (isFloat) return { cast: cast === 'strict' ? 'checked' : 'lossy', note: `Float64 → float32: rounded to float32 precision (~7 digits)${cast === 'strict' ? '; a value beyond float32 range fails the chunk (features.cast: strict)' : ', out-of-range values become ±Infinity (features.cast: lenient)'}` };
      if (bits <= 16) return exact;
      return checked('exact up to |v| ≤ 2^24; a larger value fails the chunk', 'integers beyond 2^24 are rounded');
    case 'float64':
      if (isFloat || bits <= 32) return exact;
      return checked('exact up to |v| ≤ 2^53; a larger value fails the chunk', 'integers beyond 2^53 are rounded');
    case 'int32':
      if (isFloat) return checked('whole numbers in int32 range only; anything else fails the chunk', 'fractions are truncated');
      if (bits < 32 || (bits === 32 && signed)) return exact;
      return checked('values beyond int32 range fail the chunk', 'values beyond int32 range wrap');
    case 'int64':
      if (isFloat) return checked('whole numbers only; a fraction fails the chunk', 'fractions are truncated');
      if (bits === 64 && !signed) return { cast: 'lossy', note: 'Uint64 → int64: values beyond 2^53 are rounded (not checked)' };
      return exact;
  }
}

/** Why a non-tensor output cannot be used, and how to export one that can. */
const NON_TENSOR = 'Scoreline reads tensor outputs only (onnxruntime-node cannot return sequences or maps)';
function zipmapAdvice(tensor: string): string {
  return `${NON_TENSOR}; export the model without the ZipMap (skl2onnx: options={id(model): {"zipmap": False}}) so "${tensor}" ` +
    'is an [N, K] float tensor, and map it with index: 1 for class 1';
}

/** Every graph output: its declared type, the manifest columns it fills, and what a run does with it. */
function describeOutputs(model: LoadedModel): OutputCheck[] {
  let declared = [] as ReturnType<typeof onnxOutputTypes>;
  try {
    declared = onnxOutputTypes(readFileSync(model.modelPath));
  } catch {
    declared = [];
  }
  const mapped = new Map<string, string[]>();
  for (const o of model.manifest.outputs) mapped.set(o.tensor, [...(mapped.get(o.tensor) ?? []), `${o.column}${o.index !== undefined ? ` ← [:, ${o.index}]` : ''}`]);
  return declared.map((d) => {
    const columns = mapped.get(d.name) ?? [];
    let handling: string;
    let note: string | null = null;
    if (!d.isTensor) {
      const zipmap = d.producedBy === 'ZipMap' || d.type.startsWith('sequence<map');
      handling = columns.length ? 'refused: not a tensor' : `never fetched (${zipmap ? 'ZipMap' : 'not a tensor'})`;
      note = `${zipmap ? 'a ZipMap output (one class → probability map per row)' : 'not a tensor'}: ${columns.length ? 'the manifest may not map it' : 'a run never fetches it, so its values are not in the output'}. ${zipmapAdvice(d.name)}`;
    } else if (columns.length) {
      handling = `fetched → ${columns.join(', ')}`;
    } else {
      handling = 'not mapped, never fetched';
    }
    return { tensor: d.name, type: d.type, is_tensor: d.isTensor, produced_by: d.producedBy ?? null, columns, handling, note };
  });
}

function batchBytes(batch: arrow.RecordBatch): number {
  let n = 0;
  for (const f of batch.schema.fields) {
    for (const d of batch.getChild(f.name)?.data ?? []) {
      n += (d.values?.byteLength ?? 0) + (d.valueOffsets?.byteLength ?? 0) + (d.nullBitmap?.byteLength ?? 0);
    }
  }
  return n;
}

function predictionStats(manifest: ModelManifest, outputs: Map<string, OutputColumn>[]): PredictionStats[] {
  return manifest.outputs.map((o) => {
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    let n = 0;
    let nonFinite = 0;
    for (const cols of outputs) {
      for (const raw of cols.get(o.column) ?? []) {
        const v = Number(raw);
        if (!Number.isFinite(v)) {
          nonFinite++;
          continue;
        }
        if (v < min) min = v;
        if (v > max) max = v;
        sum += v;
        n++;
      }
    }
    return { column: o.column, dtype: o.dtype, min: n ? round(min, 6) : null, max: n ? round(max, 6) : null, mean: n ? round(sum / n, 6) : null, non_finite: nonFinite };
  });
}

/** One tensor per input holding every batch's rows. */
function concatTensors(batches: BuiltTensor[][]): BuiltTensor[] {
  return batches[0].map((first, i) => {
    const rows = batches.reduce((n, b) => n + b[i].dims[0], 0);
    const width = first.dims[1];
    const data = new (first.data.constructor as new (n: number) => TensorData)(rows * width);
    let offset = 0;
    for (const b of batches) {
      data.set(b[i].data as never, offset);
      offset += b[i].data.length;
    }
    return { ...first, dims: [rows, width], data };
  });
}

/** The sample's rows repeated to `rows` rows. */
function repeatTensors(tensors: BuiltTensor[], sampleRows: number, rows: number): BuiltTensor[] {
  return tensors.map((t) => {
    const width = t.dims[1];
    const data = new (t.data.constructor as new (n: number) => TensorData)(rows * width);
    for (let r = 0; r < rows; r += sampleRows) {
      const n = Math.min(sampleRows, rows - r);
      data.set((n === sampleRows ? t.data : t.data.subarray(0, n * width)) as never, r * width);
    }
    return { ...t, dims: [rows, width], data };
  });
}

interface ProbeResult {
  runtimeBytes: number;
  sessionBytes: number;
  runBytes: number;
  runMs: number[];
  peakFrom: 'VmHWM' | 'maxRSS';
}

/** src/models/memory-probe.js in a child process: ONNX Runtime's memory, measured away from this process's own. */
function runProbe(modelPath: string, tensors: BuiltTensor[], fetches: string[], timeoutMs = 120_000): Promise<ProbeResult> {
  const script = join(packageRoot(), 'src', 'models', 'memory-probe.js');
  if (!existsSync(script)) return Promise.reject(new Error(`${script} is missing`));
  return new Promise((resolvePromise, reject) => {
    const child = fork(script, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the memory probe took longer than ${timeoutMs / 1000} s`));
    }, timeoutMs);
    child.once('message', (m: { ok: boolean; result?: ProbeResult; error?: string }) => {
      clearTimeout(timer);
      if (m.ok) resolvePromise(m.result!);
      else reject(new Error(`the memory probe failed: ${m.error}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the memory probe exited with code ${code}${stderr ? `: ${stderr.trim().split('\n').at(-1)}` : ''}`));
    });
    child.send({ modelPath, feeds: tensors.map((t) => ({ name: t.name, dtype: t.dtype, dims: t.dims, data: t.data })), fetches, runs: 3, intraOpThreads: 1 });
  });
}

export interface PeakInputs {
  target: number;
  concurrency: number;
  /** Inference threads; 0 = ONNX Runtime on the worker's main thread (whole chunks, one at a time). */
  threads: number;
  ortBatchRows: number;
  workerBase: number;
  /** The first session of the model in a process (ONNX Runtime start-up included). */
  sessionBytes: number;
  ortBytesPerRow: number;
  chunkBytesPerRow: number;
  features: number;
  configured: number | null;
}

/**
 * A worker's estimated peak RSS at `chunkRows`:
 *
 *   worker base                                   (DEFAULT_WORKER_BASE or --worker-base)
 * + sessions × session                            (one per inference thread, one for plan-time checks)
 * + inference threads × ORT per row × slice rows  (slice = min(chunk_rows, SCORELINE_ORT_BATCH_ROWS))
 * + concurrency × chunk_rows × chunk bytes per row (every activity slot holding one chunk: its Arrow
 *                                                  columns, its input tensors, its prediction columns)
 *
 * Fitted on real workers (2-core development machine, both demo models, 2M rows, concurrency 4, 2 inference
 * threads, 16k–524k-row chunks): within −1% / +6% of the worker's peak RSS (VmHWM); checked afterwards at
 * concurrency 2 (the suggestion for 640 MiB, and auto): −4% / +7%. docs/models.md "Contract check".
 */
export function estimatePeak(p: PeakInputs, chunkRows: number): number {
  const sessions = p.threads + 1;
  const slice = p.threads > 0 && p.ortBatchRows > 0 ? Math.min(chunkRows, p.ortBatchRows) : chunkRows;
  const ortThreads = Math.max(1, p.threads);
  return p.workerBase + sessions * p.sessionBytes + ortThreads * p.ortBytesPerRow * slice + p.concurrency * chunkRows * p.chunkBytesPerRow;
}

export function adviseChunkRows(p: PeakInputs): ChunkAdvice {
  const auto = chunkRowsFor({ chunk_rows: 'auto' }, p.features);
  const mib = (b: number) => Math.round(b / MiB);
  const fits = (rows: number) => estimatePeak(p, rows) <= p.target;
  // Largest multiple of 4,096 (of 256 below that) up to MAX_SUGGESTED_ROWS that fits: the estimate grows with chunk_rows.
  let maxFit: number | null = null;
  for (const step of [4096, 256]) {
    let lo = 0;
    let hi = Math.floor(MAX_SUGGESTED_ROWS / step);
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (fits(mid * step)) lo = mid;
      else hi = mid - 1;
    }
    if (lo > 0) {
      maxFit = lo * step;
      break;
    }
  }
  const suggested: ChunkAdvice['suggested'] = maxFit === null ? null : auto <= maxFit ? 'auto' : maxFit;
  const suggestedRows = suggested === 'auto' ? auto : suggested;
  const sessions = p.threads + 1;
  const sliceText = p.threads > 0 && p.ortBatchRows > 0 ? `min(chunk_rows, ${n(p.ortBatchRows)})` : 'chunk_rows';
  const fixed = p.workerBase + sessions * p.sessionBytes;
  const formula =
    `peak ≈ worker base ${mib(p.workerBase)} MiB + ${sessions} sessions × ${round(p.sessionBytes / MiB, 1)} MiB` +
    ` + ${Math.max(1, p.threads)} inference thread(s) × ${round((p.ortBytesPerRow * 1000) / MiB, 3)} MiB per 1k rows × ${sliceText}` +
    ` + ${p.concurrency} activity slots × chunk_rows × ${Math.round(p.chunkBytesPerRow)} B`;
  const peakOf = (rows: number) => mib(estimatePeak(p, rows));
  const target = mib(p.target);
  let advice: string;
  if (maxFit === null) {
    advice = `no chunk_rows keeps this worker under ${n(target)} MiB: even 256-row chunks need ~${n(peakOf(256))} MiB (worker base and ${sessions} sessions: ${n(mib(fixed))} MiB); raise --memory-target, or run fewer activities and inference threads per worker (SCORELINE_WORKER_CONCURRENCY, SCORELINE_INFERENCE_THREADS)`;
  } else if (suggested === 'auto') {
    advice = `chunk_rows: auto (${n(auto)} rows for ${p.features} features) fits: ~${n(peakOf(auto))} MiB of ${n(target)} MiB; up to ${n(maxFit)}${maxFit === MAX_SUGGESTED_ROWS ? ' or more' : ''} would fit`;
  } else {
    advice = `set chunk_rows: ${n(maxFit)} (~${n(peakOf(maxFit))} MiB of ${n(target)} MiB); auto (${n(auto)} rows) would need ~${n(peakOf(auto))} MiB`;
  }
  if (p.configured !== null && maxFit !== null && p.configured > maxFit) {
    advice += `; the pipeline's chunk_rows ${n(p.configured)} would need ~${n(peakOf(p.configured))} MiB`;
  }
  return {
    memory_target_mib: target,
    concurrency: p.concurrency,
    inference_threads: p.threads,
    ort_batch_rows: p.ortBatchRows,
    worker_base_mib: mib(p.workerBase),
    features: p.features,
    auto,
    auto_peak_mib: peakOf(auto),
    configured: p.configured,
    configured_peak_mib: p.configured === null ? null : peakOf(p.configured),
    max_fit: maxFit,
    max_fit_peak_mib: maxFit === null ? null : peakOf(maxFit),
    suggested,
    suggested_peak_mib: suggestedRows === null ? null : peakOf(suggestedRows),
    formula,
    advice,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
