/** A near-real-time result as rows: what the API returns and `scoreline score` prints. */
import type * as arrow from 'apache-arrow';
import type { NrtResult } from './protocol';

type Cell = number | boolean | string | null;

/**
 * One object per input row, in input order: the pipeline's key columns the caller sent (so each
 * prediction can be matched to its row), then the prediction columns; null for a row the NULL policy
 * `skip` dropped.
 */
export function predictionRows(result: NrtResult, rows: arrow.Table, keys: string[]): (Record<string, Cell> | null)[] {
  const keyColumns = keys.map((k) => [k, rows.getChild(k)] as const).filter(([, v]) => v !== null) as [string, arrow.Vector][];
  const outputs = Object.entries(result.predictions);
  const out: (Record<string, Cell> | null)[] = new Array(result.rowsIn);
  const skipped = result.skipped && new Set(result.skipped);
  for (let i = 0; i < result.rowsIn; i++) {
    if (skipped ? skipped.has(i) : outputs.length > 0 && outputs[0][1][i] === null) {
      out[i] = null;
      continue;
    }
    const row: Record<string, Cell> = {};
    for (const [k, v] of keyColumns) row[k] = cell(v.get(i));
    for (const [name, values] of outputs) row[name] = values[i];
    out[i] = row;
  }
  return out;
}

function cell(v: unknown): Cell {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') return v;
  return String(v);
}
