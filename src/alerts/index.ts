/**
 * Alerts, the side that does I/O: what the alert activities and `scoreline alerts test` call. When an
 * event fires is the workflow's business (workflows/alerts.ts); what a channel receives is payloads.ts.
 */
import type { PipelineConfig } from '../config/pipeline';
import { errorMessage } from '../errors';
import { resolvePipeline, type RunContext } from '../run/context';
import type { RunInput, RunRef } from '../types';
import type { AlertChannel, AlertsConfig } from './config';
import { deliver, type DeliveryOptions } from './channels';
import type { AlertFacts } from './events';

export { parseDuration } from './duration';
export { describeChunkActivities, type DescribeChunksArgs, type PendingChunk } from './stall';
export type { AlertChannel, AlertsConfig } from './config';
export type { AlertFacts, AlertRecord } from './events';

/**
 * The alerts section for a run whose plan never returned (so the workflow has no config): resolved on
 * the worker exactly as the plan would. A config that does not validate has no channels to alert.
 */
export function resolveAlertConfig(ctx: RunContext, args: { input: RunInput }): AlertsConfig | null {
  try {
    return resolvePipeline(ctx, args.input.pipeline, args.input.config, args.input.overrides ?? {}).alerts ?? null;
  } catch {
    return null;
  }
}

/**
 * Did the previous run of this pipeline and logical date fail? "Previous" is the latest other run (or,
 * for a resumed run, its own earlier attempt) of the same workflow id that succeeded or failed
 * (cancelled runs say nothing about health), read from
 * the audit table: it is shared by every worker and outlives Temporal's history retention. An audit
 * store that cannot answer (no `previousRun`) means no `recovered` alert, never a wrong one.
 */
export async function previousRunFailed(ctx: RunContext, args: { config: PipelineConfig; run: RunRef; resumed?: boolean }): Promise<boolean> {
  const store = ctx.connectors.audit(args.config);
  if (!store.previousRun) return false;
  // A resumed run keeps its run id, and its own earlier attempt's `failed` row is the failure it
  // recovers from: exclude no run (this run's final row is written after its alerts).
  const previous = await store.previousRun(args.resumed ? { ...args.run, runId: '' } : args.run);
  return previous?.status === 'failed';
}

export interface DeliverArgs {
  alert: AlertFacts;
  channel: AlertChannel;
}

/** One alert to one channel; throws AlertError (retryable or not) when the channel did not accept it. */
export async function deliverAlert(args: DeliverArgs, opts: DeliveryOptions): Promise<{ status: number; requests: number }> {
  return deliver(args.alert, args.channel, opts);
}

/** The alert `scoreline alerts test` sends: clearly a test, with no run behind it. */
export function testAlert(config: PipelineConfig, now = new Date()): AlertFacts {
  return {
    event: 'test',
    pipeline: config.name,
    logicalDate: now.toISOString().slice(0, 10),
    runId: 'test',
    // Each test its own delivery id: a receiver that drops duplicates must not drop the next test.
    executionId: `test-${now.getTime()}`,
    workflowId: `scoreline/${config.name}/test`,
    trigger: 'cli',
    status: 'test',
    durationMs: 0,
    sla: config.alerts?.sla,
    occurredAt: now.toISOString(),
  };
}

export interface ChannelTestResult {
  channel: string;
  kind: AlertChannel['kind'];
  ok: boolean;
  status?: number;
  error?: string;
}

/** A test alert through every configured channel, at once; one result per channel, never throws for a channel. */
export async function sendTestAlerts(config: PipelineConfig, opts: DeliveryOptions): Promise<ChannelTestResult[]> {
  const alert = testAlert(config);
  return Promise.all(
    (config.alerts?.channels ?? []).map(async (channel): Promise<ChannelTestResult> => {
      try {
        const { status } = await deliver(alert, channel, opts);
        return { channel: channel.name, kind: channel.kind, ok: true, status };
      } catch (err) {
        return { channel: channel.name, kind: channel.kind, ok: false, error: errorMessage(err) };
      }
    }),
  );
}
