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

/** A page table of one format, rooted in a block from the table allocator. */
export class PageTable {
  readonly format: PtFormat;
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  /** Physical address of the top table. */
  readonly root: number;
  #topLevel: number;
  #stride: number;

  /** Allocates an empty top table (an allocation point). */
  constructor(format: PtFormat, tables: TableAllocator) {
    this.format = format;
    this.tables = tables;
    this.memory = tables.memory;
    this.#topLevel = format.levels - 1;
    this.#stride = format.granuleLg2 - 3;
    this.root = tables.alloc(format.topTableLg2, `${format.name} root`);
  }

  /** Bytes the format can address: [0, 2^inputBits). */
  get inputBits(): number {
    return inputBits(this.format);
  }

  #entries(level: number): number {
    return level === this.#topLevel ? 2 ** (this.format.topTableLg2 - 3) : 2 ** this.#stride;
  }

  #tableBytes(level: number): number {
    return level === this.#topLevel ? 2 ** this.format.topTableLg2 : 2 ** this.format.granuleLg2;
  }

  #read(pa: number): Uint32Array {
    const page = this.memory.readPage(Math.floor(pa / 4096));
    if (page === null) throw new IommuError("EIO", `page-table page ${hex(pa)} is not RAM`, { pa });
    return page;
  }

  #write(pa: number): Uint32Array {
    const page = this.memory.writePage(Math.floor(pa / 4096));
    if (page === null) throw new IommuError("EIO", `page-table page ${hex(pa)} is not RAM`, { pa });
    return page;
  }

  /**
   * Maps [iova, iova + length) -> [pa, pa + length) with `prot`, using the largest
   * leaves that alignment allows. EINVAL: misaligned or beyond the input size; EEXIST:
   * any part already mapped; ENOMEM: table allocation failed. Atomic.
   */
  map(iova: number, pa: number, length: number, prot: number): void {
    const g = 2 ** this.format.granuleLg2;
    if (length <= 0 || iova % g !== 0 || pa % g !== 0 || length % g !== 0) {
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
    const need = this.#plan(this.#topLevel, this.root, iova, iova + length, pa);
    const fresh: number[] = [];
    try {
      for (let i = 0; i < need; i++)
        fresh.push(this.tables.alloc(this.format.granuleLg2, `${this.format.name} table`));
    } catch (e) {
      for (const t of fresh) this.tables.free(t);
      throw e;
    }
    this.#fill(this.#topLevel, this.root, iova, iova + length, pa, prot, fresh);
  }

  #canLeaf(level: number, base: number, size: number, start: number, end: number, pa: number): boolean {
    return (
      this.format.leafAllowed(level) &&
      start <= base &&
      base + size <= end &&
      (pa + (base - start)) % size === 0
    );
  }

  /** Counts the tables a map needs; throws EEXIST on any existing leaf in range. */
  #plan(level: number, table: number, start: number, end: number, pa: number): number {
    const sizeLg2 = entrySizeLg2(this.format, level);
    const size = 2 ** sizeLg2;
    const span = size * this.#entries(level);
    let count = 0;
    let at = start;
    while (at < end) {
      const base = at - (at % size);
      const next = Math.min(base + size, end);
      let kind: number = EntryKind.EMPTY;
      let child = 0;
      if (table >= 0) {
        const off = (base % span) / size;
        const ea = table + off * 8;
        const words = this.#read(ea);
        const w = (ea & 0xfff) >>> 2;
        kind = this.format.entryKind(words[w]!, words[w + 1]!, level);
        if (kind === EntryKind.TABLE) child = this.format.entryAddress(words[w]!, words[w + 1]!, level);
      }
      if (kind === EntryKind.LEAF) {
        throw new IommuError("EEXIST", `iova ${hex(base)} is already mapped`, { iova: base });
      }
      if (kind === EntryKind.TABLE) {
        count += this.#plan(level - 1, child, at, next, pa + (at - start));
      } else if (!this.#canLeaf(level, base, size, at, next, pa + (at - start))) {
        if (level === 0)
          throw new IommuError("EINVAL", `cannot map ${hex(at)} at the smallest level`, { iova: at });
        count += 1 + this.#plan(level - 1, -1, at, next, pa + (at - start));
      }
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
    const sizeLg2 = entrySizeLg2(fmt, level);
    const size = 2 ** sizeLg2;
    const span = size * this.#entries(level);
    let at = start;
    while (at < end) {
      const base = at - (at % size);
      const next = Math.min(base + size, end);
      const ea = table + ((base % span) / size) * 8;
      const words = this.#write(ea);
      const w = (ea & 0xfff) >>> 2;
      const kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
      const oa = pa + (at - start);
      if (kind === EntryKind.TABLE) {
        this.#fill(level - 1, fmt.entryAddress(words[w]!, words[w + 1]!, level), at, next, oa, prot, fresh);
      } else if (this.#canLeaf(level, base, size, at, next, oa)) {
        fmt.encodeLeaf(oa, level, prot, scratch);
        words[w] = scratch[0]!;
        words[w + 1] = scratch[1]!;
      } else {
        const child = fresh.pop()!;
        this.#fill(level - 1, child, at, next, oa, prot, fresh);
        fmt.encodeTable(child, level, scratch);
        words[w] = scratch[0]!;
        words[w + 1] = scratch[1]!;
      }
      at = next;
    }
  }

  /**
   * Unmaps every leaf inside [iova, iova + length), freeing tables left empty. Returns
   * the bytes unmapped. EINVAL (nothing changed) if a leaf straddles either end.
   */
  unmap(iova: number, length: number): number {
    if (length <= 0) return 0;
    this.#checkSplit(this.#topLevel, this.root, iova, iova + length);
    return this.#clear(this.#topLevel, this.root, iova, iova + length);
  }

  #checkSplit(level: number, table: number, start: number, end: number): void {
    const size = 2 ** entrySizeLg2(this.format, level);
    const span = size * this.#entries(level);
    let at = start;
    const stop = Math.min(end, start - (start % span) + span);
    while (at < stop) {
      const base = at - (at % size);
      const next = Math.min(base + size, stop);
      const ea = table + ((base % span) / size) * 8;
      const words = this.#read(ea);
      const w = (ea & 0xfff) >>> 2;
      const kind = this.format.entryKind(words[w]!, words[w + 1]!, level);
      if (kind === EntryKind.LEAF && (base < start || base + size > end)) {
        throw new IommuError(
          "EINVAL",
          `unmap ${hex(start)}..${hex(end)} would split the ${hex(size)} page at ${hex(base)}`,
          {
            iova: base,
          },
        );
      }
      if (kind === EntryKind.TABLE) {
        this.#checkSplit(level - 1, this.format.entryAddress(words[w]!, words[w + 1]!, level), at, next);
      }
      at = next;
    }
  }

  #clear(level: number, table: number, start: number, end: number): number {
    const size = 2 ** entrySizeLg2(this.format, level);
    const span = size * this.#entries(level);
    let at = start;
    let done = 0;
    const stop = Math.min(end, start - (start % span) + span);
    while (at < stop) {
      const base = at - (at % size);
      const next = Math.min(base + size, stop);
      const ea = table + ((base % span) / size) * 8;
      const words = this.#write(ea);
      const w = (ea & 0xfff) >>> 2;
      const kind = this.format.entryKind(words[w]!, words[w + 1]!, level);
      if (kind === EntryKind.LEAF) {
        words[w] = 0;
        words[w + 1] = 0;
        done += size;
      } else if (kind === EntryKind.TABLE) {
        const child = this.format.entryAddress(words[w]!, words[w + 1]!, level);
        done += this.#clear(level - 1, child, at, next);
        if (this.#isEmpty(child, this.#tableBytes(level - 1))) {
          words[w] = 0;
          words[w + 1] = 0;
          this.tables.free(child);
        }
      }
      at = next;
    }
    return done;
  }

  #isEmpty(table: number, bytes: number): boolean {
    for (let off = 0; off < bytes; off += 4096) {
      const words = this.#read(table + off);
      for (let i = 0; i < 1024; i++) if (words[i] !== 0) return false;
    }
    return true;
  }

  /** The leaf translating `iova`, or null (a software walk of the host's own table). */
  lookup(iova: number): PtLeaf | null {
    if (iova < 0 || iova >= 2 ** this.inputBits) return null;
    let table = this.root;
    for (let level = this.#topLevel; level >= 0; level--) {
      const size = 2 ** entrySizeLg2(this.format, level);
      const span = size * this.#entries(level);
      const ea = table + Math.floor((iova % span) / size) * 8;
      const words = this.#read(ea);
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
    this.#visit(this.#topLevel, this.root, iova, iova + length, visit);
  }

  #visit(level: number, table: number, start: number, end: number, visit: LeafVisitor): void {
    const sizeLg2 = entrySizeLg2(this.format, level);
    const size = 2 ** sizeLg2;
    const span = size * this.#entries(level);
    let at = start;
    const stop = Math.min(end, start - (start % span) + span);
    while (at < stop) {
      const base = at - (at % size);
      const next = Math.min(base + size, stop);
      const ea = table + ((base % span) / size) * 8;
      const words = this.#read(ea);
      const w = (ea & 0xfff) >>> 2;
      const kind = this.format.entryKind(words[w]!, words[w + 1]!, level);
      if (kind === EntryKind.LEAF) visit(base, sizeLg2, this.#write(ea), w, level);
      else if (kind === EntryKind.TABLE) {
        this.#visit(level - 1, this.format.entryAddress(words[w]!, words[w + 1]!, level), at, next, visit);
      }
      at = next;
    }
  }

  /** Frees every table including the root. The table must not be used afterwards. */
  destroy(): void {
    this.#destroy(this.#topLevel, this.root);
  }

  #destroy(level: number, table: number): void {
    if (level > 0) {
      const n = this.#entries(level);
      for (let i = 0; i < n; i++) {
        const ea = table + i * 8;
        const words = this.#read(ea);
        const w = (ea & 0xfff) >>> 2;
        if (this.format.entryKind(words[w]!, words[w + 1]!, level) === EntryKind.TABLE) {
          this.#destroy(level - 1, this.format.entryAddress(words[w]!, words[w + 1]!, level));
        }
      }
    }
    this.tables.free(table);
  }
}
