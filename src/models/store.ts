/**
 * Local model store: `<root>/<name>/<version>/{model.onnx, scoreline.model.yaml}` and
 * `<root>/<name>/aliases.yaml` (`champion: "3"`). A run resolves an alias once, at plan time, to an
 * exact version and sha256; scoring loads by that pin and refuses a file whose hash changed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, promises as fs, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { MODEL_REF_PATTERN } from '../config/pipeline';
import { ModelError } from '../errors';
import type { PinnedModel } from '../types';
import { manifestSchema, type ModelManifest } from './manifest';

export const MANIFEST_FILE = 'scoreline.model.yaml';
export const MODEL_FILE = 'model.onnx';
export const DEFAULT_ALIAS = 'champion';
const VERSION_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

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

export interface LoadedModel {
  pin: PinnedModel;
  manifest: ModelManifest;
  modelPath: string;
}

export class ModelStore {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  versionDir(name: string, version: string): string {
    return join(this.root, name, version);
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
        throw new ModelError(`model "${parsed.name}": alias "${parsed.alias}" is not set (aliases: ${Object.keys(aliases).join(', ') || 'none'}); set it with: scoreline models alias ${parsed.name} ${parsed.alias} VERSION`);
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
    if (!existsSync(dir)) throw new ModelError(`model ${name}:${version} not found (no directory ${dir})`);
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

  readAliases(name: string): Record<string, string> {
    const path = join(this.root, name, 'aliases.yaml');
    if (!existsSync(path)) return {};
    const doc = parseDocument(readFileSync(path, 'utf8'));
    if (doc.errors.length) throw new ModelError(`${path}: invalid YAML: ${doc.errors[0].message}`);
    const raw = (doc.toJS() ?? {}) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
  }

  async setAlias(name: string, alias: string, version: string): Promise<void> {
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(alias)) throw new ModelError(`alias "${alias}": letters, digits, - and _ only`);
    await this.load(name, version); // refuse to point an alias at a broken version
    const aliases = { ...this.readAliases(name), [alias]: version };
    await writeFileAtomic(join(this.root, name, 'aliases.yaml'), stringify(aliases));
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
      .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, MANIFEST_FILE)))
      .map((e) => e.name)
      .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  }

  /**
   * Copy a model and its manifest into the store as a new version. The manifest's name, version and
   * sha256 are rewritten to match; the caller validates it against a real session before calling.
   */
  async add(opts: { modelPath: string; manifest: ModelManifest; name: string; version?: string }): Promise<LoadedModel> {
    const versions = await this.listVersions(opts.name);
    const version = opts.version ?? String(versions.reduce((max, v) => Math.max(max, Number(v) || 0), 0) + 1);
    if (!VERSION_PATTERN.test(version)) throw new ModelError(`invalid version "${version}"`);
    const dir = this.versionDir(opts.name, version);
    if (existsSync(dir)) throw new ModelError(`model ${opts.name}:${version} already exists; versions are immutable, register a new one`);
    const sha256 = await sha256File(opts.modelPath);
    const manifest: ModelManifest = { ...opts.manifest, name: opts.name, version, sha256 };
    const tmp = `${dir}.tmp-${process.pid}`;
    await fs.mkdir(tmp, { recursive: true });
    await fs.copyFile(opts.modelPath, join(tmp, MODEL_FILE));
    await fs.writeFile(join(tmp, MANIFEST_FILE), stringify(manifest));
    await fs.rename(tmp, dir);
    return this.load(opts.name, version);
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

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await fs.writeFile(tmp, data);
  await fs.rename(tmp, path);
}
