/**
 * Bad input, Snowflake and BigQuery sources: one row per case of the matrix in docs/reliability.md,
 * against the real local emulators (fakesnow, bqemulator) through the official SDKs, driven by the run
 * steps of src/run/batch.ts and the connector registry the worker uses (as snowflake.test.ts and
 * bigquery.test.ts do). Every failing case targets an output table that already holds a trusted run of
 * the date and asserts: (a) the error names what and where (table, column, connection), (b) the output
 * table is unchanged and no snapshot or staging table is left, (c) the audit row is `failed` with the
 * same error. Duplicate and NULL keys fail the run at plan time (default `source.key_check: strict`).
 * Odd but valid input (hostile and 1 MiB key values, extra columns, duplicate and NULL keys under
 * `key_check: allow`) succeeds with every row exactly once and every key exactly as stored.
 *
 * Auth failure: the emulators accept any credentials, so a small server that refuses them the way each
 * service does (test/helpers/bad-input.ts) stands in; source on it, output and audit in Parquet.
 *
 * Already covered elsewhere (not repeated): missing table, injection in table names, an output table
 * whose schema conflicts, an unreachable account, a crash between staging and commit — snowflake.test.ts
 * and bigquery.test.ts, "failures give a clear error and commit nothing". Empty input, a missing column
 * and NULL features (Snowflake) are there too, checked for the message only; the rows here add the
 * output-unchanged and audit checks.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BigQuery } from '@google-cloud/bigquery';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConnectors } from '../../connectors';
import { bigQueryClient } from '../../connectors/bigquery';
import { closeSnowflakeConnections, runSnowflake } from '../../connectors/snowflake';
import { parsePipeline, type PipelineConfig, type PipelineInput } from '../../src/config/pipeline';
import { Connections, type BigQueryConnection, type SnowflakeConnection } from '../../src/connections';
import { seedBigQueryTable } from '../../src/dev/bq-seed';
import { emulatorConnection, startBqEmulator, type BqEmulator } from '../../src/dev/bqemulator';
import { fakesnowConnection, startFakesnow, type Fakesnow } from '../../src/dev/fakesnow';
import { seedSnowflakeTable } from '../../src/dev/snowflake-seed';
import { ScorelineError } from '../../src/errors';
import type { RunContext } from '../../src/run/context';
import { SessionCache } from '../../src/scoring/session';
import { HOSTILE_NAME, HOSTILE_VALUES, HUGE_STRING, runSteps, startRefusingServer, testRun, type RefusingServer } from '../helpers/bad-input';
import { cleanup, copyModels, FEATURES, query, REPO, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const ROWS = 1_000;
const CHUNK_ROWS = 500;
const SECRET = 'secret-password-that-must-not-leak';
/** The seeded data's first customer_id of DATE (src/demo/generate-data.ts: days since epoch × 1e9 + row). */
const FIRST_ID = (Date.UTC(2026, 10, 1) / 86_400_000) * 1_000_000_000;

/** A message as a pattern that matches it exactly. */
const exactly = (message: string) => new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

/**
 * The key check's error for the `features_dupkeys` tables: the first three keys twice each, one NULL key
 * (`input` as the error names the table, `from` as the query it suggests names it).
 */
const dupKeysError = (input: string, from: string) =>
  exactly(
    `plan failed: ${input}: source.key (customer_id) must identify one row each, but the input for ${DATE} has 3 duplicate keys on 6 rows ` +
      `(value "${FIRST_ID}" on 2 rows, value "${FIRST_ID + 1}" on 2 rows, value "${FIRST_ID + 2}" on 2 rows) and 1 row with a NULL key. ` +
      `Fix the source or the key (to list them: SELECT customer_id, COUNT(*) FROM ${from} GROUP BY customer_id HAVING COUNT(*) > 1 OR customer_id IS NULL), ` +
      'or set source.key_check: allow to score every row as it is',
  );

let project: string;
let refusing: RefusingServer;
const sessions = new SessionCache({ intraOpThreads: 1 });

function contextWith(given: Record<string, SnowflakeConnection | BigQueryConnection>): RunContext {
  return {
    projectDir: project,
    pipelinesDir: join(project, 'pipelines'),
    modelsDir: join(project, 'models'),
    connectors: createConnectors({ baseDir: project, connections: new Connections({ baseDir: project, given }) }),
    sessions,
    workerId: 'test:1',
  };
}

/** The Parquet audit rows of a run (where the auth-failure cases write theirs). */
async function parquetAudit(dir: string, runId: string) {
  return query(`SELECT status, error FROM read_parquet('${join(project, dir, 'scoreline_runs', '*.parquet')}', union_by_name = true) WHERE run_id = '${runId}' ORDER BY updated_at`);
}

beforeAll(async () => {
  project = tempProject('scoreline-bad-wh-');
  copyModels(project);
  refusing = await startRefusingServer();
});

afterAll(async () => {
  await refusing?.close();
  await sessions.close();
  if (project) cleanup(project);
});

/** What a warehouse describe block needs to run the shared assertions. */
interface Warehouse {
  ctx: RunContext;
  pipeline(over?: Partial<PipelineInput>): PipelineConfig;
  /** Run id → row count of the trusted output table for DATE. */
  committed(): Promise<Record<string, number>>;
  /** Snapshot and staging tables left behind. */
  scratch(): Promise<string[]>;
  /** The run's audit rows in the warehouse, oldest first. */
  audit(runId: string): Promise<{ status: string; error: string | null }[]>;
}

interface FailureCase {
  case: string;
  /** Creates the bad input; returns the pipeline fields pointing at it. */
  setup: () => Promise<Partial<PipelineInput>>;
  error: RegExp;
}

/** Runs a failing case and checks (a) message, (b) nothing committed, (c) audit `failed`. */
async function expectFailure(w: Warehouse, trusted: Record<string, number>, c: FailureCase): Promise<void> {
  const result = await runSteps(w.ctx, w.pipeline(await c.setup()), DATE);
  expect(result.status, result.error).toBe('failed');
  expect(result.error).toMatch(c.error);
  expect(await w.committed()).toEqual(trusted);
  expect(await w.scratch()).toEqual([]);
  const audit = await w.audit(result.runId);
  expect(audit.at(-1)).toEqual({ status: 'failed', error: result.error });
}

/** The source on a server that refuses the credentials; output and audit in Parquet. */
async function expectAuthFailure(w: Warehouse, source: PipelineInput['source'], error: RegExp): Promise<void> {
  const sink = `out/refused_${source.kind}`;
  const config = w.pipeline({ source, sink: { kind: 'parquet', path: sink }, audit: undefined });
  const result = await runSteps(w.ctx, config, DATE);
  expect(result.status).toBe('failed');
  expect(result.error).toMatch(error);
  expect(result.error).not.toContain(SECRET);
  expect(existsSync(join(project, sink))).toBe(false);
  const audit = await parquetAudit('out', result.runId);
  expect(audit.at(-1)).toEqual({ status: 'failed', error: result.error });
  expect(JSON.stringify(audit)).not.toContain(SECRET);
  // Refused credentials are refused again: not retryable, so a worker's activity fails at once instead
  // of retrying the plan with backoff.
  const err = await w.ctx.connectors.source(config).plan({ config, run: testRun(config, DATE), columns: ['customer_id'], chunkRows: 10 }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ScorelineError);
  expect((err as ScorelineError).retryable).toBe(false);
}

describe('Snowflake source (fakesnow)', () => {
  let emulator: Fakesnow;
  let conn: SnowflakeConnection;
  let w: Warehouse;
  let trusted: Record<string, number>;
  const sql = (text: string, binds: (string | null)[] = []) => runSnowflake(conn, text, binds);
  /** `features` as a new table, columns as listed (SQL expressions over `features`). */
  const derive = (table: string, columns: string[], tail = '') => sql(`CREATE OR REPLACE TABLE ${table} AS SELECT ${columns.join(', ')} FROM features ${tail}`);
  const featureList = (replace: Record<string, string> = {}) => FEATURES.map((f) => replace[f] ?? f);
  const source = (table: string, key = ['customer_id']): PipelineInput['source'] => ({ kind: 'snowflake', connection: 'snowflake', table, key });

  beforeAll(async () => {
    emulator = await startFakesnow({ projectDir: project, toolsDir: REPO });
    conn = emulator.connection;
    await seedSnowflakeTable({ connection: conn, table: 'features', dates: [DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'sf') });
    const refused = fakesnowConnection(refusing.url, 'snowflake-refused');
    refused.options.password = SECRET;
    w = {
      ctx: contextWith({ snowflake: conn, 'snowflake-refused': refused }),
      pipeline: (over = {}) =>
        parsePipeline(
          {
            name: 'churn-sf-bad',
            source: { kind: 'snowflake', connection: 'snowflake', table: 'features', where: 'ds = {{ ds }}', key: ['customer_id'] },
            model: 'churn-gbt@champion',
            sink: { kind: 'snowflake', connection: 'snowflake', table: 'churn_scores' },
            chunk_rows: CHUNK_ROWS,
            ...over,
          },
          'test',
        ),
      committed: async () => Object.fromEntries((await sql(`SELECT run_id AS "R", COUNT(*) AS "N" FROM churn_scores WHERE ds = ? GROUP BY 1`, [DATE])).map((r) => [String(r.R), Number(r.N)])),
      scratch: async () =>
        (await sql(`SELECT TABLE_NAME AS "T" FROM "SCORELINE".INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'PUBLIC'`)).map((r) => String(r.T)).filter((t) => /^SCORELINE_(SNAPSHOT|STAGE)/.test(t)),
      audit: async (runId) => (await sql(`SELECT status AS "S", error AS "E" FROM scoreline_runs WHERE run_id = ? ORDER BY updated_at`, [runId])).map((r) => ({ status: String(r.S), error: r.E as string | null })),
    };
    const good = await runSteps(w.ctx, w.pipeline(), DATE);
    expect(good.status, good.error).toBe('succeeded');
    trusted = await w.committed();
    expect(trusted).toEqual({ [good.runId]: ROWS });
  });

  afterAll(async () => {
    await closeSnowflakeConnections();
    await emulator?.stop();
  });

  const FAILURES: FailureCase[] = [
    {
      case: 'empty input (a table with 0 rows)',
      setup: async () => {
        await derive('features_empty', ['customer_id', ...FEATURES, 'ds'], 'WHERE 1 = 0');
        return { source: source('features_empty') };
      },
      error: /plan failed: no input rows for churn-sf-bad on 2026-11-01: snowflake:\/\/fakesnow\/SCORELINE\.PUBLIC\.FEATURES_EMPTY holds 0 rows \(set source\.on_empty: succeed/,
    },
    {
      case: 'missing feature column',
      setup: async () => {
        await derive('features_no_f31', ['customer_id', ...FEATURES.filter((f) => f !== 'f31'), 'ds']);
        return { source: source('features_no_f31') };
      },
      error: /plan failed: snowflake table SCORELINE\.PUBLIC\.FEATURES_NO_F31: missing column\(s\) "f31" needed by the model or key \(it has: /,
    },
    {
      case: 'wrong type: text in a feature column (one value a 1 MiB string)',
      setup: async () => {
        await derive('features_text', ['customer_id', ...featureList({ f05: 'CAST(f05 AS VARCHAR) AS f05' }), 'ds']);
        await sql(`UPDATE features_text SET f05 = ? WHERE customer_id = (SELECT MIN(customer_id) FROM features_text)`, [HUGE_STRING]);
        return { source: source('features_text') };
      },
      error: /plan failed: snowflake:\/\/fakesnow\/SCORELINE\.PUBLIC\.FEATURES_TEXT: feature column\(s\) "f05" \(VARCHAR\) are not numeric; model churn-gbt:1 needs numbers/,
    },
    {
      case: 'NULL features (default policy: error)',
      setup: async () => {
        await derive('features_nulls', ['customer_id', ...featureList({ f05: 'CASE WHEN MOD(customer_id, 100) = 7 THEN NULL ELSE f05 END AS f05' }), 'ds']);
        return { source: source('features_nulls') };
      },
      error: /run failed: chunk \d+ \(SCORELINE\.PUBLIC\.SCORELINE_SNAPSHOT_\w+ rows \d+\.\.\d+, a snapshot of snowflake table features_nulls\): feature column "f05" has \d+ NULL value\(s\) \(first at row \d+ of the chunk\); features\.nulls is "error"/,
    },
  ];

  it.each(FAILURES)('$case', (c) => expectFailure(w, trusted, c));

  it('auth failure (credentials refused): names account and connection, leaks no secret', async () => {
    await expectAuthFailure(
      w,
      { kind: 'snowflake', connection: 'snowflake-refused', table: 'features', key: ['customer_id'] },
      /plan failed: cannot connect to Snowflake account fakesnow \(connection "snowflake-refused"\): Incorrect username or password was specified\. \(check the credentials in the worker's environment\)/,
    );
    expect(refusing.requests.filter((r) => !r.startsWith('POST /session/v1/login-request'))).toEqual([]);
  });

  it('SQL injection in column and schema names is refused when the pipeline is validated', async () => {
    const tables = await sql(`SELECT COUNT(*) AS "N" FROM "SCORELINE".INFORMATION_SCHEMA.TABLES`);
    expect(() => w.pipeline({ source: source('features', [HOSTILE_NAME]) })).toThrow(`test: source.key.0: expected a column name (letters, digits, _; not starting with a digit), got "${HOSTILE_NAME}"`);
    expect(() => w.pipeline({ audit: { kind: 'snowflake', connection: 'snowflake', schema: 'AUDIT"; DROP SCHEMA PUBLIC; --' } })).toThrow(/^test: audit\.schema: expected a schema or dataset name/);
    expect(await sql(`SELECT COUNT(*) AS "N" FROM "SCORELINE".INFORMATION_SCHEMA.TABLES`)).toEqual(tables);
    expect(await w.committed()).toEqual(trusted);
  });

  it('key values with quotes, comment markers, newlines and a 1 MiB string come back unchanged (extra columns ignored)', async () => {
    await derive('features_strkey', [`'c' || CAST(customer_id AS VARCHAR) AS account`, 'customer_id', ...FEATURES, 'segment', 'ds']);
    const ids = (await sql(`SELECT customer_id AS "ID" FROM features ORDER BY customer_id LIMIT ${HOSTILE_VALUES.length + 1}`)).map((r) => String(r.ID));
    const values = [...HOSTILE_VALUES, HUGE_STRING];
    for (const [i, v] of values.entries()) await sql(`UPDATE features_strkey SET account = ? WHERE customer_id = ?`, [v, ids[i]]);
    const result = await runSteps(w.ctx, w.pipeline({ source: source('features_strkey', ['account']), sink: { kind: 'snowflake', connection: 'snowflake', table: 'strkey_scores' } }), DATE);
    expect(result.status, result.error).toBe('succeeded');
    const keys = async (table: string) => (await sql(`SELECT account AS "A" FROM ${table}`)).map((r) => String(r.A)).sort();
    const out = await keys('strkey_scores');
    expect(out).toHaveLength(ROWS);
    expect(out).toEqual(await keys('features_strkey'));
    for (const v of values) expect(out.filter((k) => k === v), v.slice(0, 40)).toHaveLength(1);
    const [row] = await sql(`SELECT * FROM strkey_scores LIMIT 1`);
    expect(Object.keys(row).sort()).toEqual(['ACCOUNT', 'CHURN_LABEL', 'CHURN_PROBABILITY', 'DS', 'MODEL_NAME', 'MODEL_SHA256', 'MODEL_VERSION', 'RUN_ID', 'SCORED_AT']);
    // The tables the hostile values name are still there, whole.
    expect(await sql(`SELECT COUNT(*) AS "N" FROM features`)).toEqual([{ N: String(ROWS) }]);
    expect(await w.committed()).toEqual(trusted);
  });

  /** `features` with its first three keys twice and one NULL key: ROWS + 3 rows. */
  const dupKeys = async (table: string) => {
    await derive(table, ['customer_id', ...FEATURES, 'ds']);
    await sql(`INSERT INTO ${table} SELECT customer_id, ${FEATURES.join(', ')}, ds FROM features ORDER BY customer_id LIMIT 3`);
    await sql(`UPDATE ${table} SET customer_id = NULL WHERE customer_id = (SELECT MAX(customer_id) FROM features)`);
  };
  const keyShape = (table: string) => sql(`SELECT COUNT(*) AS "N", COUNT(customer_id) AS "K", COUNT(DISTINCT customer_id) AS "D" FROM ${table}`);

  it('duplicate keys and NULL keys (default source.key_check: strict): refused at plan time, counted, with examples and a query', async () => {
    await expectFailure(w, trusted, {
      case: 'duplicate and NULL keys',
      setup: async () => {
        await dupKeys('features_dupkeys');
        expect(await keyShape('features_dupkeys')).toEqual([{ N: String(ROWS + 3), K: String(ROWS + 2), D: String(ROWS - 1) }]);
        return { source: source('features_dupkeys') };
      },
      error: dupKeysError('snowflake://fakesnow/SCORELINE.PUBLIC.FEATURES_DUPKEYS', 'SCORELINE.PUBLIC.FEATURES_DUPKEYS'),
    });
  });

  it('duplicate keys and NULL keys with source.key_check: allow: scored once per input row, never duplicated further', async () => {
    await dupKeys('features_dupkeys_allowed');
    const input = await keyShape('features_dupkeys_allowed');
    expect(input).toEqual([{ N: String(ROWS + 3), K: String(ROWS + 2), D: String(ROWS - 1) }]);
    const allowed = { ...source('features_dupkeys_allowed'), key_check: 'allow' } as PipelineInput['source'];
    const result = await runSteps(w.ctx, w.pipeline({ source: allowed, sink: { kind: 'snowflake', connection: 'snowflake', table: 'dupkey_scores' } }), DATE);
    expect(result.status, result.error).toBe('succeeded');
    expect(await keyShape('dupkey_scores')).toEqual(input);
  });
});

describe('BigQuery source (bqemulator)', () => {
  let emulator: BqEmulator;
  let conn: BigQueryConnection;
  let bq: BigQuery;
  let w: Warehouse;
  let trusted: Record<string, number>;
  const sql = async <T = Record<string, unknown>>(text: string, params?: Record<string, unknown>): Promise<T[]> => (await bq.query({ query: text, params }))[0] as T[];
  const source = (table: string, key = ['customer_id']): PipelineInput['source'] => ({ kind: 'bigquery', connection: 'bigquery', table: `scoreline.${table}`, key });
  const derive = (table: string, select: string) => sql(`CREATE OR REPLACE TABLE \`scoreline-local.scoreline.${table}\` AS ${select}`);

  beforeAll(async () => {
    emulator = await startBqEmulator({ projectDir: REPO });
    conn = emulator.connection;
    bq = bigQueryClient(conn);
    await seedBigQueryTable({ connection: conn, table: 'scoreline.features', dates: [DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'bq') });
    w = {
      ctx: contextWith({ bigquery: conn, 'bigquery-refused': emulatorConnection(refusing.url, 'scoreline-local', 'scoreline', 'bigquery-refused') }),
      pipeline: (over = {}) =>
        parsePipeline(
          {
            name: 'churn-bq-bad',
            source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', where: 'ds = {{ ds }}', key: ['customer_id'] },
            model: 'churn-gbt@champion',
            sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.churn_scores' },
            chunk_rows: CHUNK_ROWS,
            ...over,
          },
          'test',
        ),
      committed: async () =>
        Object.fromEntries((await sql<{ run_id: string; n: number }>('SELECT run_id, COUNT(*) AS n FROM `scoreline-local.scoreline.churn_scores` WHERE ds = @ds GROUP BY run_id', { ds: DATE })).map((r) => [r.run_id, Number(r.n)])),
      scratch: async () => (await bq.dataset('scoreline').getTables())[0].map((t) => t.id!).filter((t) => t.startsWith('_scoreline')),
      audit: (runId) => sql('SELECT status, error FROM `scoreline-local.scoreline.scoreline_runs` WHERE run_id = @id ORDER BY updated_at', { id: runId }),
    };
    const good = await runSteps(w.ctx, w.pipeline(), DATE);
    expect(good.status, good.error).toBe('succeeded');
    trusted = await w.committed();
    expect(trusted).toEqual({ [good.runId]: ROWS });
  });

  afterAll(async () => {
    await emulator?.stop();
  });

  const FAILURES: FailureCase[] = [
    {
      case: 'empty input (a table with 0 rows)',
      setup: async () => {
        await derive('features_empty', 'SELECT * FROM `scoreline-local.scoreline.features` WHERE FALSE');
        return { source: source('features_empty') };
      },
      error: /plan failed: no input rows for churn-bq-bad on 2026-11-01: bigquery:\/\/scoreline-local\.scoreline\.features_empty holds 0 rows \(set source\.on_empty: succeed/,
    },
    {
      case: 'missing feature column',
      setup: async () => {
        await derive('features_no_f31', 'SELECT * EXCEPT (f31) FROM `scoreline-local.scoreline.features`');
        return { source: source('features_no_f31') };
      },
      error: /plan failed: bigquery:\/\/scoreline-local\.scoreline\.features_no_f31: missing column\(s\) "f31" needed by the model or key \(table has: /,
    },
    {
      case: 'wrong type: text in a feature column (one value a 1 MiB string)',
      setup: async () => {
        await derive('features_text', 'SELECT * REPLACE (CAST(f05 AS STRING) AS f05) FROM `scoreline-local.scoreline.features`');
        await sql('UPDATE `scoreline-local.scoreline.features_text` SET f05 = @v WHERE customer_id = (SELECT MIN(customer_id) FROM `scoreline-local.scoreline.features_text`)', { v: HUGE_STRING });
        return { source: source('features_text') };
      },
      error: /plan failed: bigquery:\/\/scoreline-local\.scoreline\.features_text: feature column\(s\) "f05" \(STRING\) are not numeric; model churn-gbt:1 needs numbers/,
    },
    {
      case: 'NULL features (default policy: error)',
      setup: async () => {
        await derive('features_nulls', 'SELECT * REPLACE (IF(MOD(customer_id, 100) = 7, NULL, f05) AS f05) FROM `scoreline-local.scoreline.features`');
        return { source: source('features_nulls') };
      },
      error: /run failed: chunk \d+ \(scoreline-local\.scoreline\._scoreline_snapshot_\w+ rows \d+\.\.\d+, a snapshot of bigquery table scoreline\.features_nulls\): feature column "f05" has \d+ NULL value\(s\) \(first at row \d+ of the chunk\); features\.nulls is "error"/,
    },
  ];

  it.each(FAILURES)('$case', (c) => expectFailure(w, trusted, c));

  it('auth failure (HTTP 401, credentials refused): names the table and the cause, leaks no secret', async () => {
    const before = refusing.requests.length;
    await expectAuthFailure(
      w,
      { kind: 'bigquery', connection: 'bigquery-refused', table: 'scoreline.features', key: ['customer_id'] },
      /plan failed: bigquery:\/\/scoreline-local\.scoreline\.features: cannot read the table's schema: Invalid Credentials \(HTTP 401: BigQuery refused the credentials; check the connection's credentials in the worker's environment\)/,
    );
    // One metadata request, refused; no query or load job was attempted (the DELETE is the best-effort
    // snapshot clean-up at the end of the run).
    expect(refusing.requests.slice(before).filter((r) => r.startsWith('POST '))).toEqual([]);
  });

  it('SQL injection in column and dataset names is refused when the pipeline is validated', async () => {
    const tables = (await bq.dataset('scoreline').getTables())[0].map((t) => t.id).sort();
    expect(() => w.pipeline({ source: source('features', [HOSTILE_NAME]) })).toThrow(`test: source.key.0: expected a column name (letters, digits, _; not starting with a digit), got "${HOSTILE_NAME}"`);
    expect(() => w.pipeline({ audit: { kind: 'bigquery', connection: 'bigquery', schema: 'audit`; DROP SCHEMA scoreline; --' } })).toThrow(/^test: audit\.schema: expected a schema or dataset name/);
    expect((await bq.dataset('scoreline').getTables())[0].map((t) => t.id).sort()).toEqual(tables);
    expect(await w.committed()).toEqual(trusted);
  });

  it('key values with quotes, comment markers, newlines and a 1 MiB string come back unchanged (extra columns ignored)', async () => {
    await derive('features_strkey', "SELECT CONCAT('c', CAST(customer_id AS STRING)) AS account, * FROM `scoreline-local.scoreline.features`");
    const ids = (await sql<{ customer_id: number }>(`SELECT customer_id FROM \`scoreline-local.scoreline.features\` ORDER BY customer_id LIMIT ${HOSTILE_VALUES.length + 1}`)).map((r) => r.customer_id);
    const values = [...HOSTILE_VALUES, HUGE_STRING];
    for (const [i, v] of values.entries()) await sql('UPDATE `scoreline-local.scoreline.features_strkey` SET account = @v WHERE customer_id = @id', { v, id: ids[i] });
    const result = await runSteps(w.ctx, w.pipeline({ source: source('features_strkey', ['account']), sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.strkey_scores' } }), DATE);
    expect(result.status, result.error).toBe('succeeded');
    const keys = async (table: string) => (await sql<{ account: string }>(`SELECT account FROM \`scoreline-local.scoreline.${table}\``)).map((r) => r.account).sort();
    const out = await keys('strkey_scores');
    expect(out).toHaveLength(ROWS);
    expect(out).toEqual(await keys('features_strkey'));
    for (const v of values) expect(out.filter((k) => k === v), v.slice(0, 40)).toHaveLength(1);
    const [meta] = await bq.dataset('scoreline').table('strkey_scores').getMetadata();
    expect(meta.schema.fields.map((f: { name: string }) => f.name).sort()).toEqual(['account', 'churn_label', 'churn_probability', 'ds', 'model_name', 'model_sha256', 'model_version', 'run_id', 'scored_at']);
    // The tables the hostile values name are still there, whole.
    expect(await sql('SELECT COUNT(*) AS n FROM `scoreline-local.scoreline.features`')).toEqual([{ n: ROWS }]);
    expect(await w.committed()).toEqual(trusted);
  });

  /** `features` with its first three keys twice and one NULL key: ROWS + 3 rows. */
  const dupKeys = async (table: string) => {
    await derive(table, 'SELECT * FROM `scoreline-local.scoreline.features` UNION ALL (SELECT * FROM `scoreline-local.scoreline.features` ORDER BY customer_id LIMIT 3)');
    await sql(`UPDATE \`scoreline-local.scoreline.${table}\` SET customer_id = NULL WHERE customer_id = (SELECT MAX(customer_id) FROM \`scoreline-local.scoreline.features\`)`);
  };
  const keyShape = (table: string) => sql(`SELECT COUNT(*) AS n, COUNT(customer_id) AS k, COUNT(DISTINCT customer_id) AS d FROM \`scoreline-local.scoreline.${table}\``);

  it('duplicate keys and NULL keys (default source.key_check: strict): refused at plan time, counted, with examples and a query', async () => {
    await expectFailure(w, trusted, {
      case: 'duplicate and NULL keys',
      setup: async () => {
        await dupKeys('features_dupkeys');
        expect(await keyShape('features_dupkeys')).toEqual([{ n: ROWS + 3, k: ROWS + 2, d: ROWS - 1 }]);
        return { source: source('features_dupkeys') };
      },
      error: dupKeysError('bigquery://scoreline-local.scoreline.features_dupkeys', '`scoreline-local.scoreline.features_dupkeys`'),
    });
  });

  it('duplicate keys and NULL keys with source.key_check: allow: scored once per input row, never duplicated further', async () => {
    await dupKeys('features_dupkeys_allowed');
    const input = await keyShape('features_dupkeys_allowed');
    expect(input).toEqual([{ n: ROWS + 3, k: ROWS + 2, d: ROWS - 1 }]);
    const allowed = { ...source('features_dupkeys_allowed'), key_check: 'allow' } as PipelineInput['source'];
    const result = await runSteps(w.ctx, w.pipeline({ source: allowed, sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.dupkey_scores' } }), DATE);
    expect(result.status, result.error).toBe('succeeded');
    expect(await keyShape('dupkey_scores')).toEqual(input);
  });
});
