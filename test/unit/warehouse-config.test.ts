import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bindTemplate, parsePipeline, templateVars } from '../../src/config/pipeline';
import { isPermanent } from '../../connectors/bigquery';
import { keyExpr } from '../../connectors/snowflake';
import { Connections } from '../../src/connections';
import { ConfigError } from '../../src/errors';

const base = {
  name: 'churn-sf',
  model: 'churn-gbt@champion',
  source: { kind: 'snowflake', connection: 'wh', table: 'ANALYTICS.FEATURES.CUSTOMERS', where: 'ds = {{ ds }}', key: ['customer_id'] },
  sink: { kind: 'snowflake', connection: 'wh', table: 'SCORES.CHURN' },
};

describe('warehouse pipeline config', () => {
  it('accepts table+where and query sources, fills defaults', () => {
    const c = parsePipeline(base, 'p.yaml');
    expect(c.source).toMatchObject({ kind: 'snowflake', connection: 'wh', on_empty: 'fail' });
    expect(c.sink).toMatchObject({ mode: 'replace-partition' });
    const q = parsePipeline({ ...base, source: { kind: 'bigquery', query: 'SELECT * FROM d.t WHERE ds = {{ ds }}', key: ['id'] } }, 'p.yaml');
    expect(q.source).toMatchObject({ kind: 'bigquery', connection: 'default' });
  });

  it('needs exactly one of table and query; where only with a table', () => {
    expect(() => parsePipeline({ ...base, source: { kind: 'snowflake', key: ['id'] } }, 'p.yaml')).toThrow('exactly one of "table" and "query"');
    expect(() => parsePipeline({ ...base, source: { kind: 'snowflake', table: 'T', query: 'SELECT 1', key: ['id'] } }, 'p.yaml')).toThrow('exactly one of');
    expect(() => parsePipeline({ ...base, source: { kind: 'snowflake', query: 'SELECT 1', where: 'x', key: ['id'] } }, 'p.yaml')).toThrow('p.yaml: source.where:');
  });

  it('rejects table names that are not plain identifiers (no SQL through config)', () => {
    for (const table of ['T; DROP TABLE X', 'a.b.c.d', '"quoted"', 'x--', 'FEATURES WHERE 1=1']) {
      expect(() => parsePipeline({ ...base, sink: { ...base.sink, table } }, 'p.yaml'), table).toThrow('p.yaml: sink.table: expected a table name');
    }
    expect(parsePipeline({ ...base, sink: { kind: 'bigquery', table: 'my-project.scores.churn' } }, 'p.yaml').sink).toMatchObject({ table: 'my-project.scores.churn' });
  });
});

describe('bindTemplate', () => {
  const vars = templateVars('2026-11-01', 'churn');
  it('turns every variable into a positional bind, in order', () => {
    expect(bindTemplate("ds = {{ ds }} AND tag <> '{{ds_nodash}}' OR d2 = {{ ds }}", vars, 'positional', 'p')).toEqual({
      sql: "ds = ? AND tag <> '?' OR d2 = ?",
      binds: ['2026-11-01', '20261101', '2026-11-01'],
    });
  });
  it('uses named parameters for BigQuery', () => {
    expect(bindTemplate('ds = {{ ds }} AND p = {{ pipeline }}', vars, 'named', 'p')).toEqual({ sql: 'ds = @ds AND p = @pipeline', binds: { ds: '2026-11-01', pipeline: 'churn' } });
  });
  it('names unknown variables', () => {
    expect(() => bindTemplate('x = {{ dt }}', vars, 'named', 'p.yaml: source.where')).toThrow('p.yaml: source.where: unknown template variable {{ dt }}');
  });
});

describe('connections', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scoreline-conn-'));
  const file = join(dir, 'connections.yaml');
  writeFileSync(
    file,
    [
      'connections:',
      '  wh: { kind: snowflake, account: acme-eu, username: SCORER, database: ANALYTICS, schema: PUBLIC, password_env: WH_PASSWORD }',
      '  bq: { kind: bigquery, project: acme-prod, dataset: scoring, access_token_env: BQ_TOKEN, api_endpoint: "http://127.0.0.1:9050" }',
      '  leaky: { kind: snowflake, account: a, username: u, password: hunter2 }',
    ].join('\n'),
  );

  it('reads credentials from the worker environment, not the file', () => {
    const c = new Connections({ baseDir: dir, env: { WH_PASSWORD: 's3cret', BQ_TOKEN: 'tok' } });
    expect(c.snowflake('wh').options).toMatchObject({ account: 'acme-eu', username: 'SCORER', password: 's3cret', database: 'ANALYTICS' });
    // Two login tries by default (the driver's own 7 take ~2 minutes on an unreachable account); `options` can say otherwise.
    expect(c.snowflake('wh').options.sfRetryMaxLoginRetries).toBe(2);
    const patient = new Connections({ baseDir: dir, env: { SCORELINE_CONNECTION_P: JSON.stringify({ kind: 'snowflake', account: 'a', username: 'u', options: { sfRetryMaxLoginRetries: 7 } }), SNOWFLAKE_PASSWORD: 'x' } });
    expect(patient.snowflake('p').options.sfRetryMaxLoginRetries).toBe(7);
    const bq = c.bigquery('bq');
    expect(bq).toMatchObject({ project: 'acme-prod', dataset: 'scoring', options: { projectId: 'acme-prod', apiEndpoint: 'http://127.0.0.1:9050' } });
    expect(bq.options.authClient).toBeDefined();
  });

  it('says which env variable is missing, and never echoes a secret', () => {
    const c = new Connections({ baseDir: dir, env: {} });
    expect(() => c.snowflake('wh')).toThrow('connection "wh": the password comes from the environment variable WH_PASSWORD, which is not set');
    let message = '';
    try {
      c.snowflake('leaky');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('"password" would put a secret into the connection\'s configuration; name the environment variable that holds it with "password_env" instead');
    expect(message).not.toContain('hunter2');
    // A Snowflake token is pointed at Snowflake's ways to authenticate, not BigQuery's access_token_env.
    const token = new Connections({ baseDir: dir, env: { SCORELINE_CONNECTION_T: JSON.stringify({ kind: 'snowflake', account: 'a', username: 'u', token: 'x' }) } });
    expect(() => token.snowflake('t')).toThrow(/"token" would put a secret .* with "password_env" \(or key-pair auth with "private_key_path" instead/);
  });

  it('never echoes a malformed connection (it may hold a secret) in its error', () => {
    const c = new Connections({ baseDir: dir, env: { SCORELINE_CONNECTION_BAD: '{"kind":"snowflake","password":hunter2}' } });
    expect(() => c.snowflake('bad')).toThrow('SCORELINE_CONNECTION_BAD: not valid JSON');
    expect(() => c.snowflake('bad')).not.toThrow(/hunter2/);
    const yamlDir = mkdtempSync(join(tmpdir(), 'scoreline-conn-'));
    writeFileSync(join(yamlDir, 'connections.yaml'), 'connections:\n  x: { kind: snowflake, password: "hunter2\n');
    expect(() => new Connections({ baseDir: yamlDir, env: {} }).snowflake('x')).toThrow(/invalid YAML at line \d+, column \d+$/);
  });

  it('lets SCORELINE_CONNECTION_<NAME> override the file and checks the kind', () => {
    const c = new Connections({ baseDir: dir, env: { SCORELINE_CONNECTION_WH: JSON.stringify({ kind: 'bigquery', project: 'other-proj' }) } });
    expect(c.bigquery('wh').project).toBe('other-proj');
    expect(() => c.snowflake('wh')).toThrow('connection "wh" is a bigquery connection, the pipeline needs snowflake');
    expect(() => c.snowflake('nope')).toThrow(`connection "nope" is not defined: add it under "connections:" in ${file} (defined there: wh, bq, leaky)`);
  });
});

describe('BigQuery error classes', () => {
  const apiError = (code: number, reason: string, message: string) => Object.assign(new Error(message), { code, errors: [{ reason, message }] });
  it('retries what BigQuery says may pass later, and fails fast on what cannot', () => {
    // Two DML statements on one table at once: the loser's 400 is retried, not a failed run.
    expect(isPermanent(apiError(400, 'invalidQuery', 'Could not serialize access to table p:d.scoreline_run_chunks due to concurrent update'))).toBe(false);
    expect(isPermanent(apiError(403, 'rateLimitExceeded', 'Exceeded rate limits: too many table update operations for this table'))).toBe(false);
    expect(isPermanent(apiError(500, 'backendError', 'Backend error'))).toBe(false);
    expect(isPermanent(apiError(400, 'invalidQuery', 'Syntax error: Unexpected keyword WHERE at [1:20]'))).toBe(true);
    expect(isPermanent(apiError(403, 'accessDenied', 'Access Denied: Table p:d.t: User does not have permission'))).toBe(true);
    expect(isPermanent(apiError(404, 'notFound', 'Not found: Table p:d.t'))).toBe(true);
  });
});

describe('Snowflake key columns', () => {
  const col = (type: string, scale = 0) => ({ getType: () => type, getScale: () => scale });
  it('reads dates, times and timestamps by an explicit format, not the session output formats (milliseconds by default)', () => {
    expect(keyExpr(col('fixed'), '"ID"')).toBe('"ID"');
    expect(keyExpr(col('text'), '"ID"')).toBe('"ID"');
    expect(keyExpr(col('fixed', 2), '"ID"')).toBe('CAST("ID" AS VARCHAR)');
    expect(keyExpr(col('date'), '"D"')).toBe(`TO_VARCHAR("D", 'YYYY-MM-DD')`);
    expect(keyExpr(col('time'), '"T"')).toBe(`TO_VARCHAR("T", 'HH24:MI:SS.FF9')`);
    expect(keyExpr(col('timestamp_ntz'), '"AT"')).toBe(`TO_VARCHAR("AT", 'YYYY-MM-DD HH24:MI:SS.FF9')`);
    // Zoned: the instant in UTC, whatever the session's TIMEZONE.
    expect(keyExpr(col('timestamp_ltz'), '"AT"')).toBe(`TO_VARCHAR(CONVERT_TIMEZONE('UTC', "AT"), 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM')`);
  });
});
