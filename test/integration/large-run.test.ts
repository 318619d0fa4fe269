/**
 * A run with more chunks than one workflow should track scores them in child workflows
 * (workflows/chunks.ts). Here 25 chunks per child stand in for the default 500, so a run of ~120 small
 * chunks exercises what a 100M-row run does: several groups, one commit, exactly the input's rows, a
 * failing chunk in a later group failing the whole run with nothing committed, and a cancel mid-run.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { cleanup, copyModels, DEMO_MODELS, demoData, directScores, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
const BAD_DATE = '2026-11-02';
const ROWS = 12_000;
const PER_CHILD = 25;

let project: string;
let stack: Stack;
let client: ScorelineClient;

function pipeline(sinkPath: string, over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name: 'churn-large',
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: sinkPath },
    chunk_rows: 100,
    parallelism: 4,
    ...over,
  };
}

async function start(raw: PipelineInput, date = DATE) {
  return client.startRun({ config: parsePipeline(raw, 'test'), raw, date, trigger: 'test' });
}

async function lastAudit(runId: string) {
  const rows = await query(`SELECT * FROM read_parquet('${project}/out/scoreline_runs/*.parquet') WHERE run_id = '${runId}' ORDER BY updated_at`);
  return rows.at(-1);
}

async function childGroups(workflowId: string, runId: string): Promise<{ id: string; events: number }[]> {
  const found: { id: string; events: number }[] = [];
  for await (const wf of client.client.workflow.list({ query: `WorkflowType = "scorelineChunkGroup"` })) {
    if (!wf.workflowId.startsWith(`${workflowId}/${runId}/`)) continue;
    found.push({ id: wf.workflowId, events: (await client.client.workflow.getHandle(wf.workflowId).describe()).historyLength });
  }
  return found.sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
}

function stagedFiles(sink: string): string[] {
  const dir = join(project, 'out', '.scoreline-staging', sink);
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.parquet')) : [];
}

beforeAll(async () => {
  project = tempProject();
  copyModels(project);
  const data = await demoData(project, [DATE, BAD_DATE], ROWS, 1000);
  // One NULL feature in the last row of the second date: the run's last chunk, in its last group.
  await query(`COPY (SELECT * REPLACE (CASE WHEN customer_id = (SELECT max(customer_id) FROM read_parquet('${data}/ds=${BAD_DATE}/*.parquet')) THEN NULL ELSE f03 END AS f03)
                FROM read_parquet('${data}/ds=${BAD_DATE}/*.parquet')) TO '${data}/ds=${BAD_DATE}/part-0.parquet.tmp' (FORMAT parquet, ROW_GROUP_SIZE 1000)`);
  for (const f of readdirSync(join(data, `ds=${BAD_DATE}`))) if (!f.endsWith('.tmp')) cleanup(join(data, `ds=${BAD_DATE}`, f));
  await import('node:fs/promises').then((fs) => fs.rename(join(data, `ds=${BAD_DATE}`, 'part-0.parquet.tmp'), join(data, `ds=${BAD_DATE}`, 'part-0.parquet')));
  ({ stack, client } = await startTestEnv(project, { chunksPerChild: PER_CHILD }));
});

afterAll(async () => {
  await stopTestEnv({ client, stack, project });
});

describe('a run of more chunks than one workflow holds', () => {
  it('scores every row exactly once through child workflows, and each history stays small', async () => {
    const handle = await start(pipeline('out/large'));
    const result = await client.wait(handle);
    expect(result).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS });
    const chunkCount = result.chunks;
    expect(chunkCount).toBeGreaterThan(4 * PER_CHILD); // ~120: 100-row chunks that never span a row group

    const out = await query(`SELECT count(*) AS n, count(DISTINCT customer_id) AS k FROM read_parquet('${project}/out/large/ds=${DATE}/*.parquet')`);
    expect(out).toEqual([{ n: ROWS, k: ROWS }]);
    const direct = await directScores(`${project}/data/customers/ds=${DATE}/*.parquet`, join(DEMO_MODELS, 'churn-gbt', '1', 'model.onnx'));
    const scored = await query(`SELECT customer_id AS k, churn_probability AS p FROM read_parquet('${project}/out/large/ds=${DATE}/*.parquet')`);
    expect(Math.max(...scored.map((r) => Math.abs(Number(r.p) - direct.get(Number(r.k))!)))).toBeLessThan(1e-6);

    // ~120 chunks in 5 groups: the run's own history records 5 children, not 120 activities.
    const groups = await childGroups(handle.workflowId, result.runId);
    expect(groups.map((g) => g.id.split('/').pop())).toEqual(Array.from({ length: Math.ceil(chunkCount / PER_CHILD) }, (_, g) => `chunks-${g}`));
    const parentEvents = (await handle.describe()).historyLength;
    expect(parentEvents).toBeLessThan(chunkCount);
    for (const g of groups) expect(g.events).toBeLessThan(PER_CHILD * 8);

    const chunks = await query(`SELECT count(DISTINCT chunk_index) AS n FROM read_parquet('${project}/out/scoreline_run_chunks/${result.runId}/*.parquet')`);
    expect(chunks).toEqual([{ n: chunkCount }]);
    expect(await lastAudit(result.runId)).toMatchObject({ status: 'succeeded', rows_out: ROWS });
    expect(stagedFiles('large')).toEqual([]);
  });

  it('a bad row in the last group fails the run with the chunk named, and nothing of the earlier groups is committed', async () => {
    const result = await client.wait(await start(pipeline('out/large_bad'), BAD_DATE));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/^score chunk \d+ failed: chunk \d+ \(.*ds=2026-11-02.*\): feature column "f03" has 1 NULL/);
    expect(Number(/^score chunk (\d+)/.exec(result.error!)![1])).toBeGreaterThanOrEqual(4 * PER_CHILD); // in the last group
    expect(existsSync(join(project, 'out', 'large_bad', `ds=${BAD_DATE}`))).toBe(false);
    expect(stagedFiles('large_bad')).toEqual([]);
    const audit = await lastAudit(result.runId);
    expect(audit?.status).toBe('failed');
    expect(String(audit?.error)).toMatch(/score chunk \d+ failed: .*NULL/);
  });

  it('cancelling mid-run stops the children, removes their staged files and audits "cancelled"', async () => {
    const handle = await start(pipeline('out/large_cancel', { parallelism: 1 }));
    for (let i = 0; i < 600; i++) {
      const p = await client.progress(handle);
      if (p && p.chunksDone >= PER_CHILD) break; // the first group is done and merged
      await new Promise((r) => setTimeout(r, 50));
    }
    await handle.cancel();
    const result = await client.wait(handle);
    expect(result.status).toBe('cancelled');
    expect(stagedFiles('large_cancel')).toEqual([]);
    expect(existsSync(join(project, 'out', 'large_cancel', `ds=${DATE}`))).toBe(false);
    expect(await lastAudit(result.runId)).toMatchObject({ status: 'cancelled' });
    const groups = await childGroups(handle.workflowId, result.runId);
    const statuses = await Promise.all(groups.map(async (g) => (await client.client.workflow.getHandle(g.id).describe()).status.name));
    expect(statuses[0]).toBe('COMPLETED');
    expect(statuses.at(-1)).toBe('CANCELLED');
  });
});
