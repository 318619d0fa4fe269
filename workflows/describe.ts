/** The message worth showing for a failure that crossed Temporal (shared by the run and its alerts). */
export function describeError(err: unknown): string {
  // ActivityFailure wraps the activity's ApplicationFailure; the useful message is the innermost one.
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && typeof e === 'object' && e.cause && typeof e.cause === 'object' && (e.cause as { message?: string }).message) {
    e = e.cause as { message?: string; cause?: unknown };
  }
  return e?.message ?? String(err);
}
