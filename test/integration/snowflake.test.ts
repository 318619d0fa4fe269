/**
 * The Snowflake connectors against a real local Snowflake emulator (fakesnow from PyPI, installed and
 * started by this file through test/emulators/fakesnow_server.py) over the official `snowflake-sdk`:
 * the same code path as production. The run steps of src/run/batch.ts (plan → score chunks → commit →
 * finish) drive them with real ONNX Runtime sessions; values are checked against direct onnxruntime-node.
 *
 * What the emulator cannot show (said here, and in the report): it accepts any credentials (so "bad
 * credentials" is untestable; an unreachable account is tested instead), runs several `;`-separated
 * statements in one request where Snowflake refuses them, ignores TRANSIENT and CLUSTER BY, and executes
 * array binds through the launcher's own bulk path rather than Snowflake's.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSnowflakeConnections, runSnowflake, SnowflakeAuditStore, SnowflakeSink, SnowflakeSource } from '../../connectors/snowflake';
import type { Connectors } from '../../connectors/types';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineConfig, type PipelineInput } from '../../src/config/pipeline';
import type { SnowflakeConnection } from '../../src/connections';
import { fakesnowConnection, startFakesnow, type Fakesnow } from '../../src/dev/fakesnow';
import { seedSnowflakeTable } from '../../src/dev/snowflake-seed';
import type { Stack } from '../../src/dev/stack';
import { errorMessage } from '../../src/errors';
import { runAuditRow } from '../../src/run/batch';
import type { RunContext } from '../../src/run/context';
import { SessionCache } from '../../src/scoring/session';
import type { RunRef, RunResult } from '../../src/types';
import { runSteps as runWorkflowSteps, type StepOptions, testRun } from '../helpers/bad-input';
import { checkProfileStore } from '../helpers/profile-store';
import { cleanup, copyModels, directScores, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const OTHER_DATE = '2026-11-02';
const ROWS = 3_000;
const CHUNK_ROWS = 1_000;

let project: string;
let emulator: Fakesnow;
let conn: SnowflakeConnection;
let ctx: RunContext;

function pipeline(over: Partial<PipelineInput> = {}): PipelineConfig {
  return parsePipeline(
    {
      name: 'churn-sf',
      source: { kind: 'snowflake', connection: 'snowflake', table: 'features', where: 'ds = {{ ds }}', key: ['customer_id'] },
      model: 'churn-gbt@champion',
      sink: { kind: 'snowflake', connection: 'snowflake', table: 'churn_scores' },
      audit: { kind: 'snowflake', connection: 'snowflake' },
      chunk_rows: CHUNK_ROWS,
      ...over,
    },
    'test',
  );
}

/** What the registry does for `kind: snowflake` (connectors/index.ts), with this file's emulator. */
function snowflakeConnectors(): Connectors {
  return {
    source: () => new SnowflakeSource(conn),
    sink: (config) => {
      if (config.sink.kind !== 'snowflake') throw new Error('test: snowflake sinks only');
      return new SnowflakeSink(conn, config.sink);
    },
    audit: (config) => new SnowflakeAuditStore(conn, config.audit?.kind === 'snowflake' ? config.audit.schema : undefined),
  };
}

const newRun = (config: PipelineConfig, date = DATE): RunRef => testRun(config, date);

/** One run through the same steps the workflow takes, without Temporal in between. */
const runSteps = (config: PipelineConfig, date = DATE, opts: StepOptions = {}) => runWorkflowSteps(ctx, config, date, opts);

const sql = (text: string, binds: (string | null)[] = []) => runSnowflake(conn, text, binds);

async function tableNames(): Promise<string[]> {
  const rows = await sql(`SELECT TABLE_NAME AS "T" FROM "SCORELINE".INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'PUBLIC' ORDER BY 1`);
  return rows.map((r) => String(r.T));
}

const scratch = (names: string[]) => names.filter((t) => t.startsWith('SCORELINE_SNAPSHOT') || t.startsWith('SCORELINE_STAGE'));

beforeAll(async () => {
  project = tempProject('scoreline-sf-');
  copyModels(project);
  // The venv is installed once into the repo (like the Temporal CLI), not into every temp project.
  emulator = await startFakesnow({ projectDir: project, toolsDir: REPO });
  conn = emulator.connection;
  await seedSnowflakeTable({ connection: conn, table: 'features', dates: [DATE, OTHER_DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'customers') });
  ctx = {
    projectDir: project,
    pipelinesDir: join(project, 'pipelines'),
    modelsDir: join(project, 'models'),
    connectors: snowflakeConnectors(),
    sessions: new SessionCache({ intraOpThreads: 1 }),
    workerId: 'test:1',
  };
});

afterAll(async () => {
  await closeSnowflakeConnections();
  await emulator?.stop();
  if (project) cleanup(project);
});

async function expectScoresMatch(rows: Record<string, unknown>[], model: 'churn-gbt' | 'churn-mlp', date = DATE) {
  const reference = await directScores(`${project}/data/customers/ds=${date}/*.parquet`, join(project, 'models', model, '1', 'model.onnx'));
  let maxDiff = 0;
  for (const r of rows) maxDiff = Math.max(maxDiff, Math.abs(Number(r.CHURN_PROBABILITY) - reference.get(Number(r.CUSTOMER_ID))!));
  expect(maxDiff).toBeLessThanOrEqual(1e-6);
}

describe('Snowflake source → ONNX → Snowflake sink', () => {
  it('scores every row once, with values equal to direct ONNX Runtime, and writes audit rows', async () => {
    const result = await runSteps(pipeline());
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS, chunks: ROWS / CHUNK_ROWS });
    expect(result.output).toBe(`snowflake://fakesnow/SCORELINE.PUBLIC.CHURN_SCORES (ds=${DATE})`);

    const out = await sql(`SELECT * FROM churn_scores WHERE ds = ? ORDER BY customer_id`, [DATE]);
    expect(out).toHaveLength(ROWS);
    expect(new Set(out.map((r) => r.CUSTOMER_ID)).size).toBe(ROWS);
    expect(Object.keys(out[0]).sort()).toEqual(['CHURN_LABEL', 'CHURN_PROBABILITY', 'CUSTOMER_ID', 'DS', 'MODEL_NAME', 'MODEL_SHA256', 'MODEL_VERSION', 'RUN_ID', 'SCORED_AT'].sort());
    expect(out[0]).toMatchObject({ RUN_ID: result.runId, MODEL_NAME: 'churn-gbt', MODEL_VERSION: '1', MODEL_SHA256: result.model!.sha256 });
    await expectScoresMatch(out, 'churn-gbt');

    // The output contract's types, as Snowflake reports them.
    const types = await sql(`SELECT COLUMN_NAME AS "C", DATA_TYPE AS "T" FROM "SCORELINE".INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = 'PUBLIC' AND TABLE_NAME = 'CHURN_SCORES' ORDER BY ORDINAL_POSITION`);
    expect(Object.fromEntries(types.map((r) => [r.C, r.T]))).toEqual({
      CUSTOMER_ID: 'NUMBER', CHURN_PROBABILITY: 'FLOAT', CHURN_LABEL: 'NUMBER', RUN_ID: 'TEXT', MODEL_NAME: 'TEXT', MODEL_VERSION: 'TEXT', MODEL_SHA256: 'TEXT', SCORED_AT: 'TIMESTAMP_TZ', DS: 'DATE',
    });

    const runs = await sql(`SELECT status AS "S", rows_out AS "N", error AS "E" FROM scoreline_runs WHERE run_id = ? ORDER BY updated_at`, [result.runId]);
    expect(runs).toEqual([{ S: 'running', N: '0', E: null }, { S: 'succeeded', N: String(ROWS), E: null }]);
    const chunks = await sql(`SELECT chunk_index AS "I", rows_out AS "N", infer_ms AS "MS" FROM scoreline_run_chunks WHERE run_id = ? ORDER BY chunk_index`, [result.runId]);
    expect(chunks.map((c) => [Number(c.I), Number(c.N)])).toEqual([[0, 1000], [1, 1000], [2, 1000]]);
    expect(chunks.every((c) => Number(c.MS) > 0)).toBe(true);
    // Snapshot and staging are gone.
    expect(scratch(await tableNames())).toEqual([]);
  });

  it('rerunning a date replaces its rows, never duplicates them, and leaves other dates alone', async () => {
    const other = await runSteps(pipeline(), OTHER_DATE);
    expect(other.status).toBe('succeeded');
    const rerun = await runSteps(pipeline({ model: 'churn-mlp@champion' }));
    expect(rerun.status).toBe('succeeded');
    expect(rerun.commit?.rowsReplaced).toBe(ROWS);
    const perDate = await sql(`SELECT CAST(ds AS VARCHAR) AS "DS", run_id AS "R", COUNT(*) AS "N", COUNT(DISTINCT customer_id) AS "K" FROM churn_scores GROUP BY 1, 2 ORDER BY 1`);
    expect(perDate).toEqual([
      { DS: DATE, R: rerun.runId, N: String(ROWS), K: String(ROWS) },
      { DS: OTHER_DATE, R: other.runId, N: String(ROWS), K: String(ROWS) },
    ]);
    await expectScoresMatch(await sql(`SELECT customer_id, churn_probability FROM churn_scores WHERE ds = ?`, [DATE]), 'churn-mlp');
  });

  it('a retried stage and a retried commit change nothing', async () => {
    const config = pipeline({ sink: { kind: 'snowflake', connection: 'snowflake', table: 'retried_scores' } });
    const result = await runSteps(config, DATE, { retryStageAndCommit: true });
    expect(result.status).toBe('succeeded');
    const [row] = await sql(`SELECT COUNT(*) AS "N", COUNT(DISTINCT customer_id) AS "K" FROM retried_scores WHERE ds = ?`, [DATE]);
    expect(row).toEqual({ N: String(ROWS), K: String(ROWS) });
    const chunks = await sql(`SELECT chunk_index AS "I", attempt AS "A" FROM scoreline_run_chunks WHERE run_id = ? ORDER BY 1`, [result.runId]);
    expect(chunks.map((c) => [Number(c.I), Number(c.A)])).toEqual([[0, 2], [1, 2], [2, 2]]);
  });

  it('append mode adds each run beside the earlier ones', async () => {
    const sink = { kind: 'snowflake' as const, connection: 'snowflake', table: 'appended_scores', mode: 'append' as const };
    const a = await runSteps(pipeline({ sink }));
    const b = await runSteps(pipeline({ sink }));
    const rows = await sql(`SELECT run_id AS "R", COUNT(*) AS "N" FROM appended_scores GROUP BY 1 ORDER BY 1`);
    expect(rows.map((r) => [r.R, Number(r.N)])).toEqual([[a.runId, ROWS], [b.runId, ROWS]].sort());
  });

  it('reads a query source with {{ ds }} bound as a parameter, and a fully qualified table in an audit schema', async () => {
    // CREATE SCHEMA also makes it the session's current schema (as on Snowflake): use a session of its own.
    await runSnowflake({ ...conn, name: 'ddl' }, 'CREATE SCHEMA IF NOT EXISTS "SCORELINE"."AUDIT"');
    const result = await runSteps(
      pipeline({
        source: { kind: 'snowflake', connection: 'snowflake', query: 'SELECT customer_id, f00, f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31 FROM features WHERE ds = {{ ds }} AND MOD(customer_id, 2) = 0', key: ['customer_id'] },
        sink: { kind: 'snowflake', connection: 'snowflake', table: 'scoreline.public.query_scores' },
        audit: { kind: 'snowflake', connection: 'snowflake', schema: 'scoreline.audit' },
      }),
    );
    expect(result.error).toBeUndefined();
    expect(result.rowsOut).toBe(ROWS / 2);
    await expectScoresMatch(await sql(`SELECT customer_id, churn_probability FROM query_scores`), 'churn-gbt');
    expect(await sql(`SELECT status AS "S" FROM "SCORELINE"."AUDIT"."SCORELINE_RUNS" WHERE run_id = ? ORDER BY updated_at`, [result.runId])).toEqual([{ S: 'running' }, { S: 'succeeded' }]);
  });

  it('date and timestamp keys are read by an explicit format and come back distinct to the microsecond', async () => {
    // Two keys a microsecond apart: Snowflake's default output format (milliseconds) made them one.
    await sql(
      `CREATE OR REPLACE TABLE features_tskeys AS SELECT TO_DATE('2026-11-01') AS event_day, TO_TIMESTAMP_NTZ('2026-11-01 10:11:12.12345' || CAST(MOD(customer_id, 2) AS VARCHAR)) AS event_at, customer_id, f00, f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31 FROM features WHERE ds = ? AND customer_id IN (SELECT MIN(customer_id) FROM features WHERE ds = ? UNION ALL SELECT MIN(customer_id) + 1 FROM features WHERE ds = ?)`,
      [DATE, DATE, DATE],
    );
    const source = { kind: 'snowflake' as const, connection: 'snowflake', table: 'features_tskeys', key: ['event_day', 'event_at'] };
    const result = await runSteps(pipeline({ source, sink: { kind: 'snowflake', connection: 'snowflake', table: 'tskey_scores' } }));
    expect(result).toMatchObject({ status: 'succeeded', rowsOut: 2 });
    // Snowflake prints these with nine digits ('…12.123451000'); fakesnow ignores the format for a column and
    // gives the microseconds. The SQL the keys are read with is pinned by the unit test of keyExpr.
    const keys = (await sql(`SELECT event_day AS "D", event_at AS "A" FROM tskey_scores ORDER BY event_at`)).map((r) => [r.D, String(r.A).replace(/0+$/, '')]);
    expect(keys).toEqual([
      ['2026-11-01', '2026-11-01 10:11:12.12345'],
      ['2026-11-01', '2026-11-01 10:11:12.123451'],
    ]);
  });

  it('keeps NULL features as NULLs, so the NULL policy applies (skip counts them)', async () => {
    await sql(`CREATE OR REPLACE TABLE features_nulls AS SELECT * FROM features WHERE ds = ?`, [DATE]);
    await sql(`UPDATE features_nulls SET f05 = NULL WHERE MOD(customer_id, 100) = 7`);
    expect(await sql(`SELECT COUNT(*) AS "N" FROM features_nulls WHERE f05 IS NULL`)).toEqual([{ N: String(ROWS / 100) }]);
    const source = { kind: 'snowflake' as const, connection: 'snowflake', table: 'features_nulls', key: ['customer_id'] };
    const failed = await runSteps(pipeline({ source, sink: { kind: 'snowflake', connection: 'snowflake', table: 'null_scores' } }));
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/feature column "f05" has \d+ NULL value\(s\)/);
    const skipped = await runSteps(pipeline({ source, sink: { kind: 'snowflake', connection: 'snowflake', table: 'null_scores' }, features: { nulls: 'skip' } }));
    expect(skipped).toMatchObject({ status: 'succeeded', rowsRejected: ROWS / 100, rowsOut: ROWS - ROWS / 100 });
  });
});

describe('failures give a clear error and commit nothing', () => {
  it('a run that dies between staging and commit leaves the output unchanged and no staging behind', async () => {
    const before = await sql(`SELECT run_id AS "R", COUNT(*) AS "N" FROM churn_scores WHERE ds = ? GROUP BY 1`, [DATE]);
    const result = await runSteps(pipeline(), DATE, { failAfterStaging: true });
    expect(result.status).toBe('failed');
    expect(await sql(`SELECT run_id AS "R", COUNT(*) AS "N" FROM churn_scores WHERE ds = ? GROUP BY 1`, [DATE])).toEqual(before);
    expect(scratch(await tableNames())).toEqual([]);
    const runs = await sql(`SELECT status AS "S", error AS "E" FROM scoreline_runs WHERE run_id = ? ORDER BY updated_at`, [result.runId]);
    expect(runs.at(-1)).toEqual({ S: 'failed', E: 'run failed: worker lost between staging and commit' });
  });

  it('an output table whose schema conflicts is refused, naming the column', async () => {
    await sql(`CREATE OR REPLACE TABLE conflicting_scores (customer_id NUMBER(38,0), churn_probability VARCHAR, churn_label NUMBER(38,0), run_id VARCHAR, model_name VARCHAR, model_version VARCHAR, model_sha256 VARCHAR, scored_at TIMESTAMP_TZ, ds DATE)`);
    const result = await runSteps(pipeline({ sink: { kind: 'snowflake', connection: 'snowflake', table: 'conflicting_scores' } }));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/CONFLICTING_SCORES: the existing table does not match the output contract \(docs\/output-schema\.md\): column CHURN_PROBABILITY is VARCHAR, expected FLOAT/);
    expect(await sql(`SELECT COUNT(*) AS "N" FROM conflicting_scores`)).toEqual([{ N: '0' }]);
    expect(scratch(await tableNames())).toEqual([]);
  });

  it('a missing table or column fails the plan with the name of what is missing', async () => {
    const missing = await runSteps(pipeline({ source: { kind: 'snowflake', connection: 'snowflake', table: 'missing_features', key: ['customer_id'] }, sink: { kind: 'snowflake', connection: 'snowflake', table: 'never_written' } }));
    expect(missing.status).toBe('failed');
    expect(missing.error).toMatch(/plan failed: snowflake table SCORELINE\.PUBLIC\.MISSING_FEATURES: does not exist or is not readable with connection "snowflake"/);
    await sql(`CREATE OR REPLACE TABLE features_no_f31 AS SELECT customer_id, f00, ds FROM features`);
    const noColumn = await runSteps(pipeline({ source: { kind: 'snowflake', connection: 'snowflake', table: 'features_no_f31', key: ['customer_id'] }, sink: { kind: 'snowflake', connection: 'snowflake', table: 'never_written' } }));
    expect(noColumn.error).toMatch(/SCORELINE\.PUBLIC\.FEATURES_NO_F31: missing column\(s\) "f01", .*"f31" needed by the model or key/);
    expect(await tableNames()).not.toContain('NEVER_WRITTEN');
    expect(scratch(await tableNames())).toEqual([]);
  });

  it('an empty input fails by default, or commits an empty partition with on_empty: succeed', async () => {
    const failed = await runSteps(pipeline(), '2026-10-01');
    expect(failed.error).toMatch(/plan failed: no input rows for churn-sf on 2026-10-01: snowflake:\/\/fakesnow\/SCORELINE\.PUBLIC\.FEATURES holds 0 rows/);
    const source = { kind: 'snowflake' as const, connection: 'snowflake', table: 'features', where: 'ds = {{ ds }}', key: ['customer_id'], on_empty: 'succeed' as const };
    const ok = await runSteps(pipeline({ source }), '2026-10-01');
    expect(ok).toMatchObject({ status: 'succeeded', rowsOut: 0 });
    expect(scratch(await tableNames())).toEqual([]);
  });

  it('an injection attempt in a table name never reaches SQL', async () => {
    const before = await tableNames();
    // The pipeline file is refused before anything runs …
    expect(() => pipeline({ sink: { kind: 'snowflake', connection: 'snowflake', table: 'x"; DROP TABLE features; --' } })).toThrow(/sink\.table/);
    // … and the connector checks again, whoever calls it.
    expect(() => new SnowflakeSink(conn, { table: 'x"; DROP TABLE features; --', mode: 'append' })).toThrow(/sink\.table: "x"; DROP TABLE features; --" is not a Snowflake name/);
    expect(() => new SnowflakeSink(conn, { table: 'project-1.dataset.table', mode: 'append' })).toThrow(/not a Snowflake name/);
    expect(() => new SnowflakeAuditStore(conn, 'a.b.c')).toThrow(/audit\.schema: "a\.b\.c" is not a Snowflake name of the form \[DATABASE\.\]SCHEMA/);
    const config = pipeline();
    const hostile = { ...config, source: { ...config.source, table: 'features WHERE 1=0; DROP TABLE features' } } as PipelineConfig;
    await expect(new SnowflakeSource(conn).plan({ config: hostile, run: newRun(config), columns: ['customer_id'], chunkRows: 10 })).rejects.toThrow(/source\.table: "features WHERE 1=0; DROP TABLE features" is not a Snowflake name/);
    // A keyword as a table name is just a name: quoted, so it cannot change the statement.
    const keyword = await runSteps(pipeline({ sink: { kind: 'snowflake', connection: 'snowflake', table: 'select' } }));
    expect(keyword.status).toBe('succeeded');
    expect(await sql(`SELECT COUNT(*) AS "N" FROM "SELECT"`)).toEqual([{ N: String(ROWS) }]);
    expect((await tableNames()).filter((t) => !before.includes(t))).toEqual(['SELECT']);
    expect(await sql(`SELECT COUNT(*) AS "N" FROM features`)).toEqual([{ N: String(2 * ROWS) }]);
  });

  it('an unreachable account fails with the account named and no credentials in the message', async () => {
    const dead = fakesnowConnection('http://127.0.0.1:9', 'dead');
    dead.options.password = 'secret-password-that-must-not-leak';
    Object.assign(dead.options, { sfRetryMaxLoginRetries: 1, retryTimeout: 0 }); // fail fast instead of retrying for minutes
    const err = await new SnowflakeSource(dead).plan({ config: pipeline(), run: newRun(pipeline()), columns: ['customer_id'], chunkRows: 10 }).catch((e: Error) => e);
    expect(errorMessage(err)).toMatch(/cannot connect to Snowflake account fakesnow \(connection "dead"\)/);
    expect(errorMessage(err)).not.toContain('secret-password-that-must-not-leak');
  }, 120_000);
});

describe('audit store', () => {
  it('stores run profiles: round trip, a retry replaces, the previous reference is the newest earlier date', async () => {
    await runSnowflake({ ...conn, name: 'ddl' }, 'CREATE SCHEMA IF NOT EXISTS "SCORELINE"."AUDIT_PROFILES"');
    await checkProfileStore(new SnowflakeAuditStore(conn, 'SCORELINE.AUDIT_PROFILES'), 'profiles-sf');
  }, 120_000);

  it('adds columns newer than an existing scoreline_runs table, and finds the previous finished run of a date', async () => {
    await runSnowflake({ ...conn, name: 'ddl' }, 'CREATE SCHEMA IF NOT EXISTS "SCORELINE"."AUDIT_OLD"');
    // scoreline_runs as created before the `alerts` column existed.
    await sql('CREATE TABLE "SCORELINE"."AUDIT_OLD"."SCORELINE_RUNS" ("RUN_ID" VARCHAR, "WORKFLOW_ID" VARCHAR, "PIPELINE" VARCHAR, "TRIGGER" VARCHAR, "LOGICAL_DATE" VARCHAR, "MODEL_NAME" VARCHAR, "MODEL_VERSION" VARCHAR, "MODEL_SHA256" VARCHAR, "STATUS" VARCHAR, "ROWS_IN" NUMBER(38,0), "ROWS_OUT" NUMBER(38,0), "ROWS_REJECTED" NUMBER(38,0), "ROWS_IMPUTED" NUMBER(38,0), "CHUNKS" NUMBER(10,0), "STARTED_AT" TIMESTAMP_TZ, "FINISHED_AT" TIMESTAMP_TZ, "DURATION_MS" NUMBER(38,0), "OUTPUT" VARCHAR, "ERROR" VARCHAR, "UPDATED_AT" TIMESTAMP_TZ)');
    const store = new SnowflakeAuditStore(conn, 'SCORELINE.AUDIT_OLD');
    const config = pipeline();
    const [failed, succeeded, current] = [newRun(config), newRun(config), newRun(config)];
    expect(await store.previousRun(current)).toBeUndefined();
    const alerts = [{ event: 'failed' as const, channel: 'ops', ok: true }];
    await store.recordRun(runAuditRow(failed, undefined, 'failed', { startedAt: '2026-11-02T00:00:00Z', finishedAt: '2026-11-02T00:01:00Z', error: 'boom', alerts }));
    expect(await store.previousRun(current)).toMatchObject({ run_id: failed.runId, status: 'failed' });
    await store.recordRun(runAuditRow(succeeded, undefined, 'succeeded', { startedAt: '2026-11-02T01:00:00Z', finishedAt: '2026-11-02T01:01:00Z' }));
    expect(await store.previousRun(current)).toMatchObject({ run_id: succeeded.runId, status: 'succeeded' });
    expect(await store.previousRun(succeeded)).toMatchObject({ run_id: failed.runId, status: 'failed' });
    const rows = await sql('SELECT "ALERTS" FROM "SCORELINE"."AUDIT_OLD"."SCORELINE_RUNS" WHERE "RUN_ID" = ?', [failed.runId]);
    expect(JSON.parse(String(rows[0].ALERTS))).toEqual(alerts);
  }, 120_000);
});

describe('through Temporal: a real dev server and worker, connection from the worker environment', () => {
  const PASSWORD_ENV = 'SCORELINE_TEST_SF_PASSWORD';
  let stack: Stack;
  let client: ScorelineClient;

  beforeAll(async () => {
    // What an operator sets on a worker: the connection as JSON, the password in its own variable.
    process.env.SCORELINE_CONNECTION_SNOWFLAKE = JSON.stringify({ kind: 'snowflake', account: 'fakesnow', username: 'scoreline', database: 'SCORELINE', schema: 'PUBLIC', access_url: emulator.endpoint, password_env: PASSWORD_ENV, options: { arrayBindingThreshold: 2 ** 31 - 1 } });
    process.env[PASSWORD_ENV] = 'secret-password-that-must-not-leak';
    ({ stack, client } = await startTestEnv(project));
  });

  afterAll(async () => {
    await stopTestEnv({ client, stack });
    delete process.env.SCORELINE_CONNECTION_SNOWFLAKE;
    delete process.env[PASSWORD_ENV];
  });

  async function run(raw: PipelineInput, date = DATE): Promise<RunResult> {
    const config = parsePipeline(raw, 'test');
    const handle = await client.startRun({ config, raw, date, trigger: 'test' });
    return client.wait(handle);
  }

  const raw = (over: Partial<PipelineInput> = {}): PipelineInput => ({
    name: 'churn-sf-temporal',
    source: { kind: 'snowflake', connection: 'snowflake', table: 'features', where: 'ds = {{ ds }}', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'snowflake', connection: 'snowflake', table: 'temporal_scores' },
    chunk_rows: CHUNK_ROWS,
    parallelism: 2,
    ...over,
  });

  it('scores, commits and audits; a rerun replaces; no secret in history or audit rows', async () => {
    const first = await run(raw());
    expect(first.error).toBeUndefined();
    expect(first).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS, chunks: ROWS / CHUNK_ROWS });
    const second = await run(raw({ model: 'churn-mlp@champion' }));
    expect(second.status).toBe('succeeded');
    const out = await sql(`SELECT customer_id, churn_probability, run_id FROM temporal_scores WHERE ds = ?`, [DATE]);
    expect(out).toHaveLength(ROWS);
    expect(new Set(out.map((r) => r.RUN_ID))).toEqual(new Set([second.runId]));
    await expectScoresMatch(out, 'churn-mlp');

    const runs = await sql(`SELECT status AS "S" FROM scoreline_runs WHERE run_id = ? ORDER BY updated_at`, [second.runId]);
    expect(runs.map((r) => r.S)).toEqual(['running', 'succeeded']);
    // Every text column (where a secret could land). fakesnow's server fails to answer `SELECT *` on this
    // table ("Request to Snowflake failed"): an emulator gap, not a Snowflake limit.
    const audit = JSON.stringify(await sql('SELECT run_id, workflow_id, pipeline, trigger, logical_date, model_name, model_version, model_sha256, status, output, error, alerts FROM scoreline_runs'));
    expect(audit).not.toContain('secret-password-that-must-not-leak');
    const history = JSON.stringify(await client.client.workflow.getHandle(second.workflowId, second.runId).fetchHistory());
    expect(history).not.toContain('secret-password-that-must-not-leak');
    expect(scratch(await tableNames())).toEqual([]);
  });

  it('shadow scoring writes the challenger to <table>_shadow, agreement to the audit row, and the profile to scoreline_run_profiles', async () => {
    const result = await run(raw({ name: 'churn-sf-shadow', sink: { kind: 'snowflake', connection: 'snowflake', table: 'shadow_scores' }, shadow: 'churn-mlp@champion' }));
    expect(result.error).toBeUndefined();
    expect(result.shadow!.output).toMatch(/SHADOW_SCORES_SHADOW/);
    const shadow = await sql(`SELECT customer_id, churn_probability, model_name FROM shadow_scores_shadow WHERE ds = ?`, [DATE]);
    expect(shadow).toHaveLength(ROWS);
    expect(new Set(shadow.map((r) => r.MODEL_NAME))).toEqual(new Set(['churn-mlp']));
    await expectScoresMatch(shadow, 'churn-mlp');
    await expectScoresMatch(await sql(`SELECT customer_id, churn_probability FROM shadow_scores WHERE ds = ?`, [DATE]), 'churn-gbt');
    const last = await new SnowflakeAuditStore(conn).lastSucceededRun('churn-sf-shadow', DATE);
    expect(last).toMatchObject({ run_id: result.runId, shadow_model: 'churn-mlp:1' });
    expect(JSON.parse(last!.shadow_agreement!)).toEqual(result.shadow!.agreement);
    expect(result.shadow!.agreement.rows_compared).toBe(ROWS);
    expect(result.drift?.error).toBeUndefined();
    expect(await sql(`SELECT column_name FROM scoreline_run_profiles WHERE run_id = ?`, [result.runId])).toHaveLength(34);
  });

  it('an error budget: rows with a NULL feature go to <table>_quarantine and the run succeeds; over the budget nothing is committed', async () => {
    // features_nulls (above): f05 is NULL where customer_id % 100 = 7.
    const source = { kind: 'snowflake' as const, connection: 'snowflake', table: 'features_nulls', key: ['customer_id'] };
    const sink = { kind: 'snowflake' as const, connection: 'snowflake', table: 'q_scores' };
    const bad = ROWS / 100;
    const ok = await run(raw({ name: 'churn-sf-quarantine', source, sink, max_rejected: '5%' }));
    expect(ok.error).toBeUndefined();
    expect(ok).toMatchObject({ status: 'succeeded', rowsOut: ROWS - bad, rowsQuarantined: bad, quarantine: { rows: bad } });
    expect(ok.quarantine!.output).toMatch(/Q_SCORES_QUARANTINE \(ds=/);
    const out = await sql(`SELECT customer_id FROM q_scores WHERE ds = ?`, [DATE]);
    expect(out).toHaveLength(ROWS - bad);
    expect(out.filter((r) => Number(r.CUSTOMER_ID) % 100 === 7)).toEqual([]);
    const q = await sql(`SELECT customer_id, rejected_column, reason, run_id FROM q_scores_quarantine WHERE ds = ? ORDER BY customer_id`, [DATE]);
    expect(q).toHaveLength(bad);
    for (const r of q) {
      expect(Number(r.CUSTOMER_ID) % 100).toBe(7);
      expect(r).toMatchObject({ REJECTED_COLUMN: 'f05', REASON: 'NULL (features.nulls: error)', RUN_ID: ok.runId });
    }
    expect(Number((await new SnowflakeAuditStore(conn).lastSucceededRun('churn-sf-quarantine', DATE))?.rows_quarantined)).toBe(bad);

    const over = await run(raw({ name: 'churn-sf-quarantine', source, sink, max_rejected: 1 }));
    expect(over.status).toBe('failed');
    expect(over.error).toMatch(new RegExp(`^score failed: ${bad} rows could not be scored \\(1\\.0% of ${ROWS}\\), over the error budget max_rejected: 1 rows; nothing was committed\\. First: chunk \\d+ .*column "f05": NULL`));
    expect(new Set((await sql(`SELECT run_id FROM q_scores WHERE ds = ?`, [DATE])).map((r) => r.RUN_ID))).toEqual(new Set([ok.runId]));
    expect(new Set((await sql(`SELECT run_id FROM q_scores_quarantine WHERE ds = ?`, [DATE])).map((r) => r.RUN_ID))).toEqual(new Set([ok.runId]));
    expect(scratch(await tableNames())).toEqual([]);

    // After a fix (here: impute f05), `--only-quarantined` scores just those rows and appends them once.
    const fixed = raw({ name: 'churn-sf-quarantine', source, sink, features: { nulls: 'impute', impute_values: { f05: 0 } } });
    const rescore = await client.wait(await client.startRun({ config: parsePipeline(fixed, 'test'), raw: fixed, date: DATE, trigger: 'test', onlyQuarantined: ok.runId }));
    expect(rescore.error).toBeUndefined();
    expect(rescore).toMatchObject({ status: 'succeeded', rescoreOf: ok.runId, rowsIn: bad, rowsOut: bad, rowsQuarantined: 0 });
    const all = await sql(`SELECT customer_id, run_id FROM q_scores WHERE ds = ?`, [DATE]);
    expect(all).toHaveLength(ROWS);
    expect(new Set(all.map((r) => r.CUSTOMER_ID)).size).toBe(ROWS);
    expect(all.filter((r) => r.RUN_ID === rescore.runId).every((r) => Number(r.CUSTOMER_ID) % 100 === 7)).toBe(true);
    expect(await sql(`SELECT customer_id FROM q_scores_quarantine WHERE ds = ?`, [DATE])).toEqual([]);
  });

  it('a missing table fails the run at plan time with the table named, and commits nothing', async () => {
    const result = await run(raw({ source: { kind: 'snowflake', connection: 'snowflake', table: 'missing_features', key: ['customer_id'] }, sink: { kind: 'snowflake', connection: 'snowflake', table: 'never_written_temporal' } }));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/SCORELINE\.PUBLIC\.MISSING_FEATURES: does not exist/);
    expect(await tableNames()).not.toContain('NEVER_WRITTEN_TEMPORAL');
  });
});
