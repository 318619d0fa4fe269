/**
 * Alerts that come before the deadline, and on stalls, on real parts: the Temporal dev server and worker,
 * real runs over Parquet, and a local HTTP receiver for the webhook. A slow run is projected past its SLA
 * (and, in a second run, past a wall-clock deadline) and says so while it is still running; a chunk whose
 * read hangs (its file replaced by a FIFO nobody writes, so open(2) blocks) raises `stalled` naming the
 * chunk and the worker, and `chunk_timeout` then fails the run naming the chunk.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, openSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { describeRun } from '../../src/runs';
import type { RunProgress } from '../../src/types';
import { cleanup, copyModels, demoData, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';
import { Receiver } from '../helpers/receiver';

const DATE = '2026-11-01';
const ROWS = 8_000;
const SECRET = 'eta-stall-test-secret';

let project: string;
let stack: Stack;
let client: ScorelineClient;
const receiver = new Receiver();
/** FIFOs standing in for Parquet files; opened for writing (and closed) at the end so blocked reads return. */
const fifos: string[] = [];

const webhook = { kind: 'webhook' as const, url_env: 'T_ETA_WEBHOOK_URL', secret_env: 'T_ETA_WEBHOOK_SECRET' };

function pipeline(name: string, over: Partial<PipelineInput>): PipelineInput {
  return {
    name,
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: `out/${name.replaceAll('-', '_')}` },
    parallelism: 1,
    ...over,
  };
}

async function start(raw: PipelineInput): Promise<WorkflowHandle> {
  return client.startRun({ config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test' });
}

const hooks = (pipelineName: string, event?: string) => receiver.at('/hook').filter((r) => r.json.pipeline === pipelineName && (!event || r.json.event === event));

async function finalAudit(runId: string): Promise<Record<string, unknown>> {
  const rows = await query(`SELECT * FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${runId}' ORDER BY updated_at`);
  return rows.at(-1)!;
}

/** Unblocks every reader stuck opening a FIFO (they then fail: a FIFO is no Parquet file). */
function releaseFifos(): void {
  for (const fifo of fifos) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // ENXIO: nobody is reading it (any more)
    }
  }
}

beforeAll(async () => {
  await receiver.start();
  Object.assign(process.env, { T_ETA_WEBHOOK_URL: `${receiver.base}/hook`, T_ETA_WEBHOOK_SECRET: SECRET });
  project = tempProject('scoreline-eta-stall-');
  copyModels(project);
  await demoData(project, [DATE], ROWS);
  // Enough chunk slots for every attempt of a hung chunk (each holds one until its read returns).
  ({ stack, client } = await startTestEnv(project, { maxConcurrentActivities: 8 }));
});

afterAll(async () => {
  releaseFifos();
  await stopTestEnv({ client, stack });
  await receiver.stop();
  if (project) cleanup(project);
});

describe('late: the projection crosses the deadline before the deadline', () => {
  it('a run projected past its SLA sends "late" while still running, before the SLA is up, with the projection', async () => {
    // ~160 chunks one at a time take well over the 5 s SLA (~15 s here); after two chunks the projection says so.
    const SLA_MS = 5_000;
    const raw = pipeline('eta-sla', { chunk_rows: 50, alerts: { sla: '5s', on: ['late', 'recovered'], channels: [webhook] } });
    const handle = await start(raw);
    await receiver.waitFor(() => hooks('eta-sla', 'late').length > 0, 60_000);

    // While it runs, status and the API show rows done / planned and the ETA as an estimate.
    const details = await describeRun(client, handle.workflowId);
    if (details.status === 'running' && details.phase === 'scoring') {
      expect(details.progress).toMatchObject({ rows_planned: ROWS });
      expect(details.progress!.rows_done).toBeLessThan(ROWS);
      expect(details.progress!.estimate).toEqual({ finish_at: expect.stringMatching(/Z$/), rows_per_s: expect.any(Number), as_of: expect.stringMatching(/Z$/) });
    }

    const result = await client.wait(handle);
    expect(result.status).toBe('succeeded');
    expect(result.rowsOut).toBe(ROWS);
    const closedAt = (await handle.describe()).closeTime!.getTime();

    const [late, ...more] = hooks('eta-sla', 'late');
    expect(more).toHaveLength(0); // at most once per run
    const j = late.json;
    expect(j).toMatchObject({ event: 'late', status: 'running', run_id: result.runId, sla: '5s', sla_ms: SLA_MS, stall: null });
    expect(j.summary).toMatch(new RegExp(`^eta-sla 2026-11-01 is projected to finish late: ETA \\S+Z \\(estimate\\), \\S+ past its SLA 5s \\(\\S+Z\\); [\\d,]+/8,000 rows at [\\d.]+k? rows/s, \\d+/${result.chunks} chunks$`));
    const p = j.projection;
    expect(p).toMatchObject({ limit: 'sla', limit_text: '5s', rows_planned: ROWS, chunks_total: result.chunks });
    const occurred = Date.parse(j.occurred_at);
    const startedAt = occurred - j.duration_ms; // workflow time: both taken at the same instant
    // The SLA's moment is the run's start + 5 s; the alert came before it, from a projection past it.
    expect(Date.parse(p.deadline)).toBe(startedAt + SLA_MS);
    expect(occurred).toBeLessThan(Date.parse(p.deadline));
    expect(j.duration_ms).toBeLessThan(SLA_MS);
    expect(Date.parse(p.eta)).toBeGreaterThan(Date.parse(p.deadline));
    expect(p.late_by_ms).toBe(Date.parse(p.eta) - Date.parse(p.deadline));
    expect(p.rows_done).toBeGreaterThan(0);
    expect(p.rows_done).toBeLessThan(ROWS);
    expect(p.chunks_done).toBeLessThan(result.chunks);
    expect(p.rows_per_s).toBeGreaterThan(0);
    // …and while the run was still going: before it closed, as the receiver saw it too.
    expect(occurred).toBeLessThan(closedAt);
    expect(late.at).toBeLessThan(closedAt);

    // The projection was right: the run ended after its SLA, and `recovered` closes the incident.
    expect(result.durationMs).toBeGreaterThan(SLA_MS);
    expect(hooks('eta-sla').map((h) => [h.json.event, h.json.recovered_from])).toEqual([
      ['late', null],
      ['recovered', 'late'],
    ]);
    expect(JSON.parse(String((await finalAudit(result.runId)).alerts))).toEqual([
      { event: 'late', channel: 'webhook', ok: true },
      { event: 'recovered', channel: 'webhook', ok: true },
    ]);
  });

  it('deadline: "HH:MM <zone>" is the next such wall-clock time; a run scored in child workflows is reported before it', async () => {
    // The next minute boundary at least 25 s away (25–60 s), written as Europe/Berlin wall-clock time.
    let now = Date.now();
    if (60_000 - (now % 60_000) < 25_000) {
      await new Promise((r) => setTimeout(r, 60_000 - (now % 60_000) + 100));
      now = Date.now();
    }
    const deadlineMs = now - (now % 60_000) + 60_000;
    const hhmm = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(new Date(deadlineMs));
    const deadline = `${hhmm} Europe/Berlin`;
    // 4,000 chunks one at a time (in child workflows of 500, which report progress every 5 s): ~2 minutes
    // of work at ~30 ms a chunk, so it is projected well past a deadline at most a minute away, from the
    // second progress report. (2,000 chunks projected ~60 s: a coin flip when the deadline was ~60 s away.)
    const raw = pipeline('eta-deadline', { chunk_rows: 2, alerts: { deadline, channels: [webhook] } });
    expect(parsePipeline(raw, 'test').alerts?.on).toEqual(['failed', 'late', 'recovered']);
    const handle = await start(raw);
    await receiver.waitFor(() => hooks('eta-deadline', 'late').length > 0, 70_000);
    await handle.cancel(); // it has said what it had to; no need to score the rest
    await handle.result().catch(() => undefined);

    const [late] = hooks('eta-deadline', 'late');
    const p = late.json.projection;
    expect(p).toMatchObject({ limit: 'deadline', limit_text: deadline, deadline: new Date(deadlineMs).toISOString(), rows_planned: ROWS, chunks_total: 4000 });
    expect(Date.parse(late.json.occurred_at)).toBeLessThan(deadlineMs);
    expect(Date.parse(p.eta)).toBeGreaterThan(deadlineMs);
    expect(p.chunks_done).toBeGreaterThan(0);
    expect(late.json.summary).toContain(`past its deadline ${deadline} (${new Date(deadlineMs).toISOString().replace('.000Z', 'Z')})`);
    // A cancelled run sends nothing more.
    expect(hooks('eta-deadline').map((h) => h.json.event)).toEqual(['late']);
  });
});

describe('stalled and chunk_timeout', () => {
  it('a chunk whose read hangs raises "stalled" naming the chunk and the worker; chunk_timeout fails the run naming it', async () => {
    // Two files: 10 chunks of part-0, then 5 of part-1. Once the plan has read part-1's metadata, it
    // is replaced by a FIFO: opening it blocks until someone writes, so chunk 10's read hangs.
    const dir = join(project, 'data', 'stall', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    const source = `read_parquet('${project}/data/customers/ds=${DATE}/*.parquet')`;
    await query(`COPY (SELECT * FROM ${source} ORDER BY customer_id LIMIT 2000) TO '${dir}/part-0.parquet' (FORMAT parquet)`);
    await query(`COPY (SELECT * FROM ${source} ORDER BY customer_id LIMIT 1000 OFFSET 2000) TO '${dir}/part-1.parquet' (FORMAT parquet)`);
    const fifo = join(dir, 'part-1.fifo');
    execFileSync('mkfifo', [fifo]);
    fifos.push(join(dir, 'part-1.parquet'));

    const raw = pipeline('stall', {
      source: { kind: 'parquet', path: 'data/stall/ds={{ ds }}/*.parquet', key: ['customer_id'], key_check: 'allow' },
      chunk_rows: 200,
      chunk_timeout: '3s',
      alerts: { stall_after: '2s', channels: [webhook] },
    });
    const handle = await start(raw);
    let p: RunProgress | undefined;
    while (!(p = await client.progress(handle)) || p.phase === 'planning') await new Promise((r) => setTimeout(r, 20));
    expect(p.chunksTotal).toBe(15);
    renameSync(fifo, join(dir, 'part-1.parquet'));
    expect(p.chunksDone).toBeLessThan(10); // swapped before any chunk of part-1 started

    // The run fails once chunk 10's 4th attempt ran out of time; the blocked reads are released then.
    await receiver.waitFor(() => hooks('stall', 'failed').length > 0, 90_000);
    releaseFifos();
    const result = await client.wait(handle);

    expect(result.status).toBe('failed');
    const file = join(dir, 'part-1.parquet');
    expect(result.error).toBe(`score chunk 10 failed: chunk 10 (${file} rows 0..199) did not finish within chunk_timeout 3s; gave up after 4 attempts`);
    expect(result.rowsIn).toBe(2000); // chunks 0–9 were scored; nothing was committed

    const events = hooks('stall');
    expect(events.map((e) => e.json.event)).toEqual(['stalled', 'failed']);
    const [stalled, failed] = events;
    const st = stalled.json.stall;
    expect(stalled.json).toMatchObject({ status: 'running', projection: null });
    expect(st).toMatchObject({ after: '2s', after_ms: 2000, chunks_done: 10, chunks_total: 15, group: null });
    expect(st.idle_ms).toBeGreaterThanOrEqual(2000);
    expect(st.in_flight).toEqual([
      {
        index: 10,
        since: expect.stringMatching(/Z$/),
        worker: stack.worker!.context.workerId,
        attempt: 1,
        step: 'read',
        last_heartbeat_at: expect.stringMatching(/Z$/),
      },
    ]);
    // The chunk was in flight from (about) when the last one finished: the stall counts from there.
    expect(Date.parse(st.in_flight[0].since)).toBeGreaterThanOrEqual(Date.parse(st.last_chunk_at));
    // idle_ms is measured when the stall was noticed; the alert went out after asking the server about the chunk.
    expect(Date.parse(stalled.json.occurred_at) - Date.parse(st.last_chunk_at)).toBeGreaterThanOrEqual(st.idle_ms);
    expect(stalled.json.summary).toMatch(
      new RegExp(`^stall 2026-11-01 is stalled: no chunk has finished for \\S+ \\(stall_after 2s\\), 10/15 chunks done; in flight: chunk 10 since \\S+Z on worker ${stack.worker!.context.workerId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(attempt 1, last heartbeat at read\\)$`),
    );
    expect(failed.json).toMatchObject({ event: 'failed', step: 'score chunk 10', error: result.error!.replace('score chunk 10 failed: ', '') });
    expect(JSON.parse(String((await finalAudit(result.runId)).alerts))).toEqual([
      { event: 'stalled', channel: 'webhook', ok: true },
      { event: 'failed', channel: 'webhook', ok: true },
    ]);
    expect(existsSync(file)).toBe(true);
  });
});
