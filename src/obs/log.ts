/**
 * Structured logs (docs/observability.md): one pino logger per process writing JSON lines to stderr,
 * or a human-readable line per entry when stderr is a terminal. Activities log through child loggers
 * that carry run_id / workflow_id / chunk; the Temporal SDK's own logger is routed here too
 * (temporalLogger). What is logged is chosen field by field: never a config or connection object,
 * never feature values (error messages are scrubbed of the values they quote), and known secret keys
 * are redacted should one slip in anyway.
 */
import type { LogLevel as TemporalLogLevel, LogMetadata, Logger as TemporalLoggerInterface } from '@temporalio/common';
import pino, { type Logger } from 'pino';
import { ConfigError } from '../errors';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'pretty';

/** Keys whose values never reach a log line, at the top level or one object down. */
const SECRET_KEYS = ['password', 'passphrase', 'token', 'secret', 'authorization', 'private_key', 'privateKey', 'credentials', 'api_key', 'apiKey', 'routing_key', 'config', 'connection', 'connections', 'env'];
export const REDACTED = '[redacted]';

/** `INFO`, `info`, ` Warn ` → a pino level; undefined for undefined/empty; a ConfigError naming `origin` otherwise. */
export function parseLogLevel(value: string | undefined, origin = 'SCORELINE_LOG_LEVEL'): LogLevelName | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const level = value.trim().toLowerCase();
  if (level === 'warning') return 'warn';
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevelName;
  throw new ConfigError(`${origin}: "${value}" is not a log level (expected one of ${LOG_LEVELS.join(', ')})`);
}

export function parseLogFormat(value: string | undefined, origin = 'SCORELINE_LOG_FORMAT'): LogFormat | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const format = value.trim().toLowerCase();
  if (format === 'json' || format === 'pretty') return format;
  throw new ConfigError(`${origin}: "${value}" is not a log format (expected json or pretty)`);
}

/** Where lines go: anything with write(line); stderr by default. */
export interface LogSink {
  write(line: string): unknown;
}

interface Output {
  format: LogFormat;
  sink: LogSink;
  color: boolean;
}

const output: Output = { format: 'json', sink: process.stderr, color: false };

/** pino writes each entry (one JSON line) here; the current output decides its final form. */
const destination = {
  write(line: string): void {
    output.sink.write(output.format === 'pretty' ? formatHuman(line, { color: output.color }) : line);
  },
};

function createRoot(level: LogLevelName): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...SECRET_KEYS, ...SECRET_KEYS.map((k) => `*.${k}`)], censor: REDACTED },
    },
    destination,
  );
}

/**
 * The process's logger. Level from SCORELINE_LOG_LEVEL (default `warn` for embedded use: the demo, tests);
 * the long-running commands (`worker`, `api`, `dev`) call configureLogging with `info` as their default.
 */
export const logger: Logger = createRoot(safeLevel(process.env.SCORELINE_LOG_LEVEL) ?? 'warn');
configureLogging({});

function safeLevel(value: string | undefined): LogLevelName | undefined {
  try {
    return parseLogLevel(value);
  } catch {
    return undefined; // reported by the command that configures logging
  }
}

export interface LoggingOptions {
  level?: LogLevelName;
  /** Default: SCORELINE_LOG_FORMAT, else pretty when stderr is a terminal, else JSON. */
  format?: LogFormat;
  /** Default: process.stderr. */
  sink?: LogSink;
  /** Colour the level in pretty output. Default: pretty output to a terminal without NO_COLOR. */
  color?: boolean;
}

/** Set level, format and destination of the process's logger (and of every child created afterwards). */
export function configureLogging(opts: LoggingOptions): void {
  if (opts.level) logger.level = opts.level;
  const toStderr = !opts.sink || opts.sink === process.stderr;
  output.sink = opts.sink ?? process.stderr;
  output.format = opts.format ?? safeFormat(process.env.SCORELINE_LOG_FORMAT) ?? (toStderr && process.stderr.isTTY ? 'pretty' : 'json');
  output.color = opts.color ?? (output.format === 'pretty' && toStderr && Boolean(process.stderr.isTTY) && !process.env.NO_COLOR);
}

function safeFormat(value: string | undefined): LogFormat | undefined {
  try {
    return parseLogFormat(value);
  } catch {
    return undefined;
  }
}

/**
 * The level a long-running command logs at: its --log-level flag, else SCORELINE_LOG_LEVEL, else `info`.
 * A bad value (or a bad SCORELINE_LOG_FORMAT) is a usage error naming where it came from.
 */
export function commandLogLevel(flag: string | undefined): LogLevelName {
  parseLogFormat(process.env.SCORELINE_LOG_FORMAT); // a bad format is refused like a bad level, not ignored
  return parseLogLevel(flag, '--log-level') ?? parseLogLevel(process.env.SCORELINE_LOG_LEVEL) ?? 'info';
}

/**
 * An error as log fields. Messages that quote an input value (`column "f05" row 3: value 1e40 …`) have
 * the value replaced: the audit row and the Temporal failure keep the full message, logs do not.
 */
export function errorFields(err: unknown): { error: string; error_type?: string } {
  const e = err as { name?: string; message?: unknown; type?: unknown };
  const message = err instanceof Error || typeof e?.message === 'string' ? String(e.message) : String(err);
  const type = typeof e?.type === 'string' ? e.type : e?.name;
  return { error: scrubValues(message), ...(type && type !== 'Error' ? { error_type: type } : {}) };
}

/** A double-quoted value as JSON writes it (so `\"` inside does not end it), or a tuple of them (a key of several columns). */
const QUOTED = String.raw`"(?:[^"\\]|\\.)*"`;
const QUOTED_VALUE = new RegExp(String.raw`\bvalue (?:\(${QUOTED}(?:, ${QUOTED})*\)|${QUOTED}|'[^']*'|\S+)`, 'g');

export function scrubValues(message: string): string {
  return message.replace(QUOTED_VALUE, 'value ‹redacted›');
}

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const LEVEL_COLORS: Record<string, string> = { trace: '90', debug: '36', info: '32', warn: '33', error: '31', fatal: '35' };
const HIDDEN = new Set(['time', 'level', 'msg', 'pid', 'hostname']);

/**
 * One JSON log line → `12:34:56.789 INFO  run planned  run_id=… rows=1000000 chunks=16`. Lines that are
 * not JSON pass through unchanged.
 */
export function formatHuman(line: string, opts: { color?: boolean } = {}): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 23) : typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : '';
  const label = typeof entry.level === 'number' ? (LEVEL_NAMES[entry.level] ?? String(entry.level)) : String(entry.level ?? '');
  const padded = label.toUpperCase().padEnd(5);
  const level = opts.color && LEVEL_COLORS[label] ? `\x1b[${LEVEL_COLORS[label]}m${padded}\x1b[39m` : padded;
  const fields = Object.entries(entry)
    .filter(([k, v]) => !HIDDEN.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${formatValue(v)}`);
  return `${[time, level, String(entry.msg ?? '')].filter(Boolean).join(' ')}${fields.length ? `  ${fields.join(' ')}` : ''}\n`;
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (v === null || typeof v !== 'object') return String(v);
  return JSON.stringify(v);
}

const TEMPORAL_RANK: Record<TemporalLogLevel, number> = { TRACE: 10, DEBUG: 20, INFO: 30, WARN: 40, ERROR: 50 };

/**
 * The level from which Temporal SDK messages are logged. At `info` the SDK would print its whole workflow
 * bundle's module list and every worker state change, so below `debug` it starts at `warn`.
 */
export function temporalThreshold(level: string = logger.level): TemporalLogLevel {
  const rank = logger.levels.values[level] ?? 30;
  if (rank <= 10) return 'TRACE';
  if (rank <= 20) return 'DEBUG';
  if (rank <= 40) return 'WARN';
  return 'ERROR';
}

/** SDK metadata keys in this logger's spelling; everything else keeps its name. */
const META_KEYS: Record<string, string> = {
  workflowId: 'workflow_id',
  runId: 'run_id',
  workflowRunId: 'run_id',
  taskQueue: 'task_queue',
  activityType: 'activity',
  activityId: 'activity_id',
  workflowType: 'workflow_type',
  sdkComponent: 'sdk_component',
  isLocal: 'local',
};
/** Not logged: a task token lets anyone who holds it complete the activity. */
const DROPPED_META = new Set(['taskToken']);

const NO_WORKFLOWS_WARNING = 'No workflows registered, not polling for workflow tasks';

/** The Temporal SDK's Logger interface on top of this logger (Runtime.install({ logger: temporalLogger() })). */
export function temporalLogger(): TemporalLoggerInterface {
  const emit = (level: TemporalLogLevel, message: string, meta?: LogMetadata) => {
    // The chunk queue's worker has activities only, by design: its warning says nothing to act on.
    if (message === NO_WORKFLOWS_WARNING) level = 'DEBUG';
    if (TEMPORAL_RANK[level] < TEMPORAL_RANK[temporalThreshold()]) return;
    const fields: Record<string, unknown> = { component: 'temporal' };
    for (const [key, value] of Object.entries(meta ?? {})) {
      if (value === undefined || DROPPED_META.has(key)) continue;
      fields[META_KEYS[key] ?? key] = value instanceof Error ? errorFields(value).error : value;
    }
    const method = level.toLowerCase() as 'trace' | 'debug' | 'info' | 'warn' | 'error';
    logger[method](fields, message);
  };
  return {
    log: emit,
    trace: (m, meta) => emit('TRACE', m, meta),
    debug: (m, meta) => emit('DEBUG', m, meta),
    info: (m, meta) => emit('INFO', m, meta),
    warn: (m, meta) => emit('WARN', m, meta),
    error: (m, meta) => emit('ERROR', m, meta),
  };
}
