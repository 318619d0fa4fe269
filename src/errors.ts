/**
 * Errors a user can act on. Every error Scoreline raises on purpose is a ScorelineError with a stable
 * `code`; activities turn the non-retryable ones into non-retryable Temporal failures so a bad input
 * fails the run at once instead of burning retries, and the message reaches the audit row unchanged.
 */
export type ErrorCode =
  | 'CONFIG' // pipeline file or override is invalid
  | 'INPUT' // source data is missing, corrupt or does not fit the model
  | 'MODEL' // model file, manifest or alias problem
  | 'SINK' // output cannot be written or committed
  | 'ALERT' // an alert channel is misconfigured or did not accept an alert
  | 'NOT_FOUND'
  | 'CONFLICT' // the request does not fit the run's state (e.g. cancelling a run that already ended)
  | 'UNAVAILABLE' // nothing answered in time (e.g. no worker polls the task queue)
  | 'INTERNAL';

export class ScorelineError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Retrying cannot help: the same input gives the same error. */
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = `Scoreline${code[0]}${code.slice(1).toLowerCase()}Error`;
  }
}

export class ConfigError extends ScorelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG', message, false, options);
  }
}

export class InputError extends ScorelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INPUT', message, false, options);
  }
}

export class ModelError extends ScorelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MODEL', message, false, options);
  }
}

export class SinkError extends ScorelineError {
  constructor(message: string, retryable = true, options?: { cause?: unknown }) {
    super('SINK', message, retryable, options);
  }
}

/** Alert delivery: a missing variable or a refused request is not retryable, an endpoint that is down is. */
export class AlertError extends ScorelineError {
  constructor(message: string, retryable: boolean, options?: { cause?: unknown }) {
    super('ALERT', message, retryable, options);
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
