/**
 * The key check every source runs at plan time (`Source.checkKeys`, `source.key_check: strict`): one
 * GROUP BY over the key columns of the planned input, in the backend's own SQL, returning only the
 * duplicate and NULL groups' totals and a few examples. A clean input returns no rows.
 */
import { MAX_KEY_EXAMPLES, type KeyCheck } from './types';

/** Column aliases of the result, upper case so every dialect hands them back as written. */
const key = (i: number) => `K${i}`;

export interface KeyCheckDialect {
  /** Quotes one of our aliases (`K0`, `N`, …). */
  alias(name: string): string;
  /** The key's value as the example text; default: the value itself, turned into text by the caller. */
  text?(expr: string): string;
}

/**
 * `columns` are the key columns as quoted identifiers of `from` (a table, or a table function call).
 * The result's columns, in order: K0 … K<n-1> (the key; as text where the dialect says how), N (its
 * rows), NULL_KEY (1 if a key column is NULL), KEY_COUNT and ROW_COUNT (over all groups of the same
 * NULL_KEY): at most MAX_KEY_EXAMPLES rows per NULL_KEY, most repeated first.
 */
export function keyCheckSql(from: string, columns: string[], d: KeyCheckDialect): string {
  const a = d.alias;
  const keys = columns.map((_, i) => a(key(i)));
  const anyNull = keys.map((k) => `${k} IS NULL`).join(' OR ');
  const text = d.text ?? ((e: string) => e);
  return (
    `WITH ${a('SCORELINE_KEYS')} AS (SELECT ${columns.map((c, i) => `${c} AS ${keys[i]}`).join(', ')}, COUNT(*) AS ${a('N')} FROM ${from} GROUP BY ${columns.join(', ')}), ` +
    `${a('SCORELINE_BAD')} AS (SELECT ${keys.join(', ')}, ${a('N')}, CASE WHEN ${anyNull} THEN 1 ELSE 0 END AS ${a('NULL_KEY')} FROM ${a('SCORELINE_KEYS')} WHERE ${a('N')} > 1 OR ${anyNull}), ` +
    `${a('SCORELINE_RANKED')} AS (SELECT ${keys.join(', ')}, ${a('N')}, ${a('NULL_KEY')}, ` +
    `COUNT(*) OVER (PARTITION BY ${a('NULL_KEY')}) AS ${a('KEY_COUNT')}, SUM(${a('N')}) OVER (PARTITION BY ${a('NULL_KEY')}) AS ${a('ROW_COUNT')}, ` +
    `ROW_NUMBER() OVER (PARTITION BY ${a('NULL_KEY')} ORDER BY ${a('N')} DESC, ${keys.join(', ')}) AS ${a('RN')} FROM ${a('SCORELINE_BAD')}) ` +
    `SELECT ${keys.map((k) => `${text(k)} AS ${k}`).join(', ')}, ${a('N')}, ${a('NULL_KEY')}, ${a('KEY_COUNT')}, ${a('ROW_COUNT')} ` +
    `FROM ${a('SCORELINE_RANKED')} WHERE ${a('RN')} <= ${MAX_KEY_EXAMPLES} ORDER BY ${a('NULL_KEY')}, ${a('RN')}`
  );
}

/** The result's column names in order, for dialects that return rows as objects. */
export function keyCheckColumns(keyCount: number): string[] {
  return [...Array.from({ length: keyCount }, (_, i) => key(i)), 'N', 'NULL_KEY', 'KEY_COUNT', 'ROW_COUNT'];
}

/** Rows of `keyCheckSql` (as arrays, in column order) → KeyCheck; `text` turns a key value into its text. */
export function readKeyCheck(
  rows: unknown[][],
  keyCount: number,
  where: Pick<KeyCheck, 'input' | 'from'>,
  text: (value: unknown, keyIndex: number) => string = (v) => String(v),
): KeyCheck {
  const check: KeyCheck = { ...where, duplicateKeys: 0, duplicateRows: 0, nullKeyRows: 0, examples: [] };
  for (const row of rows) {
    const [n, nullKey, keyTotal, rowTotal] = row.slice(keyCount, keyCount + 4).map((v) => Number(v));
    if (nullKey === 1) {
      check.nullKeyRows = rowTotal;
    } else {
      check.duplicateKeys = keyTotal;
      check.duplicateRows = rowTotal;
      check.examples.push({ values: row.slice(0, keyCount).map((v, i) => text(v, i)), rows: n });
    }
  }
  return check;
}
