/**
 * Large buffers reused from chunk to chunk. A chunk of 65,536 rows × 32 features allocates ~8 MB of
 * feature columns and ~8 MB of tensor; V8 answers every few dozen MB of fresh ArrayBuffer memory with
 * a full mark-compact, and on a worker whose cores ONNX Runtime keeps busy those collections (~20 per
 * million rows, ~0.5–1 CPU-s) come straight out of inference time (`npm run bench` prints CPU by thread).
 * Reuse is by exact byte length (chunks are mostly the same size), and bounded.
 *
 * Contract: a buffer handed to `give` must not be used again by the giver; `take` returns stale
 * contents, so the taker must overwrite every byte it reads.
 */
export class BufferRecycler {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private retained = 0;

  constructor(private readonly maxRetainedBytes: number) {}

  take(bytes: number): ArrayBuffer {
    const buffer = this.free.get(bytes)?.pop();
    if (!buffer) return new ArrayBuffer(bytes);
    this.retained -= bytes;
    return buffer;
  }

  /** Return a buffer; ignored if it is detached (transferred), tiny, or the recycler is full. */
  give(buffer: ArrayBuffer): void {
    const bytes = buffer.byteLength;
    if (bytes < MIN_RECYCLED_BYTES || this.retained + bytes > this.maxRetainedBytes) return;
    let list = this.free.get(bytes);
    if (!list) this.free.set(bytes, (list = []));
    if (list.includes(buffer)) return;
    list.push(buffer);
    this.retained += bytes;
  }

  /** Give back the buffer under a typed array only if the array spans all of it (not a view into something shared). */
  giveArray(array: ArrayBufferView): void {
    if (array.buffer instanceof ArrayBuffer && array.byteOffset === 0 && array.byteLength === array.buffer.byteLength) this.give(array.buffer);
  }

  get retainedBytes(): number {
    return this.retained;
  }
}

const MIN_RECYCLED_BYTES = 64 * 1024;

/** One per thread: feature columns and tensors of a worker's chunks (a few chunks in flight at a time). */
export const buffers = new BufferRecycler(256 * 1024 * 1024);
