/**
 * Alert events and the facts an alert carries. Pure and import-free at runtime: the workflow decides
 * when an event fires and builds the facts; activities turn them into channel payloads.
 *
 * Adding an event (`drift`, `stalled`, …): add it to ALERT_EVENTS, give it a style in payloads.ts
 * (EVENT_STYLE: emoji, severity, whether it resolves an incident) and a headline, and fire it from
 * the workflow (workflows/alerts.ts). Channels, config and the audit column need no change.
 */
import type { AlertChannel, AlertsConfig } from './config';
import type { RunStatus, Trigger } from '../types';

export const ALERT_EVENTS = ['failed', 'slow', 'recovered', 'drift'] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];
/** `test` is what `scoreline alerts test` sends; it is not configurable. */
export type AlertKind = AlertEvent | 'test';

/** Everything a channel needs to say what happened. Small JSON; never holds a URL, key or secret. */
export interface AlertFacts {
  event: AlertKind;
  pipeline: string;
  logicalDate: string;
  runId: string;
  workflowId: string;
  trigger: Trigger;
  /** The run's status when the alert fired: `running` for `slow`. */
  status: RunStatus | 'test';
  /** The step that failed (`plan`, `score chunk 3`, `commit`), for `failed`. */
  step?: string;
  error?: string;
  /** Run time when the alert fired. */
  durationMs: number;
  /** The run's SLA as configured (`30m`), if any. */
  sla?: string;
  /** Set when a single chunk outran `chunk_sla`. */
  chunk?: { index: number; elapsedMs: number; sla: string };
  /** For `recovered`: what is over — the previous run's failure, or this run's slowness. */
  recoveredFrom?: 'failed' | 'slow';
  /** For `drift`: the reference and the columns past the pipeline's thresholds. */
  drift?: DriftFacts;
  /** `name:version` of the pinned model, once known. */
  model?: string;
  /** When the event happened (workflow time), ISO 8601; identical across delivery retries. */
  occurredAt: string;
}

export interface DriftFacts {
  reference: string;
  /** `drift.psi` of the pipeline. */
  psiThreshold: number;
  meanShiftThreshold?: number;
  /** Worst first, at most 20 (the count says how many there were). */
  columns: { column: string; role: string; psi: number | null; meanShift: number | null }[];
  count: number;
}

/** What the run's audit row records about each delivery (the `alerts` column, JSON). */
export interface AlertRecord {
  event: AlertKind;
  channel: string;
  ok: boolean;
  error?: string;
}

/** The channels an event goes to: the pipeline must subscribe to it, and the channel must not filter it out. */
export function channelsFor(alerts: AlertsConfig | null | undefined, event: AlertEvent): AlertChannel[] {
  if (!alerts || !alerts.on.includes(event)) return [];
  return alerts.channels.filter((c) => !c.on || c.on.includes(event));
}

/** PagerDuty dedup key and webhook correlation key: one incident per pipeline and logical date. */
export function alertKey(a: Pick<AlertFacts, 'pipeline' | 'logicalDate' | 'event'>): string {
  if (a.event === 'test') return `scoreline/${a.pipeline}/test`;
  // Drift is its own incident: a later successful run (`recovered`) says nothing about the data.
  return a.event === 'drift' ? `scoreline/${a.pipeline}/${a.logicalDate}/drift` : `scoreline/${a.pipeline}/${a.logicalDate}`;
}
