/**
 * A translation cache for vendor fast paths: an open-addressing hash over typed
 * arrays, keyed by (tag, 4 KiB page number). `tag` is whatever the vendor's
 * invalidations select by (SMMUv3: VMID/ASID; VT-d: DID/PASID/source-id), any
 * non-negative safe integer. A hit costs one hash and usually one probe: no
 * allocation, no closure, no BigInt.
 *
 * Entries larger than 4 KiB (blocks, superpages) are cached per 4 KiB page they serve
 * ("fractured", as many real IOTLBs do) and remember the leaf size, so range
 * invalidation drops every entry whose leaf *covers* an invalidated address.
 *
 * Policy when full: like QEMU (SMMU_IOTLB_MAX_SIZE / VTD_IOTLB_MAX_SIZE), a full
 * cache is emptied before the next insert. Stale entries stay until invalidated.
 * Invalidation marks slots deleted (no allocation); deleted slots are reclaimed by
 * inserts and by a rehash when they crowd the table. Invalidating a tag with no
 * entries, or an empty cache, costs one Map lookup.
 */

import type { FastIotlb } from "./fast-iotlb.ts";

const EMPTY = -1;
/** A deleted slot: lookups probe past it, inserts may reuse it. */
const DELETED = -2;
const PAGE = 4096;
const TWO32 = 4294967296;
/** Ranges of at most this many pages are invalidated by probing each page (when they can be). */
const PROBE_PAGES = 64;

/**
 * Fixed-capacity IOTLB with one array per field. Read a hit's data from the public
 * arrays at the returned slot.
 *
 * @deprecated Superseded by {@link FastIotlb} (interleaved slots, micro-TLB, grouped
 * tags): kept with its API until every vendor has moved over.
 */
export class Iotlb {
  /** Slots (a power of two); at most 3/4 are used. */
  readonly capacity: number;
  readonly #mask: number;
  readonly #limit: number;
  /** Tag per slot. */
  readonly tags: Float64Array;
  /** 4 KiB page number of the input address per slot; -1 = empty, -2 = deleted. */
  readonly vpns: Float64Array;
  /** Physical address of that 4 KiB page. */
  readonly pas: Float64Array;
  /** Granted permission bits. */
  readonly perms: Uint8Array;
  /** log2 of the leaf that produced the entry (12 for 4K, 21 for 2M, ...). */
  readonly sizes: Uint8Array;
  /** Vendor data (level, global flag, stage bits...). */
  readonly aux: Int32Array;
  #count = 0;
  #deleted = 0;
  /** Live entries per tag, so invalidating an absent tag costs one Map lookup. */
  readonly #perTag = new Map<number, number>();
  /** Live entries of leaves above 4 KiB per tag: without any, a short range is probed page by page. */
  readonly #largePerTag = new Map<number, number>();

  constructor(capacityLg2 = 12) {
    this.capacity = 2 ** capacityLg2;
    this.#mask = this.capacity - 1;
    this.#limit = (this.capacity * 3) >>> 2;
    this.tags = new Float64Array(this.capacity);
    this.vpns = new Float64Array(this.capacity).fill(EMPTY);
    this.pas = new Float64Array(this.capacity);
    this.perms = new Uint8Array(this.capacity);
    this.sizes = new Uint8Array(this.capacity);
    this.aux = new Int32Array(this.capacity);
  }

  /** Entries held. */
  get size(): number {
    return this.#count;
  }

  #hash(tag: number, vpn: number): number {
    let h = Math.imul((vpn | 0) ^ Math.imul(tag | 0, 0x9e3779b1), 0x85ebca6b);
    h ^= ((vpn / TWO32) | 0) ^ Math.imul((tag / TWO32) | 0, 0x27d4eb2f);
    h ^= h >>> 15;
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 13)) & this.#mask;
  }

  /** Slot of (tag, vpn), or -1. `vpn` = floor(iova / 4096). Hot path. */
  lookup(tag: number, vpn: number): number {
    const vpns = this.vpns;
    const mask = this.#mask;
    let i = this.#hash(tag, vpn);
    for (;;) {
      const v = vpns[i]!;
      if (v === vpn) {
        if (this.tags[i] === tag) return i;
      } else if (v === EMPTY) {
        return -1;
      }
      i = (i + 1) & mask;
    }
  }

  /**
   * Caches the 4 KiB page `vpn` of tag `tag` -> physical page `pa` (4 KiB aligned),
   * from a leaf of 2^sizeLg2 bytes. Replaces an existing entry of the same key.
   */
  insert(tag: number, vpn: number, pa: number, perm: number, sizeLg2: number, aux = 0): void {
    if (this.#count + this.#deleted >= this.#limit) {
      if (this.#count >= this.#limit) this.clear();
      else this.#rehash();
    }
    const mask = this.#mask;
    let i = this.#hash(tag, vpn);
    let reuse = -1;
    for (;;) {
      const v = this.vpns[i]!;
      if (v === EMPTY) {
        if (reuse >= 0) {
          i = reuse;
          this.#deleted--;
        }
        this.#count++;
        this.#perTag.set(tag, (this.#perTag.get(tag) ?? 0) + 1);
        break;
      }
      if (v === DELETED) {
        if (reuse < 0) reuse = i;
      } else if (v === vpn && this.tags[i] === tag) {
        if (this.sizes[i]! > 12) this.#countLarge(tag, -1);
        break;
      }
      i = (i + 1) & mask;
    }
    if (sizeLg2 > 12) this.#countLarge(tag, 1);
    this.vpns[i] = vpn;
    this.tags[i] = tag;
    this.pas[i] = pa;
    this.perms[i] = perm;
    this.sizes[i] = sizeLg2;
    this.aux[i] = aux;
  }

  /** Drops everything. */
  clear(): void {
    if (this.#count === 0 && this.#deleted === 0) return;
    this.vpns.fill(EMPTY);
    this.#count = 0;
    this.#deleted = 0;
    this.#perTag.clear();
    this.#largePerTag.clear();
  }

  #countLarge(tag: number, d: number): void {
    const n = (this.#largePerTag.get(tag) ?? 0) + d;
    if (n === 0) this.#largePerTag.delete(tag);
    else this.#largePerTag.set(tag, n);
  }

  #drop(i: number): void {
    const tag = this.tags[i]!;
    if (this.sizes[i]! > 12) this.#countLarge(tag, -1);
    this.vpns[i] = DELETED;
    this.#count--;
    this.#deleted++;
    const n = this.#perTag.get(tag)! - 1;
    if (n === 0) this.#perTag.delete(tag);
    else this.#perTag.set(tag, n);
  }

  /**
   * Drops every entry for which `match(slot)` is true (read the slot's fields from the
   * public arrays). Returns how many were dropped.
   */
  invalidateWhere(match: (slot: number) => boolean): number {
    if (this.#count === 0) return 0;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (this.vpns[i]! >= 0 && match(i)) {
        this.#drop(i);
        dropped++;
      }
    }
    if (this.#count === 0) this.clear();
    return dropped;
  }

  /** Drops every entry of `tag`. */
  invalidateTag(tag: number): number {
    if (!this.#perTag.has(tag)) return 0;
    return this.invalidateWhere((i) => this.tags[i] === tag);
  }

  /**
   * Drops entries whose leaf covers any byte of [iova, iova + length): with `tag` only
   * that tag's, with `tag` = -1 every tag's. `minLeafLg2` keeps entries of smaller leaves
   * (a TTL hint).
   */
  invalidateRange(tag: number, iova: number, length: number, minLeafLg2 = 0): number {
    if (this.#count === 0 || (tag !== -1 && !this.#perTag.has(tag))) return 0;
    const end = iova + length;
    let dropped = 0;
    const first = Math.floor(iova / PAGE);
    const pages = Math.ceil(end / PAGE) - first;
    if (tag !== -1 && pages <= PROBE_PAGES && !this.#largePerTag.has(tag)) {
      // Only 4 KiB leaves of this tag: an entry covers the range iff its page is in it.
      for (let k = 0; k < pages; k++) {
        const i = this.lookup(tag, first + k);
        if (i >= 0 && this.sizes[i]! >= minLeafLg2) {
          this.#drop(i);
          dropped++;
        }
      }
      if (this.#count === 0) this.clear();
      return dropped;
    }
    const vpns = this.vpns;
    for (let i = 0; i < this.capacity; i++) {
      const v = vpns[i]!;
      if (v < 0 || (tag !== -1 && this.tags[i] !== tag)) continue;
      const sizeLg2 = this.sizes[i]!;
      if (sizeLg2 < minLeafLg2) continue;
      const size = 2 ** sizeLg2;
      const addr = v * PAGE;
      const base = addr - (addr % size);
      if (base < end && base + size > iova) {
        this.#drop(i);
        dropped++;
      }
    }
    if (this.#count === 0) this.clear();
    return dropped;
  }

  #rehash(): void {
    const n = this.capacity;
    const t = Float64Array.from(this.tags);
    const v = Float64Array.from(this.vpns);
    const p = Float64Array.from(this.pas);
    const pe = Uint8Array.from(this.perms);
    const s = Uint8Array.from(this.sizes);
    const a = Int32Array.from(this.aux);
    this.clear();
    this.vpns.fill(EMPTY);
    for (let i = 0; i < n; i++) if (v[i]! >= 0) this.insert(t[i]!, v[i]!, p[i]!, pe[i]!, s[i]!, a[i]!);
  }
}
