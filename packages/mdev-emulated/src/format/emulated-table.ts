/**
 * The emulated page table ("mdev-emulated" format): the software structure a parent
 * driver reads to perform a mediated device's DMA by CPU copy. No IOMMU walks it, so
 * it follows no architecture spec and lives in JavaScript memory, not in
 * {@link PhysicalMemory}; its model is iommufd's io_pagetable as seen through an access
 * object (drivers/iommu/iommufd/io_pagetable.c, iommufd_access_pin_pages/_rw).
 *
 * Shape: a two-level radix over the IOVA. The top level is a hash (a `Map`) keyed by
 * the 2 MiB chunk number `floor(iova / 2^21)`; each chunk is a leaf node of 512 64-bit
 * entries, one per 4 KiB page, in one Float64Array (4 KiB, like a hardware leaf table),
 * plus one trailing slot counting its present entries. A lookup is one `Map.get` and
 * one array read, whatever the number of mappings. Pin counts live beside the table in
 * a second map of Uint32Array(512), created by the first pin in a chunk. Chunks are
 * created on map and dropped when their last entry goes: an empty table holds nothing.
 *
 * Levels, in generic_pt numbering: level 0 = the chunk's 4 KiB entries, level 1 = the
 * hashed chunk directory. Every page has its own entry, but a mapping is made of leaves
 * of 4 KiB, 2 MiB or 1 GiB (the largest that alignment and length allow, as a hardware
 * table would use): each entry records the size of the leaf it belongs to, so an unmap
 * that would split a larger leaf is refused and a translation reports the leaf's size.
 *
 * Entry: the page-aligned physical address plus the flags in bits 11:0 (an exact
 * integer below 2^53; 0 = not present). Flags ({@link EntryBit}): bits 2:0 are the
 * core `Perm` bits (R, W, X) exactly, bit 3 V (present), bit 4 D (written while dirty
 * tracking was on), bits 6:5 the leaf size (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB; 3 is never
 * written), bits 11:7 zero.
 */

/** log2 of the page (the table's only granule). */
export const PAGE_LG2 = 12;
/** 4096. */
export const PAGE: number = 2 ** PAGE_LG2;
/** log2 of the IOVA span of one chunk (512 pages). */
export const CHUNK_LG2 = 21;
/** IOVA span of one chunk (2 MiB). */
export const CHUNK_SPAN: number = 2 ** CHUNK_LG2;
/** Pages per chunk. */
export const CHUNK_PAGES = 512;
/** Index of a chunk's present-entry count (after its 512 entries). */
export const CHUNK_USED: number = CHUNK_PAGES;
/** IOVA width of the table: IOVAs are [0, 2^48). */
export const IOVA_BITS = 48;
/** One past the highest IOVA. */
export const IOVA_LIMIT: number = 2 ** IOVA_BITS;

/** Bits of an entry's flags. R/W/X equal core's `Perm` values on purpose. */
export const EntryBit = {
  R: 1,
  W: 2,
  X: 4,
  /** Present. */
  V: 8,
  /** Dirty: written through the emulated path while tracking was enabled. */
  D: 16,
} as const;

/** Mask of the permission bits of the flags. */
export const PERM_MASK = 7;
/** Leaf size field, bits 6:5. */
export const SIZE_SHIFT = 5;
/** Mask of the leaf size field. */
export const SIZE_MASK = 0x60;

/** Leaf sizes a mapping may use, ascending (log2). */
export const LEAF_SIZES_LG2: readonly number[] = [12, 21, 30];
/** log2 leaf size per size code (bits 6:5 of the flags). */
const LEAF_LG2: readonly number[] = [12, 21, 30, 12];

/** log2 of the leaf a flags value belongs to. */
export function leafLg2(flags: number): number {
  return LEAF_LG2[(flags & SIZE_MASK) >>> SIZE_SHIFT]!;
}

/** The size-code bits for a leaf of 2^sizeLg2 bytes (12, 21 or 30). */
export function sizeBits(sizeLg2: number): number {
  return (sizeLg2 === 30 ? 2 : sizeLg2 === 21 ? 1 : 0) << SIZE_SHIFT;
}

/** Offset of an address inside its 4 KiB page (exact below 2^53: bitwise ops keep the low 32 bits). */
export function pageOffset(addr: number): number {
  return addr & 0xfff;
}

/** Flags of an entry (bits 11:0). */
export function entryFlags(entry: number): number {
  return entry & 0xfff;
}

/** Physical address of an entry. */
export function entryPa(entry: number): number {
  return entry - (entry & 0xfff);
}

/** A leaf node: 512 entries and, at index 512 (`CHUNK_USED`), the count of present ones. */
export type Chunk = Float64Array;

/** Chunk number of an IOVA (exact for every IOVA below 2^53). */
export function chunkOf(iova: number): number {
  return Math.floor(iova / CHUNK_SPAN);
}

/** Index of an IOVA's page inside its chunk (bits 20:12). */
export function slotOf(iova: number): number {
  return (iova >>> PAGE_LG2) & (CHUNK_PAGES - 1);
}

/** Visitor of present pages, ascending: the page's IOVA, its chunk and its slot. */
export type EntryVisitor = (iova: number, chunk: Chunk, slot: number) => void;

/**
 * The table: chunk directory, pin counts and totals. Mutators here do no validation and
 * no cache maintenance; the domain (`domain.ts`) checks arguments, keeps operations
 * atomic and invalidates the translation cache.
 */
export class EmulatedTable {
  /** Chunk number -> leaf node. */
  readonly chunks: Map<number, Chunk> = new Map();
  /** Chunk number -> pin count of each page (only chunks that were ever pinned). */
  readonly pinCounts: Map<number, Uint32Array> = new Map();
  #pages = 0;
  #pins = 0;
  // One-entry caches in front of the two maps: runs of pages mostly stay in one chunk.
  #lastKey = -1;
  #lastChunk: Chunk | undefined = undefined;
  #lastPinKey = -1;
  #lastPins: Uint32Array | undefined = undefined;

  /** The chunk with number `key`, if present. */
  chunk(key: number): Chunk | undefined {
    if (key === this.#lastKey) return this.#lastChunk;
    const c = this.chunks.get(key);
    if (c !== undefined) {
      this.#lastKey = key;
      this.#lastChunk = c;
    }
    return c;
  }

  #pinArray(key: number): Uint32Array | undefined {
    if (key === this.#lastPinKey) return this.#lastPins;
    const p = this.pinCounts.get(key);
    if (p !== undefined) {
      this.#lastPinKey = key;
      this.#lastPins = p;
    }
    return p;
  }

  /** Pages mapped. */
  get pages(): number {
    return this.#pages;
  }

  /** Pins held over every page. */
  get pins(): number {
    return this.#pins;
  }

  /** The entry of the page holding `iova` (0 when not mapped). */
  entryAt(iova: number): number {
    const c = this.chunk(chunkOf(iova));
    return c === undefined ? 0 : c[slotOf(iova)]!;
  }

  /** Flags of the page holding `iova` (0 when not mapped). */
  flagsAt(iova: number): number {
    return entryFlags(this.entryAt(iova));
  }

  /** Physical address of the byte at `iova`, or -1 when its page is not mapped. */
  lookup(iova: number): number {
    const c = this.chunk(chunkOf(iova));
    if (c === undefined) return -1;
    const e = c[slotOf(iova)]!;
    return e === 0 ? -1 : entryPa(e) + pageOffset(iova);
  }

  /** Writes the entry of the page at `iova`: page-aligned `pa`, `flags` (V is added). */
  set(iova: number, pa: number, flags: number): void {
    const key = chunkOf(iova);
    let c = this.chunk(key);
    if (c === undefined) {
      c = new Float64Array(CHUNK_PAGES + 1);
      this.chunks.set(key, c);
    }
    const s = slotOf(iova);
    if (c[s] === 0) {
      c[CHUNK_USED]!++;
      this.#pages++;
    }
    c[s] = pa + ((flags | EntryBit.V) & 0xfff);
  }

  /** Clears the entry of the page at `iova` (its pins must be zero); drops an emptied chunk. */
  clear(iova: number): void {
    const key = chunkOf(iova);
    const c = this.chunk(key);
    if (c === undefined) return;
    const s = slotOf(iova);
    if (c[s] === 0) return;
    c[s] = 0;
    this.#pages--;
    if (--c[CHUNK_USED]! === 0) {
      this.chunks.delete(key);
      this.pinCounts.delete(key);
      this.#forget();
    }
  }

  /** Pin count of the page at `iova`. */
  pinsAt(iova: number): number {
    const p = this.#pinArray(chunkOf(iova));
    return p === undefined ? 0 : p[slotOf(iova)]!;
  }

  /** Adds `delta` to the pin count of the (present) page at `iova`. */
  addPin(iova: number, delta: number): void {
    const key = chunkOf(iova);
    let p = this.#pinArray(key);
    if (p === undefined) {
      p = new Uint32Array(CHUNK_PAGES);
      this.pinCounts.set(key, p);
    }
    p[slotOf(iova)]! += delta;
    this.#pins += delta;
  }

  /**
   * Visits every present page in [start, end), ascending. Walks the chunks of the
   * range, or the whole directory when that is shorter.
   */
  forEachPresent(start: number, end: number, visit: EntryVisitor): void {
    if (end <= start) return;
    const first = chunkOf(start);
    const last = chunkOf(end - 1);
    if (last - first + 1 <= this.chunks.size) {
      for (let k = first; k <= last; k++) {
        const c = this.chunks.get(k);
        if (c !== undefined) visitChunk(k, c, start, end, visit);
      }
      return;
    }
    const keys = [...this.chunks.keys()].filter((k) => k >= first && k <= last).sort((a, b) => a - b);
    for (const k of keys) visitChunk(k, this.chunks.get(k)!, start, end, visit);
  }

  /** True when some page in [start, end) is present. */
  anyPresent(start: number, end: number): boolean {
    let found = false;
    this.forEachPresent(start, end, () => {
      found = true;
    });
    return found;
  }

  /** Drops every entry (pins included). */
  reset(): void {
    this.chunks.clear();
    this.pinCounts.clear();
    this.#pages = 0;
    this.#pins = 0;
    this.#forget();
  }

  #forget(): void {
    this.#lastKey = -1;
    this.#lastChunk = undefined;
    this.#lastPinKey = -1;
    this.#lastPins = undefined;
  }
}

function visitChunk(key: number, c: Chunk, start: number, end: number, visit: EntryVisitor): void {
  const base = key * CHUNK_SPAN;
  const from = Math.max(0, Math.floor((start - base) / PAGE));
  const to = Math.min(CHUNK_PAGES, Math.ceil((end - base) / PAGE));
  for (let s = from; s < to; s++) {
    if (c[s] !== 0) visit(base + s * PAGE, c, s);
  }
}
