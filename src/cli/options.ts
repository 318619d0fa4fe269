/** Parsers for numeric command-line options: a typo is an error that names the flag and the value typed. */
import { parseWholeNumber } from '../config/numbers';
import { ConfigError } from '../errors';

/** A whole number from `min` to `max` (commander's argParser). */
export const wholeNumber =
  (flag: string, min = 1, max = Number.MAX_SAFE_INTEGER) =>
  (v: string): number =>
    parseWholeNumber(v, `${flag} ${v}`, min, max);

/** A number greater than 0, fractions allowed. */
export const positiveNumber =
  (flag: string) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new ConfigError(`${flag} ${v}: expected a number greater than 0`);
    return n;
  };

/** A TCP port; 0 only where `allowAny` (the system picks a free one). */
export const port = (flag: string, allowAny = false) => wholeNumber(flag, allowAny ? 0 : 1, 65_535);
