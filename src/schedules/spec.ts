/**
 * What `schedule apply` wants the Temporal Schedule to be, and the same facts read back from the
 * server, in one flat shape (`schedule.cron`, `pipeline.chunk_rows`, `action.task_queue`, …) so the
 * two can be compared field by field. Pure apart from the Temporal types.
 */
import type { ScheduleDescription, ScheduleOptions, ScheduleOptionsStartWorkflowAction, ScheduleOverlapPolicy } from '@temporalio/client';
import type { SearchAttributePair } from '@temporalio/common';
import type { PipelineConfig } from '../config/pipeline';
import { SA_MODEL, SA_PIPELINE, SA_TRIGGER } from '../search-attributes';
import type { RunInput } from '../types';
import { durationMs, type OverlapPolicy } from './config';
import { SCHEDULED_RUN_WORKFLOW, scheduledWorkflowIdBase, scheduleIdFor } from './types';

/** Leaf values of a schedule, keyed by dotted field name; what `apply` compares and prints. */
export type ScheduleFields = Record<string, unknown>;

export interface FieldChange {
  field: string;
  /** undefined: the field is new. */
  before?: unknown;
  /** undefined: the field is gone. */
  after?: unknown;
}

/** Memo key on the schedule's action that keeps the cron text as written (the server keeps only its compiled form). */
const CRON_MEMO = 'cron';

export interface DesiredSchedule {
  scheduleId: string;
  options: ScheduleOptions;
  fields: ScheduleFields;
}

/**
 * The schedule for a pipeline. The action embeds the pipeline as applied (validated, defaults filled
 * in, without its `schedule:` section) like `scoreline run` sends its config: scheduled runs score
 * exactly what was applied, whether or not the worker has the file, and a changed file takes effect at
 * the next `apply`, which shows the change. The normalized form makes the comparison independent of
 * how the file was written (or whether it was named by path or by name).
 */
export function desiredSchedule(opts: { config: PipelineConfig; taskQueue: string; searchAttributes: boolean }): DesiredSchedule {
  const { config } = opts;
  const schedule = config.schedule;
  if (!schedule) throw new Error(`pipeline ${config.name} has no schedule section`);
  const embedded = withoutSchedule(config);
  const input: RunInput = { pipeline: config.name, config: embedded, timezone: schedule.timezone, trigger: 'schedule' };
  const attributes: SearchAttributePair[] = opts.searchAttributes
    ? [
        { key: SA_PIPELINE, value: config.name },
        { key: SA_TRIGGER, value: 'schedule' },
        { key: SA_MODEL, value: modelName(config.model) },
      ]
    : [];
  const action: ScheduleOptionsStartWorkflowAction<(input: RunInput) => Promise<unknown>> = {
    type: 'startWorkflow',
    workflowType: SCHEDULED_RUN_WORKFLOW,
    workflowId: scheduledWorkflowIdBase(config.name),
    taskQueue: opts.taskQueue,
    args: [input],
    memo: { pipeline: config.name, [CRON_MEMO]: schedule.cron },
    typedSearchAttributes: attributes.length ? attributes : undefined,
  };
  const options: ScheduleOptions = {
    scheduleId: scheduleIdFor(config.name),
    spec: { cronExpressions: schedule.cron, timezone: schedule.timezone, jitter: durationMs(schedule.jitter) },
    action,
    policies: {
      overlap: toTemporalOverlap(schedule.overlap),
      catchupWindow: durationMs(schedule.catchup_window),
      pauseOnFailure: schedule.pause_on_failure,
    },
    state: schedule.paused === undefined ? undefined : { paused: schedule.paused, note: schedule.paused ? 'paused by the pipeline file (schedule.paused)' : undefined },
    memo: { pipeline: config.name },
  };
  return {
    scheduleId: options.scheduleId,
    options,
    fields: flatten({
      schedule: {
        cron: schedule.cron,
        timezone: schedule.timezone,
        overlap: schedule.overlap,
        catchup_window: formatMs(durationMs(schedule.catchup_window)),
        pause_on_failure: schedule.pause_on_failure,
        jitter: formatMs(durationMs(schedule.jitter)),
        ...(schedule.paused === undefined ? {} : { paused: schedule.paused }),
      },
      action: actionFields(SCHEDULED_RUN_WORKFLOW, opts.taskQueue, input, attributes),
      pipeline: embedded,
    }),
  };
}

/** The same fields, read back from `describe()`; `paused` only when the file pins it (`withPaused`). */
export function currentFields(desc: ScheduleDescription, withPaused: boolean): ScheduleFields {
  const action = desc.action;
  const input = (action.args?.[0] ?? {}) as RunInput;
  const typed = action.typedSearchAttributes;
  const pairs: { key: { name: string }; value: unknown }[] = !typed ? [] : Array.isArray(typed) ? typed : typed.getAll();
  const ours = new Set([SA_PIPELINE.name, SA_TRIGGER.name, SA_MODEL.name]);
  const attributes = pairs.filter((p) => ours.has(p.key.name));
  return flatten({
    schedule: {
      cron: action.memo?.[CRON_MEMO],
      timezone: desc.spec.timezone || 'UTC',
      overlap: fromTemporalOverlap(desc.policies.overlap),
      catchup_window: formatMs(desc.policies.catchupWindow),
      pause_on_failure: desc.policies.pauseOnFailure,
      jitter: formatMs(desc.spec.jitter ?? 0),
      ...(withPaused ? { paused: desc.state.paused } : {}),
    },
    action: actionFields(action.workflowType, action.taskQueue, input, attributes),
    pipeline: input.config,
  });
}

function actionFields(workflowType: string, taskQueue: string | undefined, input: RunInput, attributes: { key: { name: string }; value: unknown }[]) {
  return {
    workflow_type: workflowType,
    task_queue: taskQueue,
    pipeline: input.pipeline,
    timezone: input.timezone,
    search_attributes: Object.fromEntries(attributes.map((a) => [a.key.name, a.value])),
  };
}

/** Field-by-field differences, in a stable order (`before` → `after`). */
export function diffFields(before: ScheduleFields, after: ScheduleFields): FieldChange[] {
  const keys = [...new Set([...Object.keys(after), ...Object.keys(before)])];
  return keys
    .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
    .map((field) => ({ field, ...(before[field] === undefined ? {} : { before: before[field] }), ...(after[field] === undefined ? {} : { after: after[field] }) }));
}

/** Nested objects become dotted keys; arrays and scalars are leaves; undefined and empty objects vanish. */
export function flatten(value: unknown, prefix = '', out: ScheduleFields = {}): ScheduleFields {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (value !== undefined && prefix) {
    out[prefix] = value;
  }
  return out;
}

function withoutSchedule(config: PipelineConfig): Omit<PipelineConfig, 'schedule'> {
  const { schedule: _schedule, ...rest } = config;
  return JSON.parse(JSON.stringify(rest)) as Omit<PipelineConfig, 'schedule'>; // as it comes back from the server
}

function modelName(ref: string): string {
  return ref.split(/[@:]/)[0];
}

export function toTemporalOverlap(p: OverlapPolicy): ScheduleOverlapPolicy {
  return p.toUpperCase() as ScheduleOverlapPolicy;
}

export function fromTemporalOverlap(p: ScheduleOverlapPolicy | undefined): OverlapPolicy {
  return (p ?? 'SKIP').toLowerCase() as OverlapPolicy;
}

/** 86_400_000 → "1d", 5_400_000 → "1h30m", 0 → "0s": the way durations are written in pipeline files. */
export function formatMs(ms: number): string {
  if (!ms) return '0s';
  const units: [string, number][] = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1_000], ['ms', 1]];
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
