/**
 * What the Temporal server knows about a run's chunk activities in flight, for a `stalled` alert: which
 * worker took each (its identity), the attempt, and the step and chunk of its last heartbeat. Workflow
 * code cannot see any of this (it only learns a worker's identity from a finished chunk's stats), so the
 * workflow asks this activity, once, when it raises `stalled`.
 */
import type { Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { optionalTsToDate } from '@temporalio/common/lib/time';

export interface DescribeChunksArgs {
  /** The run's workflow, or the child workflow scoring the group in flight. */
  workflowId: string;
  runId?: string;
}

export interface PendingChunk {
  /** From the activity's last heartbeat ({step, chunk}); null before its first heartbeat. */
  chunk: number | null;
  step: string | null;
  worker: string | null;
  attempt: number;
  /** SCHEDULED (waiting for a worker or a retry), STARTED, CANCEL_REQUESTED, … */
  state: string;
  startedAt: string | null;
  lastHeartbeatAt: string | null;
}

const STATES: Record<number, string> = { 1: 'SCHEDULED', 2: 'STARTED', 3: 'CANCEL_REQUESTED', 4: 'PAUSED', 5: 'PAUSE_REQUESTED' };

/** The pending `scoreChunk` activities of one workflow execution. */
export async function describeChunkActivities(client: Client, args: DescribeChunksArgs): Promise<PendingChunk[]> {
  const desc = await client.workflow.getHandle(args.workflowId, args.runId).describe();
  const pending = (desc.raw.pendingActivities ?? []).filter((a) => a.activityType?.name === 'scoreChunk');
  return Promise.all(
    pending.map(async (a): Promise<PendingChunk> => {
      let details: { step?: unknown; chunk?: unknown } | undefined;
      try {
        details = await decodeFromPayloadsAtIndex(client.options.loadedDataConverter, 0, a.heartbeatDetails?.payloads);
      } catch {
        details = undefined; // no heartbeat yet, or details this converter cannot read
      }
      const iso = (ts: Parameters<typeof optionalTsToDate>[0]) => optionalTsToDate(ts)?.toISOString() ?? null;
      return {
        chunk: typeof details?.chunk === 'number' ? details.chunk : null,
        step: typeof details?.step === 'string' ? details.step : null,
        worker: a.lastWorkerIdentity || null,
        attempt: a.attempt ?? 1,
        state: STATES[Number(a.state)] ?? String(a.state),
        startedAt: iso(a.lastStartedTime),
        lastHeartbeatAt: iso(a.lastHeartbeatTime),
      };
    }),
  );
}
