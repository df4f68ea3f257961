/**
 * A fast lane for the common map: a run of 4 KiB pages inside one leaf table (one
 * 2 MiB-aligned region) that cannot use a superpage. It walks down to the PDE once,
 * checks the target entries are empty, then writes them in a tight loop, allocating
 * the leaf table when the PDE is empty. Anything else (missing upper tables, existing
 * leaves, superpage-eligible ranges) returns false and the generic PageTable does it,
 * with its EEXIST / ENOMEM semantics. Atomic: the only allocation happens before any
 * write.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import type { PageTable } from "@iommu-kit/core/driver";
import { EntryKind } from "@iommu-kit/core/driver";

const TWO32 = 4294967296;
const SPAN_2M = 0x20_0000;
const scratch = new Uint32Array(2);

/** Maps [iova, iova + length) -> pa with 4K leaves when it fits one leaf table; false otherwise. */
export function fastMap4k(
  t: PageTable,
  memory: PhysicalMemory,
  iova: number,
  pa: number,
  length: number,
  prot: number,
): boolean {
  const fmt = t.format;
  if (iova % 4096 !== 0 || pa % 4096 !== 0 || length % 4096 !== 0 || length <= 0) return false;
  const region = Math.floor(iova / SPAN_2M);
  if (region !== Math.floor((iova + length - 1) / SPAN_2M)) return false;
  if (length === SPAN_2M && pa % SPAN_2M === 0 && fmt.leafAllowed(1)) return false;
  let table = t.root;
  for (let level = fmt.levels - 1; level >= 2; level--) {
    const ea = table + (Math.floor(iova / 2 ** (12 + 9 * level)) % 512) * 8;
    const page = memory.readPage(Math.floor(ea / 4096));
    if (page === null) return false;
    const w = (ea & 0xfff) >>> 2;
    if (fmt.entryKind(page[w]!, page[w + 1]!, level) !== EntryKind.TABLE) return false;
    table = fmt.entryAddress(page[w]!, page[w + 1]!, level);
  }
  const pdeAt = table + (region % 512) * 8;
  const pdePage = memory.writePage(Math.floor(pdeAt / 4096));
  if (pdePage === null) return false;
  const pw = (pdeAt & 0xfff) >>> 2;
  const pdeKind = fmt.entryKind(pdePage[pw]!, pdePage[pw + 1]!, 1);
  if (pdeKind === EntryKind.LEAF) return false;
  const first = (Math.floor(iova / 4096) % 512) * 2;
  const n = length / 4096;
  let leafTable: number;
  let fresh = false;
  if (pdeKind === EntryKind.TABLE) {
    leafTable = fmt.entryAddress(pdePage[pw]!, pdePage[pw + 1]!, 1);
    const words = memory.readPage(Math.floor(leafTable / 4096));
    if (words === null) return false;
    for (let k = 0; k < n; k++) {
      const w = first + k * 2;
      if (fmt.entryKind(words[w]!, words[w + 1]!, 0) !== EntryKind.EMPTY) return false;
    }
  } else {
    leafTable = t.tables.alloc(12, `${fmt.name} table`);
    fresh = true;
  }
  const words = memory.writePage(Math.floor(leafTable / 4096))!;
  fmt.encodeLeaf(pa, 0, prot, scratch);
  const flagsLo = scratch[0]! & 0xfff;
  const flagsHi = scratch[1]! & 0xfff00000;
  const hiFirst = Math.floor(pa / TWO32);
  if (hiFirst === Math.floor((pa + length - 1) / TWO32)) {
    // The common case: no 4 GiB boundary inside the run, one high word for all.
    const hi = (hiFirst | flagsHi) >>> 0;
    const lo0 = pa - hiFirst * TWO32;
    for (let k = 0, w = first; k < n; k++, w += 2) {
      words[w] = ((lo0 + k * 4096) | flagsLo) >>> 0;
      words[w + 1] = hi;
    }
  } else {
    for (let k = 0, w = first; k < n; k++, w += 2) {
      const addr = pa + k * 4096;
      const h = Math.floor(addr / TWO32);
      words[w] = ((addr - h * TWO32) | flagsLo) >>> 0;
      words[w + 1] = (h | flagsHi) >>> 0;
    }
  }
  if (fresh) {
    fmt.encodeTable(leafTable, 1, scratch);
    pdePage[pw] = scratch[0]!;
    pdePage[pw + 1] = scratch[1]!;
  }
  return true;
}

const SPAN_LG2 = [12, 21, 30, 39, 48];

function isEmptyTable(memory: PhysicalMemory, t: PageTable, table: number, level: number): boolean {
  const words = memory.readPage(Math.floor(table / 4096));
  if (words === null) return false;
  for (let w = 0; w < 1024; w += 2)
    if (t.format.entryKind(words[w]!, words[w + 1]!, level) !== EntryKind.EMPTY) return false;
  return true;
}

/** True when no leaf at level >= 2 straddles [start, end) (such a split is the generic path's EINVAL). */
function noSplit(
  memory: PhysicalMemory,
  t: PageTable,
  level: number,
  table: number,
  start: number,
  end: number,
): boolean {
  const fmt = t.format;
  const span = 2 ** SPAN_LG2[level]!;
  for (let at = start; at < end; ) {
    const base = Math.floor(at / span) * span;
    const next = Math.min(base + span, end);
    const ea = table + (Math.floor(at / span) & 511) * 8;
    const page = memory.readPage(Math.floor(ea / 4096));
    if (page === null) return false;
    const w = (ea & 0xfff) >>> 2;
    const kind = fmt.entryKind(page[w]!, page[w + 1]!, level);
    if (kind === EntryKind.LEAF && (base < start || base + span > end)) return false;
    if (kind === EntryKind.TABLE && level > 1) {
      if (!noSplit(memory, t, level - 1, fmt.entryAddress(page[w]!, page[w + 1]!, level), at, next))
        return false;
    }
    at = next;
  }
  return true;
}

function clearAligned(
  memory: PhysicalMemory,
  t: PageTable,
  level: number,
  table: number,
  start: number,
  end: number,
): number {
  const fmt = t.format;
  const span = 2 ** SPAN_LG2[level]!;
  let done = 0;
  for (let at = start; at < end; ) {
    const base = Math.floor(at / span) * span;
    const next = Math.min(base + span, end);
    const ea = table + (Math.floor(at / span) & 511) * 8;
    const page = memory.writePage(Math.floor(ea / 4096))!;
    const w = (ea & 0xfff) >>> 2;
    const kind = fmt.entryKind(page[w]!, page[w + 1]!, level);
    if (kind === EntryKind.LEAF) {
      page[w] = 0;
      page[w + 1] = 0;
      done += span;
    } else if (kind === EntryKind.TABLE) {
      const child = fmt.entryAddress(page[w]!, page[w + 1]!, level);
      if (level === 1) {
        // A whole leaf table inside the range: count its leaves and free it in one go.
        const words = memory.readPage(Math.floor(child / 4096))!;
        for (let k = 0; k < 1024; k += 2)
          if (fmt.entryKind(words[k]!, words[k + 1]!, 0) === EntryKind.LEAF) done += 4096;
        page[w] = 0;
        page[w + 1] = 0;
        t.tables.free(child);
      } else {
        done += clearAligned(memory, t, level - 1, child, at, next);
        if (isEmptyTable(memory, t, child, level - 1)) {
          page[w] = 0;
          page[w + 1] = 0;
          t.tables.free(child);
        }
      }
    }
    at = next;
  }
  return done;
}

/**
 * Unmaps a 2 MiB-aligned range, dropping whole leaf tables without clearing their
 * entries one by one (the allocator zeroes freed blocks); frees tables left empty,
 * as the generic path does. Returns the bytes unmapped, or -1 when the range is not
 * 2 MiB-aligned or a larger leaf straddles it (the generic path then decides).
 */
export function fastUnmapAligned(t: PageTable, memory: PhysicalMemory, iova: number, length: number): number {
  if (length <= 0 || iova % SPAN_2M !== 0 || length % SPAN_2M !== 0) return -1;
  const end = iova + length;
  if (end > 2 ** (12 + 9 * t.format.levels)) return -1;
  const top = t.format.levels - 1;
  if (!noSplit(memory, t, top, t.root, iova, end)) return -1;
  return clearAligned(memory, t, top, t.root, iova, end);
}
