/**
 * Connector registry: the pipeline's `kind` picks the backend. Adding a backend means one file and one
 * line per role here.
 */
import { dirname } from 'node:path';
import type { PipelineConfig } from '../src/config/pipeline';
import { resolvePath } from '../src/run/context';
import { ParquetAuditStore } from './parquet-audit';
import { ParquetSink } from './parquet-sink';
import { ParquetSource } from './parquet-source';
import type { AuditStore, Connectors, Sink, Source } from './types';

export function createConnectors(opts: { baseDir: string }): Connectors {
  const path = (p: string) => resolvePath(opts.baseDir, p);
  const parquetSource = new ParquetSource({ resolvePath: path });
  return {
    source(config: PipelineConfig): Source {
      switch (config.source.kind) {
        case 'parquet':
          return parquetSource;
      }
    },
    sink(config: PipelineConfig): Sink {
      switch (config.sink.kind) {
        case 'parquet':
          return new ParquetSink(path(config.sink.path), config.sink.mode);
      }
    },
    audit(config: PipelineConfig): AuditStore {
      return new ParquetAuditStore(auditDir(config, path));
    },
  };
}

/** Audit tables default to the directory that holds the output table. */
export function auditDir(config: PipelineConfig, resolve: (p: string) => string): string {
  if (config.audit) return resolve(config.audit.path);
  return dirname(resolve(config.sink.path));
}
