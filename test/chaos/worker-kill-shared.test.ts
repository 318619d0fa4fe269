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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScorelineClient } from '../../src/client';
import type { PipelineInput } from '../../src/config/pipeline';
import {
  chaosFixture,
  closeChaosFixture,
  expectExactlyOnce,
  killRepeatedly,
  killSummary,
  random,
  spareRuns,
  startChaosRuns,
  startWorkerProcess,
  waitForRuns,
  type ChaosFixture,
  type ChaosPipeline,
  type WorkerProcess,
} from '../helpers/chaos';
import { query } from '../helpers/project';

// Each kill waits ~1–5 s and a fresh worker takes ~3 s to start, so on a quick machine the two workers can
// finish the first runs before MIN_KILLS kills: the kill loop then starts the runs of two spare dates.
const ROWS = 61_440;
const ROW_GROUP = 2_048;
const CHUNK_ROWS = 4_096; // 15 chunks a run
const CHUNKS = ROWS / CHUNK_ROWS;
const DATES = Array.from({ length: 10 }, (_, i) => `2026-12-${String(i + 11).padStart(2, '0')}`);
const SPARE_DATES = ['2026-12-21', '2026-12-22', '2026-12-23', '2026-12-24'];
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
let fixture: ChaosFixture | undefined;
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
const newWorker = () => startWorkerProcess({ address: fixture!.stack.address, projectDir: project, env: { SCORELINE_INFERENCE_THREADS: '1', SCORELINE_WORKER_CONCURRENCY: '2' } });

beforeAll(async () => {
  fixture = await chaosFixture('scoreline-chaos-shared-', { dates: [...DATES, ...SPARE_DATES], pipelines: PIPELINES, rows: ROWS, rowGroup: ROW_GROUP, earlierFiles: EARLIER_FILES });
  ({ project, client } = fixture);
});

afterAll(() => closeChaosFixture(fixture ?? {}, workers));

describe('kill -9 of one of two workers sharing the task queue', () => {
  it(`${DATES.length * PIPELINES.length}+ runs survive ${MIN_KILLS}+ kills of one worker while the other works on, exactly once`, async () => {
    console.log(`chaos seed ${SEED} (SCORELINE_CHAOS_SEED=${SEED} repeats the same choices)`);
    const started = Date.now();
    const runs = await startChaosRuns(client, DATES, PIPELINES, raw);
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
      more: spareRuns(client, SPARE_DATES, PIPELINES, raw),
    });
    const chaosMs = Date.now() - started;

    // `runs` now includes any the kill loop started on spare dates.
    const results = await waitForRuns(client, runs);
    const summary = killSummary(chaos);
    console.log(`chaos summary ${JSON.stringify({ seed: SEED, ...summary, chaosSeconds: Math.round(chaosMs / 1000), totalSeconds: Math.round((Date.now() - started) / 1000) })}`);

    for (const r of runs) await expectExactlyOnce(project, r, results.get(r.workflowId)!, ROWS, CHUNKS, EARLIER_FILES);
    // The chunk audit says which worker scored each chunk: both of the first two (and replacements) did.
    const byWorker = await query(`SELECT worker, count(*) AS chunks FROM read_parquet('${project}/out/scoreline_run_chunks/*/*.parquet') GROUP BY worker`);
    expect(byWorker.every((w) => identities.has(String(w.worker)))).toBe(true);
    expect(byWorker.length).toBeGreaterThanOrEqual(3);
    expect(summary.killsWhileRunsOpen).toBeGreaterThanOrEqual(MIN_KILLS); // kills after every run ended do not count
    expect(chaos.kills.flatMap((k) => k.lost).filter((a) => a.activity === 'scoreChunk').length).toBeGreaterThanOrEqual(3);
  }, 300_000);
});
