/**
 * Chaos: the warehouse connection drops in the middle of a run's statements. A TCP proxy that reads HTTP
 * (test/helpers/chaos.ts CuttingProxy) sits between the worker's Snowflake SDK and the Snowflake emulator
 * (fakesnow, from PyPI, through test/emulators/fakesnow_server.py) and resets the connection while chosen
 * statements are on their way: two chunks' staging INSERTs, the commit's DELETE of the date, its
 * INSERT … SELECT into the output, and its COMMIT — the last one held for a moment first, while this test
 * reads the output table over a connection of its own. The run goes through the real Temporal dev server
 * and the dev stack's worker, which has the connection from its environment like a deployment.
 *
 * The run must succeed with each input row exactly once in the output table (the date's earlier rows
 * replaced), no run-scoped staging or snapshot tables left, audit rows ending in `succeeded`, and while the
 * commit's transaction was open and its connection about to drop, a reader saw only the earlier rows.
 *
 * What is dropped in the first test is a request on its way in: the server never ran that statement, and
 * the SDK sent it again (same request id) on a new connection. A connection lost after the server ran a
 * statement but before its answer arrived relies on Snowflake running a retried request id once; fakesnow
 * runs it again. The second test shows what Scoreline does when a warehouse applies a staging INSERT twice
 * that way: the commit's check of staged rows per chunk refuses it and the run fails, committing nothing
 * (docs/reliability.md).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSnowflakeConnections, runSnowflake } from '../../connectors/snowflake';
import { ScorelineClient } from '../../src/client';
import { configureLogging } from '../../src/obs/log';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { startFakesnow, type Fakesnow } from '../../src/dev/fakesnow';
import { seedSnowflakeTable } from '../../src/dev/snowflake-seed';
import type { Stack } from '../../src/dev/stack';
import { activityOutcomes, CuttingProxy } from '../helpers/chaos';
import { cleanup, copyModels, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-12-24';
const ROWS = 4_000;
const CHUNK_ROWS = 1_000;
const EARLIER_ROWS = 10;
const PASSWORD_ENV = 'SCORELINE_TEST_CHAOS_SF_PASSWORD';

let project: string;
let emulator: Fakesnow;
let proxy: CuttingProxy;
let stack: Stack;
let client: ScorelineClient;

/** Straight to the emulator, not through the proxy. */
const sql = (text: string, binds: (string | null)[] = []) => runSnowflake(emulator.connection, text, binds);

const raw: PipelineInput = {
  name: 'chaos-sf',
  source: { kind: 'snowflake', connection: 'snowflake', table: 'features', where: 'ds = {{ ds }}', key: ['customer_id'] },
  model: 'churn-gbt@champion',
  sink: { kind: 'snowflake', connection: 'snowflake', table: 'chaos_scores' },
  audit: { kind: 'snowflake', connection: 'snowflake' },
  chunk_rows: CHUNK_ROWS,
  parallelism: 2,
};

beforeAll(async () => {
  // The failing run below logs its (expected) failure at warn; the assertions say what matters.
  configureLogging({ level: 'error' });
  project = tempProject('scoreline-chaos-sf-');
  copyModels(project);
  emulator = await startFakesnow({ projectDir: project, toolsDir: REPO });
  await seedSnowflakeTable({ connection: emulator.connection, table: 'features', dates: [DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'customers') });
  // The date as an earlier run left it in the output table: rows that are not in the input.
  await sql(
    'CREATE TABLE chaos_scores (customer_id NUMBER(38,0), churn_probability FLOAT, churn_label NUMBER(38,0), run_id VARCHAR, model_name VARCHAR, model_version VARCHAR, model_sha256 VARCHAR, scored_at TIMESTAMP_TZ, ds DATE)',
  );
  for (let i = 0; i < EARLIER_ROWS; i++) {
    await sql(`INSERT INTO chaos_scores VALUES (?, 0.5, 0, 'earlier-run', 'old', '0', '', CURRENT_TIMESTAMP(), CAST(? AS DATE))`, [String(9_000_000_000_000 + i), DATE]);
  }
  proxy = new CuttingProxy({ host: '127.0.0.1', port: emulator.port });
  const port = await proxy.listen();
  // What an operator sets on a worker: the connection as JSON (here pointing at the proxy), the password in its own variable.
  process.env.SCORELINE_CONNECTION_SNOWFLAKE = JSON.stringify({ kind: 'snowflake', account: 'fakesnow', username: 'scoreline', database: 'SCORELINE', schema: 'PUBLIC', access_url: `http://127.0.0.1:${port}`, password_env: PASSWORD_ENV, options: { arrayBindingThreshold: 2 ** 31 - 1 } });
  process.env[PASSWORD_ENV] = 'fakesnow-local';
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack });
  await proxy?.close();
  await closeSnowflakeConnections();
  await emulator?.stop();
  delete process.env.SCORELINE_CONNECTION_SNOWFLAKE;
  delete process.env[PASSWORD_ENV];
  if (project) cleanup(project);
});

describe('a warehouse connection dropped mid-stage and mid-commit', () => {
  it('the statements are sent again, the run commits every row once, and no partial output is ever visible', async () => {
    const started = Date.now();
    const seenDuringCommit: Array<Record<string, unknown>[]> = [];
    const stagingInsert = /^INSERT INTO "SCORELINE_STAGE_[A-Z0-9]+" \("CHUNK_INDEX"/;
    const commitDelete = /^DELETE FROM "CHAOS_SCORES" WHERE "DS" = /;
    const commitInsert = /^INSERT INTO "CHAOS_SCORES" \(.*\) SELECT .* FROM "SCORELINE_STAGE_[A-Z0-9]+" r JOIN/;
    proxy.arm({ name: 'staging INSERT of a chunk', matches: (r) => stagingInsert.test(r.sql ?? ''), times: 2 });
    proxy.arm({ name: 'commit DELETE', matches: (r) => commitDelete.test(r.sql ?? '') });
    proxy.arm({ name: 'commit INSERT … SELECT', matches: (r) => commitInsert.test(r.sql ?? '') });
    proxy.arm({
      name: 'commit COMMIT',
      matches: (r) => r.sql === 'COMMIT' && commitInsert.test(r.previousSql ?? ''),
      holdMs: 500,
      // The commit's transaction has deleted the date and inserted the new rows, uncommitted: a reader
      // must still see the earlier rows only.
      onMatch: async () => {
        seenDuringCommit.push(await sql(`SELECT run_id AS "R", COUNT(*) AS "N" FROM chaos_scores WHERE ds = ? GROUP BY 1`, [DATE]));
      },
    });

    const handle = await client.startRun({ config: parsePipeline(raw, 'chaos'), raw, date: DATE, trigger: 'test' });
    const result = await client.wait(handle);
    console.log(`warehouse chaos: ${JSON.stringify({ cuts: proxy.cuts.map((c) => c.rule), seconds: Math.round((Date.now() - started) / 1000), status: result.status, error: result.error })}`);
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS, chunks: ROWS / CHUNK_ROWS });

    // Every rule fired: the connection really dropped at each of those statements.
    expect(proxy.pending()).toEqual([]);
    expect(proxy.cuts.map((c) => c.rule).sort()).toEqual(['commit COMMIT', 'commit DELETE', 'commit INSERT … SELECT', 'staging INSERT of a chunk', 'staging INSERT of a chunk']);
    // No partial output: mid-commit, a reader saw the earlier rows and nothing of this run.
    expect(seenDuringCommit).toEqual([[{ R: 'earlier-run', N: String(EARLIER_ROWS) }]]);

    // Exactly once: the date holds the input's keys, once each, all from this run.
    const [out] = await sql(
      `SELECT COUNT(*) AS "N", COUNT(DISTINCT customer_id) AS "K", COUNT_IF(run_id <> ?) AS "OTHER",
              (SELECT COUNT(*) FROM features f WHERE f.ds = CAST(? AS DATE) AND f.customer_id NOT IN (SELECT customer_id FROM chaos_scores WHERE ds = CAST(? AS DATE))) AS "MISSING"
       FROM chaos_scores WHERE ds = CAST(? AS DATE)`,
      [result.runId, DATE, DATE, DATE],
    );
    expect(out).toEqual({ N: String(ROWS), K: String(ROWS), OTHER: '0', MISSING: '0' });
    // Run-scoped tables (snapshot, staging) are gone.
    const tables = await sql(`SELECT TABLE_NAME AS "T" FROM "SCORELINE".INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'PUBLIC'`);
    expect(tables.map((t) => String(t.T)).filter((t) => t.startsWith('SCORELINE_STAGE') || t.startsWith('SCORELINE_SNAPSHOT'))).toEqual([]);
    // Audit: running then succeeded; one chunk row per chunk.
    const runs = await sql(`SELECT status AS "S", rows_out AS "N" FROM scoreline_runs WHERE run_id = ? ORDER BY updated_at`, [result.runId]);
    expect(runs).toEqual([{ S: 'running', N: '0' }, { S: 'succeeded', N: String(ROWS) }]);
    const chunks = await sql(`SELECT chunk_index AS "I", rows_out AS "N" FROM scoreline_run_chunks WHERE run_id = ? ORDER BY chunk_index`, [result.runId]);
    expect(chunks.map((c) => [Number(c.I), Number(c.N)])).toEqual(Array.from({ length: ROWS / CHUNK_ROWS }, (_, i) => [i, CHUNK_ROWS]));
    // The SDK resent the statements itself: no step of the run needed a second attempt.
    const outcomes = await activityOutcomes(client.client, handle.workflowId, handle.firstExecutionRunId);
    console.log(`warehouse chaos activities: ${JSON.stringify(outcomes.filter((o) => o.attempts > 1))}`);
  }, 240_000);

  it('a statement the warehouse ran twice (its answer lost, resent) is caught before the commit: the run fails, nothing is committed', async () => {
    // fakesnow runs a resent request id again (Snowflake would not): a chunk's staging INSERT whose answer
    // is lost lands twice. The commit checks staged rows per chunk against what the chunk reported.
    await sql(
      'CREATE TABLE chaos_twice (customer_id NUMBER(38,0), churn_probability FLOAT, churn_label NUMBER(38,0), run_id VARCHAR, model_name VARCHAR, model_version VARCHAR, model_sha256 VARCHAR, scored_at TIMESTAMP_TZ, ds DATE)',
    );
    await sql(`INSERT INTO chaos_twice VALUES (1, 0.5, 0, 'earlier-run', 'old', '0', '', CURRENT_TIMESTAMP(), CAST(? AS DATE))`, [DATE]);
    const stagingInsert = /^INSERT INTO "SCORELINE_STAGE_[A-Z0-9]+" \("CHUNK_INDEX"/;
    proxy.arm({ name: 'answer to a staging INSERT', matches: (r) => stagingInsert.test(r.sql ?? ''), drop: 'response' });
    const twice: PipelineInput = { ...raw, name: 'chaos-sf-twice', sink: { kind: 'snowflake', connection: 'snowflake', table: 'chaos_twice' } };
    const handle = await client.startRun({ config: parsePipeline(twice, 'chaos'), raw: twice, date: DATE, trigger: 'test' });
    const result = await client.wait(handle);
    expect(proxy.pending()).toEqual([]);
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/commit failed: .*does not hold what the chunks reported: chunk \d+ \(expected 1000 rows, staged 2000\)/);
    // Nothing committed: the date still holds the earlier row only; staging and snapshot are gone; audit says failed.
    expect(await sql(`SELECT run_id AS "R", COUNT(*) AS "N" FROM chaos_twice GROUP BY 1`)).toEqual([{ R: 'earlier-run', N: '1' }]);
    const tables = await sql(`SELECT TABLE_NAME AS "T" FROM "SCORELINE".INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'PUBLIC'`);
    expect(tables.map((t) => String(t.T)).filter((t) => t.startsWith('SCORELINE_STAGE') || t.startsWith('SCORELINE_SNAPSHOT'))).toEqual([]);
    const runs = await sql(`SELECT status AS "S" FROM scoreline_runs WHERE run_id = ? ORDER BY updated_at`, [result.runId]);
    expect(runs.map((r) => r.S)).toEqual(['running', 'failed']);
    // The profile step ran alongside the commit; with the commit failed, its profile is removed again.
    expect(await sql(`SELECT COUNT(*) AS "N" FROM scoreline_run_profiles WHERE run_id = ?`, [result.runId])).toEqual([{ N: '0' }]);
  }, 240_000);
});
