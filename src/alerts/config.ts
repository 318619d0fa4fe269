/**
 * The `alerts:` section of a pipeline file. It names environment variables, never their values: URLs,
 * routing keys and secrets live only in the worker's environment, so they never reach workflow input,
 * history, logs or audit rows (the config itself travels through all of them).
 */
import { z } from 'zod';
import { DURATION_HINT, parseDuration } from './duration';
import { ALERT_EVENTS } from './events';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const envName = z.string().regex(ENV_NAME, 'the NAME of an environment variable on the worker (e.g. SLACK_WEBHOOK_URL), not its value');
const duration = z.string().refine((s) => parseDuration(s) !== undefined, { error: (iss) => `expected ${DURATION_HINT}, got ${JSON.stringify(iss.input)}` });
const event = z.enum(ALERT_EVENTS);
/** Shown in the audit row and CLI output; defaults to the channel's kind. */
const channelName = z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, - and _, starting with a letter').optional();
/** Only these events reach the channel (default: every event the pipeline subscribes to). */
const channelEvents = z.array(event).min(1).optional();

const webhookChannel = z.strictObject({
  kind: z.literal('webhook'),
  name: channelName,
  on: channelEvents,
  url_env: envName.default('SCORELINE_WEBHOOK_URL'),
  /** HMAC-SHA256 key for the `X-Scoreline-Signature` header; required, an unsigned webhook can be forged. */
  secret_env: envName.default('SCORELINE_WEBHOOK_SECRET'),
});

const slackChannel = z.strictObject({
  kind: z.literal('slack'),
  name: channelName,
  on: channelEvents,
  /** Slack incoming-webhook URL (the URL is the credential). */
  url_env: envName.default('SCORELINE_SLACK_WEBHOOK_URL'),
});

const pagerdutyChannel = z.strictObject({
  kind: z.literal('pagerduty'),
  name: channelName,
  on: channelEvents,
  /** Events API v2 integration (routing) key. The endpoint is SCORELINE_PAGERDUTY_URL, default PagerDuty's. */
  routing_key_env: envName.default('SCORELINE_PAGERDUTY_ROUTING_KEY'),
});

const channel = z.discriminatedUnion('kind', [webhookChannel, slackChannel, pagerdutyChannel]);

export const alertsSchema = z
  .strictObject({
    /** Events to send. Default: failed and recovered, plus slow when an SLA is set. */
    on: z.array(event).min(1).optional(),
    /** Whole-run SLA: `slow` fires once the run has been running this long. */
    sla: duration.optional(),
    /** Per-chunk SLA: `slow` also fires when one chunk runs this long (still at most once per run). */
    chunk_sla: duration.optional(),
    channels: z.array(channel).min(1),
  })
  .superRefine((a, ctx) => {
    if (a.on?.includes('slow') && !a.sla && !a.chunk_sla) {
      ctx.addIssue({ code: 'custom', path: ['sla'], message: 'required when "on" includes slow (e.g. sla: 30m), or set chunk_sla' });
    }
    const seen = new Set<string>();
    a.channels.forEach((c, i) => {
      const name = c.name ?? c.kind;
      if (seen.has(name)) ctx.addIssue({ code: 'custom', path: ['channels', i, 'name'], message: `channel name "${name}" is used twice; give each channel of the same kind a distinct name` });
      seen.add(name);
    });
  })
  .transform((a) => ({
    ...a,
    on: a.on ?? (a.sla || a.chunk_sla ? (['failed', 'slow', 'recovered'] as const) : (['failed', 'recovered'] as const)).slice(),
    channels: a.channels.map((c) => ({ ...c, name: c.name ?? c.kind })),
  }));

export type AlertsConfig = z.output<typeof alertsSchema>;
export type AlertChannel = AlertsConfig['channels'][number];

/** Worker environment read at delivery (beside the per-channel variables named in the config). */
export const ALERT_ENV = {
  /** Temporal Web UI base for run links in alerts. */
  uiUrl: 'SCORELINE_UI_URL',
  /** PagerDuty Events API v2 endpoint (EU accounts, tests). */
  pagerdutyUrl: 'SCORELINE_PAGERDUTY_URL',
} as const;
export const DEFAULT_UI_URL = 'http://localhost:8233';
export const DEFAULT_PAGERDUTY_URL = 'https://events.pagerduty.com/v2/enqueue';
