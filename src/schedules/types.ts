/**
 * Names and types shared by the schedule client (src/schedules) and the workflow a schedule starts
 * (workflows/scheduled.ts). Pure: workflow code imports it.
 */
import type { RunResult } from '../types';

/** The workflow type every Scoreline schedule starts (see workflows/scheduled.ts for why not the batch run itself). */
export const SCHEDULED_RUN_WORKFLOW = 'scorelineScheduledRun';

/** `scoreline/<pipeline>`: one schedule per pipeline. */
export function scheduleIdFor(pipeline: string): string {
  return `scoreline/${pipeline}`;
}

/**
 * Base workflow id of a schedule's action; the server appends the nominal time, so an action is e.g.
 * `scoreline/churn/scheduled-2026-11-02T01:30:00Z`, beside the batch runs `scoreline/churn/<date>` it starts.
 */
export function scheduledWorkflowIdBase(pipeline: string): string {
  return `scoreline/${pipeline}/scheduled`;
}

/** Memo keys the scheduled-run workflow sets, so `schedule describe` can tell a run's date and outcome. */
export interface ScheduledRunMemo {
  logical_date?: string;
  run_workflow_id?: string;
  outcome?: 'started' | 'skipped';
  reason?: string;
  /** The batch run's run id, once it has started. */
  run_id?: string;
  /** `rescore_window`: each re-checked day and its outcome, e.g. `2026-11-01: succeeded, 2026-11-02: unchanged`. */
  rescored?: string;
}

/** Result of a scheduled-run workflow: the batch run's result, or why no run was started for the date. */
export type ScheduledRunResult =
  | { outcome: 'ran'; logicalDate: string; workflowId: string; result: RunResult; rescored?: RescoredDate[] }
  | { outcome: 'skipped'; logicalDate: string; workflowId: string; reason: string };

/** One day of a `rescore_window` re-check: skipped as unchanged, rescored (and how it ended), or not run. */
export interface RescoredDate {
  logicalDate: string;
  /** unchanged: nothing to do · succeeded / failed: the rescore's outcome · skipped: that date was already running · error: the re-check itself failed. */
  outcome: 'unchanged' | 'succeeded' | 'failed' | 'skipped' | 'error';
  reason: string;
  workflowId?: string;
}
