/**
 * What both architectures share: a seeded generator, the request and observation shapes,
 * the memory image a scenario writes, and the per-page signatures that tell which
 * physical word a DMA read reached.
 */

/** A seeded PRNG (xoshiro128**); `seed` is any 32-bit integer. Reproducible across runs. */
export class Rng {
  #s = new Uint32Array(4);

  constructor(seed: number) {
    // splitmix32 to spread the seed over the state.
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const s = this.#s;
    const r = Math.imul(((Math.imul(s[1]!, 5) << 7) | (Math.imul(s[1]!, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = (s[3]! << 11) | (s[3]! >>> 21);
    return r;
  }

  /** An integer in [0, n) (n up to 2^53). */
  int(n: number): number {
    if (n <= 0x1_0000_0000) return Math.floor((this.u32() / 0x1_0000_0000) * n);
    return Math.floor(((this.u32() * 0x20_0000 + (this.u32() >>> 11)) / 2 ** 53) * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** A uniform 64-bit value. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

/** One DMA request: which device (edu index), its requester ID, the IOVA, the direction. */
export interface Req {
  readonly dev: number;
  readonly sid: number;
  readonly iova: number;
  write: boolean;
}

/** A memory image: 4 KiB pages by frame number (only pages the scenario writes). */
export type Image = Map<number, Uint8Array>;

/** A page of the image, created zeroed on first touch. */
export function page(img: Image, pa: number): Uint8Array {
  const pfn = Math.floor(pa / 4096);
  let p = img.get(pfn);
  if (p === undefined) {
    p = new Uint8Array(4096);
    img.set(pfn, p);
  }
  return p;
}

/** Writes a little-endian 64-bit word into the image. */
export function put64(img: Image, pa: number, v: bigint): void {
  const p = page(img, pa);
  new DataView(p.buffer, p.byteOffset).setBigUint64(pa % 4096, BigInt.asUintN(64, v), true);
}

/** Reads a little-endian 64-bit word of the image (0 where nothing was written). */
export function get64(img: Image, pa: number): bigint {
  const p = img.get(Math.floor(pa / 4096));
  if (p === undefined) return 0n;
  return new DataView(p.buffer, p.byteOffset).getBigUint64(pa % 4096, true);
}

/** The signature every 8-byte word of the data pool holds: its own physical address, tagged. */
export const SIG_TAG = 0xa5a5n << 48n;
export function signature(pa: number): bigint {
  return SIG_TAG | BigInt(pa);
}
const poolImages = new Map<number, Uint8Array>();
/** The pool as it is between batches (every word its signature), built once per base. */
export function poolImage(base: number, size: number): Uint8Array {
  let b = poolImages.get(base);
  if (b === undefined) {
    b = new Uint8Array(size);
    const dv = new DataView(b.buffer);
    for (let off = 0; off < size; off += 8) dv.setBigUint64(off, signature(base + off), true);
    poolImages.set(base, b);
  }
  return b;
}
/** The physical address a signature names, or -1. */
export function signatureAddr(v: bigint): number {
  return v >> 48n === 0xa5a5n ? Number(v & 0xffff_ffff_ffffn) : -1;
}
/** What a DMA write stores: a token naming the request (batch-unique, never a signature). */
export function token(batch: number, index: number): bigint {
  return (0x7e7en << 48n) | (BigInt(batch & 0xffff) << 16n) | BigInt(index & 0xffff);
}
/** The edu buffer's "nothing arrived" filler (a failed DMA read stores zeros instead). */
export const BLANK = 0xb1b1_b1b1_b1b1_b1b1n;

/** What QEMU did with one request. */
export interface Observed {
  /** Read: the 8 bytes that reached the device. */
  readonly data?: bigint;
  /** Write: every pool address the request's token reached. */
  readonly landed?: readonly number[];
  /** The architectural fault record (VT-d FRCD, SMMUv3 event) the request raised, or null. */
  readonly record: FaultRecordObs | null;
}

/** An architectural fault record, reduced to the fields both sides can state. */
export interface FaultRecordObs {
  /** VT-d FR or SMMUv3 event type. */
  readonly code: number;
  readonly sid: number;
  /** The faulting address as recorded (VT-d FI page, SMMUv3 InputAddr). */
  readonly addr: number | null;
  /** Read (true) or write, where the record carries it. */
  readonly read: boolean | null;
  /** Further fields by the spec's names (CLASS, S2, PnU, FetchAddr, ...). */
  readonly extra: Readonly<Record<string, string | number>>;
}

/** What the model said of one request. */
export interface Predicted {
  readonly pa: number | null;
  readonly record: FaultRecordObs | null;
  /** The model faulted (recorded or not). */
  readonly faulted: boolean;
  readonly faultName: string;
  /** log2 of the translated region (the leaf size) when translated. */
  readonly sizeLg2: number;
  /** SMMUv3: the model's answer for the same request made privileged (null = faults). */
  readonly privPa?: number | null;
  /** log2 of the privileged translation's region. */
  readonly privSizeLg2?: number;
  /** The privileged request's fault name ("" when it translates). */
  readonly privFault?: string;
}

/** Hex for messages. */
export function hx(n: number | bigint | null | undefined): string {
  return n === null || n === undefined ? "-" : `0x${n.toString(16)}`;
}
