/**
 * HW page tables, after iommufd's hw_pagetable.c: a paging HWPT owns a backend domain
 * filled from one IOAS (every area mapped into it, every later change propagated by
 * ioas.ts); a nested HWPT is a user table over a nest-parent paging HWPT, allocated
 * on that parent (iommufd_hwpt_nested_alloc: VT-d) or on a vIOMMU over it
 * (iommufd_viommu_alloc_hwpt_nested: SMMUv3, whose driver has no other way since 6.13). Allocation
 * (IOMMU_HWPT_ALLOC), invalidation (IOMMU_HWPT_INVALIDATE), dirty tracking
 * (IOMMU_HWPT_SET_DIRTY_TRACKING / GET_DIRTY_BITMAP) and destruction live here; the
 * automatic HWPTs an attach creates are made by device.ts and dropped here.
 *
 * A HWPT takes its device as a `DeviceRef`, so this file does not import device.ts.
 */

import type { Domain, DomainFlags } from "@iommu-kit/core";
import { hex, IommuError } from "@iommu-kit/core";
import type { DeviceRef, HostCtx, HostObject } from "./context.ts";
import type { FaultQueueObject } from "./fault.ts";
import { autoRespond } from "./fault.ts";
import { checkEnd, checkIova, checkLength, fillDomain, lowestBit } from "./io-pagetable.ts";
import type { Ioas, Layout } from "./ioas.ts";
import { applyLayout, checkedLayout, relayout } from "./ioas.ts";
import type { ViommuObject } from "./viommu.ts";
import { viommuInvalidate } from "./viommu.ts";

/** IOMMU_HWPT_ALLOC flag names. */
export type HwptFlag = "nest_parent" | "dirty_tracking" | "pasid";

/** IOMMU_HWPT_ALLOC arguments. */
export interface HwptAllocOptions {
  /** The device the HWPT is allocated for (its IOMMU's format). */
  readonly device: number;
  /** An IOAS (paging HWPT), a nest-parent paging HWPT or a vIOMMU (nested HWPT). */
  readonly pt: number;
  readonly flags?: readonly HwptFlag[] | DomainFlags;
  /** Vendor data of a nested HWPT (SMMUv3 `{ste: [w0, w1]}`, VT-d `{pgtblAddr, addrWidth, flags?}`). */
  readonly data?: unknown;
  /** A fault queue object (IOMMU_HWPT_FAULT_ID_VALID) that receives this HWPT's page requests. */
  readonly faultQueue?: number;
}

/** IOMMU_HWPT_GET_DIRTY_BITMAP arguments. */
export interface DirtyReadOptions {
  readonly iova: number;
  readonly length: number;
  /** Bytes per bitmap bit (a power of two). */
  readonly pageSize: number;
  /** IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR. */
  readonly noClear?: boolean;
}

/** `Host.describe` of a paging HWPT. */
export interface HwptPagingInfo {
  readonly id: number;
  readonly kind: "hwpt-paging";
  readonly ioas: number;
  readonly iommu: string;
  readonly format: string;
  readonly flags: DomainFlags;
  /** Created by an attach to the IOAS. */
  readonly auto: boolean;
  /** Attach points holding it. */
  readonly users: number;
  /** Nested HWPTs over it (allocated on it, not on a vIOMMU). */
  readonly children: number;
  /** vIOMMUs holding it. */
  readonly viommus: number;
  readonly faultQueue: number | null;
}

/** `Host.describe` of a nested HWPT. */
export interface HwptNestedInfo {
  readonly id: number;
  readonly kind: "hwpt-nested";
  readonly parent: number;
  /** The vIOMMU it was allocated on, or null (allocated on the parent). */
  readonly viommu: number | null;
  readonly iommu: string;
  readonly format: string;
  readonly users: number;
  readonly faultQueue: number | null;
}

/** A paging HWPT (IOMMUFD_OBJ_HWPT_PAGING; struct iommufd_hwpt_paging). */
export class HwptPaging implements HostObject {
  readonly kind = "hwpt-paging" as const;
  readonly id: number;
  readonly ioas: Ioas;
  readonly domain: Domain;
  /** Created by an attach to the IOAS; destroyed when its last device leaves. */
  readonly auto: boolean;
  readonly faultQueue: FaultQueueObject | null;
  /** Attach points holding it. */
  users = 0;
  /** Nested HWPTs allocated on it. */
  children = 0;
  /** vIOMMUs holding it (viommu->hwpt). */
  viommus = 0;

  constructor(id: number, ioas: Ioas, domain: Domain, auto: boolean, faultQueue: FaultQueueObject | null) {
    this.id = id;
    this.ioas = ioas;
    this.domain = domain;
    this.auto = auto;
    this.faultQueue = faultQueue;
  }
}

/** A nested HWPT (IOMMUFD_OBJ_HWPT_NESTED): a user table walked through `parent`. */
export class HwptNested implements HostObject {
  readonly kind = "hwpt-nested" as const;
  readonly id: number;
  readonly parent: HwptPaging;
  readonly domain: Domain;
  readonly faultQueue: FaultQueueObject | null;
  /** hwpt_nested->viommu, or null. */
  readonly viommu: ViommuObject | null;
  users = 0;

  constructor(
    id: number,
    parent: HwptPaging,
    domain: Domain,
    faultQueue: FaultQueueObject | null,
    viommu: ViommuObject | null = null,
  ) {
    this.id = id;
    this.parent = parent;
    this.domain = domain;
    this.faultQueue = faultQueue;
    this.viommu = viommu;
  }
}

/** Either HWPT kind. */
export type Hwpt = HwptPaging | HwptNested;

/** The paging HWPT whose IOAS a HWPT reads (itself, or a nested one's parent). */
export function pagingOf(h: Hwpt): HwptPaging {
  return h.kind === "hwpt-paging" ? h : h.parent;
}

/** The HWPT `id` of either kind; ENOENT otherwise. */
export function getHwpt(ctx: HostCtx, id: number): Hwpt {
  return ctx.objects.get(id, "hwpt-paging", "hwpt-nested") as Hwpt;
}

const HWPT_FLAGS: Readonly<Record<HwptFlag, keyof DomainFlags>> = {
  nest_parent: "nestParent",
  dirty_tracking: "dirtyTracking",
  pasid: "pasid",
};

/** IOMMU_HWPT_ALLOC flags by name or as DomainFlags; an unknown one is EOPNOTSUPP (iommufd_hwpt_alloc). */
export function parseFlags(flags: HwptAllocOptions["flags"]): DomainFlags {
  if (flags === undefined) return {};
  if (Array.isArray(flags)) {
    const out: { nestParent?: boolean; dirtyTracking?: boolean; pasid?: boolean } = {};
    for (const f of flags as readonly string[]) {
      const key = HWPT_FLAGS[f as HwptFlag];
      if (key === undefined)
        throw new IommuError("EOPNOTSUPP", `unknown HWPT flag ${JSON.stringify(f)}`, { flag: f });
      out[key] = true;
    }
    return out;
  }
  const d = flags as DomainFlags;
  for (const k of Object.keys(d)) {
    if (k !== "nestParent" && k !== "dirtyTracking" && k !== "pasid") {
      throw new IommuError("EOPNOTSUPP", `unknown HWPT flag ${JSON.stringify(k)}`, { flag: k });
    }
  }
  return { ...d };
}

/** IOMMU_HWPT_FAULT_ID_VALID: the fault queue, looked up after the type's own checks (ENOENT). */
function faultQueueOf(ctx: HostCtx, opts: HwptAllocOptions): FaultQueueObject | null {
  return opts.faultQueue === undefined
    ? null
    : (ctx.objects.get(opts.faultQueue, "fault") as FaultQueueObject);
}

/**
 * IOMMU_HWPT_ALLOC for `dev` (already looked up), as iommufd_hwpt_alloc (6.15): on an
 * IOAS a paging HWPT filled with every area (iommufd_hwpt_paging_alloc); on a paging
 * HWPT a nested one (iommufd_hwpt_nested_alloc); on a vIOMMU a nested one through
 * `Viommu.allocNested` (iommufd_viommu_alloc_hwpt_nested); anything else EINVAL. Either
 * type may take a fault queue (IOMMU_HWPT_FAULT_ID_VALID is in the paging valid_flags
 * and masked by both nested paths). See `Host.hwptAlloc` for the errnos.
 */
export function hwptAlloc(ctx: HostCtx, dev: DeviceRef, opts: HwptAllocOptions): number {
  const objects = ctx.objects;
  const flags = parseFlags(opts.flags);
  // iommufd_hwpt_alloc: a pt_id naming nothing (or a destroyed object) is EINVAL, not ENOENT.
  const pt = objects.find(opts.pt);
  if (
    pt === undefined ||
    (pt.kind !== "ioas" && pt.kind !== "hwpt-paging" && pt.kind !== "hwpt-nested" && pt.kind !== "viommu")
  )
    throw new IommuError("EINVAL", `pt ${opts.pt} is not an IOAS, a HWPT or a vIOMMU`, { pt: opts.pt });
  const caps = dev.backend.capabilities(dev.rid);
  if (pt.kind === "ioas") {
    const ioas = pt as Ioas;
    if (opts.data !== undefined && opts.data !== null) {
      throw new IommuError("EOPNOTSUPP", "a paging HWPT takes no vendor data");
    }
    if (flags.dirtyTracking && !caps.features.dirtyTracking) {
      throw new IommuError("EOPNOTSUPP", `device ${dev.id} has no dirty tracking`, { device: dev.id });
    }
    if (flags.nestParent && !caps.features.nesting) {
      throw new IommuError("EOPNOTSUPP", `device ${dev.id} has no nesting`, { device: dev.id });
    }
    const fq = faultQueueOf(ctx, opts);
    objects.reserve("hwpt-paging");
    const domain = dev.backend.allocDomain({ type: "paging", rid: dev.rid, flags });
    let layout: Layout;
    try {
      layout = checkedLayout(ctx, ioas, [domain], []);
      fillDomain(domain, ioas.iopt.areas);
    } catch (e) {
      domain.free();
      throw e;
    }
    const h = objects.insert(new HwptPaging(objects.nextId, ioas, domain, false, fq));
    ioas.hwpts.push(h);
    ioas.refreshDomains();
    applyLayout(ioas, layout);
    return h.id;
  }
  if (pt.kind === "hwpt-nested")
    throw new IommuError("EINVAL", `HWPT ${pt.id} is nested: no nesting on nested`, { pt: pt.id });
  if (pt.kind === "viommu") {
    const v = pt as ViommuObject;
    // iommufd_hwpt_alloc: viommu->iommu_dev != __iommu_get_iommu_dev(idev->dev) is EINVAL.
    if (v.backend !== dev.backend)
      throw new IommuError("EINVAL", `vIOMMU ${v.id} is not of device ${dev.id}'s IOMMU ${dev.iommu}`, {
        pt: v.id,
      });
    // iommufd_viommu_alloc_hwpt_nested: flags other than FAULT_ID_VALID, then no data, EOPNOTSUPP.
    if (flags.nestParent || flags.dirtyTracking || flags.pasid)
      throw new IommuError("EOPNOTSUPP", "a nested HWPT on a vIOMMU takes no allocation flags");
    if (opts.data === undefined || opts.data === null)
      throw new IommuError("EOPNOTSUPP", "a nested HWPT needs vendor data (IOMMU_HWPT_DATA_NONE)");
    const fq = faultQueueOf(ctx, opts);
    objects.reserve("hwpt-nested");
    const domain = v.viommu.allocNested(opts.data, flags);
    const h = objects.insert(new HwptNested(objects.nextId, v.hwpt as HwptPaging, domain, fq, v));
    v.nested++;
    return h.id;
  }
  const parent = pt as HwptPaging;
  // iommufd_hwpt_nested_alloc: no vendor data (IOMMU_HWPT_DATA_NONE) is EOPNOTSUPP, before any parent check.
  if (opts.data === undefined || opts.data === null) {
    throw new IommuError("EOPNOTSUPP", "a nested HWPT needs vendor data (IOMMU_HWPT_DATA_NONE)");
  }
  if (flags.nestParent || flags.dirtyTracking) {
    throw new IommuError("EOPNOTSUPP", "a nested HWPT takes only the pasid flag");
  }
  if (parent.auto || !parent.domain.flags.nestParent) {
    throw new IommuError("EINVAL", `HWPT ${parent.id} is not a nest parent`, { pt: parent.id });
  }
  if (parent.domain.backend !== dev.backend) {
    throw new IommuError("EINVAL", `HWPT ${parent.id} belongs to another IOMMU than device ${dev.id}`, {
      pt: parent.id,
    });
  }
  const fq = faultQueueOf(ctx, opts);
  objects.reserve("hwpt-nested");
  const domain = dev.backend.allocDomain({
    type: "nested",
    rid: dev.rid,
    parent: parent.domain,
    data: opts.data,
    flags,
  });
  const h = objects.insert(new HwptNested(objects.nextId, parent, domain, fq));
  parent.children++;
  return h.id;
}

/**
 * After an attach point let go of `h`: an automatic paging HWPT nobody uses is
 * destroyed (iommufd_hw_pagetable_put of an auto domain), and the layout of the IOAS
 * it read is refreshed either way. Never fails.
 */
export function releaseHwpt(ctx: HostCtx, h: Hwpt): void {
  const ioas = pagingOf(h).ioas;
  if (h.kind === "hwpt-paging" && h.auto && h.users === 0) {
    h.domain.free();
    ioas.hwpts.splice(ioas.hwpts.indexOf(h), 1);
    ctx.objects.remove(h.id);
  }
  relayout(ctx, ioas);
}

/**
 * IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate): on a nested HWPT the domain's
 * cache_invalidate_user (EOPNOTSUPP without one), on a vIOMMU viommu->ops->cache_invalidate.
 * Any other object, a paging HWPT too, is ENOENT as iommufd_get_hwpt_nested made it up to
 * 6.12; 6.13+ looks the id up as IOMMUFD_OBJ_ANY and returns EINVAL for those. The model
 * keeps ENOENT, which the uAPI tests and the selftest of Debian's kernel assert.
 * See `Host.invalidate`.
 */
export function hwptInvalidate(ctx: HostCtx, id: number, entries: readonly unknown[]): number {
  const o = ctx.objects.get(id, "hwpt-paging", "hwpt-nested", "viommu");
  if (o.kind === "viommu") return viommuInvalidate(o as ViommuObject, entries);
  if (o.kind !== "hwpt-nested") throw new IommuError("ENOENT", `HWPT ${o.id} is not nested`, { hwpt: o.id });
  const h = o as HwptNested;
  if (h.domain.invalidate === undefined)
    throw new IommuError("EOPNOTSUPP", `HWPT ${h.id} takes no invalidations`);
  return h.domain.invalidate(entries);
}

/** The paging HWPT `hwptId` if allocated with dirty tracking (ENOENT / EOPNOTSUPP otherwise). */
function dirtyHwpt(ctx: HostCtx, hwptId: number): HwptPaging {
  const h = ctx.objects.get(hwptId, "hwpt-paging") as HwptPaging;
  if (
    !h.domain.flags.dirtyTracking ||
    h.domain.setDirtyTracking === undefined ||
    h.domain.readDirty === undefined
  ) {
    throw new IommuError("EOPNOTSUPP", `HWPT ${h.id} was not allocated with dirty tracking`, {
      hwpt: h.id,
    });
  }
  return h;
}

/** IOMMU_HWPT_SET_DIRTY_TRACKING (iommufd_hwpt_set_dirty_tracking). */
export function dirtySet(ctx: HostCtx, hwptId: number, enable: boolean): void {
  dirtyHwpt(ctx, hwptId).domain.setDirtyTracking!(enable);
}

/** The most pages one dirty read reports: 2^20 (a 128 KiB bitmap, 4 GiB of 4 KiB pages). */
export const MAX_DIRTY_PAGES: number = 2 ** 20;

/** IOMMU_HWPT_GET_DIRTY_BITMAP (iommufd_hwpt_get_dirty_bitmap -> iopt_read_and_clear_dirty_data). */
export function dirtyRead(ctx: HostCtx, hwptId: number, opts: DirtyReadOptions): Uint8Array {
  const h = dirtyHwpt(ctx, hwptId);
  const ps = opts.pageSize;
  if (!Number.isSafeInteger(ps) || ps <= 0 || lowestBit(ps) !== ps) {
    throw new IommuError("EINVAL", `dirty page size ${ps} is not a power of two`, { pageSize: ps });
  }
  checkIova(opts.iova);
  checkLength(opts.length);
  if (opts.iova % ps !== 0 || opts.length % ps !== 0) {
    throw new IommuError(
      "EINVAL",
      `dirty range ${hex(opts.iova)}+${hex(opts.length)} is not aligned to ${ps}`,
    );
  }
  checkEnd(opts.iova, opts.length);
  const pages = opts.length / ps;
  // The bitmap is a new buffer and the walk visits every page: both bounded.
  if (pages > MAX_DIRTY_PAGES) {
    throw new IommuError("E2BIG", `${pages} pages exceed MAX_DIRTY_PAGES (${MAX_DIRTY_PAGES})`, {
      length: opts.length,
    });
  }
  const bitmap = new Uint8Array(Math.ceil(pages / 8));
  h.domain.readDirty!(opts.iova, opts.length, Math.log2(ps), bitmap, opts.noClear === true);
  return bitmap;
}

/** IOMMU_DESTROY of a paging HWPT (iommufd_hwpt_paging_destroy): EBUSY while attached or a nest parent. */
export function destroyHwptPaging(ctx: HostCtx, h: HwptPaging, busy: (why: string) => never): void {
  if (h.users > 0) busy("attached");
  if (h.children > 0) busy("parent of nested HWPTs");
  // iommufd_viommu_alloc_ioctl: refcount_inc(&viommu->hwpt->common.obj.users).
  if (h.viommus > 0) busy("held by a vIOMMU");
  h.domain.free();
  h.ioas.hwpts.splice(h.ioas.hwpts.indexOf(h), 1);
  ctx.objects.remove(h.id);
  relayout(ctx, h.ioas);
}

/**
 * IOMMU_DESTROY of a nested HWPT (iommufd_hwpt_nested_destroy): EBUSY while attached;
 * releases its vIOMMU (hwpt_nested->viommu) or its parent.
 */
export function destroyHwptNested(ctx: HostCtx, h: HwptNested, busy: (why: string) => never): void {
  if (h.users > 0) busy("attached");
  h.domain.free();
  if (h.viommu !== null) h.viommu.nested--;
  else h.parent.children--;
  ctx.objects.remove(h.id);
}

/**
 * IOMMU_DESTROY of a fault queue: EBUSY while a HWPT still reports to it (the HWPT
 * holds a reference on it); then iommufd_fault_destroy answers what is left Invalid.
 */
export function destroyFaultQueue(ctx: HostCtx, fq: FaultQueueObject, busy: (why: string) => never): void {
  const users = ctx.objects
    .values()
    .filter((x) => (x.kind === "hwpt-paging" || x.kind === "hwpt-nested") && (x as Hwpt).faultQueue === fq);
  if (users.length > 0) busy(`used by HWPT ${users[0]!.id}`);
  // iommufd_fault_destroy: whatever is still queued or outstanding is answered Invalid.
  autoRespond(fq, () => true);
  ctx.objects.remove(fq.id);
}

/** The plain description of a paging HWPT. */
export function hwptPagingInfo(h: HwptPaging): HwptPagingInfo {
  return {
    id: h.id,
    kind: h.kind,
    ioas: h.ioas.id,
    iommu: h.domain.backend.name,
    format: h.domain.format,
    flags: { ...h.domain.flags },
    auto: h.auto,
    users: h.users,
    children: h.children,
    viommus: h.viommus,
    faultQueue: h.faultQueue?.id ?? null,
  };
}

/** The plain description of a nested HWPT. */
export function hwptNestedInfo(h: HwptNested): HwptNestedInfo {
  return {
    id: h.id,
    kind: h.kind,
    parent: h.parent.id,
    viommu: h.viommu?.id ?? null,
    iommu: h.domain.backend.name,
    format: h.domain.format,
    users: h.users,
    faultQueue: h.faultQueue?.id ?? null,
  };
}
