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
 */

const EMPTY = -1;
const PAGE = 4096;
const TWO32 = 4294967296;

/** Fixed-capacity IOTLB. Read a hit's data from the public arrays at the returned slot. */
export class Iotlb {
  /** Slots (a power of two); at most 3/4 are used. */
  readonly capacity: number;
  readonly #mask: number;
  readonly #limit: number;
  /** Tag per slot. */
  readonly tags: Float64Array;
  /** 4 KiB page number of the input address per slot; -1 = empty. */
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
    if (this.#count >= this.#limit) this.clear();
    const mask = this.#mask;
    let i = this.#hash(tag, vpn);
    for (;;) {
      const v = this.vpns[i]!;
      if (v === EMPTY) {
        this.#count++;
        break;
      }
      if (v === vpn && this.tags[i] === tag) break;
      i = (i + 1) & mask;
    }
    this.vpns[i] = vpn;
    this.tags[i] = tag;
    this.pas[i] = pa;
    this.perms[i] = perm;
    this.sizes[i] = sizeLg2;
    this.aux[i] = aux;
  }

  /** Drops everything. */
  clear(): void {
    if (this.#count === 0) return;
    this.vpns.fill(EMPTY);
    this.#count = 0;
  }

  /**
   * Drops every entry for which `match(slot)` is true (read the slot's fields from the
   * public arrays), then rehashes the survivors. Returns how many were dropped.
   */
  invalidateWhere(match: (slot: number) => boolean): number {
    const drop: number[] = [];
    for (let i = 0; i < this.capacity; i++) if (this.vpns[i] !== EMPTY && match(i)) drop.push(i);
    if (drop.length === 0) return 0;
    for (const i of drop) this.vpns[i] = EMPTY;
    this.#rehash();
    return drop.length;
  }

  /** Drops every entry of `tag`. */
  invalidateTag(tag: number): number {
    return this.invalidateWhere((i) => this.tags[i] === tag);
  }

  /**
   * Drops entries whose leaf covers any byte of [iova, iova + length): with `tag` only
   * that tag's, with `tag` = -1 every tag's. `minLeafLg2` keeps entries of smaller leaves
   * (a TTL hint); `leafOnly` has no effect here (walk caches are not modelled separately).
   */
  invalidateRange(tag: number, iova: number, length: number, minLeafLg2 = 0): number {
    const end = iova + length;
    return this.invalidateWhere((i) => {
      if (tag !== -1 && this.tags[i] !== tag) return false;
      const size = 2 ** this.sizes[i]!;
      if (this.sizes[i]! < minLeafLg2) return false;
      const addr = this.vpns[i]! * PAGE;
      const base = addr - (addr % size);
      return base < end && base + size > iova;
    });
  }

  #rehash(): void {
    const n = this.capacity;
    const t = Float64Array.from(this.tags);
    const v = Float64Array.from(this.vpns);
    const p = Float64Array.from(this.pas);
    const pe = Uint8Array.from(this.perms);
    const s = Uint8Array.from(this.sizes);
    const a = Int32Array.from(this.aux);
    this.vpns.fill(EMPTY);
    this.#count = 0;
    for (let i = 0; i < n; i++) if (v[i] !== EMPTY) this.insert(t[i]!, v[i]!, p[i]!, pe[i]!, s[i]!, a[i]!);
  }
}
