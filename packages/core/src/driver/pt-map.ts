/**
 * The unmap fast lane of the generic page table (page-table.ts): a run of granule pages
 * that lies inside one existing level-0 table page is cleared with one walk down to that
 * table and one tight loop over its entries, the shape of generic_pt's __unmap_range
 * at its lowest level (drivers/iommu/generic_pt/iommu_pt.h) where every entry in range
 * is a whole page, so no straddle check is needed. Anything else (blocks, runs over two
 * tables, formats without {@link PtFormat.pageBits}, a table the run leaves empty) goes
 * through {@link PageTable.unmap}, with the same result. Levels follow generic_pt: 0 maps
 * the granule, `levels - 1` is the top (VMSAv8-64 lookup level 3 = 0; VT-d PTE = 0).
 */

import type { PageTable } from "./page-table.ts";
import { EntryKind } from "./pt-format.ts";
import { zeroPage } from "./pt-unmap.ts";

const PAGE = 4096;
/** 2^n for n < 64 (Math.pow is a call on this path). */
const POW2: Float64Array = Float64Array.from({ length: 64 }, (_, n) => 2 ** n);

/**
 * What one unmap changed, for the invalidation that follows it: the shape of Linux's
 * struct iommu_iotlb_gather (include/linux/iommu.h) as the drivers read it. Reused by
 * the caller (no allocation per unmap).
 */
export interface UnmapGather {
  /**
   * log2 of the size of every leaf cleared when they were all one size (gather->pgsize:
   * SMMUv3 derives TTL from it), or -1 when unknown or mixed.
   */
  pgsizeLg2: number;
  /**
   * True when page-table pages were freed, or may have been (gather->freelist not empty:
   * VT-d then clears IH, SMMUv3 invalidates walks as well as leaves).
   */
  freed: boolean;
}

/** A gather for callers that do not read it. */
const IGNORED: UnmapGather = { pgsizeLg2: -1, freed: true };

/**
 * Unmaps every leaf in [iova, iova + length) of `pt` and returns the bytes unmapped, as
 * {@link PageTable.unmap} does (tables left empty are freed; EINVAL, nothing changed, when
 * a leaf straddles either end), and fills `gather`. Faster when the run is granule-aligned
 * and sits inside one level-0 table page that exists: then its pages are cleared in place.
 */
export function unmapRun(pt: PageTable, iova: number, length: number, gather: UnmapGather = IGNORED): number {
  const fmt = pt.format;
  const bits = fmt.pageBits;
  const g = fmt.granuleLg2;
  const top = fmt.levels - 1;
  const gs = POW2[g]!;
  if (bits === undefined || top === 0 || !(length > 0) || iova % gs !== 0 || length % gs !== 0)
    return general(pt, iova, length, gather);
  const stride = g - 3;
  const span1 = POW2[g + stride]!;
  // The run must fit one level-1 entry (one level-0 table) ...
  if (Math.floor(iova / span1) !== Math.floor((iova + length - 1) / span1))
    return general(pt, iova, length, gather);
  const memory = pt.memory;
  let table = pt.root;
  for (let level = top; level >= 1; level--) {
    const entries = POW2[(level === top ? fmt.topTableLg2 : g) - 3]!;
    const ea = table + (Math.floor(iova / POW2[g + level * stride]!) % entries) * 8;
    const words = memory.readPage(Math.floor(ea / PAGE));
    if (words === null) return general(pt, iova, length, gather);
    const w = (ea & 0xfff) >>> 2;
    const lo = words[w]!;
    const hi = words[w + 1]!;
    if (fmt.entryKind(lo, hi, level) !== EntryKind.TABLE) return general(pt, iova, length, gather);
    table = fmt.entryAddress(lo, hi, level);
  }
  const entries0 = POW2[stride]!;
  const first = Math.floor(iova / gs) % entries0;
  const n = length / gs;
  const at = table + first * 8;
  // ... and one page of it (always, with the 4 KiB granule).
  if ((at & 0xfff) + n * 8 > PAGE) return general(pt, iova, length, gather);
  const words = memory.writePage(Math.floor(at / PAGE));
  if (words === null) return general(pt, iova, length, gather);
  const any = bits.any;
  const all = bits.all;
  const w0 = (at & 0xfff) >>> 2;
  const end = w0 + 2 * n;
  let pages = 0;
  // Only pages are cleared (what clearRange clears at level 0): the format's pageBits rule.
  for (let w = w0; w < end; w += 2) {
    const lo = words[w]!;
    if ((lo & any) !== 0 && (lo & all) === all) {
      words[w] = 0;
      words[w + 1] = 0;
      pages++;
    }
  }
  // A used neighbour keeps the table (as pt-unmap.ts emptied); else scan it, and let the
  // general unmap free it when it is empty (it finds nothing left to clear there).
  const neighbour =
    (first + n < entries0 && used(memory, table + (first + n) * 8)) ||
    (first > 0 && used(memory, table + (first - 1) * 8));
  const freed = !neighbour && isEmptyTable(memory, table, POW2[g]!);
  if (freed) pt.unmap(iova, length);
  gather.pgsizeLg2 = g;
  gather.freed = freed;
  return pages * gs;
}

/** PageTable.unmap, the gather told only whether table blocks were freed (leaf sizes unknown). */
function general(pt: PageTable, iova: number, length: number, gather: UnmapGather): number {
  if (gather === IGNORED) return pt.unmap(iova, length);
  const before = pt.tables.stats().blocks;
  const done = pt.unmap(iova, length);
  gather.pgsizeLg2 = -1;
  gather.freed = pt.tables.stats().blocks !== before;
  return done;
}

function used(memory: PageTable["memory"], ea: number): boolean {
  const words = memory.readPage(Math.floor(ea / PAGE));
  if (words === null) return true;
  const w = (ea & 0xfff) >>> 2;
  return (words[w]! | words[w + 1]!) !== 0;
}

function isEmptyTable(memory: PageTable["memory"], table: number, bytes: number): boolean {
  for (let off = 0; off < bytes; off += PAGE) {
    const words = memory.readPage(Math.floor((table + off) / PAGE));
    if (words === null || !zeroPage(words)) return false;
  }
  return true;
}
