/**
 * Observability on real parts: a real Temporal dev server and a worker serving /metrics, the API serving
 * /metrics. Batch runs and near-real-time requests go through Temporal, the metrics are scraped over
 * HTTP and parsed from the exposition text, and the counters must equal what the runs report: rows,
 * rejected rows, chunks, statuses. The worker's JSON log lines must carry the run's ids, and
 * `runs list` / GET /v1/runs the rows and the pinned model.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../src/api/server';
import { runListRow } from '../../src/cli/main';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { startStack, type Stack } from '../../src/dev/stack';
import { configureLogging } from '../../src/obs/log';
import { STAGES } from '../../src/obs/metrics';
import { listRuns, type RunSummary } from '../../src/runs';
import { TASK_QUEUE } from '../../src/search-attributes';
import type { RunResult } from '../../src/types';
import { cleanup, copyModels, demoData, FEATURES, query, REPO, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const ROWS = 6_000;
const TOKEN = 'metrics-test-token-0123456789';
const PIPELINE = 'churn-metrics';
const SLOTS = 4;

let project: string;
let stack: Stack;
let client: ScorelineClient;
let api: ApiServer;
const logLines: string[] = [];

// ---- The Prometheus text format, parsed independently of prom-client ----

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue;
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`not a sample value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { types, samples };
}

/** The family a sample belongs to: histogram samples are `<family>_bucket|_sum|_count`. */
function familyOf(e: Exposition, name: string): string | undefined {
  if (e.types.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return e.types.get(base) === 'histogram' || e.types.get(base) === 'summary' ? base : undefined;
}

/** The value of the one sample with this name whose labels include `labels`; undefined when none. */
function valueOf(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} series`);
  return found[0]?.value;
}

function sumOf(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  return e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
}

async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const e = parseExposition(await res.text());
  // Well formed: every sample belongs to a declared family; histogram buckets are cumulative and end
  // in +Inf = count.
  for (const s of e.samples) expect(familyOf(e, s.name), s.name).toBeDefined();
  for (const [family, type] of e.types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const s of e.samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
      expect(le).toBeDefined();
    }
    for (const [key, buckets] of series) {
      for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
      expect(buckets.at(-1)!.labels.le).toBe('+Inf');
      expect(buckets.at(-1)!.value, `${family} ${key}`).toBe(valueOf(e, `${family}_count`, JSON.parse(key)));
    }
  }
  return e;
}

// ---- Runs ----

function pipeline(over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name: PIPELINE,
    source: { kind: 'parquet', path: 'data/nulls/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: 'out/churn_metrics' },
    chunk_rows: 1000,
    parallelism: 2,
    features: { nulls: 'skip' },
    ...over,
  } as PipelineInput;
}

async function run(raw: PipelineInput, date = DATE): Promise<RunResult> {
  const config = parsePipeline(raw, 'test');
  return client.wait(await client.startRun({ config, raw, date, trigger: 'test' }));
}

const logged = () => logLines.map((l) => JSON.parse(l) as Record<string, unknown>);

async function until<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 150; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`never saw ${what}`);
}

/** The run as `runs list` sees it, once visibility has its final memo. */
async function listed(runId: string): Promise<RunSummary> {
  return until(async () => {
    const r = (await listRuns(client, { pipeline: PIPELINE, limit: 50 })).find((x) => x.run_id === runId);
    return r && r.status !== 'running' ? r : undefined;
  }, `run ${runId} in the visibility list`);
}

let nullRows: number;

beforeAll(async () => {
  // Every line the process logs, as JSON, at debug: what an operator's log pipeline would receive.
  configureLogging({ level: 'debug', format: 'json', sink: { write: (line: string) => logLines.push(line) } });
  project = tempProject('scoreline-metrics-');
  copyModels(project);
  await demoData(project, [DATE], ROWS, 1000);
  // The demo data has no NULLs: punch some into f03 so that `nulls: skip` rejects rows.
  mkdirSync(join(project, 'data', 'nulls', `ds=${DATE}`), { recursive: true });
  await query(
    `COPY (SELECT customer_id, CASE WHEN customer_id % 7 = 0 THEN NULL ELSE f03 END AS f03, * EXCLUDE (customer_id, f03) FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet') ORDER BY customer_id)` +
      ` TO '${project}/data/nulls/ds=${DATE}/part-0.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1000)`,
  );
  nullRows = Number((await query(`SELECT count(*) AS n FROM read_parquet('${project}/data/nulls/ds=${DATE}/*.parquet') WHERE f03 IS NULL`))[0].n);
  mkdirSync(join(project, 'pipelines'));
  writeFileSync(join(project, 'pipelines', `${PIPELINE}.yaml`), JSON.stringify(pipeline()));
  stack = await startStack({
    projectDir: project,
    toolsDir: REPO,
    dbFilename: join(project, '.scoreline', 'temporal.db'),
    headless: true,
    worker: { modelsDir: join(project, 'models'), pipelinesDir: join(project, 'pipelines'), maxConcurrentActivities: SLOTS, metricsPort: 0 },
  });
  client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
  api = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project, log: () => undefined });
});

afterAll(async () => {
  await api?.close();
  await stopTestEnv({ client, stack });
  configureLogging({ level: 'warn', format: 'json', sink: process.stderr });
  cleanup(project);
});

describe('worker /metrics after batch runs', () => {
  let ok: RunResult;

  it('counts the rows, chunks and stages of a succeeded run exactly', async () => {
    const metricsUrl = stack.worker!.metricsUrl!;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const before = await scrape(metricsUrl);
    expect(valueOf(before, 'scoreline_rows_scored_total', { pipeline: PIPELINE })).toBeUndefined();
    expect(valueOf(before, 'scoreline_worker_activity_slots')).toBe(SLOTS);
    expect(valueOf(before, 'process_cpu_seconds_total')).toBeGreaterThan(0); // default process metrics

    ok = await run(pipeline());
    expect(ok.status).toBe('succeeded');
    expect(ok.rowsIn).toBe(ROWS);
    expect(ok.rowsRejected).toBe(nullRows);
    expect(ok.rowsOut).toBe(ROWS - nullRows);
    expect(ok.chunks).toBeGreaterThan(1);

    const e = await scrape(metricsUrl);
    const p = { pipeline: PIPELINE };
    expect(valueOf(e, 'scoreline_rows_scored_total', p)).toBe(ok.rowsOut);
    expect(valueOf(e, 'scoreline_rows_rejected_total', p)).toBe(ok.rowsRejected);
    expect(valueOf(e, 'scoreline_rows_scored_total', p)! + valueOf(e, 'scoreline_rows_rejected_total', p)!).toBe(ok.rowsIn);
    expect(valueOf(e, 'scoreline_rows_quarantined_total', p)).toBe(0); // no error budget: nothing set aside
    expect(valueOf(e, 'scoreline_runs_total', { ...p, status: 'succeeded' })).toBe(1);
    // Zero-valued series exist from the plan on, so `increase()` sees a pipeline's first failure.
    expect(valueOf(e, 'scoreline_runs_total', { ...p, status: 'failed' })).toBe(0);
    expect(valueOf(e, 'scoreline_chunk_failures_total', p)).toBe(0);
    expect(valueOf(e, 'scoreline_run_duration_seconds_count', { ...p, status: 'succeeded' })).toBe(1);
    expect(valueOf(e, 'scoreline_run_last_success_timestamp_seconds', p)).toBeGreaterThan(Date.parse(`${DATE}T00:00:00Z`) / 1000);

    expect(valueOf(e, 'scoreline_chunk_duration_seconds_count', p)).toBe(ok.chunks);
    for (const stage of STAGES) {
      expect(valueOf(e, 'scoreline_chunk_stage_duration_seconds_count', { ...p, stage }), stage).toBe(ok.chunks);
      // The stage sums are the run's stage totals (rounded to ms there), in seconds.
      expect(Math.abs(valueOf(e, 'scoreline_chunk_stage_duration_seconds_sum', { ...p, stage })! * 1000 - ok.stageMs![stage]), stage).toBeLessThanOrEqual(1);
    }
    // One ONNX Runtime run per chunk (on an inference thread); the plan loaded the model once here.
    expect(valueOf(e, 'scoreline_inference_duration_seconds_count', { model: 'churn-gbt' })).toBe(ok.chunks);
    expect(valueOf(e, 'scoreline_model_load_duration_seconds_count', { model: 'churn-gbt' })).toBeGreaterThanOrEqual(1);
    // Every activity of the run has ended before the workflow returned.
    expect(sumOf(e, 'scoreline_activities_in_flight')).toBe(0);
    expect(valueOf(e, 'scoreline_activities_in_flight', { activity: 'scoreChunk' })).toBe(0);
    // Nothing labelled by run: the run id appears in no series.
    expect(e.samples.some((s) => Object.values(s.labels).includes(ok.runId))).toBe(false);
  });

  it('logs the run as JSON lines carrying run_id, workflow_id and chunk', () => {
    const mine = logged().filter((l) => l.run_id === ok.runId);
    const planned = mine.filter((l) => l.msg === 'run planned');
    expect(planned).toHaveLength(1);
    expect(planned[0]).toMatchObject({ level: 'info', workflow_id: ok.workflowId, pipeline: PIPELINE, rows: ROWS, chunks: ok.chunks, model: 'churn-gbt:1', activity: 'planRun' });
    expect(typeof planned[0].time).toBe('string');
    const chunks = mine.filter((l) => l.msg === 'chunk scored');
    expect(chunks.map((l) => l.chunk).sort((a, b) => Number(a) - Number(b))).toEqual([...Array(ok.chunks).keys()]);
    for (const c of chunks) {
      expect(c).toMatchObject({ level: 'debug', workflow_id: ok.workflowId, activity: 'scoreChunk' });
      expect(typeof c.read_ms).toBe('number');
      expect(typeof c.infer_ms).toBe('number');
    }
    expect(chunks.reduce((n, c) => n + Number(c.rows_out), 0)).toBe(ok.rowsOut);
    expect(mine.filter((l) => l.msg === 'run committed')).toHaveLength(1);
    expect(mine.find((l) => l.msg === 'run finished')).toMatchObject({ level: 'info', status: 'succeeded', rows_in: ROWS, rows_out: ok.rowsOut, rows_rejected: nullRows });
    // Every line an activity of this workflow wrote names the run.
    const ofWorkflow = logged().filter((l) => l.workflow_id === ok.workflowId && l.activity);
    expect(ofWorkflow.length).toBeGreaterThanOrEqual(ok.chunks + 3);
    for (const l of ofWorkflow) expect(l.run_id, String(l.msg)).toBe(ok.runId);
    expect(logged().find((l) => l.msg === 'worker started')).toMatchObject({ metrics: stack.worker!.metricsUrl, activity_slots: SLOTS });
  });

  it('counts failed runs and failed chunk attempts, and no rows for them', async () => {
    // The chunk's NULLs under `nulls: error`: a non-retryable input error in the first (only) chunk in flight.
    const bad = await run(pipeline({ features: { nulls: 'error' }, parallelism: 1 }), DATE);
    expect(bad.status).toBe('failed');
    // No input for this date: the plan fails, no chunk runs.
    const empty = await run(pipeline(), '2026-10-01');
    expect(empty.status).toBe('failed');

    const e = await scrape(stack.worker!.metricsUrl!);
    const p = { pipeline: PIPELINE };
    expect(valueOf(e, 'scoreline_runs_total', { ...p, status: 'failed' })).toBe(2);
    expect(valueOf(e, 'scoreline_runs_total', { ...p, status: 'succeeded' })).toBe(1);
    expect(valueOf(e, 'scoreline_chunk_failures_total', p)).toBe(1);
    expect(valueOf(e, 'scoreline_rows_scored_total', p)).toBe(ok.rowsOut);
    expect(valueOf(e, 'scoreline_chunk_duration_seconds_count', p)).toBe(ok.chunks);
    const failedLines = logged().filter((l) => l.run_id === bad.runId && l.msg === 'scoreChunk failed');
    expect(failedLines).toHaveLength(1);
    expect(failedLines[0]).toMatchObject({ level: 'warn', chunk: 0, workflow_id: bad.workflowId, error_type: 'ScorelineInputError' });
    expect(logged().find((l) => l.run_id === bad.runId && l.msg === 'run finished')).toMatchObject({ level: 'warn', status: 'failed' });
  });

  it('runs list shows rows and the pinned model; failed runs have no rows', async () => {
    const succeeded = await listed(ok.runId);
    expect(succeeded).toMatchObject({ pipeline: PIPELINE, logical_date: DATE, status: 'succeeded', trigger: 'test', rows_in: ROWS, rows_out: ok.rowsOut, model: { name: 'churn-gbt', version: '1' } });
    expect(runListRow(succeeded)).toMatchObject({
      pipeline: PIPELINE,
      date: DATE,
      trigger: 'test',
      status: 'succeeded',
      rows: `${ok.rowsOut.toLocaleString('en-US')} of ${ROWS.toLocaleString('en-US')}`,
      model: 'churn-gbt:1',
    });
    const runs = await listRuns(client, { pipeline: PIPELINE, status: 'failed', limit: 10 });
    expect(runs.length).toBeGreaterThanOrEqual(1);
    for (const r of runs) expect(r).toMatchObject({ status: 'failed', rows_in: null, rows_out: null });
    // GET /v1/runs answers the same objects.
    const res = await fetch(`${api.url}/v1/runs?pipeline=${PIPELINE}&status=succeeded`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const body = (await res.json()) as { runs: RunSummary[] };
    expect(body.runs.find((r) => r.run_id === ok.runId)).toEqual(succeeded);
  });
});

describe('API /metrics after near-real-time requests', () => {
  async function score(rows: Record<string, number>[]) {
    return fetch(`${api.url}/v1/pipelines/${PIPELINE}/score`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rows }),
    });
  }

  it('counts each request in the latency histogram, by outcome, without a token', async () => {
    const rows = (await query(`SELECT customer_id, ${FEATURES.join(', ')} FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet') ORDER BY customer_id LIMIT 5`)).map((r) =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)])),
    );
    const metricsUrl = `${api.url}/metrics`;
    const before = await scrape(metricsUrl); // no bearer token needed
    const p = { pipeline: PIPELINE, outcome: 'ok' };
    expect(valueOf(before, 'scoreline_nrt_request_duration_seconds_count', p)).toBeUndefined();

    expect((await score(rows)).status).toBe(200);
    const one = await scrape(metricsUrl);
    expect(valueOf(one, 'scoreline_nrt_request_duration_seconds_count', p)).toBe(1);
    expect(valueOf(one, 'scoreline_nrt_request_duration_seconds_sum', p)).toBeGreaterThan(0);

    expect((await score(rows.slice(0, 2))).status).toBe(200);
    const missing = await score([{ f00: 1 }]); // feature columns missing: refused by the worker
    expect(missing.status).toBe(400);
    const e = await scrape(metricsUrl);
    expect(valueOf(e, 'scoreline_nrt_request_duration_seconds_count', p)).toBe(2);
    expect(valueOf(e, 'scoreline_nrt_request_duration_seconds_count', { pipeline: PIPELINE, outcome: 'error' })).toBe(1);
    // The worker's side of the same requests (same process here): scored twice.
    expect(valueOf(e, 'scoreline_nrt_score_duration_seconds_count', { pipeline: PIPELINE })).toBe(2);
    // Only GET /metrics is open: the rest of the API still wants the token.
    expect((await fetch(`${api.url}/v1/runs`)).status).toBe(401);
  });

  it('the worker metrics port serves /metrics only', async () => {
    const res = await fetch(stack.worker!.metricsUrl!.replace(/\/metrics$/, '/other'));
    expect(res.status).toBe(404);
    await res.text();
  });
});
