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

import { Kind } from "../walk.ts";

const EMPTY = -1;
/** A dropped slot: lookups probe past it, inserts may reuse it. */
const DELETED = -2;
const PAGE = 4096;
/** Tags are DID * 2^20 + PASID. */
export const PASID_SPAN = 1048576;
/** A range of at most this many pages is invalidated by probing each page (when it can be). */
const PROBE_PAGES = 64;
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

/** What the IOTLB holds for one DID: live entries per tag, and the ones a page probe cannot find. */
interface DidInfo {
  readonly tags: Map<number, number>;
  count: number;
  /** Entries of leaves above 4 KiB (cached per 4 KiB page: one may cover pages it was not filled for). */
  large: number;
  /** Entries of nested translations (an IOTLB page-selective invalidation drops them all). */
  nested: number;
}

/** A fixed-capacity IOTLB. */
export class VtdIotlb {
  readonly capacity: number;
  /** [vpn, tag, pa, meta] per slot; vpn -1 = empty, -2 = dropped. */
  readonly data: Float64Array;
  readonly #mask: number;
  readonly #limit: number;
  #count = 0;
  #deleted = 0;
  /** Per DID (tag / 2^20): so an invalidation of an absent DID costs one Map lookup. */
  readonly #perDid = new Map<number, DidInfo>();
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
    if (this.#count + this.#deleted >= this.#limit) {
      if (this.#count >= this.#limit) this.clear();
      else this.#rehash();
    }
    const d = this.data;
    const mask = this.#mask;
    let i = ((vpn | 0) ^ Math.imul(tag | 0, 0x9e3779b1)) & mask;
    let reuse = -1;
    for (;;) {
      const v = d[i << 2]!;
      if (v === EMPTY) {
        if (reuse >= 0) {
          i = reuse;
          this.#deleted--;
        }
        this.#count++;
        this.#account(tag, meta, 1);
        break;
      }
      if (v === DELETED) {
        if (reuse < 0) reuse = i;
      } else if (v === vpn && d[(i << 2) + 1] === tag) {
        // Replacing an entry: its micro-TLB copy goes too.
        const x = (vpn & MICRO_MASK) << 2;
        if (this.micro[x] === vpn && Math.floor(this.micro[x + 1]!) === tag) this.micro[x] = EMPTY;
        this.#account(tag, d[(i << 2) + 3]!, -1);
        this.#account(tag, meta, 1);
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

  /** Adds (d = 1) or removes (d = -1) one entry of `tag` with `meta` from the per-DID counts. */
  #account(tag: number, meta: number, d: number): void {
    const did = Math.floor(tag / PASID_SPAN);
    let info = this.#perDid.get(did);
    if (info === undefined) {
      info = { tags: new Map(), count: 0, large: 0, nested: 0 };
      this.#perDid.set(did, info);
    }
    const n = (info.tags.get(tag) ?? 0) + d;
    if (n === 0) info.tags.delete(tag);
    else info.tags.set(tag, n);
    info.count += d;
    if (((meta >>> Meta.SIZE_SHIFT) & 63) > 12) info.large += d;
    if (((meta >>> Meta.KIND_SHIFT) & 7) === Kind.NESTED) info.nested += d;
    if (info.count === 0) this.#perDid.delete(did);
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
    if (this.#count === 0 && this.#deleted === 0) return;
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
    this.#count = 0;
    this.#deleted = 0;
    this.#perDid.clear();
  }

  /** True when some entry carries domain `did`. */
  hasDid(did: number): boolean {
    return this.#perDid.has(did);
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

  #drop(i: number): void {
    const b = i * 4;
    this.#account(this.data[b + 1]!, this.data[b + 3]!, -1);
    this.data[b] = DELETED;
    this.#count--;
    this.#deleted++;
  }

  /** Drops every entry whose slot `match` accepts. Returns how many. */
  invalidateWhere(match: (slot: number) => boolean): number {
    if (this.#count === 0) return 0;
    const d = this.data;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (d[i * 4]! >= 0 && match(i)) {
        this.#drop(i);
        dropped++;
      }
    }
    if (dropped > 0) this.#forgetMicro();
    if (this.#count === 0) this.clear();
    return dropped;
  }

  /**
   * Drops the entries of domain `did` (of `tag` only, when >= 0) that `match` accepts,
   * where `match` only accepts entries whose leaf covers some byte of [start, end). A
   * short range of a DID whose entries are all 4 KiB, non-nested leaves is probed page by
   * page (only an entry filled for a page of the range can cover it); anything else scans.
   */
  invalidateRange(
    did: number,
    tag: number,
    start: number,
    end: number,
    match: (slot: number) => boolean,
  ): number {
    const info = this.#perDid.get(did);
    if (info === undefined) return 0;
    const first = Math.floor(start / PAGE);
    const pages = Math.ceil(end / PAGE) - first;
    if (pages > PROBE_PAGES || info.large > 0 || info.nested > 0) return this.invalidateWhere(match);
    let dropped = 0;
    const tags = tag >= 0 ? (info.tags.has(tag) ? [tag] : []) : [...info.tags.keys()];
    for (const t of tags) {
      for (let k = 0; k < pages; k++) {
        const i = this.lookup(t, first + k);
        if (i >= 0 && match(i)) {
          this.#drop(i);
          dropped++;
        }
      }
    }
    if (dropped > 0) this.#forgetMicro();
    if (this.#count === 0) this.clear();
    return dropped;
  }

  #rehash(): void {
    const copy = Float64Array.from(this.data);
    this.#forgetMicro();
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
    this.#count = 0;
    this.#deleted = 0;
    this.#perDid.clear();
    for (let i = 0; i < this.capacity; i++) {
      const b = i * 4;
      if (copy[b]! >= 0) this.insert(copy[b + 1]!, copy[b]!, copy[b + 2]!, copy[b + 3]!);
    }
  }
}
