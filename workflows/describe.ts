/** The message worth showing for a failure that crossed Temporal (shared by the run and its alerts). */
/** The innermost typed failure's type in a cause chain (ScorelineInputError, ScorelineChunkTimeout, …), or undefined. */
export function failureType(err: unknown): string | undefined {
  let type: string | undefined;
  for (let e = err as { type?: string; cause?: unknown } | undefined; e && typeof e === 'object'; e = e.cause as typeof e) if (typeof e.type === 'string' && e.type) type = e.type;
  return type;
}

export function describeError(err: unknown): string {
  // ActivityFailure wraps the activity's ApplicationFailure; the useful message is the innermost one.
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && typeof e === 'object' && e.cause && typeof e.cause === 'object' && (e.cause as { message?: string }).message) {
    e = e.cause as { message?: string; cause?: unknown };
  }
  return e?.message ?? String(err);
}
