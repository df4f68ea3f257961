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
 * before it clears anything. The format interface is in pt-format.ts; the unmap walks
 * (clear, straddle check, teardown) are in pt-unmap.ts.
 */

import { hex, IommuError } from "../errors.ts";
import type { PhysicalMemory } from "../memory/physical-memory.ts";
import type { TableAllocator } from "../memory/table-allocator.ts";
import type { LeafVisitor, PtFormat, PtLeaf } from "./pt-format.ts";
import { EntryKind, entrySizeLg2, inputBits } from "./pt-format.ts";
import type { PtGeometry } from "./pt-unmap.ts";
import { checkSplit, clearRange, EMPTY_WORDS, emptied, readTable, writeTable } from "./pt-unmap.ts";

// The format interface lives in pt-format.ts; re-exported for importers of this path.
export type { LeafVisitor, PtFormat, PtLeaf } from "./pt-format.ts";
export { EntryKind, entrySizeLg2, inputBits } from "./pt-format.ts";

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
  /** The geometry the unmap walks (pt-unmap.ts) read. */
  readonly #g: PtGeometry;

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
    this.#g = {
      format,
      memory: this.memory,
      tables,
      size: this.#size,
      entries: this.#entries,
      bytes: this.#bytes,
    };
    this.root = tables.alloc(format.topTableLg2, `${format.name} root`);
  }

  /** Bytes the format can address: [0, 2^inputBits). */
  get inputBits(): number {
    return inputBits(this.format);
  }

  #read(pfn: number): Uint32Array {
    return readTable(this.memory, pfn);
  }

  #write(pfn: number): Uint32Array {
    return writeTable(this.memory, pfn);
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
        const done = clearRange(this.#g, 0, table, iova, iova + length);
        if (emptied(this.#g, 0, table, iova, iova + length))
          clearRange(this.#g, this.#top, this.root, iova, iova + length);
        return done;
      }
    }
    checkSplit(this.#g, this.#top, this.root, iova, iova + length);
    return clearRange(this.#g, this.#top, this.root, iova, iova + length);
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
