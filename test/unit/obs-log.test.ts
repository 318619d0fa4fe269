/**
 * The process logger (src/obs/log.ts): JSON lines with the fields activities bind, secrets that never
 * reach a line, error messages scrubbed of the values they quote, the human format for terminals, levels
 * from flag and environment, and the Temporal SDK's messages routed through it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, InputError } from '../../src/errors';
import { commandLogLevel, configureLogging, errorFields, formatHuman, logger, parseLogLevel, REDACTED, temporalLogger, temporalThreshold } from '../../src/obs/log';

function capture(level: Parameters<typeof configureLogging>[0]['level'] = 'debug', format: 'json' | 'pretty' = 'json') {
  const lines: string[] = [];
  configureLogging({ level, format, sink: { write: (l: string) => lines.push(l) }, color: false });
  return lines;
}

afterEach(() => configureLogging({ level: 'warn', format: 'json', sink: process.stderr }));

describe('JSON lines', () => {
  it('one JSON object per line with level, ISO time, message and the bound run fields', () => {
    const lines = capture('info');
    const log = logger.child({ run_id: 'r-1', workflow_id: 'scoreline/churn/2026-11-01', chunk: 3 });
    log.info({ rows_in: 1000, read_ms: 12.5 }, 'chunk scored');
    log.debug('not at info');
    expect(lines).toHaveLength(1);
    expect(lines[0].endsWith('\n')).toBe(true);
    const entry = JSON.parse(lines[0]);
    expect(entry).toMatchObject({ level: 'info', msg: 'chunk scored', run_id: 'r-1', workflow_id: 'scoreline/churn/2026-11-01', chunk: 3, rows_in: 1000, read_ms: 12.5, pid: process.pid });
    expect(new Date(entry.time).toISOString()).toBe(entry.time);
  });

  it('never writes a secret: known keys are redacted at the top level and one object down', () => {
    const lines = capture('info');
    const connection = { kind: 'snowflake', account: 'acme', user: 'svc', password: 'hunter2-pw', private_key: '-----BEGIN PRIVATE KEY-----abc' };
    logger.info(
      { pipeline: 'churn', connection, config: { source: { connection: 'wh' } }, channel: { name: 'ops', token: 'xoxb-secret-token' }, authorization: 'Bearer api-token-123', secret: 's3cr3t' },
      'something happened',
    );
    const line = lines.join('');
    for (const secret of ['hunter2-pw', 'BEGIN PRIVATE KEY', 'xoxb-secret-token', 'api-token-123', 's3cr3t', 'acme']) expect(line).not.toContain(secret);
    const entry = JSON.parse(line);
    expect(entry).toMatchObject({ pipeline: 'churn', connection: REDACTED, config: REDACTED, authorization: REDACTED, secret: REDACTED, channel: { name: 'ops', token: REDACTED } });
  });

  it('error fields keep the message but not the input values it quotes', () => {
    const err = new InputError('chunk 2 (a.parquet rows 0..999): column "f05" row 17: value 123456.789 loses precision (input "x" is float32); set features.cast: lenient');
    const fields = errorFields(err);
    expect(fields.error_type).toBe('ScorelineInputError');
    expect(fields.error).toContain('column "f05" row 17');
    expect(fields.error).not.toContain('123456.789');
    expect(errorFields('plain')).toEqual({ error: 'plain' });
  });
});

describe('human format', () => {
  it('a readable line: time, level, message, then key=value', () => {
    const lines = capture('info', 'pretty');
    logger.child({ run_id: 'r-1', pipeline: 'churn' }).warn({ error: 'no input rows', rows: 0 }, 'run finished');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN  run finished {2}run_id=r-1 pipeline=churn error="no input rows" rows=0\n$/);
    expect(() => JSON.parse(lines[0])).toThrow();
  });

  it('formats any JSON line; colours only when asked; passes other text through', () => {
    const line = JSON.stringify({ level: 'error', time: '2026-11-01T10:20:30.456Z', pid: 1, msg: 'boom', nested: { a: 1 } });
    expect(formatHuman(line)).toBe('10:20:30.456 ERROR boom  nested={"a":1}\n');
    expect(formatHuman(line, { color: true })).toContain('\x1b[31mERROR');
    expect(formatHuman('not json')).toBe('not json\n');
  });
});

describe('levels', () => {
  it('parses level names in any case, and names the flag or variable when one is wrong', () => {
    expect(parseLogLevel('WARN')).toBe('warn');
    expect(parseLogLevel(' Debug ')).toBe('debug');
    expect(parseLogLevel('warning')).toBe('warn');
    expect(parseLogLevel(undefined)).toBeUndefined();
    expect(parseLogLevel('')).toBeUndefined();
    expect(() => parseLogLevel('loud', '--log-level')).toThrow(ConfigError);
    expect(() => parseLogLevel('loud', '--log-level')).toThrow(/--log-level: "loud" is not a log level/);
  });

  it('long-running commands: the flag, else SCORELINE_LOG_LEVEL, else info', () => {
    const saved = process.env.SCORELINE_LOG_LEVEL;
    try {
      delete process.env.SCORELINE_LOG_LEVEL;
      expect(commandLogLevel(undefined)).toBe('info');
      process.env.SCORELINE_LOG_LEVEL = 'ERROR';
      expect(commandLogLevel(undefined)).toBe('error');
      expect(commandLogLevel('debug')).toBe('debug');
      process.env.SCORELINE_LOG_FORMAT = 'text';
      expect(() => commandLogLevel(undefined)).toThrow(/SCORELINE_LOG_FORMAT: "text" is not a log format \(expected json or pretty\)/);
      delete process.env.SCORELINE_LOG_FORMAT;
    } finally {
      if (saved === undefined) delete process.env.SCORELINE_LOG_LEVEL;
      else process.env.SCORELINE_LOG_LEVEL = saved;
    }
  });
});

describe('Temporal SDK messages', () => {
  it('go through this logger with component "temporal", held to warn unless the level is debug', () => {
    const lines = capture('info');
    expect(temporalThreshold()).toBe('WARN');
    const sdk = temporalLogger();
    sdk.info('Workflow bundle created', { sdkComponent: 'worker' });
    sdk.warn('Activity failed', { sdkComponent: 'worker', workflowId: 'wf-1', workflowRunId: 'run-1', activityType: 'scoreChunk', taskToken: 'c2VjcmV0LXRhc2stdG9rZW4=', error: new Error('value 42 is not finite') });
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]);
    expect(entry).toMatchObject({ level: 'warn', msg: 'Activity failed', component: 'temporal', sdk_component: 'worker', workflow_id: 'wf-1', run_id: 'run-1', activity: 'scoreChunk' });
    expect(entry.taskToken).toBeUndefined();
    expect(entry.error).not.toContain('42');

    const debug = capture('debug');
    expect(temporalThreshold()).toBe('DEBUG');
    temporalLogger().info('Workflow bundle created');
    expect(debug).toHaveLength(1);
  });
});
