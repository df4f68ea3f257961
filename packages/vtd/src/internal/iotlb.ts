/**
 * The VT-d IOTLB: an open-addressing hash keyed by (tag, 4 KiB page), where the tag is
 * DID * 2^20 + PASID. Same policy as core's Iotlb (entries per 4 KiB page with their
 * leaf size; a full table is emptied before the next insert; stale until invalidated),
 * but laid out as one interleaved Float64Array of [vpn, tag, pa, meta] per slot, so a
 * hit touches one cache line instead of one per field array.
 *
 * meta packs: user perm (2:0), supervisor perm (5:3), write-needs-walk (6), kind
 * (9:7), leaf size log2 (15:10).
 */

const EMPTY = -1;
const PAGE = 4096;
/** Slots of the micro-TLB (direct-mapped by page number). */
export const MICRO_MASK = 1023;

/** Bit layout of the meta word. */
export const Meta = {
  SUP_SHIFT: 3,
  WRITE_WALK: 64,
  KIND_SHIFT: 7,
  SIZE_SHIFT: 10,
} as const;

/**
 * The micro-TLB key of requests without PASID: the IOTLB tag (an integer) plus 0.5 for
 * supervisor requests (RID_PRIV), so one lookup also selects which rights apply.
 */
export function microKey(tag: number, priv: boolean): number {
  return priv ? tag + 0.5 : tag;
}

/** A fixed-capacity IOTLB. */
export class VtdIotlb {
  readonly capacity: number;
  /** [vpn, tag, pa, meta] per slot. */
  readonly data: Float64Array;
  readonly #mask: number;
  readonly #limit: number;
  #count = 0;
  /** Entries per DID (tag / 2^20), so an invalidation of an absent DID costs no scan. */
  readonly #perDid = new Map<number, number>();
  /**
   * A direct-mapped copy of entries recently hit by requests without PASID, [vpn,
   * microKey, pa, meta with the rights of that privilege in 2:0] at page & MICRO_MASK:
   * always a subset of the IOTLB (every drop or replacement empties or updates it), so a
   * hit there is an IOTLB hit without the hash probe.
   */
  readonly micro: Float64Array = new Float64Array((MICRO_MASK + 1) * 4).fill(EMPTY);
  #microLive = false;

  constructor(capacityLg2: number) {
    this.capacity = 2 ** capacityLg2;
    this.#mask = this.capacity - 1;
    this.#limit = (this.capacity * 3) >>> 2;
    this.data = new Float64Array(this.capacity * 4);
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
  }

  /** Entries held. */
  get size(): number {
    return this.#count;
  }

  /**
   * Slot of (tag, vpn) or -1. The hash takes the low 32 bits of each key (keys are
   * compared in full); consecutive pages of one tag land in consecutive slots. Hot path.
   */
  lookup(tag: number, vpn: number): number {
    const d = this.data;
    const mask = this.#mask;
    let i = ((vpn | 0) ^ Math.imul(tag | 0, 0x9e3779b1)) & mask;
    for (;;) {
      const b = i << 2;
      const v = d[b]!;
      if (v === vpn) {
        if (d[b + 1] === tag) return i;
      } else if (v === EMPTY) {
        return -1;
      }
      i = (i + 1) & mask;
    }
  }

  /** Caches page `vpn` of `tag` -> `pa` (4 KiB aligned) with `meta`. Replaces an equal key. */
  insert(tag: number, vpn: number, pa: number, meta: number): void {
    if (this.#count >= this.#limit) this.clear();
    const d = this.data;
    const mask = this.#mask;
    let i = ((vpn | 0) ^ Math.imul(tag | 0, 0x9e3779b1)) & mask;
    for (;;) {
      const v = d[i << 2]!;
      if (v === EMPTY) {
        this.#count++;
        const did = Math.floor(tag / 1048576);
        this.#perDid.set(did, (this.#perDid.get(did) ?? 0) + 1);
        break;
      }
      if (v === vpn && d[(i << 2) + 1] === tag) {
        // Replacing an entry: its micro-TLB copy goes too.
        const x = (vpn & MICRO_MASK) << 2;
        if (this.micro[x] === vpn && Math.floor(this.micro[x + 1]!) === tag) this.micro[x] = EMPTY;
        break;
      }
      i = (i + 1) & mask;
    }
    const b = i << 2;
    d[b] = vpn;
    d[b + 1] = tag;
    d[b + 2] = pa;
    d[b + 3] = meta;
  }

  /** Copies slot `slot`, just hit for page `vpn` by a request without PASID, into the micro-TLB. */
  remember(slot: number, vpn: number, priv: boolean): void {
    const d = this.data;
    const b = slot << 2;
    const u = this.micro;
    const x = (vpn & MICRO_MASK) << 2;
    const meta = d[b + 3]!;
    u[x] = vpn;
    u[x + 1] = microKey(d[b + 1]!, priv);
    u[x + 2] = d[b + 2]!;
    // The rights of the request's privilege in 2:0 (supervisor rights sit in 5:3).
    u[x + 3] = (meta & ~63) | (priv ? (meta >>> Meta.SUP_SHIFT) & 7 : meta & 7);
    this.#microLive = true;
  }

  #forgetMicro(): void {
    if (!this.#microLive) return;
    this.micro.fill(EMPTY);
    this.#microLive = false;
  }

  /** Drops everything. */
  clear(): void {
    this.#forgetMicro();
    if (this.#count === 0) return;
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
    this.#count = 0;
    this.#perDid.clear();
  }

  /** True when some entry carries domain `did`. */
  hasDid(did: number): boolean {
    return (this.#perDid.get(did) ?? 0) > 0;
  }

  /** Tag of a slot. */
  tag(i: number): number {
    return this.data[i * 4 + 1]!;
  }

  /** Meta word of a slot. */
  meta(i: number): number {
    return this.data[i * 4 + 3]!;
  }

  /** True when the leaf cached in slot `i` covers any byte of [start, end). */
  covers(i: number, start: number, end: number): boolean {
    const size = 2 ** ((this.data[i * 4 + 3]! >>> Meta.SIZE_SHIFT) & 63);
    const addr = this.data[i * 4]! * PAGE;
    const base = Math.floor(addr / size) * size;
    return base < end && base + size > start;
  }

  /** Drops every entry whose slot `match` accepts, then rehashes. Returns how many. */
  invalidateWhere(match: (slot: number) => boolean): number {
    const d = this.data;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (d[i * 4] !== EMPTY && match(i)) {
        d[i * 4] = EMPTY;
        dropped++;
      }
    }
    if (dropped === 0) return 0;
    this.#forgetMicro();
    const copy = Float64Array.from(d);
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
    this.#count = 0;
    this.#perDid.clear();
    for (let i = 0; i < this.capacity; i++) {
      const b = i * 4;
      if (copy[b] !== EMPTY) this.insert(copy[b + 1]!, copy[b]!, copy[b + 2]!, copy[b + 3]!);
    }
    return dropped;
  }
}
