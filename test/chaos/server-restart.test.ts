/**
 * Chaos: the Temporal dev server goes away mid-run and comes back on the same port with the same SQLite
 * file — once stopped (SIGTERM), once killed (SIGKILL) — while runs are scoring. The worker is the
 * in-process one of the dev stack (src/dev/stack.ts, as `scoreline dev` runs it) and is not restarted:
 * the Temporal SDK keeps retrying its polls and completions until the server answers again.
 *
 * Every run must complete with each input row scored exactly once, the earlier partition replaced, and
 * audit rows ending in `succeeded`; and nothing the server had recorded before the outage is lost: the run
 * keeps its run id, and the chunk completions recorded before the stop are still in its history.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { configureLogging } from '../../src/obs/log';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { startDevServer, type DevServer } from '../../src/dev/dev-server';
import { startStack, type Stack } from '../../src/dev/stack';
import { ensureTemporalCli } from '../../src/dev/temporal-cli';
import { SEARCH_ATTRIBUTES, TASK_QUEUE } from '../../src/search-attributes';
import type { RunResult } from '../../src/types';
import { expectExactlyOnce, seedEarlierPartition, sleep, waitFor, type ChaosPipeline, type ChaosRun } from '../helpers/chaos';
import { cleanup, copyModels, demoData, REPO, tempProject } from '../helpers/project';

const ROWS = 61_440;
const ROW_GROUP = 2_048;
const CHUNK_ROWS = 2_048; // 30 chunks a run
const CHUNKS = ROWS / CHUNK_ROWS;
const DATES = ['2026-12-21', '2026-12-22'];
const PIPELINE: ChaosPipeline = { name: 'restart-gbt', model: 'churn-gbt@champion', table: 'restart_gbt' };
const EARLIER_FILES = 5;
/** How long the server stays away. */
const OUTAGE_MS = 4_000;

let project: string;
let stack: Stack;
let server: DevServer;
let client: ScorelineClient;
let dbFilename: string;

const raw: PipelineInput = {
  name: PIPELINE.name,
  source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
  model: PIPELINE.model,
  sink: { kind: 'parquet', path: `out/${PIPELINE.table}` },
  chunk_rows: CHUNK_ROWS,
  parallelism: 2,
  heartbeat_timeout: '5s',
};

beforeAll(async () => {
  // The outage makes the SDK warn on every retried poll; the assertions say what matters.
  configureLogging({ level: 'error' });
  project = tempProject('scoreline-chaos-restart-');
  copyModels(project);
  await demoData(project, DATES, ROWS, ROW_GROUP);
  for (const d of DATES) await seedEarlierPartition(project, PIPELINE.table, d, EARLIER_FILES);
  dbFilename = join(project, '.scoreline', 'temporal.db');
  stack = await startStack({
    projectDir: project,
    toolsDir: REPO,
    dbFilename,
    headless: true,
    // Small: the runs must still be scoring when the server goes away.
    worker: { modelsDir: join(project, 'models'), pipelinesDir: join(project, 'pipelines'), maxConcurrentActivities: 2, inferenceThreads: 1 },
  });
  server = stack.server;
  client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
});

afterAll(async () => {
  await client?.close();
  await stack?.worker?.shutdown().catch(() => undefined);
  await server?.stop();
  if (project) cleanup(project);
});

/** The same server again: same binary, port, SQLite file and search attributes. */
async function restartServer(): Promise<void> {
  const cli = await ensureTemporalCli({ projectDir: REPO });
  const port = Number(stack.address.split(':').pop());
  server = await startDevServer({ cliPath: cli.path, dbFilename, port, headless: true, searchAttributes: { ...SEARCH_ATTRIBUTES }, logFile: join(project, '.scoreline', 'temporal.log') });
  expect(server.address).toBe(stack.address);
}

/** Chunk completions the server recorded before `beforeMs`, from the run's history. */
async function chunksRecordedBefore(run: ChaosRun, beforeMs: number): Promise<number> {
  const history = await client.client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
  const chunkEvents = new Set<string>();
  for (const e of history.events ?? []) {
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'scoreChunk') chunkEvents.add(String(e.eventId));
  }
  return (history.events ?? []).filter((e) => {
    const done = e.activityTaskCompletedEventAttributes;
    const at = Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);
    return done && chunkEvents.has(String(done.scheduledEventId)) && at < beforeMs;
  }).length;
}

describe('the Temporal server stopped and restarted mid-run', () => {
  it('runs complete exactly once across a SIGTERM stop and a SIGKILL of the server, with the same in-process worker', async () => {
    const started = Date.now();
    const runs: ChaosRun[] = [];
    for (const date of DATES) {
      const handle = await client.startRun({ config: parsePipeline(raw, 'chaos'), raw, date, trigger: 'test' });
      runs.push({ pipeline: PIPELINE, date, workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
    }
    const handles = runs.map((r) => client.client.workflow.getHandle(r.workflowId, r.runId));
    const outages: Array<{ signal: string; chunksDone: number[]; recordedBefore: number[]; at: number }> = [];

    for (const [i, signal] of (['SIGTERM', 'SIGKILL'] as const).entries()) {
      // Mid-run: every run a few more chunks done than at the last outage (or, if one ran ahead of the
      // other on the shared worker, finished), and at least one still scoring.
      const want = 3 + i * 5;
      let seen = 'no answer yet';
      const progress = await waitFor(
        `runs to have scored ${want} chunks`,
        async () => {
          const ps = await Promise.all(handles.map((h) => client.progress(h)));
          seen = ps.map((p) => (p ? `${p.phase} ${p.chunksDone}/${p.chunksTotal}` : 'no answer')).join(', ');
          const ready = ps.every((p) => p && (p.phase === 'scoring' ? p.chunksDone >= want : p.phase !== 'planning'));
          return ready && ps.some((p) => p!.phase === 'scoring') ? ps : undefined;
        },
        120_000,
        100,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last seen: ${seen}`);
      });
      const at = Date.now();
      if (signal === 'SIGTERM') await server.stop();
      else {
        process.kill(server.pid, 'SIGKILL');
        await waitFor('the killed server to let go of its port', async () => {
          try {
            await client.client.connection.workflowService.getSystemInfo({});
            return false;
          } catch {
            return true;
          }
        }, 30_000, 100);
      }
      await sleep(OUTAGE_MS);
      await restartServer();
      outages.push({ signal, at, chunksDone: progress.map((p) => p!.chunksDone), recordedBefore: [] });
    }

    const results: RunResult[] = [];
    for (const h of handles) results.push(await waitFor('the run result', () => client.wait(h), 180_000, 1_000));
    console.log(`server restart: ${JSON.stringify({ outages: outages.map((o) => ({ signal: o.signal, chunksDoneBefore: o.chunksDone })), seconds: Math.round((Date.now() - started) / 1000) })}`);

    // The worker that lived through both outages is still the one polling (no restart, no new process).
    expect(stack.worker!.worker.getState()).toBe('RUNNING');
    for (const [i, r] of runs.entries()) {
      await expectExactlyOnce(project, r, results[i], ROWS, CHUNKS, EARLIER_FILES);
      // Nothing recorded before an outage was lost: as many chunk completions before each stop as the
      // run reported by then (the progress query is answered from the same history).
      for (const o of outages) expect(await chunksRecordedBefore(r, o.at)).toBeGreaterThanOrEqual(o.chunksDone[i]);
    }
  }, 300_000);
});
