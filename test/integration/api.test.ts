/**
 * The HTTP API on a real port in front of a real Temporal dev server and worker: auth, validation,
 * limits, the OpenAPI document, batch runs started / read / listed / cancelled over HTTP, and
 * near-real-time scoring whose predictions equal the batch run's for the same rows.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as arrow from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../src/api/server';
import { ScorelineClient } from '../../src/client';
import type { Stack } from '../../src/dev/stack';
import { ModelStore, readManifest } from '../../src/models/store';
import { parsePipeline } from '../../src/config/pipeline';
import { NrtClient } from '../../src/nrt/client';
import { MAX_ROWS_PER_REQUEST, rowsFromObjects } from '../../src/nrt/rows';
import { copyModels, demoData, directScores, FEATURES, query, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const ROWS = 2_000;
const TOKEN = 'test-token-0123456789';

let project: string;
let stack: Stack;
let client: ScorelineClient;
let api: ApiServer;

const PIPELINE = (name: string, model: string, extra = '') => `
name: ${name}
source: { kind: parquet, path: "data/customers/ds={{ ds }}/*.parquet", key: [customer_id] }
model: ${model}
sink: { kind: parquet, path: out/${name.replaceAll('-', '_')} }
chunk_rows: 500
parallelism: 2
${extra}`;

async function http(method: string, path: string, opts: { body?: unknown; raw?: Uint8Array; type?: string; token?: string | null; base?: string } = {}) {
  const headers: Record<string, string> = {};
  if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? TOKEN}`;
  let body: string | Uint8Array | undefined;
  if (opts.raw) {
    body = opts.raw;
    headers['content-type'] = opts.type ?? 'application/vnd.apache.arrow.stream';
  } else if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] = opts.type ?? 'application/json';
  }
  const res = await fetch(`${opts.base ?? api.url}${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
}

/** The first `n` input rows of the demo partition, as row objects (customer_id + f00..f31). */
async function inputRows(n: number): Promise<Record<string, number>[]> {
  const rows = await query(`SELECT customer_id, ${FEATURES.join(', ')} FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet') ORDER BY customer_id LIMIT ${n}`);
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)])));
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

beforeAll(async () => {
  project = tempProject('scoreline-api-');
  const models = copyModels(project);
  // A model with two versions, for promotion: churn:1 = the tree ensemble, churn:2 = the MLP.
  const store = new ModelStore(models);
  for (const from of ['churn-gbt', 'churn-mlp']) {
    await store.add({ modelPath: join(models, from, '1', 'model.onnx'), manifest: readManifest(join(models, from, '1', 'scoreline.model.yaml')), name: 'churn' });
  }
  await store.setAlias('churn', 'champion', '1');
  await demoData(project, [DATE, '2026-11-02', '2026-11-03'], ROWS, 500);
  mkdirSync(join(project, 'pipelines'));
  writeFileSync(join(project, 'pipelines', 'churn-api.yaml'), PIPELINE('churn-api', 'churn-gbt@champion'));
  writeFileSync(join(project, 'pipelines', 'churn-live.yaml'), PIPELINE('churn-live', 'churn@champion'));
  writeFileSync(join(project, 'pipelines', 'churn-skip.yaml'), PIPELINE('churn-skip', 'churn-gbt@champion', 'features: { nulls: skip }'));
  ({ stack, client } = await startTestEnv(project));
  api = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project, log: () => undefined });
});

afterAll(async () => {
  await api?.close();
  await stopTestEnv({ client, stack, project });
});

describe('auth, validation, limits', () => {
  it('401 without a token, 403 with a wrong one; health and OpenAPI are open', async () => {
    const none = await http('GET', '/v1/runs', { token: null });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(none.json.error).toMatchObject({ code: 'unauthorized' });
    expect(none.json.error.request_id).toMatch(/^[0-9a-f-]{36}$/);
    const wrong = await http('POST', '/v1/pipelines/churn-api/score', { token: 'nope', body: { rows: [{}] } });
    expect(wrong.status).toBe(403);
    expect((await http('GET', '/healthz', { token: null })).status).toBe(200);
    expect((await http('GET', '/openapi.json', { token: null })).status).toBe(200);
  });

  it('400s name the field', async () => {
    const badDate = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: '2026-13-45x' } });
    expect(badDate.status).toBe(400);
    expect(badDate.json.error.message).toMatch(/^body\.date: /);
    const unknown = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: DATE, dryrun: true } });
    expect(unknown.json.error.message).toMatch(/body: unknown field "dryrun"/);
    const override = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: DATE, overrides: { chunk_rows: 'many' } } });
    expect(override.status).toBe(400);
    expect(override.json.error.message).toMatch(/^body\.overrides\.chunk_rows: expected a row count/);
    expect(override.json.error.message).not.toMatch(/\.ya?ml/); // the server's file paths are not the caller's business
    // Well-formed dates of days that do not exist, and ranges that cannot match: 400s too (they were 500s).
    const noSuchDay = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: '2026-02-30' } });
    expect(noSuchDay.status).toBe(400);
    expect(noSuchDay.json.error.message).toMatch(/^body\.date: a calendar date YYYY-MM-DD/);
    const listDay = await http('GET', '/v1/runs?date=2026-11-45');
    expect(listDay.status).toBe(400);
    expect(listDay.json.error.message).toMatch(/^query\.date: a calendar date/);
    const reversed = await http('GET', '/v1/runs?from=2026-11-05&to=2026-11-01');
    expect(reversed.status).toBe(400);
    expect(reversed.json.error.message).toBe('from 2026-11-05 is after to 2026-11-01: nothing could match');
    // Where data comes from or goes is not the caller's to change: no SQL or paths through a token.
    for (const field of ['source.query', 'source.where', 'sink.path', 'audit.path', 'models_dir']) {
      const r = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: DATE, overrides: { [field]: 'x' } } });
      expect(r.status, field).toBe(400);
      expect(r.json.error.message).toMatch(new RegExp(`^body\\.overrides\\.${field.replace('.', '\\.')}: not overridable through the API`));
    }
    const badRescore = await http('POST', '/v1/pipelines/churn-api/runs', { body: { only_quarantined: 'last-night' } });
    expect(badRescore.status).toBe(400);
    expect(badRescore.json.error.message).toMatch(/^body\.only_quarantined: a run id \(UUID\)/);
    const unknownRun = await http('POST', '/v1/pipelines/churn-api/runs', { body: { only_quarantined: '01a223f5-0000-7000-8000-000000000000' } });
    expect(unknownRun.status).toBe(400);
    expect(unknownRun.json.error.message).toBe(
      "no run with id 01a223f5-0000-7000-8000-000000000000 in namespace default; give its logical date too (--date / \"date\") if it is past Temporal's retention",
    );
    const badEscape = await http('GET', '/v1/runs/%E0%A4%A');
    expect(badEscape.status).toBe(400);
    expect(badEscape.json.error.message).toMatch(/^path\.\w+: not a valid percent-encoded value/);
    const status = await http('GET', '/v1/runs?status=exploded');
    expect(status.status).toBe(400);
    expect(status.json.error.message).toMatch(/^query\.status: /);
    const noRows = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: [] } });
    expect(noRows.json.error.message).toMatch(/^body\.rows: /);
    const text = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: [{ f00: 1 }, { f00: 'x' }] } });
    expect(text.status).toBe(400);
    expect(text.json.error.message).toBe('body.rows[1].f00 is a string but body.rows[0].f00 is a number: a column holds one type (features are numbers)');
    // The odd one out first: both rows are named, so the string in row 0 is not blamed on row 1.
    const first = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: [{ f00: '1.5' }, { f00: 2 }] } });
    expect(first.json.error.message).toMatch(/^body\.rows\[1\]\.f00 is a number but body\.rows\[0\]\.f00 is a string/);
    const missing = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: [{ f00: 1 }] } });
    expect(missing.status).toBe(400);
    expect(missing.json.error.message).toMatch(/feature column "f01" is missing/);
    const badJson = await http('POST', '/v1/pipelines/churn-api/runs', { body: '{"date":' });
    expect(badJson.json.error.message).toMatch(/body: not valid JSON/);
    expect((await http('POST', '/v1/pipelines/nope/runs', { body: { date: DATE } })).status).toBe(404);
    expect((await http('POST', '/v1/pipelines/churn-api/score', { body: 'a,b', type: 'text/csv' })).status).toBe(415);
    expect((await http('GET', '/v1/nothing')).status).toBe(404);
  });

  it('413 for bodies over the limit and for more rows than one request may carry', async () => {
    const small = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project, maxBodyBytes: 10_000, log: () => undefined });
    try {
      const big = await http('POST', '/v1/pipelines/churn-api/score', { base: small.url, body: { rows: await inputRows(100) } });
      expect(big.status).toBe(413);
      expect(big.json.error.message).toMatch(/at most 10000 bytes/);
    } finally {
      await small.close();
    }
    const many = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: Array.from({ length: MAX_ROWS_PER_REQUEST + 1 }, () => ({ f00: 1 })) } });
    expect(many.status).toBe(413);
    expect(many.json.error.message).toMatch(/at most 10000/);
    // Wide rows hit Temporal's payload limit before the row cap: the message says how many rows fit.
    const wide = Array.from({ length: 3000 }, (_, i) => Object.fromEntries(Array.from({ length: 80 }, (_, j) => [`c${j}`, i + j / 7])));
    const tooWide = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: wide } });
    expect(tooWide.status).toBe(413);
    expect(tooWide.json.error.message).toMatch(/payload limit is 2 MiB\); send at most \d+ rows per request/);
  });

  it('serves a valid OpenAPI 3.1 document covering every route', async () => {
    const doc = (await http('GET', '/openapi.json', { token: null })).json;
    expect(doc.openapi).toMatch(/^3\.1\./);
    const ops = Object.entries(doc.paths as Record<string, Record<string, { operationId: string }>>).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`));
    for (const r of api.routes) expect(ops).toContain(`${r.method} ${r.path}`);
    for (const path of ['/v1/pipelines/{name}/runs', '/v1/runs', '/v1/runs/{runId}', '/v1/runs/{runId}/cancel', '/v1/pipelines/{name}/score', '/healthz', '/openapi.json', '/v1/schedules/{name}/backfill']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    for (const s of ['StartRunRequest', 'RunDetails', 'RunSummary', 'ScoreRequest', 'ScoreResponse', 'Error', 'Health']) expect(doc.components.schemas[s], s).toBeDefined();
    // Every $ref points at a schema that exists.
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThan(5);
    for (const r of refs) expect(doc.components.schemas[r], r).toBeDefined();
    expect(doc.paths['/v1/runs'].get.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['pipeline', 'status', 'date', 'limit']));
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
  });
});

describe('runs over HTTP', () => {
  let batchRunId: string;

  it('start → get → list, and the search attributes answer a visibility query', async () => {
    const started = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: DATE } });
    expect(started.status).toBe(202);
    expect(started.json).toMatchObject({ workflow_id: `scoreline/churn-api/${DATE}`, status: 'running', logical_date: DATE });
    batchRunId = started.json.run_id;
    const done = await waitFor(async () => {
      const r = await http('GET', `/v1/runs/${batchRunId}`);
      return r.json.status === 'running' ? undefined : r.json;
    }, 'the run to finish');
    expect(done).toMatchObject({ status: 'succeeded', phase: 'succeeded', pipeline: 'churn-api', logical_date: DATE, trigger: 'api', error: null });
    expect(done.counts).toMatchObject({ rows_in: ROWS, rows_out: ROWS, chunks: 4 });
    expect(done.model).toMatchObject({ name: 'churn-gbt', version: '1' });
    expect(done.progress).toMatchObject({ chunks_done: 4, chunks_total: 4 });
    // By workflow id too (URL-encoded).
    expect((await http('GET', `/v1/runs/${encodeURIComponent(`scoreline/churn-api/${DATE}`)}`)).json.run_id).toBe(batchRunId);
    expect((await http('GET', '/v1/runs/00000000-0000-0000-0000-000000000000')).status).toBe(404);

    const listed = await http('GET', `/v1/runs?pipeline=churn-api&status=succeeded&date=${DATE}`);
    expect(listed.status).toBe(200);
    expect(listed.json.query).toContain('ScorelinePipeline = "churn-api"');
    expect(listed.json.runs.map((r: { run_id: string }) => r.run_id)).toContain(batchRunId);
    expect((await http('GET', `/v1/runs?pipeline=churn-api&status=failed`)).json.runs).toEqual([]);
    expect((await http('GET', `/v1/runs?from=2026-11-02&to=2026-11-30`)).json.runs.map((r: { run_id: string }) => r.run_id)).not.toContain(batchRunId);

    // The client's own list with a query string, as in the Web UI's filter box.
    const ids: string[] = [];
    for await (const wf of client.client.workflow.list({ query: 'ScorelinePipeline = "churn-api" AND ExecutionStatus = "Completed" AND ScorelineModel = "churn-gbt"' })) ids.push(wf.runId);
    expect(ids).toContain(batchRunId);
  });

  it('a run started as the Web UI starts it (no search attributes, only pipeline and date) is found like any other', async () => {
    const date = '2026-11-03';
    const handle = await client.client.workflow.start('scorelineBatchRun', { taskQueue: client.config.taskQueue, workflowId: `ui-started-${Date.now()}`, args: [{ pipeline: 'churn-api', date }] });
    expect((await handle.result()) as { status: string }).toMatchObject({ status: 'succeeded' });
    const listed = await waitFor(async () => {
      const r = await http('GET', `/v1/runs?pipeline=churn-api&date=${date}&trigger=ui`);
      return r.json.runs.some((x: { run_id: string }) => x.run_id === handle.firstExecutionRunId) ? r.json.runs : undefined;
    }, 'the Web UI run in the runs list');
    expect(listed.find((x: { run_id: string }) => x.run_id === handle.firstExecutionRunId)).toMatchObject({ pipeline: 'churn-api', logical_date: date, trigger: 'ui', status: 'succeeded', model: { name: 'churn-gbt', version: '1' } });
  });

  it('cancel over HTTP', async () => {
    const started = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: '2026-11-02', overrides: { chunk_rows: 100, parallelism: 1 } } });
    expect(started.status).toBe(202);
    const again = await http('POST', '/v1/pipelines/churn-api/runs', { body: { date: '2026-11-02' } });
    expect(again.status).toBe(409);
    const cancel = await http('POST', `/v1/runs/${started.json.run_id}/cancel`);
    expect(cancel.status).toBe(202);
    expect(cancel.json).toMatchObject({ run_id: started.json.run_id, status: 'cancel_requested' });
    const run = await waitFor(async () => {
      const r = await http('GET', `/v1/runs/${started.json.run_id}`);
      return r.json.status === 'running' ? undefined : r.json;
    }, 'the cancelled run to end');
    expect(run).toMatchObject({ status: 'cancelled', phase: 'cancelled' });
    // Cancelling it again: the run already ended, so nothing is requested.
    const late = await http('POST', `/v1/runs/${started.json.run_id}/cancel`);
    expect(late.status).toBe(409);
    expect(late.json.error).toMatchObject({ code: 'conflict', message: expect.stringMatching(/already cancelled: nothing to cancel$/) });
  });

  it('near-real-time predictions equal the batch run\'s for the same rows, and direct ONNX Runtime', async () => {
    const rows = await inputRows(100);
    const res = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows } });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    const body = res.json;
    expect(body).toMatchObject({ pipeline: 'churn-api', rows_in: 100, rows_out: 100, rows_rejected: 0, model: { name: 'churn-gbt', version: '1', ref: 'churn-gbt@champion' } });
    expect(body.model.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(body.predictions).toHaveLength(100);
    expect(body.predictions.map((p: { customer_id: number }) => p.customer_id)).toEqual(rows.map((r) => r.customer_id));

    const batch = await query(
      `SELECT customer_id, churn_probability, churn_label FROM read_parquet('${project}/out/churn_api/ds=${DATE}/*.parquet') WHERE run_id = '${batchRunId}' ORDER BY customer_id LIMIT 100`,
    );
    expect(body.predictions).toEqual(batch.map((b) => ({ customer_id: b.customer_id, churn_probability: b.churn_probability, churn_label: b.churn_label })));
    const direct = await directScores(`${project}/data/customers/ds=${DATE}/*.parquet`, join(project, 'models', 'churn-gbt', '1', 'model.onnx'));
    for (const p of body.predictions) expect(Math.abs(p.churn_probability - direct.get(p.customer_id)!)).toBeLessThanOrEqual(1e-6);

    // The same rows as an Arrow IPC stream body.
    const table = arrow.tableFromArrays(Object.fromEntries(Object.keys(rows[0]).map((k) => [k, Float64Array.from(rows.map((r) => r[k]))])));
    const viaArrow = await http('POST', '/v1/pipelines/churn-api/score', { raw: arrow.tableToIPC(table, 'stream') });
    expect(viaArrow.status).toBe(200);
    expect(viaArrow.json.predictions).toEqual(body.predictions);

    // Audited: one run row per request, trigger nrt, with row counts and latency (written after the reply).
    const audit = await waitFor(async () => {
      const found = await query(`SELECT * FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${body.request_id}'`).catch(() => []);
      return found.length ? found : undefined;
    }, 'the NRT audit row');
    expect(audit[0]).toMatchObject({ trigger: 'nrt', status: 'succeeded', pipeline: 'churn-api', rows_in: 100, rows_out: 100, model_version: '1', workflow_id: 'scoreline-nrt/churn-api' });
    expect(Number(audit[0].duration_ms)).toBeGreaterThanOrEqual(0);

    // Visible: the pipeline's NRT workflow carries the search attributes.
    const nrt: string[] = [];
    for await (const wf of client.client.workflow.list({ query: 'ScorelinePipeline = "churn-api" AND ScorelineTrigger = "nrt"' })) nrt.push(wf.workflowId);
    expect(nrt).toContain('scoreline-nrt/churn-api');
  });

  it('a request_id sent again with the same rows gets the same answer; with other rows, a 409', async () => {
    const rows = await inputRows(6);
    const request_id = '7d9f1c3e-5b2a-4c1d-9e8f-0a1b2c3d4e5f';
    const first = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: rows.slice(0, 3), request_id } });
    expect(first.status).toBe(200);
    const again = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: rows.slice(0, 3), request_id } });
    expect(again.json.predictions).toEqual(first.json.predictions);
    // It used to answer 200 with the first request's predictions beside these rows' keys.
    const other = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: rows.slice(3), request_id } });
    expect(other.status).toBe(409);
    expect(other.json.error.message).toBe(`request_id ${request_id} was already used for other rows; send a new request_id (a reused one returns the first request's predictions)`);
  });

  it('a request no worker answers is a 503 naming the task queue after the timeout, not a wait for good', async () => {
    const lonely = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: 'nobody-polls-this' });
    const config = parsePipeline({ name: 'churn-lonely', source: { kind: 'parquet', path: 'unused/*.parquet', key: ['customer_id'] }, model: 'churn-gbt@champion', models_dir: `${project}/models`, sink: { kind: 'parquet', path: 'out/unused' } }, 'test');
    try {
      const started = Date.now();
      const attempt = new NrtClient(lonely, 'update', undefined, 2_000).score({ config, rows: rowsFromObjects(await inputRows(2)) });
      await expect(attempt).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/not answered within 2 s: no worker polls task queue "nobody-polls-this"/) });
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      await lonely.client.workflow.getHandle('scoreline-nrt/churn-lonely').terminate('test cleanup').catch(() => undefined);
      await lonely.close();
    }
  });

  it('NULL policy and errors come back like batch, in input order', async () => {
    const rows: Record<string, number | null>[] = await inputRows(5);
    rows[2] = { ...rows[2], f05: null };
    const strict = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows } });
    expect(strict.status).toBe(400);
    expect(strict.json.error.message).toMatch(/feature column "f05" has 1 NULL value\(s\) \(first at row 2/);
    const skip = await http('POST', '/v1/pipelines/churn-skip/score', { body: { rows } });
    expect(skip.status).toBe(200);
    expect(skip.json).toMatchObject({ rows_in: 5, rows_out: 4, rows_rejected: 1 });
    expect(skip.json.predictions[2]).toBeNull();
    expect(skip.json.predictions[3].customer_id).toBe(rows[3].customer_id);
    const cast = await http('POST', '/v1/pipelines/churn-api/score', { body: { rows: [{ ...rows[0], f03: 1e39 }] } });
    expect(cast.status).toBe(400);
    expect(cast.json.error.message).toMatch(/column "f03" row 0: value 1e\+39 is beyond float32 range/);
  });

  it('a model promotion (and a rollback) is picked up by the next request, without restarting anything', async () => {
    const rows = await inputRows(10);
    const first = await http('POST', '/v1/pipelines/churn-live/score', { body: { rows } });
    expect(first.json.model).toMatchObject({ name: 'churn', version: '1' });
    const store = new ModelStore(join(project, 'models'));
    await store.promote('churn', '2');
    const second = await http('POST', '/v1/pipelines/churn-live/score', { body: { rows } });
    expect(second.json.model).toMatchObject({ name: 'churn', version: '2' });
    expect(second.json.model.sha256).not.toBe(first.json.model.sha256);
    expect(second.json.predictions).not.toEqual(first.json.predictions);
    await store.rollback('churn');
    const third = await http('POST', '/v1/pipelines/churn-live/score', { body: { rows } });
    expect(third.json.model).toEqual(first.json.model);
    expect(third.json.predictions).toEqual(first.json.predictions);
  });

  it('`scoreline score` gives the same predictions as the API (JSON Lines on stdin)', async () => {
    const rows = await inputRows(5);
    const api = (await http('POST', '/v1/pipelines/churn-api/score', { body: { rows } })).json;
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const child = execFile(process.execPath, [join(REPO, 'bin', 'scoreline.js'), 'score', 'churn-api', '--rows', '-', ...args], { cwd: project, env: { ...process.env, TEMPORAL_ADDRESS: stack.address, SCORELINE_PROJECT_DIR: project } }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
        child.stdin!.end(rows.map((r) => JSON.stringify(r)).join('\n'));
      });
    const lines = await cli([]);
    expect(lines.code, lines.stderr).toBe(0);
    expect(lines.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual(api.predictions);
    expect(lines.stderr).toMatch(/scored 5\/5 rows with churn-gbt:1/);
    const json = await cli(['--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ pipeline: 'churn-api', rows_in: 5, predictions: api.predictions, model: api.model });
  });

  it('schedule endpoints answer through src/schedules', async () => {
    const list = await http('GET', '/v1/schedules');
    expect(list.status).toBe(200);
    expect(Array.isArray(list.json.schedules)).toBe(true);
    expect((await http('GET', '/v1/schedules/churn-api')).status).toBe(404);
    expect((await http('POST', '/v1/schedules/churn-api/backfill', { body: { from: '2026-11-01' } })).json.error.message).toMatch(/^body\.to: required/);
  });

  it('healthz reports Temporal and every pipeline\'s model', async () => {
    const h = await http('GET', '/healthz', { token: null });
    expect(h.json.status).toBe('ok');
    expect(h.json.temporal.ok).toBe(true);
    expect(h.json.models.map((m: { pipeline: string }) => m.pipeline).sort()).toEqual(['churn-api', 'churn-live', 'churn-skip']);
    writeFileSync(join(project, 'pipelines', 'broken.yaml'), PIPELINE('churn-broken', 'missing@champion'));
    const degraded = await http('GET', '/healthz', { token: null });
    expect(degraded.status).toBe(503);
    expect(degraded.json.models.find((m: { pipeline: string }) => m.pipeline === 'churn-broken')).toMatchObject({ ok: false, error: expect.stringMatching(/model "missing" not found/) });
  });
});
