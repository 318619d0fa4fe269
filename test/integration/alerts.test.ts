/**
 * Alerts end to end on real parts: the real Temporal dev server and worker, real runs, and local HTTP
 * servers standing in for the webhook receiver, Slack and PagerDuty. They check the exact payloads and
 * the signature; the runs check when alerts fire, that delivery retries, that a dead channel never
 * changes a run's outcome, and that no credential reaches workflow history or audit rows.
 */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { cpSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScorelineClient } from '../../src/client';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import type { Stack } from '../../src/dev/stack';
import type { RunResult } from '../../src/types';
import { cleanup, copyModels, demoData, query, REPO, startTestEnv, stopTestEnv, tempProject } from '../helpers/project';
import { Receiver } from '../helpers/receiver';

const DATE = '2026-11-01';
const ROWS = 8_000;
/**
 * One chunk of this date takes ~2.5 s to score (tree model, one inference thread): long enough to outrun
 * a 100 ms chunk_sla even with the dev server's timer latency, which under the CPU load of a run was
 * measured near a second (120k rows, ~0.9 s of scoring, let the timer lose), without any test-only
 * delay in the code.
 */
const BIG_DATE = '2026-11-03';
const BIG_ROWS = 360_000;
const UI = 'http://ui.test:8233';

// Credentials the worker reads from its environment; none of them may show up in history or audit rows.
const WEBHOOK_SECRET = 'whsec-9f8e7d6c5b4a-do-not-leak';
const SLACK_TOKEN = 'XOXSLACKTOKEN0123456789secret';
const ROUTING_KEY = 'R0UT1NGKEYdeadbeefsecret00000001';
const SECRETS = [WEBHOOK_SECRET, SLACK_TOKEN, ROUTING_KEY];

let project: string;
let stack: Stack;
let client: ScorelineClient;
const receiver = new Receiver();
const handles: WorkflowHandle[] = [];
let downUrl: string;

function pipeline(name: string, alerts: PipelineInput['alerts'], over: Partial<PipelineInput> = {}): PipelineInput {
  return {
    name,
    source: { kind: 'parquet', path: 'data/customers/ds={{ ds }}/*.parquet', key: ['customer_id'] },
    model: 'churn-gbt@champion',
    sink: { kind: 'parquet', path: `out/${name.replaceAll('-', '_')}` },
    chunk_rows: 5000,
    parallelism: 2,
    alerts,
    ...over,
  };
}

async function start(raw: PipelineInput, date = DATE) {
  const handle = await client.startRun({ config: parsePipeline(raw, 'test'), raw, date, trigger: 'test' });
  handles.push(handle);
  return handle;
}

async function run(raw: PipelineInput, date = DATE): Promise<RunResult> {
  return client.wait(await start(raw, date));
}

async function finalAudit(runId: string): Promise<Record<string, unknown>> {
  const rows = await query(`SELECT * FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true) WHERE run_id = '${runId}' ORDER BY updated_at`);
  return rows.at(-1)!;
}

const sign = (raw: string) => `sha256=${createHmac('sha256', WEBHOOK_SECRET).update(raw).digest('hex')}`;

beforeAll(async () => {
  await receiver.start();
  // A port nothing listens on: the "down" channel.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  downUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/down/services/${SLACK_TOKEN}`;
  await new Promise((r) => probe.close(r));

  Object.assign(process.env, {
    SCORELINE_UI_URL: UI,
    SCORELINE_PAGERDUTY_URL: `${receiver.base}/pd`,
    T_WEBHOOK_URL: `${receiver.base}/hook`,
    T_WEBHOOK_SECRET: WEBHOOK_SECRET,
    T_SLACK_URL: `${receiver.base}/slack/services/T000/B000/${SLACK_TOKEN}`,
    T_PD_KEY: ROUTING_KEY,
    T_DOWN_URL: downUrl,
  });
  project = tempProject('scoreline-alerts-');
  copyModels(project);
  await demoData(project, [DATE], ROWS);
  await demoData(project, [BIG_DATE], BIG_ROWS);
  ({ stack, client } = await startTestEnv(project));
});

afterAll(async () => {
  await stopTestEnv({ client, stack });
  await receiver.stop();
  cleanup(project);
});

const webhook = { kind: 'webhook' as const, url_env: 'T_WEBHOOK_URL', secret_env: 'T_WEBHOOK_SECRET' };
const slack = { kind: 'slack' as const, url_env: 'T_SLACK_URL' };
const pagerduty = { kind: 'pagerduty' as const, routing_key_env: 'T_PD_KEY' };

describe('alerts', () => {
  it('a failing run sends exactly one "failed" alert per channel, naming the step and the error', async () => {
    const dir = join(project, 'data', 'nulls', `ds=${DATE}`);
    mkdirSync(dir, { recursive: true });
    await query(
      `COPY (SELECT * REPLACE (CASE WHEN customer_id % 100 = 7 THEN NULL ELSE f05 END AS f05) FROM read_parquet('${project}/data/customers/ds=${DATE}/*.parquet')) TO '${dir}/part-0.parquet' (FORMAT parquet)`,
    );
    const raw = pipeline('alert-failed', { channels: [webhook, slack, pagerduty] }, {
      source: { kind: 'parquet', path: 'data/nulls/ds={{ ds }}/*.parquet', key: ['customer_id'] },
      parallelism: 1,
    });
    const result = await run(raw);
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/^score chunk 0 failed: .*feature column "f05" has \d+ NULL value/);
    const error = result.error!.replace('score chunk 0 failed: ', '');
    const link = `${UI}/namespaces/default/workflows/${encodeURIComponent(result.workflowId)}/${result.runId}`;

    // Webhook: exact body, valid signature over the raw bytes, delivery id.
    const hooks = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-failed');
    expect(hooks).toHaveLength(1);
    const [hook] = hooks;
    expect(hook.headers['x-scoreline-signature']).toBe(sign(hook.raw));
    expect(hook.headers['x-scoreline-event']).toBe('failed');
    expect(hook.headers['x-scoreline-delivery']).toBe(`${result.runId}/failed/webhook`);
    expect(hook.json).toEqual({
      version: 1,
      event: 'failed',
      test: false,
      summary: expect.stringMatching(/^alert-failed 2026-11-01 failed at score chunk 0 after \S+: chunk 0 \(.*\): feature column "f05"/),
      pipeline: 'alert-failed',
      logical_date: DATE,
      status: 'failed',
      run_id: result.runId,
      workflow_id: 'scoreline/alert-failed/2026-11-01',
      trigger: 'test',
      step: 'score chunk 0',
      error,
      duration_ms: expect.any(Number),
      sla: null,
      sla_ms: null,
      chunk: null,
      recovered_from: null,
      projection: null,
      stall: null,
      drift: null,
      model: 'churn-gbt:1',
      occurred_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      run_url: link,
      key: 'scoreline/alert-failed/2026-11-01',
    });

    // Slack: one readable message with the facts and the link.
    const slacks = receiver.at(`/slack/services/T000/B000/${SLACK_TOKEN}`).filter((r) => r.json.text.startsWith('alert-failed '));
    expect(slacks).toHaveLength(1);
    const msg = slacks[0].json;
    expect(msg.text).toBe(hook.json.summary);
    expect(msg.blocks[0].text.text).toMatch(/^:red_circle: \*alert-failed 2026-11-01 failed at score chunk 0/);
    expect(msg.blocks[1].fields.map((f: { text: string }) => f.text)).toEqual([
      '*Pipeline*\nalert-failed',
      `*Logical date*\n${DATE}`,
      '*Status*\nfailed',
      expect.stringMatching(/^\*Duration\*\n\d/),
      '*Failed step*\nscore chunk 0',
      '*Model*\nchurn-gbt:1',
    ]);
    expect(msg.blocks[2].text.text).toContain('feature column "f05"');
    expect(msg.blocks[3].elements[0].text).toBe(`<${link}|View the run in the Temporal Web UI> · run id \`${result.runId}\` · trigger test`);

    // PagerDuty: one trigger, keyed by pipeline + logical date.
    const pd = receiver.pagerduty('alert-failed');
    expect(pd).toHaveLength(1);
    expect(pd[0].json).toMatchObject({
      routing_key: ROUTING_KEY,
      event_action: 'trigger',
      dedup_key: 'scoreline/alert-failed/2026-11-01',
      payload: { severity: 'error', source: 'scoreline/alert-failed', class: 'failed', custom_details: { step: 'score chunk 0', error, run_url: link } },
    });

    const audit = await finalAudit(result.runId);
    expect(audit.status).toBe('failed');
    expect(JSON.parse(String(audit.alerts))).toEqual([
      { event: 'failed', channel: 'webhook', ok: true },
      { event: 'failed', channel: 'slack', ok: true },
      { event: 'failed', channel: 'pagerduty', ok: true },
    ]);
  });

  it('a run that fails in planning still alerts (the worker resolves the channels)', async () => {
    const result = await run(pipeline('alert-plan', { on: ['failed'], channels: [webhook] }), '2026-10-01');
    expect(result.status).toBe('failed');
    const hooks = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-plan');
    expect(hooks.map((h) => [h.json.event, h.json.step, h.json.logical_date])).toEqual([['failed', 'plan', '2026-10-01']]);
    expect(hooks[0].json.error).toMatch(/^no input rows for alert-plan on 2026-10-01/);
    expect(JSON.parse(String((await finalAudit(result.runId)).alerts))).toEqual([{ event: 'failed', channel: 'webhook', ok: true }]);
  });

  it('a run slower than its SLA sends one "slow" alert while still running, then "recovered" when it succeeds', async () => {
    // 40 chunks one at a time take several seconds (an activity round trip each); the SLA is 1 s.
    const raw = pipeline('alert-slow', { sla: '1s', on: ['slow', 'recovered'], channels: [webhook] }, { chunk_rows: 200, parallelism: 1 });
    const handle = await start(raw);
    const slow = () => receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-slow' && r.json.event === 'slow');
    await receiver.waitFor(() => slow().length > 0);
    expect((await handle.describe()).status.name).toBe('RUNNING');
    const result = await client.wait(handle);
    expect(result.status).toBe('succeeded');

    const events = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-slow');
    expect(events.map((e) => e.json.event)).toEqual(['slow', 'recovered']);
    expect(events[0].json).toMatchObject({ status: 'running', sla: '1s', sla_ms: 1000, chunk: null, run_id: result.runId });
    expect(events[0].json.duration_ms).toBeGreaterThanOrEqual(1000);
    expect(events[0].json.duration_ms).toBeLessThan(result.durationMs);
    expect(events[1].json).toMatchObject({ status: 'succeeded', recovered_from: 'slow' });
    expect(events.every((e) => e.headers['x-scoreline-signature'] === sign(e.raw))).toBe(true);
    expect(JSON.parse(String((await finalAudit(result.runId)).alerts))).toEqual([
      { event: 'slow', channel: 'webhook', ok: true },
      { event: 'recovered', channel: 'webhook', ok: true },
    ]);
  });

  it('chunk_sla: a chunk that outruns it makes the run slow, with the chunk named', async () => {
    const result = await run(pipeline('alert-chunk', { chunk_sla: '100ms', on: ['slow'], channels: [webhook] }, { chunk_rows: BIG_ROWS, parallelism: 1 }), BIG_DATE);
    expect(result.status).toBe('succeeded');
    const events = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-chunk');
    expect(events).toHaveLength(1);
    expect(events[0].json).toMatchObject({ event: 'slow', status: 'running', sla: null, chunk: { index: 0, sla: '100ms', sla_ms: 100 } });
    expect(events[0].json.chunk.elapsed_ms).toBeGreaterThanOrEqual(100);
    expect(events[0].json.summary).toMatch(/^alert-chunk 2026-11-03 is slow: chunk 0 has been running for \S+ \(chunk SLA 100ms\)/);
  });

  it('a receiver answering 500 is retried; "recovered" resolves the PagerDuty incident of the failed date', async () => {
    const source = { kind: 'parquet' as const, path: 'data/late/ds={{ ds }}/*.parquet', key: ['customer_id'] };
    const raw = pipeline('alert-recover', { channels: [pagerduty, webhook] }, { source });
    const first = await run(raw); // input not there yet
    expect(first.status).toBe('failed');
    expect(receiver.pagerduty('alert-recover').map((r) => r.json.event_action)).toEqual(['trigger']);

    cpSync(join(project, 'data', 'customers', `ds=${DATE}`), join(project, 'data', 'late', `ds=${DATE}`), { recursive: true });
    receiver.failNext('/pd', 500);
    const second = await run(raw);
    expect(second.status).toBe('succeeded');
    const pd = receiver.pagerduty('alert-recover');
    // trigger (first run), then the resolve twice: answered 500, retried, accepted.
    expect(pd.map((r) => r.json.event_action)).toEqual(['trigger', 'resolve', 'resolve']);
    expect(pd[2].json).toEqual({ routing_key: ROUTING_KEY, event_action: 'resolve', dedup_key: 'scoreline/alert-recover/2026-11-01' });
    const hook = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-recover');
    expect(hook.map((h) => [h.json.event, h.json.recovered_from])).toEqual([
      ['failed', null],
      ['recovered', 'failed'],
    ]);
    expect(JSON.parse(String((await finalAudit(second.runId)).alerts))).toEqual([
      { event: 'recovered', channel: 'pagerduty', ok: true },
      { event: 'recovered', channel: 'webhook', ok: true },
    ]);
    // A third success has nothing to recover from.
    const third = await run(raw);
    expect(third.status).toBe('succeeded');
    expect(receiver.pagerduty('alert-recover')).toHaveLength(3);
    expect((await finalAudit(third.runId)).alerts).toBeNull();
  });

  it('a resumed run that succeeds sends "recovered" from its own failure, under its own delivery id and link', async () => {
    const raw = pipeline('alert-resume', { channels: [webhook] }, { chunk_rows: 400, parallelism: 1 });
    const handle = await start(raw);
    const runId = handle.firstExecutionRunId;
    // Chunk 12's staged file name is taken by a directory: it fails (not the input's fault), so the run can be resumed.
    const blocked = join(project, 'out', '.scoreline-staging', 'alert_resume', runId, 'part-00012.parquet');
    mkdirSync(join(blocked, 'blocked'), { recursive: true });
    expect((await client.wait(handle)).status).toBe('failed');
    rmSync(blocked, { recursive: true });
    const resumedHandle = await client.startRun({ config: parsePipeline(raw, 'test'), raw, date: DATE, trigger: 'test', resume: runId });
    handles.push(resumedHandle);
    const resumed = await client.wait(resumedHandle);
    expect(resumed).toMatchObject({ status: 'succeeded', runId }); // a resumed run keeps its run id
    const hook = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-resume');
    expect(hook.map((h) => [h.json.event, h.json.recovered_from])).toEqual([
      ['failed', null],
      ['recovered', 'failed'],
    ]);
    // Each execution its own delivery id (a receiver dropping duplicates keeps both) and Web UI link.
    expect(hook.map((h) => h.headers['x-scoreline-delivery'])).toEqual([`${runId}/failed/webhook`, `${resumedHandle.firstExecutionRunId}/recovered/webhook`]);
    expect(String(hook[1].json.run_url)).toContain(resumedHandle.firstExecutionRunId);
  });

  it('a run whose audit row cannot be written after its commit fails at once with a "failed" alert', async () => {
    const audit = join(project, 'audit-finish');
    const raw = pipeline('alert-finish', { channels: [webhook] }, { chunk_rows: 400, parallelism: 1, audit: { kind: 'parquet', path: audit } });
    const handle = await start(raw);
    for (let i = 0; i < 600 && ((await client.progress(handle))?.chunksDone ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 100));
    // The run's `running` row is written: now a file where the runs table goes refuses the final one
    // (EEXIST from its mkdir: no retry would change that; it was retried ten times, ~4 minutes, then failed with no alert).
    renameSync(join(audit, 'scoreline_runs'), join(audit, 'scoreline_runs.moved'));
    writeFileSync(join(audit, 'scoreline_runs'), 'not a table');
    const result = await client.wait(handle);
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/^finish failed: the output was committed \(\S+alert_finish\/ds=2026-11-01\), but the run's audit row could not be written: EEXIST/);
    const hook = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-finish');
    expect(hook.map((h) => [h.json.event, h.json.step])).toEqual([['failed', 'finish']]);
  });

  it('a channel that is down does not fail the run; the audit row says the alert failed', async () => {
    const down = { kind: 'slack' as const, name: 'down', url_env: 'T_DOWN_URL' };
    const result = await run(pipeline('alert-down', { chunk_sla: '100ms', channels: [down, webhook] }, { chunk_rows: BIG_ROWS, parallelism: 1 }), BIG_DATE);
    expect(result.status).toBe('succeeded');
    expect(result.rowsOut).toBe(BIG_ROWS);
    const alerts = JSON.parse(String((await finalAudit(result.runId)).alerts));
    expect(alerts).toEqual([
      { event: 'slow', channel: 'down', ok: false, error: 'slack channel "down": cannot reach the endpoint (ECONNREFUSED)' },
      { event: 'slow', channel: 'webhook', ok: true },
      { event: 'recovered', channel: 'down', ok: false, error: 'slack channel "down": cannot reach the endpoint (ECONNREFUSED)' },
      { event: 'recovered', channel: 'webhook', ok: true },
    ]);
    // Retried before giving up: three attempts per alert in the history.
    const history = await handles.at(-1)!.fetchHistory();
    const attempts = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt);
    expect(attempts.filter((a) => a === 3)).toHaveLength(2);
  });

  it('no webhook secret, routing key or Slack URL in any workflow history or audit row', async () => {
    expect(handles.length).toBeGreaterThanOrEqual(7);
    for (const handle of handles) {
      const text = historyText(await handle.fetchHistory());
      expect(text).toContain('T_WEBHOOK_SECRET'); // the decoding works: the variable's name is there, its value is not
      for (const secret of [...SECRETS, downUrl, process.env.T_SLACK_URL!]) expect(text, handle.workflowId).not.toContain(secret);
    }
    const audit = JSON.stringify(await query(`SELECT * FROM read_parquet('${project}/out/scoreline_runs/*.parquet', union_by_name = true)`));
    expect(audit).toContain('"alerts"');
    for (const secret of SECRETS) expect(audit).not.toContain(secret);
  });
});

describe('scoreline alerts test', () => {
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [join(REPO, 'bin', 'scoreline.js'), ...args], { cwd: project, env: process.env, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  it('sends a test alert through every channel and reports each; exit 1 if one is down', async () => {
    const yaml = (channels: string) => `
name: alert-cli
source: { kind: parquet, path: "data/customers/ds={{ ds }}/*.parquet", key: [customer_id] }
model: churn-gbt@champion
sink: { kind: parquet, path: out/alert_cli }
alerts:
  channels:
${channels}`;
    const good = '    - { kind: webhook, url_env: T_WEBHOOK_URL, secret_env: T_WEBHOOK_SECRET }\n    - { kind: slack, url_env: T_SLACK_URL }\n    - { kind: pagerduty, routing_key_env: T_PD_KEY }\n';
    writeFileSync(join(project, 'alert-cli.yaml'), yaml(good));
    const ok = await cli(['alerts', 'test', 'alert-cli.yaml']);
    expect(ok.stdout.trim().split('\n')).toEqual(['✔ webhook (webhook): accepted (HTTP 200)', '✔ slack (slack): accepted (HTTP 200)', '✔ pagerduty (pagerduty): accepted (HTTP 202)']);
    expect(ok.code).toBe(0);
    const hook = receiver.at('/hook').filter((r) => r.json.pipeline === 'alert-cli');
    expect(hook).toHaveLength(1);
    expect(hook[0].json).toMatchObject({ event: 'test', test: true, status: 'test', workflow_id: 'scoreline/alert-cli/test', run_url: `${UI}/namespaces/default/workflows` });
    expect(hook[0].headers['x-scoreline-signature']).toBe(sign(hook[0].raw));
    expect(receiver.pagerduty('alert-cli').map((r) => [r.json.event_action, r.json.dedup_key])).toEqual([
      ['trigger', 'scoreline/alert-cli/test'],
      ['resolve', 'scoreline/alert-cli/test'],
    ]);

    writeFileSync(join(project, 'alert-cli.yaml'), yaml(`${good}    - { kind: slack, name: down, url_env: T_DOWN_URL }\n    - { kind: slack, name: unset, url_env: T_NOT_SET }\n`));
    const bad = await cli(['alerts', 'test', 'alert-cli.yaml', '--json']);
    expect(bad.code).toBe(1);
    const lines = bad.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.slice(3)).toEqual([
      { channel: 'down', kind: 'slack', ok: false, error: 'slack channel "down": cannot reach the endpoint (ECONNREFUSED)' },
      { channel: 'unset', kind: 'slack', ok: false, error: 'slack channel "unset": environment variable T_NOT_SET (Slack incoming-webhook URL) is not set in this shell (alerts test reads it; the worker needs it too)' },
    ]);
    expect(bad.stdout + bad.stderr).not.toContain(SLACK_TOKEN);

    writeFileSync(join(project, 'no-alerts.yaml'), yaml('').replace(/alerts:\n  channels:\n/, ''));
    const none = await cli(['alerts', 'test', 'no-alerts.yaml']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no alerts: section');
  });
});

/** Every string in a history, payloads decoded (they are UTF-8 JSON bytes). */
function historyText(node: unknown): string {
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (v === null || v === undefined) return;
    if (typeof v === 'string') out.push(v);
    else if (v instanceof Uint8Array) out.push(Buffer.from(v).toString('utf8'));
    else if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object') Object.values(v as Record<string, unknown>).forEach(walk);
  };
  walk(node);
  return out.join('\n');
}
