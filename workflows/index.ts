// Everything the worker registers as workflows. Keep this file free of I/O: it is bundled by Temporal.
export { scorelineBatchRun, progressQuery } from './batch';
export { scorelineChunkGroup } from './chunks';
export { scorelineScheduledRun } from './scheduled';
export { scorelineNrt, scorelineNrtRequest, scoreUpdate, nrtStatsQuery } from './nrt';
