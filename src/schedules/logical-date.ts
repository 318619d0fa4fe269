/**
 * Calendar dates in a timezone: the logical date of a scheduled run is the calendar date of its
 * nominal (scheduled) time in the schedule's timezone, so a 00:30 Europe/Berlin run on 2026-11-02 scores
 * 2026-11-02 although UTC still says 2026-11-01. Pure (Intl only): workflow code imports it.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    // en-US with explicit numeric parts: formatToParts gives year/month/day whatever the host locale.
    f = new Intl.DateTimeFormat('en-US', { timeZone, calendar: 'gregory', numberingSystem: 'latn', year: 'numeric', month: '2-digit', day: '2-digit' });
    formatters.set(timeZone, f);
  }
  return f;
}

/** `YYYY-MM-DD` of `instant` on the wall calendar of `timeZone` (IANA name, e.g. Europe/Berlin). */
export function logicalDateIn(instant: Date, timeZone: string): string {
  const parts = formatterFor(timeZone).formatToParts(instant);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('year').padStart(4, '0')}-${get('month')}-${get('day')}`;
}

/**
 * The first instant whose calendar date in `timeZone` is `date` (local midnight, or the end of the DST
 * gap where a zone skips midnight). A binary search over ±15 h around UTC midnight, to the second: it
 * needs no offset arithmetic, so gaps and overlaps come out right by construction.
 */
export function startOfDateIn(date: string, timeZone: string): Date {
  const utcMidnight = Date.parse(`${date}T00:00:00Z`);
  let lo = utcMidnight - 15 * 3_600_000; // still the previous date in every zone (UTC−12 … UTC+14)
  let hi = utcMidnight + 15 * 3_600_000; // already this date (or later) in every zone
  while (hi - lo > 1_000) {
    const mid = lo + Math.floor((hi - lo) / 2_000) * 1_000;
    if (logicalDateIn(new Date(mid), timeZone) >= date) hi = mid;
    else lo = mid;
  }
  return new Date(hi);
}

/** Whether `date` is not 24 hours long in `timeZone` (a daylight-saving change). */
export function clocksChangeOn(date: string, timeZone: string): boolean {
  return startOfDateIn(addDays(date, 1), timeZone).getTime() - startOfDateIn(date, timeZone).getTime() !== 86_400_000;
}

/** `date` plus `days` calendar days, as `YYYY-MM-DD`. */
export function addDays(date: string, days: number): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);
}

/**
 * Is `timeZone` an IANA zone name this process knows? Returns the canonical spelling when only the case
 * differs (`europe/berlin` → `Europe/Berlin`), so callers can say "did you mean".
 */
export function checkTimeZone(timeZone: string): { ok: true } | { ok: false; suggestion?: string } {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/.test(timeZone)) return { ok: false };
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone }).resolvedOptions().timeZone;
  } catch {
    return { ok: false };
  }
  // Intl matches names case-insensitively; the Temporal server (Go's time.LoadLocation) does not.
  if (resolved !== timeZone && resolved.toLowerCase() === timeZone.toLowerCase()) return { ok: false, suggestion: resolved };
  return { ok: true };
}
