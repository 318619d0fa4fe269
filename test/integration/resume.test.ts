/**
 * `run --resume` on real parts: the Temporal dev server and worker, Parquet in and out. A run that failed
 * while scoring (a chunk could not be staged: its file name was taken by a directory, as a full or broken
 * disk would do) keeps what it staged; a run that was killed (terminated) leaves it too. Resumed under the
 * same run id, each reuses the staged chunks, scores only the rest and commits exactly the rows of an
 * uninterrupted run. Resume is refused when the input changed, the run succeeded or is unknown; staging
 * older than keep_failed_staging is swept.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { summaryLinesFor } from '../../src/cli/run-output';
import { resumeDate } from '../../src/runs';
import type { RunResult } from '../../src/types';
import { waitFor } from '../helpers/chaos';
import { copyModels, demoData, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-09';
const ROWS = 48_000;
const CHUNK_ROWS = 1_024; // 47 chunks
const CHUNKS = Math.ceil(ROWS / CHUNK_ROWS);

let project: string;
let stack: Stack;
let client: ScorelineClient;
/** The uninterrupted run's output: key → prediction columns. */
let reference: Map<number, string>;

function pipeline(name: string, over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name,
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: `out/${name.replaceAll('-', '_')}` },
    chunk_rows: CHUNK_ROWS,
    parallelism: 1,
    ...over,
  };
}

const start = (raw: PipelineInput, opts: { resume?: string; date?: string } = {}) => client.startRun({ config: parsePipeline(raw, 'test'), raw, date: opts.date ?? DATE, trigger: 'test', resume: opts.resume });
const staging = (table: string, runId: string) => join(project, 'out', '.scoreline-staging', table, runId);
const stagedFiles = (table: string, runId: string) => (existsSync(staging(table, runId)) ? readdirSync(staging(table, runId)).filter((f) => f.endsWith('.parquet')) : []);

/** A run started, then terminated once at least `chunks` chunks are scored; its run id. */
async function killedAfter(raw: PipelineInput, chunks: number): Promise<string> {
  const handle = await start(raw);
  await waitFor(`${chunks} chunk(s) scored`, async () => ((await client.progress(handle))?.chunksDone ?? 0) >= chunks, 60_000, 20);
  await handle.terminate('killed by the test');
  return handle.firstExecutionRunId;
}

async function output(table: string): Promise<Map<number, string>> {
  const rows = await query(`SELECT customer_id, churn_probability, churn_label FROM read_parquet('${project}/out/${table}/ds=${DATE}/*.parquet')`);
  return new Map(rows.map((r) => [Number(r.customer_id), `${r.churn_probability}/${r.churn_label}`]));
}

async function expectResumed(result: RunResult, table: string, runId: string, reusedAtLeast: number): Promise<void> {
  expect(result.error).toBeUndefined();
  expect(result).toMatchObject({ status: 'succeeded', runId, rowsIn: ROWS, rowsOut: ROWS, chunks: CHUNKS });
  expect(result.reusedChunks).toBeGreaterThanOrEqual(reusedAtLeast);
  expect(result.reusedChunks).toBeLessThan(CHUNKS);
  // Exactly the uninterrupted run's rows: every key once, the same predictions, all under the run's id.
  expect(await output(table)).toEqual(reference);
  const ids = await query(`SELECT DISTINCT run_id FROM read_parquet('${project}/out/${table}/ds=${DATE}/*.parquet')`);
  expect(ids.map((r) => r.run_id)).toEqual([runId]);
  // The audit shows which chunks were taken over; the rest were scored by the resumed attempt.
  const chunks = await query(`SELECT status, count(*) AS n FROM read_parquet('${project}/out/scoreline_run_chunks/${runId}/*.parquet') GROUP BY status ORDER BY status`);
  expect(chunks).toEqual([
    { status: 'reused', n: result.reusedChunks },
    { status: 'succeeded', n: CHUNKS - result.reusedChunks! },
  ]);
  const [last] = await query(`SELECT status, rows_out FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${runId}' ORDER BY updated_at DESC LIMIT 1`);
  expect(last).toEqual({ status: 'succeeded', rows_out: ROWS });
  expect(stagedFiles(table, runId)).toEqual([]);
  expect(summaryLinesFor(result).join('\n')).toContain(`resumed: ${result.reusedChunks} of ${CHUNKS} chunks taken over from the run's staging, ${CHUNKS - result.reusedChunks!} scored`);
}

beforeAll(async () => {
  project = tempProject('scoreline-resume-');
  copyModels(project);
  await demoData(project, [DATE], ROWS, CHUNK_ROWS);
  ({ stack, client } = await startTestEnv(project));
  const ref = await client.wait(await start(pipeline('uninterrupted')));
  expect(ref).toMatchObject({ status: 'succeeded', chunks: CHUNKS });
  reference = await output('uninterrupted');
  expect(reference.size).toBe(ROWS);
});

afterAll(async () => {
  await stopTestEnv({ client, stack, project });
});

describe('run --resume', () => {
  it('a run that failed while scoring keeps its staged chunks; resumed, it reuses them and commits exactly the rows of an uninterrupted run', async () => {
    const raw = pipeline('failed-run');
    const handle = await start(raw);
    const runId = handle.firstExecutionRunId;
    // Chunk 12's staged file name is taken by a directory: every attempt to stage it fails (not the input's fault).
    mkdirSync(join(staging('failed_run', runId), 'part-00012.parquet', 'blocked'), { recursive: true });
    const failed = await client.wait(handle);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/^score chunk 12 failed: /);
    expect(failed.resumableUntil).toBeDefined();
    expect(summaryLinesFor(failed).join('\n')).toContain(`resume with scoreline run failed-run --resume ${runId}`);
    expect(stagedFiles('failed_run', runId).length).toBeGreaterThanOrEqual(12);
    expect(existsSync(join(project, 'out', 'failed_run', `ds=${DATE}`))).toBe(false);

    rmSync(join(staging('failed_run', runId), 'part-00012.parquet'), { recursive: true }); // the fix
    expect(await resumeDate(client, 'failed-run', runId)).toBe(DATE);
    const resumed = await client.wait(await start(raw, { resume: runId }));
    await expectResumed(resumed, 'failed_run', runId, 12);
  });

  it('a run that was killed (terminated) mid-way is resumed the same way', async () => {
    const raw = pipeline('killed-run');
    const runId = await killedAfter(raw, 8);
    const staged = stagedFiles('killed_run', runId).length;
    expect(staged).toBeGreaterThanOrEqual(8);
    expect(staged).toBeLessThan(CHUNKS);
    const resumed = await client.wait(await start(raw, { resume: runId }));
    await expectResumed(resumed, 'killed_run', runId, 8);
  });

  it('is refused when the input changed, when the run succeeded, or when it is unknown; failed input checks keep nothing', async () => {
    const raw = pipeline('changed-run');
    const runId = await killedAfter(raw, 1);
    expect(stagedFiles('changed_run', runId).length).toBeGreaterThanOrEqual(1);
    const file = join(project, 'data', 'customers', `ds=${DATE}`, readdirSync(join(project, 'data', 'customers', `ds=${DATE}`))[0]);
    const mtime = statSync(file).mtime;
    utimesSync(file, mtime, new Date(mtime.getTime() + 60_000)); // the input was rewritten (same bytes, new mtime)
    try {
      const refused = await client.wait(await start(raw, { resume: runId }));
      expect(refused.status).toBe('failed');
      expect(refused.error).toMatch(new RegExp(`^plan failed: the input of changed-run ${DATE} changed since run ${runId} \\(fingerprint parquet:v1:\\w+ → parquet:v1:\\w+\\): start a new run instead$`));
      expect(stagedFiles('changed_run', runId).length).toBeGreaterThanOrEqual(1); // refused: the run it would resume keeps its staging
      // …and the refused resume reports that run's id, and no resume of its own to offer (it used to print one).
      expect(refused.runId).toBe(runId);
      expect(refused.resumableUntil).toBeUndefined();
    } finally {
      utimesSync(file, mtime, mtime);
    }
    const succeeded = (await query(`SELECT run_id FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE pipeline = 'uninterrupted' AND status = 'succeeded'`))[0].run_id as string;
    await expect(resumeDate(client, 'uninterrupted', succeeded)).rejects.toThrow(`run ${succeeded} succeeded: there is nothing to resume`);
    await expect(resumeDate(client, 'changed-run', '01a22400-0000-7000-8000-000000000000')).rejects.toThrow(/^no run with id 01a22400-0000-7000-8000-000000000000 /);
    const both = { config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test' as const, resume: runId, onlyQuarantined: runId };
    await expect(client.startRun(both)).rejects.toThrow(/^resume and only-quarantined are two kinds of run/);

    // A run that fails on its input (a NULL feature) cleans up as before: a resume could not help.
    const bad = join(project, 'data', 'nulls', `ds=${DATE}`);
    mkdirSync(bad, { recursive: true });
    await query(`COPY (SELECT * REPLACE (CASE WHEN customer_id % 1000 = 999 THEN NULL ELSE f05 END AS f05) FROM read_parquet('${file}') ORDER BY customer_id) TO '${bad}/part-0.parquet' (FORMAT parquet)`);
    const nulls = await client.wait(await start(pipeline('null-run', { source: { kind: 'parquet', path: 'data/nulls/ds={{ ds }}/*.parquet', key: ['customer_id'] } })));
    expect(nulls.status).toBe('failed');
    expect(nulls.resumableUntil).toBeUndefined();
    expect(stagedFiles('null_run', nulls.runId)).toEqual([]);
  });

  it('staging left longer ago than keep_failed_staging is swept when the sink is next planned for; newer staging stays', async () => {
    const old = staging('swept', '01a22400-0000-7000-8000-00000000dead');
    const fresh = staging('swept', '01a22400-0000-7000-8000-00000000beef');
    for (const dir of [old, fresh]) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'part-00000.parquet'), 'staged');
    }
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    utimesSync(old, twoDaysAgo, twoDaysAgo);
    const result = await client.wait(await start(pipeline('swept', { keep_failed_staging: '1d' })));
    expect(result.status).toBe('succeeded');
    expect(existsSync(old)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
  });
});
