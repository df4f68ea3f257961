/**
 * The emulated path's hot loops: translate through a software IOTLB (the parent
 * driver's cache of the emulated table), then the table on a miss; and the byte copies
 * of read/write through an IOVA, one page at a time straight between physical pages
 * and the caller's buffer. No allocation on a hit, no closures, no BigInt.
 */

import type { PhysicalMemory, Translation } from "@iommu-kit/core";
import { Access, Perm } from "@iommu-kit/core";
import { FastIotlb, iotlbMeta } from "@iommu-kit/core/driver";
import type { EmulatedTable } from "./format/emulated-table.ts";
import {
  chunkOf,
  EntryBit,
  entryFlags,
  IOVA_LIMIT,
  leafLg2,
  PAGE,
  PERM_MASK,
  pageOffset,
  slotOf,
} from "./format/emulated-table.ts";
import type { MdevFaultCodeValue } from "./format/fault.ts";
import { MdevFaultCode, mdevFault } from "./format/fault.ts";

/** IOTLB meta bit (vendor bits 24:0 are ours; perm sits in 2:0): the page is known dirty. */
const TLB_DIRTY = 8;
/** Core's leaf-size field of a meta word (IotlbMeta.SIZE_SHIFT). */
const SIZE_SHIFT = 26;

/** What the fast path needs of a domain. */
export interface FastPathDomain {
  /** IOTLB tag: unique per backend. */
  readonly id: number;
  readonly table: EmulatedTable;
  /** Dirty tracking currently on. */
  readonly tracking: boolean;
}

/** The translation cache and its counters (one per backend). */
export class EmulatedFastPath {
  /** Cached pages, tagged by domain id (one tag per group); meta: perm in 2:0, TLB_DIRTY. */
  readonly tlb: FastIotlb;
  hits = 0;
  misses = 0;
  walks = 0;

  constructor(iotlbSizeLg2: number) {
    this.tlb = new FastIotlb(iotlbSizeLg2);
  }

  /**
   * Translates `iova` for mdev `rid` through `dom`: IOTLB first, the table on a miss.
   * A tracked write through an entry not yet known dirty walks so the page gets D.
   */
  translate(
    dom: FastPathDomain,
    rid: number,
    pasid: number,
    iova: number,
    access: number,
    out: Translation,
  ): boolean {
    if (!(iova >= 0 && iova < IOVA_LIMIT)) {
      return fail(out, MdevFaultCode.MDEV_BEYOND_APERTURE, rid, pasid, iova, access);
    }
    const write = (access & Access.WRITE) !== 0;
    const need = write ? Perm.W : access & Access.EXEC ? Perm.X | Perm.R : Perm.R;
    const vpn = Math.floor(iova / PAGE);
    const off = iova - vpn * PAGE;
    const tlb = this.tlb;
    const slot = tlb.lookup(dom.id, vpn);
    const meta = slot >= 0 ? tlb.data[(slot << 2) + 3]! : 0;
    if (slot >= 0 && !(write && dom.tracking && (meta & TLB_DIRTY) === 0)) {
      this.hits++;
      const perm = meta & 7;
      if ((perm & need) !== need) return fail(out, MdevFaultCode.MDEV_PERMISSION, rid, pasid, iova, access);
      out.pa = tlb.data[(slot << 2) + 2]! + off;
      out.perm = perm;
      out.sizeLg2 = meta >>> SIZE_SHIFT;
      out.fault = null;
      return true;
    }
    this.misses++;
    this.walks++;
    const chunk = dom.table.chunk(chunkOf(iova));
    const s = slotOf(iova);
    const e = chunk === undefined ? 0 : chunk[s]!;
    if (e === 0) return fail(out, MdevFaultCode.MDEV_UNMAPPED, rid, pasid, iova, access);
    const flags = entryFlags(e);
    const perm = flags & PERM_MASK;
    if ((perm & need) !== need) return fail(out, MdevFaultCode.MDEV_PERMISSION, rid, pasid, iova, access);
    let dirty = flags & EntryBit.D ? 1 : 0;
    if (write && dom.tracking && dirty === 0) {
      chunk![s] = e + EntryBit.D;
      dirty = 1;
    }
    const pa = e - flags;
    const size = leafLg2(flags);
    tlb.insert(dom.id, vpn, pa, iotlbMeta(perm | (dirty ? TLB_DIRTY : 0), size));
    out.pa = pa + off;
    out.perm = perm;
    out.sizeLg2 = size;
    out.fault = null;
    return true;
  }
}

function fail(
  out: Translation,
  code: MdevFaultCodeValue,
  rid: number,
  pasid: number,
  iova: number,
  access: number,
): false {
  out.fault = mdevFault(code, rid, pasid, iova, access);
  return false;
}

/** Where a physical page's bytes sit: a byte view of its whole backing buffer and the offset in it. */
interface PageBytes {
  readonly bytes: Uint8Array;
  readonly off: number;
}

// Reading `.buffer` / `.byteOffset` of a page view costs more than a hash lookup, so each
// page's location is worked out once. Keyed by the page array itself, not its frame
// number: PhysicalMemory may give a released page array to another frame, and the bytes
// stay where the array is.
const pageBytesCache = new WeakMap<Uint32Array, PageBytes>();
const bufferBytes = new WeakMap<ArrayBufferLike, Uint8Array>();

function pageBytes(page: Uint32Array): PageBytes {
  let r = pageBytesCache.get(page);
  if (r === undefined) {
    const buf = page.buffer;
    let bytes = bufferBytes.get(buf);
    if (bytes === undefined) {
      bytes = new Uint8Array(buf);
      bufferBytes.set(buf, bytes);
    }
    r = { bytes, off: page.byteOffset };
    pageBytesCache.set(page, r);
  }
  return r;
}

/**
 * Bytes (at most `remaining`) that can be copied in one go from offset `off` of page
 * `run` = pas[i - 1]: that page's tail plus every following page of `pas` (from index
 * `i`) that sits right after it in the same buffer. `write` looks pages up for writing.
 */
function runLength(
  memory: PhysicalMemory,
  pas: Float64Array,
  i: number,
  run: PageBytes,
  off: number,
  remaining: number,
  write: boolean,
): number {
  let n = Math.min(PAGE - off, remaining);
  let next = run.off + PAGE;
  while (n < remaining) {
    const pfn = pas[i++]! / PAGE;
    const p = pageBytes(write ? memory.writePage(pfn)! : memory.readPage(pfn)!);
    if (p.bytes !== run.bytes || p.off !== next) break;
    next += PAGE;
    n += Math.min(PAGE, remaining - n);
  }
  return n;
}

/** IOVA pages a run of `n` bytes starting at page offset `off` covers. */
function runPages(off: number, n: number): number {
  return Math.ceil((off + n) / PAGE);
}

/**
 * Copies `dst.length` bytes from IOVA `iova` into `dst`. `pas[i]` is the physical page of
 * the i-th IOVA page touched, every one already checked to be RAM. Pages that sit one
 * after another in the same memory slab are copied in one go.
 */
export function copyOut(memory: PhysicalMemory, pas: Float64Array, iova: number, dst: Uint8Array): void {
  const length = dst.length;
  let off = pageOffset(iova);
  let done = 0;
  let i = 0;
  while (done < length) {
    const run = pageBytes(memory.readPage(pas[i]! / PAGE)!);
    const n = runLength(memory, pas, i + 1, run, off, length - done, false);
    const from = run.off + off;
    dst.set(run.bytes.subarray(from, from + n), done);
    i += runPages(off, n);
    done += n;
    off = 0;
  }
}

/** Copies `src` to IOVA `iova`, through the physical pages `pas` (checked RAM), run by run. */
export function copyIn(memory: PhysicalMemory, pas: Float64Array, iova: number, src: Uint8Array): void {
  const length = src.length;
  let off = pageOffset(iova);
  let done = 0;
  let i = 0;
  while (done < length) {
    const run = pageBytes(memory.writePage(pas[i]! / PAGE)!);
    const n = runLength(memory, pas, i + 1, run, off, length - done, true);
    run.bytes.set(n === length ? src : src.subarray(done, done + n), run.off + off);
    i += runPages(off, n);
    done += n;
    off = 0;
  }
}
