/**
 * Row quarantine and the error budget (`max_rejected`) on real parts: the Temporal dev server and worker,
 * Parquet in and out. Rows that cannot be scored (a NULL under `features.nulls: error`, a value the strict
 * cast refuses) go to the quarantine table beside the output with key, column, reason and run id; under
 * the budget the run succeeds with exactly the other rows scored, over it the run fails and nothing is
 * committed (output and quarantine partitions untouched, staging empty, audit `failed` with the count).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import { summaryLinesFor } from '../../src/cli/run-output';
import { LocalModelStore, readManifestDraft } from '../../src/models/store';
import { ConfigError } from '../../src/errors';
import { assertRescoreHasRows } from '../../src/run/batch';
import { rescoreDate } from '../../src/runs';
import type { RunResult } from '../../src/types';
import { copyModels, demoData, directScores, query, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';

const DATE = '2026-11-06';
const ROWS = 12_000;
/** customer_id % 1000 = 7: f05 is NULL; = 3: f10 is 1e39, beyond float32 (the column is DOUBLE). 12 + 12 rows. */
const NULL_KEYS = (id: number) => id % 1000 === 7;
const CAST_KEYS = (id: number) => id % 1000 === 3;

let project: string;
let stack: Stack;
let client: ScorelineClient;
/** Direct ONNX Runtime scores of the clean input, by key. */
let reference: Map<number, number>;
let dirtyKeys: number[];

function pipeline(name: string, over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name,
    source: { kind: 'parquet', path: 'data/dirty/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: 'out/scores' },
    chunk_rows: 5000,
    parallelism: 2,
    ...over,
  };
}

async function score(raw: PipelineInput): Promise<RunResult> {
  return client.wait(await client.startRun({ config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test' }));
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet')).sort();
}

const partition = (table: string) => join(project, 'out', table, `ds=${DATE}`);
const readTable = (table: string, columns: string) => query(`SELECT ${columns} FROM read_parquet('${partition(table)}/*.parquet') ORDER BY customer_id`);
const auditRow = async (runId: string) =>
  (await query(`SELECT status, rows_in, rows_out, rows_quarantined, error FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${runId}' ORDER BY updated_at DESC LIMIT 1`))[0];

beforeAll(async () => {
  project = tempProject('scoreline-quarantine-');
  copyModels(project);
  await demoData(project, [DATE], ROWS);
  const input = `${project}/data/customers/ds=${DATE}/*.parquet`;
  const dir = join(project, 'data', 'dirty', `ds=${DATE}`);
  mkdirSync(dir, { recursive: true });
  await query(
    `COPY (SELECT * REPLACE (CASE WHEN customer_id % 1000 = 7 THEN NULL ELSE f05 END AS f05, CAST(CASE WHEN customer_id % 1000 = 3 THEN 1e39 ELSE f10 END AS DOUBLE) AS f10)
      FROM read_parquet('${input}') ORDER BY customer_id) TO '${dir}/part-0.parquet' (FORMAT parquet)`,
  );
  reference = await directScores(input, join(project, 'models', 'churn-gbt', '1', 'model.onnx'));
  dirtyKeys = [...reference.keys()].filter((k) => NULL_KEYS(k) || CAST_KEYS(k)).sort((a, b) => a - b);
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack, project });
});

describe('quarantine and error budget', () => {
  it('without a budget (default) the first bad row fails the run, as before', async () => {
    const result = await score(pipeline('strict'));
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/feature column "f05" has \d+ NULL value\(s\)|column "f10" row \d+: value 1e\+39 is beyond float32 range/);
    expect(files(join(project, 'out', 'scores'))).toEqual([]);
    expect(existsSync(join(project, 'out', 'scores_quarantine'))).toBe(false);
  });

  it('under the budget: the run succeeds, the other rows are scored exactly, the bad rows are in the quarantine table', async () => {
    const result = await score(pipeline('budget', { max_rejected: '1%' }));
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ status: 'succeeded', rowsIn: ROWS, rowsOut: ROWS - dirtyKeys.length, rowsQuarantined: dirtyKeys.length, rowsRejected: 0 });
    expect(result.quarantine).toEqual({ output: partition('scores_quarantine'), rows: dirtyKeys.length });

    const out = await readTable('scores', 'customer_id, churn_probability, run_id');
    expect(out).toHaveLength(ROWS - dirtyKeys.length);
    expect(new Set(out.map((r) => r.run_id))).toEqual(new Set([result.runId]));
    const outKeys = new Set(out.map((r) => Number(r.customer_id)));
    expect(dirtyKeys.filter((k) => outKeys.has(k))).toEqual([]);
    let maxDiff = 0;
    for (const r of out) maxDiff = Math.max(maxDiff, Math.abs(Number(r.churn_probability) - reference.get(Number(r.customer_id))!));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);

    const q = await readTable('scores_quarantine', 'customer_id, rejected_column, reason, run_id, model_name, model_version, ds');
    expect(q.map((r) => Number(r.customer_id))).toEqual(dirtyKeys);
    for (const r of q) {
      const id = Number(r.customer_id);
      expect(r).toMatchObject({ run_id: result.runId, model_name: 'churn-gbt', model_version: '1' });
      if (NULL_KEYS(id)) expect(r).toMatchObject({ rejected_column: 'f05', reason: 'NULL (features.nulls: error)' });
      else expect(r).toMatchObject({ rejected_column: 'f10', reason: 'value 1e+39 is beyond float32 range (input "features" is float32)' });
    }
    expect(await auditRow(result.runId)).toMatchObject({ status: 'succeeded', rows_out: ROWS - dirtyKeys.length, rows_quarantined: dirtyKeys.length, error: null });
    const summary = summaryLinesFor(result).join('\n');
    expect(summary).toContain(`quarantined ${dirtyKeys.length}`);
    expect(summary).toContain(`quarantine ${partition('scores_quarantine')}: ${dirtyKeys.length} rows that could not be scored`);
  });

  it('over the budget: the run fails naming the count, the budget and the first bad row; nothing is committed', async () => {
    const before = { out: files(partition('scores')), q: files(partition('scores_quarantine')) };
    const result = await score(pipeline('budget', { max_rejected: 10 }));
    expect(result.status).toBe('failed');
    // The file is sorted by key: the first bad key's row in chunk 0 is its place among all keys.
    const first = dirtyKeys[0];
    const row = [...reference.keys()].sort((a, b) => a - b).indexOf(first);
    const why = CAST_KEYS(first) ? 'column "f10": value 1e+39 is beyond float32 range (input "features" is float32)' : 'column "f05": NULL (features.nulls: error)';
    expect(row).toBeLessThan(5000);
    expect(result.error).toBe(
      `score failed: ${dirtyKeys.length} rows could not be scored (0.20% of ${ROWS}), over the error budget max_rejected: 10 rows; nothing was committed. ` +
        `First: chunk 0 (${project}/data/dirty/ds=${DATE}/part-0.parquet rows 0..4999) row ${row} (customer_id=${first}): ${why}`,
    );
    expect({ out: files(partition('scores')), q: files(partition('scores_quarantine')) }).toEqual(before);
    expect(files(join(project, 'out', '.scoreline-staging'))).toEqual([]);
    expect(await auditRow(result.runId)).toMatchObject({ status: 'failed', rows_out: 0, rows_quarantined: dirtyKeys.length, error: result.error });
  });

  it('--only-quarantined rescores just those rows after a fix: appended once, the rest stay quarantined, never twice', async () => {
    const [budgetRun] = await query(`SELECT DISTINCT run_id FROM read_parquet('${partition('scores_quarantine')}/*.parquet')`);
    const first = String(budgetRun.run_id);
    expect(await rescoreDate(client, 'budget', first)).toBe(DATE);
    await expect(rescoreDate(client, 'strict', first)).rejects.toThrow(`run ${first} is a run of pipeline budget, not strict`);
    const rescore = async (of: string) => client.wait(await client.startRun({ config: parsePipeline(pipeline('budget'), 'test'), raw: pipeline('budget'), date: DATE, trigger: 'test', onlyQuarantined: of }));
    const file = `${project}/data/dirty/ds=${DATE}/part-0.parquet`;
    const rewrite = async (sql: string) => {
      await query(`COPY (${sql}) TO '${file}.new' (FORMAT parquet)`);
      renameSync(`${file}.new`, file);
    };
    const dirty = `read_parquet('${project}/data/dirty/ds=${DATE}/*.parquet')`;
    const clean = `read_parquet('${project}/data/customers/ds=${DATE}/*.parquet')`;

    // The alias moves on meanwhile (to the MLP, same columns): a rescore still scores with the model the
    // date's rows were scored with (churn-gbt:1), or the partition would mix two models (the values below
    // are checked against the tree model's direct scores).
    const store = new LocalModelStore(join(project, 'models'));
    const mlp = join(project, 'models', 'churn-mlp', '1');
    await store.register({ modelPath: join(mlp, 'model.onnx'), name: 'churn-gbt', manifest: readManifestDraft(join(mlp, 'scoreline.model.yaml')), by: 'test' });
    await store.promote('churn-gbt', '2');

    // The NULLs fixed at the source, the out-of-range values not yet.
    await rewrite(`SELECT d.* REPLACE (c.f05 AS f05) FROM ${dirty} d JOIN ${clean} c USING (customer_id) ORDER BY customer_id`);
    await assertRescoreHasRows(stack.worker!.context, parsePipeline(pipeline('budget'), 'test'), DATE, first); // rows to rescore: no objection
    const partly = await rescore(first);
    expect(partly.model).toMatchObject({ name: 'churn-gbt', version: '1' });
    expect(partly.error).toBeUndefined();
    expect(partly).toMatchObject({ status: 'succeeded', rescoreOf: first, rowsIn: dirtyKeys.length, rowsOut: 12, rowsQuarantined: 12 });
    expect(summaryLinesFor(partly).join('\n')).toContain(`rescore of run ${first}: 12 of its 24 quarantined rows scored and appended, 12 still quarantined`);
    const stillBad = await readTable('scores_quarantine', 'customer_id, run_id');
    expect(stillBad.map((r) => Number(r.customer_id))).toEqual(dirtyKeys.filter(CAST_KEYS));
    expect(new Set(stillBad.map((r) => r.run_id))).toEqual(new Set([partly.runId]));

    await rewrite(`SELECT * FROM ${clean} ORDER BY customer_id`);
    const rest = await rescore(partly.runId);
    expect(rest).toMatchObject({ status: 'succeeded', rowsIn: 12, rowsOut: 12, rowsQuarantined: 0 });
    const out = await readTable('scores', 'customer_id, churn_probability, run_id');
    expect(out).toHaveLength(ROWS);
    expect(new Set(out.map((r) => Number(r.customer_id))).size).toBe(ROWS);
    let maxDiff = 0;
    for (const r of out) maxDiff = Math.max(maxDiff, Math.abs(Number(r.churn_probability) - reference.get(Number(r.customer_id))!));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);
    const byRun = new Map<unknown, number>();
    for (const r of out) byRun.set(r.run_id, (byRun.get(r.run_id) ?? 0) + 1);
    expect(Object.fromEntries(byRun)).toEqual({ [first]: ROWS - dirtyKeys.length, [partly.runId]: 12, [rest.runId]: 12 });
    // No rows left, but the table keeps its columns: one 0-row file (readers and `scoreline sql` still find it).
    expect(await query(`SELECT count(*) AS n FROM read_parquet('${partition('scores_quarantine')}/*.parquet')`)).toEqual([{ n: 0 }]);

    // Again: nothing is left to rescore, and nothing is appended twice. The CLI and the API refuse it before
    // starting anything (exit 2 / 400); a run started anyway fails at its plan, saying so.
    const config = parsePipeline(pipeline('budget'), 'test');
    await expect(assertRescoreHasRows(stack.worker!.context, config, DATE, first)).rejects.toThrow(ConfigError);
    await expect(assertRescoreHasRows(stack.worker!.context, config, DATE, first)).rejects.toThrow(`run ${first} has no quarantined rows left to rescore`);
    const again = await rescore(first);
    expect(again.status).toBe('failed');
    expect(again.error).toBe(
      `plan failed: run ${first} has no quarantined rows left to rescore in ${partition('scores_quarantine')}: it quarantined none on this date, a rescore already scored them, or a later run of the date replaced them`,
    );
    expect(await query(`SELECT count(*) AS n FROM read_parquet('${partition('scores')}/*.parquet')`)).toEqual([{ n: ROWS }]);
    expect(await query(`SELECT DISTINCT model_version FROM read_parquet('${partition('scores')}/*.parquet')`)).toEqual([{ model_version: '1' }]);
    await store.promote('churn-gbt', '1');
  });

  it('a quarantine table path taken by a file fails the plan: nothing is committed, nothing retried', async () => {
    mkdirSync(join(project, 'out'), { recursive: true });
    writeFileSync(join(project, 'out', 'blocked_quarantine'), 'not a table');
    const result = await score(pipeline('blocked', { max_rejected: '1%', sink: { kind: 'parquet', path: 'out/blocked' } }));
    expect(result.status).toBe('failed');
    expect(result.error).toContain(`plan failed: ${join(project, 'out', 'blocked_quarantine')} exists and is not a directory`);
    expect(files(join(project, 'out', 'blocked'))).toEqual([]);
    // It used to commit the output, retry the quarantine commit for minutes, then report success with its rows lost.
    expect(await auditRow(result.runId)).toMatchObject({ status: 'failed', rows_out: 0 });
  });

  it('a rerun over clean input empties the date in the quarantine table', async () => {
    const result = await score(pipeline('budget', { max_rejected: '1%', source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] } }));
    expect(result).toMatchObject({ status: 'succeeded', rowsOut: ROWS, rowsQuarantined: 0 });
    // A budget that set nothing aside audits 0, not NULL (NULL: no budget, or a row of an older release).
    expect(await auditRow(result.runId)).toMatchObject({ status: 'succeeded', rows_quarantined: 0 });
    expect(await query(`SELECT count(*) AS n FROM read_parquet('${partition('scores')}/*.parquet')`)).toEqual([{ n: ROWS }]);
    // No rows left, but the table keeps its columns: one 0-row file (readers and `scoreline sql` still find it).
    expect(await query(`SELECT count(*) AS n FROM read_parquet('${partition('scores_quarantine')}/*.parquet')`)).toEqual([{ n: 0 }]);
  });
});
