/**
 * Where a pipeline's shadow (challenger) predictions go: the sink's table or path with `_shadow`
 * appended, same backend, same contract. Only the sink changes: the shadow table sits beside the output
 * (same directory, dataset or schema), so the default audit location is the same too.
 */
import type { PipelineConfig, SinkConfig } from '../config/pipeline';

export const SHADOW_SUFFIX = '_shadow';

export function shadowSink(sink: SinkConfig): SinkConfig {
  if (sink.kind === 'parquet') return { ...sink, path: `${sink.path.replace(/\/+$/, '')}${SHADOW_SUFFIX}` };
  return { ...sink, table: `${sink.table}${SHADOW_SUFFIX}` };
}

export function shadowConfig(config: PipelineConfig): PipelineConfig {
  return { ...config, sink: shadowSink(config.sink) };
}
