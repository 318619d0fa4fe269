/**
 * Bad input, Parquet source and the model store, through the real workflow (Temporal dev server + worker):
 * one row per case of the matrix in docs/reliability.md. Every failing case targets the same output
 * table, which already holds a trusted run of the date, and asserts:
 *   (a) the run's error names what and where (file, column, model, manifest field),
 *   (b) nothing was committed: the partition still holds exactly the trusted run, and no staging is left,
 *   (c) the run's last audit row is `failed` with the same error.
 * Duplicate and NULL keys fail the run at plan time (default `source.key_check: strict`). Inputs that
 * are odd but valid (extra columns, hostile key values, duplicate / NULL keys under `key_check: allow`,
 * NaN, hostile paths) succeed, and their rows come back exactly as many and exactly as stored.
 *
 * Cases already covered elsewhere are not repeated here (test/integration/batch-run.test.ts "bad input
 * fails the run …": missing partition, corrupt file, missing feature column, NULL features, lossy cast,
 * sha256 mismatch, unknown model / unset alias).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { sqlString } from '../../src/io/duckdb';
import { runAnalystQuery } from '../../src/sql';
import type { RunResult } from '../../src/types';
import { HOSTILE_NAME, HOSTILE_VALUES, HUGE_STRING } from '../helpers/bad-input';
import { copyModels, demoData, FEATURES, FIXTURE_MODELS, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const ROWS = 2_000;
/** The demo data's first customer_id of DATE (src/demo/generate-data.ts: days since epoch × 1e9 + row). */
const FIRST_ID = (Date.UTC(2026, 10, 1) / 86_400_000) * 1_000_000_000;
const SINK = 'out/churn_scores';
const CONTRACT = ['customer_id', 'churn_probability', 'churn_label', 'run_id', 'model_name', 'model_version', 'model_sha256', 'scored_at', 'ds'];

let project: string;
let stack: Stack;
let client: ScorelineClient;
/** The trusted run already committed for DATE: failing runs must leave it exactly as it is. */
let trusted: { runId: string; files: string[] };

const customers = () => join(project, 'data', 'customers', `ds=${DATE}`, '*.parquet');

function pipeline(over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name: 'churn-bad',
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: SINK },
    chunk_rows: 1000,
    parallelism: 2,
    ...over,
  };
}

/** A source directory `data/<name>/ds=DATE/` and the pipeline source reading it. */
function sourceDir(name: string, key = ['customer_id']): { dir: string; source: PipelineInput['source'] } {
  const dir = join(project, 'data', name, `ds=${DATE}`);
  mkdirSync(dir, { recursive: true });
  return { dir, source: { kind: 'parquet', path: `data/${name}/ds={{ ds }}/*.parquet`, key } };
}

/** `data/<name>/ds=DATE/part-0.parquet` written from SQL over the demo partition (`{{in}}` in it). */
async function derived(name: string, select: string, key?: string[]): Promise<Partial<PipelineInput>> {
  const { dir, source } = sourceDir(name, key);
  await query(`COPY (${select.replaceAll('{{in}}', `read_parquet(${sqlString(customers())})`)}) TO ${sqlString(join(dir, 'part-0.parquet'))} (FORMAT parquet, ROW_GROUP_SIZE 500)`);
  return { source };
}

/** A copy of the demo model store in which `edit` breaks something. */
function brokenStore(name: string, edit: (store: string) => void): Partial<PipelineInput> {
  const store = copyModels(project, join(project, 'models'), name);
  edit(store);
  return { models_dir: name };
}

function editFile(path: string, edit: (text: string) => string): void {
  const before = readFileSync(path, 'utf8');
  const after = edit(before);
  if (after === before) throw new Error(`test setup: ${path} unchanged`);
  writeFileSync(path, after);
}

async function run(raw: PipelineInput, date = DATE): Promise<RunResult> {
  const config = parsePipeline(raw, 'test');
  return client.wait(await client.startRun({ config, raw, date, trigger: 'test' }));
}

async function auditRows(runId: string) {
  return query(`SELECT status, error, rows_out FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${runId}' ORDER BY updated_at`);
}

/** What the output table holds for DATE: run ids with row counts, and the partition's file names. */
async function committed(): Promise<{ runs: Record<string, unknown>[]; files: string[] }> {
  const dir = join(project, SINK, `ds=${DATE}`);
  return {
    runs: await query(`SELECT run_id, count(*) AS n FROM read_parquet('${dir}/*.parquet') GROUP BY ALL`),
    files: existsSync(dir) ? readdirSync(dir).sort() : [],
  };
}

function stagingOf(runId: string): string[] {
  const dir = join(project, 'out', '.scoreline-staging', 'churn_scores');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(runId)) : [];
}

beforeAll(async () => {
  project = tempProject('scoreline-bad-parquet-');
  copyModels(project);
  copyModels(project, FIXTURE_MODELS, 'fixtures');
  await demoData(project, [DATE], ROWS, 500);
  ({ stack, client } = await startTestEnv(project));
  const good = await run(pipeline());
  expect(good.status, good.error).toBe('succeeded');
  trusted = { runId: good.runId, files: (await committed()).files };
  expect(trusted.files).toContain('_scoreline_commit.json');
});

afterAll(async () => {
  await stopTestEnv({ client, stack, project });
});

interface FailureCase {
  case: string;
  /** Creates the bad input; returns the pipeline fields that point the run at it. */
  setup: () => Promise<Partial<PipelineInput>> | Partial<PipelineInput>;
  /** Must name what and where; matched against the run's error and its audit row. */
  error: RegExp;
}

const FAILURES: FailureCase[] = [
  {
    case: 'truncated file (first half of a valid Parquet file)',
    setup: () => {
      const { dir, source } = sourceDir('truncated');
      const good = readFileSync(join(project, 'data', 'customers', `ds=${DATE}`, 'part-0.parquet'));
      writeFileSync(join(dir, 'part-0.parquet'), good.subarray(0, good.length >> 1));
      return { source };
    },
    error: /data\/truncated\/ds=2026-11-01\/part-0\.parquet: not a readable Parquet file: .*No magic bytes found at end of file/,
  },
  {
    case: 'empty file (0 bytes)',
    setup: () => {
      const { dir, source } = sourceDir('zero-bytes');
      writeFileSync(join(dir, 'part-0.parquet'), '');
      return { source };
    },
    error: /data\/zero-bytes\/ds=2026-11-01\/part-0\.parquet: not a readable Parquet file: .*too small to be a Parquet file/,
  },
  {
    case: 'empty input (a valid file with 0 rows)',
    setup: () => derived('no-rows', 'SELECT * FROM {{in}} LIMIT 0'),
    error: /plan failed: no input rows for churn-bad on 2026-11-01: .*data\/no-rows\/ds=2026-11-01\/part-0\.parquet holds 0 rows \(set source\.on_empty: succeed/,
  },
  {
    case: 'wrong type: text in a feature column (one value a 1 MiB string)',
    setup: () => derived('text-feature', `SELECT * REPLACE (CASE WHEN customer_id % 500 = 7 THEN ${sqlString(HUGE_STRING)} ELSE f05::VARCHAR END AS f05) FROM {{in}}`),
    error: /data\/text-feature\/ds=2026-11-01\/part-0\.parquet: feature column\(s\) "f05" \(VARCHAR\) are not numeric; model churn-gbt:1 needs numbers/,
  },
  {
    case: 'wrong type: a list in a feature column',
    setup: () => derived('list-feature', 'SELECT * REPLACE ([f05, f06] AS f05) FROM {{in}}'),
    error: /data\/list-feature\/ds=2026-11-01\/part-0\.parquet: feature column\(s\) "f05" \(FLOAT\[\]\) are not numeric/,
  },
  {
    case: 'wrong type in one file only (files disagree on a column type)',
    setup: async () => {
      const { dir, source } = sourceDir('mixed-types');
      const from = `read_parquet(${sqlString(customers())})`;
      await query(`COPY (SELECT * FROM ${from} WHERE customer_id % 2 = 0) TO ${sqlString(join(dir, 'part-0.parquet'))} (FORMAT parquet)`);
      await query(`COPY (SELECT * REPLACE (f05::VARCHAR AS f05) FROM ${from} WHERE customer_id % 2 = 1) TO ${sqlString(join(dir, 'part-1.parquet'))} (FORMAT parquet)`);
      return { source };
    },
    error: /data\/mixed-types\/ds=2026-11-01\/part-1\.parquet: column "f05" is VARCHAR but FLOAT in .*data\/mixed-types\/ds=2026-11-01\/part-0\.parquet; all input files must agree/,
  },
  {
    case: 'missing key column',
    setup: () => derived('no-key', 'SELECT * EXCLUDE (customer_id) FROM {{in}}'),
    error: /data\/no-key\/ds=2026-11-01\/part-0\.parquet: missing column\(s\) "customer_id" needed by the model or key \(file has: /,
  },
  {
    case: 'wrong model shape: manifest maps 31 columns to a 32-wide input',
    setup: () =>
      brokenStore('models-narrow', (store) =>
        editFile(join(store, 'churn-gbt', '1', 'scoreline.model.yaml'), (t) => t.replace('shape: [-1, 32]', 'shape: [-1, 31]').replace(/, f31\]/, ']')),
      ),
    error: /model churn-gbt:1: manifest does not match the model:\s+- input "features" takes 32 features but the manifest maps 31 columns/,
  },
  {
    case: 'wrong model shape: manifest input names that the model does not have',
    setup: () => ({ model: 'bad-shape@champion', models_dir: 'fixtures' }),
    error: /model bad-shape:1: manifest does not match the model:\s+- input "features" is not a model input \(model inputs: age, tenure, spend\)/,
  },
  {
    case: 'non-tensor model output (a ZipMap mapped to a column)',
    setup: () => {
      const store = copyModels(project, FIXTURE_MODELS, 'fixtures-zipmap');
      editFile(join(store, 'zipmap-clf', '1', 'scoreline.model.yaml'), (t) => t.replace('tensor: output_label', 'tensor: output_probability').replace('dtype: int64', 'dtype: float32'));
      return { model: 'zipmap-clf@champion', models_dir: 'fixtures-zipmap' };
    },
    error: /model zipmap-clf:1: manifest does not match the model:\s+- output "output_probability" is not a tensor \(e\.g\. a ZipMap\); map a tensor output instead/,
  },
  {
    case: 'missing model file (model.onnx deleted from the store)',
    setup: () => brokenStore('models-nofile', (store) => rmSync(join(store, 'churn-gbt', '1', 'model.onnx'))),
    error: /model churn-gbt:1: missing .*models-nofile\/churn-gbt\/1\/model\.onnx/,
  },
  {
    case: 'SQL injection in a manifest column name',
    setup: () =>
      brokenStore('models-injected', (store) =>
        editFile(join(store, 'churn-gbt', '1', 'scoreline.model.yaml'), (t) => t.replace('[f00, ', `['f00"; DROP TABLE churn_scores; --', `)),
      ),
    error: /models-injected\/churn-gbt\/1\/scoreline\.model\.yaml: inputs\.0\.columns\.0: a column name/,
  },
  {
    // rn 2 and 3 take the first key (3 rows); every 100th row takes the previous row's key (20 keys on
    // 2 rows each): 21 duplicate keys on 43 rows, the three most repeated (then lowest) are the examples.
    case: 'duplicate keys (default source.key_check: strict): refused at plan time, counted, with examples and a query',
    setup: () =>
      derived(
        'duplicate-keys',
        `SELECT * EXCLUDE (rn, first_id) REPLACE (CASE WHEN rn IN (2, 3) THEN first_id WHEN rn % 100 = 0 THEN customer_id - 1 ELSE customer_id END AS customer_id)
         FROM (SELECT *, row_number() OVER (ORDER BY customer_id) AS rn, min(customer_id) OVER () AS first_id FROM {{in}})`,
      ),
    error: new RegExp(
      String.raw`^plan failed: /\S+/data/duplicate-keys/ds=2026-11-01/\*\.parquet: source\.key \(customer_id\) must identify one row each, but the input for 2026-11-01 has 21 duplicate keys on 43 rows ` +
        String.raw`\(e\.g\. value "${FIRST_ID}" on 3 rows, value "${FIRST_ID + 98}" on 2 rows, value "${FIRST_ID + 198}" on 2 rows\)\. ` +
        String.raw`Fix the source or the key \(to list them: SELECT customer_id, COUNT\(\*\) FROM read_parquet\('/\S+/data/duplicate-keys/ds=2026-11-01/\*\.parquet'\) GROUP BY customer_id HAVING COUNT\(\*\) > 1 OR customer_id IS NULL\), ` +
        String.raw`or set source\.key_check: allow to score every row as it is$`,
    ),
  },
  {
    case: 'NULL keys (default source.key_check: strict): refused at plan time, counted',
    setup: () =>
      derived(
        'null-keys',
        `SELECT * EXCLUDE (rn) REPLACE (CASE WHEN rn % 400 = 2 THEN NULL ELSE customer_id END AS customer_id) FROM (SELECT *, row_number() OVER (ORDER BY customer_id) AS rn FROM {{in}})`,
      ),
    error: /^plan failed: \/\S+\/data\/null-keys\/ds=2026-11-01\/\*\.parquet: source\.key \(customer_id\) must identify one row each, but the input for 2026-11-01 has 5 rows with a NULL key\. Fix the source or the key \(to list them: SELECT customer_id, COUNT\(\*\) FROM read_parquet\('.*'\) GROUP BY customer_id HAVING COUNT\(\*\) > 1 OR customer_id IS NULL\), or set source\.key_check: allow/,
  },
  {
    // The error quotes the hostile path: it must reach the audit row intact (audit rows are written as
    // Arrow data, never as SQL text).
    case: `SQL injection in a source path that matches nothing (quotes, ';' and '--' in the error and the audit row)`,
    setup: () => ({ source: { kind: 'parquet', path: `data/it's'; DROP TABLE scoreline_runs; --/ds={{ ds }}/*.parquet`, key: ['customer_id'] } }),
    error: /plan failed: no input rows for churn-bad on 2026-11-01: nothing matches data\/it's'; DROP TABLE scoreline_runs; --\/ds=2026-11-01\/\*\.parquet \(set source\.on_empty: succeed/,
  },
];

describe('bad Parquet input and broken models fail the run, commit nothing, audit "failed"', () => {
  it.each(FAILURES)('$case', async ({ setup, error }) => {
    const result = await run(pipeline(await setup()));
    expect(result.status, result.error).toBe('failed');
    expect(result.error).toMatch(error);
    expect(result.rowsOut).toBe(0);
    // Nothing committed: the partition is the trusted run's, file for file; nothing of this run is staged.
    expect(await committed()).toEqual({ runs: [{ run_id: trusted.runId, n: ROWS }], files: trusted.files });
    expect(stagingOf(result.runId)).toEqual([]);
    const audit = await auditRows(result.runId);
    expect(audit.at(-1)).toMatchObject({ status: 'failed', rows_out: 0, error: result.error });
  });

  it('SQL injection in a key column name is refused when the pipeline is validated, before any run', () => {
    const raw = pipeline({ source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: [HOSTILE_NAME] } });
    expect(() => parsePipeline(raw, 'pipelines/churn-bad.yaml')).toThrow(`pipelines/churn-bad.yaml: source.key.0: expected a column name (letters, digits, _; not starting with a digit), got "${HOSTILE_NAME}"`);
    expect(() => parsePipeline(pipeline({ sink: { kind: 'parquet', path: SINK }, features: { nulls: 'impute', impute_values: { 'a"b': 0 } } }), 'p.yaml')).toThrow('p.yaml: features.impute_values.a"b: Invalid key in record');
  });
});

interface PassCase {
  case: string;
  /** Creates the input; returns the pipeline fields that point the run at it. */
  setup: () => Promise<Partial<PipelineInput>>;
  /** Checks the committed output (read with DuckDB from `output`) against the input. */
  check: (output: string, result: RunResult) => Promise<void>;
}

const PASSES: PassCase[] = [
  {
    case: 'extra columns (with hostile names) are ignored: not read, not in the output',
    setup: () => derived('extra-columns', `SELECT *, 'x' AS "a""b", 1 AS "${HOSTILE_NAME}", [1, 2] AS nested FROM {{in}}`),
    async check(output) {
      const rows = await query(`SELECT * FROM read_parquet('${output}/*.parquet')`);
      expect(rows).toHaveLength(ROWS);
      expect(Object.keys(rows[0]).sort()).toEqual([...CONTRACT].sort());
    },
  },
  {
    case: 'key values with quotes, comment markers, newlines and a 1 MiB string come back unchanged',
    setup: async () => {
      const { dir, source } = sourceDir('hostile-keys', ['account']);
      const special = [...HOSTILE_VALUES, HUGE_STRING].map((v, i) => `WHEN ${i} THEN ${sqlString(v)}`).join(' ');
      await query(
        `COPY (SELECT CASE (row_number() OVER (ORDER BY customer_id) - 1)::INTEGER ${special} ELSE 'c' || customer_id END AS account, ${FEATURES.join(', ')}
               FROM read_parquet(${sqlString(customers())})) TO ${sqlString(join(dir, 'part-0.parquet'))} (FORMAT parquet, ROW_GROUP_SIZE 500)`,
      );
      return { source };
    },
    async check(output) {
      const out = await query(`SELECT account FROM read_parquet('${output}/*.parquet')`);
      const input = await query(`SELECT account FROM read_parquet('${project}/data/hostile-keys/ds=${DATE}/*.parquet')`);
      expect(out).toHaveLength(ROWS);
      const sorted = (rows: Record<string, unknown>[]) => rows.map((r) => String(r.account)).sort();
      expect(sorted(out)).toEqual(sorted(input));
      for (const v of [...HOSTILE_VALUES, HUGE_STRING]) expect(out.filter((r) => r.account === v), v.slice(0, 40)).toHaveLength(1);
      // The table the hostile values name is still there, whole.
      expect(await committed()).toEqual({ runs: [{ run_id: trusted.runId, n: ROWS }], files: trusted.files });
    },
  },
  {
    // The opt-out for keys that are not unique on purpose: no check, each input row is scored once, so
    // the output repeats exactly the input's duplicates and NULL keys and never adds any.
    case: 'duplicate keys and NULL keys with source.key_check: allow: scored once per input row, never duplicated further',
    setup: async () => {
      const over = await derived(
        'duplicate-keys-allowed',
        `SELECT * EXCLUDE (rn, first_id) REPLACE (CASE WHEN rn % 400 = 2 THEN NULL WHEN rn % 100 = 0 THEN first_id ELSE customer_id END AS customer_id)
         FROM (SELECT *, row_number() OVER (ORDER BY customer_id) AS rn, min(customer_id) OVER () AS first_id FROM {{in}})`,
      );
      return { source: { ...over.source!, key_check: 'allow' } as PipelineInput['source'] };
    },
    async check(output) {
      const q = (file: string) =>
        query(`SELECT count(*) AS n, count(customer_id) AS keyed, count(DISTINCT customer_id) AS distinct_keys, max(c) AS most FROM (SELECT customer_id, count(*) OVER (PARTITION BY customer_id) AS c FROM read_parquet('${file}'))`);
      const input = await q(`${project}/data/duplicate-keys-allowed/ds=${DATE}/*.parquet`);
      expect(input[0]).toMatchObject({ n: ROWS, keyed: ROWS - 5, most: 21 }); // 5 NULL keys; one key 1 + 20 times
      expect(await q(`${output}/*.parquet`)).toEqual(input);
    },
  },
  {
    // Finding (reported): NaN and ±Infinity are not NULLs, so the NULL policy does not see them; the
    // model scores them as it does (the tree ensemble takes its "missing" branches).
    case: 'NaN and ±Infinity feature values are scored as is (not rejected)',
    setup: () => derived('nan-features', `SELECT * REPLACE (CASE customer_id % 100 WHEN 3 THEN 'NaN'::FLOAT WHEN 4 THEN 'inf'::FLOAT WHEN 5 THEN '-inf'::FLOAT ELSE f05 END AS f05) FROM {{in}}`),
    async check(output, result) {
      expect(result).toMatchObject({ rowsIn: ROWS, rowsOut: ROWS, rowsRejected: 0 });
      const [row] = await query(`SELECT count(*) AS n, count(*) FILTER (WHERE isnan(churn_probability)) AS nan FROM read_parquet('${output}/*.parquet')`);
      expect(row).toEqual({ n: ROWS, nan: 0 });
    },
  },
  {
    case: 'SQL injection in Parquet paths (quotes and ; in source.path and sink.path) is quoted safely',
    setup: async () => {
      const dir = join(project, 'data', `it's"; DROP TABLE x; --`, `ds=${DATE}`);
      mkdirSync(dir, { recursive: true });
      await query(`COPY (SELECT * FROM read_parquet(${sqlString(customers())})) TO ${sqlString(join(dir, 'part-0.parquet'))} (FORMAT parquet)`);
      return {
        source: { kind: 'parquet', path: `data/it's"; DROP TABLE x; --/ds={{ ds }}/*.parquet`, key: ['customer_id'] },
        sink: { kind: 'parquet', path: `out/o'brien"; DROP TABLE churn_scores; --` },
      };
    },
    async check(output) {
      expect(output).toBe(join(project, 'out', `o'brien"; DROP TABLE churn_scores; --`, `ds=${DATE}`));
      const [row] = await query(`SELECT count(*) AS n, count(DISTINCT customer_id) AS k FROM read_parquet(${sqlString(join(output, '*.parquet'))})`);
      expect(row).toEqual({ n: ROWS, k: ROWS });
      // `scoreline sql` (src/sql.ts) makes views only of plain names: the hostile directory is skipped,
      // the other tables and the audit views still answer.
      const analyst = await runAnalystQuery('SELECT count(*) AS n FROM churn_scores', { dataDirs: [join(project, 'out')] });
      expect(analyst.views).toEqual(expect.arrayContaining(['churn_scores', 'scoreline_runs']));
      expect(analyst.views.filter((v) => v.includes('brien'))).toEqual([]);
      expect(analyst.rows).toEqual([{ n: ROWS }]);
    },
  },
];

describe('odd but valid input succeeds with every row exactly once', () => {
  it.each(PASSES)('$case', async ({ case: name, setup, check }) => {
    const over = await setup();
    const sink = over.sink ?? { kind: 'parquet' as const, path: `out/pass_${PASSES.findIndex((p) => p.case === name)}` };
    const result = await run(pipeline({ ...over, sink }));
    expect(result.status, result.error).toBe('succeeded');
    await check(result.output!, result);
    expect((await auditRows(result.runId)).at(-1)).toMatchObject({ status: 'succeeded', error: null });
  });
});
