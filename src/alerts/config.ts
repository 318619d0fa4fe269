/**
 * The `alerts:` section of a pipeline file. It names environment variables, never their values: URLs,
 * routing keys and secrets live only in the worker's environment, so they never reach workflow input,
 * history, logs or audit rows (the config itself travels through all of them).
 */
import { z } from 'zod';
import { deadlineProblem, parseDeadline } from './deadline';
import { DURATION_HINT, parseDuration } from './duration';
import { ALERT_EVENTS, type AlertEvent } from './events';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const envName = z.string().regex(ENV_NAME, 'the NAME of an environment variable on the worker (e.g. SLACK_WEBHOOK_URL), not its value');
const duration = z.string().refine((s) => parseDuration(s) !== undefined, { error: (iss) => `expected ${DURATION_HINT}, got ${JSON.stringify(iss.input)}` });
const deadline = z.string().refine((s) => parseDeadline(s) !== undefined, { error: (iss) => deadlineProblem(String(iss.input)) });
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
    /**
     * Events to send. Default: failed and recovered, plus slow when an SLA is set, late when a deadline
     * is set, stalled when stall_after is set.
     */
    on: z.array(event).min(1).optional(),
    /** Whole-run SLA: `slow` fires once the run has been running this long (and `late`, if listed in `on`, once it is projected to). */
    sla: duration.optional(),
    /** Per-chunk SLA: `slow` also fires when one chunk runs this long (still at most once per run). */
    chunk_sla: duration.optional(),
    /**
     * `06:00 Europe/Berlin` (no zone: UTC): the run should be done by the first such time at or after it
     * started; `late` fires as soon as the throughput so far projects the scoring past it.
     */
    deadline: deadline.optional(),
    /** `stalled` fires when no chunk has finished for this long while the run is scoring. */
    stall_after: duration.optional(),
    channels: z.array(channel).min(1),
  })
  .superRefine((a, ctx) => {
    if (a.on?.includes('slow') && !a.sla && !a.chunk_sla) {
      ctx.addIssue({ code: 'custom', path: ['sla'], message: 'required when "on" includes slow (e.g. sla: 30m), or set chunk_sla' });
    }
    if (a.on?.includes('late') && !a.deadline && !a.sla) {
      ctx.addIssue({ code: 'custom', path: ['deadline'], message: 'required when "on" includes late (e.g. deadline: "06:00 Europe/Berlin"), or set sla' });
    }
    if (a.on?.includes('stalled') && !a.stall_after) {
      ctx.addIssue({ code: 'custom', path: ['stall_after'], message: 'required when "on" includes stalled (e.g. stall_after: 10m)' });
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
    on: a.on ?? defaultEvents(a),
    channels: a.channels.map((c) => ({ ...c, name: c.name ?? c.kind })),
  }));

/** failed and recovered; slow with an SLA, late with a deadline, stalled with stall_after. */
function defaultEvents(a: { sla?: string; chunk_sla?: string; deadline?: string; stall_after?: string }): AlertEvent[] {
  const on: AlertEvent[] = ['failed'];
  if (a.sla || a.chunk_sla) on.push('slow');
  if (a.deadline) on.push('late');
  if (a.stall_after) on.push('stalled');
  on.push('recovered');
  return on;
}

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
