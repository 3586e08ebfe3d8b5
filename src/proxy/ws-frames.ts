// Just enough of RFC 6455 framing for a proxy that must close cleanly: follow
// frame boundaries in a byte stream, and build close frames in both directions.

import { randomFillSync } from 'node:crypto';

/**
 * Follows websocket frame boundaries (RFC 6455 §5.2) in one direction of a byte
 * stream without copying: it reads only the 2–14 header bytes of each frame and
 * skips payloads by count, so the cost per chunk is a few branches.
 */
export class FrameCursor {
  /** Header bytes seen of the current frame (0 at a boundary). */
  private hlen = 0;
  /** Header length once byte 2 is known. */
  private hneed = 2;
  /** Extended payload length bytes: 0, 2 or 8. */
  private ext = 0;
  private payload = 0;
  /** Payload bytes still to pass. */
  private skip = 0;

  get atBoundary(): boolean {
    return this.skip === 0 && this.hlen === 0;
  }

  /**
   * Consumes `chunk`. With `stopAtBoundary`, returns the offset just past the
   * first frame that ends in it (chunk.length when none does).
   */
  scan(chunk: Buffer, stopAtBoundary: boolean): number {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, n - i);
        this.skip -= take;
        i += take;
        if (this.skip === 0 && stopAtBoundary) return i;
        continue;
      }
      const b = chunk[i++] as number;
      const h = this.hlen++;
      if (h === 1) {
        const len7 = b & 0x7f;
        this.ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
        this.hneed = 2 + this.ext + (b & 0x80 ? 4 : 0);
        this.payload = this.ext === 0 ? len7 : 0;
      } else if (h >= 2 && h < 2 + this.ext) {
        this.payload = this.payload * 256 + b; // 16- or 64-bit big-endian length
      }
      if (this.hlen >= 2 && this.hlen === this.hneed) {
        this.hlen = 0;
        this.hneed = 2;
        this.skip = this.payload;
        if (this.skip === 0 && stopAtBoundary) return i;
      }
    }
    return n;
  }
}

/** A close frame from us to the client: servers never mask (RFC 6455 §5.1). */
export function clientCloseFrame(code: number): Buffer {
  return Buffer.from([0x88, 0x02, (code >> 8) & 0xff, code & 0xff]);
}

/** RFC 6455 §5.3: a client-to-server frame is masked with a fresh key. */
export function maskedCloseFrame(code: number): Buffer {
  const f = Buffer.allocUnsafe(8);
  f[0] = 0x88;
  f[1] = 0x82;
  randomFillSync(f, 2, 4);
  f[6] = ((code >> 8) & 0xff) ^ (f[2] as number);
  f[7] = (code & 0xff) ^ (f[3] as number);
  return f;
}
