/**
 * What a worker process shares between activities: where pipelines and models live, the connector
 * registry, and the ONNX session cache (one session per model sha256 per process).
 */
import { existsSync, readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { Connectors } from '../../connectors/types';
import { loadPipelineFile, NAME_PATTERN, parsePipeline, readPipelineYaml, type PipelineConfig } from '../config/pipeline';
import { ConfigError } from '../errors';
import { ModelStore } from '../models/store';
import type { InferencePool } from '../scoring/pool';
import type { SessionCache } from '../scoring/session';

export interface RunContext {
  /** Relative paths in pipeline files resolve against this directory. */
  projectDir: string;
  pipelinesDir: string;
  modelsDir: string;
  connectors: Connectors;
  sessions: SessionCache;
  /** Inference threads; undefined = run ONNX Runtime on the calling thread. */
  inference?: InferencePool;
  workerId: string;
  /** Chunks per child workflow of a large run (SCORELINE_CHUNKS_PER_CHILD); default DEFAULT_CHUNKS_PER_CHILD. */
  chunksPerChild?: number;
  /** Whether the namespace has Scoreline's search attributes (a worker asks its server); absent = unknown, treated as no. */
  searchAttributesRegistered?: () => Promise<boolean>;
}

/** Releases what a context holds: ONNX sessions, inference threads, warehouse connection pools (or the process would not exit). */
export async function closeRunContext(ctx: RunContext): Promise<void> {
  await ctx.sessions.close();
  await ctx.inference?.close();
  await ctx.connectors.close?.();
}

/** Runs `fn` with a context opened for it (planning on this machine), then closes the context. */
export async function withRunContext<T>(open: () => Promise<RunContext>, fn: (ctx: RunContext) => Promise<T>): Promise<T> {
  const ctx = await open();
  try {
    return await fn(ctx);
  } finally {
    await closeRunContext(ctx);
  }
}

export function defaultWorkerId(): string {
  return `${hostname()}:${process.pid}`;
}

export function modelStoreFor(ctx: RunContext, config: PipelineConfig): ModelStore {
  return new ModelStore(config.models_dir ? resolvePath(ctx.projectDir, config.models_dir) : ctx.modelsDir);
}

export function resolvePath(base: string, path: string): string {
  return isAbsolute(path) ? path : resolve(base, path);
}

/**
 * A pipeline by name: `<pipelinesDir>/<name>.yaml` (or .yml), else any file there whose `name:` matches.
 * Inline config (from the CLI/API) wins, so caller and worker validate the very same document.
 */
export function resolvePipeline(ctx: RunContext, name: string, inline: unknown, overrides: Record<string, string>): PipelineConfig {
  // The name comes from workflow input (e.g. the Web UI): it must not walk out of the pipelines directory.
  if (!NAME_PATTERN.test(name)) throw new ConfigError(`pipeline "${name}": not a pipeline name (lower-case letters, digits, - and _)`);
  if (inline !== undefined && inline !== null) {
    const config = parsePipeline(inline, `pipeline "${name}" (inline)`, overrides);
    if (config.name !== name) throw new ConfigError(`pipeline "${name}": inline config is named "${config.name}"`);
    return config;
  }
  for (const ext of ['yaml', 'yml']) {
    const path = join(ctx.pipelinesDir, `${name}.${ext}`);
    if (existsSync(path)) return loadPipelineFile(path, overrides);
  }
  const files = existsSync(ctx.pipelinesDir) ? readdirSync(ctx.pipelinesDir).filter((f) => /\.ya?ml$/.test(f)) : [];
  for (const f of files) {
    const raw = readPipelineYaml(join(ctx.pipelinesDir, f)) as { name?: unknown } | null;
    if (raw && raw.name === name) return loadPipelineFile(join(ctx.pipelinesDir, f), overrides);
  }
  throw new ConfigError(
    `pipeline "${name}" not found in ${ctx.pipelinesDir} (found: ${files.join(', ') || 'no pipeline files'}): ` +
      'pass the YAML file path instead of the name, or point SCORELINE_PIPELINES_DIR at the directory that holds it',
  );
}
