/**
 * The `schedule:` section of a pipeline file: when Temporal Schedules start the pipeline, and what
 * happens when runs overlap, are missed or fail. Validated here so a bad cron or timezone fails at
 * `scoreline schedule apply` (naming the field), not silently on the server at 2 a.m.
 */
import { z } from 'zod';
import { DURATION_HINT, parseDuration } from '../alerts/duration';
import { checkTimeZone } from './logical-date';

export const OVERLAP_POLICIES = ['skip', 'buffer_one', 'buffer_all', 'allow_all', 'cancel_other', 'terminate_other'] as const;
/** A backfill runs every date of its range once: only the policies that never skip or cancel a date. */
export const BACKFILL_OVERLAP_POLICIES = ['buffer_all', 'allow_all'] as const;
export type BackfillOverlap = (typeof BACKFILL_OVERLAP_POLICIES)[number];
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

/**
 * Defaults, documented in README "Pipeline file" and docs/schedules.md. catchup_window: a run missed
 * while the Temporal server was down is still taken if the server returns within a day; an outage
 * longer than that is what `schedule backfill` is for (taking a week of missed daily runs at once,
 * unasked, is rarely what anyone wants).
 */
export const SCHEDULE_DEFAULTS = { timezone: 'UTC', overlap: 'skip', catchup_window: '1d', pause_on_failure: false, jitter: '0s' } as const;

/** The server refuses (or silently raises) catch-up windows under 10 s; refusing here keeps apply idempotent. */
const MIN_CATCHUP_MS = 10_000;

const SHORTHANDS = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const CRON_FIELDS: { name: string; min: number; max: number; names?: string[] }[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTHS },
  { name: 'day of week', min: 0, max: 7, names: DAYS }, // 0 and 7 are Sunday, as for the server
];
const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Why `expr` is not a cron expression Scoreline accepts, or undefined if it is one: five fields
 * (minute hour day-of-month month day-of-week) with `*`, numbers, names (JAN, MON), ranges `a-b`, lists
 * `a,b` and steps `/n`; or @hourly/@daily/@weekly/@monthly/@yearly; or `@every 6h[/30m]`. Stricter than
 * the server (no seconds or year fields, no `TZ=` prefix: the timezone has its own field).
 */
export function cronProblem(expr: string): string | undefined {
  const text = expr.trim();
  if (/^(CRON_)?TZ=/i.test(text)) return 'put the timezone in schedule.timezone, not in the cron expression';
  if (text.startsWith('@')) {
    if (SHORTHANDS.has(text)) return undefined;
    if (/^@every\s+\d+[smhd](\/\d+[smhd])?$/.test(text)) return undefined;
    return 'unknown shorthand (expected @hourly, @daily, @weekly, @monthly, @yearly or "@every <n><s|m|h|d>")';
  }
  const fields = text.split(/\s+/);
  if (fields.length !== 5) return `expected 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`;
  for (let i = 0; i < 5; i++) {
    const problem = fieldProblem(fields[i], CRON_FIELDS[i]);
    if (problem) return `${CRON_FIELDS[i].name} "${fields[i]}": ${problem}`;
  }
  // A day of month no listed month has (31 February) never fires; with a day of week too, either matches.
  if (fields[4] === '*') {
    const days = fieldValues(fields[2], CRON_FIELDS[2]);
    const months = fieldValues(fields[3], CRON_FIELDS[3]);
    if (![...months].some((m) => [...days].some((d) => d <= DAYS_IN_MONTH[m - 1]))) {
      return `day of month "${fields[2]}" never falls in month "${fields[3]}", so the schedule would never run`;
    }
  }
  return undefined;
}

/** The values a valid field matches. */
function fieldValues(field: string, spec: (typeof CRON_FIELDS)[number]): Set<number> {
  const out = new Set<number>();
  for (const item of field.split(',')) {
    const [range, step] = item.split('/');
    const [a, b] = range === '*' ? [String(spec.min), String(spec.max)] : range.split('-');
    const value = (v: string) => (/^\d+$/.test(v) ? Number(v) : spec.names!.indexOf(v.toUpperCase()) + spec.min);
    const start = value(a);
    const end = b === undefined ? (step ? spec.max : start) : value(b);
    for (let v = start; v <= end; v += Number(step ?? 1)) out.add(v);
  }
  return out;
}

function fieldProblem(field: string, spec: (typeof CRON_FIELDS)[number]): string | undefined {
  const value = (v: string): number | undefined => {
    const named = spec.names?.indexOf(v.toUpperCase()) ?? -1;
    if (named >= 0) return named + spec.min;
    return /^\d+$/.test(v) ? Number(v) : undefined;
  };
  for (const item of field.split(',')) {
    const m = /^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:\/(\d+))?$/.exec(item);
    if (!m) return `"${item}" is not *, a value, a range a-b or a step x/n`;
    if (m[2] !== undefined && Number(m[2]) < 1) return `step "/${m[2]}" must be at least 1`;
    if (m[1] === '*') continue;
    const [a, b] = m[1].split('-');
    const start = value(a);
    const end = b === undefined ? start : value(b);
    if (start === undefined || end === undefined) return `"${m[1]}" is not a number${spec.names ? ' or name' : ''}`;
    if (start < spec.min || start > spec.max || end < spec.min || end > spec.max) return `values must be ${spec.min}-${spec.max}`;
    if (end < start) return `range "${m[1]}" runs backwards`;
  }
  return undefined;
}

const cron = z.string().superRefine((s, ctx) => {
  const problem = cronProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: `not a valid cron expression ${JSON.stringify(s)}: ${problem}` });
});

const duration = (min = 0) =>
  z.string().superRefine((s, ctx) => {
    const ms = s.trim() === '0' || /^0+(ms|s|m|h|d)$/.test(s.trim()) ? 0 : parseDuration(s);
    if (ms === undefined) ctx.addIssue({ code: 'custom', message: `expected ${DURATION_HINT}, got ${JSON.stringify(s)}` });
    else if (ms < min) ctx.addIssue({ code: 'custom', message: `must be at least ${min / 1000}s, got ${JSON.stringify(s)}` });
  });

const timezone = z.string().superRefine((tz, ctx) => {
  const check = checkTimeZone(tz);
  if (!check.ok) {
    ctx.addIssue({
      code: 'custom',
      message: `unknown timezone ${JSON.stringify(tz)}${check.suggestion ? ` (did you mean "${check.suggestion}"?)` : ''}; expected an IANA name such as UTC, Europe/Berlin or America/New_York`,
    });
  }
});

export const scheduleSchema = z.strictObject({
  /** One cron expression or a list; a run is due at every time any of them matches. */
  cron: z
    .union([cron, z.array(cron).min(1)], {
      error: (iss) => (iss.input === undefined ? 'required (expected a cron expression such as "0 2 * * *", or a list of them)' : 'expected a cron expression such as "0 2 * * *", or a list of them'),
    })
    .transform((c) => (Array.isArray(c) ? c : [c])),
  /** IANA zone the cron is read in, and in which the nominal time becomes the logical date. */
  timezone: timezone.default(SCHEDULE_DEFAULTS.timezone),
  /** What a due run does while an earlier one of this schedule still runs. */
  overlap: z.enum(OVERLAP_POLICIES).default(SCHEDULE_DEFAULTS.overlap),
  /** How late a missed run (server down) may still be taken. */
  catchup_window: duration(MIN_CATCHUP_MS).default(SCHEDULE_DEFAULTS.catchup_window),
  /** Pause the schedule when a scheduled run fails, until someone unpauses it. */
  pause_on_failure: z.boolean().default(SCHEDULE_DEFAULTS.pause_on_failure),
  /** Start each run up to this much later than its nominal time (spreads load; the logical date stays nominal). */
  jitter: duration().default(SCHEDULE_DEFAULTS.jitter),
  /** Set to pin the paused state in the file; leave out to let `schedule pause/unpause` decide. */
  paused: z.boolean().optional(),
});

export type ScheduleConfig = z.output<typeof scheduleSchema>;

/** Milliseconds of a validated duration field (`0s` → 0). */
export function durationMs(text: string): number {
  return parseDuration(text) ?? 0;
}
