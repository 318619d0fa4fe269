/**
 * `alerts.deadline`: a wall-clock time of day in an IANA zone (`06:00 Europe/Berlin`; `06:00` alone is
 * UTC). A run's deadline is the first such instant at or after the run started. Pure (Intl only):
 * the workflow computes it from its own start time, so replays compute the same instant.
 */
import { addDays, checkTimeZone, logicalDateIn } from '../schedules/logical-date';

export interface Deadline {
  hour: number;
  minute: number;
  timeZone: string;
}

const PATTERN = /^([01]?\d|2[0-3]):([0-5]\d)(?:\s+(\S+))?$/;

export const DEADLINE_HINT = 'a time of day HH:MM and an IANA zone, such as "06:00 Europe/Berlin" (no zone: UTC)';

/** `06:00 Europe/Berlin` → {6, 0, Europe/Berlin}; undefined when it is not a time of day or the zone is unknown. */
export function parseDeadline(text: string): Deadline | undefined {
  const m = PATTERN.exec(text.trim());
  if (!m) return undefined;
  const timeZone = m[3] ?? 'UTC';
  if (!checkTimeZone(timeZone).ok) return undefined;
  return { hour: Number(m[1]), minute: Number(m[2]), timeZone };
}

/** Why a deadline does not parse, for the config error (a zone in the wrong case gets a suggestion). */
export function deadlineProblem(text: string): string {
  const m = PATTERN.exec(text.trim());
  if (!m) return `expected ${DEADLINE_HINT}, got ${JSON.stringify(text)}`;
  const zone = checkTimeZone(m[3] ?? 'UTC');
  return zone.ok ? '' : `unknown time zone ${JSON.stringify(m[3])}${zone.suggestion ? ` (did you mean ${zone.suggestion}?)` : ''}: expected an IANA name such as Europe/Berlin`;
}

const wallFormatters = new Map<string, Intl.DateTimeFormat>();

/** `YYYY-MM-DD HH:MM:SS` of `instantMs` on the wall clock of `timeZone`: sortable as text. */
function wallClock(instantMs: number, timeZone: string): string {
  let f = wallFormatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      calendar: 'gregory',
      numberingSystem: 'latn',
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    wallFormatters.set(timeZone, f);
  }
  const parts = f.formatToParts(new Date(instantMs));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('year').padStart(4, '0')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}:${get('second')}`;
}

/**
 * The first instant at which the wall clock of `timeZone` reads `date` `hour:minute` or later: a binary
 * search to the second over ±15 h around the same reading in UTC, like startOfDateIn. A time inside a
 * DST gap (02:30 on the spring-forward night) comes out as the end of the gap.
 */
function instantOf(date: string, hour: number, minute: number, timeZone: string): number {
  const hh = String(hour).padStart(2, '0');
  const mm = String(minute).padStart(2, '0');
  const target = `${date} ${hh}:${mm}:00`;
  const utc = Date.parse(`${date}T${hh}:${mm}:00Z`);
  let lo = utc - 15 * 3_600_000;
  let hi = utc + 15 * 3_600_000;
  while (hi - lo > 1_000) {
    const mid = lo + Math.floor((hi - lo) / 2_000) * 1_000;
    if (wallClock(mid, timeZone) >= target) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** The deadline of a run that started at `startedAtMs`: the next `hour:minute` in its zone at or after the start (epoch ms). */
export function deadlineAfter(deadline: Deadline, startedAtMs: number): number {
  const today = logicalDateIn(new Date(startedAtMs), deadline.timeZone);
  const candidate = instantOf(today, deadline.hour, deadline.minute, deadline.timeZone);
  return candidate >= startedAtMs ? candidate : instantOf(addDays(today, 1), deadline.hour, deadline.minute, deadline.timeZone);
}
