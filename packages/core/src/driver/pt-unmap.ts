/**
 * The unmap half of the generic page table (page-table.ts): range clearing, the
 * straddle check that keeps unmap atomic, subtree teardown with page counting, and
 * the emptiness tests that free tables left empty; in generic_pt terms the
 * clear/unmap walk (drivers/iommu/generic_pt/iommu_pt.h, __unmap_range). Levels follow
 * generic_pt: 0 maps the granule, `levels - 1` is the top (each format file maps the
 * spec's names, e.g. VT-d PTE = 0 ... PML5E = 4, VMSAv8-64 lookup level 3 = 0). Free
 * functions over a {@link PtGeometry}, so the class stays small.
 */

import { hex, IommuError } from "../errors.ts";
import type { PhysicalMemory } from "../memory/physical-memory.ts";
import type { TableAllocator } from "../memory/table-allocator.ts";
import { EntryKind, type PtFormat } from "./pt-format.ts";

const PAGE = 4096;
/** A page of zeros: the "no page read yet" value of the scan loops. */
export const EMPTY_WORDS: Uint32Array = new Uint32Array(1024);

/** What the table walks need of one page table: its format and per-level geometry. */
export interface PtGeometry {
  readonly format: PtFormat;
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  /** Bytes mapped by one entry, per level. */
  readonly size: readonly number[];
  /** Entries per table, per level. */
  readonly entries: readonly number[];
  /** Bytes of a table, per level. */
  readonly bytes: readonly number[];
}

/** The words of table page `pfn` for reading; EIO when it is not RAM. */
export function readTable(memory: PhysicalMemory, pfn: number): Uint32Array {
  const page = memory.readPage(pfn);
  if (page === null) throw new IommuError("EIO", `page-table page ${hex(pfn * PAGE)} is not RAM`, { pfn });
  return page;
}

/** The words of table page `pfn` for writing; EIO when it is not RAM. */
export function writeTable(memory: PhysicalMemory, pfn: number): Uint32Array {
  const page = memory.writePage(pfn);
  if (page === null) throw new IommuError("EIO", `page-table page ${hex(pfn * PAGE)} is not RAM`, { pfn });
  return page;
}

/** EINVAL (nothing changed) when a leaf straddles an end of [start, end). */
export function checkSplit(g: PtGeometry, level: number, table: number, start: number, end: number): void {
  const fmt = g.format;
  const size = g.size[level]!;
  const span = size * g.entries[level]!;
  const stop = Math.min(end, start - (start % span) + span);
  if (level === 0) {
    // Only the first and last entries can straddle the range.
    for (const at of [start, stop - 1]) {
      const base = at - (at % size);
      if (base >= start && base + size <= end) continue;
      const ea = table + ((base % span) / size) * 8;
      const words = readTable(g.memory, Math.floor(ea / PAGE));
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
    const words = readTable(g.memory, Math.floor(ea / PAGE));
    const w = (ea & 0xfff) >>> 2;
    const kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
    if (kind === EntryKind.LEAF && (base < start || base + size > end))
      throw splitError(start, end, size, base);
    if (kind === EntryKind.TABLE)
      checkSplit(g, level - 1, fmt.entryAddress(words[w]!, words[w + 1]!, level), at, next);
    at = next;
  }
}

export function clearRange(g: PtGeometry, level: number, table: number, start: number, end: number): number {
  const fmt = g.format;
  const size = g.size[level]!;
  const span = size * g.entries[level]!;
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
        words = writeTable(g.memory, p);
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
    let words = writeTable(g.memory, Math.floor(ea / PAGE));
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
        done += dropTable(g, level - 1, child);
        words = writeTable(g.memory, Math.floor(ea / PAGE));
        words[w] = 0;
        words[w + 1] = 0;
        at = next;
        continue;
      }
      done += clearRange(g, level - 1, child, at, next);
      if (emptied(g, level - 1, child, at, next)) {
        words = writeTable(g.memory, Math.floor(ea / PAGE));
        words[w] = 0;
        words[w + 1] = 0;
        g.tables.free(child);
      }
    }
    at = next;
  }
  return done;
}

/** Bytes mapped under `table` (a table at `level`); frees it and every table below it. */
export function dropTable(g: PtGeometry, level: number, table: number): number {
  const fmt = g.format;
  const size = g.size[level]!;
  let done = 0;
  const bits = fmt.pageBits;
  if (level === 0 && bits !== undefined) {
    // Pages only: count them in place, one table page at a time.
    const any = bits.any;
    const all = bits.all;
    const bytes = g.bytes[0]!;
    let pages = 0;
    for (let off = 0; off < bytes; off += PAGE) {
      const words = readTable(g.memory, Math.floor((table + off) / PAGE));
      for (let w = 0; w < 1024; w += 2) {
        const lo = words[w]!;
        if ((lo & any) !== 0 && (lo & all) === all) pages++;
      }
    }
    g.tables.free(table);
    return pages * size;
  }
  let pfn = -1;
  let words: Uint32Array = EMPTY_WORDS;
  for (let i = 0; i < g.entries[level]!; i++) {
    const ea = table + i * 8;
    const p = Math.floor(ea / PAGE);
    if (p !== pfn) {
      words = readTable(g.memory, p);
      pfn = p;
    }
    const w = (ea & 0xfff) >>> 2;
    const kind = fmt.entryKind(words[w]!, words[w + 1]!, level);
    if (kind === EntryKind.LEAF) done += size;
    else if (kind === EntryKind.TABLE) {
      done += dropTable(g, level - 1, fmt.entryAddress(words[w]!, words[w + 1]!, level));
      pfn = -1; // the child's free may have released pages
    }
  }
  g.tables.free(table);
  return done;
}

/**
 * True when `table` (at `level`) is empty once [start, end) inside it was cleared. A used
 * neighbour of the range answers without a scan (unmapping piece by piece, upward or
 * downward, always has one).
 */
export function emptied(g: PtGeometry, level: number, table: number, start: number, end: number): boolean {
  const size = g.size[level]!;
  const n = g.entries[level]!;
  const span = size * n;
  const first = Math.floor((start % span) / size);
  const last = Math.floor(((end - 1) % span) / size);
  if (last + 1 < n && used(g, table + (last + 1) * 8)) return false;
  if (first > 0 && used(g, table + (first - 1) * 8)) return false;
  return isEmpty(g, table, g.bytes[level]!);
}

/** True when the entry at `ea` has any bit set. */
export function used(g: PtGeometry, ea: number): boolean {
  const words = readTable(g.memory, Math.floor(ea / PAGE));
  const w = (ea & 0xfff) >>> 2;
  return (words[w]! | words[w + 1]!) !== 0;
}

export function isEmpty(g: PtGeometry, table: number, bytes: number): boolean {
  for (let off = 0; off < bytes; off += PAGE)
    if (!zeroPage(readTable(g.memory, Math.floor((table + off) / PAGE)))) return false;
  return true;
}

/**
 * True when every word of a table page is zero. Eight words are ORed per test: an
 * emptied table is scanned to its end, and one branch per word was most of an unmap's
 * cost.
 */
export function zeroPage(words: Uint32Array): boolean {
  for (let i = 0; i < 1024; i += 8) {
    if (
      (words[i]! |
        words[i + 1]! |
        words[i + 2]! |
        words[i + 3]! |
        words[i + 4]! |
        words[i + 5]! |
        words[i + 6]! |
        words[i + 7]!) !==
      0
    )
      return false;
  }
  return true;
}

function splitError(start: number, end: number, size: number, base: number): IommuError {
  return new IommuError(
    "EINVAL",
    `unmap ${hex(start)}..${hex(end)} would split the ${hex(size)} page at ${hex(base)}`,
    {
      iova: base,
    },
  );
}
