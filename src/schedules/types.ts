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
}

/** Result of a scheduled-run workflow: the batch run's result, or why no run was started for the date. */
export type ScheduledRunResult =
  | { outcome: 'ran'; logicalDate: string; workflowId: string; result: RunResult }
  | { outcome: 'skipped'; logicalDate: string; workflowId: string; reason: string };
