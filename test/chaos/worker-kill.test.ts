/**
 * Chaos: `kill -9` of the only worker process, again and again, while 30 runs (three pipelines, one of
 * them appending, × ten dates) read, infer, stage and commit; a fresh worker process is started after each
 * kill. Every run must still succeed with each input row scored exactly once, the earlier partition of its
 * date replaced (or, appending, kept beside it), nothing staged left behind, and audit rows that end in
 * `succeeded` with one chunk row per chunk.
 *
 * The worker is `node bin/scoreline.js worker` (dist/), configured by environment like a deployment; the
 * server is the real Temporal dev server. Kills are aimed three ways, in turn: at a random moment, at the
 * moment a chunk's Parquet file is being written (a temporary file of that worker appears in staging), and
 * at the moment a commit moves the earlier partition aside (`<run>.replaced` appears). After each kill the
 * server is asked which activity attempts the dead worker held; the summary line counts them by phase.
 * The seed of the random choices is printed (SCORELINE_CHAOS_SEED repeats it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScorelineClient } from '../../src/client';
import type { PipelineInput } from '../../src/config/pipeline';
import {
  activityOutcomes,
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

const ROWS = 40_960;
const ROW_GROUP = 2_048;
const CHUNK_ROWS = 4_096; // two row groups: 10 chunks a run
const CHUNKS = ROWS / CHUNK_ROWS;
const DATES = Array.from({ length: 10 }, (_, i) => `2026-12-${String(i + 1).padStart(2, '0')}`);
/** Started by the kill loop only if the worker finishes the first runs before MIN_KILLS kills. */
const SPARE_DATES = ['2026-12-11', '2026-12-12', '2026-12-13', '2026-12-14'];
const PIPELINES: ChaosPipeline[] = [
  { name: 'chaos-gbt', model: 'churn-gbt@champion', table: 'chaos_gbt' },
  { name: 'chaos-mlp', model: 'churn-mlp@champion', table: 'chaos_mlp' },
  { name: 'chaos-append', model: 'churn-gbt@champion', table: 'chaos_append', mode: 'append' },
];
/** Files of the partition an earlier run left for each date (replaced, or kept beside an append). */
const EARLIER_FILES = 40;
/** How soon the server gives up a dead worker's attempt (the pipeline's heartbeat_timeout). */
const HEARTBEAT_TIMEOUT = '4s';
const MIN_KILLS = 15;
const MAX_KILLS = 20;
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
    sink: { kind: 'parquet', path: `out/${p.table}`, mode: p.mode ?? 'replace-partition' },
    chunk_rows: CHUNK_ROWS,
    parallelism: 3,
    heartbeat_timeout: HEARTBEAT_TIMEOUT,
  };
}

const newWorker = () => startWorkerProcess({ address: fixture!.stack.address, projectDir: project });

beforeAll(async () => {
  fixture = await chaosFixture('scoreline-chaos-kill-', { dates: [...DATES, ...SPARE_DATES], pipelines: PIPELINES, rows: ROWS, rowGroup: ROW_GROUP, earlierFiles: EARLIER_FILES });
  ({ project, client } = fixture);
});

afterAll(() => closeChaosFixture(fixture ?? {}, workers));

describe('kill -9 of the worker process', () => {
  it(`${DATES.length * PIPELINES.length}+ runs survive ${MIN_KILLS}+ kills at random points, each input row scored exactly once`, async () => {
    console.log(`chaos seed ${SEED} (SCORELINE_CHAOS_SEED=${SEED} repeats the same choices)`);
    const started = Date.now();
    const runs = await startChaosRuns(client, DATES, PIPELINES, raw);
    workers.push(await newWorker());
    const chaos = await killRepeatedly({ client: client.client, project, runs, workers, startWorker: newWorker, rand: random(SEED), minKills: MIN_KILLS, maxKills: MAX_KILLS, more: spareRuns(client, SPARE_DATES, PIPELINES, raw) });
    const chaosMs = Date.now() - started;

    const results = await waitForRuns(client, runs);
    // How a chunk's time splits into its stages (chunk audit rows): how likely a kill is to land in each.
    const [stageMs] = await query(
      `SELECT round(sum(read_ms)) AS read, round(sum(convert_ms)) AS convert, round(sum(infer_ms)) AS infer, round(sum(write_ms)) AS write FROM read_parquet('${project}/out/scoreline_run_chunks/*/*.parquet')`,
    );
    const summary = killSummary(chaos);
    console.log(`chaos summary ${JSON.stringify({ seed: SEED, ...summary, chaosSeconds: Math.round(chaosMs / 1000), totalSeconds: Math.round((Date.now() - started) / 1000), chunkStageMs: stageMs })}`);

    // Every run: exactly once, the earlier partition replaced (or kept beside an append), clean staging,
    // audit rows ending in succeeded.
    let retried = 0;
    let finishRetriedAfterWriting = 0;
    for (const r of runs) {
      const { succeededRows } = await expectExactlyOnce(project, r, results.get(r.workflowId)!, ROWS, CHUNKS, EARLIER_FILES);
      if (succeededRows > 1) finishRetriedAfterWriting++;
      retried += (await activityOutcomes(client.client, r.workflowId, r.runId)).filter((o) => o.attempts > 1).length;
    }
    console.log(`chaos audit: ${finishRetriedAfterWriting} run(s) hold more than one "succeeded" row (a finish retried after it wrote); ${retried} activities completed on a later attempt`);

    // The kills really landed: enough of them, on at least 20 of the runs (an attempt of theirs died with a
    // worker), the dead workers' attempts retried, and in the phases aimed at (a chunk being staged, a commit).
    const phases = summary.phases as Record<string, number>;
    expect(summary.killsWhileRunsOpen).toBeGreaterThanOrEqual(MIN_KILLS); // kills after every run ended do not count
    expect(summary.runsThatLostAnAttempt).toBeGreaterThanOrEqual(20);
    expect(chaos.kills.flatMap((k) => k.lost).filter((a) => a.activity === 'scoreChunk').length).toBeGreaterThanOrEqual(5);
    expect(retried).toBeGreaterThanOrEqual(5);
    expect(phases['scoreChunk: staging its Parquet file'] ?? 0).toBeGreaterThanOrEqual(1);
    expect(phases.commitRun ?? 0).toBeGreaterThanOrEqual(1);
  }, 300_000);
});
