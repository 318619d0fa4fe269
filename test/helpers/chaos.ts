/**
 * Fault injection for the chaos tests (test/chaos/): worker processes to `kill -9`, what the server says
 * a killed worker was doing, what a run's history says was retried, and an HTTP-aware TCP proxy that drops
 * a warehouse connection in the middle of a chosen statement.
 *
 * Everything here observes or breaks real parts from outside: a worker is `node bin/scoreline.js worker`
 * (dist/, built by `npx tsc -p tsconfig.build.json`), the server is the real Temporal dev server, the
 * proxy sits on a real socket between the Snowflake SDK and the emulator.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { expect } from 'vitest';
import type { RunResult } from '../../src/types';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { startStack, type Stack } from '../../src/dev/stack';
import { TASK_QUEUE } from '../../src/search-attributes';
import { cleanup, copyModels, demoData, query, REPO, tempProject } from './project';

// ---------------------------------------------------------------------------------------------------
// Polling

/** Polls `check` until it returns a value other than undefined/false; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 120_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
    await sleep(intervalMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A deterministic pseudo-random sequence (mulberry32), so a failing chaos run can be repeated with its seed. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------------
// Worker processes

export interface WorkerProcessOptions {
  address: string;
  projectDir: string;
  pipelinesDir?: string;
  modelsDir?: string;
  /** Extra environment (SCORELINE_WORKER_CONCURRENCY, connections, …). */
  env?: Record<string, string>;
  /** Where its log lines go (appended); default `<projectDir>/.scoreline/workers.log`. */
  logFile?: string;
  readyTimeoutMs?: number;
}

export interface WorkerProcess {
  pid: number;
  /** Its Temporal identity (`worker_id` of its "worker started" line): what the server records as lastWorkerIdentity. */
  identity: string;
  child: ChildProcess;
  /** Resolves when the process is gone, with how it ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** `kill -<signal>` and wait until it is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * `node bin/scoreline.js worker` as its own OS process, configured the way an operator would
 * (TEMPORAL_ADDRESS, SCORELINE_PROJECT_DIR, SCORELINE_PIPELINES_DIR, SCORELINE_MODELS_DIR); resolves once
 * it logged "worker started" (both task queues created; polling starts right after).
 */
export async function startWorkerProcess(opts: WorkerProcessOptions): Promise<WorkerProcess> {
  const entry = join(REPO, 'bin', 'scoreline.js');
  if (!existsSync(join(REPO, 'dist', 'src', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json` first');
  const logFile = opts.logFile ?? join(opts.projectDir, '.scoreline', 'workers.log');
  mkdirSync(dirname(logFile), { recursive: true });
  const log = createWriteStream(logFile, { flags: 'a' });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_ADDRESS: opts.address,
    SCORELINE_PROJECT_DIR: opts.projectDir,
    SCORELINE_PIPELINES_DIR: opts.pipelinesDir ?? join(opts.projectDir, 'pipelines'),
    SCORELINE_MODELS_DIR: opts.modelsDir ?? join(opts.projectDir, 'models'),
    SCORELINE_LOG_FORMAT: 'json',
    SCORELINE_LOG_LEVEL: 'info',
    ...opts.env,
  };
  const child = spawn(process.execPath, [entry, 'worker'], { cwd: opts.projectDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnParentExit = () => child.kill('SIGKILL');
  process.on('exit', killOnParentExit);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      process.off('exit', killOnParentExit);
      resolve({ code, signal });
    });
  });
  let tail = '';
  let identity: string | undefined;
  let onReady!: (id: string) => void;
  const ready = new Promise<string>((resolve) => (onReady = resolve));
  let pending = '';
  const lines = (chunk: Buffer) => {
    log.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-6000);
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!identity && line.includes('"worker started"')) {
        try {
          identity = String(JSON.parse(line).worker_id);
          onReady(identity);
        } catch {
          // not our JSON line
        }
      }
    }
  };
  child.stdout!.on('data', lines);
  child.stderr!.on('data', lines);
  void exited.then(() => log.end());
  const timeoutMs = opts.readyTimeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready.then((id) => ({ id })),
    exited.then((e) => ({ exit: e })),
    new Promise<{ timeout: true }>((r) => (timer = setTimeout(() => r({ timeout: true }), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (!('id' in outcome)) {
    child.kill('SIGKILL');
    throw new Error(`worker process ${'exit' in outcome ? `exited (${JSON.stringify(outcome.exit)})` : `not ready after ${timeoutMs} ms`} before "worker started".\nOutput (tail):\n${tail}`);
  }
  return {
    pid: child.pid!,
    identity: outcome.id,
    child,
    exited,
    kill: async (signal: NodeJS.Signals = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// What the server knows

const STARTED = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;

export interface LostAttempt {
  workflowId: string;
  activity: string;
  /** Unique within the workflow: one step (one chunk) across its attempts. */
  activityId: string;
  attempt: number;
  /** The chunk's index and the last step its heartbeats named (read, convert, infer, write), for scoreChunk. */
  chunk?: number;
  step?: string;
}

function decode(payloads: temporal.api.common.v1.IPayloads | null | undefined): unknown {
  const first = payloads?.payloads?.[0];
  if (!first) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(first as never);
  } catch {
    return undefined;
  }
}

/**
 * The activity attempts a worker was running when it died: the server still has them as started, by
 * that worker's identity, until their heartbeat timeout. Call it after the kill, before they time out.
 */
export async function attemptsOf(client: Client, workflowIds: string[], identity: string): Promise<LostAttempt[]> {
  const described = await Promise.all(workflowIds.map(async (workflowId) => ({ workflowId, desc: await client.workflow.getHandle(workflowId).describe() })));
  return described.flatMap(({ workflowId, desc }) => startedBy(workflowId, desc.raw, identity));
}

/** The activity attempts of one described workflow that `identity` had started and not finished. */
export function startedBy(workflowId: string, raw: temporal.api.workflowservice.v1.IDescribeWorkflowExecutionResponse, identity: string): LostAttempt[] {
  const lost: LostAttempt[] = [];
  for (const a of raw.pendingActivities ?? []) {
    if (a.state !== STARTED || a.lastWorkerIdentity !== identity) continue;
    const details = decode(a.heartbeatDetails) as { step?: string; chunk?: number } | undefined;
    lost.push({ workflowId, activity: a.activityType?.name ?? '?', activityId: a.activityId ?? '?', attempt: a.attempt ?? 0, chunk: details?.chunk, step: details?.step });
  }
  return lost;
}

export interface ActivityOutcome {
  activity: string;
  /** The attempt that ended it (1 = never retried). */
  attempts: number;
  /** Why the attempt before it ended, e.g. "heartbeat timeout" (the history keeps only the last). */
  previousFailure?: string;
}

/** Every activity of one run's history with the attempt that completed it. */
export async function activityOutcomes(client: Client, workflowId: string, runId?: string): Promise<ActivityOutcome[]> {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const types = new Map<string, string>();
  const out: ActivityOutcome[] = [];
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '?');
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const f = started.lastFailure;
      const previousFailure = f ? (f.timeoutFailureInfo ? `${timeoutName(f.timeoutFailureInfo.timeoutType)} timeout` : (f.message ?? 'failure')) : undefined;
      out.push({ activity: types.get(String(started.scheduledEventId)) ?? '?', attempts: started.attempt ?? 1, ...(previousFailure && { previousFailure }) });
    }
  }
  return out;
}

function timeoutName(t: temporal.api.enums.v1.TimeoutType | null | undefined): string {
  const name = temporal.api.enums.v1.TimeoutType[t ?? 0] ?? 'unknown';
  return name.replace('TIMEOUT_TYPE_', '').toLowerCase().replace(/_/g, '-');
}

// ---------------------------------------------------------------------------------------------------
// A proxy that drops HTTP requests on the floor

export interface ProxiedRequest {
  method: string;
  path: string;
  /** The statement of a query request (Snowflake's `sqlText`, BigQuery's `query`; JSON body, gunzipped), if it is one. */
  sql?: string;
  /** The statement this session sent before (sessions are told apart by their Authorization token). */
  previousSql?: string;
}

export interface CutRule {
  name: string;
  matches(req: ProxiedRequest): boolean;
  /** How many matching requests to drop (default 1). */
  times?: number;
  /** Hold the request this long before dropping it (e.g. to look at the table meanwhile). */
  holdMs?: number;
  /**
   * `request` (default): drop the request on its way in, the server never sees it. `response`: forward it,
   * and drop the connection when the server's answer comes back (the statement ran; the client cannot know).
   */
  drop?: 'request' | 'response';
  /** Called when a matching request arrives, before it is held and dropped. */
  onMatch?(req: ProxiedRequest): void | Promise<void>;
}

/**
 * A TCP proxy between an HTTP client (a warehouse SDK: Snowflake's, BigQuery's) and a server (the emulator) that parses each
 * request on the way in, and for a request a rule matches resets both sockets instead of forwarding it:
 * the statement never reaches the server, the client sees its connection die mid-request (or, with
 * `drop: 'response'`, the statement runs and the connection dies as its answer comes back). Everything
 * else, and every response, is passed through byte for byte.
 */
export class CuttingProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly rules: Array<CutRule & { left: number }> = [];
  private readonly lastSql = new Map<string, string>();
  /** Every request dropped, in order, by rule name. */
  readonly cuts: Array<{ rule: string; sql?: string }> = [];
  /** Statements seen (forwarded or dropped). */
  readonly statements: string[] = [];
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(port = 0): Promise<number> {
    this.server = net.createServer((client) => this.handle(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Drop the next `times` requests matching `rule`. */
  arm(rule: CutRule): void {
    this.rules.push({ ...rule, left: rule.times ?? 1 });
  }

  /** Rules that still wait for a request. */
  pending(): string[] {
    return this.rules.filter((r) => r.left > 0).map((r) => r.name);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private handle(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => {
      this.sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      client.destroy();
    });
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    let dropResponse = false;
    upstream.on('data', (d) => (dropResponse ? drop() : client.write(d)));
    let buffered = Buffer.alloc(0);
    let busy: Promise<void> = Promise.resolve();
    client.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      busy = busy.then(async () => {
        for (;;) {
          const end = buffered.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buffered.subarray(0, end).toString('latin1');
          const headers = new Map(
            head
              .split('\r\n')
              .slice(1)
              .map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as [string, string]),
          );
          // A streamed (chunked) body, e.g. an upload: framed by its chunks; rules match it by method and path.
          const chunked = headers.get('transfer-encoding')?.includes('chunked');
          const bodyEnd = chunked ? chunkedBodyEnd(buffered, end + 4) : end + 4 + Number(headers.get('content-length') ?? 0);
          if (bodyEnd === undefined || buffered.length < bodyEnd) return;
          const request = buffered.subarray(0, bodyEnd);
          buffered = buffered.subarray(bodyEnd);
          const [method, path] = head.split(' ');
          const session = headers.get('authorization') ?? '';
          const req: ProxiedRequest = { method, path, sql: chunked ? undefined : statementOf(request.subarray(end + 4), headers.get('content-encoding')), previousSql: this.lastSql.get(session) };
          if (req.sql !== undefined) {
            this.statements.push(req.sql);
            this.lastSql.set(session, req.sql);
          }
          const rule = this.rules.find((r) => r.left > 0 && r.matches(req));
          if (rule) {
            rule.left--;
            this.cuts.push({ rule: rule.name, sql: req.sql });
            await rule.onMatch?.(req);
            if (rule.holdMs) await sleep(rule.holdMs);
            if (rule.drop === 'response') {
              dropResponse = true;
              upstream.write(request);
            } else drop();
            return;
          }
          upstream.write(request);
        }
      });
    });
  }
}

/** Where a chunked body that starts at `start` ends (after its last chunk and trailers), or undefined if not all of it is here yet. */
function chunkedBodyEnd(buf: Buffer, start: number): number | undefined {
  let at = start;
  for (;;) {
    const line = buf.indexOf('\r\n', at);
    if (line < 0) return undefined;
    const size = Number.parseInt(buf.subarray(at, line).toString('latin1'), 16);
    if (size === 0) {
      const end = buf.indexOf('\r\n\r\n', line);
      return end < 0 ? undefined : end + 4;
    }
    at = line + 2 + size + 2;
    if (at > buf.length) return undefined;
  }
}

function statementOf(body: Buffer, encoding: string | undefined): string | undefined {
  if (body.length === 0) return undefined;
  try {
    const text = (encoding === 'gzip' ? gunzipSync(body) : body).toString('utf8');
    const json = JSON.parse(text) as { sqlText?: unknown; query?: unknown; configuration?: { query?: { query?: unknown } } };
    const sql = json.sqlText ?? json.query ?? json.configuration?.query?.query;
    return typeof sql === 'string' ? sql : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// Batch runs under fire: the fixture the worker-kill tests share

export interface ChaosPipeline {
  name: string;
  model: string;
  /** Output table directory under out/. */
  table: string;
  /** The sink's mode (default replace-partition). */
  mode?: 'replace-partition' | 'append';
}

export interface ChaosRun {
  pipeline: ChaosPipeline;
  date: string;
  workflowId: string;
  runId: string;
}

/** Rows of the partition an earlier run left (seedEarlierPartition): 10 a file. */
export const EARLIER_ROWS_PER_FILE = 10;

/**
 * A partition as an earlier run left it: `files` Parquet files of rows that are not in the input (keys
 * beyond it, run_id "earlier-run") and its commit marker. A replace-partition run of the date must replace
 * all of it; an append run must leave it as it is.
 */
export async function seedEarlierPartition(project: string, table: string, date: string, files: number): Promise<void> {
  const dir = join(project, 'out', table, `ds=${date}`);
  mkdirSync(dir, { recursive: true });
  const first = join(dir, 'part-90000.parquet');
  await query(
    `COPY (SELECT 9000000000000 + i AS customer_id, 0.5::FLOAT AS churn_probability, 0::BIGINT AS churn_label, 'earlier-run' AS run_id, 'old' AS model_name, '0' AS model_version, '' AS model_sha256, now() AS scored_at, DATE '${date}' AS ds FROM range(${EARLIER_ROWS_PER_FILE}) t(i)) TO '${first}' (FORMAT parquet)`,
  );
  for (let i = 1; i < files; i++) copyFileSync(first, join(dir, `part-${90000 + i}.parquet`));
  writeFileSync(join(dir, '_scoreline_commit.json'), JSON.stringify({ run_id: 'earlier-run', workflow_id: 'earlier', rows: files * EARLIER_ROWS_PER_FILE, files: [], committed_at: new Date(0).toISOString() }));
}

/**
 * What one run must look like after the chaos: every input row scored once, by this run; the earlier
 * partition replaced (replace-partition) or untouched beside it (append, `earlierFiles` files); no staging
 * left; audit rows that end in `succeeded` with one chunk row per chunk. Returns how many `succeeded`
 * rows the audit holds (a finish retried after its write adds one) and the attempt of each chunk row.
 */
export async function expectExactlyOnce(project: string, run: ChaosRun, result: RunResult, inputRows: number, chunks: number, earlierFiles: number): Promise<{ succeededRows: number; chunkAttempts: number[] }> {
  const where = `${run.pipeline.name} ${run.date}`;
  const append = run.pipeline.mode === 'append';
  expect(result.status, `${where}: ${result.error}`).toBe('succeeded');
  expect(result.runId).toBe(run.runId);
  expect(result.rowsOut, where).toBe(inputRows);
  const partition = join(project, 'out', run.pipeline.table, `ds=${run.date}`);
  const input = `read_parquet('${project}/data/customers/ds=${run.date}/*.parquet')`;
  const all = `read_parquet('${partition}/*.parquet', union_by_name = true)`;
  const output = `(SELECT * FROM ${all} WHERE run_id = '${run.runId}')`;
  const [counts] = await query(
    `SELECT count(*) AS n, count(DISTINCT customer_id) AS keys,
            (SELECT count(*) FROM ${all} WHERE run_id <> '${run.runId}') AS other_rows,
            (SELECT count(*) FROM ${input} i ANTI JOIN ${output} o USING (customer_id)) AS missing,
            (SELECT count(*) FROM ${output} o ANTI JOIN ${input} i USING (customer_id)) AS extra
     FROM ${output}`,
  );
  const earlierRows = append ? earlierFiles * EARLIER_ROWS_PER_FILE : 0;
  expect(counts, where).toEqual({ n: inputRows, keys: inputRows, other_rows: earlierRows, missing: 0, extra: 0 });
  // Nothing but the run's files and markers in the partition (no temporary files; the earlier run's files only beside an append).
  const names = readdirSync(partition).sort();
  const ours = append ? new RegExp(`^part-[0-8]\\d{4}-${run.runId}\\.parquet$`) : /^part-[0-8]\d{4}\.parquet$/;
  const earlier = /^part-9\d{4}\.parquet$/;
  const markers = append ? ['_scoreline_commit.json', `_scoreline_commit-${run.runId}.json`].sort() : ['_scoreline_commit.json'];
  expect(names.filter((f) => !ours.test(f) && !(append && earlier.test(f))), where).toEqual(markers);
  expect(names.filter((f) => ours.test(f)).length, where).toBe(chunks);
  expect(names.filter((f) => earlier.test(f)).length, where).toBe(append ? earlierFiles : 0);
  // No staging left behind: neither the run's directory nor a partition it moved aside.
  const staging = join(project, 'out', '.scoreline-staging', run.pipeline.table);
  expect(existsSync(staging) ? readdirSync(staging).filter((f) => f.startsWith(run.runId)) : [], where).toEqual([]);

  // Audit: status rows of this run only say running or succeeded, and the latest one (as `scoreline sql`
  // reads it) is succeeded with the committed counts.
  const audit = await query(
    `SELECT status, rows_in, rows_out, chunks, error FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true)
     WHERE run_id = '${run.runId}' ORDER BY status <> 'running' DESC, updated_at DESC`,
  );
  expect(new Set(audit.map((a) => a.status)), where).toEqual(new Set(['running', 'succeeded']));
  expect(audit[0], where).toEqual({ status: 'succeeded', rows_in: inputRows, rows_out: inputRows, chunks, error: null });
  // One chunk row per chunk (a retried chunk replaced its row), adding up to the input.
  const chunkRows = await query(
    `SELECT chunk_index, status, rows_out, attempt FROM read_parquet('${project}/out/scoreline_run_chunks/${run.runId}/*.parquet') ORDER BY chunk_index`,
  );
  expect(chunkRows.map((c) => c.chunk_index), where).toEqual(Array.from({ length: chunks }, (_, i) => i));
  expect(chunkRows.every((c) => c.status === 'succeeded'), where).toBe(true);
  expect(chunkRows.reduce((n, c) => n + Number(c.rows_out), 0), where).toBe(inputRows);
  return { succeededRows: audit.filter((a) => a.status === 'succeeded').length, chunkAttempts: chunkRows.map((c) => Number(c.attempt)) };
}

// ---------------------------------------------------------------------------------------------------
// The kill loop the worker-kill tests share

/** Where a kill is aimed: a random moment, a chunk's Parquet file being written, a commit under way. */
export type Aim = 'random' | 'staging' | 'commit';

/**
 * Attempts each step of a run has (workflows/batch.ts, workflows/chunks.ts). A step whose every attempt
 * dies with its worker fails the run, by design (a chunk that kills every worker it lands on must not loop
 * forever), so the loop never kills a worker while it holds one of a step's last two attempts. Two, not
 * one: the server is asked before the kill, and the worker can start an attempt in between (or a fresh
 * worker, starved of CPU while it starts, misses a heartbeat), which may then use up one more attempt.
 */
export const STEP_ATTEMPTS: Record<string, number> = { scoreChunk: 4, planRun: 5, checkRunKeys: 5, profileRun: 5, commitRun: 10, finishRun: 10 };

export interface Kill {
  aim: Aim;
  /** The aimed-at moment was seen (false: its wait ran out, and the kill came at a random moment). */
  hit: boolean;
  victim: number;
  /** The dead worker's attempts, each with the phase it was in. */
  lost: Array<LostAttempt & { phase: string }>;
  /** Commits cut after moving the old partition aside (`<run>.replaced` still there after the kill). */
  commits: string[];
  /** Runs still running when the kill came. */
  openRuns: string[];
}

export interface KillLoopOptions {
  client: Client;
  project: string;
  runs: ChaosRun[];
  /** The worker processes; the loop replaces a killed one in place. */
  workers: WorkerProcess[];
  startWorker: () => Promise<WorkerProcess>;
  rand: () => number;
  minKills: number;
  maxKills: number;
  /** Which worker dies at kill k (default 0). */
  victim?: (k: number) => number;
  aims?: Aim[];
  /**
   * Starts more runs when every run ended before `minKills` kills (a fast machine finishes the work
   * early); the loop adds them to `runs`, so the caller checks them like the first ones. Without it, or
   * when it returns none, the loop stops with fewer kills.
   */
  more?: () => Promise<ChaosRun[]>;
}

export interface KillLoopResult {
  kills: Kill[];
  /** Kills that waited because the victim held one of some step's last two attempts. */
  postponed: number;
  /** How long each fresh worker took to start (process start to "worker started"). */
  startMs: number[];
}

/**
 * Kills a worker (`kill -9`), starts a fresh one in its place, again and again, until every run ended or
 * `maxKills` kills; at least `minKills` of them while some run is open (a kill that comes after every run
 * ended does not count) unless the runs end first and `more` has no more to start. Each
 * worker lives a random while first (its first chunks load sessions and are slow: killing it at once
 * would hit the same cold chunks again and again), then dies at the next moment its aim waits for (at
 * most 5 s). After each kill it asks the server
 * which attempts the dead worker held, and places each in its phase.
 */
export async function killRepeatedly(o: KillLoopOptions): Promise<KillLoopResult> {
  const aims = o.aims ?? ['random', 'staging', 'commit'];
  const stagingDirs = [...new Set(o.runs.map((r) => join(o.project, 'out', '.scoreline-staging', r.pipeline.table)))];
  const closed = new Set<string>();
  // The server's view, one describe per run still running (a closed run stays closed).
  const look = async (identity: string) => {
    const described = await Promise.all(
      o.runs.filter((r) => !closed.has(r.workflowId)).map(async (r) => ({ id: r.workflowId, desc: await o.client.workflow.getHandle(r.workflowId).describe() })),
    );
    for (const d of described) if (d.desc.status.name !== 'RUNNING') closed.add(d.id);
    const live = described.filter((d) => !closed.has(d.id));
    return { open: live.map((d) => d.id), held: live.flatMap((d) => startedBy(d.id, d.desc.raw, identity)) };
  };
  const kills: Kill[] = [];
  const startMs: number[] = [];
  let postponed = 0;
  /** Kills that came while some run was still open: only these count toward `minKills`. */
  let landed = 0;
  /** Runs to kill into: the spare runs once the first ones ended, if kills are still owed. */
  const anyOpen = async (identity: string) => {
    if ((await look(identity)).open.length > 0) return true;
    if (landed >= o.minKills || !o.more) return false;
    const added = await o.more();
    o.runs.push(...added);
    return added.length > 0;
  };
  for (let k = 0; k < o.maxKills; k++) {
    const aim = aims[k % aims.length];
    const victim = o.victim?.(k) ?? 0;
    const worker = o.workers[victim];
    await sleep(600 + o.rand() * 1_500);
    if (!(await anyOpen(worker.identity))) break; // every run ended while this worker lived: nothing to kill into
    const lateAttempt = async () => (await look(worker.identity)).held.some((a) => a.attempt >= (STEP_ATTEMPTS[a.activity] ?? Infinity) - 1);
    let waited = false;
    const waitOutLateAttempts = async () => {
      if (!(await lateAttempt())) return;
      waited = true;
      await waitFor('the late attempts of this worker to end', async () => !(await lateAttempt()), 60_000, 50);
    };
    await waitOutLateAttempts();
    let hit = true;
    if (aim !== 'random') {
      await waitFor('a staging directory', () => stagingDirs.some((d) => existsSync(d)), 30_000, 50);
      const test = aim === 'staging' ? (n: string) => n.includes(`.tmp-${worker.pid}-`) : (n: string) => n.endsWith('.replaced');
      const watcher = appears(stagingDirs, test, 5_000);
      // The aim waits up to 5 s, time enough for the worker to start one of those attempts: the server is
      // asked again meanwhile (asking only after the hit would let the aimed moment pass).
      let holdsLate = false;
      let watching = true;
      void (async () => {
        while (watching) {
          holdsLate = await lateAttempt().catch(() => holdsLate);
          await sleep(50);
        }
      })();
      hit = await watcher.seen;
      watcher.stop();
      watching = false; // not awaited: the kill must follow the aimed moment at once
      if (holdsLate) {
        hit = false;
        await waitOutLateAttempts();
      }
    }
    if (waited) postponed++;
    await worker.kill('SIGKILL');
    const { open, held } = await look(worker.identity);
    const lost = held.map((a) => ({ ...a, phase: phaseOf(o.project, o.runs, a, worker.pid) }));
    const commits = stagingDirs.flatMap((d) => (existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.replaced')) : []));
    kills.push({ aim, hit, victim, lost, commits, openRuns: open });
    if (open.length > 0) landed++;
    const t = Date.now();
    o.workers[victim] = await o.startWorker();
    startMs.push(Date.now() - t);
    if (!(await anyOpen(worker.identity))) break;
  }
  return { kills, postponed, startMs };
}

/**
 * Which phase a dead worker's attempt was in. The server's heartbeat details are throttled (a chunk's
 * later steps reach it late), so a chunk is placed by what the dead process left on disk: a temporary
 * Parquet file of its pid in the run's staging (writing the chunk) or in its chunk audit (writing the
 * audit row); without one it was still reading, converting or inferring (or, before its first
 * heartbeat, loading the model's session).
 */
function phaseOf(project: string, runs: ChaosRun[], a: LostAttempt, pid: number): string {
  if (a.activity !== 'scoreChunk') return a.activity;
  if (a.chunk === undefined) return 'scoreChunk: starting (no heartbeat yet)';
  const run = runs.find((r) => r.workflowId === a.workflowId)!;
  const index = String(a.chunk).padStart(5, '0');
  const has = (dir: string, name: string) => existsSync(dir) && readdirSync(dir).some((f) => f.includes(name));
  if (has(join(project, 'out', '.scoreline-staging', run.pipeline.table, run.runId), `part-${index}.parquet.tmp-${pid}-`)) return 'scoreChunk: staging its Parquet file';
  if (has(join(project, 'out', 'scoreline_run_chunks', run.runId), `chunk-${index}.parquet.tmp-${pid}-`)) return 'scoreChunk: writing its audit row';
  return 'scoreChunk: reading/converting/inferring';
}

/** Resolves when a file or directory whose name passes `test` shows up in one of `dirs` (or after `ms`). */
function appears(dirs: string[], test: (name: string) => boolean, ms: number): { seen: Promise<boolean>; stop(): void } {
  const watchers: FSWatcher[] = [];
  let done!: (hit: boolean) => void;
  const seen = new Promise<boolean>((r) => (done = r));
  const timer = setTimeout(() => done(false), ms);
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    const w = watch(dir, { recursive: true }, (_event, name) => {
      if (name && test(String(name))) done(true);
    });
    w.on('error', () => undefined);
    watchers.push(w);
  }
  return {
    seen,
    stop: () => {
      clearTimeout(timer);
      watchers.forEach((w) => w.close());
    },
  };
}

/** The kills by phase, for the test's summary line and docs/reliability.md. */
export function killSummary(r: KillLoopResult): Record<string, unknown> {
  const lost = r.kills.flatMap((k) => k.lost);
  const phases: Record<string, number> = {};
  const perChunk = new Map<string, number>();
  for (const a of lost) {
    phases[a.phase] = (phases[a.phase] ?? 0) + 1;
    // By activity id, not the heartbeat's chunk index: an attempt killed before its first heartbeat has none.
    const id = `${a.workflowId}#${a.activityId}`;
    if (a.activity === 'scoreChunk') perChunk.set(id, (perChunk.get(id) ?? 0) + 1);
  }
  const aims = [...new Set(r.kills.map((k) => k.aim))];
  return {
    kills: r.kills.length,
    killsWhileRunsOpen: r.kills.filter((k) => k.openRuns.length > 0).length,
    aimed: Object.fromEntries(aims.map((a) => [a, `${r.kills.filter((k) => k.aim === a && k.hit).length}/${r.kills.filter((k) => k.aim === a).length}`])),
    attemptsLost: lost.length,
    phases,
    commitsCutAfterMovingTheOldPartition: r.kills.reduce((n, k) => n + k.commits.length, 0),
    runsThatLostAnAttempt: new Set(lost.map((a) => a.workflowId)).size,
    mostKillsOfOneChunk: Math.max(0, ...perChunk.values()),
    killsPostponedForLateAttempts: r.postponed,
    workerStartMs: Math.round(r.startMs.reduce((n, x) => n + x, 0) / Math.max(1, r.startMs.length)),
  };
}

/** The two kill tests' fixture: a project with every date's input and an earlier partition, and only the Temporal server (every worker is a process of its own). */
export interface ChaosFixture {
  project: string;
  stack: Stack;
  client: ScorelineClient;
}

export async function chaosFixture(prefix: string, o: { dates: string[]; pipelines: ChaosPipeline[]; rows: number; rowGroup: number; earlierFiles: number }): Promise<ChaosFixture> {
  const project = tempProject(prefix);
  copyModels(project);
  await demoData(project, o.dates, o.rows, o.rowGroup);
  for (const p of o.pipelines) for (const d of o.dates) await seedEarlierPartition(project, p.table, d, o.earlierFiles);
  const stack = await startStack({ projectDir: project, toolsDir: REPO, dbFilename: join(project, '.scoreline', 'temporal.db'), headless: true, startWorker: false });
  const client = await ScorelineClient.connect({ address: stack.address, namespace: 'default', taskQueue: TASK_QUEUE });
  return { project, stack, client };
}

export async function closeChaosFixture(f: Partial<ChaosFixture>, workers: WorkerProcess[]): Promise<void> {
  for (const w of workers) await w.kill();
  await f.client?.close();
  await f.stack?.stop();
  if (f.project) cleanup(f.project);
}

/** One run per date and pipeline, all started before any worker polls. */
export async function startChaosRuns(client: ScorelineClient, dates: string[], pipelines: ChaosPipeline[], raw: (p: ChaosPipeline) => PipelineInput): Promise<ChaosRun[]> {
  const runs: ChaosRun[] = [];
  for (const d of dates) {
    for (const p of pipelines) {
      const handle = await client.startRun({ config: parsePipeline(raw(p), 'chaos'), raw: raw(p), date: d, trigger: 'test' });
      runs.push({ pipeline: p, date: d, workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
    }
  }
  return runs;
}

/** For killRepeatedly's `more`: each call starts the runs of the next `perCall` of `spareDates` (none once they are used up). */
export function spareRuns(client: ScorelineClient, spareDates: string[], pipelines: ChaosPipeline[], raw: (p: ChaosPipeline) => PipelineInput, perCall = 2): () => Promise<ChaosRun[]> {
  let next = 0;
  return () => startChaosRuns(client, spareDates.slice(next, (next += perCall)), pipelines, raw);
}

/** Each run's result, by workflow id. */
export async function waitForRuns(client: ScorelineClient, runs: ChaosRun[]): Promise<Map<string, RunResult>> {
  const results = new Map<string, RunResult>();
  for (const r of runs) results.set(r.workflowId, await client.wait(client.client.workflow.getHandle(r.workflowId, r.runId)));
  return results;
}
