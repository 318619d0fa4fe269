/**
 * Scoreline schedules on Temporal Schedules: apply a pipeline file's `schedule:` section, and list,
 * describe, pause, unpause, trigger, backfill and delete. What the CLI (`scoreline schedule …`) and the
 * HTTP API call: every function takes a connected ScorelineClient and returns plain JSON-able objects
 * (snake_case keys, ISO timestamps), and throws ScorelineErrors a user can act on (CONFIG for bad
 * input, NOT_FOUND for an unknown schedule).
 */
import { ScheduleAlreadyRunning, ScheduleNotFoundError, type ScheduleDescription, type ScheduleHandle } from '@temporalio/client';
import { msNumberToTs, tsToDate } from '@temporalio/common/lib/time';
import { assertLogicalDate, NAME_PATTERN, type PipelineConfig } from '../config/pipeline';
import type { ScorelineClient } from '../client';
import { ConfigError, ScorelineError, errorMessage } from '../errors';
import { batchWorkflowId, SA_SCHEDULED_START } from '../search-attributes';
import { BACKFILL_OVERLAP_POLICIES, OVERLAP_POLICIES, type BackfillOverlap, type OverlapPolicy } from './config';
import { addDays, clocksChangeOn, logicalDateIn, startOfDateIn } from './logical-date';
import { currentFields, desiredSchedule, diffFields, formatMs, fromTemporalOverlap, toTemporalOverlap, type FieldChange } from './spec';
import { scheduleIdFor, type ScheduledRunMemo } from './types';
import type { RunInput } from '../types';

export { scheduleIdFor } from './types';
export type { FieldChange } from './spec';
export { OVERLAP_POLICIES, SCHEDULE_DEFAULTS, type OverlapPolicy, type ScheduleConfig } from './config';

export interface ApplyResult {
  schedule_id: string;
  pipeline: string;
  /** `unchanged`: the schedule already matched the file, nothing was sent. */
  result: 'created' | 'updated' | 'unchanged';
  /** Field by field (`schedule.cron`, `pipeline.chunk_rows`, …); for `created`, every field with no `before`. */
  changes: FieldChange[];
  dry_run: boolean;
}

export interface ScheduleListItem {
  schedule_id: string;
  pipeline: string;
  cron: string[];
  timezone: string;
  paused: boolean;
  note: string | null;
  next_run: string | null;
  last_run: string | null;
}

export interface ScheduledRunInfo {
  /** Nominal time the run was due (without jitter; with it only once the run's workflow is past retention). */
  scheduled_at: string;
  taken_at: string;
  logical_date: string;
  /** The batch run of that date: `scoreline/<pipeline>/<date>`. */
  run_workflow_id: string;
  /** The schedule's own workflow (`…/scheduled-<time>`) that started or skipped the batch run. */
  workflow_id: string;
  /** running · succeeded · failed · cancelled · terminated · timed_out · skipped (date already running) · unknown */
  status: string;
  reason: string | null;
}

export interface ScheduleInfo {
  schedule_id: string;
  pipeline: string;
  cron: string[];
  timezone: string;
  overlap: OverlapPolicy;
  catchup_window: string;
  pause_on_failure: boolean;
  jitter: string;
  paused: boolean;
  note: string | null;
  /** Upcoming start times (jitter included) and the logical date each will score. */
  next_runs: { at: string; logical_date: string }[];
  /** The server's last ≤ 10 actions, newest first, with the outcome of each run. */
  recent_runs: ScheduledRunInfo[];
  running: string[];
  actions_taken: number;
  skipped_overlap: number;
  missed_catchup_window: number;
  created_at: string;
  updated_at: string | null;
}

export interface TriggerResult {
  schedule_id: string;
  overlap: OverlapPolicy;
  /** True when the overlap policy dropped the run (e.g. `skip` while a run of this schedule is in progress). */
  skipped_overlap: boolean;
  /** Null when the server had not taken the action (yet, or at all: see skipped_overlap). */
  workflow_id: string | null;
  /** Why the action scored nothing although the server took it (its date was already running), else null. */
  skipped: string | null;
  scheduled_at: string | null;
  logical_date: string | null;
  run_workflow_id: string | null;
}

export interface BackfillResult {
  schedule_id: string;
  from: string;
  to: string;
  overlap: OverlapPolicy;
  /** One run per date that has a scheduled time, at the first such time of the date. */
  runs: { logical_date: string; scheduled_at: string; run_workflow_id: string }[];
  /** Dates in the range on which the schedule has no time (e.g. weekends of a weekday cron). */
  dates_without_runs: string[];
  /** Those of them on which the timezone's clocks change: a cron time in the skipped hour does not exist that day. */
  clock_change_dates: string[];
  timezone: string;
}

/** `churn` or `scoreline/churn` → the pipeline name. */
export function pipelineOfSchedule(name: string): string {
  const pipeline = name.startsWith('scoreline/') ? name.slice('scoreline/'.length) : name;
  if (!NAME_PATTERN.test(pipeline)) throw new ConfigError(`"${name}" is not a pipeline name (lower-case letters, digits, - and _) or schedule id scoreline/<pipeline>`);
  return pipeline;
}

/**
 * Create the pipeline's schedule, or update it to match the file. Idempotent: when nothing differs,
 * nothing is sent and the result is `unchanged`. `paused` is only touched when the file sets
 * `schedule.paused`; otherwise a pause made with `schedule pause` survives an apply.
 */
export async function applySchedule(sc: ScorelineClient, pipeline: { config: PipelineConfig; origin?: string }, opts: { dryRun?: boolean } = {}): Promise<ApplyResult> {
  const { config } = pipeline;
  const origin = pipeline.origin ?? `pipeline ${config.name}`;
  if (!config.schedule) {
    // A schedule already on the server goes on running the pipeline it embeds: say how to stop it.
    const existing = await describeOrUndefined(sc.client.schedule.getHandle(scheduleIdFor(config.name)));
    const stop = existing ? `; schedule ${scheduleIdFor(config.name)} still exists and runs the pipeline as last applied: remove it with scoreline schedule delete ${config.name} (or pause it)` : '';
    throw new ConfigError(`${origin}: schedule: required to apply a schedule (e.g. schedule: { cron: "0 2 * * *", timezone: UTC })${stop}`);
  }
  const desired = desiredSchedule({ config, taskQueue: sc.config.taskQueue, searchAttributes: await sc.hasSearchAttributes() });
  const handle = sc.client.schedule.getHandle(desired.scheduleId);
  const dryRun = opts.dryRun ?? false;
  const base = { schedule_id: desired.scheduleId, pipeline: config.name, dry_run: dryRun };

  const existing = await describeOrUndefined(handle);
  if (!existing) {
    const changes = diffFields({}, desired.fields);
    if (!dryRun) {
      try {
        await sc.client.schedule.create(desired.options);
      } catch (err) {
        if (err instanceof ScheduleAlreadyRunning) return applySchedule(sc, pipeline, opts); // created meanwhile: update it instead
        throw refused(origin, err);
      }
    }
    return { ...base, result: 'created', changes };
  }
  const changes = diffFields(currentFields(existing, config.schedule.paused !== undefined), desired.fields);
  if (changes.length === 0) return { ...base, result: 'unchanged', changes };
  if (!dryRun) {
    try {
      await handle.update((previous) => ({
        spec: desired.options.spec,
        action: desired.options.action,
        policies: desired.options.policies,
        typedSearchAttributes: previous.typedSearchAttributes,
        state: {
          paused: config.schedule!.paused ?? previous.state.paused,
          note: desired.options.state?.note ?? previous.state.note,
          remainingActions: previous.state.remainingActions,
        },
      }));
    } catch (err) {
      throw refused(origin, err);
    }
  }
  return { ...base, result: 'updated', changes };
}

/** Every Scoreline schedule (id `scoreline/…`) in the namespace, by id. */
export async function listSchedules(sc: ScorelineClient): Promise<ScheduleListItem[]> {
  const ids: string[] = [];
  for await (const s of sc.client.schedule.list()) if (s.scheduleId.startsWith('scoreline/')) ids.push(s.scheduleId);
  const items: ScheduleListItem[] = [];
  for (const id of ids.sort()) {
    // The listing is eventually consistent and lacks the action's memo (the cron as written): describe each.
    const desc = await describeOrUndefined(sc.client.schedule.getHandle(id));
    if (!desc) continue;
    items.push({
      schedule_id: id,
      pipeline: id.slice('scoreline/'.length),
      cron: cronOf(desc),
      timezone: desc.spec.timezone || 'UTC',
      paused: desc.state.paused,
      note: desc.state.note ?? null,
      next_run: desc.info.nextActionTimes[0]?.toISOString() ?? null,
      last_run: desc.info.recentActions.at(-1)?.takenAt.toISOString() ?? null,
    });
  }
  return items;
}

/** Spec, state, next run times and recent runs with their outcome (looked up per run). */
export async function describeSchedule(sc: ScorelineClient, name: string): Promise<ScheduleInfo> {
  const pipeline = pipelineOfSchedule(name);
  const desc = await describeRequired(sc, pipeline);
  const timezone = desc.spec.timezone || 'UTC';
  const recent = [...desc.info.recentActions].reverse();
  return {
    schedule_id: desc.scheduleId,
    pipeline,
    cron: cronOf(desc),
    timezone,
    overlap: fromTemporalOverlap(desc.policies.overlap),
    catchup_window: formatMs(desc.policies.catchupWindow),
    pause_on_failure: desc.policies.pauseOnFailure,
    jitter: formatMs(desc.spec.jitter ?? 0),
    paused: desc.state.paused,
    note: desc.state.note ?? null,
    next_runs: await Promise.all(desc.info.nextActionTimes.map(async (t) => ({ at: t.toISOString(), logical_date: await nominalDateOf(sc, scheduleIdFor(pipeline), t, timezone, desc.spec.jitter ?? 0) }))),
    recent_runs: await Promise.all(
      recent.map((a) => scheduledRunInfo(sc, pipeline, timezone, { workflowId: a.action.workflow.workflowId, runId: a.action.workflow.firstExecutionRunId, scheduledAt: a.scheduledAt, takenAt: a.takenAt })),
    ),
    running: desc.info.runningActions.map((a) => a.workflow.workflowId),
    actions_taken: desc.info.numActionsTaken,
    skipped_overlap: desc.info.numActionsSkippedOverlap,
    missed_catchup_window: desc.info.numActionsMissedCatchupWindow,
    created_at: desc.info.createdAt.toISOString(),
    updated_at: desc.info.lastUpdatedAt?.toISOString() ?? null,
  };
}

export async function pauseSchedule(sc: ScorelineClient, name: string, note?: string): Promise<{ schedule_id: string; paused: true; note: string }> {
  const pipeline = pipelineOfSchedule(name);
  const text = note || 'paused with scoreline schedule pause';
  await withSchedule(sc, pipeline, (h) => h.pause(text));
  return { schedule_id: scheduleIdFor(pipeline), paused: true, note: text };
}

export async function unpauseSchedule(sc: ScorelineClient, name: string, note?: string): Promise<{ schedule_id: string; paused: false; note: string }> {
  const pipeline = pipelineOfSchedule(name);
  const text = note || 'unpaused with scoreline schedule unpause';
  await withSchedule(sc, pipeline, (h) => h.unpause(text));
  return { schedule_id: scheduleIdFor(pipeline), paused: false, note: text };
}

/**
 * Run now: an action whose nominal time is now, so it scores today's date in the schedule's timezone.
 * By default under the schedule's own overlap policy, like a scheduled run: with `skip`, a trigger while
 * a run of the schedule is in progress is dropped (reported as `skipped_overlap`), and `pause_on_failure`
 * applies (the server watches only runs it does not let overlap). `allow_all` forces a run; the same
 * date is still never run twice at once. Waits up to `waitMs` for the server to take the action.
 */
export async function triggerSchedule(sc: ScorelineClient, name: string, opts: { overlap?: OverlapPolicy; waitMs?: number } = {}): Promise<TriggerResult> {
  const pipeline = pipelineOfSchedule(name);
  if (opts.overlap !== undefined && !OVERLAP_POLICIES.includes(opts.overlap)) throw new ConfigError(`--overlap ${opts.overlap}: expected one of ${OVERLAP_POLICIES.join(', ')}`);
  const before = await describeRequired(sc, pipeline);
  const overlap = opts.overlap ?? fromTemporalOverlap(before.policies.overlap);
  const handle = sc.client.schedule.getHandle(scheduleIdFor(pipeline));
  await withSchedule(sc, pipeline, (h) => h.trigger(toTemporalOverlap(overlap)));
  const result: TriggerResult = { schedule_id: scheduleIdFor(pipeline), overlap, skipped_overlap: false, workflow_id: null, skipped: null, scheduled_at: null, logical_date: null, run_workflow_id: null };
  const deadline = Date.now() + (opts.waitMs ?? 10_000);
  const pause = () => new Promise((r) => setTimeout(r, 250));
  while (Date.now() < deadline) {
    const now = await handle.describe();
    if (now.info.numActionsSkippedOverlap > before.info.numActionsSkippedOverlap) return { ...result, skipped_overlap: true };
    if (now.info.numActionsTaken > before.info.numActionsTaken) {
      const action = now.info.recentActions.at(-1)!;
      const scheduled = sc.client.workflow.getHandle(action.action.workflow.workflowId, action.action.workflow.firstExecutionRunId);
      // Taken is not scored: the scheduled workflow skips a date that is already running. Its memo says
      // which, moments later (or, if it says nothing in time, it is reported as started).
      for (;;) {
        const wf = await scheduled.describe();
        const memo = (wf.memo ?? {}) as ScheduledRunMemo;
        const settled = memo.outcome === 'skipped' || memo.run_id !== undefined || wf.status.name !== 'RUNNING' || Date.now() >= deadline;
        if (settled) {
          const nominal = wf.typedSearchAttributes.get(SA_SCHEDULED_START) ?? action.scheduledAt;
          const date = memo.logical_date ?? logicalDateIn(nominal, now.spec.timezone || 'UTC');
          const skipped = memo.outcome === 'skipped' ? (memo.reason ?? `${batchWorkflowId(pipeline, date)} is already running`) : null;
          return { ...result, workflow_id: wf.workflowId, skipped, scheduled_at: nominal.toISOString(), logical_date: date, run_workflow_id: batchWorkflowId(pipeline, date) };
        }
        await pause();
      }
    }
    await pause();
  }
  return result;
}

/** Largest range one backfill accepts; the server buffers at most ~1000 starts. */
export const MAX_BACKFILL_DAYS = 366;

/**
 * Run the schedule over past dates `from`..`to` (inclusive, in the schedule's timezone): one run per
 * date, at the first time the schedule has on that date, so a date is scored once even when the cron
 * fires several times a day. Each run's logical date is its nominal time's date, as for any scheduled
 * run, so it reads and replaces exactly that partition. `buffer_all` (default) runs the dates one after
 * another; `allow_all` starts them together. A date already running is skipped, not started twice.
 */
export async function backfillSchedule(
  sc: ScorelineClient,
  name: string,
  from: string,
  to: string,
  opts: {
    overlap?: BackfillOverlap;
    /** Only these dates of the range (e.g. the changed ones of a fingerprint-aware backfill); default all. */
    only?: string[];
    /** Work out the runs, start none. */
    dryRun?: boolean;
  } = {},
): Promise<BackfillResult> {
  const pipeline = pipelineOfSchedule(name);
  assertLogicalDate(from, '--from');
  assertLogicalDate(to, '--to');
  if (to < from) throw new ConfigError(`--from ${from} is after --to ${to}`);
  const days = Math.round((Date.parse(to) - Date.parse(from)) / 86_400_000) + 1;
  if (days > MAX_BACKFILL_DAYS) throw new ConfigError(`--from ${from} --to ${to} spans ${days} days; backfill at most ${MAX_BACKFILL_DAYS} at a time`);
  const overlap = opts.overlap ?? 'buffer_all';
  if (!(BACKFILL_OVERLAP_POLICIES as readonly string[]).includes(overlap)) {
    throw new ConfigError(`--overlap ${overlap}: a backfill runs every date once, so ${BACKFILL_OVERLAP_POLICIES.join(' or ')} (the others skip or cancel runs)`);
  }
  const scheduleId = scheduleIdFor(pipeline);
  const desc = await describeRequired(sc, pipeline);
  const timezone = desc.spec.timezone || 'UTC';
  const dates: string[] = [];
  for (let d = from; d <= to; d = addDays(d, 1)) dates.push(d);
  const firstPerDate = await firstTimesOf(sc, scheduleId, dates, timezone, desc.spec.jitter ?? 0);
  const withoutRuns = dates.filter((d) => !firstPerDate.has(d));
  if (opts.only) for (const d of [...firstPerDate.keys()]) if (!opts.only.includes(d)) firstPerDate.delete(d);
  // From the date's midnight (the server takes a period's runs from its start − 1 s) to the date's first
  // time as listed: exactly that run, whose nominal time lies between the two.
  const periods = [...firstPerDate].map(([date, t]) => ({ start: startOfDateIn(date, timezone), end: t, overlap: toTemporalOverlap(overlap) }));
  if (periods.length > 0 && !opts.dryRun) await withSchedule(sc, pipeline, (h) => h.backfill(periods));
  return {
    schedule_id: scheduleId,
    from,
    to,
    overlap,
    runs: [...firstPerDate].map(([date, t]) => ({ logical_date: date, scheduled_at: t.toISOString(), run_workflow_id: batchWorkflowId(pipeline, date) })),
    dates_without_runs: withoutRuns,
    clock_change_dates: withoutRuns.filter((d) => clocksChangeOn(d, timezone)),
    timezone,
  };
}

/** The first time the server lists from `date`'s local midnight on (that of the first nominal time ≥ midnight, jittered), within the next date plus jitter. */
async function firstListedFrom(sc: ScorelineClient, scheduleId: string, date: string, timezone: string, jitterMs: number): Promise<number | undefined> {
  const midnight = startOfDateIn(date, timezone).getTime();
  // A date's first nominal time is before the next midnight, and jitter adds less than jitterMs.
  const until = startOfDateIn(addDays(date, 1), timezone).getTime() + jitterMs + 1_000;
  const r = await sc.client.workflowService.listScheduleMatchingTimes({ namespace: sc.config.namespace, scheduleId, startTime: msNumberToTs(midnight - 1_000), endTime: msNumberToTs(until) });
  const first = r.startTime?.[0];
  return first ? tsToDate(first).getTime() : undefined;
}

/**
 * The logical date of an upcoming time the server lists (jittered): its nominal time's date. The nominal
 * time is at most `jitterMs` earlier; only when that spans a midnight does the server say which side it is on.
 */
async function nominalDateOf(sc: ScorelineClient, scheduleId: string, listed: Date, timezone: string, jitterMs: number): Promise<string> {
  const date = logicalDateIn(listed, timezone);
  if (jitterMs === 0 || logicalDateIn(new Date(listed.getTime() - jitterMs), timezone) === date) return date;
  return (await firstListedFrom(sc, scheduleId, date, timezone, jitterMs)) === listed.getTime() ? date : addDays(date, -1);
}

/**
 * Each date's first time in `timezone`, as the server lists them (with the schedule's jitter added), for
 * the dates that have one. The server lists the times of the nominal times after an instant, jittered,
 * so each date is asked on its own: the first time listed after its local midnight − 1 s is its first
 * nominal time's if it has one, else the same as the next date's (a weekday cron's Saturday, a time in a
 * daylight-saving gap). Nominal and jittered times can fall on different dates near midnight, so the
 * jittered time's own date would not do; without jitter this is the plain listing, date by date.
 */
async function firstTimesOf(sc: ScorelineClient, scheduleId: string, dates: string[], timezone: string, jitterMs: number): Promise<Map<string, Date>> {
  const boundaries = [...dates, addDays(dates.at(-1)!, 1)];
  const firsts: (number | undefined)[] = [];
  for (let i = 0; i < boundaries.length; i += 16) firsts.push(...(await Promise.all(boundaries.slice(i, i + 16).map((d) => firstListedFrom(sc, scheduleId, d, timezone, jitterMs)))));
  const out = new Map<string, Date>();
  dates.forEach((date, i) => {
    if (firsts[i] !== undefined && firsts[i] !== firsts[i + 1]) out.set(date, new Date(firsts[i]!));
  });
  return out;
}

/**
 * The run input a schedule's action embeds (the pipeline as applied, its timezone): what a backfill
 * of it would run, so a fingerprint-aware backfill plans with exactly that config.
 */
export async function scheduledRunInput(sc: ScorelineClient, name: string): Promise<RunInput> {
  const pipeline = pipelineOfSchedule(name);
  const desc = await describeRequired(sc, pipeline);
  const action = desc.action as { type: string; args?: unknown[] };
  const input = action.type === 'startWorkflow' ? (action.args?.[0] as RunInput | undefined) : undefined;
  if (!input || typeof input !== 'object' || !input.config) throw new ConfigError(`schedule ${scheduleIdFor(pipeline)} does not embed a pipeline; apply it again with: scoreline schedule apply <pipeline file>`);
  return input;
}

/** Delete the schedule. Runs it already started go on; their batch runs and outputs are untouched. */
export async function deleteSchedule(sc: ScorelineClient, name: string): Promise<{ schedule_id: string; deleted: true }> {
  const pipeline = pipelineOfSchedule(name);
  await withSchedule(sc, pipeline, (h) => h.delete());
  return { schedule_id: scheduleIdFor(pipeline), deleted: true };
}

async function scheduledRunInfo(
  sc: ScorelineClient,
  pipeline: string,
  timezone: string,
  a: { workflowId: string; runId: string; scheduledAt: Date; takenAt: Date },
): Promise<ScheduledRunInfo> {
  const fallbackDate = logicalDateIn(a.scheduledAt, timezone);
  const info: ScheduledRunInfo = {
    scheduled_at: a.scheduledAt.toISOString(),
    taken_at: a.takenAt.toISOString(),
    logical_date: fallbackDate,
    run_workflow_id: batchWorkflowId(pipeline, fallbackDate),
    workflow_id: a.workflowId,
    status: 'unknown',
    reason: null,
  };
  try {
    const handle = sc.client.workflow.getHandle(a.workflowId, a.runId);
    const wf = await handle.describe();
    // The nominal time (the action's is the jittered one, which can be the next day's near midnight).
    const nominal = wf.typedSearchAttributes.get(SA_SCHEDULED_START);
    if (nominal) info.scheduled_at = nominal.toISOString();
    const memo = (wf.memo ?? {}) as ScheduledRunMemo;
    if (memo.logical_date) Object.assign(info, { logical_date: memo.logical_date, run_workflow_id: memo.run_workflow_id ?? batchWorkflowId(pipeline, memo.logical_date) });
    info.status = memo.outcome === 'skipped' && wf.status.name === 'COMPLETED' ? 'skipped' : runStatusOf(wf.status.name);
    info.reason = memo.reason ?? null;
    // A failed run says why: its failure, read from its (closed) history.
    if (info.status === 'failed' && !info.reason) {
      info.reason = await handle.result().then(
        () => null,
        (err: { cause?: { message?: string }; message?: string }) => err.cause?.message ?? err.message ?? null,
      );
    }
  } catch {
    // Past the namespace's retention the workflow is gone; the schedule still lists the action.
  }
  return info;
}

function runStatusOf(name: string): string {
  const map: Record<string, string> = { RUNNING: 'running', COMPLETED: 'succeeded', FAILED: 'failed', CANCELLED: 'cancelled', TERMINATED: 'terminated', TIMED_OUT: 'timed_out' };
  return map[name] ?? name.toLowerCase();
}

function cronOf(desc: ScheduleDescription): string[] {
  const cron = desc.action.memo?.cron;
  return Array.isArray(cron) ? cron.map(String) : [];
}

async function describeOrUndefined(handle: ScheduleHandle): Promise<ScheduleDescription | undefined> {
  try {
    return await handle.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return undefined;
    throw err;
  }
}

async function describeRequired(sc: ScorelineClient, pipeline: string): Promise<ScheduleDescription> {
  return withSchedule(sc, pipeline, (h) => h.describe());
}

async function withSchedule<T>(sc: ScorelineClient, pipeline: string, fn: (h: ScheduleHandle) => Promise<T>): Promise<T> {
  try {
    return await fn(sc.client.schedule.getHandle(scheduleIdFor(pipeline)));
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) {
      throw new ScorelineError('NOT_FOUND', `no schedule ${scheduleIdFor(pipeline)} in namespace ${sc.config.namespace}; create it with: scoreline schedule apply <pipeline file>`);
    }
    throw err;
  }
}

/** The server validates the spec again (e.g. a cron it reads differently): its refusal is a config error. */
function refused(origin: string, err: unknown): Error {
  const grpcCode = (err as { code?: number }).code;
  if (grpcCode === 3 /* INVALID_ARGUMENT */) return new ConfigError(`${origin}: schedule: the Temporal server refused it: ${errorMessage(err)}`);
  return err instanceof Error ? err : new Error(String(err));
}
