/**
 * Schedules on the real Temporal dev server with a real worker: apply/update/idempotency, trigger and
 * backfill producing runs whose logical dates follow the nominal time in the schedule's timezone (and
 * land in the right partitions), overlap policy, pause/unpause, delete, and the CLI on top.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { stringify } from 'yaml';
import { main } from '../../src/cli/main';
import { applyLines } from '../../src/cli/schedule';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import {
  applySchedule,
  backfillSchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  pauseSchedule,
  triggerSchedule,
  unpauseSchedule,
  type ScheduleInfo,
} from '../../src/schedules';
import { addDays } from '../../src/schedules/logical-date';
import type { ScheduledRunResult } from '../../src/schedules/types';
import { TASK_QUEUE } from '../../src/search-attributes';
import { cleanup, copyModels, demoData, query, startTestStack, tempProject } from '../helpers/project';

const ROWS = 3_000;
const LONG = 400_000;
let project: string;
let stack: Stack;
let sc: ScorelineClient;
/** Today and tomorrow in Berlin, for whatever date a trigger lands on. */
let berlinToday: string;

/** The date in Berlin by the platform's own formatter, independent of src/schedules/logical-date. */
const berlinDate = (d: Date) => d.toLocaleDateString('sv-SE', { timeZone: 'Europe/Berlin' });

function pipeline(over: Partial<PipelineInput> & { schedule?: unknown } = {}): PipelineInput {
  return {
    name: 'churn-sched',
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: 'out/sched_scores' },
    chunk_rows: 5000,
    parallelism: 2,
    // Paused: the clock must not start runs while the tests trigger and backfill by hand.
    schedule: { cron: '30 0 * * *', timezone: 'Europe/Berlin', paused: true },
    ...over,
  } as PipelineInput;
}

const loaded = (raw: PipelineInput) => ({ config: parsePipeline(raw, 'test') });

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 240_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Recent runs of a schedule for `dates`, once none of them is running any more. */
async function settledRuns(name: string, dates: string[]): Promise<ScheduleInfo['recent_runs']> {
  return waitFor(`scheduled runs for ${dates.join(', ')}`, async () => {
    const info = await describeSchedule(sc, name);
    const runs = info.recent_runs.filter((r) => dates.includes(r.logical_date));
    const done = runs.filter((r) => r.status !== 'running' && r.status !== 'unknown');
    return new Set(done.map((r) => r.logical_date)).size === dates.length && runs.length === done.length ? runs : undefined;
  });
}

async function partitionRuns(date: string) {
  return query(
    `SELECT run_id, count(*) AS n, count(DISTINCT customer_id) AS k FROM read_parquet('${project}/out/sched_scores/ds=${date}/*.parquet') GROUP BY ALL`,
  );
}

async function auditRow(runId: string) {
  const rows = await query(`SELECT * FROM read_parquet('${project}/out/scoreline_runs/*.parquet') WHERE run_id = '${runId}' ORDER BY updated_at`);
  return rows.at(-1);
}

/** `scoreline …` in this process (same code path as the binary), capturing output and exit code. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  const before = process.env.TEMPORAL_ADDRESS;
  process.env.TEMPORAL_ADDRESS = stack.address;
  process.exitCode = undefined;
  try {
    await main(['node', 'scoreline', ...args]);
    return { code: Number(process.exitCode ?? 0), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
    if (before === undefined) delete process.env.TEMPORAL_ADDRESS;
    else process.env.TEMPORAL_ADDRESS = before;
  }
}

beforeAll(async () => {
  project = tempProject('scoreline-sched-');
  copyModels(project);
  berlinToday = berlinDate(new Date());
  const dates = ['2026-11-01', '2026-11-02', '2026-11-03', berlinToday, addDays(berlinToday, 1)];
  await demoData(project, [...new Set(dates)], ROWS);
  stack = await startTestStack(project);
  sc = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
}, LONG);

afterAll(async () => {
  await sc?.close();
  await stack?.stop();
  cleanup(project);
});

describe('schedule apply', () => {
  it('creates, then changes nothing when applied again, then updates field by field', async () => {
    const created = await applySchedule(sc, loaded(pipeline()));
    expect(created).toMatchObject({ schedule_id: 'scoreline/churn-sched', result: 'created' });
    expect(created.changes).toContainEqual({ field: 'schedule.cron', after: ['30 0 * * *'] });
    expect(created.changes).toContainEqual({ field: 'schedule.timezone', after: 'Europe/Berlin' });

    const again = await applySchedule(sc, loaded(pipeline()));
    expect(again).toMatchObject({ result: 'unchanged', changes: [] });
    expect(applyLines(again)).toEqual(['✔ scoreline/churn-sched already matches the pipeline file; nothing changed']);

    // Two cron times a day, another overlap policy, a pipeline field: exactly those three fields change.
    const changed = pipeline({ chunk_rows: 4000, schedule: { cron: ['30 0 * * *', '0 12 * * *'], timezone: 'Europe/Berlin', overlap: 'buffer_one', paused: true } });
    const dry = await applySchedule(sc, loaded(changed), { dryRun: true });
    expect(dry).toMatchObject({ result: 'updated', dry_run: true });
    expect((await applySchedule(sc, loaded(pipeline()))).result).toBe('unchanged'); // the dry run sent nothing
    const updated = await applySchedule(sc, loaded(changed));
    expect(updated.result).toBe('updated');
    expect(updated.changes).toEqual([
      { field: 'schedule.cron', before: ['30 0 * * *'], after: ['30 0 * * *', '0 12 * * *'] },
      { field: 'schedule.overlap', before: 'skip', after: 'buffer_one' },
      { field: 'pipeline.chunk_rows', before: 5000, after: 4000 },
    ]);
    const lines = applyLines(updated);
    expect(lines[0]).toBe('✔ updated scoreline/churn-sched (3 fields)');
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}~ schedule\.overlap\s+skip → buffer_one$/));
    expect((await applySchedule(sc, loaded(changed))).result).toBe('unchanged');

    // What the server stored: the overlap policy, timezone, catch-up window default, the scheduled-run action.
    const raw = await sc.client.schedule.getHandle('scoreline/churn-sched').describe();
    expect(raw.policies).toMatchObject({ overlap: 'BUFFER_ONE', catchupWindow: 86_400_000, pauseOnFailure: false });
    expect(raw.spec.timezone).toBe('Europe/Berlin');
    expect(raw.state.paused).toBe(true);
    expect(raw.action).toMatchObject({ workflowType: 'scorelineScheduledRun', taskQueue: TASK_QUEUE });
    const info = await describeSchedule(sc, 'churn-sched');
    expect(info).toMatchObject({ overlap: 'buffer_one', catchup_window: '1d', cron: ['30 0 * * *', '0 12 * * *'], timezone: 'Europe/Berlin', paused: true });
  }, LONG);
});

describe('scheduled runs', () => {
  it('trigger starts a run whose logical date is the nominal time in the schedule timezone', async () => {
    const t = await triggerSchedule(sc, 'churn-sched');
    expect(t).toMatchObject({ overlap: 'buffer_one', skipped_overlap: false }); // the schedule's own policy
    expect(t.workflow_id).toMatch(/^scoreline\/churn-sched\/scheduled-/);
    expect(t.logical_date).toBe(berlinDate(new Date(t.scheduled_at!)));
    expect(t.run_workflow_id).toBe(`scoreline/churn-sched/${t.logical_date}`);

    const outcome = (await sc.client.workflow.getHandle(t.workflow_id!).result()) as ScheduledRunResult;
    expect(outcome).toMatchObject({ outcome: 'ran', logicalDate: t.logical_date, workflowId: t.run_workflow_id });
    if (outcome.outcome !== 'ran') throw new Error('not ran');
    expect(outcome.result).toMatchObject({ status: 'succeeded', rowsOut: ROWS, logicalDate: t.logical_date });
    expect(await partitionRuns(t.logical_date!)).toEqual([{ run_id: outcome.result.runId, n: ROWS, k: ROWS }]);
    expect(await auditRow(outcome.result.runId)).toMatchObject({ trigger: 'schedule', logical_date: t.logical_date, status: 'succeeded', workflow_id: t.run_workflow_id });

    // The batch run carries the search attributes, so the Web UI finds scheduled runs by date.
    const found = await waitFor('visibility', async () => {
      for await (const wf of sc.client.workflow.list({ query: `ScorelinePipeline = "churn-sched" AND ScorelineTrigger = "schedule" AND WorkflowType = "scorelineBatchRun"` })) return wf;
      return undefined;
    });
    expect(found.workflowId).toBe(t.run_workflow_id);
    expect(found.typedSearchAttributes.getAll().map((p) => [p.key.name, p.value instanceof Date ? p.value.toISOString() : p.value])).toEqual(
      expect.arrayContaining([
        ['ScorelineLogicalDate', `${t.logical_date}T00:00:00.000Z`],
        ['ScorelineModel', 'churn-gbt'],
        ['ScorelineModelVersion', '1'],
      ]),
    );
  }, LONG);

  it('backfill runs each date once at its nominal time and replaces the right partitions', async () => {
    // 00:30 in Berlin is 23:30 UTC the day before: the logical date is Berlin's. The schedule fires twice
    // a day (00:30 and 12:00), yet each date runs once.
    const r = await backfillSchedule(sc, 'churn-sched', '2026-11-01', '2026-11-02');
    expect(r.overlap).toBe('buffer_all');
    expect(r.runs).toEqual([
      { logical_date: '2026-11-01', scheduled_at: '2026-10-31T23:30:00.000Z', run_workflow_id: 'scoreline/churn-sched/2026-11-01' },
      { logical_date: '2026-11-02', scheduled_at: '2026-11-01T23:30:00.000Z', run_workflow_id: 'scoreline/churn-sched/2026-11-02' },
    ]);
    expect(r.dates_without_runs).toEqual([]);
    const runs = await settledRuns('churn-sched', ['2026-11-01', '2026-11-02']);
    expect(runs.map((x) => [x.logical_date, x.status, x.scheduled_at]).sort()).toEqual([
      ['2026-11-01', 'succeeded', '2026-10-31T23:30:00.000Z'],
      ['2026-11-02', 'succeeded', '2026-11-01T23:30:00.000Z'],
    ]);
    for (const date of ['2026-11-01', '2026-11-02']) {
      const [part] = await partitionRuns(date);
      expect(part).toMatchObject({ n: ROWS, k: ROWS });
      expect(await auditRow(String(part.run_id))).toMatchObject({ trigger: 'schedule', logical_date: date, status: 'succeeded', workflow_id: `scoreline/churn-sched/${date}` });
    }

    // Backfilling again replaces each partition (new run ids, same row count), never duplicates.
    const firstRunIds = await Promise.all(['2026-11-01', '2026-11-02'].map(async (d) => (await partitionRuns(d))[0].run_id));
    await backfillSchedule(sc, 'churn-sched', '2026-11-01', '2026-11-02');
    await waitFor('second backfill', async () => {
      const parts = await Promise.all(['2026-11-01', '2026-11-02'].map(partitionRuns));
      return parts.every((p, i) => p.length === 1 && p[0].run_id !== firstRunIds[i]) ? parts : undefined;
    });
    for (const d of ['2026-11-01', '2026-11-02']) expect(await partitionRuns(d)).toEqual([expect.objectContaining({ n: ROWS, k: ROWS })]);
  }, LONG);

  it('backfill takes a midnight cron on its first date, and a jittered cron on its nominal dates', async () => {
    // 00:00 in Berlin: the server lists times after an instant, so the range's own first midnight used to be left out.
    const midnight = pipeline({ name: 'churn-midnight', sink: { kind: 'parquet', path: 'out/midnight_scores' }, schedule: { cron: '@daily', timezone: 'Europe/Berlin', paused: true } });
    await applySchedule(sc, loaded(midnight));
    const one = await backfillSchedule(sc, 'churn-midnight', '2026-11-02', '2026-11-02');
    expect(one.runs).toEqual([{ logical_date: '2026-11-02', scheduled_at: '2026-11-01T23:00:00.000Z', run_workflow_id: 'scoreline/churn-midnight/2026-11-02' }]);
    expect((await settledRuns('churn-midnight', ['2026-11-02'])).map((x) => [x.logical_date, x.status])).toEqual([['2026-11-02', 'succeeded']]);

    // 23:55 UTC with up to an hour of jitter: most runs are taken the next day, yet each scores its nominal date, every date once.
    const late = pipeline({ name: 'churn-late', sink: { kind: 'parquet', path: 'out/late_scores' }, schedule: { cron: '55 23 * * *', timezone: 'UTC', jitter: '1h', paused: true } });
    await applySchedule(sc, loaded(late));
    const dates = ['2026-11-01', '2026-11-02', '2026-11-03'];
    const r = await backfillSchedule(sc, 'churn-late', dates[0], dates[2], { overlap: 'allow_all' });
    expect(r.runs.map((x) => x.logical_date)).toEqual(dates);
    for (const x of r.runs) expect(Date.parse(x.scheduled_at) - Date.parse(`${x.logical_date}T23:55:00Z`)).toBeGreaterThanOrEqual(0);
    const runs = await settledRuns('churn-late', dates);
    expect(runs.map((x) => [x.logical_date, x.status, x.scheduled_at]).sort()).toEqual(dates.map((d) => [d, 'succeeded', `${d}T23:55:00.000Z`]));
    // Upcoming runs name their nominal date too, though the listed (jittered) time may be past midnight.
    for (const n of (await describeSchedule(sc, 'churn-late')).next_runs) expect(n.logical_date).toBe(n.at.slice(11, 13) === '23' ? n.at.slice(0, 10) : addDays(n.at.slice(0, 10), -1));
  }, LONG);

  it('a date already running is not started twice by a backfill', async () => {
    // A slow run of 2026-11-03 started by hand (150 small chunks, one at a time: it must outlast the backfill's action on a loaded machine).
    const raw = pipeline({ chunk_rows: 20, parallelism: 1 });
    const handle = await sc.startRun({ config: parsePipeline(raw, 'test'), raw, date: '2026-11-03', trigger: 'test' });
    await waitFor('the slow run to start scoring', async () => ((await sc.progress(handle))?.chunksDone ?? 0) >= 1 || undefined);
    // A policy that would skip or cancel a date is refused before anything starts.
    await expect(backfillSchedule(sc, 'churn-sched', '2026-11-03', '2026-11-03', { overlap: 'skip' as never })).rejects.toThrow(
      '--overlap skip: a backfill runs every date once, so buffer_all or allow_all (the others skip or cancel runs)',
    );
    const r = await backfillSchedule(sc, 'churn-sched', '2026-11-03', '2026-11-03', { overlap: 'allow_all' });
    expect(r.runs.map((x) => x.logical_date)).toEqual(['2026-11-03']);
    const [skipped] = await settledRuns('churn-sched', ['2026-11-03']);
    expect(skipped).toMatchObject({ status: 'skipped', reason: 'scoreline/churn-sched/2026-11-03 is already running', run_workflow_id: 'scoreline/churn-sched/2026-11-03' });
    const result = await sc.wait(handle);
    expect(result.status).toBe('succeeded');
    expect(await partitionRuns('2026-11-03')).toEqual([{ run_id: result.runId, n: ROWS, k: ROWS }]);
  }, LONG);

  it('a trigger whose date is already running says it scored nothing (exit 1), not that it is scoring', async () => {
    const raw = pipeline({ chunk_rows: 20, parallelism: 1 });
    const today = berlinDate(new Date());
    const handle = await sc.startRun({ config: parsePipeline(raw, 'test'), raw, date: today, trigger: 'test' });
    try {
      await waitFor('the slow run to start scoring', async () => ((await sc.progress(handle))?.chunksDone ?? 0) >= 1 || undefined);
      const t = await triggerSchedule(sc, 'churn-sched', { overlap: 'allow_all' });
      expect(t).toMatchObject({ skipped_overlap: false, logical_date: today, skipped: `scoreline/churn-sched/${today} is already running` });
      const printed = await cli(['schedule', 'trigger', 'churn-sched', '--overlap', 'allow_all']);
      expect(printed.code).toBe(1);
      expect(printed.stdout).toContain(`not scored: the trigger's run of ${today} was skipped (scoreline/churn-sched/${today} is already running)`);
    } finally {
      await sc.cancelRun(handle.workflowId);
      await sc.wait(handle).catch(() => undefined);
    }
  }, LONG);
});

describe('schedule state', () => {
  it('describe shows next run times with their logical dates; pause and unpause survive apply; delete removes it', async () => {
    // 04:15 in Tokyo (UTC+9, no DST) is 19:15 UTC the day before.
    const raw = pipeline({ name: 'churn-tokyo', schedule: { cron: '15 4 * * *', timezone: 'Asia/Tokyo', overlap: 'skip', pause_on_failure: true, jitter: '0s' } });
    expect((await applySchedule(sc, loaded(raw))).result).toBe('created');
    const info = await describeSchedule(sc, 'churn-tokyo');
    expect(info).toMatchObject({ paused: false, pause_on_failure: true, timezone: 'Asia/Tokyo' });
    expect(info.next_runs.length).toBeGreaterThanOrEqual(3);
    for (const [i, n] of info.next_runs.entries()) {
      expect(n.at).toMatch(/T19:15:00\.000Z$/);
      expect(n.logical_date).toBe(addDays(n.at.slice(0, 10), 1));
      if (i > 0) expect(Date.parse(n.at) - Date.parse(info.next_runs[i - 1].at)).toBe(86_400_000);
    }

    await pauseSchedule(sc, 'churn-tokyo', 'warehouse maintenance');
    expect(await describeSchedule(sc, 'churn-tokyo')).toMatchObject({ paused: true, note: 'warehouse maintenance' });
    // The file does not pin `paused`, so applying it again keeps the operator's pause.
    expect((await applySchedule(sc, loaded(raw))).result).toBe('unchanged');
    expect((await describeSchedule(sc, 'churn-tokyo')).paused).toBe(true);
    const listed = await waitFor('list', async () => {
      const items = await listSchedules(sc);
      return items.some((i) => i.pipeline === 'churn-tokyo') && items.some((i) => i.pipeline === 'churn-sched') ? items : undefined;
    });
    expect(listed.find((i) => i.pipeline === 'churn-tokyo')).toMatchObject({ schedule_id: 'scoreline/churn-tokyo', cron: ['15 4 * * *'], timezone: 'Asia/Tokyo', paused: true });
    await unpauseSchedule(sc, 'churn-tokyo');
    expect((await describeSchedule(sc, 'churn-tokyo')).paused).toBe(false);

    await deleteSchedule(sc, 'churn-tokyo');
    await expect(describeSchedule(sc, 'churn-tokyo')).rejects.toThrow('no schedule scoreline/churn-tokyo in namespace default; create it with: scoreline schedule apply <pipeline file>');
  }, LONG);
});

describe('failures', () => {
  it('a failed run fails its scheduled workflow, and pause_on_failure pauses the schedule', async () => {
    const raw = pipeline({
      name: 'churn-broken',
      source: { kind: 'parquet', path: 'data/nowhere/ds={{ ds }}/*.parquet', key: ['customer_id'] },
      schedule: { cron: '0 2 1 1 *', pause_on_failure: true },
    });
    expect((await applySchedule(sc, loaded(raw))).result).toBe('created');
    const t = await triggerSchedule(sc, 'churn-broken');
    const failure = await sc.client.workflow.getHandle(t.workflow_id!).result().then(
      () => undefined,
      (err: { cause?: { message?: string } }) => err.cause?.message,
    );
    expect(failure).toMatch(new RegExp(`^batch run scoreline/churn-broken/${t.logical_date} did not succeed: plan failed: no input rows for churn-broken on ${t.logical_date}`));
    const info = await waitFor(
      'the schedule to pause itself',
      async () => {
        const i = await describeSchedule(sc, 'churn-broken');
        return i.paused ? i : undefined;
      },
      60_000,
    );
    expect(info.note).toMatch(/fail/i);
    expect(info.recent_runs[0]).toMatchObject({ status: 'failed', logical_date: t.logical_date, run_workflow_id: `scoreline/churn-broken/${t.logical_date}` });
    expect(info.recent_runs[0].reason).toMatch(/plan failed: no input rows for churn-broken/); // describe says why it failed
    await deleteSchedule(sc, 'churn-broken');
  }, LONG);
});

describe('scoreline schedule (CLI)', () => {
  it('prints the diff it applied, says when nothing changed, and exits 2 on bad config or unknown schedules', async () => {
    const dir = join(project, 'pipelines');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'churn-cli.yaml');
    const raw = pipeline({ name: 'churn-cli', schedule: { cron: '0 2 * * *', paused: true } });
    writeFileSync(file, stringify(raw));
    const first = await cli(['schedule', 'apply', file]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^✔ created scoreline\/churn-cli \(\d+ fields\)\n/);
    expect(first.stdout).toMatch(/\+ schedule\.cron\s+\["0 2 \* \* \*"\]/);
    expect(await cli(['schedule', 'apply', file])).toMatchObject({ code: 0, stdout: '✔ scoreline/churn-cli already matches the pipeline file; nothing changed\n' });

    writeFileSync(file, stringify({ ...raw, schedule: { cron: '0 3 * * *', paused: true } }));
    const second = await cli(['schedule', 'apply', file, '--json']);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ result: 'updated', changes: [{ field: 'schedule.cron', before: ['0 2 * * *'], after: ['0 3 * * *'] }] });

    const described = await cli(['schedule', 'describe', 'churn-cli']);
    expect(described.code).toBe(0);
    expect(described.stdout).toMatch(/state\s+PAUSED/);
    expect(described.stdout).toMatch(/cron\s+0 3 \* \* \*/);

    writeFileSync(file, stringify({ ...raw, schedule: { cron: '0 25 * * *', timezone: 'Europe/Berln' } }));
    const bad = await cli(['schedule', 'apply', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${file}: schedule.cron: not a valid cron expression "0 25 * * *": hour "25": values must be 0-23`);
    expect(bad.stderr).toContain(`${file}: schedule.timezone: unknown timezone "Europe/Berln"`);
    // The section taken out: the schedule on the server keeps running, so the error says how to stop it.
    const { schedule: _dropped, ...unscheduled } = raw;
    writeFileSync(file, stringify(unscheduled));
    const removed = await cli(['schedule', 'apply', file]);
    expect(removed.code).toBe(2);
    expect(removed.stderr).toContain('schedule scoreline/churn-cli still exists and runs the pipeline as last applied: remove it with scoreline schedule delete churn-cli');

    const missing = await cli(['schedule', 'trigger', 'no-such-pipeline']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no schedule scoreline/no-such-pipeline');
    const usage = await cli(['schedule', 'backfill', 'churn-cli', '--from', '2026-11-03', '--to', '2026-11-01']);
    expect(usage).toMatchObject({ code: 2, stderr: expect.stringContaining('--from 2026-11-03 is after --to 2026-11-01') });
    expect((await cli(['schedule', 'delete', 'churn-cli'])).code).toBe(0);
  }, LONG);
});
