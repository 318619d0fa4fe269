/**
 * Chaos: the BigQuery connection drops in the middle of a run. A TCP proxy that reads HTTP
 * (test/helpers/chaos.ts CuttingProxy) sits between the worker's BigQuery SDK and the BigQuery emulator
 * (bqemulator, from PyPI) and resets the connection on chosen requests: a chunk's staging upload (a load
 * job), the commit's MERGE on its way in, and the MERGE's answer on its way back (the statement ran; the
 * client cannot know) — the last one held for a moment first, while this test reads the output table over
 * a connection of its own. The run goes through the real Temporal dev server and the dev stack's worker,
 * which has the connection from its environment like a deployment.
 *
 * The run must succeed with each input row exactly once in the output table (the date's earlier rows
 * replaced), no run-scoped staging or snapshot tables left, audit rows ending in `succeeded`; and while
 * the MERGE was running, a reader saw only the earlier run's rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BigQuery } from '@google-cloud/bigquery';
import { join } from 'node:path';
import { bigQueryClient } from '../../connectors/bigquery';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { seedBigQueryTable } from '../../src/dev/bq-seed';
import { startBqEmulator, type BqEmulator } from '../../src/dev/bqemulator';
import type { Stack } from '../../src/dev/stack';
import { configureLogging } from '../../src/obs/log';
import { activityOutcomes, CuttingProxy } from '../helpers/chaos';
import { cleanup, copyModels, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-12-26';
const ROWS = 4_000;
const CHUNK_ROWS = 1_000;
const TOKEN_ENV = 'SCORELINE_TEST_CHAOS_BQ_TOKEN';

let project: string;
let emulator: BqEmulator;
let bq: BigQuery;
let proxy: CuttingProxy;
let stack: Stack;
let client: ScorelineClient;

/** Straight to the emulator, not through the proxy. */
async function sql<T = Record<string, unknown>>(query: string, params?: Record<string, unknown>): Promise<T[]> {
  const [rows] = await bq.query({ query, params });
  return rows as T[];
}

const raw = (model: string): PipelineInput => ({
  name: 'chaos-bq',
  source: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.features', where: 'ds = {{ ds }}', key: ['customer_id'] },
  model,
  sink: { kind: 'bigquery', connection: 'bigquery', table: 'scoreline.chaos_scores' },
  chunk_rows: CHUNK_ROWS,
  // One chunk at a time: bqemulator fails concurrent DML on one table (docs/warehouses.md).
  parallelism: 1,
});

async function run(model: string) {
  const config = raw(model);
  const handle = await client.startRun({ config: parsePipeline(config, 'chaos'), raw: config, date: DATE, trigger: 'test' });
  return { handle, result: await client.wait(handle) };
}

beforeAll(async () => {
  configureLogging({ level: 'error' });
  project = tempProject('scoreline-chaos-bq-');
  copyModels(project);
  emulator = await startBqEmulator({ projectDir: REPO });
  bq = bigQueryClient(emulator.connection);
  await seedBigQueryTable({ connection: emulator.connection, table: 'scoreline.features', dates: [DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'customers') });
  proxy = new CuttingProxy({ host: '127.0.0.1', port: Number(new URL(emulator.endpoint).port) });
  const port = await proxy.listen();
  process.env.SCORELINE_CONNECTION_BIGQUERY = JSON.stringify({ kind: 'bigquery', project: 'scoreline-local', dataset: 'scoreline', api_endpoint: `http://127.0.0.1:${port}`, access_token_env: TOKEN_ENV });
  process.env[TOKEN_ENV] = 'bqemulator-local';
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack });
  await proxy?.close();
  await emulator?.stop();
  delete process.env.SCORELINE_CONNECTION_BIGQUERY;
  delete process.env[TOKEN_ENV];
  if (project) cleanup(project);
});

describe('a BigQuery connection dropped mid-stage and mid-commit', () => {
  it('the requests are sent again, the run commits every row once, and no partial output is ever visible', async () => {
    const earlier = (await run('churn-gbt@champion')).result;
    expect(earlier.status).toBe('succeeded');
    const outputRuns = async () => sql<{ run_id: string; n: number }>('SELECT run_id, COUNT(*) AS n FROM `scoreline-local.scoreline.chaos_scores` WHERE ds = @ds GROUP BY run_id', { ds: DATE });
    const seen: Array<{ at: string; rows: Array<{ run_id: string; n: number }> }> = [];
    const look = (at: string) => async () => void seen.push({ at, rows: await outputRuns() });
    const started = Date.now();
    proxy.arm({ name: 'staging upload of a chunk', matches: (r) => r.method === 'POST' && r.path.startsWith('/upload/'), times: 2, onMatch: look('staging') });
    proxy.arm({ name: 'commit MERGE on its way in', matches: (r) => /^MERGE /.test(r.sql ?? ''), onMatch: look('MERGE sent') });
    // The MERGE runs, and its answer is lost: the client cannot know whether it ran, so it is sent again.
    proxy.arm({ name: 'commit MERGE, answer lost', matches: (r) => /^MERGE /.test(r.sql ?? ''), drop: 'response', holdMs: 500, onMatch: look('MERGE resent') });

    const { handle, result } = await run('churn-mlp@champion');
    console.log(`bigquery chaos: ${JSON.stringify({ cuts: proxy.cuts.map((c) => c.rule), seconds: Math.round((Date.now() - started) / 1000), status: result.status, error: result.error })}`);
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS, chunks: ROWS / CHUNK_ROWS });

    // Every rule fired: the connection really dropped at each of those requests.
    expect(proxy.pending()).toEqual([]);
    expect(proxy.cuts.map((c) => c.rule).sort()).toEqual(['commit MERGE on its way in', 'commit MERGE, answer lost', 'staging upload of a chunk', 'staging upload of a chunk']);
    // No partial output: whenever a request was cut, readers saw the earlier run's rows and nothing of this run.
    expect(seen.map((s) => s.at)).toEqual(['staging', 'staging', 'MERGE sent', 'MERGE resent']);
    for (const s of seen) expect(s.rows, s.at).toEqual([{ run_id: earlier.runId, n: ROWS }]);

    // Exactly once: the date holds the input's keys, once each, all from this run.
    const [out] = await sql<{ n: number; k: number; other: number; missing: number }>(
      `SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS k, COUNTIF(run_id != @run_id) AS other,
              (SELECT COUNT(*) FROM \`scoreline-local.scoreline.features\` f WHERE f.ds = @ds AND f.customer_id NOT IN (SELECT customer_id FROM \`scoreline-local.scoreline.chaos_scores\` WHERE ds = @ds)) AS missing
       FROM \`scoreline-local.scoreline.chaos_scores\` WHERE ds = @ds`,
      { ds: DATE, run_id: result.runId },
    );
    expect(out).toEqual({ n: ROWS, k: ROWS, other: 0, missing: 0 });
    // Run-scoped tables (snapshot, staging) are gone.
    const [tables] = await bq.dataset('scoreline').getTables();
    expect(tables.map((t) => t.id!).filter((t) => t.startsWith('_scoreline'))).toEqual([]);
    // Audit: running then succeeded; one chunk row per chunk.
    const runs = await sql<{ status: string; rows_out: number }>('SELECT status, rows_out FROM `scoreline-local.scoreline.scoreline_runs` WHERE run_id = @id ORDER BY updated_at', { id: result.runId });
    expect(runs).toEqual([{ status: 'running', rows_out: 0 }, { status: 'succeeded', rows_out: ROWS }]);
    const chunks = await sql<{ chunk_index: number; rows_out: number }>('SELECT chunk_index, rows_out FROM `scoreline-local.scoreline.scoreline_run_chunks` WHERE run_id = @id ORDER BY chunk_index', { id: result.runId });
    expect(chunks.map((c) => [c.chunk_index, c.rows_out])).toEqual(Array.from({ length: ROWS / CHUNK_ROWS }, (_, i) => [i, CHUNK_ROWS]));
    console.log(`bigquery chaos activities: ${JSON.stringify((await activityOutcomes(client.client, handle.workflowId, handle.firstExecutionRunId)).filter((o) => o.attempts > 1))}`);
  }, 240_000);
});
