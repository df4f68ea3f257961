/**
 * The emulated page table ("mdev-emulated" format): the software structure a parent
 * driver reads to perform a mediated device's DMA by CPU copy. No IOMMU walks it, so
 * it follows no architecture spec and lives in JavaScript memory, not in
 * {@link PhysicalMemory}; its model is iommufd's io_pagetable as seen through an access
 * object (drivers/iommu/iommufd/io_pagetable.c, iommufd_access_pin_pages/_rw).
 *
 * Shape: a two-level radix over the IOVA. The top level is a hash (a `Map`) keyed by
 * the 2 MiB chunk number `floor(iova / 2^21)`; each chunk is a leaf node of 512 entries,
 * one per 4 KiB page, held in typed arrays (`pa` Float64Array, `flags` Uint8Array, and
 * `pins` Uint32Array allocated on the first pin). A lookup is one `Map.get` plus two
 * typed-array reads, whatever the number of mappings. Chunks are created on map and
 * dropped when their last entry goes, so an empty table holds nothing.
 *
 * Levels, in generic_pt numbering: level 0 = the chunk's 4 KiB entries, level 1 = the
 * hashed chunk directory. Every page has its own entry, but a mapping is made of leaves
 * of 4 KiB, 2 MiB or 1 GiB (the largest that alignment and length allow, as a hardware
 * table would use): each entry records the size of the leaf it belongs to, so an unmap
 * that would split a larger leaf is refused and a translation reports the leaf's size.
 *
 * Entry flags (one byte per page, {@link EntryBit}): bits 2:0 are the {@link Perm} bits
 * (R, W, X) exactly, bit 3 V (present), bit 4 D (written while dirty tracking was on),
 * bits 6:5 the leaf size (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB; 3 is never written).
 */

/** log2 of the page (the table's only granule). */
export const PAGE_LG2 = 12;
/** 4096. */
export const PAGE: number = 2 ** PAGE_LG2;
/** log2 of the IOVA span of one chunk (512 pages). */
export const CHUNK_LG2 = 21;
/** Pages per chunk. */
export const CHUNK_PAGES = 512;
/** IOVA width of the table: IOVAs are [0, 2^48). */
export const IOVA_BITS = 48;
/** One past the highest IOVA. */
export const IOVA_LIMIT: number = 2 ** IOVA_BITS;

/** Bits of an entry's flag byte. R/W/X equal {@link Perm}'s values on purpose. */
export const EntryBit = {
  R: 1,
  W: 2,
  X: 4,
  /** Present. */
  V: 8,
  /** Dirty: written through the emulated path while tracking was enabled. */
  D: 16,
  /** Leaf size field, bits 6:5. */
  SIZE_SHIFT: 5,
  SIZE_MASK: 0x60,
} as const;

/** Mask of the permission bits of a flag byte. */
export const PERM_MASK = 7;

/** Leaf sizes a mapping may use, ascending (log2). */
export const LEAF_SIZES_LG2: readonly number[] = [12, 21, 30];

/** log2 leaf size per size code (bits 6:5 of the flags). */
export const LEAF_LG2: readonly number[] = [12, 21, 30, 12];

/** log2 of the leaf a flag byte belongs to. */
export function leafLg2(flags: number): number {
  return LEAF_LG2[(flags & EntryBit.SIZE_MASK) >>> EntryBit.SIZE_SHIFT]!;
}

/** The size-code bits for a leaf of 2^sizeLg2 bytes (12, 21 or 30). */
export function sizeBits(sizeLg2: number): number {
  return (sizeLg2 === 30 ? 2 : sizeLg2 === 21 ? 1 : 0) << EntryBit.SIZE_SHIFT;
}

/**
 * One leaf node: 512 consecutive 4 KiB pages of IOVA. `pa[i]` is the page-aligned
 * physical address of page i (meaningful when `flags[i] & V`), `pins[i]` its pin count.
 */
export class Chunk {
  /** Physical address of each page. */
  readonly pa: Float64Array = new Float64Array(CHUNK_PAGES);
  /** {@link EntryBit} flags of each page; 0 = not mapped. */
  readonly flags: Uint8Array = new Uint8Array(CHUNK_PAGES);
  /** Pin count of each page; null until the first pin in this chunk. */
  pins: Uint32Array | null = null;
  /** Present entries. */
  used = 0;
}

/** Chunk number of an IOVA (exact for every IOVA below 2^53). */
export function chunkOf(iova: number): number {
  return Math.floor(iova / 2097152);
}

/** Index of an IOVA's page inside its chunk (bits 20:12). */
export function slotOf(iova: number): number {
  return (iova >>> PAGE_LG2) & (CHUNK_PAGES - 1);
}

/** Visitor of present pages, ascending: the page's IOVA, its chunk and its slot. */
export type EntryVisitor = (iova: number, chunk: Chunk, slot: number) => void;

/**
 * The table: chunk directory plus totals. Mutators here do no validation and no cache
 * maintenance; the domain (`domain.ts`) checks arguments, keeps operations atomic and
 * invalidates the translation cache.
 */
export class EmulatedTable {
  /** Chunk number -> leaf node. */
  readonly chunks: Map<number, Chunk> = new Map();
  #pages = 0;
  #pins = 0;

  /** Pages mapped. */
  get pages(): number {
    return this.#pages;
  }

  /** Pins held over every page. */
  get pins(): number {
    return this.#pins;
  }

  /** The chunk holding `iova`, if any entry of it is present. */
  chunkAt(iova: number): Chunk | undefined {
    return this.chunks.get(chunkOf(iova));
  }

  /** Flags of the page holding `iova` (0 when not mapped). */
  flagsAt(iova: number): number {
    const c = this.chunks.get(chunkOf(iova));
    return c === undefined ? 0 : c.flags[slotOf(iova)]!;
  }

  /** Physical address of the byte at `iova`, or -1 when its page is not mapped. */
  lookup(iova: number): number {
    const c = this.chunks.get(chunkOf(iova));
    if (c === undefined) return -1;
    const s = slotOf(iova);
    return c.flags[s]! & EntryBit.V ? c.pa[s]! + (iova % PAGE) : -1;
  }

  /** Writes the entry of the page at `iova` (page-aligned `pa`, flags with V set). */
  set(iova: number, pa: number, flags: number): void {
    const key = chunkOf(iova);
    let c = this.chunks.get(key);
    if (c === undefined) {
      c = new Chunk();
      this.chunks.set(key, c);
    }
    const s = slotOf(iova);
    if ((c.flags[s]! & EntryBit.V) === 0) {
      c.used++;
      this.#pages++;
    }
    c.pa[s] = pa;
    c.flags[s] = flags | EntryBit.V;
  }

  /** Clears the entry of the page at `iova` (its pins must be zero); drops an emptied chunk. */
  clear(iova: number): void {
    const key = chunkOf(iova);
    const c = this.chunks.get(key);
    if (c === undefined) return;
    const s = slotOf(iova);
    if ((c.flags[s]! & EntryBit.V) === 0) return;
    c.flags[s] = 0;
    c.pa[s] = 0;
    this.#pages--;
    if (--c.used === 0) this.chunks.delete(key);
  }

  /** Pin count of the page at `iova`. */
  pinsAt(iova: number): number {
    const c = this.chunks.get(chunkOf(iova));
    return c?.pins == null ? 0 : c.pins[slotOf(iova)]!;
  }

  /** Adds `delta` (+1 or -1) to the pin count of a present page. */
  addPin(chunk: Chunk, slot: number, delta: number): void {
    if (chunk.pins === null) chunk.pins = new Uint32Array(CHUNK_PAGES);
    chunk.pins[slot]! += delta;
    this.#pins += delta;
  }

  /**
   * Visits every present page in [start, end) (page-aligned bounds), ascending. Walks
   * the chunks of the range, or the whole directory when that is shorter.
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
    this.#pages = 0;
    this.#pins = 0;
  }
}

function visitChunk(key: number, c: Chunk, start: number, end: number, visit: EntryVisitor): void {
  const base = key * 2097152;
  const from = Math.max(0, Math.floor((start - base) / PAGE));
  const to = Math.min(CHUNK_PAGES, Math.ceil((end - base) / PAGE));
  for (let s = from; s < to; s++) {
    if (c.flags[s]! & EntryBit.V) visit(base + s * PAGE, c, s);
  }
}
