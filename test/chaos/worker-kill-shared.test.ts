/**
 * Chaos: two worker processes share the task queues; one of them is killed (`kill -9`) and replaced by a
 * fresh process, again and again, while the other keeps working. The dead worker's attempts move to the
 * survivor or to its replacement; every run must succeed with each input row scored exactly once, the
 * earlier partition replaced, no staging left, and the audit ending in `succeeded`. The chunk audit rows
 * show both workers scored chunks.
 *
 * Same machinery as worker-kill.test.ts (test/helpers/chaos.ts): real dev server, workers are
 * `node bin/scoreline.js worker` processes, kills aimed at random moments, at a chunk being staged by the
 * victim, and at a commit moving a partition aside (by whichever worker: the victim is not always the one
 * committing, and the summary says what the victim really held).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { startStack, type Stack } from '../../src/dev/stack';
import { TASK_QUEUE } from '../../src/search-attributes';
import type { RunResult } from '../../src/types';
import {
  expectExactlyOnce,
  killRepeatedly,
  killSummary,
  random,
  seedEarlierPartition,
  startWorkerProcess,
  type ChaosPipeline,
  type ChaosRun,
  type WorkerProcess,
} from '../helpers/chaos';
import { cleanup, copyModels, demoData, query, REPO, tempProject } from '../helpers/project';

const ROWS = 40_960;
const ROW_GROUP = 2_048;
const CHUNK_ROWS = 4_096; // 10 chunks a run
const CHUNKS = ROWS / CHUNK_ROWS;
const DATES = Array.from({ length: 10 }, (_, i) => `2026-12-${String(i + 11).padStart(2, '0')}`);
const PIPELINES: ChaosPipeline[] = [
  { name: 'shared-gbt', model: 'churn-gbt@champion', table: 'shared_gbt' },
  { name: 'shared-mlp', model: 'churn-mlp@champion', table: 'shared_mlp' },
];
const EARLIER_FILES = 20;
const HEARTBEAT_TIMEOUT = '4s';
const MIN_KILLS = 6;
const MAX_KILLS = 10;
const SEED = Number(process.env.SCORELINE_CHAOS_SEED ?? Date.now() % 1_000_000);

let project: string;
let stack: Stack;
let client: ScorelineClient;
const workers: WorkerProcess[] = [];

function raw(p: ChaosPipeline): PipelineInput {
  return {
    name: p.name,
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: p.model,
    sink: { kind: 'parquet', path: `out/${p.table}` },
    chunk_rows: CHUNK_ROWS,
    parallelism: 3,
    heartbeat_timeout: HEARTBEAT_TIMEOUT,
  };
}

// Two processes on two cores: one inference thread and two chunk slots each.
const newWorker = () => startWorkerProcess({ address: stack.address, projectDir: project, env: { SCORELINE_INFERENCE_THREADS: '1', SCORELINE_WORKER_CONCURRENCY: '2' } });

beforeAll(async () => {
  project = tempProject('scoreline-chaos-shared-');
  copyModels(project);
  await demoData(project, DATES, ROWS, ROW_GROUP);
  for (const p of PIPELINES) for (const d of DATES) await seedEarlierPartition(project, p.table, d, EARLIER_FILES);
  stack = await startStack({ projectDir: project, toolsDir: REPO, dbFilename: join(project, '.scoreline', 'temporal.db'), headless: true, startWorker: false });
  client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
});

afterAll(async () => {
  for (const w of workers) await w.kill();
  await client?.close();
  await stack?.stop();
  if (project) cleanup(project);
});

describe('kill -9 of one of two workers sharing the task queue', () => {
  it(`${DATES.length * PIPELINES.length} runs survive ${MIN_KILLS}+ kills of one worker while the other works on, exactly once`, async () => {
    console.log(`chaos seed ${SEED} (SCORELINE_CHAOS_SEED=${SEED} repeats the same choices)`);
    const started = Date.now();
    const runs: ChaosRun[] = [];
    for (const d of DATES) {
      for (const p of PIPELINES) {
        const handle = await client.startRun({ config: parsePipeline(raw(p), 'chaos'), raw: raw(p), date: d, trigger: 'test' });
        runs.push({ pipeline: p, date: d, workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
      }
    }
    workers.push(...(await Promise.all([newWorker(), newWorker()])));
    const identities = new Set(workers.map((w) => w.identity));
    const rand = random(SEED);
    // The victim is picked at random each time; the other one keeps working meanwhile.
    const chaos = await killRepeatedly({
      client: client.client,
      project,
      runs,
      workers,
      startWorker: async () => {
        const w = await newWorker();
        identities.add(w.identity);
        return w;
      },
      rand,
      victim: () => (rand() < 0.5 ? 0 : 1),
      minKills: MIN_KILLS,
      maxKills: MAX_KILLS,
    });
    const chaosMs = Date.now() - started;

    const results = new Map<string, RunResult>();
    for (const r of runs) results.set(r.workflowId, await client.wait(client.client.workflow.getHandle(r.workflowId, r.runId)));
    console.log(`chaos summary ${JSON.stringify({ seed: SEED, ...killSummary(chaos), chaosSeconds: Math.round(chaosMs / 1000), totalSeconds: Math.round((Date.now() - started) / 1000) })}`);

    for (const r of runs) await expectExactlyOnce(project, r, results.get(r.workflowId)!, ROWS, CHUNKS, EARLIER_FILES);
    // The chunk audit says which worker scored each chunk: both of the first two (and replacements) did.
    const byWorker = await query(`SELECT worker, count(*) AS chunks FROM read_parquet('${project}/out/scoreline_run_chunks/*/*.parquet') GROUP BY worker`);
    expect(byWorker.every((w) => identities.has(String(w.worker)))).toBe(true);
    expect(byWorker.length).toBeGreaterThanOrEqual(3);
    expect(chaos.kills.length).toBeGreaterThanOrEqual(MIN_KILLS);
    expect(chaos.kills.flatMap((k) => k.lost).filter((a) => a.activity === 'scoreChunk').length).toBeGreaterThanOrEqual(3);
  }, 300_000);
});
