/**
 * Connector registry: the pipeline's `kind` picks the backend. Adding a backend means one file and one
 * line per role here. Warehouse connectors get their connection (credentials from the worker's
 * environment) from `Connections`, by the name the pipeline gives.
 */
import { dirname } from 'node:path';
import type { AuditConfig, PipelineConfig } from '../src/config/pipeline';
import { Connections } from '../src/connections';
import { resolvePath } from '../src/run/context';
import { BigQueryAuditStore, BigQuerySink, BigQuerySource } from './bigquery';
import { ParquetAuditStore } from './parquet-audit';
import { ParquetSink } from './parquet-sink';
import { ParquetSource } from './parquet-source';
import { closeSnowflakeConnections, SnowflakeAuditStore, SnowflakeSink, SnowflakeSource } from './snowflake';
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
        case 'snowflake':
          return new SnowflakeSource(connections.snowflake(config.source.connection));
        case 'bigquery':
          return new BigQuerySource(connections.bigquery(config.source.connection));
      }
    },
    sink(config: PipelineConfig): Sink {
      switch (config.sink.kind) {
        case 'parquet':
          return new ParquetSink(path(config.sink.path), config.sink.mode);
        case 'snowflake':
          return new SnowflakeSink(connections.snowflake(config.sink.connection), config.sink);
        case 'bigquery':
          return new BigQuerySink(connections.bigquery(config.sink.connection), config.sink, { keys: config.source.key });
      }
    },
    audit(config: PipelineConfig): AuditStore {
      const audit = auditConfig(config);
      switch (audit.kind) {
        case 'parquet':
          return new ParquetAuditStore(path(audit.path));
        case 'snowflake':
          return new SnowflakeAuditStore(connections.snowflake(audit.connection), audit.schema);
        case 'bigquery':
          return new BigQueryAuditStore(connections.bigquery(audit.connection), audit.schema);
      }
    },
    close: closeSnowflakeConnections, // BigQuery's REST client holds no sessions
  };
}

/**
 * Where audit rows go when the pipeline does not say: beside a Parquet output table (its parent
 * directory), or in the warehouse of a warehouse sink, in the schema / dataset that holds the output table.
 */
export function auditConfig(config: PipelineConfig): AuditConfig {
  if (config.audit) return config.audit;
  const sink = config.sink;
  if (sink.kind === 'parquet') return { kind: 'parquet', path: dirname(sink.path) };
  const qualifier = sink.table.split('.').slice(0, -1).join('.');
  return { kind: sink.kind, connection: sink.connection, schema: qualifier || undefined };
}
