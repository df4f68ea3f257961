/**
 * A generic radix page table over a format plug-in, in the spirit of Linux's
 * generic_pt (drivers/iommu/generic_pt/pt_common.h, iommu_pt.h): a format supplies a
 * few entry codecs and inherits map / unmap / lookup / teardown.
 *
 * Level numbering follows generic_pt: level 0 is the table whose entries map the
 * smallest page (the granule); level `levels - 1` is the top. Each format file says
 * how the spec's level names map onto these numbers (VMSAv8-64 lookup level 3 = our 0;
 * VT-d second-stage PTE = 0, PDE = 1, PDPE = 2, PML4E = 3, PML5E = 4).
 *
 * Map and unmap are atomic: map plans and allocates every table it needs before it
 * writes anything (on ENOMEM it frees what it took), unmap checks for partial leaves
 * before it clears anything.
 */

import { hex, IommuError } from "../errors.ts";
import type { PhysicalMemory } from "../memory/physical-memory.ts";
import type { TableAllocator } from "../memory/table-allocator.ts";

/** What an entry holds. */
export const EntryKind = {
  EMPTY: 0,
  TABLE: 1,
  LEAF: 2,
} as const;

/**
 * A table format: entry codecs for one architecture's page tables. Entries are 64 bits
 * and are read/written as (lo, hi) halves.
 */
export interface PtFormat {
  readonly name: string;
  /** log2 of the smallest page (4 KiB = 12, 16 KiB = 14, 64 KiB = 16). */
  readonly granuleLg2: number;
  /** Number of levels walked (top = levels - 1). */
  readonly levels: number;
  /** log2 bytes of the top table (larger than a granule for concatenated stage-2 tables). */
  readonly topTableLg2: number;
  /** True when a leaf (page or block) may sit at `level`. */
  leafAllowed(level: number): boolean;
  /** Classifies the entry (lo, hi) found at `level`. */
  entryKind(lo: number, hi: number, level: number): number;
  /** The next table's address (TABLE) or the output address (LEAF). */
  entryAddress(lo: number, hi: number, level: number): number;
  /** Perm bits a LEAF grants. */
  leafPerm(lo: number, hi: number, level: number): number;
  /** Encodes a table entry pointing at `tablePa` into out[0], out[1]. */
  encodeTable(tablePa: number, level: number, out: Uint32Array): void;
  /** Encodes a leaf mapping `oa` with `prot` at `level` into out[0], out[1]. */
  encodeLeaf(oa: number, level: number, prot: number, out: Uint32Array): void;
  /**
   * True when a leaf's address field holds the output address in place, so that for any
   * `oa` below 2^48 aligned to the leaf size, `encodeLeaf(oa)` equals `encodeLeaf(0)`
   * with `oa` OR-ed into the halves. Lets map write a run of leaves from one template.
   */
  readonly linearLeafAddress?: boolean;
  /**
   * How a page (a LEAF at level 0) is told from an empty entry by its low half alone: a
   * LEAF iff `(lo & any) !== 0 && (lo & all) === all`, for every (lo, hi). Lets unmap
   * count the pages of a dropped table without a call per entry.
   */
  readonly pageBits?: { readonly any: number; readonly all: number };
  /** True when a LEAF is marked dirty (formats with hardware dirty tracking). */
  isDirty?(lo: number, hi: number, level: number): boolean;
  /** Clears the dirty mark of a LEAF into out[0], out[1]. */
  clearDirty?(lo: number, hi: number, level: number, out: Uint32Array): void;
}

/** log2 bytes mapped by one entry at `level`. */
export function entrySizeLg2(fmt: PtFormat, level: number): number {
  return fmt.granuleLg2 + level * (fmt.granuleLg2 - 3);
}

/** Input address bits the format translates (including a concatenated top table). */
export function inputBits(fmt: PtFormat): number {
  return entrySizeLg2(fmt, fmt.levels - 1) + fmt.topTableLg2 - 3;
}

/** A leaf found by {@link PageTable.lookup}. */
export interface PtLeaf {
  /** Output address of the looked-up byte. */
  readonly pa: number;
  readonly perm: number;
  readonly sizeLg2: number;
  readonly level: number;
}

/** Visitor of leaves in ascending IOVA order. */
export type LeafVisitor = (
  iova: number,
  sizeLg2: number,
  pageWords: Uint32Array,
  wordIndex: number,
  level: number,
) => void;

const scratch = new Uint32Array(2);
const PAGE = 4096;

/** A page table of one format, rooted in a block from the table allocator. */
export class PageTable {
  readonly format: PtFormat;
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  /** Physical address of the top table. */
  readonly root: number;
  readonly #top: number;
  /** Bytes mapped by one entry, per level. */
  readonly #size: number[] = [];
  /** Entries per table, per level. */
  readonly #entries: number[] = [];
  /** Bytes of a table, per level. */
  readonly #bytes: number[] = [];

  /** Allocates an empty top table (an allocation point). */
  constructor(format: PtFormat, tables: TableAllocator) {
    this.format = format;
    this.tables = tables;
    this.memory = tables.memory;
    this.#top = format.levels - 1;
    for (let level = 0; level <= this.#top; level++) {
      this.#size.push(2 ** entrySizeLg2(format, level));
      const bytesLg2 = level === this.#top ? format.topTableLg2 : format.granuleLg2;
      this.#bytes.push(2 ** bytesLg2);
      this.#entries.push(2 ** (bytesLg2 - 3));
    }
    this.root = tables.alloc(format.topTableLg2, `${format.name} root`);
  }

  /** Bytes the format can address: [0, 2^inputBits). */
  get inputBits(): number {
    return inputBits(this.format);
  }

  #read(pfn: number): Uint32Array {
    const page = this.memory.readPage(pfn);
    if (page === null) throw new IommuError("EIO", `page-table page ${hex(pfn * PAGE)} is not RAM`, { pfn });
    return page;
  }

  #write(pfn: number): Uint32Array {
    const page = this.memory.writePage(pfn);
    if (page === null) throw new IommuError("EIO", `page-table page ${hex(pfn * PAGE)} is not RAM`, { pfn });
    return page;
  }

  /**
   * Maps [iova, iova + length) -> [pa, pa + length) with `prot`, using the largest
   * leaves that alignment allows. EINVAL: misaligned or beyond the input size; EEXIST:
   * any part already mapped; ENOMEM: table allocation failed. Atomic.
   */
  map(iova: number, pa: number, length: number, prot: number): void {
    const g = this.#size[0]!;
    if (!(length > 0) || iova % g !== 0 || pa % g !== 0 || length % g !== 0 || iova < 0 || pa < 0) {
      throw new IommuError(
        "EINVAL",
        `map ${hex(iova)}+${hex(length)} -> ${hex(pa)} is not ${hex(g)}-aligned`,
        {
          iova,
          pa,
          length,
        },
      );
    }
    if (iova + length > 2 ** this.inputBits) {
      throw new IommuError("EINVAL", `map ${hex(iova)}+${hex(length)} is beyond 2^${this.inputBits}`, {
        iova,
        length,
      });
    }
    if (this.#mapRun(iova, pa, length, prot)) return;
    const need = this.#plan(this.#top, this.root, iova, iova + length, pa);
    const fresh: number[] = [];
    try {
      for (let i = 0; i < need; i++)
        fresh.push(this.tables.alloc(this.format.granuleLg2, `${this.format.name} table`));
    } catch (e) {
      for (const t of fresh) this.tables.free(t);
      throw e;
    }
    this.#fill(this.#top, this.root, iova, iova + length, pa, prot, fresh);
  }

  /**
   * Walks to the level-1 entry covering [iova, iova + length) when the run fits one
   * level-0 table and every table above exists. Returns the entry's address (and sets
   * #runKind to its kind), or -1. Map and unmap of such a run (the common case) skip the
   * general recursion.
   */
  #runEntry(iova: number, length: number): number {
    if (this.#top === 0) return -1;
    const span = this.#size[1]!;
    if (Math.floor(iova / span) !== Math.floor((iova + length - 1) / span)) return -1;
    const fmt = this.format;
    let table = this.root;
    for (let level = this.#top; ; level--) {
      const ea = table + (Math.floor(iova / this.#size[level]!) % this.#entries[level]!) * 8;
      const words = this.#read(Math.floor(ea / PAGE));
      const w = (ea & 0xfff) >>> 2;
      const kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
      if (level === 1) {
        this.#runKind = kind;
        return ea;
      }
      if (kind !== EntryKind.TABLE) return -1;
      table = fmt.entryAddress(words[w]!, words[w + 1]!, level);
    }
  }

  #runKind = 0;

  /** The level-0 table holding all of [iova, iova + length), or -1. */
  #leafTable(iova: number, length: number): number {
    const ea = this.#runEntry(iova, length);
    if (ea < 0 || this.#runKind !== EntryKind.TABLE) return -1;
    const words = this.#read(Math.floor(ea / PAGE));
    const w = (ea & 0xfff) >>> 2;
    return this.format.entryAddress(words[w]!, words[w + 1]!, 1);
  }

  /** Maps a run inside one leaf table (made here when missing); false when the general path must do it. */
  #mapRun(iova: number, pa: number, length: number, prot: number): boolean {
    const fmt = this.format;
    if (!fmt.leafAllowed(0)) return false;
    const ea = this.#runEntry(iova, length);
    if (ea < 0) return false;
    const size = this.#size[0]!;
    const first = Math.floor(iova / size) % this.#entries[0]!;
    const n = length / size;
    const pw = (ea & 0xfff) >>> 2;
    if (this.#runKind === EntryKind.TABLE) {
      const up = this.#read(Math.floor(ea / PAGE));
      const table = fmt.entryAddress(up[pw]!, up[pw + 1]!, 1);
      const at = table + first * 8;
      if ((at & 0xfff) + n * 8 <= PAGE && fmt.linearLeafAddress === true && pa + n * size <= 2 ** 48) {
        // One table page, leaves from a template: check each slot and write it in one pass;
        // a used slot undoes the (all-zero) prefix and hands over to the general path. Kept
        // apart from #writeRun's loop on purpose: sharing one loop cost about 25% in map.
        const words = this.#write(Math.floor(at / PAGE));
        fmt.encodeLeaf(0, 0, prot, scratch);
        const tlo = scratch[0]!;
        const thi = scratch[1]!;
        let hi = Math.floor(pa / 4294967296);
        let lo = pa - hi * 4294967296;
        const w0 = (at & 0xfff) >>> 2;
        const end = w0 + 2 * n;
        for (let w = w0; w < end; w += 2) {
          if ((words[w]! | words[w + 1]!) !== 0) {
            words.fill(0, w0, w);
            return false;
          }
          // Typed-array stores keep the low 32 bits: no >>> 0 (a uint32 above 2^31 is a double).
          words[w] = tlo | lo;
          words[w + 1] = thi | hi;
          lo += size;
          if (lo >= 4294967296) {
            lo -= 4294967296;
            hi++;
          }
        }
        return true;
      }
      // Every target slot must be all-zero (how this table leaves unused entries); anything
      // else goes to the general path, which decides EEXIST by the format's rules.
      let words = this.#read(Math.floor((table + first * 8) / PAGE));
      let w = ((table + first * 8) & 0xfff) >>> 2;
      for (let k = 0; k < n; k++, w += 2) {
        if (w === 1024) {
          words = this.#read(Math.floor((table + (first + k) * 8) / PAGE));
          w = 0;
        }
        if ((words[w]! | words[w + 1]!) !== 0) return false;
      }
      this.#writeRun(table, first, n, pa, prot);
      return true;
    }
    if (this.#runKind !== EntryKind.EMPTY) return false;
    // Level-1 entry empty: a block may fit (the general path decides), else one new leaf table.
    const base = iova - (iova % this.#size[1]!);
    if (this.#canLeaf(1, base, this.#size[1]!, iova, iova + length, pa)) return false;
    const table = this.tables.alloc(fmt.granuleLg2, `${fmt.name} table`);
    this.#writeRun(table, first, n, pa, prot);
    fmt.encodeTable(table, 1, scratch);
    const parent = this.#write(Math.floor(ea / PAGE));
    parent[pw] = scratch[0]!;
    parent[pw + 1] = scratch[1]!;
    return true;
  }

  /** Writes `n` consecutive leaves at level 0 from index `first` of `table`, mapping `pa` upward. */
  #writeRun(table: number, first: number, n: number, pa: number, prot: number): void {
    const fmt = this.format;
    const size = this.#size[0]!;
    const template = fmt.linearLeafAddress === true && pa + n * size <= 2 ** 48;
    let tlo = 0;
    let thi = 0;
    if (template) {
      fmt.encodeLeaf(0, 0, prot, scratch);
      tlo = scratch[0]!;
      thi = scratch[1]!;
    }
    let words = this.#write(Math.floor((table + first * 8) / PAGE));
    let w = ((table + first * 8) & 0xfff) >>> 2;
    if (template) {
      // The output address as halves, stepped without division.
      let hi = Math.floor(pa / 4294967296);
      let lo = pa - hi * 4294967296;
      for (let k = 0; k < n; k++, w += 2) {
        if (w === 1024) {
          words = this.#write(Math.floor((table + (first + k) * 8) / PAGE));
          w = 0;
        }
        words[w] = tlo | lo;
        words[w + 1] = thi | hi;
        lo += size;
        if (lo >= 4294967296) {
          lo -= 4294967296;
          hi++;
        }
      }
      return;
    }
    for (let k = 0; k < n; k++, w += 2) {
      if (w === 1024) {
        words = this.#write(Math.floor((table + (first + k) * 8) / PAGE));
        w = 0;
      }
      fmt.encodeLeaf(pa + k * size, 0, prot, scratch);
      words[w] = scratch[0]!;
      words[w + 1] = scratch[1]!;
    }
  }

  #canLeaf(level: number, base: number, size: number, start: number, end: number, pa: number): boolean {
    return (
      this.format.leafAllowed(level) &&
      start <= base &&
      base + size <= end &&
      (pa + (base - start)) % size === 0
    );
  }

  /** Counts the tables a map needs (`table` < 0: a table yet to be made); EEXIST on any leaf in range. */
  #plan(level: number, table: number, start: number, end: number, pa: number): number {
    const fmt = this.format;
    const size = this.#size[level]!;
    const span = size * this.#entries[level]!;
    if (level === 0) {
      if (!fmt.leafAllowed(0))
        throw new IommuError("EINVAL", `the ${fmt.name} format has no leaves at level 0`);
      if (table < 0) return 0;
      // Leaf table: every entry in range must be empty.
      // Leaf table: every entry in range must be empty. Indices step by one (no
      // per-entry modulo: addresses above 2^30 are doubles and fmod is slow).
      let pfn = -1;
      let words: Uint32Array = EMPTY_WORDS;
      const first = Math.floor((start % span) / size);
      const n = Math.ceil((end - (start - (start % size))) / size);
      for (let i = first; i < first + n; i++) {
        const ea = table + i * 8;
        const p = Math.floor(ea / PAGE);
        if (p !== pfn) {
          words = this.#read(p);
          pfn = p;
        }
        const w = (ea & 0xfff) >>> 2;
        if (fmt.entryKind(words[w]!, words[w + 1]!, 0) !== EntryKind.EMPTY) {
          const at = start - (start % size) + (i - first) * size;
          throw new IommuError("EEXIST", `iova ${hex(at)} is already mapped`, { iova: at });
        }
      }
      return 0;
    }
    let count = 0;
    let pfn = -1;
    let words: Uint32Array = EMPTY_WORDS;
    let at = start;
    while (at < end) {
      const base = at - (at % size);
      const next = Math.min(base + size, end);
      const oa = pa + (at - start);
      let kind: number = EntryKind.EMPTY;
      let child = -1;
      if (table >= 0) {
        const ea = table + ((base % span) / size) * 8;
        const p = Math.floor(ea / PAGE);
        if (p !== pfn) {
          words = this.#read(p);
          pfn = p;
        }
        const w = (ea & 0xfff) >>> 2;
        kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
        if (kind === EntryKind.TABLE) child = fmt.entryAddress(words[w]!, words[w + 1]!, level);
      }
      if (kind === EntryKind.LEAF) {
        throw new IommuError("EEXIST", `iova ${hex(base)} is already mapped`, { iova: base });
      }
      if (kind === EntryKind.TABLE) count += this.#plan(level - 1, child, at, next, oa);
      else if (!this.#canLeaf(level, base, size, at, next, oa))
        count += 1 + this.#plan(level - 1, -1, at, next, oa);
      at = next;
    }
    return count;
  }

  #fill(
    level: number,
    table: number,
    start: number,
    end: number,
    pa: number,
    prot: number,
    fresh: number[],
  ): void {
    const fmt = this.format;
    const size = this.#size[level]!;
    const span = size * this.#entries[level]!;
    if (level === 0) {
      this.#writeRun(table, Math.floor((start % span) / size), (end - start) / size, pa, prot);
      return;
    }
    let at = start;
    while (at < end) {
      const base = at - (at % size);
      const next = Math.min(base + size, end);
      const ea = table + ((base % span) / size) * 8;
      const w = (ea & 0xfff) >>> 2;
      const oa = pa + (at - start);
      let page = this.#write(Math.floor(ea / PAGE));
      const kind = fmt.entryKind(page[w]!, page[w + 1]!, level);
      if (kind === EntryKind.TABLE) {
        this.#fill(level - 1, fmt.entryAddress(page[w]!, page[w + 1]!, level), at, next, oa, prot, fresh);
      } else if (this.#canLeaf(level, base, size, at, next, oa)) {
        fmt.encodeLeaf(oa, level, prot, scratch);
        page[w] = scratch[0]!;
        page[w + 1] = scratch[1]!;
      } else {
        const child = fresh.pop()!;
        this.#fill(level - 1, child, at, next, oa, prot, fresh);
        fmt.encodeTable(child, level, scratch);
        page = this.#write(Math.floor(ea / PAGE));
        page[w] = scratch[0]!;
        page[w + 1] = scratch[1]!;
      }
      at = next;
    }
  }

  /**
   * Unmaps every leaf inside [iova, iova + length), freeing tables left empty. Returns
   * the bytes unmapped. EINVAL (nothing changed) if a leaf straddles either end.
   */
  unmap(iova: number, length: number): number {
    if (!(length > 0)) return 0;
    const g = this.#size[0]!;
    if (iova % g === 0 && length % g === 0) {
      // A run inside one leaf table: clear it there; only an emptied table needs the walk.
      const table = this.#leafTable(iova, length);
      if (table >= 0) {
        const done = this.#clear(0, table, iova, iova + length);
        if (this.#emptied(0, table, iova, iova + length))
          this.#clear(this.#top, this.root, iova, iova + length);
        return done;
      }
    }
    this.#checkSplit(this.#top, this.root, iova, iova + length);
    return this.#clear(this.#top, this.root, iova, iova + length);
  }

  #checkSplit(level: number, table: number, start: number, end: number): void {
    const fmt = this.format;
    const size = this.#size[level]!;
    const span = size * this.#entries[level]!;
    const stop = Math.min(end, start - (start % span) + span);
    if (level === 0) {
      // Only the first and last entries can straddle the range.
      for (const at of [start, stop - 1]) {
        const base = at - (at % size);
        if (base >= start && base + size <= end) continue;
        const ea = table + ((base % span) / size) * 8;
        const words = this.#read(Math.floor(ea / PAGE));
        const w = (ea & 0xfff) >>> 2;
        if (fmt.entryKind(words[w]!, words[w + 1]!, 0) === EntryKind.LEAF)
          throw splitError(start, end, size, base);
      }
      return;
    }
    let at = start;
    while (at < stop) {
      const base = at - (at % size);
      const next = Math.min(base + size, stop);
      const ea = table + ((base % span) / size) * 8;
      const words = this.#read(Math.floor(ea / PAGE));
      const w = (ea & 0xfff) >>> 2;
      const kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
      if (kind === EntryKind.LEAF && (base < start || base + size > end))
        throw splitError(start, end, size, base);
      if (kind === EntryKind.TABLE)
        this.#checkSplit(level - 1, fmt.entryAddress(words[w]!, words[w + 1]!, level), at, next);
      at = next;
    }
  }

  #clear(level: number, table: number, start: number, end: number): number {
    const fmt = this.format;
    const size = this.#size[level]!;
    const span = size * this.#entries[level]!;
    const stop = Math.min(end, start - (start % span) + span);
    let done = 0;
    if (level === 0) {
      let pfn = -1;
      let words: Uint32Array = EMPTY_WORDS;
      const first = Math.floor((start % span) / size);
      const n = Math.ceil((stop - (start - (start % size))) / size);
      for (let i = first; i < first + n; i++) {
        const ea = table + i * 8;
        const p = Math.floor(ea / PAGE);
        if (p !== pfn) {
          words = this.#write(p);
          pfn = p;
        }
        const w = (ea & 0xfff) >>> 2;
        if (fmt.entryKind(words[w]!, words[w + 1]!, 0) === EntryKind.LEAF) {
          words[w] = 0;
          words[w + 1] = 0;
          done += size;
        }
      }
      return done;
    }
    let at = start;
    while (at < stop) {
      const base = at - (at % size);
      const next = Math.min(base + size, stop);
      const ea = table + ((base % span) / size) * 8;
      const w = (ea & 0xfff) >>> 2;
      let words = this.#write(Math.floor(ea / PAGE));
      const kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
      if (kind === EntryKind.LEAF) {
        words[w] = 0;
        words[w + 1] = 0;
        done += size;
      } else if (kind === EntryKind.TABLE) {
        const child = fmt.entryAddress(words[w]!, words[w + 1]!, level);
        if (base >= start && base + size <= end) {
          // The whole subtree goes: count its leaves and free its tables (freed blocks are
          // zeroed by the allocator) without clearing entries one by one.
          done += this.#drop(level - 1, child);
          words = this.#write(Math.floor(ea / PAGE));
          words[w] = 0;
          words[w + 1] = 0;
          at = next;
          continue;
        }
        done += this.#clear(level - 1, child, at, next);
        if (this.#emptied(level - 1, child, at, next)) {
          words = this.#write(Math.floor(ea / PAGE));
          words[w] = 0;
          words[w + 1] = 0;
          this.tables.free(child);
        }
      }
      at = next;
    }
    return done;
  }

  /** Bytes mapped under `table` (a table at `level`); frees it and every table below it. */
  #drop(level: number, table: number): number {
    const fmt = this.format;
    const size = this.#size[level]!;
    let done = 0;
    const bits = fmt.pageBits;
    if (level === 0 && bits !== undefined) {
      // Pages only: count them in place, one table page at a time.
      const any = bits.any;
      const all = bits.all;
      const bytes = this.#bytes[0]!;
      let pages = 0;
      for (let off = 0; off < bytes; off += PAGE) {
        const words = this.#read(Math.floor((table + off) / PAGE));
        for (let w = 0; w < 1024; w += 2) {
          const lo = words[w]!;
          if ((lo & any) !== 0 && (lo & all) === all) pages++;
        }
      }
      this.tables.free(table);
      return pages * size;
    }
    let pfn = -1;
    let words: Uint32Array = EMPTY_WORDS;
    for (let i = 0; i < this.#entries[level]!; i++) {
      const ea = table + i * 8;
      const p = Math.floor(ea / PAGE);
      if (p !== pfn) {
        words = this.#read(p);
        pfn = p;
      }
      const w = (ea & 0xfff) >>> 2;
      const kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
      if (kind === EntryKind.LEAF) done += size;
      else if (kind === EntryKind.TABLE) {
        done += this.#drop(level - 1, fmt.entryAddress(words[w]!, words[w + 1]!, level));
        pfn = -1; // the child's free may have released pages
      }
    }
    this.tables.free(table);
    return done;
  }

  /**
   * True when `table` (at `level`) is empty once [start, end) inside it was cleared. A used
   * neighbour of the range answers without a scan (unmapping piece by piece, upward or
   * downward, always has one).
   */
  #emptied(level: number, table: number, start: number, end: number): boolean {
    const size = this.#size[level]!;
    const n = this.#entries[level]!;
    const span = size * n;
    const first = Math.floor((start % span) / size);
    const last = Math.floor(((end - 1) % span) / size);
    if (last + 1 < n && this.#used(table + (last + 1) * 8)) return false;
    if (first > 0 && this.#used(table + (first - 1) * 8)) return false;
    return this.#isEmpty(table, this.#bytes[level]!);
  }

  /** True when the entry at `ea` has any bit set. */
  #used(ea: number): boolean {
    const words = this.#read(Math.floor(ea / PAGE));
    const w = (ea & 0xfff) >>> 2;
    return (words[w]! | words[w + 1]!) !== 0;
  }

  #isEmpty(table: number, bytes: number): boolean {
    for (let off = 0; off < bytes; off += PAGE) {
      const words = this.#read(Math.floor((table + off) / PAGE));
      for (let i = 0; i < 1024; i++) if (words[i] !== 0) return false;
    }
    return true;
  }

  /** The leaf translating `iova`, or null (a software walk of the host's own table). */
  lookup(iova: number): PtLeaf | null {
    if (!(iova >= 0) || iova >= 2 ** this.inputBits) return null;
    let table = this.root;
    for (let level = this.#top; level >= 0; level--) {
      const size = this.#size[level]!;
      const span = size * this.#entries[level]!;
      const ea = table + Math.floor((iova % span) / size) * 8;
      const words = this.#read(Math.floor(ea / PAGE));
      const w = (ea & 0xfff) >>> 2;
      const lo = words[w]!;
      const hi = words[w + 1]!;
      const kind = this.format.entryKind(lo, hi, level);
      if (kind === EntryKind.EMPTY) return null;
      const addr = this.format.entryAddress(lo, hi, level);
      if (kind === EntryKind.LEAF) {
        return {
          pa: addr + (iova % size),
          perm: this.format.leafPerm(lo, hi, level),
          sizeLg2: entrySizeLg2(this.format, level),
          level,
        };
      }
      table = addr;
    }
    return null;
  }

  /** Visits every leaf overlapping [iova, iova + length) in order. */
  forEachLeaf(iova: number, length: number, visit: LeafVisitor): void {
    this.#visit(this.#top, this.root, iova, iova + length, visit);
  }

  #visit(level: number, table: number, start: number, end: number, visit: LeafVisitor): void {
    const size = this.#size[level]!;
    const span = size * this.#entries[level]!;
    let at = start;
    const stop = Math.min(end, start - (start % span) + span);
    while (at < stop) {
      const base = at - (at % size);
      const next = Math.min(base + size, stop);
      const ea = table + ((base % span) / size) * 8;
      const words = this.#read(Math.floor(ea / PAGE));
      const w = (ea & 0xfff) >>> 2;
      const kind = this.format.entryKind(words[w]!, words[w + 1]!, level);
      if (kind === EntryKind.LEAF)
        visit(base, entrySizeLg2(this.format, level), this.#write(Math.floor(ea / PAGE)), w, level);
      else if (kind === EntryKind.TABLE) {
        this.#visit(level - 1, this.format.entryAddress(words[w]!, words[w + 1]!, level), at, next, visit);
      }
      at = next;
    }
  }

  /** Frees every table including the root. The table must not be used afterwards. */
  destroy(): void {
    this.#destroy(this.#top, this.root);
  }

  #destroy(level: number, table: number): void {
    if (level > 0) {
      const n = this.#entries[level]!;
      for (let i = 0; i < n; i++) {
        const ea = table + i * 8;
        const words = this.#read(Math.floor(ea / PAGE));
        const w = (ea & 0xfff) >>> 2;
        if (this.format.entryKind(words[w]!, words[w + 1]!, level) === EntryKind.TABLE) {
          this.#destroy(level - 1, this.format.entryAddress(words[w]!, words[w + 1]!, level));
        }
      }
    }
    this.tables.free(table);
  }
}

const EMPTY_WORDS = new Uint32Array(1024);

function splitError(start: number, end: number, size: number, base: number): IommuError {
  return new IommuError(
    "EINVAL",
    `unmap ${hex(start)}..${hex(end)} would split the ${hex(size)} page at ${hex(base)}`,
    {
      iova: base,
    },
  );
}
