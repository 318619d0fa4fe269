/**
 * Model stores. `ModelStoreBackend` is what the rest of Scoreline needs from one (resolve a reference,
 * load by pin, list, show, register, move aliases, alias history); `LocalModelStore` keeps it in a
 * directory:
 *
 *   <root>/<name>/<version>/model.onnx             immutable once registered
 *   <root>/<name>/<version>/scoreline.model.yaml   manifest: inputs, outputs, sha256, registered_by/at
 *   <root>/<name>/aliases.yaml                     champion: "3"   (replaced by rename)
 *   <root>/<name>/alias-history.jsonl              one JSON line per alias move (append-only)
 *
 * A run resolves an alias once, at plan time, to an exact version and sha256; scoring loads by that pin
 * and refuses a file whose hash changed. docs/models.md describes the layout and how an object store
 * would implement the same interface.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { parseDocument, stringify } from 'yaml';
import { MODEL_REF_PATTERN, NAME_PATTERN } from '../config/pipeline';
import { ModelError } from '../errors';
import type { PinnedModel } from '../types';
import { inferManifest } from './infer';
import { withModelLock } from './lock';
import { manifestSchema, type InputSpec, type ModelManifest, type OutputSpec } from './manifest';

export const MANIFEST_FILE = 'scoreline.model.yaml';
export const MODEL_FILE = 'model.onnx';
export const ALIASES_FILE = 'aliases.yaml';
export const HISTORY_FILE = 'alias-history.jsonl';
export const DEFAULT_ALIAS = 'champion';
const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ALIAS_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

export interface ModelRef {
  name: string;
  alias?: string;
  version?: string;
}

export function parseModelRef(ref: string): ModelRef {
  if (!MODEL_REF_PATTERN.test(ref)) {
    throw new ModelError(`model "${ref}": expected name@alias, name:version or name (e.g. churn@champion, churn:3)`);
  }
  const at = ref.indexOf('@');
  if (at > 0) return { name: ref.slice(0, at), alias: ref.slice(at + 1) };
  const colon = ref.indexOf(':');
  if (colon > 0) return { name: ref.slice(0, colon), version: ref.slice(colon + 1) };
  return { name: ref, alias: DEFAULT_ALIAS };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Who registers or promotes: `SCORELINE_USER`, else the OS user. */
export function currentUser(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SCORELINE_USER) return env.SCORELINE_USER;
  try {
    return userInfo().username || 'unknown';
  } catch {
    return env.USER ?? env.USERNAME ?? 'unknown';
  }
}

export interface LoadedModel {
  pin: PinnedModel;
  manifest: ModelManifest;
  modelPath: string;
}

/** One line of `alias-history.jsonl`. `from` is null when the alias was first set. */
export interface AliasEvent {
  time: string;
  alias: string;
  from: string | null;
  to: string;
  by: string;
  action: 'set' | 'promote' | 'rollback';
}

export interface ModelSummary {
  name: string;
  versions: string[];
  aliases: Record<string, string>;
}

export interface ModelDetails {
  model: LoadedModel;
  /** Aliases pointing at this version. */
  aliases: string[];
  /** Every alias of the model. */
  allAliases: Record<string, string>;
  registeredBy: string | null;
  registeredAt: string | null;
  /** The model's alias history, oldest first. */
  history: AliasEvent[];
}

/** A manifest without the fields the store fills in (name, version, sha256, registered_*). */
export type ManifestDraft = Omit<ModelManifest, 'name' | 'version' | 'sha256'> & Partial<Pick<ModelManifest, 'name' | 'version' | 'sha256'>>;

export interface RegisterOptions {
  /** The ONNX file to copy into the store. */
  modelPath: string;
  name: string;
  /** Default: the next integer after the highest integer version. */
  version?: string;
  /** Default: guessed from the model's inputs and outputs (`inferred` in the result says what was guessed). */
  manifest?: ManifestDraft;
  /** Default: currentUser(). */
  by?: string;
  /** Validate and return what would be registered, without writing anything. */
  dryRun?: boolean;
}

export interface Registration {
  /** The stored version (for a dry run: what would be stored, with the source file as modelPath). */
  model: LoadedModel;
  /** Set when the manifest was guessed: one line per guess, to show the user. */
  inferred?: string[];
}

export interface AliasOptions {
  alias?: string;
  by?: string;
}

export interface AliasChange {
  name: string;
  alias: string;
  from: string | null;
  to: string;
  /** False when the alias already pointed there (nothing written). */
  changed: boolean;
  event?: AliasEvent;
}

/**
 * What a model store provides. Versions are immutable and identified by (name, version, sha256);
 * aliases are the only mutable state, and every move of one is recorded in its history.
 */
export interface ModelStoreBackend {
  /** Where the store lives (a directory, or e.g. `s3://bucket/prefix`); recorded in every pin. */
  readonly root: string;
  /** `name@alias` / `name:version` / `name` → an exact version, its manifest and a verified sha256. */
  resolve(ref: string): Promise<LoadedModel>;
  /** An exact version; with `expectedSha256`, refuses bytes other than the pinned ones. */
  load(name: string, version: string, expectedSha256?: string): Promise<LoadedModel>;
  loadPinned(pin: Pick<PinnedModel, 'name' | 'version' | 'sha256'>): Promise<LoadedModel>;
  list(): Promise<ModelSummary[]>;
  show(ref: string): Promise<ModelDetails>;
  register(opts: RegisterOptions): Promise<Registration>;
  aliases(name: string): Promise<Record<string, string>>;
  setAlias(name: string, alias: string, version: string, opts?: { by?: string }): Promise<AliasChange>;
  promote(name: string, version: string, opts?: AliasOptions): Promise<AliasChange>;
  rollback(name: string, opts?: AliasOptions): Promise<AliasChange>;
  history(name: string, alias?: string): Promise<AliasEvent[]>;
}

export class LocalModelStore implements ModelStoreBackend {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  versionDir(name: string, version: string): string {
    return join(this.root, name, version);
  }

  private modelDir(name: string): string {
    if (!NAME_PATTERN.test(name)) throw new ModelError(`model name "${name}": lower-case letters, digits, - and _, starting with a letter`);
    return join(this.root, name);
  }

  /** Resolve `name@alias` / `name:version` to an exact version and verify the file's hash. */
  async resolve(ref: string): Promise<LoadedModel> {
    const parsed = parseModelRef(ref);
    const modelDir = join(this.root, parsed.name);
    if (!existsSync(modelDir)) {
      const known = await this.listNames();
      throw new ModelError(`model "${parsed.name}" not found in model store ${this.root}` + (known.length ? ` (known: ${known.join(', ')})` : ' (store is empty)'));
    }
    let version = parsed.version;
    if (version === undefined) {
      const aliases = this.readAliases(parsed.name);
      version = aliases[parsed.alias!];
      if (version === undefined) {
        throw new ModelError(`model "${parsed.name}": alias "${parsed.alias}" is not set (aliases: ${Object.keys(aliases).join(', ') || 'none'}); set it with: scoreline models promote ${parsed.name} VERSION --alias ${parsed.alias}`);
      }
    }
    const loaded = await this.load(parsed.name, version);
    return { ...loaded, pin: { ...loaded.pin, ref } };
  }

  /** Load an exact version; `expectedSha256` pins it (a run must score with the model it planned with). */
  async load(name: string, version: string, expectedSha256?: string): Promise<LoadedModel> {
    if (!VERSION_PATTERN.test(version)) throw new ModelError(`model "${name}": invalid version "${version}"`);
    const dir = this.versionDir(name, version);
    const modelPath = join(dir, MODEL_FILE);
    const manifestPath = join(dir, MANIFEST_FILE);
    if (!existsSync(dir)) {
      const versions = await this.listVersions(name);
      throw new ModelError(`model ${name}:${version} not found (no directory ${dir}; versions: ${versions.join(', ') || 'none'})`);
    }
    if (!existsSync(modelPath)) throw new ModelError(`model ${name}:${version}: missing ${modelPath}`);
    const manifest = readManifest(manifestPath);
    if (manifest.name !== name || manifest.version !== version) {
      throw new ModelError(`${manifestPath}: declares ${manifest.name}:${manifest.version} but lives in ${name}/${version}/`);
    }
    const actual = await sha256File(modelPath);
    if (actual !== manifest.sha256) {
      throw new ModelError(`model ${name}:${version}: sha256 mismatch: ${MODEL_FILE} hashes to ${actual} but the manifest says ${manifest.sha256} (file changed after registration?)`);
    }
    if (expectedSha256 !== undefined && actual !== expectedSha256) {
      throw new ModelError(`model ${name}:${version}: sha256 is ${actual} but the run was planned with ${expectedSha256}; the model changed during the run`);
    }
    return { pin: { name, version, sha256: actual, ref: `${name}:${version}`, store: this.root }, manifest, modelPath };
  }

  loadPinned(pin: Pick<PinnedModel, 'name' | 'version' | 'sha256'>): Promise<LoadedModel> {
    return this.load(pin.name, pin.version, pin.sha256);
  }

  /** The aliases as `aliases.yaml` has them now (sync: the NRT path checks them per request). */
  readAliases(name: string): Record<string, string> {
    const path = join(this.root, name, ALIASES_FILE);
    if (!existsSync(path)) return {};
    const doc = parseDocument(readFileSync(path, 'utf8'));
    if (doc.errors.length) throw new ModelError(`${path}: invalid YAML: ${doc.errors[0].message}`);
    const raw = (doc.toJS() ?? {}) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
  }

  async aliases(name: string): Promise<Record<string, string>> {
    return this.readAliases(name);
  }

  /** Point an alias at a version (`models alias`); recorded in the history as `set`. */
  setAlias(name: string, alias: string, version: string, opts: { by?: string } = {}): Promise<AliasChange> {
    return this.moveAlias(name, alias, version, 'set', opts.by);
  }

  /** Point an alias (default champion) at a version; recorded as `promote`. Runs already planned keep their pin. */
  promote(name: string, version: string, opts: AliasOptions = {}): Promise<AliasChange> {
    return this.moveAlias(name, opts.alias ?? DEFAULT_ALIAS, version, 'promote', opts.by);
  }

  /**
   * Move an alias back to where it pointed before its latest set/promote that has not been rolled back
   * already: promote 1→2, promote 2→3, rollback (→2), rollback (→1). Refuses when there is no earlier
   * target, or when aliases.yaml no longer says what the history's last change set (edited by hand).
   */
  async rollback(name: string, opts: AliasOptions = {}): Promise<AliasChange> {
    const alias = opts.alias ?? DEFAULT_ALIAS;
    const dir = this.modelDir(name);
    if (!existsSync(dir)) throw new ModelError(`model "${name}" not found in model store ${this.root}`);
    return withModelLock(dir, async () => {
      const undoable = undoStack(await this.history(name, alias));
      const last = undoable.at(-1);
      const current = this.readAliases(name)[alias];
      if (!last) {
        throw new ModelError(`cannot roll back ${name}@${alias}: no alias history to roll back to` + (current ? ` (it points at ${current}, set before history was kept or already rolled back to its first target)` : ' (the alias is not set)'));
      }
      if (current !== last.to) {
        throw new ModelError(`cannot roll back ${name}@${alias}: ${ALIASES_FILE} says ${current ?? '(unset)'} but the history's last change set ${last.to} (edited by hand?); promote the version you want instead`);
      }
      if (last.from === null) {
        throw new ModelError(`cannot roll back ${name}@${alias}: there is no previous target (it was first set to ${last.to} at ${last.time} by ${last.by})`);
      }
      await this.load(name, last.from); // the previous version must still be intact
      return this.writeAlias(name, alias, last.from, 'rollback', opts.by);
    });
  }

  /** The model's alias history (optionally one alias), oldest first. */
  async history(name: string, alias?: string): Promise<AliasEvent[]> {
    const path = join(this.root, name, HISTORY_FILE);
    if (!existsSync(path)) return [];
    const events: AliasEvent[] = [];
    for (const line of (await fs.readFile(path, 'utf8')).split('\n')) {
      if (!line.trim()) continue;
      let event: AliasEvent;
      try {
        event = JSON.parse(line) as AliasEvent;
      } catch {
        continue; // a line torn by a crash mid-append; the consistency check in rollback covers it
      }
      if (alias === undefined || event.alias === alias) events.push(event);
    }
    return events;
  }

  private async moveAlias(name: string, alias: string, version: string, action: AliasEvent['action'], by?: string): Promise<AliasChange> {
    if (!ALIAS_PATTERN.test(alias)) throw new ModelError(`alias "${alias}": letters, digits, - and _ only, starting with a letter`);
    const dir = this.modelDir(name);
    await this.load(name, version); // refuse to point an alias at a missing or broken version
    return withModelLock(dir, () => this.writeAlias(name, alias, version, action, by));
  }

  /** Under the model's lock: aliases.yaml replaced by rename first, then the history line appended. */
  private async writeAlias(name: string, alias: string, version: string, action: AliasEvent['action'], by?: string): Promise<AliasChange> {
    const aliases = this.readAliases(name);
    const from = aliases[alias] ?? null;
    if (from === version) return { name, alias, from, to: version, changed: false };
    await writeFileAtomic(join(this.root, name, ALIASES_FILE), stringify({ ...aliases, [alias]: version }));
    const event: AliasEvent = { time: new Date().toISOString(), alias, from, to: version, by: by ?? currentUser(), action };
    await appendLine(join(this.root, name, HISTORY_FILE), JSON.stringify(event));
    return { name, alias, from, to: version, changed: true, event };
  }

  async listNames(): Promise<string[]> {
    if (!existsSync(this.root)) return [];
    const entries = await fs.readdir(this.root, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
  }

  async listVersions(name: string): Promise<string[]> {
    const dir = join(this.root, name);
    if (!existsSync(dir)) return [];
    const entries = await fs.readdir(dir, { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory() && !e.name.startsWith('.') && existsSync(join(dir, e.name, MANIFEST_FILE)))
      .map((e) => e.name)
      .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  }

  async list(): Promise<ModelSummary[]> {
    const out: ModelSummary[] = [];
    for (const name of await this.listNames()) out.push({ name, versions: await this.listVersions(name), aliases: this.readAliases(name) });
    return out;
  }

  async show(ref: string): Promise<ModelDetails> {
    const model = await this.resolve(ref);
    const allAliases = this.readAliases(model.pin.name);
    return {
      model,
      aliases: Object.entries(allAliases).filter(([, v]) => v === model.pin.version).map(([a]) => a),
      allAliases,
      registeredBy: model.manifest.registered_by ?? null,
      registeredAt: model.manifest.registered_at ?? null,
      history: await this.history(model.pin.name),
    };
  }

  /**
   * Copy an ONNX file into the store as a new, immutable version, after checking it with a real ONNX
   * Runtime session against its manifest (given, or guessed from the model). Nothing is written unless
   * the check passes; the version appears all at once (temp directory renamed into place, under the
   * model's lock) and an existing version is never overwritten.
   */
  async register(opts: RegisterOptions): Promise<Registration> {
    const dir = this.modelDir(opts.name);
    if (opts.version !== undefined && !VERSION_PATTERN.test(opts.version)) {
      throw new ModelError(`invalid version "${opts.version}": letters, digits, ., - and _, starting with a letter or digit`);
    }
    const source = resolve(opts.modelPath);
    const st = statSync(source, { throwIfNoEntry: false });
    if (!st?.isFile()) throw new ModelError(`${source}: no such file`);
    const bytes = await fs.readFile(source);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const checked = await checkCandidate(bytes, source, opts.manifest);
    // The stored manifest must read back (a programmatic draft skipped readManifestDraft's schema check).
    const parsed = manifestSchema.safeParse({ ...checked.manifest, name: opts.name, version: opts.version ?? '1', sha256 });
    if (!parsed.success) {
      throw new ModelError(`manifest for ${source}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')}; nothing was registered`);
    }
    const by = opts.by ?? currentUser();
    const finish = (version: string): ModelManifest => ({
      ...checked.manifest,
      name: opts.name,
      version,
      sha256,
      registered_by: by,
      registered_at: new Date().toISOString(),
    });
    if (opts.dryRun) {
      const version = opts.version ?? nextVersion(await this.listVersions(opts.name));
      const manifest = finish(version);
      return { model: { pin: { name: opts.name, version, sha256, ref: `${opts.name}:${version}`, store: this.root }, manifest, modelPath: source }, inferred: checked.inferred };
    }
    const version = await withModelLock(dir, async () => {
      const version = opts.version ?? nextVersion(await this.listVersions(opts.name));
      const target = this.versionDir(opts.name, version);
      if (existsSync(target)) throw new ModelError(`model ${opts.name}:${version} already exists; versions are immutable, register a new one`);
      const tmp = join(dir, `.tmp-register-${process.pid}-${randomBytes(4).toString('hex')}`);
      try {
        await fs.mkdir(tmp, { recursive: true });
        await fs.writeFile(join(tmp, MODEL_FILE), bytes); // the bytes that were hashed and checked
        await fs.writeFile(join(tmp, MANIFEST_FILE), stringify(finish(version)));
        await fs.rename(tmp, target); // fails if the target exists (another writer that ignored the lock)
      } catch (err) {
        await fs.rm(tmp, { recursive: true, force: true });
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new ModelError(`model ${opts.name}:${version} already exists; versions are immutable, register a new one`);
        throw err;
      }
      return version;
    });
    return { model: await this.load(opts.name, version, sha256), inferred: checked.inferred };
  }

  /** The former `models add`: register with a given manifest. */
  async add(opts: { modelPath: string; manifest: ManifestDraft; name: string; version?: string }): Promise<LoadedModel> {
    return (await this.register(opts)).model;
  }
}

/**
 * The local store under the name the rest of the code base uses (`new ModelStore(dir)`); other stores
 * implement ModelStoreBackend.
 */
export const ModelStore = LocalModelStore;
export type ModelStore = LocalModelStore;

function nextVersion(versions: string[]): string {
  return String(versions.reduce((max, v) => Math.max(max, /^\d+$/.test(v) ? Number(v) : 0), 0) + 1);
}

/** The events a rollback can still undo, in order: each rollback cancels the latest set/promote before it. */
function undoStack(events: AliasEvent[]): AliasEvent[] {
  const stack: AliasEvent[] = [];
  for (const e of events) {
    if (e.action === 'rollback') stack.pop();
    else stack.push(e);
  }
  return stack;
}

/**
 * Open the candidate with ONNX Runtime and check the manifest (or a guessed one) against its real
 * inputs and outputs: names, dtypes, widths = feature counts, tensor vs non-tensor outputs.
 */
async function checkCandidate(bytes: Buffer, source: string, draft?: ManifestDraft): Promise<{ manifest: Pick<ModelManifest, 'inputs' | 'outputs'> & Partial<ModelManifest>; inferred?: string[] }> {
  // ONNX Runtime and the session code load only when a model is registered, not with every store.
  const { InferenceSession } = await import('onnxruntime-node');
  const { validateManifest } = await import('../scoring/session.js');
  let session: ort.InferenceSession;
  try {
    session = await InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  } catch (err) {
    throw new ModelError(`${source} is not a model ONNX Runtime can load, so nothing was registered: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    let manifest: Pick<ModelManifest, 'inputs' | 'outputs'> & Partial<ModelManifest>;
    let inferred: string[] | undefined;
    if (draft) {
      manifest = draft;
    } else {
      const guess = inferManifest(session.inputMetadata, session.outputMetadata);
      manifest = { inputs: guess.inputs as InputSpec[], outputs: guess.outputs as OutputSpec[] };
      inferred = guess.notes;
    }
    try {
      validateManifest(manifest as ModelManifest, session, source);
    } catch (err) {
      throw new ModelError(`${(err as Error).message}\nnothing was registered`);
    }
    return { manifest, inferred };
  } finally {
    await session.release();
  }
}

export function readManifest(path: string): ModelManifest {
  if (!existsSync(path)) throw new ModelError(`missing model manifest ${path}`);
  const doc = parseDocument(readFileSync(path, 'utf8'));
  if (doc.errors.length) throw new ModelError(`${path}: invalid YAML: ${doc.errors[0].message}`);
  const parsed = manifestSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${path}: ${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new ModelError(lines.join('\n'));
  }
  return parsed.data;
}

/**
 * A manifest to register with: like readManifest, but name, version and sha256 may be left out (the
 * store fills them in) — so a guessed manifest printed by `register --dry-run` can be edited and passed back.
 */
export function readManifestDraft(path: string): ManifestDraft {
  if (!existsSync(path)) throw new ModelError(`missing model manifest ${path}`);
  const doc = parseDocument(readFileSync(path, 'utf8'));
  if (doc.errors.length) throw new ModelError(`${path}: invalid YAML: ${doc.errors[0].message}`);
  const raw = { name: 'x', version: '0', sha256: '0'.repeat(64), ...((doc.toJS() ?? {}) as Record<string, unknown>) };
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${path}: ${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new ModelError(lines.join('\n'));
  }
  const { name: _n, version: _v, sha256: _s, registered_by: _b, registered_at: _a, ...rest } = parsed.data;
  return rest;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await fs.writeFile(tmp, data);
  await fs.rename(tmp, path);
}

/** One line, in one write; a line torn by an earlier crash is closed off first so it cannot swallow this one. */
async function appendLine(path: string, line: string): Promise<void> {
  let prefix = '';
  const st = statSync(path, { throwIfNoEntry: false });
  if (st && st.size > 0) {
    const handle = await fs.open(path, 'r');
    try {
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, st.size - 1);
      if (last[0] !== 0x0a) prefix = '\n';
    } finally {
      await handle.close();
    }
  }
  await fs.appendFile(path, `${prefix}${line}\n`);
}
