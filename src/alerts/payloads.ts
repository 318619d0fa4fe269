/**
 * What each channel receives, built from the alert's facts: pure functions (no I/O, no environment), so
 * tests pin the exact bytes. The caller passes in the run link and any key the payload must carry.
 */
import { createHmac } from 'node:crypto';
import { formatDuration, formatRate } from '../cli/progress';
import { parseDuration } from './duration';
import { alertKey, type AlertFacts, type AlertKind, type RecoveredFrom, type StallFacts, type StuckChunk } from './events';

interface EventStyle {
  emoji: string;
  /** PagerDuty severity of a trigger. */
  severity: 'critical' | 'error' | 'warning' | 'info';
  /** A resolving event closes the PagerDuty incident of its key instead of opening one. */
  resolves: boolean;
}

export const EVENT_STYLE: Record<AlertKind, EventStyle> = {
  failed: { emoji: ':red_circle:', severity: 'error', resolves: false },
  slow: { emoji: ':large_orange_circle:', severity: 'warning', resolves: false },
  recovered: { emoji: ':large_green_circle:', severity: 'info', resolves: true },
  drift: { emoji: ':chart_with_upwards_trend:', severity: 'warning', resolves: false },
  late: { emoji: ':hourglass_flowing_sand:', severity: 'warning', resolves: false },
  stalled: { emoji: ':double_vertical_bar:', severity: 'error', resolves: false },
  test: { emoji: ':test_tube:', severity: 'info', resolves: false },
};

/** `<ui>/namespaces/<ns>/workflows/<workflowId>/<runId>`: the run in the Temporal Web UI. */
export function runLink(uiBase: string, namespace: string, a: Pick<AlertFacts, 'event' | 'workflowId' | 'runId' | 'executionId'>): string {
  const base = `${uiBase.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows`;
  // A test alert has no run; its link opens the namespace's workflow list.
  return a.event === 'test' ? base : `${base}/${encodeURIComponent(a.workflowId)}/${encodeURIComponent(a.executionId ?? a.runId)}`;
}

/** Duration, and the SLA it is measured against when there is one: `31m05s (SLA 30m)`. */
export function durationVsSla(a: AlertFacts): string {
  const d = formatDuration(a.durationMs);
  return a.sla ? `${d} (SLA ${a.sla})` : d;
}

/** One line that says what happened; the plain-text fallback of every channel. */
export function headline(a: AlertFacts): string {
  const run = `${a.pipeline} ${a.logicalDate || '(no logical date)'}`;
  switch (a.event) {
    case 'failed':
      return `${run} failed${a.step ? ` at ${a.step}` : ''} after ${durationVsSla(a)}${a.error ? `: ${a.error}` : ''}`;
    case 'slow':
      return a.chunk
        ? `${run} is slow: chunk ${a.chunk.index} has been running for ${formatDuration(a.chunk.elapsedMs)} (chunk SLA ${a.chunk.sla}); run time ${formatDuration(a.durationMs)}`
        : `${run} is slow: running for ${durationVsSla(a)}`;
    case 'late': {
      const p = a.projection;
      if (!p) return `${run} is projected to finish late`;
      return (
        `${run} is projected to finish late: ETA ${isoSeconds(p.eta)} (estimate), ${formatDuration(p.lateByMs)} past its ${p.limit === 'deadline' ? `deadline ${p.limitText} (${isoSeconds(p.deadline)})` : `SLA ${p.limitText} (${isoSeconds(p.deadline)})`}; ` +
        `${count(p.rowsDone)}/${count(p.rowsPlanned)} rows at ${formatRate(p.rowsPerSec)}, ${p.chunksDone}/${p.chunksTotal} chunks`
      );
    }
    case 'stalled': {
      const st = a.stall;
      if (!st) return `${run} is stalled`;
      const since = st.lastChunkAt ? 'no chunk has finished for' : 'no chunk has finished since scoring started,';
      return `${run} is stalled: ${since} ${formatDuration(st.idleMs)} (stall_after ${st.after}), ${st.chunksDone}/${st.chunksTotal} chunks done; ${stuckChunks(st)}`;
    }
    case 'recovered':
      return `${run} recovered: succeeded in ${durationVsSla(a)}${RECOVERED_FROM[a.recoveredFrom ?? ''] ?? ''}`;
    case 'drift': {
      const d = a.drift;
      if (!d) return `${run} drifted`;
      const worst = d.columns.slice(0, 3).map((c) => `${c.column} ${driftScore(c)}`).join(', ');
      return `${run} drifted: ${d.count} column${d.count === 1 ? '' : 's'} past PSI ${d.psiThreshold}${d.meanShiftThreshold ? ` or a mean shift of ${d.meanShiftThreshold} std` : ''} vs ${d.reference} (${worst}${d.count > 3 ? ', …' : ''})`;
    }
    case 'test':
      return `Test alert from Scoreline for pipeline ${a.pipeline}: this channel works`;
  }
}

const RECOVERED_FROM: Record<string, string> = {
  failed: ' after the previous run failed',
  slow: ' after being slow',
  late: ' after being projected late',
  stalled: ' after stalling',
};

/** `2026-11-02T05:00:00Z`: ISO 8601 to the second. */
function isoSeconds(iso: string): string {
  return iso.replace(/\.\d{3}Z$/, 'Z');
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** `in flight: chunk 20 since …Z on worker w1 (attempt 2, last heartbeat at read)`, or the group's range. */
export function stuckChunks(st: StallFacts): string {
  if (st.inFlight.length === 0) {
    return st.group
      ? `chunks ${st.group.firstChunk}–${st.group.lastChunk} are being scored by child workflow group ${st.group.index} since ${isoSeconds(st.group.since)} (the server did not say which are in flight)`
      : 'no chunk in flight (waiting for a worker to take one?)';
  }
  const one = (c: StuckChunk) => {
    const facts = [c.attempt !== null ? `attempt ${c.attempt}` : '', c.step ? `last heartbeat at ${c.step}` : ''].filter(Boolean).join(', ');
    return `chunk ${c.index ?? '?'}${c.since ? ` since ${isoSeconds(c.since)}` : ''}${c.worker ? ` on worker ${c.worker}` : ''}${facts ? ` (${facts})` : ''}`;
  };
  const shown = st.inFlight.slice(0, 5).map(one).join('; ');
  return `in flight: ${shown}${st.inFlight.length > 5 ? `; and ${st.inFlight.length - 5} more` : ''}`;
}

function driftScore(c: { psi: number | null; meanShift: number | null }): string {
  const parts = [c.psi !== null ? `PSI ${c.psi.toFixed(2)}` : '', c.meanShift !== null ? `shift ${c.meanShift.toFixed(1)} std` : ''];
  return parts.filter(Boolean).join(', ');
}

export interface WebhookBody {
  version: 1;
  event: AlertKind;
  test: boolean;
  summary: string;
  pipeline: string;
  logical_date: string;
  status: string;
  run_id: string;
  workflow_id: string;
  trigger: string;
  step: string | null;
  error: string | null;
  duration_ms: number;
  sla: string | null;
  sla_ms: number | null;
  chunk: { index: number; elapsed_ms: number; sla: string; sla_ms: number } | null;
  recovered_from: RecoveredFrom | null;
  /** For `late`: an estimate from the throughput so far. */
  projection: {
    eta: string;
    deadline: string;
    limit: 'deadline' | 'sla';
    limit_text: string;
    late_by_ms: number;
    rows_done: number;
    rows_planned: number;
    rows_per_s: number;
    chunks_done: number;
    chunks_total: number;
  } | null;
  /** For `stalled`: how long nothing finished and what is in flight. */
  stall: {
    after: string;
    after_ms: number;
    idle_ms: number;
    last_chunk_at: string | null;
    chunks_done: number;
    chunks_total: number;
    in_flight: { index: number | null; since: string | null; worker: string | null; attempt: number | null; step: string | null; last_heartbeat_at: string | null }[];
    group: { index: number; first_chunk: number; last_chunk: number; since: string } | null;
  } | null;
  drift: { reference: string; psi_threshold: number; mean_shift_threshold: number | null; columns: { column: string; role: string; psi: number | null; mean_shift: number | null }[]; count: number } | null;
  model: string | null;
  occurred_at: string;
  run_url: string;
  /** Same for every alert of one pipeline and logical date: what a receiver groups or dedups by. */
  key: string;
}

export function webhookBody(a: AlertFacts, link: string): WebhookBody {
  return {
    version: 1,
    event: a.event,
    test: a.event === 'test',
    summary: headline(a),
    pipeline: a.pipeline,
    logical_date: a.logicalDate,
    status: a.status,
    run_id: a.runId,
    workflow_id: a.workflowId,
    trigger: a.trigger,
    step: a.step ?? null,
    error: a.error ?? null,
    duration_ms: a.durationMs,
    sla: a.sla ?? null,
    sla_ms: a.sla ? (parseDuration(a.sla) ?? null) : null,
    chunk: a.chunk ? { index: a.chunk.index, elapsed_ms: a.chunk.elapsedMs, sla: a.chunk.sla, sla_ms: parseDuration(a.chunk.sla) ?? 0 } : null,
    recovered_from: a.recoveredFrom ?? null,
    projection: a.projection ? projectionJson(a.projection) : null,
    stall: a.stall ? stallJson(a.stall) : null,
    drift: a.drift
      ? {
          reference: a.drift.reference,
          psi_threshold: a.drift.psiThreshold,
          mean_shift_threshold: a.drift.meanShiftThreshold ?? null,
          columns: a.drift.columns.map((c) => ({ column: c.column, role: c.role, psi: c.psi, mean_shift: c.meanShift })),
          count: a.drift.count,
        }
      : null,
    model: a.model ?? null,
    occurred_at: a.occurredAt,
    run_url: link,
    key: alertKey(a),
  };
}

function projectionJson(p: NonNullable<AlertFacts['projection']>): NonNullable<WebhookBody['projection']> {
  return {
    eta: p.eta,
    deadline: p.deadline,
    limit: p.limit,
    limit_text: p.limitText,
    late_by_ms: p.lateByMs,
    rows_done: p.rowsDone,
    rows_planned: p.rowsPlanned,
    rows_per_s: p.rowsPerSec,
    chunks_done: p.chunksDone,
    chunks_total: p.chunksTotal,
  };
}

function stallJson(st: StallFacts): NonNullable<WebhookBody['stall']> {
  return {
    after: st.after,
    after_ms: parseDuration(st.after) ?? 0,
    idle_ms: st.idleMs,
    last_chunk_at: st.lastChunkAt,
    chunks_done: st.chunksDone,
    chunks_total: st.chunksTotal,
    in_flight: st.inFlight.map((c) => ({ index: c.index, since: c.since, worker: c.worker, attempt: c.attempt, step: c.step, last_heartbeat_at: c.lastHeartbeatAt })),
    group: st.group ? { index: st.group.index, first_chunk: st.group.firstChunk, last_chunk: st.group.lastChunk, since: st.group.since } : null,
  };
}

/** `sha256=<hex HMAC-SHA256 of the exact body bytes>`: the X-Scoreline-Signature header. */
export function signBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

/** Slack mrkdwn treats &, < and > as control characters; everything else is shown as typed. */
export function slackEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

type SlackBlock = Record<string, unknown>;

/** Incoming-webhook message: a plain `text` fallback (notifications) and blocks for the channel. */
export function slackMessage(a: AlertFacts, link: string): { text: string; blocks: SlackBlock[] } {
  const style = EVENT_STYLE[a.event];
  const field = (label: string, value: string) => ({ type: 'mrkdwn', text: `*${label}*\n${slackEscape(clip(value, 1900))}` });
  const fields = [
    field('Pipeline', a.pipeline),
    field('Logical date', a.logicalDate || '-'),
    field('Status', a.status),
    field('Duration', durationVsSla(a)),
  ];
  if (a.step) fields.push(field('Failed step', a.step));
  if (a.chunk) fields.push(field('Slow chunk', `${a.chunk.index}: ${formatDuration(a.chunk.elapsedMs)} (chunk SLA ${a.chunk.sla})`));
  if (a.projection) {
    const p = a.projection;
    fields.push(field('ETA (estimate)', `${isoSeconds(p.eta)}, ${formatDuration(p.lateByMs)} late`));
    fields.push(field(p.limit === 'deadline' ? 'Deadline' : 'SLA', `${p.limitText} (${isoSeconds(p.deadline)})`));
    fields.push(field('Rows', `${count(p.rowsDone)} of ${count(p.rowsPlanned)} at ${formatRate(p.rowsPerSec)}`));
  }
  if (a.stall) fields.push(field('Stuck', stuckChunks(a.stall)));
  if (a.model) fields.push(field('Model', a.model));
  if (a.drift) fields.push(field('Drifted columns', a.drift.columns.map((c) => `${c.column}: ${driftScore(c)}`).join('\n')));
  const blocks: SlackBlock[] = [
    { type: 'section', text: { type: 'mrkdwn', text: `${style.emoji} *${slackEscape(clip(headline(a), 2900))}*` } },
    { type: 'section', fields },
  ];
  if (a.error) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `*Error*\n\`\`\`${slackEscape(clip(a.error, 2800))}\`\`\`` } });
  blocks.push({
    type: 'context',
    elements: [{ type: 'mrkdwn', text: `<${link}|${a.event === 'test' ? 'Open the Temporal Web UI' : 'View the run in the Temporal Web UI'}> · run id \`${a.runId}\` · trigger ${a.trigger}` }],
  });
  return { text: clip(headline(a), 3000), blocks };
}

export interface PagerDutyEvent {
  routing_key: string;
  event_action: 'trigger' | 'resolve';
  dedup_key: string;
  payload?: {
    summary: string;
    source: string;
    severity: EventStyle['severity'];
    timestamp: string;
    component: string;
    group: string;
    class: string;
    custom_details: Record<string, unknown>;
  };
  links?: { href: string; text: string }[];
  client?: string;
  client_url?: string;
}

/**
 * Events API v2: `failed`/`slow`/`late`/`stalled` trigger (one incident per pipeline and logical date,
 * deduplicated by key), `recovered` resolves it. A test alert is a trigger followed by a resolve of its own test key.
 */
export function pagerdutyEvents(a: AlertFacts, routingKey: string, link: string): PagerDutyEvent[] {
  const dedupKey = alertKey(a);
  const resolve: PagerDutyEvent = { routing_key: routingKey, event_action: 'resolve', dedup_key: dedupKey };
  if (EVENT_STYLE[a.event].resolves) return [resolve];
  const trigger: PagerDutyEvent = {
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key: dedupKey,
    payload: {
      summary: clip(headline(a), 1024),
      source: `scoreline/${a.pipeline}`,
      severity: EVENT_STYLE[a.event].severity,
      timestamp: a.occurredAt,
      component: a.pipeline,
      group: 'scoreline',
      class: a.event,
      custom_details: {
        logical_date: a.logicalDate,
        status: a.status,
        step: a.step ?? null,
        error: a.error ?? null,
        duration: durationVsSla(a),
        duration_ms: a.durationMs,
        chunk: a.chunk ?? null,
        projection: a.projection ? projectionJson(a.projection) : null,
        stall: a.stall ? stallJson(a.stall) : null,
        drift: a.drift ?? null,
        model: a.model ?? null,
        run_id: a.runId,
        workflow_id: a.workflowId,
        trigger: a.trigger,
        run_url: link,
      },
    },
    links: [{ href: link, text: 'Run in the Temporal Web UI' }],
    client: 'Scoreline',
    client_url: link,
  };
  return a.event === 'test' ? [trigger, resolve] : [trigger];
}
