/**
 * The metrics port settings, apart from src/worker.ts so the CLI can describe and check them without
 * loading the worker SDK.
 */
import { ConfigError } from '../errors';

/** Where `scoreline dev` serves the worker's metrics unless told otherwise (the OpenTelemetry Prometheus exporter's port). */
export const DEFAULT_DEV_METRICS_PORT = 9464;

/** A port number from a flag or variable; 0 and empty mean "off" (undefined). */
export function parseMetricsPort(value: string | number | undefined, origin = 'SCORELINE_METRICS_PORT'): number | undefined {
  if (value === undefined || value === '') return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`${origin}: "${value}" is not a port number (0 turns metrics off)`);
  return port === 0 ? undefined : port;
}
