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

/**
 * Bytes (at most `remaining`) of the physically contiguous run that starts at offset
 * `off` of page pas[i]: that page's tail plus every following page of `pas` (up to
 * `pages`) whose frame is the next one.
 */
function paRun(pas: Float64Array, i: number, pages: number, off: number, remaining: number): number {
  let n = Math.min(PAGE - off, remaining);
  let next = pas[i]! + PAGE;
  for (let j = i + 1; j < pages && n < remaining; j++) {
    if (pas[j] !== next) break;
    next += PAGE;
    n += Math.min(PAGE, remaining - n);
  }
  return n;
}

/**
 * Copies `dst.length` bytes from IOVA `iova` into `dst`. `pas[i]` is the physical page of
 * the i-th IOVA page touched, every one already checked to be RAM. Each physically
 * contiguous run is one PhysicalMemory.readRange (one copy where its pages sit one after
 * another in a memory slab).
 */
export function copyOut(memory: PhysicalMemory, pas: Float64Array, iova: number, dst: Uint8Array): void {
  const length = dst.length;
  const pages = Math.ceil((pageOffset(iova) + length) / PAGE);
  let off = pageOffset(iova);
  let done = 0;
  let i = 0;
  while (done < length) {
    const n = paRun(pas, i, pages, off, length - done);
    memory.readRange(pas[i]! + off, dst, done, n);
    i += Math.ceil((off + n) / PAGE);
    done += n;
    off = 0;
  }
}

/** Copies `src` to IOVA `iova`, through the physical pages `pas` (checked RAM), run by run (as copyOut). */
export function copyIn(memory: PhysicalMemory, pas: Float64Array, iova: number, src: Uint8Array): void {
  const length = src.length;
  const pages = Math.ceil((pageOffset(iova) + length) / PAGE);
  let off = pageOffset(iova);
  let done = 0;
  let i = 0;
  while (done < length) {
    const n = paRun(pas, i, pages, off, length - done);
    memory.writeRange(pas[i]! + off, src, done, n);
    i += Math.ceil((off + n) / PAGE);
    done += n;
    off = 0;
  }
}
