/**
 * `scoreline models register --sample-from`: the model contract check, run as a user runs it (the
 * compiled bin/scoreline.js in a child process, no Temporal server needed) against generated Parquet
 * and a pipeline: what it prints, its --json shape, its exit codes, and that a failed check registers
 * nothing. The pure parts (sizes, the peak estimate, cast classes, ONNX output types) are called directly.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as arrow from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adviseChunkRows, castClass, estimatePeak, parseSize, sampleSourceKind, type ContractReport, type PeakInputs } from '../../src/models/contract';
import { onnxOutputTypes } from '../../src/models/onnx-types';
import { cleanup, DEMO_MODELS, demoData, FIXTURE_MODELS, query, REPO, tempProject } from '../helpers/project';

const BIN = join(REPO, 'bin', 'scoreline.js');
const DATE = '2026-11-01';
const MLP = join(DEMO_MODELS, 'churn-mlp', '1');
const ZIPMAP = join(FIXTURE_MODELS, 'zipmap-clf', '1');
let project: string;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  json?: Record<string, unknown>;
}

function scoreline(args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: project, env: { ...process.env, SCORELINE_USER: 'contract-test' }, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(stdout.trim().split('\n').at(-1) ?? '');
      } catch {
        json = undefined;
      }
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr, json });
    });
  });
}

/** `models register <model> --name <name> --manifest <its manifest> …` into the store `store`. */
const register = (dir: string, name: string, store: string, ...args: string[]) =>
  scoreline(['models', 'register', join(dir, 'model.onnx'), '--name', name, '--manifest', join(dir, 'scoreline.model.yaml'), '--models-dir', store, ...args]);

const versionsIn = (store: string, name: string) => (existsSync(join(project, store, name)) ? readFileSync(join(project, store, name, '1', 'scoreline.model.yaml'), 'utf8') : undefined);

beforeAll(async () => {
  if (!existsSync(join(REPO, 'dist', 'src', 'models', 'contract.js'))) throw new Error('build first: npx tsc -p tsconfig.build.json (this test runs the compiled CLI)');
  project = tempProject('scoreline-contract-');
  await demoData(project, [DATE], 5000, 1000);
  const src = `read_parquet('${project}/data/customers/ds=${DATE}/*.parquet', hive_partitioning = false)`;
  mkdirSync(join(project, 'bad'));
  // f05 and f07 dropped; f05 as text; f05 an integer too big for float32 on one row.
  await query(`COPY (SELECT * EXCLUDE (f05, f07) FROM ${src}) TO '${project}/bad/missing.parquet' (FORMAT parquet)`);
  await query(`COPY (SELECT * REPLACE (CAST(f05 AS VARCHAR) AS f05) FROM ${src}) TO '${project}/bad/strings.parquet' (FORMAT parquet)`);
  await query(`COPY (SELECT * REPLACE ((CASE WHEN customer_id % 1000 = 500 THEN 99999999 ELSE 3 END)::BIGINT AS f05) FROM ${src}) TO '${project}/bad/bigint.parquet' (FORMAT parquet)`);
  // Two kinds of unscorable rows in two columns: f03 NULL (nulls: error) and f05 beyond float32 (strict casts), 5 rows each.
  await query(
    `COPY (SELECT * REPLACE (CASE WHEN customer_id % 1000 = 7 THEN NULL ELSE f03 END AS f03, (CASE WHEN customer_id % 1000 = 500 THEN 99999999 ELSE 3 END)::BIGINT AS f05) FROM ${src}) TO '${project}/bad/two.parquet' (FORMAT parquet)`,
  );
  mkdirSync(join(project, 'pipelines'));
  writeFileSync(
    join(project, 'pipelines', 'budget.yaml'),
    `name: budget-daily
source: { kind: parquet, path: bad/two.parquet, key: [customer_id] }
model: churn@champion
sink: { kind: parquet, path: out/budget_scores }
max_rejected: 1%
`,
  );
  writeFileSync(
    join(project, 'pipelines', 'churn.yaml'),
    `name: churn-daily
source: { kind: parquet, path: "data/customers/ds={{ ds }}/*.parquet", key: [customer_id] }
model: churn@champion
sink: { kind: parquet, path: out/churn_scores }
chunk_rows: 500000
`,
  );
});

afterAll(() => cleanup(project));

describe('models register --sample-from', () => {
  it('a Parquet glob: checks, scores the sample, prints time, memory and a chunk_rows suggestion, then registers', async () => {
    const r = await register(MLP, 'churn', 'store-ok', '--sample-from', `data/customers/ds=${DATE}/*.parquet`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Contract check of churn:1 \(.*churn-mlp\/1\/model\.onnx\) against data\/customers\/ds=2026-11-01\/\*\.parquet: OK/);
    expect(r.stdout).toMatch(/source {2}\S+part-0\.parquet \(5,000 rows\); sampled the first 1,000/);
    expect(r.stdout).toMatch(/f00 … f31 \(32\) +feature +FLOAT +Float32 +features float32 +exact +ok/);
    expect(r.stdout).toMatch(/probabilities +float32\[N, 2\] +Concat +fetched → churn_probability ← \[:, 1\]/);
    expect(r.stdout).toMatch(/Predictions on the sample \(1,000 rows scored\)/);
    expect(r.stdout).toMatch(/time {5}[\d.]+ ms per 1k rows on the 1,000-row sample \(median of 5 runs/);
    expect(r.stdout).toMatch(/memory {3}~[\d.]+ MiB per 1k rows = ONNX Runtime [\d.]+ \(peak RSS growth scoring 16,384 rows/);
    expect(r.stdout).toMatch(/chunk_rows for a worker under 1,024 MiB/);
    expect(r.stdout).toMatch(/peak ≈ worker base 440 MiB \+ \d+ sessions × [\d.]+ MiB/);
    expect(r.stdout).toMatch(/→ (chunk_rows: auto \(262,144 rows for 32 features\) fits|set chunk_rows: [\d,]+)/);
    expect(r.stdout).toMatch(/\nregistered churn:1 \(sha256 83e1b041/);
    expect(versionsIn('store-ok', 'churn')).toMatch(/registered_by: contract-test/);
  });

  it('a pipeline for a date: keys, the pipeline chunk_rows compared, a tighter memory target; --json shape', async () => {
    const r = await register(MLP, 'churn', 'store-json', '--sample-from', 'churn-daily', '--date', DATE, '--sample-rows', '700', '--memory-target', '640MiB', '--concurrency', '4', '--json');
    expect(r.code).toBe(0);
    const out = r.json!;
    expect(out).toMatchObject({ name: 'churn', version: '1', registered: true, dry_run: false });
    const c = out.contract as ContractReport;
    expect(c.ok).toBe(true);
    expect(c.problems).toEqual([]);
    expect(c.source).toMatchObject({ kind: 'pipeline', name: 'churn-daily', logical_date: DATE, rows: 5000, keys: ['customer_id'], policy: { cast: 'strict', nulls: 'error' } });
    expect(c.columns).toHaveLength(33);
    expect(c.columns[0]).toMatchObject({ column: 'customer_id', role: 'key', source_type: 'BIGINT', read_as: 'Int64', status: 'ok' });
    expect(c.columns[1]).toMatchObject({ column: 'f00', role: 'feature', source_type: 'FLOAT', read_as: 'Float32', feeds: 'features float32', cast: 'exact', status: 'ok' });
    expect(c.outputs.map((o) => [o.tensor, o.type, o.is_tensor])).toEqual([['label', 'int64[N]', true], ['probabilities', 'float32[N, 2]', true]]);
    expect(c.sample).toMatchObject({ rows_read: 700, rows_scored: 700, rows_rejected: 0 });
    const p = c.sample!.predictions.find((x) => x.column === 'churn_probability')!;
    expect(p.min).toBeGreaterThanOrEqual(0);
    expect(p.max).toBeLessThanOrEqual(1);
    expect(c.timing).toMatchObject({ sample_rows: 700, runs: 5, slice_rows: 16384 });
    expect(c.timing!.ms_per_1k_rows).toBeGreaterThan(0);
    expect(c.memory!.bytes_per_row).toEqual({ read: 136, tensors: 128, predictions: 12 }); // customer_id int64 + 32 float32; 32 × 4; float32 + int64
    expect(c.memory!.total_mib_per_1k_rows).toBeGreaterThanOrEqual(c.memory!.chunk_mib_per_1k_rows);
    const a = c.chunk_rows!;
    expect(a).toMatchObject({ memory_target_mib: 640, concurrency: 4, features: 32, auto: 262144, configured: 500000 });
    // 640 MiB leaves too little for auto's 262,144-row chunks on 4 slots: a smaller number, whose estimate fits.
    expect(typeof a.suggested).toBe('number');
    expect(a.suggested).toBe(a.max_fit);
    expect(a.max_fit!).toBeLessThan(262144);
    expect(a.max_fit! % 4096).toBe(0);
    expect(a.suggested_peak_mib!).toBeLessThanOrEqual(640);
    expect(a.auto_peak_mib).toBeGreaterThan(640);
    expect(a.configured_peak_mib!).toBeGreaterThan(a.auto_peak_mib);
    expect(a.advice).toMatch(/^set chunk_rows: [\d,]+ .*; the pipeline's chunk_rows 500,000 would need/);
  });

  it('a source missing feature columns fails naming them, and registers nothing', async () => {
    const r = await register(MLP, 'churn', 'store-missing', '--sample-from', 'bad/missing.parquet');
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/: FAILED\n/);
    expect(r.stdout).toMatch(/f05 +feature +- +- +features float32 +- +✘ missing/);
    expect(r.stdout).toMatch(/f00 … f04 \(5\) +feature +FLOAT +Float32 +features float32 +exact +ok/); // the rest still read and classified
    expect(r.stderr).toMatch(/error: model contract check failed, so nothing was registered:\n {2}- \S+missing\.parquet: missing column\(s\) "f05", "f07" needed by the model/);
    expect(r.stdout).not.toMatch(/registered churn/);
    expect(existsSync(join(project, 'store-missing', 'churn'))).toBe(false);
  });

  it('a string-typed feature fails as not numeric; a value float32 cannot hold fails under strict casts', async () => {
    const strings = await register(MLP, 'churn', 'store-strings', '--sample-from', 'bad/strings.parquet', '--json');
    expect(strings.code).toBe(2);
    expect(strings.stderr).toMatch(/feature column\(s\) "f05" \(VARCHAR\) are not numeric/);
    const c = strings.json!.contract as ContractReport;
    expect(strings.json).toMatchObject({ name: 'churn', registered: false });
    expect(c.ok).toBe(false);
    expect(c.columns.find((x) => x.column === 'f05')).toMatchObject({ source_type: 'VARCHAR', cast: 'refused', status: 'not numeric' });
    expect(c.sample).toBeNull();
    expect(existsSync(join(project, 'store-strings', 'churn'))).toBe(false);

    const big = await register(MLP, 'churn', 'store-bigint', '--sample-from', 'bad/bigint.parquet');
    expect(big.code).toBe(2);
    expect(big.stdout).toMatch(/f05 +feature +BIGINT +Int64 +features float32 +checked +✘ failed/);
    expect(big.stdout).toMatch(/f05: Int64 → float32: exact up to \|v\| ≤ 2\^24; a larger value fails the chunk \(features\.cast: strict\)/);
    expect(big.stderr).toMatch(/column "f05" row 500: value 99999999 is an integer beyond 2\^24/);
    expect(existsSync(join(project, 'store-bigint', 'churn'))).toBe(false);
  });

  it('names every unscorable column with its count and first row; an error budget makes them a warning while the share fits it', async () => {
    const none = await register(MLP, 'churn', 'store-two', '--sample-from', 'bad/two.parquet', '--sample-rows', '5000', '--json');
    expect(none.code).toBe(2);
    const c = none.json!.contract as ContractReport;
    expect(c.problems).toHaveLength(1);
    expect(c.problems[0]).toMatch(/^10 of 5000 sampled rows cannot be scored: column "f03" row \d+: NULL \(features\.nulls: error\) \(and 4 more rows\); column "f05" row \d+: value 99999999 is an integer beyond 2\^24/);
    expect(c.problems[0]).toMatch(/set max_rejected to quarantine such rows$/);
    expect(c.columns.filter((x) => x.status === 'failed').map((x) => x.column)).toEqual(['f03', 'f05']);
    expect(c.sample).toMatchObject({ rows_read: 5000, rows_scored: 4990 }); // the model still ran on the rest
    expect(existsSync(join(project, 'store-two', 'churn'))).toBe(false);

    // The pipeline's max_rejected: 1% (50 of 5,000 rows) quarantines them: a warning, and the model registers.
    const within = await register(MLP, 'churn', 'store-within', '--sample-from', 'budget-daily', '--date', DATE, '--sample-rows', '5000', '--json');
    expect(within.code).toBe(0);
    const w = within.json!.contract as ContractReport;
    expect(w.problems).toEqual([]);
    expect(w.warnings.join('\n')).toMatch(/10 of 5000 sampled rows cannot be scored: column "f03" row \d+ \(customer_id=\d+\): NULL .*A run quarantines such rows \(~10 of 5000 at this share, within max_rejected: 1% of 5000 rows \(50 rows\)\)/);
    expect(within.json).toMatchObject({ registered: true });

    const over = await register(MLP, 'churn', 'store-over', '--sample-from', 'budget-daily', '--date', DATE, '--sample-rows', '5000', '--set', 'max_rejected=4', '--json');
    expect(over.code).toBe(2);
    expect((over.json!.contract as ContractReport).problems[0]).toMatch(/~10 of the input's 5000 rows, over the error budget max_rejected: 4 rows: a run would fail$/);
  });

  it('the ZipMap classifier: its sequence<map> output is reported as never fetched, with the export fix (dry run: nothing written)', async () => {
    const r = await register(ZIPMAP, 'zm', 'store-zipmap', '--sample-from', 'churn-daily', '--date', DATE, '--dry-run');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/output_label +int64\[N\] +Cast +fetched → predicted_label/);
    expect(r.stdout).toMatch(/output_probability +sequence<map<int64, float32>> +ZipMap +never fetched \(ZipMap\)/);
    expect(r.stdout).toMatch(/output_probability: a ZipMap output .*a run never fetches it.*Scoreline reads tensor outputs only.*"zipmap": False/);
    expect(r.stdout).toMatch(/dry run: every check passed; nothing was registered/);
    expect(existsSync(join(project, 'store-zipmap'))).toBe(false);

    const json = await register(ZIPMAP, 'zm', 'store-zipmap', '--sample-from', 'churn-daily', '--date', DATE, '--dry-run', '--json');
    const out = (json.json!.contract as ContractReport).outputs.find((o) => o.tensor === 'output_probability')!;
    expect(out).toMatchObject({ is_tensor: false, type: 'sequence<map<int64, float32>>', produced_by: 'ZipMap', columns: [], handling: 'never fetched (ZipMap)' });
    expect(json.json).toMatchObject({ registered: false, dry_run: true, path: null });
  });

  it('flag errors: a pipeline needs --date; sample flags need --sample-from', async () => {
    const noDate = await register(MLP, 'churn', 'store-flags', '--sample-from', 'churn-daily');
    expect(noDate.code).toBe(2);
    expect(noDate.stderr).toMatch(/--sample-from churn-daily is a pipeline: add --date YYYY-MM-DD/);
    const stray = await register(MLP, 'churn', 'store-flags', '--memory-target', '1GiB');
    expect(stray.code).toBe(2);
    expect(stray.stderr).toMatch(/--memory-target needs --sample-from/);
    const size = await register(MLP, 'churn', 'store-flags', '--sample-from', 'bad/strings.parquet', '--memory-target', 'lots');
    expect(size.code).toBe(2);
    expect(size.stderr).toMatch(/--memory-target lots: expected a size such as 1GiB/);
    const empty = await register(MLP, 'churn', 'store-flags', '--sample-from', 'churn-daily', '--date', '2026-12-01');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/nothing to sample: nothing matches data\/customers\/ds=2026-12-01\/\*\.parquet for churn-daily on 2026-12-01/);
    expect(existsSync(join(project, 'store-flags'))).toBe(false);
  });
});

describe('contract check parts', () => {
  it('parses memory sizes', () => {
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('768MiB')).toBe(768 * 1024 ** 2);
    expect(parseSize('1.5Gi')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('2G')).toBe(2e9);
    expect(() => parseSize('1024')).toThrow(/expected a size/);
  });

  it('tells pipelines from Parquet paths', () => {
    expect(sampleSourceKind('churn-daily')).toBe('pipeline');
    expect(sampleSourceKind('pipelines/churn.yaml')).toBe('pipeline');
    expect(sampleSourceKind('data/ds=2026-11-01/*.parquet')).toBe('parquet');
    expect(sampleSourceKind('data/ds={{ ds }}')).toBe('parquet');
    expect(sampleSourceKind(REPO)).toBe('parquet'); // an existing directory
    expect(() => sampleSourceKind('No Such Thing')).toThrow(/not a pipeline name or YAML file/);
  });

  it('classifies casts the way the tensor builder applies them', () => {
    expect(castClass(new arrow.Float32(), 'float32', 'strict').cast).toBe('exact');
    expect(castClass(new arrow.Float64(), 'float32', 'strict').cast).toBe('checked');
    expect(castClass(new arrow.Int64(), 'float32', 'lenient')).toMatchObject({ cast: 'lossy', note: expect.stringMatching(/beyond 2\^24 are rounded/) });
    expect(castClass(new arrow.Int16(), 'float32', 'strict').cast).toBe('exact');
    expect(castClass(new arrow.Int64(), 'float64', 'strict').cast).toBe('checked');
    expect(castClass(new arrow.Float64(), 'int64', 'strict').cast).toBe('checked');
    expect(castClass(new arrow.Int64(), 'int64', 'strict').cast).toBe('exact');
    expect(castClass(new arrow.Utf8(), 'float32', 'strict').cast).toBe('refused');
  });

  it('the peak estimate grows with chunk_rows; ONNX Runtime memory stops growing at the slice size', () => {
    const p: PeakInputs = { target: 1024 ** 3, concurrency: 4, threads: 2, ortBatchRows: 16384, workerBase: 440 * 2 ** 20, sessionBytes: 25 * 2 ** 20, ortBytesPerRow: 1200, chunkBytesPerRow: 276, features: 32, configured: null };
    const mib = (rows: number) => estimatePeak(p, rows) / 2 ** 20;
    expect(mib(0)).toBeCloseTo(440 + 3 * 25, 6);
    expect(mib(16384) - mib(0)).toBeCloseTo((2 * 1200 * 16384 + 4 * 16384 * 276) / 2 ** 20, 6);
    expect(mib(32768) - mib(16384)).toBeCloseTo((4 * 16384 * 276) / 2 ** 20, 6); // beyond the slice: chunk data only
    const advice = adviseChunkRows(p);
    expect(advice.suggested).toBe('auto');
    expect(estimatePeak(p, advice.max_fit!)).toBeLessThanOrEqual(p.target);
    expect(estimatePeak(p, advice.max_fit! + 4096)).toBeGreaterThan(p.target);
    const none = adviseChunkRows({ ...p, target: 400 * 2 ** 20 });
    expect(none).toMatchObject({ max_fit: null, suggested: null });
    expect(none.advice).toMatch(/^no chunk_rows keeps this worker under 400 MiB/);
  });

  it('reads output types from the ONNX file, ZipMap included', () => {
    expect(onnxOutputTypes(readFileSync(join(ZIPMAP, 'model.onnx')))).toEqual([
      { name: 'output_label', type: 'int64[N]', isTensor: true, producedBy: 'Cast' },
      { name: 'output_probability', type: 'sequence<map<int64, float32>>', isTensor: false, producedBy: 'ZipMap' },
    ]);
    expect(onnxOutputTypes(readFileSync(join(FIXTURE_MODELS, 'double-input', '1', 'model.onnx')))).toEqual([{ name: 'y', type: 'float64[N, 1]', isTensor: true, producedBy: 'MatMul' }]);
    expect(onnxOutputTypes(Buffer.from('not a model'))).toEqual([]);
  });
});
