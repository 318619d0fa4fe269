/**
 * The error budget (`max_rejected`): pure functions, shared by the worker (whether to quarantine rows at
 * all) and the workflow (whether the run may commit), so both read the setting the same way.
 */
export type MaxRejected = number | string;

/** Rows the run may quarantine and still succeed: a count, or a share of the planned rows (rounded down). */
export function rejectBudget(maxRejected: MaxRejected | undefined, rowsPlanned: number): number {
  if (maxRejected === undefined) return 0;
  if (typeof maxRejected === 'number') return maxRejected;
  return Math.floor((rowsPlanned * Number.parseFloat(maxRejected)) / 100);
}

/** Whether rows that cannot be scored are quarantined (a budget above 0) or fail their chunk (the default). */
export function quarantines(maxRejected: MaxRejected | undefined): boolean {
  return maxRejected !== undefined && (typeof maxRejected === 'number' ? maxRejected > 0 : Number.parseFloat(maxRejected) > 0);
}

/** `max_rejected` as the user wrote it, with what it allows for this run: `0.1% (12 rows)`, `100 rows`. */
export function describeBudget(maxRejected: MaxRejected | undefined, rowsPlanned: number): string {
  const rows = rejectBudget(maxRejected, rowsPlanned);
  return typeof maxRejected === 'string' ? `${maxRejected} of ${rowsPlanned} rows (${rows} rows)` : `${rows} rows`;
}
