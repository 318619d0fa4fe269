/**
 * Alerts without Temporal or network: durations, the `alerts:` config, the exact payloads each channel
 * receives, the signature, and that credentials come only from the environment and never reach errors.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildRequests, redact } from '../../src/alerts/channels';
import { parseDuration } from '../../src/alerts/duration';
import { deadlineAfter, parseDeadline } from '../../src/alerts/deadline';
import { estimateFinish, ThroughputMeter } from '../../src/alerts/eta';
import { alertKey, channelsFor, type AlertFacts } from '../../src/alerts/events';
import { headline, pagerdutyEvents, runLink, signBody, slackEscape, slackMessage, webhookBody } from '../../src/alerts/payloads';
import { parsePipeline } from '../../src/config/pipeline';

const base = {
  name: 'churn-daily',
  source: { kind: 'parquet', path: 'data/ds={{ ds }}/*.parquet', key: ['customer_id'] },
  model: 'churn-gbt@champion',
  sink: { kind: 'parquet', path: 'out/churn_scores' },
};

const failed: AlertFacts = {
  event: 'failed',
  pipeline: 'churn-daily',
  logicalDate: '2026-11-01',
  runId: '0193a0c4-0000-7000-8000-000000000001',
  workflowId: 'scoreline/churn-daily/2026-11-01',
  trigger: 'schedule',
  status: 'failed',
  step: 'score chunk 3',
  error: 'feature column "f05" has 2 NULL value(s) <x & y>',
  durationMs: 125_000,
  sla: '30m',
  model: 'churn-gbt:1',
  occurredAt: '2026-11-02T02:02:05.000Z',
};
const LINK = 'http://ui.example:8233/namespaces/default/workflows/scoreline%2Fchurn-daily%2F2026-11-01/0193a0c4-0000-7000-8000-000000000001';

describe('durations', () => {
  it('reads the units people write', () => {
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration(' 2m ')).toBe(120_000);
  });

  it('refuses numbers without a unit, zero and nonsense', () => {
    for (const bad of ['30', '', '0s', 'm', '30 minutes', '-5m', '1h 30m', '5x']) expect(parseDuration(bad), bad).toBeUndefined();
  });
});

describe('alerts: config', () => {
  it('fills defaults: env var names, channel names, events (slow only with an SLA)', () => {
    const c = parsePipeline({ ...base, alerts: { channels: [{ kind: 'slack' }, { kind: 'webhook' }, { kind: 'pagerduty' }] } }, 'p.yaml');
    expect(c.alerts).toEqual({
      on: ['failed', 'recovered'],
      channels: [
        { kind: 'slack', name: 'slack', url_env: 'SCORELINE_SLACK_WEBHOOK_URL' },
        { kind: 'webhook', name: 'webhook', url_env: 'SCORELINE_WEBHOOK_URL', secret_env: 'SCORELINE_WEBHOOK_SECRET' },
        { kind: 'pagerduty', name: 'pagerduty', routing_key_env: 'SCORELINE_PAGERDUTY_ROUTING_KEY' },
      ],
    });
    const withSla = parsePipeline({ ...base, alerts: { sla: '30m', channels: [{ kind: 'slack' }] } }, 'p.yaml');
    expect(withSla.alerts?.on).toEqual(['failed', 'slow', 'recovered']);
    expect(parsePipeline(base, 'p.yaml').alerts).toBeUndefined();
  });

  it('errors name the field and what was expected', () => {
    const parse = (alerts: unknown) => () => parsePipeline({ ...base, alerts }, 'p.yaml');
    expect(parse({ sla: '30', channels: [{ kind: 'slack' }] })).toThrow('p.yaml: alerts.sla: expected a duration such as 30m, 1h30m, 90s or 500ms, got "30"');
    expect(parse({ on: ['slow'], channels: [{ kind: 'slack' }] })).toThrow('p.yaml: alerts.sla: required when "on" includes slow');
    expect(parse({ on: ['exploded'], channels: [{ kind: 'slack' }] })).toThrow('p.yaml: alerts.on.0: expected one of "failed", "slow", "recovered", "drift", "late", "stalled", got "exploded"');
    expect(parse({ channels: [] })).toThrow('p.yaml: alerts.channels:');
    expect(parse({ channels: [{ kind: 'slack', url: 'https://hooks.slack.com/x' }] })).toThrow('p.yaml: alerts.channels.0: unknown field "url"');
    expect(parse({ channels: [{ kind: 'slack', url_env: 'https://hooks.slack.com/services/T/B/X' }] })).toThrow(
      /alerts\.channels\.0\.url_env: expected the NAME of an environment variable on the worker/,
    );
    expect(parse({ channels: [{ kind: 'slack' }, { kind: 'slack' }] })).toThrow('p.yaml: alerts.channels.1.name: channel name "slack" is used twice');
    expect(parse({ channels: [{ kind: 'teams' }] })).toThrow('p.yaml: alerts.channels.0.kind:');
  });

  it('--set reaches the section and is validated like the file', () => {
    const c = parsePipeline({ ...base, alerts: { channels: [{ kind: 'slack' }] } }, 'p.yaml', { 'alerts.sla': '5m' });
    expect(c.alerts?.sla).toBe('5m');
  });

  it('routes an event to subscribed channels only', () => {
    const c = parsePipeline(
      { ...base, alerts: { sla: '1h', channels: [{ kind: 'slack' }, { kind: 'pagerduty', on: ['failed', 'recovered'] }] } },
      'p.yaml',
    ).alerts!;
    expect(channelsFor(c, 'slow').map((x) => x.name)).toEqual(['slack']);
    expect(channelsFor(c, 'failed').map((x) => x.name)).toEqual(['slack', 'pagerduty']);
    expect(channelsFor({ ...c, on: ['failed'] }, 'recovered')).toEqual([]);
    expect(channelsFor(null, 'failed')).toEqual([]);
  });
});

describe('alerts: late and stalled config', () => {
  it('deadline, stall_after and chunk_timeout: defaults subscribe late and stalled only when configured', () => {
    const c = parsePipeline({ ...base, chunk_timeout: '20m', alerts: { deadline: '06:00 Europe/Berlin', stall_after: '10m', channels: [{ kind: 'slack' }] } }, 'p.yaml');
    expect(c.alerts?.on).toEqual(['failed', 'late', 'stalled', 'recovered']);
    expect(c.chunk_timeout).toBe('20m');
    expect(parsePipeline({ ...base, alerts: { sla: '30m', deadline: '06:00', channels: [{ kind: 'slack' }] } }, 'p.yaml').alerts?.on).toEqual(['failed', 'slow', 'late', 'recovered']);
    // sla alone keeps its old default (no late unless listed), and no chunk_timeout keeps the default timeout
    expect(parsePipeline({ ...base, alerts: { sla: '30m', channels: [{ kind: 'slack' }] } }, 'p.yaml').alerts?.on).toEqual(['failed', 'slow', 'recovered']);
    expect(parsePipeline(base, 'p.yaml').chunk_timeout).toBeUndefined();
    expect(parsePipeline({ ...base, alerts: { sla: '30m', on: ['late'], channels: [{ kind: 'slack' }] } }, 'p.yaml').alerts?.on).toEqual(['late']);
  });

  it('errors name the field', () => {
    const parse = (alerts: unknown, over = {}) => () => parsePipeline({ ...base, ...over, alerts }, 'p.yaml');
    const ch = [{ kind: 'slack' }];
    expect(parse({ deadline: '6am', channels: ch })).toThrow('p.yaml: alerts.deadline: expected a time of day HH:MM and an IANA zone, such as "06:00 Europe/Berlin" (no zone: UTC), got "6am"');
    expect(parse({ deadline: '25:00 UTC', channels: ch })).toThrow('p.yaml: alerts.deadline: expected a time of day');
    expect(parse({ deadline: '06:00 Europe/Berlim', channels: ch })).toThrow('p.yaml: alerts.deadline: unknown time zone "Europe/Berlim"');
    expect(parse({ deadline: '06:00 europe/berlin', channels: ch })).toThrow('(did you mean Europe/Berlin?)');
    expect(parse({ stall_after: '10', channels: ch })).toThrow('p.yaml: alerts.stall_after: expected a duration such as 30m');
    expect(parse({ on: ['late'], channels: ch })).toThrow('p.yaml: alerts.deadline: required when "on" includes late');
    expect(parse({ on: ['stalled'], channels: ch })).toThrow('p.yaml: alerts.stall_after: required when "on" includes stalled');
    expect(parse(undefined, { chunk_timeout: '20' })).toThrow('p.yaml: chunk_timeout: expected a duration such as 30m, 1h30m, 90s or 500ms, got "20"');
  });
});

describe('deadline: the next time of day in a zone at or after the run started', () => {
  const at = (iso: string) => Date.parse(iso);
  const next = (text: string, startIso: string) => new Date(deadlineAfter(parseDeadline(text)!, at(startIso))).toISOString();

  it('same day when the time is still ahead, the next day when it has passed', () => {
    // Berlin is UTC+1 in November: 06:00 there is 05:00Z.
    expect(next('06:00 Europe/Berlin', '2026-11-01T23:30:00Z')).toBe('2026-11-02T05:00:00.000Z'); // 00:30 Berlin on 11-02
    expect(next('06:00 Europe/Berlin', '2026-11-02T05:00:00Z')).toBe('2026-11-02T05:00:00.000Z'); // at the deadline: that one
    expect(next('06:00 Europe/Berlin', '2026-11-02T05:00:01Z')).toBe('2026-11-03T05:00:00.000Z');
    expect(next('06:00', '2026-11-02T05:00:00Z')).toBe('2026-11-02T06:00:00.000Z'); // no zone: UTC
    expect(next('23:15 America/New_York', '2026-07-01T12:00:00Z')).toBe('2026-07-02T03:15:00.000Z'); // EDT, UTC−4
  });

  it('across DST changes: the wall clock of the zone, not a fixed offset', () => {
    // Europe/Berlin goes to summer time on 2026-03-29 (02:00 → 03:00): 06:00 is 04:00Z from that day on.
    expect(next('06:00 Europe/Berlin', '2026-03-28T12:00:00Z')).toBe('2026-03-29T04:00:00.000Z');
    expect(next('06:00 Europe/Berlin', '2026-03-27T12:00:00Z')).toBe('2026-03-28T05:00:00.000Z');
    // 02:30 does not exist that night: the end of the gap.
    expect(next('02:30 Europe/Berlin', '2026-03-28T12:00:00Z')).toBe('2026-03-29T01:00:00.000Z');
  });
});

describe('eta: throughput since the first rows were done', () => {
  it('needs two observations; projects the rows left at the rate between them', () => {
    const meter = new ThroughputMeter();
    expect(meter.observe(1_000, 0, 10_000)).toBeUndefined(); // nothing done yet
    expect(meter.observe(5_000, 1_000, 10_000)).toBeUndefined(); // the first chunk's latency is not throughput
    // 1,000 more rows in 2 s: 500 rows/s, 8,000 rows left → 16 s from now
    expect(meter.observe(7_000, 2_000, 10_000)).toEqual({ finishAtMs: 23_000, rowsPerSec: 500, asOfMs: 7_000 });
    expect(estimateFinish({ atMs: 0, rows: 10 }, 0, 20, 100)).toBeUndefined();
    expect(estimateFinish({ atMs: 0, rows: 10 }, 1_000, 100, 100)).toEqual({ finishAtMs: 1_000, rowsPerSec: 90, asOfMs: 1_000 });
  });
});

describe('payloads', () => {
  it('links to the run in the Web UI', () => {
    expect(runLink('http://ui.example:8233/', 'default', failed)).toBe(LINK);
    expect(runLink('http://ui', 'prod ns', { ...failed, event: 'test' })).toBe('http://ui/namespaces/prod%20ns/workflows');
  });

  it('headlines say what, where and how long against the SLA', () => {
    expect(headline(failed)).toBe('churn-daily 2026-11-01 failed at score chunk 3 after 2m05s (SLA 30m): feature column "f05" has 2 NULL value(s) <x & y>');
    expect(headline({ ...failed, event: 'slow', status: 'running', step: undefined, error: undefined, durationMs: 1_860_000 })).toBe(
      'churn-daily 2026-11-01 is slow: running for 31m00s (SLA 30m)',
    );
    expect(headline({ ...failed, event: 'slow', status: 'running', chunk: { index: 7, elapsedMs: 400_000, sla: '5m' }, durationMs: 600_000 })).toBe(
      'churn-daily 2026-11-01 is slow: chunk 7 has been running for 6m40s (chunk SLA 5m); run time 10m00s',
    );
    expect(headline({ ...failed, event: 'recovered', status: 'succeeded', step: undefined, error: undefined, recoveredFrom: 'failed' })).toBe(
      'churn-daily 2026-11-01 recovered: succeeded in 2m05s (SLA 30m) after the previous run failed',
    );
  });

  it('webhook body: every fact, snake_case, stable key', () => {
    expect(webhookBody(failed, LINK)).toEqual({
      version: 1,
      event: 'failed',
      test: false,
      summary: headline(failed),
      pipeline: 'churn-daily',
      logical_date: '2026-11-01',
      status: 'failed',
      run_id: failed.runId,
      workflow_id: 'scoreline/churn-daily/2026-11-01',
      trigger: 'schedule',
      step: 'score chunk 3',
      error: failed.error,
      duration_ms: 125_000,
      sla: '30m',
      sla_ms: 1_800_000,
      chunk: null,
      recovered_from: null,
      projection: null,
      stall: null,
      drift: null,
      model: 'churn-gbt:1',
      occurred_at: '2026-11-02T02:02:05.000Z',
      run_url: LINK,
      key: 'scoreline/churn-daily/2026-11-01',
    });
  });

  const late: AlertFacts = {
    ...failed,
    event: 'late',
    status: 'running',
    step: undefined,
    error: undefined,
    durationMs: 600_000,
    projection: {
      eta: '2026-11-02T05:40:00.000Z',
      deadline: '2026-11-02T05:00:00.000Z',
      limit: 'deadline',
      limitText: '06:00 Europe/Berlin',
      lateByMs: 2_400_000,
      rowsDone: 1_200_000,
      rowsPlanned: 5_000_000,
      rowsPerSec: 1_500,
      chunksDone: 12,
      chunksTotal: 50,
    },
  };
  const stalled: AlertFacts = {
    ...failed,
    event: 'stalled',
    status: 'running',
    step: undefined,
    error: undefined,
    stall: {
      after: '10m',
      idleMs: 612_000,
      lastChunkAt: '2026-11-02T02:00:00.000Z',
      chunksDone: 19,
      chunksTotal: 40,
      inFlight: [{ index: 20, since: '2026-11-02T02:00:00.000Z', worker: 'host-1@123', attempt: 2, step: 'read', lastHeartbeatAt: '2026-11-02T02:00:01.000Z' }],
    },
  };

  it('late and stalled: headline, webhook fields, Slack fields, PagerDuty severity', () => {
    expect(headline(late)).toBe(
      'churn-daily 2026-11-01 is projected to finish late: ETA 2026-11-02T05:40:00Z (estimate), 40m00s past its deadline 06:00 Europe/Berlin (2026-11-02T05:00:00Z); 1,200,000/5,000,000 rows at 1.5k rows/s, 12/50 chunks',
    );
    expect(headline(stalled)).toBe(
      'churn-daily 2026-11-01 is stalled: no chunk has finished for 10m12s (stall_after 10m), 19/40 chunks done; in flight: chunk 20 since 2026-11-02T02:00:00Z on worker host-1@123 (attempt 2, last heartbeat at read)',
    );
    expect(headline({ ...stalled, stall: { ...stalled.stall!, inFlight: [], group: { index: 3, firstChunk: 75, lastChunk: 99, since: '2026-11-02T01:50:00.000Z' } } })).toContain(
      'chunks 75–99 are being scored by child workflow group 3 since 2026-11-02T01:50:00Z',
    );
    expect(webhookBody(late, LINK).projection).toEqual({
      eta: '2026-11-02T05:40:00.000Z',
      deadline: '2026-11-02T05:00:00.000Z',
      limit: 'deadline',
      limit_text: '06:00 Europe/Berlin',
      late_by_ms: 2_400_000,
      rows_done: 1_200_000,
      rows_planned: 5_000_000,
      rows_per_s: 1_500,
      chunks_done: 12,
      chunks_total: 50,
    });
    expect(webhookBody(stalled, LINK).stall).toEqual({
      after: '10m',
      after_ms: 600_000,
      idle_ms: 612_000,
      last_chunk_at: '2026-11-02T02:00:00.000Z',
      chunks_done: 19,
      chunks_total: 40,
      in_flight: [{ index: 20, since: '2026-11-02T02:00:00.000Z', worker: 'host-1@123', attempt: 2, step: 'read', last_heartbeat_at: '2026-11-02T02:00:01.000Z' }],
      group: null,
    });
    const fields = (slackMessage(late, LINK).blocks[1] as { fields: { text: string }[] }).fields.map((f) => f.text);
    expect(fields).toContain('*ETA (estimate)*\n2026-11-02T05:40:00Z, 40m00s late');
    expect(fields).toContain('*Deadline*\n06:00 Europe/Berlin (2026-11-02T05:00:00Z)');
    expect(pagerdutyEvents(late, 'RK', LINK)[0].payload!.severity).toBe('warning');
    expect(pagerdutyEvents(stalled, 'RK', LINK)[0]).toMatchObject({ event_action: 'trigger', dedup_key: 'scoreline/churn-daily/2026-11-01', payload: { severity: 'error', class: 'stalled' } });
    expect(headline({ ...failed, event: 'recovered', status: 'succeeded', step: undefined, error: undefined, recoveredFrom: 'stalled' })).toMatch(/ after stalling$/);
  });

  it('signature is HMAC-SHA256 of the exact body, hex, prefixed sha256=', () => {
    // RFC-style known vector (key "key"), so the header format is pinned independently of our code.
    expect(signBody('The quick brown fox jumps over the lazy dog', 'key')).toBe('sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8');
  });

  it('slack: readable text, escaped mrkdwn, duration vs SLA, link to the run', () => {
    const m = slackMessage(failed, LINK);
    expect(m.text).toBe(headline(failed));
    expect(m.blocks).toEqual([
      { type: 'section', text: { type: 'mrkdwn', text: `:red_circle: *${slackEscape(headline(failed))}*` } },
      {
        type: 'section',
        fields: [
          { type: 'mrkdwn', text: '*Pipeline*\nchurn-daily' },
          { type: 'mrkdwn', text: '*Logical date*\n2026-11-01' },
          { type: 'mrkdwn', text: '*Status*\nfailed' },
          { type: 'mrkdwn', text: '*Duration*\n2m05s (SLA 30m)' },
          { type: 'mrkdwn', text: '*Failed step*\nscore chunk 3' },
          { type: 'mrkdwn', text: '*Model*\nchurn-gbt:1' },
        ],
      },
      { type: 'section', text: { type: 'mrkdwn', text: '*Error*\n```feature column "f05" has 2 NULL value(s) &lt;x &amp; y&gt;```' } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: `<${LINK}|View the run in the Temporal Web UI> · run id \`${failed.runId}\` · trigger schedule` }] },
    ]);
  });

  it('pagerduty: trigger keyed by pipeline + date; recovered resolves the same key; test triggers then resolves', () => {
    const [trigger] = pagerdutyEvents(failed, 'RK', LINK);
    expect(trigger).toMatchObject({
      routing_key: 'RK',
      event_action: 'trigger',
      dedup_key: 'scoreline/churn-daily/2026-11-01',
      payload: { summary: headline(failed), source: 'scoreline/churn-daily', severity: 'error', timestamp: failed.occurredAt, component: 'churn-daily', class: 'failed' },
      links: [{ href: LINK, text: 'Run in the Temporal Web UI' }],
    });
    expect(trigger.payload!.custom_details).toMatchObject({ step: 'score chunk 3', error: failed.error, duration: '2m05s (SLA 30m)', run_url: LINK });
    expect(pagerdutyEvents({ ...failed, event: 'slow', status: 'running' }, 'RK', LINK)[0].payload!.severity).toBe('warning');
    expect(pagerdutyEvents({ ...failed, event: 'recovered', status: 'succeeded' }, 'RK', LINK)).toEqual([
      { routing_key: 'RK', event_action: 'resolve', dedup_key: 'scoreline/churn-daily/2026-11-01' },
    ]);
    const test = pagerdutyEvents({ ...failed, event: 'test', status: 'test' }, 'RK', LINK);
    expect(test.map((e) => [e.event_action, e.dedup_key])).toEqual([
      ['trigger', 'scoreline/churn-daily/test'],
      ['resolve', 'scoreline/churn-daily/test'],
    ]);
    expect(alertKey(failed)).toBe(failed.workflowId);
  });
});

describe('requests: credentials only from the environment', () => {
  const opts = (env: Record<string, string>) => ({ env, namespace: 'default' });

  it('webhook: URL and secret from the named variables, signature over the sent bytes', () => {
    const channel = { kind: 'webhook' as const, name: 'hooks', url_env: 'MY_URL', secret_env: 'MY_SECRET' };
    const { requests } = buildRequests(failed, channel, opts({ MY_URL: 'https://hooks.example/in', MY_SECRET: 's3cr3t', SCORELINE_UI_URL: 'http://ui.example:8233' }));
    expect(requests).toHaveLength(1);
    const [req] = requests;
    expect(req.url).toBe('https://hooks.example/in');
    expect(JSON.parse(req.body)).toEqual(webhookBody(failed, LINK));
    expect(req.headers['x-scoreline-signature']).toBe(`sha256=${createHmac('sha256', 's3cr3t').update(req.body).digest('hex')}`);
    expect(req.headers['x-scoreline-delivery']).toBe(`${failed.runId}/failed/hooks`);
    expect(req.body).not.toContain('s3cr3t');
  });

  it('a missing or malformed variable is a clear, non-retryable error that does not echo the value', () => {
    const slack = { kind: 'slack' as const, name: 'slack', url_env: 'SLACK_URL' };
    expect(() => buildRequests(failed, slack, opts({}))).toThrow('slack channel "slack": environment variable SLACK_URL (Slack incoming-webhook URL) is not set in the worker');
    try {
      buildRequests(failed, slack, opts({ SLACK_URL: 'hooks.slack.com/services/SECRET' }));
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toBe('slack channel "slack": environment variable SLACK_URL (Slack incoming-webhook URL) does not hold an http(s) URL');
      expect((err as { retryable: boolean }).retryable).toBe(false);
    }
    const pd = { kind: 'pagerduty' as const, name: 'pd', routing_key_env: 'PD_KEY' };
    expect(buildRequests(failed, pd, opts({ PD_KEY: 'RK' })).requests[0].url).toBe('https://events.pagerduty.com/v2/enqueue');
    expect(buildRequests(failed, pd, opts({ PD_KEY: 'RK', SCORELINE_PAGERDUTY_URL: 'http://127.0.0.1:9/pd' })).requests[0].url).toBe('http://127.0.0.1:9/pd');
  });

  it('redacts credentials from any message', () => {
    expect(redact('HTTP 400: bad key RK-123 at https://x/y', ['RK-123', 'https://x/y'])).toBe('HTTP 400: bad key [redacted] at [redacted]');
  });

  it('a credential URL is redacted whole, as its path and as a token segment an endpoint echoes alone', () => {
    const url = 'https://hooks.slack.com/services/T0123ABCD/B0123ABCD/XyZ123tokenTOKEN456abcd?sig=abcdef0123456789';
    const { secrets } = buildRequests(failed, { kind: 'slack' as const, name: 'slack', url_env: 'U' }, opts({ U: url }));
    expect(redact(`HTTP 404: no route POST /services/T0123ABCD/B0123ABCD/XyZ123tokenTOKEN456abcd?sig=abcdef0123456789 at ${url}`, secrets)).toBe('HTTP 404: no route POST [redacted] at [redacted]');
    expect(redact('HTTP 403: token XyZ123tokenTOKEN456abcd revoked, sig abcdef0123456789', secrets)).toBe('HTTP 403: token [redacted] revoked, sig [redacted]');
    expect(redact('HTTP 500: /services is down', secrets)).toBe('HTTP 500: /services is down');
  });
});
