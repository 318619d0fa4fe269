/**
 * Alert events and the facts an alert carries. Pure and import-free at runtime: the workflow decides
 * when an event fires and builds the facts; activities turn them into channel payloads.
 *
 * Adding an event: add it to ALERT_EVENTS, give it a style in payloads.ts
 * (EVENT_STYLE: emoji, severity, whether it resolves an incident) and a headline, and fire it from
 * the workflow (workflows/alerts.ts). Channels, config and the audit column need no change.
 */
import type { AlertChannel, AlertsConfig } from './config';
import type { RunStatus, Trigger } from '../types';

export const ALERT_EVENTS = ['failed', 'slow', 'recovered', 'drift', 'late', 'stalled'] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];
/** `test` is what `scoreline alerts test` sends; it is not configurable. */
export type AlertKind = AlertEvent | 'test';

/** Everything a channel needs to say what happened. Small JSON; never holds a URL, key or secret. */
export interface AlertFacts {
  event: AlertKind;
  pipeline: string;
  logicalDate: string;
  runId: string;
  /** The workflow execution that sent it, when not `runId` (a resumed run keeps the id of the run it resumes). */
  executionId?: string;
  workflowId: string;
  trigger: Trigger;
  /** The run's status when the alert fired: `running` for `slow`, `late` and `stalled`. */
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
  /** For `recovered`: what is over — the previous run's failure, or this run's slowness, projected lateness or stall. */
  recoveredFrom?: RecoveredFrom;
  /** For `late`: the projection that crossed the deadline or SLA (an estimate, not a measurement). */
  projection?: ProjectionFacts;
  /** For `stalled`: how long no chunk has finished, and what is in flight. */
  stall?: StallFacts;
  /** For `drift`: the reference and the columns past the pipeline's thresholds. */
  drift?: DriftFacts;
  /** `name:version` of the pinned model, once known. */
  model?: string;
  /** When the event happened (workflow time), ISO 8601; identical across delivery retries. */
  occurredAt: string;
}

export type RecoveredFrom = 'failed' | 'slow' | 'late' | 'stalled';

/** What a `late` alert says: where throughput so far takes the run, against which limit. */
export interface ProjectionFacts {
  /** Projected end of scoring (ISO 8601): now + rows left ÷ rows per second so far. An estimate. */
  eta: string;
  /** The limit the projection passes (ISO 8601): the `deadline`'s instant, or the run's start + `sla`. */
  deadline: string;
  /** Which limit: `deadline` (a time of day) or `sla` (a duration from the run's start). */
  limit: 'deadline' | 'sla';
  /** The limit as configured: `06:00 Europe/Berlin` or `30m`. */
  limitText: string;
  /** eta − deadline. */
  lateByMs: number;
  rowsDone: number;
  rowsPlanned: number;
  rowsPerSec: number;
  chunksDone: number;
  chunksTotal: number;
}

/** One chunk a `stalled` alert names: what the workflow knows, and what the server said about its activity. */
export interface StuckChunk {
  /** null when the server reported a chunk activity the workflow could not match to an index. */
  index: number | null;
  /** When the workflow scheduled the chunk (ISO 8601), when known. */
  since: string | null;
  /** The worker identity of the chunk activity's current or last attempt, from the Temporal server. */
  worker: string | null;
  attempt: number | null;
  /** The step of its last heartbeat: read, convert, infer, write. */
  step: string | null;
  lastHeartbeatAt: string | null;
}

export interface StallFacts {
  /** `stall_after` as configured. */
  after: string;
  /** Time since the last chunk finished (or, if none has, since scoring started). */
  idleMs: number;
  /** When the last chunk finished (ISO 8601); null when none has yet. */
  lastChunkAt: string | null;
  chunksDone: number;
  chunksTotal: number;
  /** The chunks being scored, longest-running first. */
  inFlight: StuckChunk[];
  /** A large run scores in child workflows: the group in flight (its chunk indexes), when that is all that is known. */
  group?: { index: number; firstChunk: number; lastChunk: number; since: string };
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
