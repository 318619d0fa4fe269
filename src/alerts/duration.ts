/**
 * Durations as people write them in pipeline files: `30m`, `1h30m`, `90s`, `1.5h`, `500ms`, `1d`.
 * Pure (no imports): the workflow parses `alerts.sla` with it to arm its timer.
 */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** `30m` → 1_800_000; undefined if the text is not a positive duration (a bare number has no unit, so it is refused). */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(trimmed)) return undefined;
  let ms = 0;
  for (const [, value, unit] of trimmed.matchAll(PART)) ms += Number(value) * UNIT_MS[unit as keyof typeof UNIT_MS];
  const rounded = Math.round(ms);
  return rounded > 0 ? rounded : undefined;
}

export const DURATION_HINT = 'a duration such as 30m, 1h30m, 90s or 500ms';
