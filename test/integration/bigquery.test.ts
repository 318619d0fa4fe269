/**
 * The BigQuery connectors against a real local BigQuery (bqemulator from PyPI, installed and started by
 * this file) through the official `@google-cloud/bigquery` SDK: the same code path as production.
 * The run steps of src/run/batch.ts (plan → score chunks → commit → finish) drive them with real ONNX
 * Runtime sessions; values are checked against direct onnxruntime-node.
 *
 * What the emulator cannot show (said here, and in the report): it accepts any credentials (so "bad
 * credentials" is untestable), ignores table expiration, and always returns tabledata.list rows in
 * snapshot order (so the range-query fallback of BigQuerySource.read is not exercised).
 */
import { join } from 'node:path';
import type { BigQuery } from '@google-cloud/bigquery';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BigQueryAuditStore, BigQuerySink, BigQuerySource, bigQueryClient, parseTableRef, type BigQuerySinkOptions } from '../../connectors/bigquery';
import { createConnectors } from '../../connectors';
import type { Connectors } from '../../connectors/types';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineConfig, type PipelineInput } from '../../src/config/pipeline';
import { Connections, type BigQueryConnection } from '../../src/connections';
import { seedBigQueryTable } from '../../src/dev/bq-seed';
import { startBqEmulator, type BqEmulator } from '../../src/dev/bqemulator';
import type { Stack } from '../../src/dev/stack';
import { commitRun, planRun, runAuditRow, scoreChunk } from '../../src/run/batch';
import type { RunContext } from '../../src/run/context';
import { SessionCache } from '../../src/scoring/session';
import type { RunRef, RunResult } from '../../src/types';
import { runSteps as runWorkflowSteps, type StepOptions, testRun } from '../helpers/bad-input';
import { checkProfileStore } from '../helpers/profile-store';
import { cleanup, copyModels, directScores, FEATURES, query, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const OTHER_DATE = '2026-11-02';
const ROWS = 3_000;
const CHUNK_ROWS = 1_000;

let project: string;
let emulator: BqEmulator;
let conn: BigQueryConnection;
let bq: BigQuery;
let ctx: RunContext;
let sinkOptions: BigQuerySinkOptions = {};

function pipeline(over: Partial<PipelineInput> = {}): PipelineConfig {
  return parsePipeline(
    {
      name: 'churn-bq',
      source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', where: 'ds = {{ ds }}', key: ['customer_id'] },
      model: 'churn-gbt@champion',
      sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.churn_scores' },
      audit: { kind: 'bigquery', connection: 'bigquery' },
      chunk_rows: CHUNK_ROWS,
      ...over,
    },
    'test',
  );
}

/** What the registry will do for `kind: bigquery` (connectors/index.ts), with this file's emulator. */
function bigQueryConnectors(): Connectors {
  const source = new BigQuerySource(conn);
  return {
    source: () => source,
    sink: (config) => {
      if (config.sink.kind !== 'bigquery') throw new Error('test: bigquery sinks only');
      return new BigQuerySink(conn, config.sink, { keys: config.source.key, ...sinkOptions });
    },
    audit: (config) => new BigQueryAuditStore(conn, config.audit?.kind === 'bigquery' ? config.audit.schema : undefined),
  };
}

const newRun = (config: PipelineConfig, date = DATE): RunRef => testRun(config, date);

/** One run through the same steps the workflow takes, without Temporal in between. */
const runSteps = (config: PipelineConfig, date = DATE, opts: StepOptions = {}) => runWorkflowSteps(ctx, config, date, opts);

async function sql<T = Record<string, unknown>>(query: string, params?: Record<string, unknown>): Promise<T[]> {
  const [rows] = await bq.query({ query, params });
  return rows as T[];
}

async function tableNames(): Promise<string[]> {
  const [tables] = await bq.dataset('scoreline').getTables();
  return tables.map((t) => t.id!).sort();
}

beforeAll(async () => {
  project = tempProject('scoreline-bq-');
  copyModels(project);
  // The venv is installed once into the repo (like the Temporal CLI), not into every temp project.
  emulator = await startBqEmulator({ projectDir: REPO });
  conn = emulator.connection;
  bq = bigQueryClient(conn);
  await seedBigQueryTable({ connection: conn, table: 'scoreline.features', dates: [DATE, OTHER_DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'customers') });
  ctx = {
    projectDir: project,
    pipelinesDir: join(project, 'pipelines'),
    modelsDir: join(project, 'models'),
    connectors: bigQueryConnectors(),
    sessions: new SessionCache({ intraOpThreads: 1 }),
    workerId: 'test:1',
  };
});

afterAll(async () => {
  await emulator?.stop();
  if (project) cleanup(project);
});

describe('BigQuery source → ONNX → BigQuery sink', () => {
  it('scores every row once, with values equal to direct ONNX Runtime, and writes audit rows', async () => {
    const result = await runSteps(pipeline());
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('succeeded');
    expect(result).toMatchObject({ rowsIn: ROWS, rowsOut: ROWS, chunks: ROWS / CHUNK_ROWS });
    expect(result.output).toBe(`bigquery://scoreline-local.scoreline.churn_scores (ds=${DATE})`);
    expect(result.audit).toBe('bigquery://scoreline-local.scoreline (scoreline_runs, scoreline_run_chunks, scoreline_run_profiles)');

    const out = await sql<Record<string, unknown>>('SELECT * FROM `scoreline-local.scoreline.churn_scores` WHERE ds = @ds ORDER BY customer_id', { ds: DATE });
    expect(out).toHaveLength(ROWS);
    expect(new Set(out.map((r) => r.customer_id)).size).toBe(ROWS);
    expect(out[0]).toMatchObject({ run_id: result.runId, model_name: 'churn-gbt', model_version: '1', model_sha256: result.model!.sha256 });
    const reference = await directScores(`${project}/data/customers/ds=${DATE}/*.parquet`, join(project, 'models', 'churn-gbt', '1', 'model.onnx'));
    let maxDiff = 0;
    for (const r of out) maxDiff = Math.max(maxDiff, Math.abs(Number(r.churn_probability) - reference.get(Number(r.customer_id))!));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);

    // The output contract, partitioned by ds and clustered by the key.
    const [meta] = await bq.dataset('scoreline').table('churn_scores').getMetadata();
    const types = Object.fromEntries(meta.schema.fields.map((f: { name: string; type: string }) => [f.name, f.type]));
    expect(types).toEqual({
      customer_id: 'INT64',
      churn_probability: 'FLOAT64',
      churn_label: 'INT64',
      run_id: 'STRING',
      model_name: 'STRING',
      model_version: 'STRING',
      model_sha256: 'STRING',
      scored_at: 'TIMESTAMP',
      ds: 'DATE',
    });
    expect(meta.timePartitioning).toMatchObject({ type: 'DAY', field: 'ds' });
    expect(meta.clustering).toEqual({ fields: ['customer_id'] });

    const runs = await sql('SELECT status, rows_in, rows_out, error, model_name, `trigger`, logical_date FROM `scoreline-local.scoreline.scoreline_runs` WHERE run_id = @id ORDER BY updated_at', { id: result.runId });
    expect(runs.map((r) => r.status)).toEqual(['running', 'succeeded']);
    expect(runs[1]).toMatchObject({ rows_in: ROWS, rows_out: ROWS, error: null, model_name: 'churn-gbt', trigger: 'test', logical_date: DATE });
    const chunks = await sql<{ chunk_index: number; rows_out: number }>('SELECT chunk_index, rows_out FROM `scoreline-local.scoreline.scoreline_run_chunks` WHERE run_id = @id ORDER BY chunk_index', { id: result.runId });
    expect(chunks.map((c) => [c.chunk_index, c.rows_out])).toEqual([[0, 1000], [1, 1000], [2, 1000]]);

    // Snapshot and staging tables are gone once the run has finished.
    expect((await tableNames()).filter((t) => t.startsWith('_scoreline'))).toEqual([]);
  });

  it('rerunning a date replaces its rows, never duplicates them, and leaves other dates alone', async () => {
    await runSteps(pipeline({ sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.rerun_scores' } }));
    const other = await runSteps(pipeline({ sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.rerun_scores' } }), OTHER_DATE);
    expect(other.status).toBe('succeeded');
    const second = await runSteps(pipeline({ model: 'churn-mlp@champion', sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.rerun_scores' } }));
    expect(second.status).toBe('succeeded');
    expect(second.commit!.rowsReplaced).toBe(ROWS);
    const perRun = await sql('SELECT CAST(ds AS STRING) AS ds, run_id, model_name, COUNT(*) AS n, COUNT(DISTINCT customer_id) AS k FROM `scoreline-local.scoreline.rerun_scores` GROUP BY ds, run_id, model_name ORDER BY ds');
    expect(perRun).toEqual([
      { ds: DATE, run_id: second.runId, model_name: 'churn-mlp', n: ROWS, k: ROWS },
      { ds: OTHER_DATE, run_id: other.runId, model_name: 'churn-gbt', n: ROWS, k: ROWS },
    ]);
  });

  it('a retried stage and a retried commit change nothing', async () => {
    const config = pipeline({ sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.retry_scores' } });
    const run = newRun(config);
    const input = { pipeline: config.name, config, date: DATE, trigger: 'test' as const };
    const plan = await planRun(ctx, { input, run });
    const args = (i: number) => ({ run: plan.run, config: plan.config, model: plan.model, chunk: plan.chunks[i] });
    const stats = [];
    for (let i = 0; i < plan.chunks.length; i++) stats.push(await scoreChunk(ctx, args(i)));
    stats[1] = await scoreChunk(ctx, args(1), { heartbeat: () => undefined, throwIfCancelled: () => undefined, attempt: 2 }); // chunk 1 retried
    const staged = stats.map((s) => ({ index: s.index, rows: s.rowsOut, file: s.stagedFile }));
    const first = await commitRun(ctx, { run: plan.run, config: plan.config, staged });
    const again = await commitRun(ctx, { run: plan.run, config: plan.config, staged }); // staging already dropped
    expect(first.rowsOut).toBe(ROWS);
    expect(again.rowsOut).toBe(ROWS);
    const [{ n, k }] = await sql<{ n: number; k: number }>('SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS k FROM `scoreline-local.scoreline.retry_scores`');
    expect({ n, k }).toEqual({ n: ROWS, k: ROWS });
    const chunkRows = await sql<{ chunk_index: number; attempt: number }>('SELECT chunk_index, attempt FROM `scoreline-local.scoreline.scoreline_run_chunks` WHERE run_id = @id ORDER BY chunk_index', { id: run.runId });
    expect(chunkRows.map((c) => [c.chunk_index, c.attempt])).toEqual([[0, 1], [1, 2], [2, 1]]);
    // The same with more staging tables than one MERGE reads (they are gathered first): still a no-op.
    sinkOptions = { unionLimit: 2 };
    try {
      const gathered = await commitRun(ctx, { run: plan.run, config: plan.config, staged });
      expect(gathered.rowsOut).toBe(ROWS);
    } finally {
      sinkOptions = {};
    }
    await ctx.connectors.source(config).cleanup?.(config, plan.run);
  });

  it('append mode adds each run beside the earlier ones', async () => {
    const config = pipeline({ sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.appended_scores', mode: 'append' } });
    const a = await runSteps(config);
    const b = await runSteps(config);
    expect([a.status, b.status]).toEqual(['succeeded', 'succeeded']);
    const perRun = await sql<{ run_id: string; n: number }>('SELECT run_id, COUNT(*) AS n FROM `scoreline-local.scoreline.appended_scores` GROUP BY run_id ORDER BY run_id');
    expect(perRun.map((r) => [r.run_id, r.n]).sort()).toEqual([[a.runId, ROWS], [b.runId, ROWS]].sort());
  });

  it('gathers many staging tables into one before the MERGE', async () => {
    sinkOptions = { unionLimit: 2 };
    try {
      const result = await runSteps(pipeline({ chunk_rows: 500, sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.gathered_scores' } }));
      expect(result.status).toBe('succeeded');
      expect(result.chunks).toBe(6);
      const [{ n, k }] = await sql<{ n: number; k: number }>('SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS k FROM `scoreline-local.scoreline.gathered_scores`');
      expect({ n, k }).toEqual({ n: ROWS, k: ROWS });
      expect((await tableNames()).filter((t) => t.startsWith('_scoreline'))).toEqual([]);
    } finally {
      sinkOptions = {};
    }
  });

  it('reads a query source with {{ ds }} bound as a parameter', async () => {
    const config = pipeline({
      source: { kind: 'bigquery', connection: 'bigquery', query: 'SELECT * FROM scoreline.features WHERE ds = {{ ds }} AND segment != {{ pipeline }}', key: ['customer_id'] },
      sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.query_scores' },
    });
    const result = await runSteps(config);
    expect(result.error).toBeUndefined();
    expect(result.rowsOut).toBe(ROWS);
  });
});

describe('mixed backends through the connector registry', () => {
  it('reads BigQuery and writes Parquet (output and audit beside it)', async () => {
    const registry = createConnectors({ baseDir: project, connections: new Connections({ baseDir: project, given: { bigquery: conn } }) });
    const saved = ctx.connectors;
    ctx.connectors = registry;
    try {
      const config = pipeline({ name: 'churn-bq-to-parquet', sink: { kind: 'parquet', path: 'out/mixed_scores' }, audit: undefined });
      const result = await runSteps(config);
      expect(result).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS });
      expect(result.output).toBe(join(project, 'out', 'mixed_scores', `ds=${DATE}`));
      const rows = await query(`SELECT customer_id, churn_probability FROM read_parquet('${result.output}/*.parquet')`);
      expect(rows).toHaveLength(ROWS);
      const expected = await directScores(`${project}/data/customers/ds=${DATE}/*.parquet`, join(project, 'models', 'churn-gbt', '1', 'model.onnx'));
      for (const r of rows) expect(Math.abs(Number(r.churn_probability) - expected.get(Number(r.customer_id))!)).toBeLessThan(1e-6);
      const audit = await query(`SELECT status FROM read_parquet('${join(project, 'out', 'scoreline_runs', '*.parquet')}') WHERE run_id = '${result.runId}' ORDER BY updated_at`);
      expect(audit.map((a) => a.status)).toEqual(['running', 'succeeded']);
    } finally {
      ctx.connectors = saved;
    }
  }, 120_000);
});

describe('failures give a clear error and commit nothing', () => {
  it('a run that dies between staging and commit leaves the output unchanged and no staging behind', async () => {
    const table = 'scoreline.crash_scores';
    const ok = await runSteps(pipeline({ sink: { kind: 'bigquery', connection: 'bigquery', table } }));
    const crashed = await runSteps(pipeline({ model: 'churn-mlp@champion', sink: { kind: 'bigquery', connection: 'bigquery', table } }), DATE, { failAfterStaging: true });
    expect(crashed.status).toBe('failed');
    const perRun = await sql<{ run_id: string; n: number }>('SELECT run_id, COUNT(*) AS n FROM `scoreline-local.scoreline.crash_scores` GROUP BY run_id');
    expect(perRun).toEqual([{ run_id: ok.runId, n: ROWS }]);
    expect((await tableNames()).filter((t) => t.startsWith('_scoreline'))).toEqual([]);
    const runs = await sql('SELECT status, error FROM `scoreline-local.scoreline.scoreline_runs` WHERE run_id = @id ORDER BY updated_at', { id: crashed.runId });
    expect(runs.at(-1)).toMatchObject({ status: 'failed', error: expect.stringMatching(/worker lost/) });
  });

  it('an output table whose schema conflicts is refused, naming the column', async () => {
    await bq.dataset('scoreline').createTable('conflict_scores', {
      schema: { fields: [{ name: 'customer_id', type: 'INT64' }, { name: 'churn_probability', type: 'STRING' }, { name: 'ds', type: 'DATE' }] },
    });
    const result = await runSteps(pipeline({ sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.conflict_scores' } }));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/conflict_scores: the existing table does not match.*"churn_probability" is STRING, expected FLOAT64/);
    expect(await sql('SELECT COUNT(*) AS n FROM `scoreline-local.scoreline.conflict_scores`')).toEqual([{ n: 0 }]);
  });

  it('a missing table or column fails the plan with the name of what is missing', async () => {
    const missing = await runSteps(pipeline({ source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.no_such_features', key: ['customer_id'] } }));
    expect(missing.status).toBe('failed');
    expect(missing.error).toMatch(/bigquery:\/\/scoreline-local\.scoreline\.no_such_features: table not found/);

    const noColumn = await runSteps(pipeline({ source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', key: ['account_id'] } }));
    expect(noColumn.error).toMatch(/scoreline\.features: missing column\(s\) "account_id" needed by the model or key/);
  });

  it('an empty input fails by default, or commits an empty partition with on_empty: succeed', async () => {
    const empty = await runSteps(pipeline({ source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', where: 'ds = {{ ds }}', key: ['customer_id'] } }), '2026-10-01');
    expect(empty.status).toBe('failed');
    expect(empty.error).toMatch(/no input rows for churn-bq on 2026-10-01: bigquery:\/\/scoreline-local\.scoreline\.features holds 0 rows/);
    const ok = await runSteps(pipeline({ source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', where: 'ds = {{ ds }}', key: ['customer_id'], on_empty: 'succeed' } }), '2026-10-01');
    expect(ok.status).toBe('succeeded');
    expect(ok.rowsOut).toBe(0);
    expect((await tableNames()).filter((t) => t.startsWith('_scoreline'))).toEqual([]);
  });

  it('an injection attempt in a table name never reaches SQL', async () => {
    const tables = await tableNames();
    // The pipeline file is refused before anything runs …
    expect(() => pipeline({ sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.x`; DROP TABLE scoreline.features; --' } })).toThrow(/sink\.table/);
    // … and the connector checks again, whoever calls it.
    expect(() => new BigQuerySink(conn, { table: 'scoreline.x`; DROP TABLE scoreline.features; --', mode: 'append' })).toThrow(/sink\.table: (dataset|table) "x`; DROP TABLE scoreline" is not allowed/);
    expect(() => parseTableRef('a.b.c.d', conn, 'source.table')).toThrow(/not a table name/);
    const config = pipeline();
    const hostile = { ...config, source: { ...config.source, table: 'scoreline.features` WHERE FALSE UNION ALL SELECT 1 --' } } as PipelineConfig;
    await expect(new BigQuerySource(conn).plan({ config: hostile, run: newRun(config), columns: ['customer_id'], chunkRows: 10 })).rejects.toThrow(/source\.table: table "features` WHERE FALSE/);
    expect(await tableNames()).toEqual(tables);
    expect(await sql('SELECT COUNT(*) AS n FROM `scoreline-local.scoreline.features`')).toEqual([{ n: 2 * ROWS }]);
  });
});

describe('audit store', () => {
  it('stores run profiles: round trip, a retry replaces, the previous reference is the newest earlier date', async () => {
    await bq.dataset('audit_profiles').get({ autoCreate: true });
    await checkProfileStore(new BigQueryAuditStore(conn, 'audit_profiles'), 'profiles-bq');
  }, 120_000);

  it('adds columns newer than an existing scoreline_runs table, and finds the previous finished run of a date', async () => {
    const [dataset] = await bq.dataset('audit_old').get({ autoCreate: true });
    // scoreline_runs as created before the `alerts` column existed.
    const old = ['run_id', 'workflow_id', 'pipeline', 'trigger', 'logical_date', 'model_name', 'model_version', 'model_sha256', 'status'].map((name) => ({ name, type: 'STRING' }));
    const ints = ['rows_in', 'rows_out', 'rows_rejected', 'rows_imputed', 'chunks'].map((name) => ({ name, type: 'INT64' }));
    const rest = [{ name: 'started_at', type: 'TIMESTAMP' }, { name: 'finished_at', type: 'TIMESTAMP' }, { name: 'duration_ms', type: 'INT64' }, { name: 'output', type: 'STRING' }, { name: 'error', type: 'STRING' }, { name: 'updated_at', type: 'TIMESTAMP' }];
    await dataset.createTable('scoreline_runs', { schema: { fields: [...old, ...ints, ...rest] } });
    const store = new BigQueryAuditStore(conn, 'audit_old');
    const config = pipeline();
    const [failed, succeeded, current] = [newRun(config), newRun(config), newRun(config)];
    expect(await store.previousRun(current)).toBeUndefined();
    const alerts = [{ event: 'failed' as const, channel: 'ops', ok: true }];
    await store.recordRun(runAuditRow(failed, undefined, 'failed', { startedAt: '2026-11-02T00:00:00Z', finishedAt: '2026-11-02T00:01:00Z', error: 'boom', alerts }));
    expect(await store.previousRun(current)).toMatchObject({ run_id: failed.runId, status: 'failed' });
    await store.recordRun(runAuditRow(succeeded, undefined, 'succeeded', { startedAt: '2026-11-02T01:00:00Z', finishedAt: '2026-11-02T01:01:00Z' }));
    expect(await store.previousRun(current)).toMatchObject({ run_id: succeeded.runId, status: 'succeeded' });
    expect(await store.previousRun(succeeded)).toMatchObject({ run_id: failed.runId, status: 'failed' });
    const rows = await sql<{ alerts: string }>('SELECT alerts FROM `scoreline-local.audit_old.scoreline_runs` WHERE run_id = @id', { id: failed.runId });
    expect(JSON.parse(rows[0].alerts)).toEqual(alerts);
  }, 120_000);
});

describe('through Temporal: a real dev server and worker, connection from the worker environment', () => {
  const TOKEN_ENV = 'SCORELINE_TEST_BQ_TOKEN';
  let stack: Stack;
  let client: ScorelineClient;

  beforeAll(async () => {
    // What an operator sets on a worker: the connection as JSON, the token in its own variable.
    process.env.SCORELINE_CONNECTION_BIGQUERY = JSON.stringify({ kind: 'bigquery', project: 'scoreline-local', dataset: 'scoreline', api_endpoint: emulator.endpoint, access_token_env: TOKEN_ENV });
    process.env[TOKEN_ENV] = 'secret-token-that-must-not-leak';
    ({ stack, client } = await startTestEnv(project));
  });

  afterAll(async () => {
    await stopTestEnv({ client, stack });
    delete process.env.SCORELINE_CONNECTION_BIGQUERY;
    delete process.env[TOKEN_ENV];
  });

  async function run(raw: PipelineInput, date = DATE): Promise<RunResult> {
    const config = parsePipeline(raw, 'test');
    const handle = await client.startRun({ config, raw, date, trigger: 'test' });
    return client.wait(handle);
  }

  const raw = (over: Partial<PipelineInput> = {}): PipelineInput => ({
    name: 'churn-bq-temporal',
    source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', where: 'ds = {{ ds }}', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.temporal_scores' },
    chunk_rows: CHUNK_ROWS,
    // One chunk at a time: bqemulator intermittently fails concurrent DML on one table ("'NoneType' object
    // has no attribute 'schema'" from its DuckDB engine, seen on two parallel audit INSERTs) — an emulator
    // race, not a BigQuery limit (docs/warehouses.md).
    parallelism: 1,
    ...over,
  });

  it('scores, commits and audits; a rerun replaces; no secret in history or audit rows', async () => {
    const first = await run(raw());
    expect(first.error).toBeUndefined();
    expect(first).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS, chunks: ROWS / CHUNK_ROWS });
    const second = await run(raw({ model: 'churn-mlp@champion' }));
    expect(second.status).toBe('succeeded');
    const out = await sql<{ customer_id: number; churn_probability: number; run_id: string }>(
      'SELECT customer_id, churn_probability, run_id FROM `scoreline-local.scoreline.temporal_scores` WHERE ds = @ds',
      { ds: DATE },
    );
    expect(out).toHaveLength(ROWS);
    expect(new Set(out.map((r) => r.run_id))).toEqual(new Set([second.runId]));
    const reference = await directScores(`${project}/data/customers/ds=${DATE}/*.parquet`, join(project, 'models', 'churn-mlp', '1', 'model.onnx'));
    let maxDiff = 0;
    for (const r of out) maxDiff = Math.max(maxDiff, Math.abs(r.churn_probability - reference.get(r.customer_id)!));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);

    const runs = await sql('SELECT status FROM `scoreline-local.scoreline.scoreline_runs` WHERE run_id = @id ORDER BY updated_at', { id: second.runId });
    expect(runs.map((r) => r.status)).toEqual(['running', 'succeeded']);
    const audit = JSON.stringify(await sql('SELECT * FROM `scoreline-local.scoreline.scoreline_runs`'));
    expect(audit).not.toContain('secret-token-that-must-not-leak');
    const handle = client.client.workflow.getHandle(second.workflowId, second.runId);
    const history = JSON.stringify(await handle.fetchHistory());
    expect(history).not.toContain('secret-token-that-must-not-leak');
    expect((await tableNames()).filter((t) => t.startsWith('_scoreline'))).toEqual([]);
  });

  it('shadow scoring writes the challenger to <table>_shadow, agreement to the audit row, and the profile to scoreline_run_profiles', async () => {
    const result = await run(raw({ name: 'churn-bq-shadow', sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.shadow_scores' }, shadow: 'churn-mlp@champion' }));
    expect(result.error).toBeUndefined();
    expect(result.shadow!.output).toMatch(/scoreline-local\.scoreline\.shadow_scores_shadow/);
    const reference = await directScores(`${project}/data/customers/ds=${DATE}/*.parquet`, join(project, 'models', 'churn-mlp', '1', 'model.onnx'));
    const shadow = await sql<{ customer_id: number; churn_probability: number; model_name: string }>(
      'SELECT customer_id, churn_probability, model_name FROM `scoreline-local.scoreline.shadow_scores_shadow` WHERE ds = @ds',
      { ds: DATE },
    );
    expect(shadow).toHaveLength(ROWS);
    expect(new Set(shadow.map((r) => r.model_name))).toEqual(new Set(['churn-mlp']));
    expect(Math.max(...shadow.map((r) => Math.abs(r.churn_probability - reference.get(r.customer_id)!)))).toBeLessThanOrEqual(1e-6);
    const last = await new BigQueryAuditStore(conn, 'scoreline').lastSucceededRun('churn-bq-shadow', DATE);
    expect(last).toMatchObject({ run_id: result.runId, shadow_model: 'churn-mlp:1' });
    expect(JSON.parse(last!.shadow_agreement!)).toEqual(result.shadow!.agreement);
    expect(result.shadow!.agreement.rows_compared).toBe(ROWS);
    expect(result.drift?.error).toBeUndefined();
    const profile = await sql('SELECT column_name FROM `scoreline-local.scoreline.scoreline_run_profiles` WHERE run_id = @id', { id: result.runId });
    expect(profile).toHaveLength(34);
  });

  it('an error budget: rows with a NULL feature go to <table>_quarantine and the run succeeds; over the budget nothing is committed', async () => {
    const columns = FEATURES.map((f) => (f === 'f05' ? 'IF(MOD(customer_id, 100) = 7, NULL, f05) AS f05' : f)).join(', ');
    const source = { kind: 'bigquery' as const, connection: 'bigquery', query: `SELECT customer_id, ${columns} FROM scoreline.features WHERE ds = {{ ds }}`, key: ['customer_id'] };
    const sink = { kind: 'bigquery' as const, connection: 'bigquery', table: 'scoreline.q_scores' };
    const bad = ROWS / 100;
    const ok = await run(raw({ name: 'churn-bq-quarantine', source, sink, max_rejected: '5%' }));
    expect(ok.error).toBeUndefined();
    expect(ok).toMatchObject({ status: 'succeeded', rowsOut: ROWS - bad, rowsQuarantined: bad, quarantine: { rows: bad, output: `bigquery://scoreline-local.scoreline.q_scores_quarantine (ds=${DATE})` } });
    const out = await sql<{ customer_id: number }>('SELECT customer_id FROM `scoreline-local.scoreline.q_scores` WHERE ds = @ds', { ds: DATE });
    expect(out).toHaveLength(ROWS - bad);
    expect(out.filter((r) => r.customer_id % 100 === 7)).toEqual([]);
    const q = await sql<{ customer_id: number; rejected_column: string; reason: string; run_id: string }>(
      'SELECT customer_id, rejected_column, reason, run_id FROM `scoreline-local.scoreline.q_scores_quarantine` WHERE ds = @ds',
      { ds: DATE },
    );
    expect(q).toHaveLength(bad);
    for (const r of q) {
      expect(r.customer_id % 100).toBe(7);
      expect(r).toMatchObject({ rejected_column: 'f05', reason: 'NULL (features.nulls: error)', run_id: ok.runId });
    }
    expect(Number((await new BigQueryAuditStore(conn, 'scoreline').lastSucceededRun('churn-bq-quarantine', DATE))?.rows_quarantined)).toBe(bad);

    const over = await run(raw({ name: 'churn-bq-quarantine', source, sink, max_rejected: 1 }));
    expect(over.status).toBe('failed');
    expect(over.error).toMatch(new RegExp(`^score failed: ${bad} rows could not be scored \\(1\\.0% of ${ROWS}\\), over the error budget max_rejected: 1 rows; nothing was committed\\. First: chunk \\d+ .*column "f05": NULL`));
    for (const table of ['q_scores', 'q_scores_quarantine']) {
      const runs = await sql<{ run_id: string }>(`SELECT DISTINCT run_id FROM \`scoreline-local.scoreline.${table}\` WHERE ds = @ds`, { ds: DATE });
      expect(runs.map((r) => r.run_id), table).toEqual([ok.runId]);
    }
    expect((await tableNames()).filter((t) => t.startsWith('_scoreline'))).toEqual([]);

    // After a fix (here: impute f05), `--only-quarantined` scores just those rows and appends them once.
    const fixed = raw({ name: 'churn-bq-quarantine', source, sink, features: { nulls: 'impute', impute_values: { f05: 0 } } });
    const rescore = await client.wait(await client.startRun({ config: parsePipeline(fixed, 'test'), raw: fixed, date: DATE, trigger: 'test', onlyQuarantined: ok.runId }));
    expect(rescore.error).toBeUndefined();
    expect(rescore).toMatchObject({ status: 'succeeded', rescoreOf: ok.runId, rowsIn: bad, rowsOut: bad, rowsQuarantined: 0 });
    const all = await sql<{ customer_id: number; run_id: string }>('SELECT customer_id, run_id FROM `scoreline-local.scoreline.q_scores` WHERE ds = @ds', { ds: DATE });
    expect(all).toHaveLength(ROWS);
    expect(new Set(all.map((r) => r.customer_id)).size).toBe(ROWS);
    expect(all.filter((r) => r.run_id === rescore.runId).every((r) => r.customer_id % 100 === 7)).toBe(true);
    expect(await sql('SELECT customer_id FROM `scoreline-local.scoreline.q_scores_quarantine` WHERE ds = @ds', { ds: DATE })).toEqual([]);
  });

  it('a missing table fails the run at plan time with the table named, and commits nothing', async () => {
    const result = await run(raw({ source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.missing_features', key: ['customer_id'] }, sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.never_written' } }));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/scoreline-local\.scoreline\.missing_features: table not found/);
    expect(await tableNames()).not.toContain('never_written');
  });
});
