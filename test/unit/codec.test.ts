/**
 * The AES-256-GCM payload codec (src/security/codec.ts) on its own: key parsing, round trip, rotation,
 * unknown key ids, tampering, the wire format, and the codec endpoint's settings.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { codecRoutes, parseCodecAuth, parseCorsOrigins } from '../../src/api/codec';
import { packageRoot } from '../../src/paths';
import { AesGcmCodec, codecFromEnv, ENCODING_ENCRYPTED, parseCodecKeys } from '../../src/security/codec';

const KEY_A = randomBytes(32).toString('base64');
const KEY_B = randomBytes(32).toString('base64');
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString('utf8');

describe('SCORELINE_CODEC_KEYS', () => {
  it('parses id:base64key pairs, first one encrypting; unset or empty is no codec', () => {
    const keys = parseCodecKeys(` b-2026:${KEY_B} , a.2025:${KEY_A},`);
    expect(keys.map((k) => k.id)).toEqual(['b-2026', 'a.2025']);
    expect(keys[0].key).toHaveLength(32);
    expect(codecFromEnv({})).toBeUndefined();
    expect(codecFromEnv({ SCORELINE_CODEC_KEYS: ' ' })).toBeUndefined();
    expect(codecFromEnv({ SCORELINE_CODEC_KEYS: `a:${KEY_A}` })?.keyIds).toEqual(['a']);
  });

  it('refuses malformed entries without ever echoing key material', () => {
    const short = randomBytes(16).toString('base64');
    const cases: [string, RegExp][] = [
      [KEY_A, /entry 1 is not of the form id:base64key/],
      [`a:${KEY_A},:${KEY_B}`, /entry 2 is not of the form id:base64key/],
      [`a b:${KEY_A}`, /entry 1: key id must be/],
      [`a:${KEY_A},a:${KEY_B}`, /key id "a" is listed twice/],
      [`a:${short}`, /key "a" is 16 bytes; AES-256-GCM needs 32 \(make one with: openssl rand -base64 32\)/],
      ['a:not base64!', /key "a" is not base64/],
      [',', /no keys/],
    ];
    for (const [value, message] of cases) {
      let err: Error | undefined;
      try {
        parseCodecKeys(value);
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message, value).toMatch(message);
      expect(err!.message).toMatch(/^SCORELINE_CODEC_KEYS: /);
      for (const secret of [KEY_A, KEY_B, short]) expect(err!.message).not.toContain(secret);
    }
  });
});

describe('AesGcmCodec', () => {
  const codecA = new AesGcmCodec(parseCodecKeys(`a:${KEY_A}`));
  const payloads: Payload[] = [
    defaultPayloadConverter.toPayload({ email: 'alice@example.com', score: 0.25 }),
    defaultPayloadConverter.toPayload(new Uint8Array([1, 2, 3, 0, 255])),
    defaultPayloadConverter.toPayload(undefined),
  ];

  it('round-trips every payload (metadata and data) and leaves no plaintext in the encrypted form', async () => {
    const encoded = await codecA.encode(payloads);
    expect(encoded).toHaveLength(3);
    for (const p of encoded) {
      expect(text(p.metadata!.encoding)).toBe(ENCODING_ENCRYPTED);
      expect(text(p.metadata!['encryption-key-id'])).toBe('a');
      expect(Object.keys(p.metadata!)).toEqual(['encoding', 'encryption-key-id']);
    }
    expect(Buffer.from(encoded[0].data!).includes('alice@example.com')).toBe(false);
    expect(Buffer.from(encoded[0].data!).includes('json/plain')).toBe(false);
    // A random IV per payload: the same value never encrypts to the same bytes.
    const again = await codecA.encode(payloads.slice(0, 1));
    expect(Buffer.from(again[0].data!).equals(Buffer.from(encoded[0].data!))).toBe(false);
    const decoded = await codecA.decode(encoded);
    expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual([{ email: 'alice@example.com', score: 0.25 }, new Uint8Array([1, 2, 3, 0, 255]), undefined]);
    expect(text(decoded[1].metadata!.encoding)).toBe('binary/plain');
  });

  it('passes payloads that are not encrypted through decode unchanged (history from before the codec)', async () => {
    expect(await codecA.decode(payloads)).toEqual(payloads);
  });

  it('rotation: a codec with keys b,a encrypts with b and still decrypts what a encrypted; one with b only names the missing id', async () => {
    const old = await codecA.encode(payloads);
    const rotated = new AesGcmCodec(parseCodecKeys(`b:${KEY_B},a:${KEY_A}`));
    expect(rotated.keyId).toBe('b');
    expect((await rotated.decode(old)).map((p) => defaultPayloadConverter.fromPayload(p))[0]).toEqual({ email: 'alice@example.com', score: 0.25 });
    const fresh = await rotated.encode(payloads);
    expect(text(fresh[0].metadata!['encryption-key-id'])).toBe('b');
    await expect(codecA.decode(fresh)).rejects.toThrow(/payload encrypted with key id "b", which SCORELINE_CODEC_KEYS does not hold \(it holds "a"\): add key "b"/);
  });

  it('an altered payload, or a different key under the same id, is an error, not garbage', async () => {
    const [p] = await codecA.encode(payloads.slice(0, 1));
    const data = Buffer.from(p.data!);
    data[20] ^= 1;
    await expect(codecA.decode([{ ...p, data }])).rejects.toThrow(/key id "a" does not decrypt: it was altered, or the key listed as "a" is not the one/);
    const impostor = new AesGcmCodec(parseCodecKeys(`a:${KEY_B}`));
    await expect(impostor.decode([p])).rejects.toThrow(/does not decrypt/);
    await expect(codecA.decode([{ ...p, data: data.subarray(0, 10) }])).rejects.toThrow(/truncated/);
  });

  it('the failure converter the worker loads with the codec encodes messages into a payload', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { failureConverter } = require(join(packageRoot(), 'src', 'security', 'failure-converter.js'));
    const failure = failureConverter.errorToFailure(new Error('column "f05" row 3: value 1e40 is beyond float32 range'), defaultPayloadConverter);
    expect(failure.message).not.toContain('1e40');
    expect(text(failure.encodedAttributes.data)).toContain('1e40');
    expect(failureConverter.failureToError(failure, defaultPayloadConverter).message).toContain('1e40');
  });
});

describe('codec endpoint settings', () => {
  it('SCORELINE_CODEC_AUTH is token (default) or none', () => {
    expect(parseCodecAuth(undefined)).toBe('token');
    expect(parseCodecAuth(' None ')).toBe('none');
    expect(() => parseCodecAuth('off')).toThrow(/SCORELINE_CODEC_AUTH: "off" is not token or none/);
  });

  it('SCORELINE_CODEC_CORS_ORIGIN: a list of origins, the local Web UI by default', () => {
    expect(parseCorsOrigins(undefined)).toEqual(['http://localhost:8233', 'http://127.0.0.1:8233']);
    expect(parseCorsOrigins('https://ui.example.com/, http://localhost:9000')).toEqual(['https://ui.example.com', 'http://localhost:9000']);
    expect(() => parseCorsOrigins('*')).toThrow(/"\*" is not an origin/);
    expect(() => parseCorsOrigins('https://ui.example.com/path')).toThrow(/is not an origin/);
  });
});

describe('codec endpoint handler', () => {
  it('decodes a payload with no data (an activity that returns nothing: binary/null)', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`a:${KEY_A}`));
    const [encrypted] = await codec.encode([defaultPayloadConverter.toPayload(undefined)]);
    const wire = { metadata: Object.fromEntries(Object.entries(encrypted.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), data: Buffer.from(encrypted.data!).toString('base64') };
    const decode = codecRoutes({ codec, auth: 'none', corsOrigins: [] }).find((r) => String(r.path).endsWith('/decode'))!;
    const res = (await decode.handler({ body: { payloads: [wire] } } as never)) as { status: number; body: { payloads: { metadata: Record<string, string>; data: string }[] } };
    expect(res.status).toBe(200);
    expect(res.body.payloads).toEqual([{ metadata: { encoding: Buffer.from('binary/null').toString('base64') }, data: '' }]);
  });
});
