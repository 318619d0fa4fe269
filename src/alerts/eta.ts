/**
 * Where throughput so far takes a run: the projection behind `late` alerts and the estimate that
 * `scoreline status` and the API show. Pure and import-free (workflow code calls it on every chunk's
 * stats; Date.now() is workflow time there).
 *
 * Throughput is measured from the first moment any rows were done, not from the start of scoring: the
 * first chunks' latency (model load, the first read) is paid once and would make an early projection
 * much too pessimistic (with `parallelism: 8`, the first chunk to finish stands for one eighth of the
 * work done by then). So a projection needs two observations: rows done, then more rows done later.
 */

export interface ThroughputBase {
  atMs: number;
  rows: number;
}

export interface Estimate {
  /** Projected end of scoring, epoch ms. */
  finishAtMs: number;
  rowsPerSec: number;
  /** When the estimate was made (the last chunk stats it used), epoch ms. */
  asOfMs: number;
}

/** Rows done so far, to measure throughput by. */
export class ThroughputMeter {
  private base?: ThroughputBase;

  /** Rows done at `nowMs`; the estimate once there is a rate to project with, else undefined. */
  observe(nowMs: number, rowsDone: number, rowsPlanned: number): Estimate | undefined {
    if (!this.base) {
      if (rowsDone > 0) this.base = { atMs: nowMs, rows: rowsDone };
      return undefined;
    }
    return estimateFinish(this.base, nowMs, rowsDone, rowsPlanned);
  }
}

export function estimateFinish(base: ThroughputBase, nowMs: number, rowsDone: number, rowsPlanned: number): Estimate | undefined {
  const rows = rowsDone - base.rows;
  const ms = nowMs - base.atMs;
  if (rows <= 0 || ms <= 0) return undefined;
  const perMs = rows / ms;
  const left = Math.max(0, rowsPlanned - rowsDone);
  return { finishAtMs: Math.round(nowMs + left / perMs), rowsPerSec: Math.round(perMs * 1000 * 10) / 10, asOfMs: nowMs };
}
