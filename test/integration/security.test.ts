/**
 * Security (docs/security.md), on a real Temporal dev server and worker:
 *
 * 1. The AES-256-GCM payload codec: with SCORELINE_CODEC_KEYS on the worker and every client, a
 *    near-real-time request and batch runs succeed, while their history fetched raw (no codec: the gRPC
 *    API's bytes, and `temporal workflow show --output json`) holds none of their plaintext — neither as
 *    bytes nor base64 — and the same history read through the codec (in process, and the CLI pointed at
 *    `scoreline api`'s codec endpoint) does. The codec endpoint itself (round trip, auth, CORS, unknown
 *    key ids), the `scoreline` CLI as a client, and a key rotation (history written with key a, read
 *    and extended by a worker and clients holding b then a).
 * 2. A secret scan, codec off (the default, and the worst case): runs against a Snowflake emulator whose
 *    password is in the worker's environment, an alert webhook whose URL carries a token, the API's
 *    bearer token — a failed run (alert delivery failing too, its endpoint echoing its URL), a recovered
 *    run, a run started over the API, near-real-time requests that succeed and fail — then every history
 *    in the namespace (raw), every log line (worker, API, SDK, stdout/stderr, the dev server's log, the
 *    Snowflake driver's log) and every audit row is searched for each secret in several encodings.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSnowflake } from '../../connectors/snowflake';
import { startApiServer, type ApiServer } from '../../src/api/server';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { startFakesnow, type Fakesnow } from '../../src/dev/fakesnow';
import { seedSnowflakeTable } from '../../src/dev/snowflake-seed';
import type { Stack } from '../../src/dev/stack';
import { ensureTemporalCli } from '../../src/dev/temporal-cli';
import { nrtWorkflowId } from '../../src/nrt/protocol';
import { applySchedule, backfillSchedule, describeSchedule } from '../../src/schedules';
import { configureLogging } from '../../src/obs/log';
import { TASK_QUEUE } from '../../src/search-attributes';
import { AesGcmCodec, parseCodecKeys } from '../../src/security/codec';
import { createWorker, type ScorelineWorker } from '../../src/worker';
import { cleanup, copyModels, demoData, FEATURES, query, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const TOKEN = `api-token-${randomBytes(12).toString('hex')}`;
const KEY_A = randomBytes(32).toString('base64');
const KEY_B = randomBytes(32).toString('base64');
const KEYS_A = `a:${KEY_A}`;

/** Every log line of this file's process (worker, API, Temporal SDK), JSON, from the debug level up. */
const logLines: string[] = [];

beforeAll(() => {
  configureLogging({ level: 'debug', format: 'json', sink: { write: (line: string) => logLines.push(line) } });
});

afterAll(() => {
  configureLogging({ sink: process.stderr });
});

// ---------------------------------------------------------------------------------------------------
// Looking for a value in bytes

/**
 * The base64 text a value becomes inside a longer base64 string, at each of the three alignments it can
 * start at (only the characters that depend on the value alone), standard and URL-safe alphabet.
 */
function base64Forms(value: string | Uint8Array): string[] {
  const bytes = Buffer.from(value);
  const forms = new Set<string>();
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    const form = encoded.slice(Math.ceil((8 * shift) / 6), Math.floor((8 * (shift + bytes.length)) / 6));
    forms.add(form);
    forms.add(form.replaceAll('+', '-').replaceAll('/', '_'));
  }
  return [...forms];
}

/** The forms a text secret may take: as is, URL-encoded, JSON-escaped, base64. */
function textForms(secret: string): (string | Buffer)[] {
  return [...new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)])].concat(base64Forms(secret));
}

/** Which of `needles` occur in `haystack` (their printable form, for the failure message). */
function found(haystack: Buffer | string, needles: (string | Buffer)[]): string[] {
  const hay = Buffer.isBuffer(haystack) ? haystack : Buffer.from(haystack);
  return needles.filter((n) => hay.includes(n)).map((n) => (Buffer.isBuffer(n) ? `bytes ${n.toString('hex')}` : n));
}

it('the scanner finds a value in each form it looks for (control)', () => {
  const secret = 'sekr1t-value-9f8e7d';
  for (let pad = 0; pad < 3; pad++) {
    expect(found(Buffer.from(`xx${'y'.repeat(pad)}${Buffer.from(`prefix${'z'.repeat(pad)}${secret}suffix`).toString('base64')}`), textForms(secret))).not.toEqual([]);
  }
  expect(found(`{"url":"${encodeURIComponent(`http://h/${secret}`)}"}`, textForms(secret))).not.toEqual([]);
  expect(found('nothing here', textForms(secret))).toEqual([]);
});

// ---------------------------------------------------------------------------------------------------
// Temporal history, raw

async function rawHistory(client: Client, workflowId: string, runId?: string): Promise<{ history: temporal.api.history.v1.History; bytes: Buffer }> {
  const events: temporal.api.history.v1.IHistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const res = await client.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId, runId }, nextPageToken });
    events.push(...(res.history?.events ?? []));
    nextPageToken = res.nextPageToken?.length ? res.nextPageToken : undefined;
  } while (nextPageToken);
  const history = temporal.api.history.v1.History.create({ events });
  return { history, bytes: Buffer.from(temporal.api.history.v1.History.encode(history).finish()) };
}

interface FoundPayload {
  path: string;
  payload: Payload;
}

/** Every payload in a history (an object with an `encoding` in its metadata), with where it is. */
function payloadsIn(node: unknown, path = '', out: FoundPayload[] = []): FoundPayload[] {
  if (!node || typeof node !== 'object' || ArrayBuffer.isView(node)) return out;
  if (Array.isArray(node)) {
    node.forEach((n, i) => payloadsIn(n, `${path}[${i}]`, out));
    return out;
  }
  const o = node as Record<string, unknown>;
  if (o.metadata && typeof o.metadata === 'object' && 'encoding' in (o.metadata as object)) {
    out.push({ path, payload: o as Payload });
    return out;
  }
  for (const [k, v] of Object.entries(o)) payloadsIn(v, `${path}.${k}`, out);
  return out;
}

const utf8 = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString('utf8');

/**
 * Payloads that are not the codec's to encrypt: search attributes (visibility needs them in clear; they
 * hold pipeline, trigger, dates and model only), and what Temporal's core writes into markers itself — a
 * patch marker's patch id, a local activity marker's bookkeeping (sequence number, attempt, activity id
 * and type, times). A local activity's result, in the same marker, is encrypted.
 */
function isExempt(p: FoundPayload, history: temporal.api.history.v1.History): boolean {
  if (p.path.includes('.searchAttributes.')) return true;
  const m = /^\.events\[(\d+)\]\.markerRecordedEventAttributes\.details\.([^.]+)\./.exec(p.path);
  const marker = m && history.events[Number(m[1])].markerRecordedEventAttributes?.markerName;
  return (marker === 'core_patch' && m![2] === 'patch-data') || (marker === 'core_local_activity' && m![2] === 'data');
}

function execFileText(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code?: unknown }).code as number) : 1) : 0, stdout, stderr }),
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

async function http(base: string, method: string, path: string, opts: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? TOKEN}`;
  if (opts.body !== undefined) headers['content-type'] ??= 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function inputRows(project: string, n: number): Promise<Record<string, number | string | null>[]> {
  const rows = await query(`SELECT customer_id, ${FEATURES.join(', ')} FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet') ORDER BY customer_id LIMIT ${n}`);
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)])));
}

// ---------------------------------------------------------------------------------------------------

describe('payload codec (AES-256-GCM) on worker, clients and API', () => {
  const suffix = randomBytes(6).toString('hex');
  /** Values that exist only in payloads: they must not be readable in history without the codec. */
  const ROW_MARKER = `PLAINTEXT-ROW-alice.${suffix}@example.com`;
  const DESCRIPTION_MARKER = `PLAINTEXT-PIPELINE-DOC-${suffix}`;
  const PATH_MARKER = `plaintext_missing_dir_${suffix}`;
  const ERROR_VALUE = 3.4567e39; // quoted by the cast error: "value 3.4567e+39 is beyond float32 range"
  const DISTINCT_FLOAT = 0.7182818284590452;
  const floatBytes = Buffer.from(new Float64Array([DISTINCT_FLOAT]).buffer);

  let project: string;
  let stack: Stack;
  let client: ScorelineClient;
  /** No codec: what anyone reading the server's database sees. */
  let plain: ScorelineClient;
  let api: ApiServer;
  let cli: string;
  let batchRun: { workflowId: string; runId: string };
  let rotatedWorker: ScorelineWorker | undefined;
  const extraClients: ScorelineClient[] = [];
  const extraApis: ApiServer[] = [];

  const secretsOf = () => [ROW_MARKER, DESCRIPTION_MARKER, PATH_MARKER, '3.4567e+39'].flatMap(textForms).concat([floatBytes]);

  beforeAll(async () => {
    project = tempProject('scoreline-security-');
    copyModels(project);
    await demoData(project, [DATE], 1_000, 500);
    mkdirSync(join(project, 'pipelines'));
    writeFileSync(
      join(project, 'pipelines', 'churn-sec.yaml'),
      `name: churn-sec
description: ${DESCRIPTION_MARKER}
source: { kind: parquet, path: "data/customers/ds={{ ds }}/*.parquet", key: [customer_id] }
model: churn-gbt@champion
sink: { kind: parquet, path: out/churn_sec }
chunk_rows: 500
parallelism: 2
`,
    );
    // Worker and clients take the codec from the environment, as the product's processes do.
    process.env.SCORELINE_CODEC_KEYS = KEYS_A;
    ({ stack, client } = await startTestEnv(project));
    plain = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE, codec: null });
    api = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project, log: () => undefined });
    cli = (await ensureTemporalCli({ projectDir: REPO })).path;
  });

  afterAll(async () => {
    delete process.env.SCORELINE_CODEC_KEYS;
    for (const a of extraApis) await a.close();
    await api?.close();
    for (const c of extraClients) await c.close();
    await client?.close();
    await plain?.close();
    await rotatedWorker?.shutdown();
    await stack?.stop();
    if (project) cleanup(project);
  });

  function expectAllEncrypted(history: temporal.api.history.v1.History, keyIds = ['a']): FoundPayload[] {
    const payloads = payloadsIn(history);
    const encrypted = payloads.filter((p) => !isExempt(p, history));
    expect(encrypted.length).toBeGreaterThan(0);
    for (const p of encrypted) {
      expect(utf8(p.payload.metadata!.encoding), p.path).toBe('binary/encrypted');
      expect(keyIds, p.path).toContain(utf8(p.payload.metadata!['encryption-key-id']));
    }
    return encrypted;
  }

  /** `temporal workflow show --output json`, without and with the codec endpoint of `scoreline api`. */
  async function temporalShow(workflowId: string, codec?: { endpoint: string; auth?: string }): Promise<string> {
    const args = ['workflow', 'show', '--workflow-id', workflowId, '--output', 'json', '--address', stack.address, '--namespace', 'default'];
    if (codec) args.push('--codec-endpoint', codec.endpoint, ...(codec.auth ? ['--codec-auth', codec.auth] : []));
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('TEMPORAL_')) delete env[k];
    const out = await execFileText(cli, args, { env });
    expect(out.code, out.stderr).toBe(0);
    return out.stdout;
  }

  it('a near-real-time request succeeds; its history holds no plaintext without the codec, and all of it with the codec', async () => {
    const rows = await inputRows(project, 3);
    rows[0].note = ROW_MARKER;
    rows[1].f00 = DISTINCT_FLOAT;
    const res = await http(api.url, 'POST', '/v1/pipelines/churn-sec/score', { body: { rows } });
    expect(res.status, res.text).toBe(200);
    expect(res.json.predictions).toHaveLength(3);
    expect(res.json.model).toMatchObject({ name: 'churn-gbt', version: '1' });

    // A request that fails with an error quoting a value: the failure message is encrypted too.
    const bad = await inputRows(project, 1);
    bad[0].f05 = ERROR_VALUE;
    const failed = await http(api.url, 'POST', '/v1/pipelines/churn-sec/score', { body: { rows: bad } });
    expect(failed.status).toBe(400);
    expect(failed.json.error.message).toMatch(/value 3\.4567e\+39 is beyond float32 range/);

    const { history, bytes } = await rawHistory(plain.client, nrtWorkflowId('churn-sec'));
    expect(found(bytes, secretsOf())).toEqual([]);
    const encrypted = expectAllEncrypted(history);
    // Search attributes stay readable (visibility): pipeline and trigger only.
    const attrs = history.events[0].workflowExecutionStartedEventAttributes!.searchAttributes?.indexedFields ?? {};
    expect(Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, defaultPayloadConverter.fromPayload(v)]))).toEqual({ ScorelinePipeline: 'churn-sec', ScorelineTrigger: 'nrt' });

    // Through the codec: the rows (Arrow IPC) with the marker and the float, the config with the description, the error.
    const decoded = await client.codec!.decode(encrypted.map((p) => p.payload));
    const all = Buffer.concat(decoded.map((p) => Buffer.from(p.data ?? [])));
    expect(all.includes(ROW_MARKER)).toBe(true);
    expect(all.includes(floatBytes)).toBe(true);
    expect(all.includes(DESCRIPTION_MARKER)).toBe(true);
    expect(all.includes('3.4567e+39')).toBe(true);

    // The Temporal CLI: no codec → none of it; pointed at `scoreline api`'s codec endpoint → all of it.
    const raw = await temporalShow(nrtWorkflowId('churn-sec'));
    expect(raw).toContain('YmluYXJ5L2VuY3J5cHRlZA=='); // base64 of binary/encrypted
    expect(found(raw, secretsOf())).toEqual([]);
    const shown = await temporalShow(nrtWorkflowId('churn-sec'), { endpoint: `${api.url}/codec`, auth: `Bearer ${TOKEN}` });
    expect(found(shown, textForms(ROW_MARKER))).not.toEqual([]);
    expect(found(shown, textForms(DESCRIPTION_MARKER))).not.toEqual([]);
    expect(found(shown, textForms('3.4567e+39'))).not.toEqual([]);
    expect(shown).not.toContain('YmluYXJ5L2VuY3J5cHRlZA=='); // no payload left encrypted
    // Without the token the CLI's codec calls are refused (401), so it cannot show the plaintext.
    const refused = await execFileText(cli, ['workflow', 'show', '--workflow-id', nrtWorkflowId('churn-sec'), '--output', 'json', '--address', stack.address, '--codec-endpoint', `${api.url}/codec`]);
    expect(found(refused.stdout, textForms(ROW_MARKER))).toEqual([]);
  });

  it('batch runs: a succeeded and a failed one read back through the codec (result, memo, error); their raw history holds no plaintext', async () => {
    const raw: PipelineInput = {
      name: 'churn-sec',
      description: DESCRIPTION_MARKER,
      source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
      model: 'churn-gbt@champion',
      sink: { kind: 'parquet', path: 'out/churn_sec' },
      chunk_rows: 500,
      parallelism: 2,
    };
    const handle = await client.startRun({ config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test' });
    const result = await client.wait(handle);
    expect(result).toMatchObject({ status: 'succeeded', rowsIn: 1_000, rowsOut: 1_000 });
    batchRun = { workflowId: result.workflowId, runId: result.runId };

    // Over the API (memo and result decoded by the API's client).
    const described = await http(api.url, 'GET', `/v1/runs/${result.runId}`);
    expect(described.status).toBe(200);
    expect(described.json).toMatchObject({ status: 'succeeded', rows_out: 1_000 });
    const listed = await waitFor(async () => {
      const r = await http(api.url, 'GET', '/v1/runs?pipeline=churn-sec');
      return r.json?.runs?.find((x: { run_id: string }) => x.run_id === result.runId);
    }, 'the run in the list');
    expect(listed).toMatchObject({ rows_out: 1_000 });
    // Without the codec the memo does not decode at all.
    await expect(plain.client.workflow.getHandle(result.workflowId, result.runId).describe()).rejects.toThrow(/binary\/encrypted/);

    const failingRaw: PipelineInput = { ...raw, source: { kind: 'parquet', path: `data/${PATH_MARKER}/ds={{ ds }}/*.parquet`, key: ['customer_id'] } };
    const failing = await client.wait(await client.startRun({ config: parsePipeline(failingRaw, 'test'), raw: failingRaw, date: '2026-11-02', trigger: 'test' }));
    expect(failing.status).toBe('failed');
    expect(failing.error).toContain(PATH_MARKER); // the error names the path, and the codec client reads it

    for (const run of [batchRun, failing]) {
      const { history, bytes } = await rawHistory(plain.client, run.workflowId, run.runId);
      expect(found(bytes, secretsOf()), run.workflowId).toEqual([]);
      expectAllEncrypted(history);
      const shown = await temporalShow(run.workflowId);
      expect(found(shown, secretsOf())).toEqual([]);
    }
  });

  it('the scoreline CLI is a codec client too: score and runs list with SCORELINE_CODEC_KEYS', async () => {
    const rowsFile = join(project, 'rows.json');
    writeFileSync(rowsFile, JSON.stringify(await inputRows(project, 2)));
    const env = { ...process.env, TEMPORAL_ADDRESS: stack.address, SCORELINE_PROJECT_DIR: project, SCORELINE_CODEC_KEYS: KEYS_A, SCORELINE_LOG_LEVEL: 'warn' };
    const score = await execFileText(process.execPath, [join(REPO, 'bin', 'scoreline.js'), 'score', 'churn-sec', '--rows', rowsFile, '--json'], { env, cwd: project });
    expect(score.code, score.stderr).toBe(0);
    expect(JSON.parse(score.stdout.trim().split('\n').at(-1)!).predictions).toHaveLength(2);
    const list = await execFileText(process.execPath, [join(REPO, 'bin', 'scoreline.js'), 'runs', 'list', '--pipeline', 'churn-sec', '--json'], { env, cwd: project });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(batchRun.runId);
    // Without the keys the same listing cannot read the (encrypted) memos.
    const { SCORELINE_CODEC_KEYS: _omit, ...noKeys } = env;
    const blind = await execFileText(process.execPath, [join(REPO, 'bin', 'scoreline.js'), 'runs', 'list', '--pipeline', 'churn-sec', '--json'], { env: noKeys, cwd: project });
    expect(blind.code).not.toBe(0);
    expect(blind.stderr).toMatch(/binary\/encrypted/);
  });

  describe('codec endpoint (POST /codec/encode, /codec/decode)', () => {
    const plainPayload = { metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from(JSON.stringify({ secret: ROW_MARKER })).toString('base64') };

    it('round-trips encode → decode over HTTP, with the Web UI\'s X-Namespace header', async () => {
      const enc = await http(api.url, 'POST', '/codec/encode', { body: { payloads: [plainPayload] }, headers: { 'x-namespace': 'default' } });
      expect(enc.status, enc.text).toBe(200);
      expect(enc.json.payloads).toHaveLength(1);
      const [e] = enc.json.payloads;
      expect(Buffer.from(e.metadata.encoding, 'base64').toString()).toBe('binary/encrypted');
      expect(Buffer.from(e.metadata['encryption-key-id'], 'base64').toString()).toBe('a');
      expect(found(JSON.stringify(e), textForms(ROW_MARKER))).toEqual([]);
      const dec = await http(api.url, 'POST', '/codec/decode', { body: { payloads: [e, plainPayload] }, headers: { 'x-namespace': 'default' } });
      expect(dec.status, dec.text).toBe(200);
      expect(dec.json.payloads).toEqual([plainPayload, plainPayload]); // not encrypted: passed through
      // Payloads the worker wrote decode too (proto JSON from the raw history).
      const { history } = await rawHistory(plain.client, batchRun.workflowId, batchRun.runId);
      const fromHistory = expectAllEncrypted(history).map(({ payload }) => ({
        metadata: Object.fromEntries(Object.entries(payload.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
        data: Buffer.from(payload.data!).toString('base64'),
      }));
      const decHistory = await http(api.url, 'POST', '/codec/decode', { body: { payloads: fromHistory } });
      expect(decHistory.status, decHistory.text).toBe(200);
      expect(found(JSON.stringify(decHistory.json), textForms(DESCRIPTION_MARKER))).not.toEqual([]);
    });

    it('401 without a token, 403 with a wrong one; 400 for a malformed body', async () => {
      for (const op of ['encode', 'decode']) {
        const none = await http(api.url, 'POST', `/codec/${op}`, { body: { payloads: [plainPayload] }, token: null });
        expect(none.status).toBe(401);
        expect(none.text).not.toContain(plainPayload.data);
        expect((await http(api.url, 'POST', `/codec/${op}`, { body: { payloads: [plainPayload] }, token: 'wrong' })).status).toBe(403);
      }
      const bad = await http(api.url, 'POST', '/codec/decode', { body: { payloads: [{ metadata: { encoding: 'not base64!' } }] } });
      expect(bad.status).toBe(400);
      expect(bad.json.error.message).toMatch(/body\.payloads\.0\.metadata\.encoding/);
      expect((await http(api.url, 'POST', '/codec/decode', { body: { nope: [] } })).status).toBe(400);
    });

    it('a payload encrypted with a key id the server does not hold is a 400 naming the id', async () => {
      const other = new AesGcmCodec(parseCodecKeys(`zz-retired:${KEY_B}`));
      const [p] = await other.encode([defaultPayloadConverter.toPayload('hello')]);
      const body = { payloads: [{ metadata: Object.fromEntries(Object.entries(p.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), data: Buffer.from(p.data!).toString('base64') }] };
      const res = await http(api.url, 'POST', '/codec/decode', { body });
      expect(res.status).toBe(400);
      expect(res.json.error.message).toMatch(/payload encrypted with key id "zz-retired", which SCORELINE_CODEC_KEYS does not hold \(it holds "a"\)/);
      expect(res.json.error.message).not.toContain(KEY_B);
      // Tampered: 400 too, never plaintext garbage.
      const tampered = Buffer.from(body.payloads[0].data, 'base64');
      tampered[15] ^= 1;
      body.payloads[0].metadata['encryption-key-id'] = Buffer.from('a').toString('base64');
      body.payloads[0].data = tampered.toString('base64');
      const t = await http(api.url, 'POST', '/codec/decode', { body });
      expect(t.status).toBe(400);
      expect(t.json.error.message).toMatch(/does not decrypt/);
    });

    it('CORS for the Web UI: preflight answered without auth for the configured origins only', async () => {
      const pre = await fetch(`${api.url}/codec/decode`, {
        method: 'OPTIONS',
        headers: { origin: 'http://localhost:8233', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace,authorization' },
      });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://localhost:8233');
      expect(pre.headers.get('access-control-allow-headers')).toMatch(/x-namespace/);
      expect(pre.headers.get('access-control-allow-headers')).toMatch(/authorization/);
      expect(pre.headers.get('access-control-allow-methods')).toMatch(/POST/);
      const post = await fetch(`${api.url}/codec/encode`, { method: 'POST', headers: { origin: 'http://127.0.0.1:8233', 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ payloads: [] }) });
      expect(post.status).toBe(200);
      expect(post.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:8233');
      const evil = await fetch(`${api.url}/codec/decode`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
      expect(evil.headers.get('access-control-allow-origin')).toBeNull();
      // Other routes are not opened to browsers.
      const other = await fetch(`${api.url}/v1/runs`, { headers: { origin: 'http://localhost:8233', authorization: `Bearer ${TOKEN}` } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('SCORELINE_CODEC_AUTH=none (for the local Web UI) works on loopback only; without the codec there is no endpoint', async () => {
      await expect(startApiServer({ client, token: TOKEN, port: 0, host: '0.0.0.0', projectDir: project, codecAuth: 'none', log: () => undefined })).rejects.toThrow(/SCORELINE_CODEC_AUTH=none .* only with a loopback --host/);
      const open = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project, codecAuth: 'none', codecCorsOrigins: ['http://127.0.0.1:9999'], log: () => undefined });
      extraApis.push(open);
      const res = await http(open.url, 'POST', '/codec/encode', { body: { payloads: [plainPayload] }, token: null });
      expect(res.status).toBe(200);
      expect((await http(open.url, 'GET', '/v1/runs', { token: null })).status).toBe(401); // the rest of the API keeps its token
      const noCodec = await startApiServer({ client: plain, token: TOKEN, port: 0, projectDir: project, log: () => undefined });
      extraApis.push(noCodec);
      expect((await http(noCodec.url, 'POST', '/codec/decode', { body: { payloads: [] } })).status).toBe(404);
      const doc = await http(api.url, 'GET', '/openapi.json', { token: null });
      expect(Object.keys(doc.json.paths)).toEqual(expect.arrayContaining(['/codec/encode', '/codec/decode']));
    });
  });

  it('schedules: the action (the run\'s input) and the memos are encrypted; the codec client reads them back and the scheduled run works', async () => {
    const raw: PipelineInput = {
      name: 'churn-sec',
      description: DESCRIPTION_MARKER,
      source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
      model: 'churn-gbt@champion',
      sink: { kind: 'parquet', path: 'out/churn_sec' },
      chunk_rows: 500,
      schedule: { cron: '0 2 * * *', timezone: 'UTC', paused: true },
    };
    expect((await applySchedule(client, { config: parsePipeline(raw, 'test') })).result).toBe('created');
    const desc = await plain.client.workflowService.describeSchedule({ namespace: 'default', scheduleId: 'scoreline/churn-sec' });
    expect(found(Buffer.from(temporal.api.workflowservice.v1.DescribeScheduleResponse.encode(desc).finish()), secretsOf())).toEqual([]);
    const inSchedule = payloadsIn(desc).filter((p) => !p.path.includes('.searchAttributes.'));
    expect(inSchedule.map((p) => p.path).sort()).toEqual(['.memo.fields.pipeline', '.schedule.action.startWorkflow.input.payloads[0]', '.schedule.action.startWorkflow.memo.fields.cron', '.schedule.action.startWorkflow.memo.fields.pipeline']);
    for (const p of inSchedule) expect(utf8(p.payload.metadata!.encoding), p.path).toBe('binary/encrypted');

    await backfillSchedule(client, 'churn-sec', DATE, DATE);
    const run = await waitFor(async () => {
      const info = await describeSchedule(client, 'churn-sec');
      return info.recent_runs.find((r) => r.logical_date === DATE && r.status !== 'running');
    }, 'the backfilled run', 60_000);
    expect(run.status).toBe('succeeded');
    const info = await describeSchedule(client, 'churn-sec');
    expect(info.cron).toEqual(['0 2 * * *']); // from the (encrypted) action memo
    for (const id of [run.workflow_id, run.run_workflow_id]) {
      const { history, bytes } = await rawHistory(plain.client, id);
      expect(found(bytes, secretsOf()), id).toEqual([]);
      expectAllEncrypted(history);
    }
    expect((await client.wait(client.client.workflow.getHandle(run.run_workflow_id))).status).toBe('succeeded');
  });

  it('key rotation: a worker and clients holding b (encrypting) and a still read and extend history written with a', async () => {
    const codecBA = new AesGcmCodec(parseCodecKeys(`b:${KEY_B},${KEYS_A}`));
    await stack.worker!.shutdown();
    rotatedWorker = await createWorker({ address: stack.address, projectDir: project, modelsDir: join(project, 'models'), pipelinesDir: join(project, 'pipelines'), codec: codecBA });
    void rotatedWorker.run();
    const clientBA = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE, codec: codecBA });
    extraClients.push(clientBA);
    const apiBA = await startApiServer({ client: clientBA, token: TOKEN, port: 0, projectDir: project, log: () => undefined });
    extraApis.push(apiBA);

    // The long-lived NRT workflow (history encrypted with a) is replayed by the new worker and takes a new request.
    const rows = await inputRows(project, 2);
    rows[0].note = ROW_MARKER;
    const res = await http(apiBA.url, 'POST', '/v1/pipelines/churn-sec/score', { body: { rows } });
    expect(res.status, res.text).toBe(200);
    expect(res.json.predictions).toHaveLength(2);
    const { history, bytes } = await rawHistory(plain.client, nrtWorkflowId('churn-sec'));
    expect(found(bytes, secretsOf())).toEqual([]);
    const ids = new Set(expectAllEncrypted(history, ['a', 'b']).map((p) => utf8(p.payload.metadata!['encryption-key-id'])));
    expect(ids).toEqual(new Set(['a', 'b']));

    // The batch run written with a: its result and memo read with b,a.
    const old = await clientBA.client.workflow.getHandle(batchRun.workflowId, batchRun.runId).result();
    expect(old).toMatchObject({ status: 'succeeded', rowsOut: 1_000 });
    expect((await http(apiBA.url, 'GET', `/v1/runs/${batchRun.runId}`)).json).toMatchObject({ rows_out: 1_000 });
    // A new run is written with b only.
    const raw: PipelineInput = { name: 'churn-sec', source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] }, model: 'churn-gbt@champion', sink: { kind: 'parquet', path: 'out/churn_sec' }, chunk_rows: 500 };
    const fresh = await clientBA.wait(await clientBA.startRun({ config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test' }));
    expect(fresh.status).toBe('succeeded');
    expectAllEncrypted((await rawHistory(plain.client, fresh.workflowId, fresh.runId)).history, ['b']);

    // A client that dropped a too early cannot read the old run, and says which key it lacks.
    const clientB = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE, codec: new AesGcmCodec(parseCodecKeys(`b:${KEY_B}`)) });
    extraClients.push(clientB);
    await expect(clientB.client.workflow.getHandle(batchRun.workflowId, batchRun.runId).result()).rejects.toThrow(/key id "a", which SCORELINE_CODEC_KEYS does not hold \(it holds "b"\)/);
    expect(await clientB.client.workflow.getHandle(fresh.workflowId, fresh.runId).result()).toMatchObject({ status: 'succeeded' });
  });
});

// ---------------------------------------------------------------------------------------------------

/** A webhook receiver whose error answers echo the request URL back, as a careless proxy might. */
class EchoingReceiver {
  readonly received: { url: string; headers: Record<string, unknown>; body: string }[] = [];
  failures = 0;
  private server!: Server;
  base = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        this.received.push({ url: req.url ?? '', headers: req.headers, body });
        if (this.failures > 0) {
          this.failures--;
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: `upstream refused POST ${req.url} (${req.headers.host})` }));
          return;
        }
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe('no configured secret in histories, logs or audit rows (codec off)', () => {
  const SF_PASSWORD = `sf-pw-${randomBytes(12).toString('hex')}`;
  const HOOK_TOKEN = `hooktok${randomBytes(12).toString('hex')}`;
  const HOOK_SECRET = `whsec-${randomBytes(12).toString('hex')}`;
  const PIPELINE = 'sec-wh';
  const ROWS = 600;

  let project: string;
  let emulator: Fakesnow;
  let stack: Stack;
  let client: ScorelineClient;
  let api: ApiServer;
  const receiver = new EchoingReceiver();
  let hookUrl: string;
  let logStart: number;
  let snowflakeLogStart = 0;
  const output: string[] = [];
  const restoreWrites: (() => void)[] = [];
  const runs: { workflowId: string; runId: string; status: string }[] = [];

  const pipeline = (over: Partial<PipelineInput> = {}): PipelineInput => ({
    name: PIPELINE,
    source: { kind: 'snowflake', connection: 'wh', table: 'features', where: 'ds = {{ ds }}', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'snowflake', connection: 'wh', table: 'sec_scores' },
    chunk_rows: 300,
    parallelism: 2,
    alerts: { channels: [{ kind: 'webhook', url_env: 'SEC_HOOK_URL', secret_env: 'SEC_HOOK_SECRET' }] },
    ...over,
  });

  async function run(raw: PipelineInput, date = DATE) {
    const result = await client.wait(await client.startRun({ config: parsePipeline(raw, 'test'), raw, date, trigger: 'test' }));
    runs.push({ workflowId: result.workflowId, runId: result.runId, status: result.status });
    return result;
  }

  const secrets = () => ({
    'warehouse password': textForms(SF_PASSWORD),
    'API bearer token': textForms(TOKEN),
    'webhook URL token': textForms(HOOK_TOKEN),
    'webhook URL': textForms(hookUrl),
    'webhook signing secret': textForms(HOOK_SECRET),
  });

  function expectNoSecret(where: string, haystack: Buffer | string): void {
    const leaks = Object.entries(secrets())
      .map(([name, forms]) => [name, found(haystack, forms)] as const)
      .filter(([, hits]) => hits.length > 0);
    expect(leaks, `secret in ${where}`).toEqual([]);
  }

  beforeAll(async () => {
    delete process.env.SCORELINE_CODEC_KEYS;
    logStart = logLines.length;
    // Whatever a library prints past the logger (console, stdout, stderr) is scanned too.
    for (const stream of [process.stdout, process.stderr]) {
      const original = stream.write.bind(stream);
      stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        output.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
        return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof stream.write;
      restoreWrites.push(() => (stream.write = original as typeof stream.write));
    }
    const sfLog = join(process.cwd(), 'snowflake.log');
    snowflakeLogStart = existsSync(sfLog) ? statSync(sfLog).size : 0;

    await receiver.start();
    hookUrl = `${receiver.base}/hooks/${HOOK_TOKEN}`;
    project = tempProject('scoreline-secrets-');
    copyModels(project);
    emulator = await startFakesnow({ projectDir: project, toolsDir: REPO });
    await seedSnowflakeTable({ connection: emulator.connection, table: 'features', dates: [DATE], rowsPerDate: ROWS, dir: join(project, 'data', 'customers') });
    // What an operator sets on the worker and the API: the connection names its password variable.
    Object.assign(process.env, {
      SCORELINE_CONNECTION_WH: JSON.stringify({ kind: 'snowflake', account: 'fakesnow', username: 'scoreline', database: 'SCORELINE', schema: 'PUBLIC', access_url: emulator.endpoint, password_env: 'SEC_SF_PASSWORD', options: { arrayBindingThreshold: 2 ** 31 - 1 } }),
      SEC_SF_PASSWORD: SF_PASSWORD,
      SEC_HOOK_URL: hookUrl,
      SEC_HOOK_SECRET: HOOK_SECRET,
    });
    mkdirSync(join(project, 'pipelines'));
    const yaml = (await import('yaml')).stringify(pipeline());
    writeFileSync(join(project, 'pipelines', `${PIPELINE}.yaml`), yaml);
    ({ stack, client } = await startTestEnv(project));
    api = await startApiServer({ client, token: TOKEN, port: 0, projectDir: project }); // logs through the process logger
  });

  afterAll(async () => {
    for (const restore of restoreWrites) restore();
    await api?.close();
    await stopTestEnv({ client, stack });
    await emulator?.stop();
    await receiver.stop();
    for (const k of ['SCORELINE_CONNECTION_WH', 'SEC_SF_PASSWORD', 'SEC_HOOK_URL', 'SEC_HOOK_SECRET']) delete process.env[k];
    if (project) cleanup(project);
  });

  it('failed and succeeded runs, API and near-real-time requests leave no secret anywhere', async () => {
    // 1. Fails at plan (a table that does not exist); the failed alert cannot be delivered: the
    //    endpoint answers 500 with its URL (and token) in the body, three times.
    receiver.failures = 3;
    const failed = await run(pipeline({ source: { kind: 'snowflake', connection: 'wh', table: 'missing_features', key: ['customer_id'] } }));
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/MISSING_FEATURES/);
    expect(receiver.received.length).toBe(3);
    expect(receiver.failures).toBe(0);

    // 2. The same date again, with the real table: succeeds and sends `recovered` to the webhook.
    const recovered = await run(pipeline());
    expect(recovered.error).toBeUndefined();
    expect(recovered).toMatchObject({ status: 'succeeded', rowsOut: ROWS });
    await waitFor(async () => (receiver.received.some((r) => r.body.includes('"recovered"')) ? true : undefined), 'the recovered alert');

    // 3. Over the API: a run of a date without rows (fails: on_empty), near-real-time requests (one
    //    succeeds, one fails with a NULL), and requests with no or a wrong token.
    const started = await http(api.url, 'POST', `/v1/pipelines/${PIPELINE}/runs`, { body: { date: '2026-11-05' } });
    expect(started.status, started.text).toBe(202);
    const apiRun = await client.wait(client.client.workflow.getHandle(started.json.workflow_id, started.json.run_id));
    expect(apiRun.status).toBe('failed');
    runs.push({ workflowId: apiRun.workflowId, runId: apiRun.runId, status: apiRun.status });
    const rows = (await query(`SELECT customer_id, ${FEATURES.join(', ')} FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet') ORDER BY customer_id LIMIT 5`)).map((r) =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)])),
    );
    expect((await http(api.url, 'POST', `/v1/pipelines/${PIPELINE}/score`, { body: { rows } })).status).toBe(200);
    const nulls = rows.map((r, i) => (i === 2 ? { ...r, f03: null } : r));
    expect((await http(api.url, 'POST', `/v1/pipelines/${PIPELINE}/score`, { body: { rows: nulls } })).status).toBe(400);
    expect((await http(api.url, 'GET', '/v1/runs', { token: null })).status).toBe(401);
    expect((await http(api.url, 'GET', '/v1/runs', { token: `${TOKEN}x` })).status).toBe(403);
    expect((await http(api.url, 'GET', `/v1/runs/${recovered.runId}`)).status).toBe(200);

    // Let the NRT workflow write its audit rows (batched, off the request path).
    const sql = (text: string) => runSnowflake(emulator.connection, text);
    await waitFor(async () => ((await sql(`SELECT COUNT(*) AS "N" FROM scoreline_runs WHERE trigger = 'nrt'`))[0].N === '2' ? true : undefined), 'the NRT audit rows');

    // --- Histories: every execution in the namespace, every event, raw bytes.
    const executions = new Map<string, { workflowId: string; runId: string }>();
    for (const r of runs) executions.set(r.runId, r);
    await waitFor(async () => {
      for await (const wf of client.client.workflow.list()) executions.set(wf.runId, { workflowId: wf.workflowId, runId: wf.runId });
      return executions.size >= runs.length + 1 ? true : undefined; // + the NRT workflow
    }, 'visibility to list the runs');
    expect([...executions.values()].some((e) => e.workflowId === nrtWorkflowId(PIPELINE))).toBe(true);
    let events = 0;
    for (const e of executions.values()) {
      const { history, bytes } = await rawHistory(client.client, e.workflowId, e.runId);
      events += history.events.length;
      expectNoSecret(`history of ${e.workflowId} (${e.runId})`, bytes);
    }
    expect(events).toBeGreaterThan(50);

    // --- Audit rows: every text column of every Scoreline table in the warehouse.
    const columns = await sql(`SELECT table_name AS "T", column_name AS "C" FROM "SCORELINE".INFORMATION_SCHEMA.COLUMNS WHERE table_schema = 'PUBLIC' AND table_name LIKE 'SCORELINE_%' AND data_type IN ('TEXT', 'VARCHAR') ORDER BY 1, 2`);
    const tables = new Map<string, string[]>();
    for (const c of columns) tables.set(String(c.T), [...(tables.get(String(c.T)) ?? []), String(c.C)]);
    expect([...tables.keys()]).toEqual(expect.arrayContaining(['SCORELINE_RUNS', 'SCORELINE_RUN_CHUNKS']));
    let auditText = '';
    for (const [table, cols] of tables) auditText += JSON.stringify(await sql(`SELECT ${cols.map((c) => `"${c}"`).join(', ')} FROM "${table}"`));
    for (const expected of ['"STATUS":"failed"', '"STATUS":"succeeded"', 'recovered', '"TRIGGER":"nrt"', 'HTTP 500 from the endpoint', 'upstream refused POST [redacted]']) {
      expect(auditText.includes(expected), `audit rows mention ${expected}`).toBe(true); // (the echoed body, redacted)
    }
    expectNoSecret('audit rows', auditText);

    // --- Logs: the process logger (worker, API, Temporal SDK), raw stdout/stderr, the dev server's
    //     log, the Snowflake driver's log file.
    const logs = logLines.slice(logStart).join('');
    expect(logs).toContain('"msg":"worker started"');
    expect(logs).toContain('"msg":"request"');
    expect(logs).toMatch(/"status":401/);
    expectNoSecret('log lines', logs);
    expectNoSecret('stdout/stderr', output.join(''));
    expectNoSecret('the Temporal dev server log', readFileSync(join(project, '.scoreline', 'temporal.log')));
    const sfLog = join(process.cwd(), 'snowflake.log');
    if (existsSync(sfLog)) expectNoSecret('snowflake.log', readFileSync(sfLog).subarray(snowflakeLogStart));

    // --- And what the webhook received: signed, never carrying its own URL or the signing secret.
    expect(receiver.received.length).toBeGreaterThanOrEqual(5);
    for (const r of receiver.received) {
      expect(r.url).toBe(`/hooks/${HOOK_TOKEN}`);
      const { 'webhook URL token': _url, 'webhook URL': _u, ...rest } = secrets();
      for (const [name, forms] of Object.entries(rest)) expect(found(r.body + JSON.stringify(r.headers), forms), `${name} in a webhook request`).toEqual([]);
      expect(found(r.body, textForms(HOOK_TOKEN))).toEqual([]);
    }
  });
});
