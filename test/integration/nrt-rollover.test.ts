/**
 * The long-lived near-real-time workflow under a steady stream of requests: when its history is full it
 * turns new requests away (they are retried on the next run), lets the running ones finish, and
 * continues as new. Without the turning away, concurrent clients would keep it from ever finishing its
 * handlers, and the history would grow until Temporal refuses it.
 */
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { NrtClient } from '../../src/nrt/client';
import { nrtWorkflowId } from '../../src/nrt/protocol';
import { rowsFromObjects } from '../../src/nrt/rows';
import { copyModels, FEATURES, query, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

let project: string;
let stack: Stack;
let client: ScorelineClient;

beforeAll(async () => {
  project = tempProject('scoreline-nrt-rollover-');
  copyModels(project);
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack, project });
});

it('rolls over to a new run under concurrent load without failing or losing a request', async () => {
  const config = parsePipeline(
    { name: 'churn-nrt', source: { kind: 'parquet', path: 'unused/*.parquet', key: ['customer_id'] }, model: 'churn-mlp@champion', models_dir: `${project}/models`, sink: { kind: 'parquet', path: 'out/unused' } },
    'test',
  );
  // ~6 KB of rows per request: a 48 KB history limit rolls over every few requests.
  const nrt = new NrtClient(client, 'update', 48 * 1024);
  const request = (i: number) => {
    const rows = Array.from({ length: 20 }, (_, r) => ({ customer_id: i * 100 + r, ...Object.fromEntries(FEATURES.map((f, j) => [f, ((i + r + j) % 7) / 7])) }));
    return nrt.score({ config, rows: rowsFromObjects(rows) });
  };
  const results = [];
  for (let wave = 0; wave < 6; wave++) results.push(...(await Promise.all(Array.from({ length: 5 }, (_, c) => request(wave * 5 + c)))));
  expect(results).toHaveLength(30);
  for (const r of results) {
    expect(r).toMatchObject({ rowsIn: 20, rowsOut: 20 });
    expect(r.predictions.churn_probability.every((p) => typeof p === 'number' && p >= 0 && p <= 1)).toBe(true);
  }

  const runs: string[] = [];
  for await (const wf of client.client.workflow.list({ query: `WorkflowId = "${nrtWorkflowId('churn-nrt')}"` })) runs.push(wf.runId);
  expect(runs.length).toBeGreaterThan(1); // it continued as new at least once

  // Every request has its audit row, none twice, across the roll-overs. Audit rows are written after the
  // reply (off the caller's path), so the last batch may land a moment after the last answer.
  const audit = `${project}/out/scoreline_runs/*.parquet`;
  const count = async () => (await query(`SELECT count(*) AS n, count(DISTINCT run_id) AS d FROM read_parquet('${audit}') WHERE trigger = 'nrt' AND status = 'succeeded'`))[0];
  let counts = await count();
  for (let i = 0; i < 50 && Number(counts.n) < 30; i++) {
    await new Promise((r) => setTimeout(r, 200));
    counts = await count();
  }
  expect(counts).toEqual({ n: 30, d: 30 });

  // Every run's history replays with the workflow code: a worker that restarts (or drops the workflow from
  // its cache) must be able to pick it up. Concurrent requests used to make that fail (nondeterminism).
  const histories = (async function* () {
    for (const runId of runs) yield { workflowId: `${nrtWorkflowId('churn-nrt')}/${runId}`, history: await client.client.workflow.getHandle(nrtWorkflowId('churn-nrt'), runId).fetchHistory() };
  })();
  const replayed: string[] = [];
  for await (const r of Worker.runReplayHistories({ workflowsPath: join(REPO, 'workflows', 'index.ts') }, histories)) replayed.push(r.error ? `${r.workflowId}: ${r.error.message.slice(0, 300)}` : 'ok');
  expect(replayed).toEqual(runs.map(() => 'ok'));
}, 240_000);
