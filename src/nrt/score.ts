/**
 * The near-real-time scoring step (run as a local activity next to the workflow): the batch path's
 * pipeline resolution, model store, cast/NULL policy (`buildFeeds`) and session cache, on rows that
 * came with the request instead of from a source. Writes nothing but the audit row (recordNrtAudits).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ModelStore, parseModelRef, type LoadedModel } from '../models/store';
import { modelStoreFor, resolvePipeline, type RunContext } from '../run/context';
import { runModel } from '../scoring/session';
import { buildFeeds } from '../scoring/tensor';
import { nrtAuditRow, type NrtAuditGroup, type NrtRequest, type NrtResult, type NrtScored } from './protocol';
import { decodeRows } from './rows';

/**
 * Model references resolved per request, so a promotion (alias moved) applies to the very next request
 * without restarting anything. Versions are immutable in the store, so a version's manifest and verified
 * sha256 are cached; only `aliases.yaml` is looked at per request (re-parsed when its mtime changes).
 */
export class LiveModels {
  private readonly versions = new Map<string, Promise<LoadedModel>>();
  private readonly aliases = new Map<string, { stamp: string; aliases: Record<string, string> }>();

  async resolve(store: ModelStore, ref: string): Promise<LoadedModel> {
    const parsed = parseModelRef(ref);
    const version = parsed.version ?? this.alias(store, parsed.name, parsed.alias!);
    // Unknown model or unset alias: the store's own resolve says so with its full message.
    if (version === undefined) return store.resolve(ref);
    const key = `${store.root}\0${parsed.name}\0${version}`;
    let loaded = this.versions.get(key);
    if (!loaded) {
      loaded = store.load(parsed.name, version);
      this.versions.set(key, loaded);
      loaded.catch(() => this.versions.delete(key));
    }
    const model = await loaded;
    return { ...model, pin: { ...model.pin, ref } };
  }

  private alias(store: ModelStore, name: string, alias: string): string | undefined {
    const path = join(store.root, name, 'aliases.yaml');
    if (!existsSync(path)) return undefined;
    const st = statSync(path);
    const stamp = `${st.mtimeMs}/${st.size}/${st.ino}`;
    let cached = this.aliases.get(path);
    if (!cached || cached.stamp !== stamp) {
      cached = { stamp, aliases: store.readAliases(name) };
      this.aliases.set(path, cached);
    }
    return cached.aliases[alias];
  }
}

/** One per worker process, like the session cache. */
export const liveModels = new LiveModels();

export async function scoreRequest(ctx: RunContext, req: NrtRequest, ipc: Uint8Array, workflowId: string): Promise<NrtScored> {
  const t0 = performance.now();
  const config = resolvePipeline(ctx, req.pipeline, req.config, req.overrides ?? {});
  const model = await liveModels.resolve(modelStoreFor(ctx, config), config.model);
  const session = await ctx.sessions.getPinned(model.pin, async () => model);
  const batches = decodeRows(ipc);
  const rowsIn = batches.reduce((n, b) => n + b.numRows, 0);
  const predictions: Record<string, (number | null)[]> = {};
  for (const o of model.manifest.outputs) predictions[o.column] = new Array<number | null>(rowsIn).fill(null);
  const scored = new Uint8Array(rowsIn);
  let offset = 0;
  let rowsOut = 0;
  let rowsImputed = 0;
  for (const [i, batch] of batches.entries()) {
    const feeds = buildFeeds(batch, model.manifest, config.features, batches.length > 1 ? `rows (record batch ${i})` : 'rows');
    // Inference on this thread, not the worker's inference pool: a request of a few hundred rows takes
    // about a millisecond, and must not queue behind 64k-row batch chunks there.
    const out = feeds.rowsOut > 0 ? await runModel(session, feeds.tensors, feeds.rowsOut) : new Map();
    for (let k = 0; k < feeds.rowsOut; k++) scored[offset + (feeds.keptRows ? feeds.keptRows[k] : k)] = 1;
    for (const [column, values] of out) {
      const target = predictions[column];
      for (let k = 0; k < feeds.rowsOut; k++) target[offset + (feeds.keptRows ? feeds.keptRows[k] : k)] = Number(values[k]);
    }
    offset += batch.numRows;
    rowsOut += feeds.rowsOut;
    rowsImputed += feeds.rowsImputed;
  }
  const finishedAtMs = Date.now();
  const { name, version, sha256, ref } = model.pin;
  const result: NrtResult = {
    requestId: req.requestId,
    ...(req.rowsSha256 && { rowsSha256: req.rowsSha256 }),
    model: { name, version, sha256, ref },
    rowsIn,
    rowsOut,
    rowsRejected: rowsIn - rowsOut,
    rowsImputed,
    predictions,
    // Which rows were dropped, said outright: a NaN prediction also travels as null (JSON has no NaN).
    skipped: [...scored.keys()].filter((i) => !scored[i]),
    scoreMs: Math.round((performance.now() - t0) * 100) / 100,
    finishedAtMs,
  };
  return { result, audit: nrtAuditRow(req, workflowId, 'succeeded', { model: model.pin, finishedAtMs, result }) };
}

/**
 * The audit rows of several requests, each in its pipeline's audit store, one write per store. A retry
 * may write a request's row twice; both say the same, and `scoreline_runs` readers take the latest row
 * per run_id anyway.
 */
export async function recordNrtAudits(ctx: RunContext, groups: NrtAuditGroup[]): Promise<void> {
  for (const g of groups) {
    const config = resolvePipeline(ctx, g.pipeline, g.config, g.overrides ?? {});
    const audit = ctx.connectors.audit(config);
    await audit.recordRuns(g.rows);
  }
}
