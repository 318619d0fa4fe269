/**
 * Alerts without Temporal or network: durations, the `alerts:` config, the exact payloads each channel
 * receives, the signature, and that credentials come only from the environment and never reach errors.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildRequests, redact } from '../../src/alerts/channels';
import { parseDuration } from '../../src/alerts/duration';
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
    expect(parse({ on: ['exploded'], channels: [{ kind: 'slack' }] })).toThrow('p.yaml: alerts.on.0: expected one of "failed", "slow", "recovered", "drift", got "exploded"');
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
      drift: null,
      model: 'churn-gbt:1',
      occurred_at: '2026-11-02T02:02:05.000Z',
      run_url: LINK,
      key: 'scoreline/churn-daily/2026-11-01',
    });
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
    expect(() => buildRequests(failed, slack, opts({}))).toThrow('slack channel "slack": environment variable SLACK_URL (Slack incoming-webhook URL) is not set on the worker');
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
