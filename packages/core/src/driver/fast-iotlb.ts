/**
 * The shared IOTLB of the vendor fast paths: an open-addressing hash keyed by (tag,
 * 4 KiB page number) over one interleaved Float64Array of [vpn, tag, pa, meta] per slot,
 * so a hit touches one cache line, plus a direct-mapped micro-TLB in front of it. The
 * tag is whatever a vendor's invalidations select by, any non-negative safe integer
 * (SMMUv3: VMID/ASID, or the StreamID for tags without SSID; VT-d: DID/PASID; mdev: the
 * domain id); tags are grouped by `floor(tag / groupSpan)` (VT-d: the DID of DID * 2^20
 * + PASID; SMMUv3: the VMID), the unit most invalidations name.
 *
 * Entries larger than 4 KiB (blocks, superpages) are cached per 4 KiB page they serve
 * ("fractured", as many real IOTLBs do, and as QEMU's vtd_lookup_iotlb / smmu_iotlb_lookup
 * key by page) and remember the leaf size in `meta`, so range invalidation drops every
 * entry whose leaf *covers* an invalidated address. A short range of a group holding
 * only plain 4 KiB leaves is invalidated by probing each page (only an entry filled for
 * a page of the range can cover it); anything else scans.
 *
 * Policy when full: like QEMU (SMMU_IOTLB_MAX_SIZE / VTD_IOTLB_MAX_SIZE), a full cache
 * is emptied before the next insert. Stale entries stay until invalidated. Drops mark
 * slots deleted (tombstones, no allocation); inserts reuse them and a rehash reclaims
 * them when they crowd the table. Invalidating an absent group or tag costs one Map
 * lookup.
 */

import { IommuError } from "../errors.ts";

/** A slot never used since the last clear: a probe stops here. */
const EMPTY = -1;
/** A dropped slot: lookups probe past it, inserts may reuse it. */
const DELETED = -2;
const PAGE = 4096;
/** meta >>> 25 of a plain 4 KiB leaf (size 12, SCAN clear): counted in no scan total. */
const PLAIN_META_TOP = 12 << 1;
/** A range of at most this many pages is invalidated by probing each page (when it can be). */
const PROBE_PAGES = 64;

/**
 * The core's part of an IOTLB entry's meta word: the leaf size log2 in bits 31:26 (so
 * `meta >>> SIZE_SHIFT` is the size, with no mask) and SCAN in bit 25. Bits 24:0 belong
 * to the vendor (permissions, kind, dirty state, ...).
 */
export const IotlbMeta = {
  SIZE_SHIFT: 26,
  /** Set on an entry a page probe must not be trusted to find (it is scanned for). */
  SCAN: 0x200_0000,
  /** The vendor's bits. */
  VENDOR_MASK: 0x1ff_ffff,
} as const;
// Module-local copies for iotlbMeta: it inlines into vendors' miss paths, whose inlining
// budget counts bytecode, and a property load per constant is bytecode.
const META_SIZE_SHIFT = 26;
const META_SCAN = 0x200_0000;
const META_VENDOR_MASK = 0x1ff_ffff;

/** Mask of the micro-TLB's page index (it has IOTLB_MICRO_MASK + 1 slots, direct-mapped by page). */
export const IOTLB_MICRO_MASK = 1023;

/**
 * Builds a meta word: vendor bits `vendor` (24:0), leaf size 2^sizeLg2 (12..63), and
 * SCAN when `scan` (the entry may answer for addresses a page probe would not visit,
 * such as VT-d's nested entries, which a page-selective IOTLB invalidation drops
 * whatever their address).
 */
export function iotlbMeta(vendor: number, sizeLg2: number, scan?: boolean): number {
  return ((vendor & META_VENDOR_MASK) | (scan === true ? META_SCAN : 0) | (sizeLg2 << META_SIZE_SHIFT)) >>> 0;
}

/**
 * Int32 index of micro slot 0's meta in {@link microMetaView}: slot x (x = 4 * page index,
 * in doubles) keeps its meta as an int32 in the first 4 bytes of its fourth double, at
 * 2x + IOTLB_MICRO_META. A hit reads it as an integer, with no double-to-int conversion.
 */
export const IOTLB_MICRO_META = 6;

/** An Int32Array over the micro-TLB's bytes, where slot metas live (see IOTLB_MICRO_META). */
export function microMetaView(micro: Float64Array): Int32Array {
  return new Int32Array(micro.buffer, micro.byteOffset, micro.length * 2);
}

/** Empties every micro-TLB slot (page -1, key NaN); returns `u`. */
function emptyMicro(u: Float64Array): Float64Array {
  for (let x = 0; x < u.length; x += 4) {
    u[x] = EMPTY;
    u[x + 1] = Number.NaN;
  }
  return u;
}

/**
 * A new, empty micro-TLB array ((IOTLB_MICRO_MASK + 1) * 4 doubles) for a vendor's fast
 * path to own and lend to its {@link FastIotlb}. Set in a field initializer, the field is
 * written once, so V8 treats it as constant and a hit path reading it through a known
 * object embeds the array's address (no field load, map check or length load).
 */
export function newMicroTlb(): Float64Array {
  return emptyMicro(new Float64Array((IOTLB_MICRO_MASK + 1) * 4));
}

/** What the IOTLB holds for one group: live entries per tag, and the ones a page probe cannot find. */
interface GroupInfo {
  readonly tags: Map<number, TagCount>;
  count: number;
  /** Entries with a leaf above 4 KiB or the SCAN bit. */
  scan: number;
}

/** Live entries of one tag (a box, so the last tag's count is updated without a Map lookup). */
interface TagCount {
  n: number;
}

/**
 * A fixed-capacity IOTLB (see the file comment).
 *
 * Hit path a vendor writes (one probe, the permission check, no call that can go
 * megamorphic: this is the only IOTLB class):
 * ```ts
 * const slot = t.lookup(tag, vpn);
 * if (slot >= 0) { const m = t.data[(slot << 2) + 3]!; ... t.data[(slot << 2) + 2]! ... }
 * ```
 * and, in front of it, for requests whose rights it can fold into its key (VT-d: the
 * IOTLB tag plus 0.5 for RID_PRIV), the micro-TLB:
 * ```ts
 * const x = (vpn & IOTLB_MICRO_MASK) << 2;
 * if (u[x] === vpn * 4096 && u[x + 1] === key) { pa = u[x + 2]!; meta = u32[(x << 1) + IOTLB_MICRO_META]!; }
 * ```
 * Invariant: the micro-TLB is a subset of the IOTLB. Any drop empties it, replacing an
 * entry empties the micro slot of its page, so a micro hit is an IOTLB hit.
 */
export class FastIotlb {
  /** Slots (a power of two); at most 3/4 are used. */
  readonly capacity: number;
  /** capacity - 1. */
  readonly mask: number;
  /** Tags per group: group = floor(tag / groupSpan). */
  readonly groupSpan: number;
  /** [vpn, tag, pa, meta] per slot; vpn -1 = empty, -2 = deleted. pa is 4 KiB aligned. */
  readonly data: Float64Array;
  /**
   * The micro-TLB: [page address (vpn * 4096), key, pa, meta] at (vpn & IOTLB_MICRO_MASK) * 4,
   * filled by {@link FastIotlb.remember} with a vendor-chosen key and meta (an int32, see
   * IOTLB_MICRO_META). The page address lets a hit compare `iova - offset` with no scaling.
   * An empty slot is page -1 with key NaN, which equals nothing, so a vendor's "no key"
   * (-1) or a negative page never hits it and the hit path needs no sign test.
   */
  readonly micro: Float64Array;
  readonly #micro32: Int32Array;
  readonly #limit: number;
  #count = 0;
  #deleted = 0;
  #microLive = false;
  readonly #groups = new Map<number, GroupInfo>();
  /** The tag #account saw last, with its group and count (null: none). */
  #lastTag = -1;
  #lastInfo: GroupInfo | null = null;
  #lastCount: TagCount | null = null;

  /**
   * @param capacityLg2 log2 of the slot count (4..24).
   * @param groupSpan tags per group, a positive integer (1: every tag is its own group).
   * @param micro the micro-TLB array, from {@link newMicroTlb} (default: a new one).
   */
  constructor(capacityLg2: number, groupSpan = 1, micro: Float64Array = newMicroTlb()) {
    if (micro.length !== (IOTLB_MICRO_MASK + 1) * 4)
      throw new IommuError(
        "EINVAL",
        `a micro-TLB has ${(IOTLB_MICRO_MASK + 1) * 4} doubles, not ${micro.length}`,
      );
    this.micro = emptyMicro(micro);
    this.#micro32 = microMetaView(micro);
    this.capacity = 2 ** capacityLg2;
    this.mask = this.capacity - 1;
    this.groupSpan = groupSpan;
    this.#limit = (this.capacity * 3) >>> 2;
    this.data = new Float64Array(this.capacity * 4);
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
  }

  /** Entries held. */
  get size(): number {
    return this.#count;
  }

  /**
   * Slot of (tag, vpn) or -1; `vpn` = floor(iova / 4096). The hash takes the low 32 bits
   * of each key (keys are compared in full), so consecutive pages of one tag land in
   * consecutive slots. Hot path: small enough to inline into a vendor's translate.
   */
  lookup(tag: number, vpn: number): number {
    const d = this.data;
    const mask = this.mask;
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

  /**
   * Caches page `vpn` of `tag` -> `pa` (the 4 KiB aligned physical page) with `meta`
   * (see {@link iotlbMeta}). Replaces an entry of the same key.
   */
  insert(tag: number, vpn: number, pa: number, meta: number): void {
    // The common fill, small enough to inline into a vendor's miss path: room left, the
    // key's home slot empty (so the key is nowhere else: a probe for it stops there), the
    // last tag again with a plain 4 KiB leaf (counted in place).
    const d = this.data;
    const b = (((vpn | 0) ^ Math.imul(tag | 0, 0x9e3779b1)) & this.mask) << 2;
    const last = this.#lastCount;
    if (
      d[b] === EMPTY &&
      tag === this.#lastTag &&
      last !== null &&
      meta >>> 25 === PLAIN_META_TOP &&
      this.#count + this.#deleted < this.#limit
    ) {
      this.#count++;
      last.n++;
      this.#lastInfo!.count++;
      d[b] = vpn;
      d[b + 1] = tag;
      d[b + 2] = pa;
      d[b + 3] = meta;
      return;
    }
    this.#insertSlow(tag, vpn, pa, meta);
  }

  /** insert() past its common case: making room, probing past taken slots, replacing. */
  #insertSlow(tag: number, vpn: number, pa: number, meta: number): void {
    if (this.#count + this.#deleted >= this.#limit) {
      if (this.#count >= this.#limit) this.clear();
      else this.#rehash();
    }
    const d = this.data;
    const mask = this.mask;
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
        // Replacing an entry: a micro-TLB copy of it may sit in its page's micro slot.
        const x = (vpn & IOTLB_MICRO_MASK) << 2;
        if (this.micro[x] === vpn * PAGE) {
          this.micro[x] = EMPTY;
          this.micro[x + 1] = Number.NaN;
        }
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

  /**
   * Adds (d = 1) or removes (d = -1) one entry of `tag` with `meta` from the group
   * counts. The last tag's group and count are kept, so a run of fills (a walk per
   * miss) of one tag costs no Map lookup.
   */
  #account(tag: number, meta: number, d: number): void {
    let info = this.#lastInfo;
    let count = this.#lastCount;
    if (tag !== this.#lastTag || info === null || count === null) {
      const g = Math.floor(tag / this.groupSpan);
      info = this.#groups.get(g) ?? null;
      if (info === null) {
        info = { tags: new Map(), count: 0, scan: 0 };
        this.#groups.set(g, info);
      }
      count = info.tags.get(tag) ?? null;
      if (count === null) {
        count = { n: 0 };
        info.tags.set(tag, count);
      }
      this.#lastTag = tag;
      this.#lastInfo = info;
      this.#lastCount = count;
    }
    count.n += d;
    info.count += d;
    if (meta >>> IotlbMeta.SIZE_SHIFT > 12 || (meta & IotlbMeta.SCAN) !== 0) info.scan += d;
    if (count.n === 0) {
      info.tags.delete(tag);
      if (info.count === 0) this.#groups.delete(Math.floor(tag / this.groupSpan));
      this.#forgetLast();
    }
  }

  #forgetLast(): void {
    this.#lastTag = -1;
    this.#lastInfo = null;
    this.#lastCount = null;
  }

  /**
   * Copies the entry in `slot`, just hit for page `vpn`, into the micro-TLB under `key`
   * with `meta` (the vendor's view of the entry for requests of that key, such as the
   * rights of one privilege). Keys are the vendor's; two requests that may see
   * different results must not share one. `meta` is kept as its low 32 bits, read back
   * as an int32.
   */
  remember(slot: number, vpn: number, key: number, meta: number): void {
    const u = this.micro;
    const x = (vpn & IOTLB_MICRO_MASK) << 2;
    u[x] = vpn * PAGE;
    u[x + 1] = key;
    u[x + 2] = this.data[(slot << 2) + 2]!;
    this.#micro32[(x << 1) + IOTLB_MICRO_META] = meta;
    this.#microLive = true;
  }

  #forgetMicro(): void {
    if (!this.#microLive) return;
    emptyMicro(this.micro);
    this.#microLive = false;
  }

  /** Drops everything. */
  clear(): void {
    this.#forgetMicro();
    if (this.#count === 0 && this.#deleted === 0) return;
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
    this.#count = 0;
    this.#deleted = 0;
    const info = this.#lastInfo;
    const count = this.#lastCount;
    if (info === null || count === null) {
      this.#groups.clear();
      return;
    }
    // The last tag's group and count stay, emptied (count 0 reads as absent), so the fills
    // that follow a full cache's emptying allocate nothing; every other group goes.
    const tag = this.#lastTag;
    const g = Math.floor(tag / this.groupSpan);
    for (const k of this.#groups.keys()) if (k !== g) this.#groups.delete(k);
    for (const t of info.tags.keys()) if (t !== tag) info.tags.delete(t);
    info.count = 0;
    info.scan = 0;
    count.n = 0;
  }

  /** The group's counts when it holds some entry, else undefined. */
  #live(group: number): GroupInfo | undefined {
    const info = this.#groups.get(group);
    return info !== undefined && info.count > 0 ? info : undefined;
  }

  /** True when some entry's tag is in group `group`. */
  hasGroup(group: number): boolean {
    return this.#live(group) !== undefined;
  }

  /** True when some entry carries `tag`. */
  hasTag(tag: number): boolean {
    return (this.#groups.get(Math.floor(tag / this.groupSpan))?.tags.get(tag)?.n ?? 0) > 0;
  }

  /** Page number of a live slot. */
  vpn(i: number): number {
    return this.data[i * 4]!;
  }

  /** Tag of a live slot. */
  tag(i: number): number {
    return this.data[i * 4 + 1]!;
  }

  /** Physical page address of a live slot. */
  pa(i: number): number {
    return this.data[i * 4 + 2]!;
  }

  /** Meta word of a live slot. */
  meta(i: number): number {
    return this.data[i * 4 + 3]!;
  }

  /** Leaf size log2 of a live slot. */
  sizeLg2(i: number): number {
    return this.data[i * 4 + 3]! >>> IotlbMeta.SIZE_SHIFT;
  }

  /** True when the leaf cached in live slot `i` covers any byte of [start, end). */
  covers(i: number, start: number, end: number): boolean {
    const size = 2 ** (this.data[i * 4 + 3]! >>> IotlbMeta.SIZE_SHIFT);
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

  #after(dropped: number): number {
    if (dropped > 0) this.#forgetMicro();
    if (this.#count === 0) this.clear();
    return dropped;
  }

  /** Drops every entry whose slot `match` accepts (a full scan). Returns how many. */
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
    return this.#after(dropped);
  }

  /** Drops every entry of group `group`. Returns how many. */
  invalidateGroup(group: number): number {
    if (!this.hasGroup(group)) return 0;
    const lo = group * this.groupSpan;
    const hi = lo + this.groupSpan;
    const d = this.data;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      const b = i * 4;
      if (d[b]! >= 0 && d[b + 1]! >= lo && d[b + 1]! < hi) {
        this.#drop(i);
        dropped++;
      }
    }
    return this.#after(dropped);
  }

  /** Drops every entry of `tag`. Returns how many. */
  invalidateTag(tag: number): number {
    if (!this.hasTag(tag)) return 0;
    const d = this.data;
    let dropped = 0;
    for (let i = 0; i < this.capacity; i++) {
      const b = i * 4;
      if (d[b]! >= 0 && d[b + 1] === tag) {
        this.#drop(i);
        dropped++;
      }
    }
    return this.#after(dropped);
  }

  /**
   * Range invalidation of [start, end): drops the entries of group `group` (-1: every
   * group) and of `tag` within it (-1: every tag) that `match` accepts, or without
   * `match` those whose leaf covers some byte of the range. `match` must only accept
   * entries that cover the range or carry SCAN: a short range of a group without
   * large or SCAN entries is probed page by page, anything else scans. Returns how many.
   */
  invalidateRange(
    group: number,
    tag: number,
    start: number,
    end: number,
    match: ((slot: number) => boolean) | null = null,
  ): number {
    if (this.#count === 0) return 0;
    const first = Math.floor(start / PAGE);
    const pages = Math.ceil(end / PAGE) - first;
    const info = group < 0 ? undefined : this.#live(group);
    if (group >= 0 && info === undefined) return 0;
    if (info === undefined || pages > PROBE_PAGES || info.scan > 0) {
      const span = this.groupSpan;
      return this.invalidateWhere((i) => {
        const t = this.data[i * 4 + 1]!;
        if (tag >= 0 ? t !== tag : group >= 0 && Math.floor(t / span) !== group) return false;
        return match === null ? this.covers(i, start, end) : match(i);
      });
    }
    let dropped = 0;
    // Only plain 4 KiB leaves in this group: an entry covers the range iff its page is in it.
    // (Deleting the current key while iterating a Map is safe.)
    for (const t of info.tags.keys()) {
      if (tag >= 0 && t !== tag) continue;
      for (let k = 0; k < pages; k++) {
        const i = this.lookup(t, first + k);
        if (i >= 0 && (match === null || match(i))) {
          this.#drop(i);
          dropped++;
        }
      }
    }
    return this.#after(dropped);
  }

  #rehash(): void {
    const copy = Float64Array.from(this.data);
    this.#forgetMicro();
    for (let i = 0; i < this.capacity; i++) this.data[i * 4] = EMPTY;
    this.#count = 0;
    this.#deleted = 0;
    this.#groups.clear();
    this.#forgetLast();
    for (let i = 0; i < this.capacity; i++) {
      const b = i * 4;
      if (copy[b]! >= 0) this.insert(copy[b + 1]!, copy[b]!, copy[b + 2]!, copy[b + 3]!);
    }
  }
}
