/**
 * Bad input at the front doors, the HTTP API and the CLI, in front of a real Temporal dev server and
 * worker: one row per case of the matrix in docs/reliability.md.
 *
 * Requests that must not start anything (auth failure, unknown pipeline, malformed JSON, oversized
 * bodies, wrong types, SQL injection in names) assert the HTTP status / exit code, a message that names
 * the field, and that no workflow was started. Requests that reach the worker with bad data assert the
 * error, that nothing was committed, and the `failed` audit row (batch runs and near-real-time requests).
 *
 * Already covered (not repeated): test/integration/api.test.ts "auth, validation, limits" (401/403 on
 * GET /v1/runs, 400s naming the field, SQL/paths not overridable, 413 for bodies, rows and Temporal's
 * payload limit, 415) and "NULL policy and errors come back like batch"; test/e2e/cli.test.ts (invalid
 * pipeline file, failed run exits 1, bad --set, unreachable Temporal, junk model file).
 *
 * Needs dist/ (the CLI is bin/scoreline.js): `npx tsc -p tsconfig.build.json`.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../src/api/server';
import { ScorelineClient } from '../../src/client';
import type { Stack } from '../../src/dev/stack';
import { HOSTILE_NAME, HOSTILE_VALUES, HUGE_STRING, scorelineCli } from '../helpers/bad-input';
import { copyModels, demoData, FEATURES, FIXTURE_MODELS, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
/** A date no test starts a run for: a request refused at the door must leave it without a workflow. */
const UNTOUCHED = '2026-11-03';
const ROWS = 1_000;
const TOKEN = 'bad-input-token-0123456789';
const SMALL_BODY = 1_000;

let project: string;
let stack: Stack;
let client: ScorelineClient;
let api: ApiServer;
let small: ApiServer;

const PIPELINE = (name: string, source: string, extra = '') => `
name: ${name}
source: { kind: parquet, path: "${source}", key: [customer_id] }
model: churn-gbt@champion
sink: { kind: parquet, path: out/${name.replaceAll('-', '_')} }
chunk_rows: 500
${extra}`;

interface Res {
  status: number;
  json: { error?: { code: string; message: string }; [k: string]: unknown };
}

async function http(method: string, path: string, opts: { body?: unknown; token?: string | null; base?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? TOKEN}`;
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const res = await fetch(`${opts.base ?? api.url}${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : {} };
}

/** True if Temporal has no workflow with this id (nothing was started for it). */
async function noWorkflow(workflowId: string): Promise<boolean> {
  return client.client.workflow
    .getHandle(workflowId)
    .describe()
    .then(
      () => false,
      (err: Error) => {
        if (err.name !== 'WorkflowNotFoundError') throw err;
        return true;
      },
    );
}

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The audit rows of a run or near-real-time request (run_id = the request id), once written. */
async function auditRows(runId: string): Promise<Record<string, unknown>[]> {
  return waitFor(async () => {
    const rows = await query(`SELECT status, error, trigger FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${runId}' ORDER BY updated_at`).catch(() => []);
    return rows.length && rows.at(-1)!.status !== 'running' ? rows : undefined;
  }, `the audit row of ${runId}`);
}

async function inputRows(n: number): Promise<Record<string, number>[]> {
  const rows = await query(`SELECT customer_id, ${FEATURES.join(', ')} FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet') ORDER BY customer_id LIMIT ${n}`);
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)])));
}

beforeAll(async () => {
  project = tempProject('scoreline-bad-api-');
  copyModels(project);
  copyModels(project, FIXTURE_MODELS, 'fixtures');
  await demoData(project, [DATE], ROWS, 500);
  const good = readFileSync(join(project, 'data', 'customers', `ds=${DATE}`, 'part-0.parquet'));
  mkdirSync(join(project, 'data', 'truncated', `ds=${DATE}`), { recursive: true });
  writeFileSync(join(project, 'data', 'truncated', `ds=${DATE}`, 'part-0.parquet'), good.subarray(0, good.length >> 1));
  mkdirSync(join(project, 'pipelines'));
  writeFileSync(join(project, 'pipelines', 'churn-api.yaml'), PIPELINE('churn-api', 'data/customers/ds={{ ds }}/*.parquet'));
  writeFileSync(join(project, 'pipelines', 'churn-truncated.yaml'), PIPELINE('churn-truncated', 'data/truncated/ds={{ ds }}/*.parquet'));
  writeFileSync(join(project, 'pipelines', 'churn-badshape.yaml'), PIPELINE('churn-badshape', 'data/customers/ds={{ ds }}/*.parquet').replace('churn-gbt@champion', 'bad-shape@champion') + 'models_dir: fixtures\n');
  // Pipeline files handed to the CLI directly (not in the pipelines directory the API serves).
  writeFileSync(join(project, 'malformed.yaml'), 'name: churn-malformed\nsource: { kind: parquet, path: "data/x/*.parquet", key: [customer_id]\nmodel: churn-gbt@champion\n');
  writeFileSync(join(project, 'injected.yaml'), PIPELINE('churn-injected', 'data/customers/ds={{ ds }}/*.parquet').replace('key: [customer_id]', `key: ["${HOSTILE_NAME}"]`));
  writeFileSync(
    join(project, 'injected-table.yaml'),
    PIPELINE('churn-injected-table', 'data/customers/ds={{ ds }}/*.parquet').replace(/sink: .*/, `sink: { kind: snowflake, connection: warehouse, table: 'x"; DROP TABLE features; --' }`),
  );
  writeFileSync(join(project, 'malformed.jsonl'), '{"customer_id": 1, "f00": 0.5}\n{"customer_id": 2, "f00": }\n');
  writeFileSync(join(project, 'too-many.jsonl'), `${JSON.stringify({ customer_id: 1, f00: 0.5 })}\n`.repeat(10_001));
  ({ stack, client } = await startTestEnv(project));
  api = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project, log: () => undefined });
  small = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project, maxBodyBytes: SMALL_BODY, log: () => undefined });
});

afterAll(async () => {
  await small?.close();
  await api?.close();
  await stopTestEnv({ client, stack, project });
});

interface RefusedRequest {
  case: string;
  send: () => Promise<Res>;
  status: number;
  /** Matched against error.message: names the field, the pipeline or the limit. */
  message: RegExp;
  /** Workflow ids that must not exist afterwards. */
  notStarted: string[];
}

const runsOf = (name: string) => `/v1/pipelines/${name}/runs`;
const UNTOUCHED_RUN = `scoreline/churn-api/${UNTOUCHED}`;

const REFUSED: RefusedRequest[] = [
  {
    case: 'auth failure: no bearer token',
    send: () => http('POST', runsOf('churn-api'), { token: null, body: { date: UNTOUCHED } }),
    status: 401,
    message: /^missing bearer token: send "Authorization: Bearer <token>"/,
    notStarted: [UNTOUCHED_RUN],
  },
  {
    case: 'auth failure: wrong bearer token',
    send: () => http('POST', '/v1/pipelines/churn-api/score', { token: 'guess', body: { rows: [{ f00: 1 }] } }),
    status: 403,
    message: /^the bearer token is not valid for this server$/,
    notStarted: ['scoreline-nrt/churn-api'],
  },
  {
    case: 'unknown pipeline (batch run)',
    send: () => http('POST', runsOf('nope'), { body: { date: UNTOUCHED } }),
    status: 404,
    message: /^pipeline "nope" not found in this server.s pipelines directory \(SCORELINE_PIPELINES_DIR\)$/,
    notStarted: [`scoreline/nope/${UNTOUCHED}`],
  },
  {
    case: 'unknown pipeline (near-real-time scoring)',
    send: () => http('POST', '/v1/pipelines/nope/score', { body: { rows: [{ f00: 1 }] } }),
    status: 404,
    message: /^pipeline "nope" not found in this server.s pipelines directory \(SCORELINE_PIPELINES_DIR\)$/,
    notStarted: ['scoreline-nrt/nope'],
  },
  {
    case: 'malformed JSON (batch run)',
    send: () => http('POST', runsOf('churn-api'), { body: `{"date": "${UNTOUCHED}",` }),
    status: 400,
    message: /^body: not valid JSON \(/,
    notStarted: [UNTOUCHED_RUN],
  },
  {
    case: 'malformed JSON (near-real-time scoring)',
    send: () => http('POST', '/v1/pipelines/churn-api/score', { body: '{"rows": [{"f00": 1,}]}' }),
    status: 400,
    message: /^body: not valid JSON \(/,
    notStarted: ['scoreline-nrt/churn-api'],
  },
  {
    case: 'oversized request (batch run, body over the server limit)',
    send: () => http('POST', runsOf('churn-api'), { base: small.url, body: { date: UNTOUCHED, overrides: { model: `churn-gbt@${'a'.repeat(SMALL_BODY)}` } } }),
    status: 413,
    message: new RegExp(`^body is over ${SMALL_BODY} bytes; this server accepts at most ${SMALL_BODY} bytes per request \\(scoreline api --max-body-mb\\)$`),
    notStarted: [UNTOUCHED_RUN],
  },
  {
    case: 'wrong type: a number where the date string goes',
    send: () => http('POST', runsOf('churn-api'), { body: { date: 20261103 } }),
    status: 400,
    message: /^body\.date: expected string, received number$/,
    notStarted: [UNTOUCHED_RUN],
  },
  {
    case: 'wrong type: text for a numeric override',
    send: () => http('POST', runsOf('churn-api'), { body: { date: UNTOUCHED, overrides: { parallelism: 'lots' } } }),
    status: 400,
    message: /^body\.overrides\.parallelism: expected number, got "lots"$/,
    notStarted: [UNTOUCHED_RUN],
  },
  {
    case: 'SQL injection in the pipeline name (URL path)',
    send: () => http('POST', runsOf(encodeURIComponent(`churn-api'; DROP TABLE scoreline_runs; --`)), { body: { date: UNTOUCHED } }),
    status: 400,
    message: /^path\.name: a pipeline name \(lower-case letters, digits, - and _\)$/,
    notStarted: [UNTOUCHED_RUN],
  },
  {
    case: 'SQL injection in an override value (model reference)',
    send: () => http('POST', runsOf('churn-api'), { body: { date: UNTOUCHED, overrides: { model: `x'; DROP TABLE scoreline_runs; --` } } }),
    status: 400,
    message: /model: expected a model reference such as churn@champion or churn:3, got "x'; DROP TABLE scoreline_runs; --"/,
    notStarted: [UNTOUCHED_RUN],
  },
  {
    case: 'SQL injection in an override key (a column name)',
    send: () => http('POST', runsOf('churn-api'), { body: { date: UNTOUCHED, overrides: { [`features.impute_values.${HOSTILE_NAME}`]: 0 } } }),
    status: 400,
    message: /^body\.overrides\.features\.impute_values\.customers; DROP TABLE x--: not overridable through the API/,
    notStarted: [UNTOUCHED_RUN],
  },
];

describe('API: requests refused at the door start nothing', () => {
  it.each(REFUSED)('$case', async ({ send, status, message, notStarted }) => {
    const res = await send();
    expect(res.status, JSON.stringify(res.json)).toBe(status);
    expect(res.json.error?.message).toMatch(message);
    for (const id of notStarted) expect(await noWorkflow(id), id).toBe(true);
  });
});

describe('API: bad data that reaches the worker fails, commits nothing, and is audited "failed"', () => {
  it('batch run over a truncated Parquet file: 202, then failed with the file named', async () => {
    const started = await http('POST', runsOf('churn-truncated'), { body: { date: DATE } });
    expect(started.status).toBe(202);
    const runId = String(started.json.run_id);
    const done = await waitFor(async () => {
      const r = await http('GET', `/v1/runs/${runId}`);
      return r.json.status === 'running' ? undefined : r.json;
    }, 'the run to finish');
    const error = /plan failed: .*data\/truncated\/ds=2026-11-01\/part-0\.parquet: not a readable Parquet file/;
    expect(done).toMatchObject({ status: 'failed', phase: 'failed', pipeline: 'churn-truncated', trigger: 'api' });
    expect(done.error).toMatch(error);
    expect(existsSync(join(project, 'out', 'churn_truncated'))).toBe(false);
    const audit = await auditRows(runId);
    expect(audit.at(-1)).toMatchObject({ status: 'failed', trigger: 'api' });
    expect(String(audit.at(-1)!.error)).toMatch(error);
  });

  interface NrtFailure {
    case: string;
    pipeline: string;
    rows: () => Promise<Record<string, unknown>[]>;
    status: number;
    message: RegExp;
  }
  const NRT_FAILURES: NrtFailure[] = [
    {
      case: 'huge string (1 MiB) in a feature column',
      pipeline: 'churn-api',
      rows: async () => (await inputRows(1)).map((r) => ({ ...r, f07: HUGE_STRING })),
      status: 400,
      message: /column "f07" has type Utf8, which cannot feed float32 input "features" \(cast it in the source\)/,
    },
    {
      case: 'wrong model shape (manifest does not match the model)',
      pipeline: 'churn-badshape',
      rows: async () => [{ customer_id: 1, age: 30, tenure: 2, spend: 10 }],
      status: 503,
      message: /model bad-shape:1: manifest does not match the model:\s+- input "features" is not a model input \(model inputs: age, tenure, spend\)/,
    },
  ];

  it.each(NRT_FAILURES)('near-real-time: $case', async ({ pipeline, rows, status, message }) => {
    const requestId = randomUUID();
    const res = await http('POST', `/v1/pipelines/${pipeline}/score`, { body: { rows: await rows(), request_id: requestId } });
    expect(res.status, JSON.stringify(res.json).slice(0, 500)).toBe(status);
    expect(res.json.error?.message).toMatch(message);
    // Near-real-time requests commit nothing but their audit row: it says failed, with the same error.
    const audit = await auditRows(requestId);
    expect(audit.at(-1)).toMatchObject({ status: 'failed', trigger: 'nrt' });
    expect(String(audit.at(-1)!.error)).toMatch(message);
  });

  it('near-real-time: key values with quotes, comment markers and a 1 MiB string are echoed back unchanged', async () => {
    const values = [...HOSTILE_VALUES, HUGE_STRING];
    const rows = (await inputRows(values.length)).map((r, i) => ({ ...r, customer_id: values[i] }));
    const res = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows } });
    expect(res.status, JSON.stringify(res.json).slice(0, 500)).toBe(200);
    const predictions = res.json.predictions as { customer_id: string; churn_probability: number }[];
    expect(predictions.map((p) => p.customer_id)).toEqual(values);
    expect(predictions.every((p) => Number.isFinite(p.churn_probability))).toBe(true);
    const audit = await auditRows(String(res.json.request_id));
    expect(audit.at(-1)).toMatchObject({ status: 'succeeded', error: null });
  });
});

describe('CLI', () => {
  const cli = (args: string[], env: Record<string, string> = {}) => scorelineCli(project, args, { TEMPORAL_ADDRESS: stack.address, SCORELINE_PROJECT_DIR: project, ...env });

  interface CliRefusal {
    case: string;
    args: string[];
    env?: Record<string, string>;
    /** Matched against stderr. */
    message: RegExp;
    notStarted: string[];
  }
  const REFUSALS: CliRefusal[] = [
    {
      case: 'unknown pipeline',
      args: ['run', 'nope', '--date', UNTOUCHED],
      message: /^error: pipeline "nope" not found in .*\/pipelines \(found: churn-api\.yaml, churn-badshape\.yaml, churn-truncated\.yaml\): pass the YAML file path instead of the name, or point SCORELINE_PIPELINES_DIR at the directory that holds it$/m,
      notStarted: [`scoreline/nope/${UNTOUCHED}`],
    },
    {
      case: 'malformed YAML in the pipeline file',
      args: ['run', 'malformed.yaml', '--date', UNTOUCHED],
      message: /^error: malformed\.yaml: invalid YAML: .*at line \d+, column \d+/m,
      notStarted: [`scoreline/churn-malformed/${UNTOUCHED}`],
    },
    {
      case: 'SQL injection in a column name (source.key)',
      args: ['run', 'injected.yaml', '--date', UNTOUCHED],
      message: new RegExp(`^error: injected\\.yaml: source\\.key\\.0: expected a column name \\(letters, digits, _; not starting with a digit\\), got "${HOSTILE_NAME}"$`, 'm'),
      notStarted: [`scoreline/churn-injected/${UNTOUCHED}`],
    },
    {
      case: 'SQL injection in a table name (sink.table)',
      args: ['run', 'injected-table.yaml', '--date', UNTOUCHED],
      message: /^error: injected-table\.yaml: sink\.table: expected a table name such as FEATURES, SCHEMA\.FEATURES or project\.dataset\.features \(letters, digits, _\), got "x\\"; DROP TABLE features; --"$/m,
      notStarted: [`scoreline/churn-injected-table/${UNTOUCHED}`],
    },
    {
      case: 'malformed JSON rows (scoreline score, JSON Lines)',
      args: ['score', 'churn-truncated', '--rows', 'malformed.jsonl'],
      message: /^error: malformed\.jsonl: line 2 is not JSON \(/m,
      notStarted: ['scoreline-nrt/churn-truncated'],
    },
    {
      case: 'oversized request (scoreline score, 10,001 rows)',
      args: ['score', 'churn-truncated', '--rows', 'too-many.jsonl'],
      message: /^error: too-many\.jsonl: 10001 rows; a near-real-time request takes at most 10000 \(start a batch run for more\)$/m,
      notStarted: ['scoreline-nrt/churn-truncated'],
    },
    {
      case: 'wrong type in an override (--set parallelism=lots)',
      args: ['run', 'churn-api', '--date', UNTOUCHED, '--set', 'parallelism=lots'],
      message: /^error: .*\/pipelines\/churn-api\.yaml: parallelism: expected number, got "lots"$/m,
      notStarted: [UNTOUCHED_RUN],
    },
    {
      case: 'a typo in a flag value (worker --concurrency abc)',
      args: ['worker', '--concurrency', 'abc'],
      message: /^error: --concurrency abc: expected a whole number ≥ 1$/m,
      notStarted: [],
    },
    {
      case: 'a typo in a worker setting (SCORELINE_WORKER_CONCURRENCY=0)',
      args: ['worker'],
      env: { SCORELINE_WORKER_CONCURRENCY: '0' },
      message: /^error: SCORELINE_WORKER_CONCURRENCY=0: expected a whole number ≥ 1$/m,
      notStarted: [],
    },
    {
      case: 'out-of-range limit (runs list --limit 0)',
      args: ['runs', 'list', '--limit', '0'],
      message: /^error: --limit 0: expected a whole number from 1 to 1000$/m,
      notStarted: [],
    },
    {
      case: 'a mistyped directory (sql --data)',
      args: ['sql', 'SELECT 1', '--data', 'no-such-dir'],
      message: /^error: --data: no such directory: .*\/no-such-dir$/m,
      notStarted: [],
    },
  ];

  it.each(REFUSALS)('refused before any run (exit 2): $case', async ({ args, env, message, notStarted }) => {
    const r = await cli(args, env);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    for (const id of notStarted) expect(await noWorkflow(id), id).toBe(true);
  });

  it('a worker whose metrics port is taken says so and exits 2 at once (it used to stay alive)', async () => {
    const busy = createServer();
    await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', ok));
    try {
      const port = (busy.address() as AddressInfo).port;
      const started = Date.now();
      const r = await cli(['worker', '--metrics-port', String(port)]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^error: metrics port ${port} on 127\\.0\\.0\\.1 is in use`, 'm'));
      expect(Date.now() - started).toBeLessThan(60_000); // the helper's own timeout is 120 s
    } finally {
      busy.close();
    }
  });

  it('a run over a truncated file exits 1, names the file, commits nothing, and `scoreline sql` shows it failed', async () => {
    const r = await cli(['run', 'churn-truncated', '--date', DATE, '--set', 'sink.path=out/cli_truncated', '--json']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.json).toMatchObject({ status: 'failed', pipeline: 'churn-truncated', rows_out: 0 });
    const error = /plan failed: .*data\/truncated\/ds=2026-11-01\/part-0\.parquet: not a readable Parquet file/;
    expect(String(r.json!.error)).toMatch(error);
    expect(existsSync(join(project, 'out', 'cli_truncated'))).toBe(false);
    const audit = await cli(['sql', `SELECT status, error FROM scoreline_runs WHERE run_id = '${r.json!.run_id}'`, '--json']);
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.json!.status).toBe('failed');
    expect(String(audit.json!.error)).toMatch(error);
  });
});
