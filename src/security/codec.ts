/**
 * The optional payload codec (docs/security.md): AES-256-GCM over every Temporal payload — workflow and
 * activity arguments and results, update arguments (the rows of a near-real-time request), query and
 * update results, memos, heartbeat details, schedule actions — so Temporal's history holds ciphertext.
 *
 * Keys come from one variable, `SCORELINE_CODEC_KEYS=id:base64key[,id:base64key…]`: the first key
 * encrypts, every listed key decrypts, so a key is rotated by putting the new one first and keeping the
 * old one listed until nothing encrypted with it is left. Each payload records the id of its key.
 *
 * Wire format (the same as Temporal's encryption samples in Go and Python, so their codec servers can
 * read it with the same keys): metadata `encoding: binary/encrypted`, `encryption-key-id: <id>`; data =
 * 12-byte random IV ‖ AES-256-GCM ciphertext of the original Payload protobuf (metadata and data) ‖
 * 16-byte tag. Runs on the worker's main thread and in clients, never inside the workflow sandbox.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { ConfigError } from '../errors';

/** The environment variables of the codec and of its HTTP endpoint (`scoreline api`). */
export const CODEC_ENV = {
  keys: 'SCORELINE_CODEC_KEYS',
  auth: 'SCORELINE_CODEC_AUTH',
  corsOrigin: 'SCORELINE_CODEC_CORS_ORIGIN',
} as const;

export const ENCODING_ENCRYPTED = 'binary/encrypted';
export const METADATA_ENCODING = 'encoding';
export const METADATA_KEY_ID = 'encryption-key-id';

const CIPHER = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;
const ProtoPayload = temporal.api.common.v1.Payload;

export interface CodecKey {
  id: string;
  key: Buffer;
}

/**
 * `id:base64key[,id:base64key…]` → keys, first = the encrypting one. Errors name the entry's position or
 * id, never its key material.
 */
export function parseCodecKeys(value: string, origin: string = CODEC_ENV.keys): CodecKey[] {
  const entries = value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (entries.length === 0) throw new ConfigError(`${origin}: no keys (expected id:base64key[,id:base64key…]; make one with: openssl rand -base64 32)`);
  const keys: CodecKey[] = [];
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':');
    if (colon <= 0) throw new ConfigError(`${origin}: entry ${i + 1} is not of the form id:base64key`);
    const id = entry.slice(0, colon).trim();
    const b64 = entry.slice(colon + 1).trim();
    if (!KEY_ID.test(id)) throw new ConfigError(`${origin}: entry ${i + 1}: key id must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
    if (keys.some((k) => k.id === id)) throw new ConfigError(`${origin}: key id "${id}" is listed twice`);
    if (!BASE64.test(b64)) throw new ConfigError(`${origin}: key "${id}" is not base64`);
    const key = Buffer.from(b64, 'base64');
    if (key.length !== KEY_BYTES) {
      throw new ConfigError(`${origin}: key "${id}" is ${key.length} bytes; AES-256-GCM needs ${KEY_BYTES} (make one with: openssl rand -base64 32)`);
    }
    keys.push({ id, key });
  });
  return keys;
}

/** AES-256-GCM payload codec; the first key encrypts, all of them decrypt. */
export class AesGcmCodec implements PayloadCodec {
  /** The id payloads are encrypted with now. */
  readonly keyId: string;
  /** Every id this codec decrypts, encrypting one first. */
  readonly keyIds: string[];
  private readonly keys: Map<string, Buffer>;

  constructor(keys: CodecKey[]) {
    if (keys.length === 0) throw new ConfigError('the payload codec needs at least one key');
    this.keys = new Map(keys.map((k) => [k.id, k.key]));
    this.keyIds = keys.map((k) => k.id);
    this.keyId = keys[0].id;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.encrypt(p));
  }

  /** Payloads that are not encrypted (written before the codec was enabled) pass through unchanged. */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.decrypt(p));
  }

  private encrypt(payload: Payload): Payload {
    const key = this.keys.get(this.keyId)!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(CIPHER, key, iv);
    const plain = ProtoPayload.encode(payload).finish();
    const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: { [METADATA_ENCODING]: Buffer.from(ENCODING_ENCRYPTED), [METADATA_KEY_ID]: Buffer.from(this.keyId) },
      data,
    };
  }

  private decrypt(payload: Payload): Payload {
    if (text(payload.metadata?.[METADATA_ENCODING]) !== ENCODING_ENCRYPTED) return payload;
    const id = text(payload.metadata?.[METADATA_KEY_ID]);
    if (!id) throw new ConfigError(`an encrypted payload has no "${METADATA_KEY_ID}" metadata, so no key can decrypt it`);
    const key = this.keys.get(id);
    if (!key) {
      throw new ConfigError(
        `payload encrypted with key id "${id}", which ${CODEC_ENV.keys} does not hold (it holds ${this.keyIds.map((k) => `"${k}"`).join(', ')}): ` +
          `add key "${id}" after the current one to read what was written with it`,
      );
    }
    const data = payload.data ?? new Uint8Array();
    if (data.length < IV_BYTES + TAG_BYTES) throw new ConfigError(`payload encrypted with key id "${id}" is truncated (${data.length} bytes)`);
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const decipher = createDecipheriv(CIPHER, key, buf.subarray(0, IV_BYTES));
    decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(buf.subarray(IV_BYTES, buf.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new ConfigError(`payload encrypted with key id "${id}" does not decrypt: it was altered, or the key listed as "${id}" is not the one it was encrypted with`);
    }
    const inner = ProtoPayload.decode(plain);
    return { metadata: inner.metadata, data: inner.data };
  }
}

function text(bytes: Uint8Array | null | undefined): string | undefined {
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8') : undefined;
}

/** The codec SCORELINE_CODEC_KEYS configures, or undefined when it is unset or empty (codec off). */
export function codecFromEnv(env: NodeJS.ProcessEnv = process.env): AesGcmCodec | undefined {
  const value = env[CODEC_ENV.keys];
  if (value === undefined || value.trim() === '') return undefined;
  return new AesGcmCodec(parseCodecKeys(value));
}
