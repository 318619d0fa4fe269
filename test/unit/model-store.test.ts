/**
 * The local model store on real ONNX models: registration checked with a real ONNX Runtime session
 * (lying manifests and non-ONNX files refused, nothing written), guessed manifests, immutable versions,
 * promote / rollback / alias history, and concurrent promotions that must not lose an update.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors';
import { withModelLock } from '../../src/models/lock';
import { HISTORY_FILE, LocalModelStore, ModelStore, readManifest, readManifestDraft, type AliasEvent } from '../../src/models/store';
import { cleanup, DEMO_MODELS, FIXTURE_MODELS, tempProject } from '../helpers/project';

const GBT = join(DEMO_MODELS, 'churn-gbt', '1');
const MLP = join(DEMO_MODELS, 'churn-mlp', '1');
const DOUBLE = join(FIXTURE_MODELS, 'double-input', '1');

let dir: string;
let store: LocalModelStore;

beforeEach(() => {
  dir = tempProject('scoreline-store-');
  store = new LocalModelStore(join(dir, 'models'));
});
afterEach(() => cleanup(dir));

const manifestOf = (versionDir: string) => readManifestDraft(join(versionDir, 'scoreline.model.yaml'));
const storeEntries = () => (existsSync(store.root) ? readdirSync(store.root, { recursive: true }).map(String) : []);

describe('register', () => {
  it('copies the model, fills in name, version, sha256, who and when, and numbers versions 1, 2, …', async () => {
    const first = await store.register({ modelPath: join(GBT, 'model.onnx'), name: 'churn', manifest: manifestOf(GBT), by: 'alice' });
    const second = await store.register({ modelPath: join(MLP, 'model.onnx'), name: 'churn', manifest: manifestOf(MLP), by: 'bob' });
    expect([first.model.pin.version, second.model.pin.version]).toEqual(['1', '2']);
    expect(first.inferred).toBeUndefined();
    const stored = readManifest(join(store.root, 'churn', '2', 'scoreline.model.yaml'));
    expect(stored).toMatchObject({ name: 'churn', version: '2', sha256: readManifest(join(MLP, 'scoreline.model.yaml')).sha256, registered_by: 'bob' });
    expect(Date.now() - Date.parse(stored.registered_at!)).toBeLessThan(60_000);
    expect(readFileSync(join(store.root, 'churn', '2', 'model.onnx'))).toEqual(readFileSync(join(MLP, 'model.onnx')));
    // Explicit versions; the next default is one past the highest integer.
    await store.register({ modelPath: join(MLP, 'model.onnx'), name: 'churn', version: '7', manifest: manifestOf(MLP) });
    expect((await store.register({ modelPath: join(MLP, 'model.onnx'), name: 'churn', manifest: manifestOf(MLP) })).model.pin.version).toBe('8');
    expect(await store.listVersions('churn')).toEqual(['1', '2', '7', '8']);
  });

  it('takes the user from SCORELINE_USER by default', async () => {
    const before = process.env.SCORELINE_USER;
    process.env.SCORELINE_USER = 'carol@example.com';
    try {
      const r = await store.register({ modelPath: join(DOUBLE, 'model.onnx'), name: 'dbl', manifest: manifestOf(DOUBLE) });
      expect(r.model.manifest.registered_by).toBe('carol@example.com');
    } finally {
      if (before === undefined) delete process.env.SCORELINE_USER;
      else process.env.SCORELINE_USER = before;
    }
  });

  it('refuses to overwrite an existing version', async () => {
    await store.register({ modelPath: join(GBT, 'model.onnx'), name: 'churn', version: '1', manifest: manifestOf(GBT) });
    await expect(store.register({ modelPath: join(MLP, 'model.onnx'), name: 'churn', version: '1', manifest: manifestOf(MLP) })).rejects.toThrow(
      'model churn:1 already exists; versions are immutable, register a new one',
    );
    expect(readManifest(join(store.root, 'churn', '1', 'scoreline.model.yaml')).sha256).toBe(readManifest(join(GBT, 'scoreline.model.yaml')).sha256);
  });

  it('rejects a manifest that lies about the feature count, naming input and counts, and writes nothing', async () => {
    const lying = { ...manifestOf(DOUBLE), inputs: [{ name: 'x', dtype: 'float64' as const, shape: [-1, 3] as [-1, number], columns: ['a', 'b', 'c'] }] };
    const attempt = store.register({ modelPath: join(DOUBLE, 'model.onnx'), name: 'dbl', manifest: lying });
    await expect(attempt).rejects.toThrow(ModelError);
    await expect(attempt).rejects.toThrow(/manifest does not match the model:\n {2}- input "x" takes 2 features but the manifest maps 3 columns\nnothing was registered/);
    // Wrong input name and a non-tensor output are refused too.
    const zipmap = join(FIXTURE_MODELS, 'zipmap-clf', '1');
    const bad = { ...manifestOf(zipmap), outputs: [{ tensor: 'output_probability', column: 'p', dtype: 'float32' as const }] };
    await expect(store.register({ modelPath: join(zipmap, 'model.onnx'), name: 'zm', manifest: bad })).rejects.toThrow(/output "output_probability" is not a tensor/);
    // A draft that would not read back (3 columns for a width of 2) never reaches the store either.
    const inconsistent = { ...manifestOf(DOUBLE), inputs: [{ name: 'x', dtype: 'float64' as const, shape: [-1, 2] as [-1, number], columns: ['a', 'b', 'c'] }] };
    await expect(store.register({ modelPath: join(DOUBLE, 'model.onnx'), name: 'dbl', manifest: inconsistent })).rejects.toThrow(/inputs\.0\.columns: 3 columns listed but shape \[-1, 2\] takes 2; nothing was registered/);
    expect(storeEntries()).toEqual([]);
  });

  it('rejects a file that is not an ONNX model, and writes nothing', async () => {
    const notOnnx = join(dir, 'model.onnx');
    writeFileSync(notOnnx, 'id,score\n1,0.5\n');
    await expect(store.register({ modelPath: notOnnx, name: 'csv', manifest: manifestOf(DOUBLE) })).rejects.toThrow(
      new RegExp(`${notOnnx} is not a model ONNX Runtime can load, so nothing was registered: .+`),
    );
    await expect(store.register({ modelPath: join(dir, 'missing.onnx'), name: 'csv' })).rejects.toThrow(/missing\.onnx: no such file/);
    expect(storeEntries()).toEqual([]);
  });

  it('without a manifest, guesses one from the model, says what it guessed, and the guess scores', async () => {
    const r = await store.register({ modelPath: join(GBT, 'model.onnx'), name: 'churn' });
    expect(r.model.manifest.inputs).toEqual([{ name: 'features', dtype: 'float32', shape: [-1, 32], columns: readManifest(join(GBT, 'scoreline.model.yaml')).inputs[0].columns }]);
    expect(r.model.manifest.outputs).toEqual([
      { tensor: 'label', column: 'label', dtype: 'int64' },
      { tensor: 'probabilities', index: 1, column: 'probabilities_1', dtype: 'float32' },
    ]);
    expect(r.inferred!.join('\n')).toMatch(/input "features" \[N, 32\] ← columns f00 … f31 \(GUESSED/);
    // The per-feature fixture: one column per [N, 1] input, named after it.
    const pf = await store.register({ modelPath: join(FIXTURE_MODELS, 'per-feature', '1', 'model.onnx'), name: 'pf' });
    expect(pf.model.manifest.inputs.map((i) => i.columns)).toEqual([['age'], ['tenure'], ['spend']]);
    // A dry run checks and returns the manifest without writing anything.
    const dry = await store.register({ modelPath: join(DOUBLE, 'model.onnx'), name: 'dbl', dryRun: true });
    expect(dry.model.manifest.inputs[0].columns).toEqual(['f0', 'f1']);
    expect(existsSync(join(store.root, 'dbl'))).toBe(false);
  });

  it('`new ModelStore(dir)` and `add` keep working', async () => {
    const legacy = new ModelStore(store.root);
    const loaded = await legacy.add({ modelPath: join(GBT, 'model.onnx'), manifest: readManifest(join(GBT, 'scoreline.model.yaml')), name: 'churn' });
    expect(loaded.pin).toMatchObject({ name: 'churn', version: '1', store: store.root });
  });
});

describe('aliases', () => {
  beforeEach(async () => {
    for (const from of [GBT, MLP, GBT]) await store.register({ modelPath: join(from, 'model.onnx'), name: 'churn', manifest: manifestOf(from) });
  });

  it('promote moves champion (by default) and records time, alias, from, to, by, action', async () => {
    const first = await store.promote('churn', '1', { by: 'alice' });
    expect(first).toMatchObject({ alias: 'champion', from: null, to: '1', changed: true });
    const second = await store.promote('churn', '2', { by: 'bob' });
    expect(second).toMatchObject({ from: '1', to: '2' });
    expect((await store.resolve('churn@champion')).pin.version).toBe('2');
    expect((await store.resolve('churn')).pin.version).toBe('2');
    const again = await store.promote('churn', '2');
    expect(again.changed).toBe(false);
    const history = await store.history('churn');
    expect(history.map((e) => [e.alias, e.from, e.to, e.by, e.action])).toEqual([
      ['champion', null, '1', 'alice', 'promote'],
      ['champion', '1', '2', 'bob', 'promote'],
    ]);
    expect(Date.parse(history[1].time)).toBeGreaterThanOrEqual(Date.parse(history[0].time));
    // Append-only JSON lines on disk.
    const lines = readFileSync(join(store.root, 'churn', HISTORY_FILE), 'utf8').trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as AliasEvent).to)).toEqual(['1', '2']);
  });

  it('promote refuses a missing version or a bad alias name', async () => {
    await expect(store.promote('churn', '9')).rejects.toThrow(/model churn:9 not found .*versions: 1, 2, 3/);
    await expect(store.promote('churn', '1', { alias: 'no spaces' })).rejects.toThrow(/alias "no spaces": letters, digits/);
    await expect(store.promote('nope', '1')).rejects.toThrow(/nope:1 not found/);
  });

  it('rollback walks back through the promotions, then says there is nothing earlier', async () => {
    await store.promote('churn', '1');
    await store.promote('churn', '2');
    await store.promote('churn', '3');
    await store.promote('churn', '1', { alias: 'challenger' }); // other aliases are independent
    expect(await store.rollback('churn')).toMatchObject({ from: '3', to: '2', changed: true });
    expect(store.readAliases('churn')).toEqual({ champion: '2', challenger: '1' });
    expect(await store.rollback('churn')).toMatchObject({ from: '2', to: '1' });
    await expect(store.rollback('churn')).rejects.toThrow('cannot roll back churn@champion: there is no previous target (it was first set to 1 at');
    // A promotion after a rollback is undone by the next rollback.
    await store.promote('churn', '3');
    expect(await store.rollback('churn')).toMatchObject({ from: '3', to: '1' });
    expect((await store.history('churn', 'champion')).map((e) => `${e.action}:${e.from}->${e.to}`)).toEqual([
      'promote:null->1',
      'promote:1->2',
      'promote:2->3',
      'rollback:3->2',
      'rollback:2->1',
      'promote:1->3',
      'rollback:3->1',
    ]);
    expect(await store.rollback('churn', { alias: 'challenger' }).catch((e: Error) => e.message)).toMatch(/no previous target/);
  });

  it('rollback without history, or against a hand-edited aliases.yaml, is a clear error', async () => {
    writeFileSync(join(store.root, 'churn', 'aliases.yaml'), 'champion: "2"\n');
    await expect(store.rollback('churn')).rejects.toThrow(/cannot roll back churn@champion: no alias history to roll back to \(it points at 2/);
    await store.promote('churn', '1');
    await store.promote('churn', '3');
    writeFileSync(join(store.root, 'churn', 'aliases.yaml'), 'champion: "2"\n');
    await expect(store.rollback('churn')).rejects.toThrow(/aliases\.yaml says 2 but the history's last change set 3 \(edited by hand\?\)/);
  });

  it('show: aliases pointing at the version, who registered it, the history', async () => {
    await store.promote('churn', '2', { by: 'dana' });
    const d = await store.show('churn@champion');
    expect(d).toMatchObject({ aliases: ['champion'], allAliases: { champion: '2' }, registeredBy: expect.any(String) });
    expect(d.model.pin.version).toBe('2');
    expect(d.history).toHaveLength(1);
    expect(await store.list()).toEqual([{ name: 'churn', versions: ['1', '2', '3'], aliases: { champion: '2' } }]);
  });

  it('concurrent promotions serialise on the lock: no update is lost, every history line is whole', async () => {
    const aliases = Array.from({ length: 12 }, (_, i) => `a${i}`);
    // Two stores on the same directory, like two CLI processes.
    const other = new LocalModelStore(store.root);
    await Promise.all(aliases.map((alias, i) => (i % 2 ? store : other).promote('churn', String((i % 3) + 1), { alias })));
    expect(store.readAliases('churn')).toEqual(Object.fromEntries(aliases.map((a, i) => [a, String((i % 3) + 1)])));
    const lines = readFileSync(join(store.root, 'churn', HISTORY_FILE), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(12);
    expect(new Set(lines.map((l) => (JSON.parse(l) as AliasEvent).alias))).toEqual(new Set(aliases));
    expect(existsSync(join(store.root, 'churn', '.lock'))).toBe(false);
  });

  it('a lock left by a crashed process is taken over once stale; a live one times out with a clear error', async () => {
    const modelDir = join(store.root, 'churn');
    writeFileSync(join(modelDir, '.lock'), '12345@elsewhere\n');
    await expect(withModelLock(modelDir, async () => 'x', { timeoutMs: 100 })).rejects.toThrow(/is locked by 12345@elsewhere .*delete the lock file/);
    expect(await withModelLock(modelDir, async () => 'taken', { staleMs: 0 })).toBe('taken');
  });
});
