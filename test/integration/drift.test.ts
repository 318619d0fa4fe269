/**
 * Run profiles and drift on real parts: the Temporal dev server and worker, Parquet in and out, a local
 * webhook receiver. Same-distribution days stay under the PSI threshold; a shifted feature crosses it
 * and sends one `drift` alert; the stored profile matches the data; `scoreline drift` shows it; a
 * baseline registered from a run becomes the reference.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resultJson, summaryLinesFor } from '../../src/cli/run-output';
import { ScorelineClient } from '../../src/client';
import { describeRun } from '../../src/runs';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import type { RunResult } from '../../src/types';
import { cleanup, copyModels, demoData, FEATURES, query, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';
import { checkProfileStore } from '../helpers/profile-store';
import { Receiver } from '../helpers/receiver';
import { ParquetAuditStore } from '../../connectors/parquet-audit';
import { profileColumn } from '../../src/profile/chunk';
import { profileRows } from '../../src/run/profile';

const DATES = ['2026-10-01', '2026-10-02', '2026-10-03'];
const ROWS = 20_000;
const run = promisify(execFile);

let project: string;
let stack: Stack;
let client: ScorelineClient;
const receiver = new Receiver();

const webhook = { kind: 'webhook' as const, url_env: 'T_WEBHOOK_URL', secret_env: 'T_WEBHOOK_SECRET' };

function pipeline(name: string, over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name,
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: `out/${name.replaceAll('-', '_')}` },
    chunk_rows: 4096,
    parallelism: 2,
    alerts: { on: ['failed', 'drift'], channels: [webhook] },
    ...over,
  };
}

async function score(raw: PipelineInput, date: string): Promise<RunResult> {
  return client.wait(await client.startRun({ config: parsePipeline(raw, 'test'), raw, date, trigger: 'test' }));
}

const profiles = (runId: string) => query(`SELECT * FROM read_parquet('${project}/out/scoreline_run_profiles/*--${runId}.parquet') ORDER BY role, column_name`);
const driftHooks = (name: string) => receiver.at('/hook').filter((r) => r.json.pipeline === name && r.json.event === 'drift');

async function cli(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [join(REPO, 'bin', 'scoreline.js'), ...args], { cwd: project, env: { ...process.env, SCORELINE_PROJECT_DIR: project } });
  return stdout;
}

beforeAll(async () => {
  await receiver.start();
  Object.assign(process.env, { T_WEBHOOK_URL: `${receiver.base}/hook`, T_WEBHOOK_SECRET: 'drift-test-secret' });
  project = tempProject('scoreline-drift-');
  copyModels(project);
  await demoData(project, DATES, ROWS);
  // The third day again, with f03 moved by about one standard deviation: same rows, one drifted feature.
  const shifted = join(project, 'data', 'shifted', `ds=${DATES[2]}`);
  mkdirSync(shifted, { recursive: true });
  const glob = `${project}/data/customers/ds=${DATES[2]}/*.parquet`;
  await query(
    `COPY (SELECT * REPLACE (f03 + (SELECT stddev_samp(f03) FROM read_parquet('${glob}')) AS f03) FROM read_parquet('${glob}')) TO '${shifted}/part-0.parquet' (FORMAT parquet)`,
  );
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack });
  await receiver.stop();
  cleanup(project);
});

describe('Parquet audit store', () => {
  it('stores run profiles: round trip, a retry replaces, the previous reference is the newest earlier date', async () => {
    await checkProfileStore(new ParquetAuditStore(join(project, 'audit-profiles')), 'profiles-parquet');
  });

  it('names each profile file by pipeline, date and run, reads only the reference candidates, and still finds files named by run id alone', async () => {
    const dir = join(project, 'audit-profile-names');
    const store = new ParquetAuditStore(dir);
    const model = { name: 'churn-gbt', version: '1', sha256: 'a'.repeat(64), ref: 'churn-gbt@champion', store: '/models' };
    const ref = (runId: string, pipeline: string, logicalDate: string) => ({ runId, workflowId: `scoreline/${pipeline}/${logicalDate}`, pipeline, logicalDate, trigger: 'test' as const });
    const profile = { columns: [profileColumn('f00', 'feature', Float32Array.from([1, 2, 3]), 3)] };
    const write = (r: ReturnType<typeof ref>, at: string) => store.recordProfile(r.runId, profileRows(r, model, profile, [], null, at));
    await write(ref('r-old', 'names', '2026-10-01'), '2026-10-01T06:00:00.000Z');
    await write(ref('r-mid', 'names', '2026-10-02'), '2026-10-02T06:00:00.000Z');
    await write(ref('r-other', 'names-other', '2026-10-02'), '2026-10-02T07:00:00.000Z');
    const files = () => readdirSync(join(dir, 'scoreline_run_profiles')).sort();
    expect(files()).toEqual(['names--2026-10-01--r-old.parquet', 'names--2026-10-02--r-mid.parquet', 'names-other--2026-10-02--r-other.parquet']);
    // A profile from before names carried pipeline and date: found by run id and by the reference lookup.
    await write(ref('r-legacy', 'names', '2026-10-03'), '2026-10-03T06:00:00.000Z');
    renameSync(join(dir, 'scoreline_run_profiles', 'names--2026-10-03--r-legacy.parquet'), join(dir, 'scoreline_run_profiles', 'r-legacy.parquet'));
    expect(await store.readProfile('r-legacy')).toHaveLength(1);
    expect((await store.profiledRuns({ pipeline: 'names', limit: 5 })).map((r) => r.run_id)).toEqual(['r-legacy', 'r-mid', 'r-old']);
    expect((await store.profiledRuns({ pipeline: 'names', beforeDate: '2026-10-03', limit: 1 })).map((r) => r.run_id)).toEqual(['r-mid']);
    // Files of other pipelines and later dates are not read: an unreadable one there changes nothing.
    writeFileSync(join(dir, 'scoreline_run_profiles', 'names--2026-10-09--r-broken.parquet'), 'not parquet');
    writeFileSync(join(dir, 'scoreline_run_profiles', 'names-other--2026-10-01--r-broken2.parquet'), 'not parquet');
    expect((await store.profiledRuns({ pipeline: 'names', beforeDate: '2026-10-03', limit: 1 })).map((r) => r.run_id)).toEqual(['r-mid']);
    // A retried write replaces the run's file; no rows removes it, under either name.
    await write(ref('r-mid', 'names', '2026-10-02'), '2026-10-02T08:00:00.000Z');
    expect(files().filter((f) => f.includes('r-mid'))).toEqual(['names--2026-10-02--r-mid.parquet']);
    await store.recordProfile('r-legacy', []);
    expect(files()).not.toContain('r-legacy.parquet');
  });
});

describe('run profiles and drift', () => {
  const raw = pipeline('drift-daily');
  const results: RunResult[] = [];

  it('profiles every feature and prediction of a run; the first run has no reference', async () => {
    const first = await score(raw, DATES[0]);
    expect(first.status).toBe('succeeded');
    expect(first.drift).toEqual({ reference: null, columns: [], breached: [] });
    results.push(first);
    const rows = await profiles(first.runId);
    expect(rows.map((r) => r.column_name).sort()).toEqual([...FEATURES, 'churn_label', 'churn_probability'].sort());
    // Exact moments over all rows and chunks, matching the data itself.
    const [truth] = await query(
      `SELECT count(*) AS n, min(f03) AS lo, max(f03) AS hi, avg(f03) AS mean, stddev_samp(f03) AS std FROM read_parquet('${project}/data/customers/ds=${DATES[0]}/*.parquet')`,
    );
    const f03 = rows.find((r) => r.column_name === 'f03')!;
    expect(Number(f03.value_count)).toBe(ROWS);
    expect(Number(f03.null_count)).toBe(0);
    expect(f03.min_value).toBeCloseTo(Number(truth.lo), 5);
    expect(f03.max_value).toBeCloseTo(Number(truth.hi), 5);
    expect(f03.mean).toBeCloseTo(Number(truth.mean), 5);
    expect(f03.std).toBeCloseTo(Number(truth.std), 4);
    expect(JSON.parse(String(f03.quantiles))).toHaveLength(33);
    expect(f03.psi).toBeNull();
    // Predictions too: the mean probability equals the output table's.
    const [out] = await query(`SELECT avg(churn_probability) AS m FROM read_parquet('${project}/out/drift_daily/ds=${DATES[0]}/*.parquet')`);
    expect(rows.find((r) => r.column_name === 'churn_probability')!.mean).toBeCloseTo(Number(out.m), 5);
  });

  it('a day from the same distribution stays under the threshold: no drift alert', async () => {
    const second = await score(raw, DATES[1]);
    results.push(second);
    expect(second.drift!.reference).toBe(`run ${results[0].runId} (${DATES[0]})`);
    expect(second.drift!.columns).toHaveLength(FEATURES.length + 2);
    expect(second.drift!.breached).toEqual([]);
    expect(Math.max(...second.drift!.columns.map((c) => c.psi!))).toBeLessThan(0.1);
    const rows = await profiles(second.runId);
    expect(rows.every((r) => r.reference === `run ${results[0].runId} (${DATES[0]})` && typeof r.psi === 'number')).toBe(true);
    expect(driftHooks('drift-daily')).toHaveLength(0);
  });

  it('a shifted feature crosses the threshold: one drift alert naming it, recorded in the audit row', async () => {
    const third = await score({ ...raw, source: { kind: 'parquet', path: 'data/shifted/ds={{ ds }}/*.parquet', key: ['customer_id'] } }, DATES[2]);
    expect(third.status).toBe('succeeded');
    results.push(third);
    expect(third.drift!.reference).toBe(`run ${results[1].runId} (${DATES[1]})`);
    const breached = third.drift!.breached.map((c) => c.column);
    expect(breached).toContain('f03');
    expect(breached.filter((c) => c.startsWith('f') && c !== 'f03')).toEqual([]);
    const f03 = third.drift!.columns.find((c) => c.column === 'f03')!;
    expect(f03.psi!).toBeGreaterThan(0.2);
    expect(f03.meanShift!).toBeGreaterThan(0.8);
    // What the user sees: the run's summary, `run --json` and GET /v1/runs/{id} say which columns drifted.
    expect(summaryLinesFor(third).join('\n')).toMatch(new RegExp(`drift {3}${breached.length} of ${third.drift!.columns.length} columns drifted vs run ${results[1].runId} \\(${DATES[1]}\\): .*f03`));
    expect(resultJson(third).drift).toMatchObject({ reference: `run ${results[1].runId} (${DATES[1]})`, breached });
    expect((await describeRun(client, third.runId)).drift).toMatchObject({ breached });

    await receiver.waitFor(() => driftHooks('drift-daily').length > 0);
    const [hook] = driftHooks('drift-daily');
    expect(hook.json).toMatchObject({ event: 'drift', status: 'succeeded', run_id: third.runId, key: `scoreline/drift-daily/${DATES[2]}/drift` });
    expect(hook.json.drift.reference).toBe(`run ${results[1].runId} (${DATES[1]})`);
    expect(hook.json.drift.columns[0]).toMatchObject({ column: 'f03', role: 'feature' });
    expect(hook.json.summary).toMatch(/^drift-daily 2026-10-03 drifted: \d+ columns? past PSI 0\.2 vs run .* \(f03 PSI \d/);
    const [audit] = await query(
      `SELECT alerts FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${third.runId}' AND status = 'succeeded'`,
    );
    expect(JSON.parse(String(audit.alerts))).toEqual([{ event: 'drift', channel: 'webhook', ok: true }]);
    expect(driftHooks('drift-daily')).toHaveLength(1);
  });

  it('`scoreline drift` prints the table with trends, and --json the series', async () => {
    const pipelineFile = join(project, 'drift-daily.yaml');
    const { writeFileSync } = await import('node:fs');
    const { stringify } = await import('yaml');
    writeFileSync(pipelineFile, stringify(raw));
    const text = await cli('drift', pipelineFile, '--last', '3');
    expect(text).toContain(`drift-daily: 3 runs, ${DATES[0]} … ${DATES[2]}`);
    expect(text).toMatch(/^!\s+f03\s+feature\s+0\.\d+/m);
    expect(text).toMatch(/1 column drifted|\d+ columns drifted/);
    const json = (await cli('drift', pipelineFile, '--last', '3', '--json')).trim().split('\n').map((l) => JSON.parse(l));
    const f03 = json.find((r) => r.column === 'f03');
    expect(f03).toMatchObject({ role: 'feature', dates: DATES, drifted: true });
    expect(f03.psi[0]).toBeNull();
    expect(f03.psi[2]).toBeGreaterThan(0.2);
  });

  it('a baseline registered from a run becomes the reference for drift.reference: baseline', async () => {
    const pipelineFile = join(project, 'drift-baseline.yaml');
    const { writeFileSync } = await import('node:fs');
    const { stringify } = await import('yaml');
    const withBaseline = pipeline('drift-baseline', { drift: { reference: 'baseline', psi: 0.2 } });
    writeFileSync(pipelineFile, stringify(withBaseline));
    // Without a baseline the profile step says how to make one; the run itself still succeeds.
    const before = await score(withBaseline, DATES[1]);
    expect(before.status).toBe('succeeded');
    expect(before.drift!.error).toMatch(/no baseline-profile\.json; register one with: scoreline drift baseline drift-baseline --run RUN_ID/);
    expect(await profiles(before.runId)).toHaveLength(34); // stored all the same: it could be the baseline run

    const out = await cli('drift', 'baseline', pipelineFile, '--run', results[0].runId);
    expect(out).toMatch(/baseline of churn-gbt:\d+: 34 columns from run /);
    const after = await score(withBaseline, DATES[1]);
    expect(after.drift!.reference).toMatch(new RegExp(`^baseline churn-gbt:\\d+ from run ${results[0].runId}`));
    expect(after.drift!.breached).toEqual([]);
  });
});
