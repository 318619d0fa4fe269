/**
 * Custom search attributes that make runs findable in the Web UI ("all failed runs of churn-daily in
 * November"). Registered by the dev stack at start; production clusters register them once
 * (README, "Temporal Web UI"). Pure: imported by workflow code.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const SA_PIPELINE = defineSearchAttributeKey('ScorelinePipeline', SearchAttributeType.KEYWORD);
export const SA_LOGICAL_DATE = defineSearchAttributeKey('ScorelineLogicalDate', SearchAttributeType.DATETIME);
export const SA_TRIGGER = defineSearchAttributeKey('ScorelineTrigger', SearchAttributeType.KEYWORD);
export const SA_MODEL = defineSearchAttributeKey('ScorelineModel', SearchAttributeType.KEYWORD);
export const SA_MODEL_VERSION = defineSearchAttributeKey('ScorelineModelVersion', SearchAttributeType.KEYWORD);

/** Name → type, in the form `temporal server start-dev --search-attribute` and the operator API take. */
export const SEARCH_ATTRIBUTES = {
  ScorelinePipeline: 'Keyword',
  ScorelineLogicalDate: 'Datetime',
  ScorelineTrigger: 'Keyword',
  ScorelineModel: 'Keyword',
  ScorelineModelVersion: 'Keyword',
} as const;

export const TASK_QUEUE = 'scoreline';

/**
 * Chunk activities have a task queue of their own, `<task queue>-chunks`, served by every worker beside
 * its main queue: the main queue's slots then only ever hold short steps (plan, key check, commit,
 * profile, finish, alerts), which never wait behind a worker full of chunks.
 */
export function chunkQueue(taskQueue: string): string {
  return `${taskQueue}-chunks`;
}
export const BATCH_WORKFLOW = 'scorelineBatchRun';

/** `scoreline/<pipeline>/<date>`: one run per pipeline and logical date at a time. */
export function batchWorkflowId(pipeline: string, logicalDate: string): string {
  return `scoreline/${pipeline}/${logicalDate}`;
}

/** Set by Temporal Schedules on the runs they start: the nominal time, i.e. the logical date's source. */
export const SA_SCHEDULED_START = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);
