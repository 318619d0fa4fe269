/** Whole-number settings from flags and environment variables: a typo is an error naming what was typed. */
import { ConfigError } from '../errors';

/** `raw` as a whole number from `min` to `max`; `label` names it in the error (`--limit 0`, `SCORELINE_X=abc`). */
export function parseWholeNumber(raw: string, label: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${label}: expected a whole number ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`}`);
  }
  return n;
}
