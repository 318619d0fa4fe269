/**
 * Shared pieces of the bad-input matrix (test/integration/bad-input-*.test.ts, docs/reliability.md):
 * hostile values, a run through the real run steps without Temporal (for the warehouse emulators), a
 * server that refuses every credential like Snowflake and BigQuery do, and the CLI as a child process.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { PipelineConfig } from '../../src/config/pipeline';
import { errorMessage } from '../../src/errors';
import { commitRun, finishRun, planRun, scoreChunk } from '../../src/run/batch';
import type { RunContext } from '../../src/run/context';
import type { ChunkStats, CommitStats, RunRef, RunResult, RunStatus } from '../../src/types';
import { REPO } from './project';

/** 1 MiB in one value: far beyond any real key, well inside every backend's string limit. */
export const HUGE_STRING = 'x'.repeat(1 << 20);

/**
 * Key values that would change a statement if anything pasted them into SQL: quotes of every kind,
 * comment markers, statement separators, a backslash, a newline, non-ASCII. They must come back unchanged.
 */
export const HOSTILE_VALUES = [
  `'; DROP TABLE features; --`,
  `Robert'); DROP TABLE scoreline_runs; --`,
  `a"b`,
  `"; DELETE FROM churn_scores WHERE 1=1; --`,
  '`; DROP TABLE scoreline.features; --',
  `back\\slash\\'`,
  `line\nbreak`,
  `ünïcødé ✓ 日本`,
];

/** A table or column name that tries to end the statement and start another. */
export const HOSTILE_NAME = `customers; DROP TABLE x--`;

let runCounter = 0;

export function testRun(config: PipelineConfig, date: string): RunRef {
  runCounter++;
  return { runId: `0000-bad-input-${runCounter}-${Date.now()}`, workflowId: `scoreline/${config.name}/${date}`, pipeline: config.name, logicalDate: date, trigger: 'test' };
}

export interface StepOptions {
  /** Throw after every chunk is staged, before the commit (a worker lost in between). */
  failAfterStaging?: boolean;
  /** Each chunk staged twice and the commit run twice: activities retried after they went through. */
  retryStageAndCommit?: boolean;
}

/**
 * One run through the same steps the workflow takes (plan → score chunks → commit → finish, with the
 * workflow's "plan failed: " / "run failed: " prefixes), without Temporal in between: what the bad-input
 * matrix, snowflake.test.ts and bigquery.test.ts do against the emulators.
 */
export async function runSteps(ctx: RunContext, config: PipelineConfig, date: string, opts: StepOptions = {}): Promise<RunResult & { commit?: CommitStats }> {
  const run = testRun(config, date);
  const input = { pipeline: config.name, config, date, trigger: 'test' as const };
  const startedAtMs = Date.now();
  const totals = { chunksDone: 0, rowsIn: 0, rowsOut: 0, rowsRejected: 0, rowsImputed: 0, stageMs: { read: 0, convert: 0, infer: 0, write: 0 } };
  const finish = (status: RunStatus, extra: { plan?: Awaited<ReturnType<typeof planRun>>; error?: string; commit?: CommitStats }) =>
    finishRun(ctx, {
      input,
      run,
      plan: extra.plan ? { ...extra.plan, chunks: extra.plan.chunks.length } : undefined,
      status,
      error: extra.error,
      totals,
      commit: extra.commit,
      startedAtMs,
    });
  let plan;
  try {
    plan = await planRun(ctx, { input, run, startedAtMs });
  } catch (err) {
    return finish('failed', { error: `plan failed: ${errorMessage(err)}` });
  }
  const staged: ChunkStats[] = [];
  try {
    for (const chunk of plan.chunks) {
      const args = { run: plan.run, config: plan.config, model: plan.model, chunk };
      const stats = await scoreChunk(ctx, args);
      if (opts.retryStageAndCommit) await scoreChunk(ctx, args, { heartbeat: () => undefined, throwIfCancelled: () => undefined, attempt: 2 });
      staged.push(stats);
      totals.chunksDone++;
      totals.rowsIn += stats.rowsIn;
      totals.rowsOut += stats.rowsOut;
      totals.rowsRejected += stats.rowsRejected;
      totals.rowsImputed += stats.rowsImputed;
    }
    if (opts.failAfterStaging) throw new Error('worker lost between staging and commit');
    const commitArgs = { run: plan.run, config: plan.config, staged: staged.map((s) => ({ index: s.index, rows: s.rowsOut, file: s.stagedFile })) };
    const commit = await commitRun(ctx, commitArgs);
    if (opts.retryStageAndCommit) await commitRun(ctx, commitArgs); // an activity retried after its commit went through
    return { ...(await finish('succeeded', { plan, commit })), commit };
  } catch (err) {
    return finish('failed', { plan, error: `run failed: ${errorMessage(err)}` });
  }
}

export interface RefusingServer {
  /** `http://127.0.0.1:<port>`: an `accessUrl` (Snowflake) or `apiEndpoint` (BigQuery). */
  url: string;
  /** `METHOD path` of every request, to show nothing past authentication was attempted. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Answers like a warehouse that refuses the credentials: Snowflake's login endpoint with error 390100
 * ("Incorrect username or password"), everything else with BigQuery's HTTP 401 "Invalid Credentials".
 * The emulators accept any credentials, so this is how an auth failure is shown end to end.
 */
export async function startRefusingServer(): Promise<RefusingServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests.push(`${req.method} ${(req.url ?? '').split('?')[0]}`);
      if ((req.url ?? '').startsWith('/session/v1/login-request')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ data: { nextAction: 'RETRY_LOGIN', authnMethod: 'USERNAME_PASSWORD' }, code: '390100', message: 'Incorrect username or password was specified.', success: false, headers: null }));
        return;
      }
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="https://accounts.google.com/"' });
      res.end(
        JSON.stringify({
          error: {
            code: 401,
            message: 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
            errors: [{ message: 'Invalid Credentials', domain: 'global', reason: 'authError', location: 'Authorization', locationType: 'header' }],
            status: 'UNAUTHENTICATED',
          },
        }),
      );
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The last stdout line as JSON (`--json`), if it is JSON. */
  json?: Record<string, unknown>;
}

/** The compiled CLI (`bin/scoreline.js` → dist/) in a child process, as a user runs it. */
export function scorelineCli(cwd: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(REPO, 'bin', 'scoreline.js'), ...args], { cwd, env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? Number((err as { code?: number }).code ?? 1) : 0;
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(stdout.trim().split('\n').at(-1) ?? '');
      } catch {
        json = undefined;
      }
      resolve({ code: Number.isFinite(code) ? code : 1, stdout, stderr, json });
    });
  });
}
