import { describe, expect, it } from 'vitest';
import { BufferRecycler } from '../../src/io/buffers';

describe('BufferRecycler', () => {
  const MB = 1024 * 1024;

  it('hands back a given buffer of the same size, and a fresh one otherwise', () => {
    const r = new BufferRecycler(8 * MB);
    const a = r.take(MB);
    r.give(a);
    expect(r.retainedBytes).toBe(MB);
    expect(r.take(2 * MB)).not.toBe(a);
    expect(r.take(MB)).toBe(a);
    expect(r.retainedBytes).toBe(0);
    expect(r.take(MB)).not.toBe(a);
  });

  it('keeps at most its bound, ignores tiny, duplicate and detached buffers', () => {
    const r = new BufferRecycler(2 * MB);
    const bufs = [r.take(MB), r.take(MB), r.take(MB)];
    bufs.forEach((b) => r.give(b));
    expect(r.retainedBytes).toBe(2 * MB);
    r.give(bufs[0]);
    expect(r.retainedBytes).toBe(2 * MB);
    const small = new BufferRecycler(8 * MB);
    small.give(new ArrayBuffer(1024));
    const moved = new ArrayBuffer(MB);
    structuredClone(moved, { transfer: [moved] }); // detaches it: byteLength 0
    small.give(moved);
    expect(small.retainedBytes).toBe(0);
  });

  it('takes back a typed array only when it spans its whole buffer', () => {
    const r = new BufferRecycler(8 * MB);
    const whole = new Float32Array(MB / 4);
    r.giveArray(whole);
    expect(r.retainedBytes).toBe(MB);
    const shared = new ArrayBuffer(2 * MB);
    r.giveArray(new Float32Array(shared, 0, MB / 4));
    expect(r.retainedBytes).toBe(MB);
  });
});
