/**
 * From an alert and a channel to HTTP requests, and sending them. Credentials are read here, in the
 * process that sends (the worker, or `scoreline alerts test`), from the variables the config names;
 * error messages never contain them (not even the URL, whose path is Slack's secret).
 */
import { AlertError } from '../errors';
import { ALERT_ENV, DEFAULT_PAGERDUTY_URL, DEFAULT_UI_URL, type AlertChannel } from './config';
import type { AlertFacts } from './events';
import { pagerdutyEvents, runLink, signBody, slackMessage, webhookBody } from './payloads';

export interface HttpRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface DeliveryOptions {
  /** Where credentials and SCORELINE_UI_URL / SCORELINE_PAGERDUTY_URL are read. */
  env: NodeJS.ProcessEnv;
  /** Whose environment `env` is, for a missing variable's message; default "the worker". */
  envOf?: string;
  /** Temporal namespace of the run, for the Web UI link. */
  namespace: string;
  /** Per request; a hung endpoint must not hold the delivery activity. Default 5 s. */
  timeoutMs?: number;
}

export const REQUEST_TIMEOUT_MS = 5_000;

function requireEnv(opts: DeliveryOptions, name: string, channel: AlertChannel, what: string): string {
  const value = opts.env[name];
  if (!value) {
    throw new AlertError(`${channel.kind} channel "${channel.name}": environment variable ${name} (${what}) is not set in ${opts.envOf ?? 'the worker'}`, false);
  }
  return value;
}

function requireUrl(opts: DeliveryOptions, name: string, channel: AlertChannel, what: string): string {
  const value = requireEnv(opts, name, channel, what);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    url = new URL('invalid:');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new AlertError(`${channel.kind} channel "${channel.name}": environment variable ${name} (${what}) does not hold an http(s) URL`, false);
  }
  return value;
}

const JSON_HEADERS = { 'content-type': 'application/json', 'user-agent': 'scoreline-alerts/1' };

/** The requests one delivery makes (PagerDuty's test alert is two: trigger, then resolve), and the values to redact. */
export function buildRequests(alert: AlertFacts, channel: AlertChannel, opts: DeliveryOptions): { requests: HttpRequest[]; secrets: string[] } {
  const link = runLink(opts.env[ALERT_ENV.uiUrl] || DEFAULT_UI_URL, opts.namespace, alert);
  switch (channel.kind) {
    case 'webhook': {
      const url = requireUrl(opts, channel.url_env, channel, 'webhook URL');
      const secret = requireEnv(opts, channel.secret_env, channel, 'signing secret');
      const body = JSON.stringify(webhookBody(alert, link));
      const headers = {
        ...JSON_HEADERS,
        'x-scoreline-event': alert.event,
        // Stable across retries of one delivery, so a receiver can drop duplicates.
        'x-scoreline-delivery': `${alert.executionId ?? alert.runId}/${alert.event}/${channel.name}`,
        'x-scoreline-signature': signBody(body, secret),
      };
      return { requests: [{ url, headers, body }], secrets: [...urlSecrets(url), secret] };
    }
    case 'slack': {
      const url = requireUrl(opts, channel.url_env, channel, 'Slack incoming-webhook URL');
      return { requests: [{ url, headers: JSON_HEADERS, body: JSON.stringify(slackMessage(alert, link)) }], secrets: urlSecrets(url) };
    }
    case 'pagerduty': {
      const key = requireEnv(opts, channel.routing_key_env, channel, 'PagerDuty routing key');
      const url = opts.env[ALERT_ENV.pagerdutyUrl] || DEFAULT_PAGERDUTY_URL;
      const requests = pagerdutyEvents(alert, key, link).map((event) => ({ url, headers: JSON_HEADERS, body: JSON.stringify(event) }));
      return { requests, secrets: [key, ...urlSecrets(url)] };
    }
  }
}

/** Deliver one alert to one channel: every request must be accepted (2xx). Throws AlertError otherwise. */
export async function deliver(alert: AlertFacts, channel: AlertChannel, opts: DeliveryOptions): Promise<{ status: number; requests: number }> {
  const { requests, secrets } = buildRequests(alert, channel, opts);
  let status = 0;
  for (const req of requests) status = await post(req, `${channel.kind} channel "${channel.name}"`, secrets, opts.timeoutMs ?? REQUEST_TIMEOUT_MS);
  return { status, requests: requests.length };
}

/**
 * One POST. 2xx is delivered; 408, 429 and 5xx are worth retrying (the endpoint is overloaded or down
 * for a moment), other 4xx are not (bad URL, key or payload: retrying sends the same thing again).
 * Redirects are refused: a signed body is not forwarded to wherever a 3xx points.
 */
async function post(req: HttpRequest, who: string, secrets: string[], timeoutMs: number): Promise<number> {
  let res: Response;
  try {
    res = await fetch(req.url, { method: 'POST', headers: req.headers, body: req.body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new AlertError(redact(`${who}: ${networkReason(err, timeoutMs)}`, secrets), true);
  }
  const text = await res.text().catch(() => '');
  if (res.status >= 200 && res.status < 300) return res.status;
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  const detail = text.trim() ? `: ${text.trim().replace(/\s+/g, ' ').slice(0, 200)}` : '';
  throw new AlertError(redact(`${who}: HTTP ${res.status} from the endpoint${detail}`, secrets), retryable);
}

function networkReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; cause?: { code?: string; name?: string } };
  if (e?.name === 'TimeoutError' || e?.cause?.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  const code = e?.cause?.code;
  return code ? `cannot reach the endpoint (${code})` : 'cannot reach the endpoint';
}

/**
 * A URL that is a credential (a webhook's or Slack's token sits in its path or query), as the strings an
 * endpoint might echo back: the whole URL, its path and query (`no route POST /hooks/<token>`), and each
 * path segment or query value long enough to be a token.
 */
function urlSecrets(url: string): string[] {
  const out = [url];
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return out;
  }
  out.push(`${u.pathname}${u.search}`, u.pathname, u.search.slice(1));
  for (const segment of u.pathname.split('/')) out.push(segment, safeDecode(segment));
  for (const [, value] of u.searchParams) out.push(value, encodeURIComponent(value));
  return out.filter((s) => s.length >= URL_TOKEN_MIN);
}

/** Path segments and query values shorter than this are taken for names (`services`, `v2`), not tokens. */
const URL_TOKEN_MIN = 10;

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Belt and braces: whatever an endpoint echoes back, a credential never reaches a message. Longest first, so no part of one survives. */
export function redact(message: string, secrets: string[]): string {
  let out = message;
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (s && s.length >= 4) out = out.replaceAll(s, '[redacted]');
  return out;
}
