/**
 * IO address spaces, after iommufd's ioas.c (the IOMMU_IOAS_* ioctls) and the domain
 * side of io_pagetable.c: an {@link Ioas} is an {@link IoPagetable} (areas, allowed
 * ranges) plus the domains its areas are mirrored into (paging HWPTs, emulated
 * accesses) and the layout those domains and the RID-attached devices impose
 * (reserved ranges, IOVA alignment).
 *
 * This file knows no HWPT, access or device: the HWPTs and accesses join an IOAS as
 * {@link IoasUser}s, and the devices' reserved regions come from `HostCtx.ridRegions`.
 *
 * Atomicity: every rule checks, then reaches its allocation points, then commits; a
 * domain map that fails is unmapped from the domains already done before rethrowing.
 */

import type { Domain, IovaRange } from "@iommu-kit/core";
import { hex, IommuError, Perm, pageSizesLg2, parsePerm } from "@iommu-kit/core";
import type { HostCtx, HostObject } from "./context.ts";
import type { Area } from "./io-pagetable.ts";
import {
  areaPa,
  checkIova,
  checkLength,
  complement,
  firstIntersecting,
  IoPagetable,
  lowestBit,
  MAX_IOVA,
  mapEverywhere,
  mergeRanges,
  roundupPow2,
} from "./io-pagetable.ts";
import { checkUserRange, createPages } from "./pages.ts";

/** Mapping protection: Perm bits or letters ("r", "w", "rw"). */
export type ProtSpec = number | string;

/** IOMMU_IOAS_MAP arguments. */
export interface MapOptions {
  /** Fixed IOVA (IOMMU_IOAS_MAP_FIXED_IOVA); omitted: allocated. */
  readonly iova?: number;
  readonly length: number;
  /** Physical address of the first byte (RAM, outside the table region). */
  readonly pa: number;
  readonly prot: ProtSpec;
}

/** IOMMU_IOAS_COPY arguments. */
export interface CopyOptions {
  readonly src: number;
  readonly srcIova: number;
  readonly dst: number;
  /** Fixed destination IOVA; omitted: allocated. */
  readonly dstIova?: number;
  readonly length: number;
  readonly prot: ProtSpec;
}

/** IOMMU_IOAS_IOVA_RANGES result. */
export interface IovaRanges {
  /** Usable IOVA ranges (inclusive), ascending. */
  readonly ranges: readonly IovaRange[];
  /** out_iova_alignment. */
  readonly alignment: number;
}

/** One area of an IOAS in {@link IoasInfo}. */
export interface AreaInfo {
  readonly iova: number;
  readonly length: number;
  readonly pa: number;
  readonly prot: number;
  /** Areas sharing its pages (IOMMU_IOAS_COPY). */
  readonly pagesUsers: number;
}

/** `Host.describe` of an IOAS. */
export interface IoasInfo {
  readonly id: number;
  readonly kind: "ioas";
  readonly areas: readonly AreaInfo[];
  readonly allowed: readonly IovaRange[];
  readonly reserved: readonly IovaRange[];
  readonly alignment: number;
  /** Paging HWPT ids built from it. */
  readonly hwpts: readonly number[];
  /** Access ids reading it. */
  readonly accesses: readonly number[];
}

/** An object whose domain mirrors the IOAS: a paging HWPT (hw-pagetable.ts) or an access (access.ts). */
export interface IoasUser {
  readonly id: number;
  readonly domain: Domain;
}

/** Reserved ranges and IOVA alignment an IOAS's domains and devices impose. */
export interface Layout {
  readonly reserved: IovaRange[];
  readonly alignment: number;
}

/** An IO address space (IOMMU_IOAS_ALLOC; struct iommufd_ioas). */
export class Ioas implements HostObject {
  readonly kind = "ioas" as const;
  readonly id: number;
  readonly iopt: IoPagetable = new IoPagetable();
  /** Paging HWPTs built from this IOAS (user-allocated and automatic), in creation order. */
  readonly hwpts: IoasUser[] = [];
  /** Emulated accesses reading this IOAS. */
  readonly accesses: IoasUser[] = [];
  /** Reserved ranges imposed by domains and attached devices (merged). */
  reserved: IovaRange[] = [];
  /** IOVA alignment: the largest smallest-page-size of the domains (1 without any). */
  alignment = 1;
  /** Ranges reserved for no owner (iopt_reserve_iova(..., NULL), the selftest's ADD_RESERVED). */
  userReserved: IovaRange[] = [];
  /** iopt->disable_large_pages (IOMMU_OPTION_HUGE_PAGES = 0). */
  largePagesDisabled = false;
  /** Every domain changes propagate to: the accesses' first (they may refuse an unmap), then the HWPTs'. */
  domains: Domain[] = [];

  constructor(id: number) {
    this.id = id;
  }

  /** Rebuilds {@link Ioas.domains} after an HWPT or access joined or left. */
  refreshDomains(): void {
    this.domains = [...this.accesses.map((a) => a.domain), ...this.hwpts.map((h) => h.domain)];
  }
}

/** The IOVAs below PAGE_SIZE, which iopt_alloc_iova never hands out. */
const BELOW_PAGE_SIZE: IovaRange = { start: 0, last: 4095 };

/** The IOAS `id`; ENOENT otherwise. */
export function getIoas(ctx: HostCtx, id: number): Ioas {
  return ctx.objects.get(id, "ioas") as Ioas;
}

/** Parses a map protection: IOMMU_IOAS_MAP_READABLE / _WRITEABLE only, at least one (ioas.c); EINVAL otherwise. */
export function parseProt(prot: ProtSpec): number {
  let p: number;
  try {
    p = typeof prot === "string" ? parsePerm(prot) : prot;
  } catch (e) {
    throw new IommuError("EINVAL", (e as Error).message, {}, { cause: e });
  }
  if (!Number.isInteger(p) || p === 0 || (p & ~(Perm.R | Perm.W)) !== 0) {
    throw new IommuError("EINVAL", `bad map protection ${String(prot)} (want r, w or rw)`, {
      prot: String(prot),
    });
  }
  return p;
}

// ---------------------------------------------------------------- layout

/**
 * Reserved ranges and alignment of an IOAS with its current domains and RID-attached
 * devices plus `extraDomains` / `extraRegions` (a prospective attach): each domain's
 * aperture complement and smallest page size, each device's reserved regions
 * (iopt_table_enforce_dev_resv_regions). Changes nothing.
 */
export function ioasLayout(
  ctx: HostCtx,
  ioas: Ioas,
  extraDomains: readonly Domain[],
  extraRegions: readonly IovaRange[],
): Layout {
  const ranges: IovaRange[] = [...ioas.userReserved];
  // iopt_calculate_iova_alignment: PAGE_SIZE with large pages disabled (batch_iommu_map_small).
  let alignment = ioas.largePagesDisabled ? 4096 : 1;
  for (const d of [...ioas.domains, ...extraDomains]) {
    if (d.aperture.start > 0) ranges.push({ start: 0, last: d.aperture.start - 1 });
    if (d.aperture.last < MAX_IOVA) ranges.push({ start: d.aperture.last + 1, last: MAX_IOVA });
    const sizes = pageSizesLg2(d.pageSizeBitmap);
    if (sizes.length > 0) alignment = Math.max(alignment, 2 ** sizes[0]!);
  }
  ranges.push(...ctx.ridRegions(ioas.id), ...extraRegions);
  return { reserved: mergeRanges(ranges), alignment };
}

/** {@link ioasLayout}, checked against the IOAS's areas and allowed ranges (EADDRINUSE). Changes nothing. */
export function checkedLayout(
  ctx: HostCtx,
  ioas: Ioas,
  extraDomains: readonly Domain[],
  extraRegions: readonly IovaRange[],
): Layout {
  const l = ioasLayout(ctx, ioas, extraDomains, extraRegions);
  ioas.iopt.checkLayout(l.reserved, l.alignment);
  return l;
}

/** Commits a layout computed before a change. */
export function applyLayout(ioas: Ioas, l: Layout): void {
  ioas.reserved = l.reserved;
  ioas.alignment = l.alignment;
}

/** Recomputes domains, reserved ranges and alignment after a HWPT, access or device joined or left. */
export function relayout(ctx: HostCtx, ioas: Ioas): void {
  ioas.refreshDomains();
  applyLayout(ioas, ioasLayout(ctx, ioas, [], []));
}

// ---------------------------------------------------------------- ioctls

/** IOMMU_IOAS_ALLOC (iommufd_ioas_alloc_ioctl). */
export function ioasAlloc(ctx: HostCtx): number {
  ctx.objects.reserve("ioas");
  return ctx.objects.insert(new Ioas(ctx.objects.nextId)).id;
}

/** Checks a new area's placement (fixed) or allocates its IOVA (auto); changes nothing. */
function placeArea(ioas: Ioas, iova: number | undefined, pa: number, length: number): number {
  const align = ioas.alignment;
  if (length % align !== 0 || pa % align !== 0) {
    throw new IommuError("EINVAL", `length ${hex(length)} / pa ${hex(pa)} not aligned to ${hex(align)}`, {
      length,
      pa,
      alignment: align,
    });
  }
  if (iova !== undefined) {
    ioas.iopt.checkFixed(iova, length, align, ioas.reserved);
    return iova;
  }
  // iopt_alloc_iova: keep the alignment of the source, at most the length's.
  const want = Math.max(Math.min(roundupPow2(length), lowestBit(pa)), align);
  // iopt_alloc_iova searches [PAGE_SIZE, ULONG_MAX - PAGE_SIZE]: an automatic IOVA is never 0.
  return ioas.iopt.allocIova(length, want, mergeRanges([...ioas.reserved, BELOW_PAGE_SIZE]));
}

/** IOMMU_IOAS_MAP (iommufd_ioas_map -> iopt_map_user_pages). See `Host.ioasMap`. */
export function ioasMap(ctx: HostCtx, ioasId: number, opts: MapOptions): number {
  const ioas = getIoas(ctx, ioasId);
  const prot = parseProt(opts.prot);
  checkLength(opts.length);
  checkUserRange(ctx.memory, ctx.tables, opts.pa, opts.length);
  const iova = placeArea(ioas, opts.iova, opts.pa, opts.length);
  ctx.memory.failNth.point("area");
  mapEverywhere(ioas.domains, iova, opts.pa, opts.length, prot);
  const pages = createPages(opts.pa, opts.length, (prot & Perm.W) !== 0);
  pages.users = 1;
  ioas.iopt.insert({ iova, length: opts.length, pages, offset: 0, prot });
  return iova;
}

/** IOMMU_IOAS_UNMAP of a range covering whole areas (iopt_unmap_iova). See `Host.ioasUnmap`. */
export function ioasUnmap(ctx: HostCtx, ioasId: number, iova: number, length: number): number {
  const ioas = getIoas(ctx, ioasId);
  checkIova(iova);
  checkLength(length);
  const last = iova + length - 1;
  if (last > MAX_IOVA)
    throw new IommuError("EOVERFLOW", `iova ${hex(iova)} + ${hex(length)} overflows`, { iova, length });
  const [from, to] = ioas.iopt.span(iova, last);
  if (from === to)
    throw new IommuError("ENOENT", `nothing is mapped in [${hex(iova)}, ${hex(last)}]`, { iova, length });
  for (let i = from; i < to; i++) {
    const a = ioas.iopt.at(i)!;
    if (a.iova < iova || a.iova + a.length - 1 > last) {
      throw new IommuError(
        "ENOENT",
        `[${hex(iova)}, ${hex(last)}] cuts the area at ${hex(a.iova)}+${hex(a.length)}`,
        { iova, length },
      );
    }
  }
  return unmapSpan(ioas, from, to);
}

/**
 * Splits the areas holding each `iovas[i]` so that one ends at it (iopt_cut_iova, the
 * VFIO type1 container's partial unmap). The cut point + 1 must be aligned to the
 * IOAS alignment (EINVAL). The two halves share their pages. Atomic.
 */
export function ioasCutIova(ctx: HostCtx, ioasId: number, iovas: readonly number[]): void {
  const ioas = getIoas(ctx, ioasId);
  for (const at of iovas) {
    const a = ioas.iopt.firstArea(at, at);
    if (a !== undefined && at !== a.iova + a.length - 1 && (at + 1) % ioas.alignment !== 0)
      throw new IommuError("EINVAL", `cut at ${hex(at)} is not aligned to ${hex(ioas.alignment)}`, {
        iova: at,
      });
  }
  for (const at of iovas) {
    const a = ioas.iopt.firstArea(at, at);
    if (a === undefined || at === a.iova + a.length - 1) continue;
    const i = ioas.iopt.lowerIndex(at);
    const head = at - a.iova + 1;
    ioas.iopt.removeSpan(i, i + 1);
    a.pages.users++;
    ioas.iopt.insert({ ...a, length: head });
    ioas.iopt.insert({ ...a, iova: at + 1, length: a.length - head, offset: a.offset + head });
  }
}

/** IOMMU_IOAS_UNMAP of everything (iopt_unmap_all); 0 when nothing is mapped. */
export function ioasUnmapAll(ctx: HostCtx, ioasId: number): number {
  const ioas = getIoas(ctx, ioasId);
  return ioas.iopt.count === 0 ? 0 : unmapSpan(ioas, 0, ioas.iopt.count);
}

/**
 * Unmaps areas [from, to) from every domain and forgets them. The accesses go first:
 * their unmap may refuse (pins left after the mdev's unmap callback,
 * iopt_unmap_iova_range's -EBUSY), and what they already unmapped is mapped back.
 * The HWPT domains cannot refuse.
 */
function unmapSpan(ioas: Ioas, from: number, to: number): number {
  const iopt = ioas.iopt;
  const doms = ioas.domains;
  const ne = ioas.accesses.length;
  if (ne > 0) {
    let done = 0;
    try {
      for (let i = from; i < to; i++) {
        const a = iopt.at(i)!;
        for (let d = 0; d < ne; d++) {
          doms[d]!.unmap(a.iova, a.length);
          done++;
        }
      }
    } catch (e) {
      for (let k = 0; k < done; k++) {
        const a = iopt.at(from + Math.floor(k / ne))!;
        doms[k % ne]!.map(a.iova, areaPa(a), a.length, a.prot);
      }
      throw e;
    }
  }
  let bytes = 0;
  for (let i = from; i < to; i++) {
    const a = iopt.at(i)!;
    for (let d = ne; d < doms.length; d++) doms[d]!.unmap(a.iova, a.length);
    a.pages.users--;
    bytes += a.length;
  }
  iopt.removeSpan(from, to);
  return bytes;
}

/** IOMMU_IOAS_COPY (iommufd_ioas_copy: iopt_get_pages + iopt_map_pages). See `Host.ioasCopy`. */
export function ioasCopy(ctx: HostCtx, opts: CopyOptions): number {
  const src = getIoas(ctx, opts.src);
  const dst = getIoas(ctx, opts.dst);
  const prot = parseProt(opts.prot);
  checkIova(opts.srcIova);
  checkLength(opts.length);
  const last = opts.srcIova + opts.length - 1;
  const [from, to] = src.iopt.span(opts.srcIova, last);
  const pieces: Area[] = [];
  let at = opts.srcIova;
  for (let i = from; i < to; i++) {
    const a = src.iopt.at(i)!;
    if (a.iova > at) break;
    const end = Math.min(a.iova + a.length - 1, last);
    if ((prot & Perm.W) !== 0 && !a.pages.writable) {
      // iopt_get_pages: a writable copy of read-only pages is -EPERM.
      throw new IommuError("EPERM", `copy with write access of read-only pages at ${hex(a.iova)}`, {
        iova: a.iova,
      });
    }
    pieces.push({
      iova: at - opts.srcIova,
      length: end - at + 1,
      pages: a.pages,
      offset: a.offset + (at - a.iova),
      prot,
    });
    at = end + 1;
  }
  if (at <= last) {
    throw new IommuError(
      "ENOENT",
      `[${hex(opts.srcIova)}, ${hex(last)}] of IOAS ${src.id} is not fully mapped`,
      { iova: opts.srcIova, length: opts.length },
    );
  }
  for (const p of pieces) {
    if (p.length % dst.alignment !== 0 || areaPa(p) % dst.alignment !== 0) {
      throw new IommuError(
        "EINVAL",
        `copied piece ${hex(areaPa(p))}+${hex(p.length)} is not aligned to ${hex(dst.alignment)}`,
      );
    }
  }
  const base = placeArea(dst, opts.dstIova, areaPa(pieces[0]!), opts.length);
  const placed = pieces.map((p) => ({ ...p, iova: base + p.iova }));
  let done = 0;
  try {
    for (const p of placed) {
      ctx.memory.failNth.point("area");
      mapEverywhere(dst.domains, p.iova, areaPa(p), p.length, p.prot);
      done++;
    }
  } catch (e) {
    for (let i = 0; i < done; i++) for (const d of dst.domains) d.unmap(placed[i]!.iova, placed[i]!.length);
    throw e;
  }
  for (const p of placed) {
    p.pages.users++;
    dst.iopt.insert(p);
  }
  return base;
}

/** IOMMU_IOAS_IOVA_RANGES (iommufd_ioas_iova_ranges): the usable ranges (not reserved) and the alignment. */
export function ioasIovaRanges(ctx: HostCtx, ioasId: number): IovaRanges {
  const ioas = getIoas(ctx, ioasId);
  return { ranges: complement(ioas.reserved, 0, MAX_IOVA), alignment: ioas.alignment };
}

/** IOMMU_IOAS_ALLOW_IOVAS (iommufd_ioas_allow_iovas -> iopt_set_allow_iova). See `Host.ioasAllowIovas`. */
export function ioasAllowIovas(ctx: HostCtx, ioasId: number, ranges: readonly IovaRange[]): void {
  const ioas = getIoas(ctx, ioasId);
  for (const [i, r] of ranges.entries()) {
    // iommufd_ioas_load_iovas: start >= last EINVAL, and no two ranges may overlap (EINVAL).
    if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.last) || r.start < 0 || r.last <= r.start) {
      throw new IommuError("EINVAL", `bad allowed range [${r.start}, ${r.last}]`, {
        start: r.start,
        last: r.last,
      });
    }
    if (ranges.some((o, j) => j < i && o.start <= r.last && r.start <= o.last)) {
      throw new IommuError("EINVAL", `allowed range [${r.start}, ${r.last}] overlaps another`, {
        start: r.start,
        last: r.last,
      });
    }
  }
  const merged = mergeRanges(ranges);
  const saved = ioas.iopt.allowed;
  ioas.iopt.allowed = merged;
  try {
    ioas.iopt.checkLayout(ioas.reserved, 1);
    ctx.memory.failNth.point("allowed");
  } catch (e) {
    ioas.iopt.allowed = saved;
    throw e;
  }
}

/** Reserves a range for no owner (iopt_reserve_iova). See `Host.ioasReserve`. */
export function ioasReserve(ctx: HostCtx, ioasId: number, range: IovaRange): void {
  const ioas = getIoas(ctx, ioasId);
  const { start, last } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(last) || start < 0 || last < start)
    throw new IommuError("EINVAL", `bad reserved range [${start}, ${last}]`, { start, last });
  // iopt_reserve_iova: an area or an allowed range in the way is EADDRINUSE.
  if (ioas.iopt.firstArea(start, last) !== undefined || firstIntersecting(ioas.iopt.allowed, start, last))
    throw new IommuError("EADDRINUSE", `[${hex(start)}, ${hex(last)}] is mapped or allowed`, { start, last });
  ctx.memory.failNth.point("reserved");
  ioas.userReserved = [...ioas.userReserved, { start, last }];
  relayout(ctx, ioas);
}

/** IOMMU_OPTION_HUGE_PAGES set (iopt_disable_large_pages / iopt_enable_large_pages). See `Host.ioasSetLargePages`. */
export function ioasSetLargePages(ctx: HostCtx, ioasId: number, enable: boolean): void {
  const ioas = getIoas(ctx, ioasId);
  if (enable || ioas.largePagesDisabled) {
    ioas.largePagesDisabled = !enable;
    relayout(ctx, ioas);
    return;
  }
  // Won't do it if domains already have pages mapped in them (iopt_disable_large_pages).
  if (ioas.hwpts.length > 0 && ioas.iopt.count > 0)
    throw new IommuError("EINVAL", `IOAS ${ioas.id} has domains with areas mapped`, { ioas: ioas.id });
  ioas.largePagesDisabled = true;
  try {
    checkedLayout(ctx, ioas, [], []);
  } catch (e) {
    ioas.largePagesDisabled = false;
    throw e;
  }
  relayout(ctx, ioas);
}

/** Areas of an IOAS (copies), ascending. */
export function ioasAreas(
  ctx: HostCtx,
  ioasId: number,
): Array<{ iova: number; length: number; pa: number; prot: number }> {
  return getIoas(ctx, ioasId).iopt.areas.map((a) => ({
    iova: a.iova,
    length: a.length,
    pa: areaPa(a),
    prot: a.prot,
  }));
}

/**
 * IOMMU_DESTROY of an IOAS (iommufd_ioas_destroy): EBUSY while a HWPT or an access
 * uses it; otherwise its areas drop their pages and it leaves the table.
 */
export function destroyIoas(ctx: HostCtx, ioas: Ioas, busy: (why: string) => never): void {
  if (ioas.hwpts.length > 0) busy(`used by HWPT ${ioas.hwpts[0]!.id}`);
  if (ioas.accesses.length > 0) busy(`used by access ${ioas.accesses[0]!.id}`);
  for (const a of ioas.iopt.areas) a.pages.users--;
  ctx.objects.remove(ioas.id);
}

/** The plain description of an IOAS. */
export function ioasInfo(i: Ioas): IoasInfo {
  return {
    id: i.id,
    kind: i.kind,
    areas: i.iopt.areas.map((a) => ({
      iova: a.iova,
      length: a.length,
      pa: areaPa(a),
      prot: a.prot,
      pagesUsers: a.pages.users,
    })),
    allowed: i.iopt.allowed.map((r) => ({ ...r })),
    reserved: i.reserved.map((r) => ({ ...r })),
    alignment: i.alignment,
    hwpts: i.hwpts.map((h) => h.id),
    accesses: i.accesses.map((a) => a.id),
  };
}
