/**
 * Tables beside a pipeline's output: the shadow (challenger) predictions and the quarantined rows go to
 * the sink's table or path with `_shadow` / `_quarantine` appended, same backend. Only the sink changes:
 * the sibling sits beside the output (same directory, dataset or schema), so the default audit location
 * is the same too.
 */
import type { PipelineConfig, SinkConfig } from '../config/pipeline';

export const SHADOW_SUFFIX = '_shadow';
export const QUARANTINE_SUFFIX = '_quarantine';
export const SIBLING_SUFFIXES = [SHADOW_SUFFIX, QUARANTINE_SUFFIX];

export function siblingSink(sink: SinkConfig, suffix: string): SinkConfig {
  if (sink.kind === 'parquet') return { ...sink, path: `${sink.path.replace(/\/+$/, '')}${suffix}` };
  return { ...sink, table: `${sink.table}${suffix}` };
}

export function shadowSink(sink: SinkConfig): SinkConfig {
  return siblingSink(sink, SHADOW_SUFFIX);
}

export function shadowConfig(config: PipelineConfig): PipelineConfig {
  return { ...config, sink: shadowSink(config.sink) };
}

/**
 * The quarantine table is replaced per date whatever the output's mode: it holds the rows the date's
 * latest run could not score, which is what a rescore (`--only-quarantined`) and an analyst look for.
 */
export function quarantineConfig(config: PipelineConfig): PipelineConfig {
  return { ...config, sink: { ...siblingSink(config.sink, QUARANTINE_SUFFIX), mode: 'replace-partition' } };
}
