/**
 * The IO address space's bookkeeping, after iommufd's `struct io_pagetable`
 * (drivers/iommu/iommufd/io_pagetable.c): sorted, non-overlapping areas, the
 * allowed ranges (IOMMU_IOAS_ALLOW_IOVAS) and the reserved ranges the attached
 * domains and devices impose (apertures, MSI windows). The table itself is pure data;
 * ioas.ts propagates each change to the domains with the three helpers at the end of
 * this file (iopt_fill_domain, iopt_unfill_domain, and the per-domain loop of
 * iopt_map_pages), and the argument checks every host operation shares live here too.
 *
 * Area rules (iopt_check_iova, iopt_unmap_iova_range): a fixed IOVA must be aligned
 * (EINVAL), must not overflow (EOVERFLOW), must avoid reserved ranges (EINVAL) and
 * existing areas (EEXIST); an unmap must cover whole areas (ENOENT otherwise or when
 * nothing is mapped). Automatic IOVAs (iopt_alloc_iova) are aligned to
 * roundup_pow_of_two(length), lowered to the lowest set bit of the physical address,
 * never below the IOAS alignment, first fit from the bottom of the allowed ranges.
 */

import type { Domain, IovaRange } from "@iommu-kit/core";
import { hex, IommuError } from "@iommu-kit/core";
import type { Pages } from "./pages.ts";

/** The highest IOVA the host handles (addresses are numbers below 2^53; iommufd's is ULONG_MAX). */
export const MAX_IOVA: number = Number.MAX_SAFE_INTEGER;

/**
 * The most bytes one host call copies into a new buffer (`memRead`, a DMA or access
 * read, a dirty bitmap, a pin's page list): 64 MiB. Larger is E2BIG, as iommufd
 * refuses oversized user buffers (iommufd_ioas_iova_ranges, iopt_read_and_clear_dirty_data).
 */
export const MAX_TRANSFER: number = 2 ** 26;

/** One mapping of an IOAS: [iova, iova + length) -> [pages.pa + offset, ...). */
export interface Area {
  readonly iova: number;
  readonly length: number;
  readonly pages: Pages;
  /** Offset of the first byte inside `pages`. */
  readonly offset: number;
  /** Perm bits (R, W). */
  readonly prot: number;
}

/** EINVAL unless `length` is a positive safe integer (every length argument of the host). */
export function checkLength(length: number): void {
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw new IommuError("EINVAL", `length ${length} must be a positive integer`, { length });
  }
}

/** EINVAL unless `iova` is a non-negative safe integer. */
export function checkIova(iova: number): void {
  if (!Number.isSafeInteger(iova) || iova < 0) throw new IommuError("EINVAL", `bad iova ${iova}`, { iova });
}

/**
 * EINVAL unless `length` is a positive safe integer, E2BIG above {@link MAX_TRANSFER}:
 * every length the host turns into a new buffer (a read's result).
 */
export function checkTransfer(length: number): void {
  checkLength(length);
  if (length > MAX_TRANSFER) {
    throw new IommuError("E2BIG", `length ${hex(length)} exceeds MAX_TRANSFER (${hex(MAX_TRANSFER)})`, {
      length,
    });
  }
}

/** The PASID width of PCIe (PCIe 6.0 §6.20, 20 bits) and so of SMMUv3 SSIDs and VT-d. */
export const PASID_BITS = 20;

/**
 * EINVAL unless `pasid` is a 20-bit PASID (PCIe §6.20; iommufd_device_attach's
 * `pasid >= dev->max_pasids` check, here against the architectural width).
 */
export function checkPasid(pasid: number): void {
  if (!Number.isSafeInteger(pasid) || pasid < 0 || pasid >= 2 ** PASID_BITS) {
    throw new IommuError("EINVAL", `pasid ${pasid} is not a ${PASID_BITS}-bit value`, { pasid });
  }
}

/** EOVERFLOW when [iova, iova + length) ends above {@link MAX_IOVA} (iopt's check_add_overflow). */
export function checkEnd(iova: number, length: number): void {
  if (iova + length - 1 > MAX_IOVA) {
    throw new IommuError("EOVERFLOW", `[${hex(iova)}, +${hex(length)}) overflows`, { iova, length });
  }
}

/** Physical address of an area's first byte. */
export function areaPa(a: Area): number {
  return a.pages.pa + a.offset;
}

/** Sorts and merges (adjacent or overlapping) inclusive ranges. */
export function mergeRanges(ranges: readonly IovaRange[]): IovaRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  const out: { start: number; last: number }[] = [];
  for (const r of sorted) {
    const prev = out[out.length - 1];
    if (prev !== undefined && r.start <= prev.last + 1) prev.last = Math.max(prev.last, r.last);
    else out.push({ start: r.start, last: r.last });
  }
  return out;
}

/** [lo, hi] minus merged `ranges`, as sorted inclusive ranges. */
export function complement(merged: readonly IovaRange[], lo: number, hi: number): IovaRange[] {
  const out: IovaRange[] = [];
  let at = lo;
  for (const r of merged) {
    if (r.last < at) continue;
    if (r.start > hi) break;
    if (r.start > at) out.push({ start: at, last: r.start - 1 });
    at = r.last + 1;
    if (at > hi) return out;
  }
  if (at <= hi) out.push({ start: at, last: hi });
  return out;
}

/** The first range of sorted, disjoint `ranges` that intersects [first, last], or undefined. */
export function firstIntersecting(
  ranges: readonly IovaRange[],
  first: number,
  last: number,
): IovaRange | undefined {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid]!.last < first) lo = mid + 1;
    else hi = mid;
  }
  const r = ranges[lo];
  return r !== undefined && r.start <= last ? r : undefined;
}

/** Smallest power of two >= n (n >= 1). */
export function roundupPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Largest power of two dividing n (n > 0); Infinity for 0. */
export function lowestBit(n: number): number {
  if (n === 0) return Number.POSITIVE_INFINITY;
  let p = 1;
  while (n % (p * 2) === 0) p *= 2;
  return p;
}

/** Rounds `v` up to a multiple of `align`. */
function alignUp(v: number, align: number): number {
  const r = v % align;
  return r === 0 ? v : v + (align - r);
}

/**
 * Areas of one IOAS plus its allowed ranges. Areas live in a sorted array whose
 * removed prefix is skipped by an offset (`#head`), so the common patterns (map at
 * increasing IOVAs, unmap from the bottom) cost O(1) per area instead of a shift.
 */
export class IoPagetable {
  #a: Area[] = [];
  #head = 0;
  /** Allowed ranges, merged; empty = everything allowed (as iommufd's empty allowed_itree). */
  allowed: IovaRange[] = [];

  /** Areas sorted by IOVA, disjoint (compacts the array: not for hot loops, use {@link IoPagetable.at}). */
  get areas(): readonly Area[] {
    if (this.#head > 0) {
      this.#a = this.#a.slice(this.#head);
      this.#head = 0;
    }
    return this.#a;
  }

  /** Number of areas. */
  get count(): number {
    return this.#a.length - this.#head;
  }

  /** The `i`-th area in IOVA order. */
  at(i: number): Area | undefined {
    return this.#a[this.#head + i];
  }

  /** Index of the first area whose last byte is >= `iova`. */
  lowerIndex(iova: number): number {
    const a = this.#a;
    let lo = this.#head;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = a[mid]!;
      if (m.iova + m.length - 1 < iova) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.#head;
  }

  /** The first area intersecting [first, last], or undefined. */
  firstArea(first: number, last: number): Area | undefined {
    const a = this.at(this.lowerIndex(first));
    return a !== undefined && a.iova <= last ? a : undefined;
  }

  /** Index range [from, to) of the areas intersecting [first, last]. */
  span(first: number, last: number): [number, number] {
    const from = this.lowerIndex(first);
    let to = from;
    const n = this.count;
    while (to < n && this.at(to)!.iova <= last) to++;
    return [from, to];
  }

  /** Inserts an area that overlaps nothing (checked by the caller). */
  insert(area: Area): void {
    const i = this.lowerIndex(area.iova);
    if (i === this.count) this.#a.push(area);
    else if (i === 0 && this.#head > 0) this.#a[--this.#head] = area;
    else this.#a.splice(this.#head + i, 0, area);
  }

  /** Removes areas [from, to). */
  removeSpan(from: number, to: number): void {
    if (from === 0) {
      for (let i = this.#head; i < this.#head + to; i++) this.#a[i] = undefined as never;
      this.#head += to;
      if (this.#head === this.#a.length) {
        this.#a = [];
        this.#head = 0;
      } else if (this.#head > 1024 && this.#head * 2 > this.#a.length) {
        this.#a = this.#a.slice(this.#head);
        this.#head = 0;
      }
    } else if (to === this.count) {
      this.#a.length = this.#head + from;
    } else {
      this.#a.splice(this.#head + from, to - from);
    }
  }

  /**
   * Checks a fixed IOVA range for a new area (iopt_check_iova): alignment EINVAL,
   * overflow EOVERFLOW, reserved EINVAL, an existing area EEXIST.
   */
  checkFixed(iova: number, length: number, alignment: number, reserved: readonly IovaRange[]): void {
    if (!Number.isSafeInteger(iova) || iova < 0 || iova % alignment !== 0) {
      throw new IommuError("EINVAL", `iova ${hex(iova)} is not aligned to ${hex(alignment)}`, {
        iova,
        alignment,
      });
    }
    if (iova + length - 1 > MAX_IOVA) {
      throw new IommuError("EOVERFLOW", `iova ${hex(iova)} + length ${hex(length)} overflows`, {
        iova,
        length,
      });
    }
    const last = iova + length - 1;
    const r = firstIntersecting(reserved, iova, last);
    if (r !== undefined) {
      throw new IommuError(
        "EINVAL",
        `[${hex(iova)}, ${hex(last)}] hits reserved [${hex(r.start)}, ${hex(r.last)}]`,
        {
          iova,
          length,
        },
      );
    }
    const a = this.firstArea(iova, last);
    if (a !== undefined) {
      throw new IommuError("EEXIST", `[${hex(iova)}, ${hex(last)}] overlaps the area at ${hex(a.iova)}`, {
        iova,
        length,
      });
    }
  }

  /**
   * Finds a free IOVA for `length` bytes aligned to `align` inside the allowed ranges,
   * avoiding reserved ranges and areas, first fit from the bottom (iopt_alloc_iova).
   * ENOSPC when there is none.
   */
  allocIova(length: number, align: number, reserved: readonly IovaRange[]): number {
    const windows = this.allowed.length > 0 ? this.allowed : [{ start: 0, last: MAX_IOVA }];
    for (const w of windows) {
      let at = alignUp(w.start, align);
      while (at + length - 1 <= w.last && at + length - 1 <= MAX_IOVA) {
        const last = at + length - 1;
        const r = firstIntersecting(reserved, at, last);
        if (r !== undefined) {
          at = alignUp(r.last + 1, align);
          continue;
        }
        let i = this.lowerIndex(at);
        const a = this.at(i);
        if (a === undefined || a.iova > last) return at;
        // Skip a run of areas at once: the next hole starts after the last touching one.
        let end = a.iova + a.length;
        for (
          let n = this.at(++i);
          n !== undefined && n.iova < alignUp(end, align) + length;
          n = this.at(++i)
        ) {
          end = n.iova + n.length;
        }
        at = alignUp(end, align);
      }
    }
    throw new IommuError("ENOSPC", `no free IOVA range of ${hex(length)} bytes aligned to ${hex(align)}`, {
      length,
      align,
    });
  }

  /**
   * Checks that the areas and allowed ranges fit a prospective layout (a domain or
   * device being added): every area aligned to `alignment` and outside `reserved`,
   * no allowed range intersecting `reserved`; EADDRINUSE otherwise
   * (iopt_check_iova_alignment, iopt_reserve_iova).
   */
  checkLayout(reserved: readonly IovaRange[], alignment: number): void {
    for (const a of this.areas) {
      if (a.iova % alignment !== 0 || a.length % alignment !== 0 || areaPa(a) % alignment !== 0) {
        throw new IommuError(
          "EADDRINUSE",
          `area ${hex(a.iova)}+${hex(a.length)} is not aligned to ${hex(alignment)}`,
          {
            iova: a.iova,
            alignment,
          },
        );
      }
      const r = firstIntersecting(reserved, a.iova, a.iova + a.length - 1);
      if (r !== undefined) {
        throw new IommuError("EADDRINUSE", `area ${hex(a.iova)}+${hex(a.length)} lies in a reserved range`, {
          iova: a.iova,
          reservedStart: r.start,
        });
      }
    }
    for (const w of this.allowed) {
      if (firstIntersecting(reserved, w.start, w.last) !== undefined) {
        throw new IommuError(
          "EADDRINUSE",
          `allowed range [${hex(w.start)}, ${hex(w.last)}] intersects a reserved range`,
          {
            start: w.start,
          },
        );
      }
    }
  }
}

/**
 * Maps every area into a fresh domain (iopt_fill_domain); on failure unmaps what it
 * mapped and rethrows, leaving the domain empty.
 */
export function fillDomain(domain: Domain, areas: readonly Area[]): void {
  let done = 0;
  try {
    for (const a of areas) {
      domain.map(a.iova, areaPa(a), a.length, a.prot);
      done++;
    }
  } catch (e) {
    for (let i = 0; i < done; i++) domain.unmap(areas[i]!.iova, areas[i]!.length);
    throw e;
  }
}

/** Unmaps every area from a domain (iopt_unfill_domain). */
export function unfillDomain(domain: Domain, areas: readonly Area[]): void {
  for (const a of areas) domain.unmap(a.iova, a.length);
}

/**
 * Maps one range into every domain in order (iopt_map_pages over the domains); on
 * failure unmaps it from the ones done and rethrows.
 */
export function mapEverywhere(
  domains: readonly Domain[],
  iova: number,
  pa: number,
  length: number,
  prot: number,
): void {
  let done = 0;
  try {
    for (; done < domains.length; done++) domains[done]!.map(iova, pa, length, prot);
  } catch (e) {
    for (let i = 0; i < done; i++) domains[i]!.unmap(iova, length);
    throw e;
  }
}
