/**
 * Connector registry: the pipeline's `kind` picks the backend. Adding a backend means one file and one
 * line per role here. Warehouse connectors get their connection (credentials from the worker's
 * environment) from `Connections`, by the name the pipeline gives.
 */
import { dirname } from 'node:path';
import type { PipelineConfig } from '../src/config/pipeline';
import { Connections } from '../src/connections';
import { ConfigError } from '../src/errors';
import { resolvePath } from '../src/run/context';
import { ParquetAuditStore } from './parquet-audit';
import { ParquetSink } from './parquet-sink';
import { ParquetSource } from './parquet-source';
import type { AuditStore, Connectors, Sink, Source } from './types';

export interface ConnectorOptions {
  baseDir: string;
  /** Named warehouse connections; default: env + `<baseDir>/connections.yaml`. */
  connections?: Connections;
}

export function createConnectors(opts: ConnectorOptions): Connectors {
  const path = (p: string) => resolvePath(opts.baseDir, p);
  const parquetSource = new ParquetSource({ resolvePath: path });
  const connections = opts.connections ?? new Connections({ baseDir: opts.baseDir });
  return {
    source(config: PipelineConfig): Source {
      switch (config.source.kind) {
        case 'parquet':
          return parquetSource;
        default:
          throw notYet(config.source.kind, connections);
      }
    },
    sink(config: PipelineConfig): Sink {
      switch (config.sink.kind) {
        case 'parquet':
          return new ParquetSink(path(config.sink.path), config.sink.mode);
        default:
          throw notYet(config.sink.kind, connections);
      }
    },
    audit(config: PipelineConfig): AuditStore {
      const audit = config.audit;
      if (audit?.kind === 'parquet' || (!audit && config.sink.kind === 'parquet')) return new ParquetAuditStore(auditDir(config, path));
      throw notYet(audit?.kind ?? config.sink.kind, connections);
    },
  };
}

function notYet(kind: string, _connections: Connections): Error {
  return new ConfigError(`${kind}: this build has no ${kind} connector yet`);
}

/** Audit tables of a Parquet audit store default to the directory that holds the output table. */
export function auditDir(config: PipelineConfig, resolve: (p: string) => string): string {
  if (config.audit?.kind === 'parquet') return resolve(config.audit.path);
  if (config.sink.kind === 'parquet') return dirname(resolve(config.sink.path));
  throw new ConfigError(`pipeline ${config.name}: no Parquet audit directory (the sink is ${config.sink.kind})`);
}
