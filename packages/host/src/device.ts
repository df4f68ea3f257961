/**
 * Devices, after iommufd's `struct iommufd_device` and the attach half of device.c: a
 * device behind one IOMMU instance, with what is attached to it per attach point: the
 * RID (intent `rid` or `rid-all-pasids`), each PASID, and, for a mediated device, its
 * emulated access (access.ts). Attach / replace / detach
 * (iommufd_device_attach / _replace / _detach) and their PASID rules live here;
 * detaching leaves the attach point blocked.
 *
 * Rules (iommufd's): an occupied attach point is EBUSY for attach, an empty one EINVAL
 * for replace; a RID attach to an IOAS reuses a compatible automatic HWPT or makes one
 * (iommufd_device_auto_get_domain); a PASID attach needs a HWPT with the pasid flag,
 * and so does the RID's HWPT while PASIDs are attached, in both orders (EINVAL).
 */

import type { AttachIntent, Backend, Capabilities, HwInfo, IntentKind, IovaRange } from "@iommu-kit/core";
import { assertIntentAllowed, HwInfoType, hwCapFlags, hwCapNames, IommuError } from "@iommu-kit/core";
import type { AccessObject } from "./access.ts";
import { attachEmulated, detachEmulated } from "./access.ts";
import type { HostCtx, HostObject } from "./context.ts";
import { autoRespond } from "./fault.ts";
import type { Hwpt } from "./hw-pagetable.ts";
import { HwptPaging, pagingOf, releaseHwpt } from "./hw-pagetable.ts";
import { fillDomain, unfillDomain } from "./io-pagetable.ts";
import type { Ioas } from "./ioas.ts";
import { checkedLayout, relayout } from "./ioas.ts";

/** A device behind an IOMMU instance. */
export interface DeviceOptions {
  /** The IOMMU instance name given to `Host.addIommu`. */
  readonly iommu: string;
  /** StreamID (SMMUv3) / source-id (VT-d) / device number. */
  readonly rid: number;
  /** PASID width; 0 (default) = no PASID. */
  readonly pasidBits?: number;
  readonly ats?: boolean;
  /** PCIe PRI (needs `ats`): the device sends page requests (VT-d PRQ, recoverable faults). */
  readonly pri?: boolean;
  /** The device tolerates stalls (SMMUv3 stall model, firmware "dma-can-stall"). */
  readonly canStall?: boolean;
}

/** A mediated device on a parent device. */
export interface MdevOptions {
  /** Host id of the parent (physical) device. */
  readonly parent: number;
  /** The mdev backend instance; default: the first of kind `mdevBackend`, created as "mdev" when none. */
  readonly iommu?: string;
  /** Device number inside the mdev backend; default the lowest free. */
  readonly rid?: number;
}

/** An attach intent: core's, or shorthand. `{pasid: "auto"}` for mdevs. */
export type IntentSpec = AttachIntent | Exclude<IntentKind, "pasid"> | { readonly pasid: number | "auto" };

/** What an attach or replace used. */
export interface AttachOutcome {
  /** The HWPT serving the attach point (an automatic one for an IOAS), or the access id for `emulated`. */
  readonly hwpt: number;
  /** The PASID (assigned by the backend for `pasid: "auto"`). */
  readonly pasid?: number;
}

/** IOMMU_GET_HW_INFO of one device. */
export interface HwInfoResult {
  /** out_capabilities flag names ("dirty_tracking", "pasid_exec", "pasid_priv", "ats_not_supported"). */
  readonly capabilities: readonly string[];
  /** out_capabilities as a number (IOMMU_HW_CAP_*). */
  readonly flags: number;
  readonly maxPasidLog2: number;
  /** out_data_type by name: "arm-smmuv3", "intel-vtd", "none". */
  readonly type: HwInfo["type"];
  /** out_data_type as a number (IOMMU_HW_INFO_TYPE_*). */
  readonly typeId: number;
  /** The vendor block (raw registers). */
  readonly data: HwInfo;
  /** Intents the device accepts. */
  readonly intents: readonly IntentKind[];
  /** The full capability record. */
  readonly caps: Capabilities;
}

/** `Host.describe` of a device. */
export interface DeviceInfo {
  readonly id: number;
  readonly kind: "device";
  /** IOMMU instance name. */
  readonly iommu: string;
  readonly rid: number;
  readonly pasidBits: number;
  /** Parent device id (mdevs), else null. */
  readonly parent: number | null;
  /** What serves the RID (null: blocked). */
  readonly ridAttach: { readonly kind: "rid" | "rid-all-pasids"; readonly hwpt: number } | null;
  /** Attached PASIDs as [pasid, hwpt id], ascending. */
  readonly pasids: ReadonlyArray<readonly [number, number]>;
  /** Access object id (emulated attach), else null. */
  readonly access: number | null;
  /** Mediated devices on this one. */
  readonly children: number;
  /** The backend's own id of the domain on the RID (null: none), to catch host/backend drift. */
  readonly backendRid: number | null;
}

/** What serves the RID: a plain RID attach, or the whole PASID table (SMMUv3 user STE). */
export interface RidAttachment {
  readonly kind: "rid" | "rid-all-pasids";
  readonly hwpt: Hwpt;
}

/** A device object. */
export class HostDevice implements HostObject {
  readonly kind = "device" as const;
  readonly id: number;
  /** The IOMMU instance name (host.addIommu's name). */
  readonly iommu: string;
  readonly backend: Backend;
  /** StreamID / source-id / the mdev backend's device number. */
  readonly rid: number;
  readonly pasidBits: number;
  /** Set for a mediated device. */
  readonly parent: HostDevice | null;
  /** RID attach point (null: blocked). */
  ridAttach: RidAttachment | null = null;
  /** PASID attach points. */
  readonly pasids: Map<number, Hwpt> = new Map();
  /** Emulated access (mediated devices attached with intent `emulated`). */
  access: AccessObject | null = null;
  /** Mediated devices whose parent this is. */
  children = 0;
  /**
   * PASIDs of this (parent) device held by its mdevs, PASID -> mdev. The parent's own
   * attach of one is EBUSY, and they count as attached PASIDs for its RID rules.
   */
  readonly mdevPasids: Map<number, HostDevice> = new Map();

  constructor(
    id: number,
    iommu: string,
    backend: Backend,
    rid: number,
    pasidBits: number,
    parent: HostDevice | null,
  ) {
    this.id = id;
    this.iommu = iommu;
    this.backend = backend;
    this.rid = rid;
    this.pasidBits = pasidBits;
    this.parent = parent;
  }

  /** True when anything is attached. */
  get attached(): boolean {
    return this.ridAttach !== null || this.pasids.size > 0 || this.access !== null;
  }
}

/** The device `id`; ENOENT otherwise. */
export function getDevice(ctx: HostCtx, id: number): HostDevice {
  return ctx.objects.get(id, "device") as HostDevice;
}

/** Every device, by ascending id. */
export function allDevices(ctx: HostCtx): HostDevice[] {
  return ctx.objects.values().filter((o): o is HostDevice => o.kind === "device");
}

/** `HostCtx.ridRegions`: reserved regions of every device whose RID attach reads IOAS `ioasId`. */
export function ridRegions(ctx: HostCtx, ioasId: number): IovaRange[] {
  const out: IovaRange[] = [];
  for (const dev of allDevices(ctx)) {
    if (dev.ridAttach !== null && pagingOf(dev.ridAttach.hwpt).ioas.id === ioasId)
      out.push(...dev.backend.reservedRegions(dev.rid));
  }
  return out;
}

/**
 * Binds a device to an IOMMU instance (iommufd_device_bind): the backend learns the
 * RID first (EEXIST / EINVAL for a bad one), then the object is committed.
 */
export function bindDevice(ctx: HostCtx, backend: Backend, opts: DeviceOptions): number {
  const pasidBits = opts.pasidBits ?? 0;
  ctx.objects.reserve("device");
  const spec: { rid: number; pasidBits: number; ats?: boolean; pri?: boolean; canStall?: boolean } = {
    rid: opts.rid,
    pasidBits,
  };
  if (opts.ats !== undefined) spec.ats = opts.ats;
  if (opts.pri !== undefined) spec.pri = opts.pri;
  if (opts.canStall !== undefined) spec.canStall = opts.canStall;
  backend.addDevice(spec);
  return ctx.objects.insert(
    new HostDevice(ctx.objects.nextId, opts.iommu, backend, opts.rid, pasidBits, null),
  ).id;
}

/**
 * Binds a mediated device `rid` of the mdev instance `iommu` on `parent`. The caller
 * chose (and may roll back) the instance; this throws before changing anything.
 */
export function bindMdev(
  ctx: HostCtx,
  parent: HostDevice,
  iommu: string,
  backend: Backend,
  rid: number,
): number {
  ctx.objects.reserve("device");
  backend.addDevice({ rid, pasidBits: 0, parent: { backend: parent.backend, rid: parent.rid } });
  parent.children++;
  return ctx.objects.insert(new HostDevice(ctx.objects.nextId, iommu, backend, rid, 0, parent)).id;
}

/** IOMMU_GET_HW_INFO (iommufd_get_hw_info). */
export function hwInfo(dev: HostDevice): HwInfoResult {
  const caps = dev.backend.capabilities(dev.rid);
  return {
    capabilities: hwCapNames(caps),
    flags: hwCapFlags(caps),
    maxPasidLog2: caps.maxPasidLog2,
    type: caps.hwInfo.type,
    typeId: HwInfoType[caps.hwInfo.type],
    data: caps.hwInfo,
    intents: caps.intents,
    caps,
  };
}

/** Core's intent from the shorthand; EINVAL for an unknown name. */
export function toIntent(spec: IntentSpec): AttachIntent {
  if (typeof spec === "string") {
    if (spec === "rid" || spec === "rid-all-pasids" || spec === "emulated") return { kind: spec };
    throw new IommuError("EINVAL", `unknown intent ${JSON.stringify(spec)}`);
  }
  if ("kind" in spec) return spec;
  return { kind: "pasid", pasid: spec.pasid };
}

/**
 * Attaches (`replace` false) or replaces what serves attach point `intent` of `dev`
 * with `ptId`, an IOAS or a HWPT (iommufd_device_attach / _replace). See
 * `Host.attach` / `Host.replace`.
 */
export function attachDevice(
  ctx: HostCtx,
  dev: HostDevice,
  intent: AttachIntent,
  ptId: number,
  replace: boolean,
): AttachOutcome {
  const caps = dev.backend.capabilities(dev.rid);
  assertIntentAllowed(caps, intent);
  const pt = ctx.objects.get(ptId, "ioas", "hwpt-paging", "hwpt-nested");
  // iommufd_dirty_tracking: a device without dirty tracking cannot join a dirty HWPT.
  if (pt.kind !== "ioas" && pagingOf(pt as Hwpt).domain.flags.dirtyTracking && !caps.features.dirtyTracking) {
    throw new IommuError("EINVAL", `device ${dev.id} cannot track dirty pages for HWPT ${pt.id}`, {
      device: dev.id,
    });
  }
  if (intent.kind === "emulated") return attachEmulated(ctx, dev, pt, replace);
  if (intent.kind === "pasid") return attachPasid(ctx, dev, intent.pasid, pt, replace);
  const cur = dev.ridAttach;
  if (!replace && cur !== null) {
    throw new IommuError("EBUSY", `device ${dev.id} RID is attached to HWPT ${cur.hwpt.id}`, {
      device: dev.id,
    });
  }
  if (replace && cur === null)
    throw new IommuError("EINVAL", `device ${dev.id} RID is not attached`, { device: dev.id });
  // PASIDs its mdevs hold on it count as attached (iommufd_hwpt_pasid_compat, pasid == IOMMU_NO_PASID).
  const needPasid = dev.pasids.size > 0 || dev.mdevPasids.size > 0;
  if (intent.kind === "rid-all-pasids" && needPasid) {
    throw new IommuError("EBUSY", `device ${dev.id} has PASIDs attached`, { device: dev.id });
  }
  if (pt.kind === "ioas") {
    if (intent.kind !== "rid") throw new IommuError("EINVAL", "rid-all-pasids needs a HWPT, not an IOAS");
    return { hwpt: attachRidIoas(ctx, dev, pt as Ioas, needPasid, cur?.hwpt ?? null) };
  }
  const h = pt as Hwpt;
  if (needPasid && !h.domain.flags.pasid) {
    throw new IommuError(
      "EINVAL",
      `device ${dev.id} has PASIDs attached: HWPT ${h.id} needs the pasid flag`,
      {
        hwpt: h.id,
      },
    );
  }
  if (cur !== null && cur.hwpt === h && cur.kind === intent.kind) return { hwpt: h.id };
  const ioas = pagingOf(h).ioas;
  const moving = cur === null || pagingOf(cur.hwpt).ioas !== ioas;
  if (moving) checkedLayout(ctx, ioas, [], dev.backend.reservedRegions(dev.rid));
  dev.backend.attach(dev.rid, intent, h.domain);
  commitRid(ctx, dev, intent.kind, h);
  return { hwpt: h.id };
}

/** RID attach to an IOAS: reuse a compatible automatic HWPT, or create one (iommufd_device_auto_get_domain). */
function attachRidIoas(
  ctx: HostCtx,
  dev: HostDevice,
  ioas: Ioas,
  needPasid: boolean,
  cur: Hwpt | null,
): number {
  const moving = cur === null || pagingOf(cur).ioas !== ioas;
  for (const h of ioas.hwpts) {
    if (!(h instanceof HwptPaging) || !h.auto || h.domain.backend !== dev.backend) continue;
    if (needPasid && !h.domain.flags.pasid) continue;
    if (h === cur) return h.id;
    if (moving) checkedLayout(ctx, ioas, [], dev.backend.reservedRegions(dev.rid));
    try {
      dev.backend.attach(dev.rid, { kind: "rid" }, h.domain);
    } catch (e) {
      // An incompatible domain (EINVAL) means try the next.
      if (e instanceof IommuError && e.code === "EINVAL") continue;
      throw e;
    }
    commitRid(ctx, dev, "rid", h);
    return h.id;
  }
  const objects = ctx.objects;
  objects.reserve("hwpt-paging");
  const domain = dev.backend.allocDomain({
    type: "paging",
    rid: dev.rid,
    flags: needPasid ? { pasid: true } : {},
  });
  try {
    checkedLayout(ctx, ioas, [domain], moving ? dev.backend.reservedRegions(dev.rid) : []);
    fillDomain(domain, ioas.iopt.areas);
  } catch (e) {
    domain.free();
    throw e;
  }
  try {
    dev.backend.attach(dev.rid, { kind: "rid" }, domain);
  } catch (e) {
    unfillDomain(domain, ioas.iopt.areas);
    domain.free();
    throw e;
  }
  const h = objects.insert(new HwptPaging(objects.nextId, ioas, domain, true, null));
  ioas.hwpts.push(h);
  commitRid(ctx, dev, "rid", h);
  return h.id;
}

/**
 * An attach point of `dev` let go of `h`: its page requests still queued or outstanding
 * are answered Invalid (iommufd_auto_response_faults, from iommufd_hwpt_detach_device and
 * the replace path), then the HWPT is released. Never fails.
 */
function letGo(ctx: HostCtx, dev: HostDevice, h: Hwpt): void {
  h.users--;
  if (h.faultQueue !== null) autoRespond(h.faultQueue, (g) => g.owner === dev && g.hwpt === h);
  releaseHwpt(ctx, h);
}

/** Commits a RID attach after the backend took it: counts, the old HWPT's release, the layout. Never fails. */
function commitRid(ctx: HostCtx, dev: HostDevice, kind: "rid" | "rid-all-pasids", h: Hwpt): void {
  const old = dev.ridAttach?.hwpt ?? null;
  dev.ridAttach = { kind, hwpt: h };
  if (old !== h) {
    h.users++;
    if (old !== null) letGo(ctx, dev, old);
  }
  relayout(ctx, pagingOf(h).ioas);
}

/** The PASID attach point (iommufd_device_attach with a pasid; the pasid rules of iommufd_hwpt_pasid_compat). */
function attachPasid(
  ctx: HostCtx,
  dev: HostDevice,
  pasid: number | "auto",
  pt: HostObject,
  replace: boolean,
): AttachOutcome {
  if (pt.kind === "ioas")
    throw new IommuError("EINVAL", "a PASID attach needs a HWPT allocated with the pasid flag, not an IOAS");
  const h = pt as Hwpt;
  if (!h.domain.flags.pasid)
    throw new IommuError("EINVAL", `HWPT ${h.id} was not allocated with the pasid flag`, { hwpt: h.id });
  // An mdev's PASID is on its parent, so the parent's RID is the one the rules read.
  const rid = (dev.parent ?? dev).ridAttach;
  if (rid !== null && rid.kind === "rid-all-pasids") {
    throw new IommuError("EBUSY", `device ${dev.id} RID owns every PASID (rid-all-pasids)`, {
      device: dev.id,
    });
  }
  if (rid !== null && !rid.hwpt.domain.flags.pasid) {
    throw new IommuError("EINVAL", `device ${dev.id} RID HWPT ${rid.hwpt.id} is not PASID-capable`, {
      device: dev.id,
    });
  }
  // A backend-assigned PASID (mdev): the device has at most one; "auto" names it.
  const key = pasid === "auto" ? (dev.pasids.keys().next().value ?? null) : pasid;
  const old = key === null ? undefined : dev.pasids.get(key);
  if (!replace && old !== undefined) {
    throw new IommuError("EBUSY", `device ${dev.id} PASID ${key} is attached`, {
      device: dev.id,
      pasid: key,
    });
  }
  // iommu_attach_device_pasid (drivers/iommu/iommu.c): a PASID in use on the device
  // (here: held by one of its mdevs) is EBUSY; nothing is taken over.
  const holder = typeof pasid === "number" ? dev.mdevPasids.get(pasid) : undefined;
  if (!replace && holder !== undefined) {
    throw new IommuError("EBUSY", `device ${dev.id} PASID ${pasid} is held by mdev ${holder.id}`, {
      device: dev.id,
      pasid,
    });
  }
  if (replace && old === undefined) {
    throw new IommuError("EINVAL", `device ${dev.id} PASID ${String(pasid)} is not attached`, {
      device: dev.id,
    });
  }
  if (old === h) return { hwpt: h.id, pasid: key! };
  const res = dev.backend.attach(dev.rid, { kind: "pasid", pasid }, h.domain);
  const got = res.pasid ?? key;
  if (got === null || got === undefined) throw new Error("backend assigned no PASID");
  if (old !== undefined && got !== key) {
    dev.pasids.delete(key!);
    dev.parent?.mdevPasids.delete(key!);
  }
  dev.pasids.set(got, h);
  dev.parent?.mdevPasids.set(got, dev);
  h.users++;
  if (old !== undefined) letGo(ctx, dev, old);
  return { hwpt: h.id, pasid: got };
}

/** Detaches attach point `intent` of `dev` (iommufd_device_detach); see `Host.detach`. */
export function detachDevice(ctx: HostCtx, dev: HostDevice, it: AttachIntent): void {
  if (!dev.backend.capabilities(dev.rid).intents.includes(it.kind)) {
    throw new IommuError("EOPNOTSUPP", `intent ${it.kind} is not supported by device ${dev.id}`, {
      device: dev.id,
    });
  }
  if (it.kind === "emulated") {
    detachEmulated(ctx, dev, it);
    return;
  }
  if (it.kind === "pasid") {
    const key = it.pasid === "auto" ? (dev.pasids.keys().next().value ?? null) : it.pasid;
    const h = key === null ? undefined : dev.pasids.get(key);
    if (h === undefined) return;
    dev.backend.detach(dev.rid, { kind: "pasid", pasid: key! });
    dev.pasids.delete(key!);
    dev.parent?.mdevPasids.delete(key!);
    letGo(ctx, dev, h);
    return;
  }
  const cur = dev.ridAttach;
  if (cur === null) return;
  dev.backend.detach(dev.rid, { kind: cur.kind });
  dev.ridAttach = null;
  letGo(ctx, dev, cur.hwpt);
}

/** IOMMU_DESTROY of a device (iommufd_device_unbind): EBUSY while attached or a parent of mdevs. */
export function destroyDevice(ctx: HostCtx, d: HostDevice, busy: (why: string) => never): void {
  if (d.attached) busy("attached");
  if (d.children > 0) busy("parent of mediated devices");
  // A vDEVICE holds its device (get_device in iommufd_vdevice_alloc_ioctl; the SMMU's
  // removeDevice is EBUSY too): destroy the vDEVICE first.
  const vdev = ctx.objects
    .values()
    .find((o) => o.kind === "vdevice" && (o as { device?: unknown }).device === d);
  if (vdev !== undefined) busy(`has vDEVICE ${vdev.id}`);
  d.backend.removeDevice(d.rid);
  if (d.parent !== null) d.parent.children--;
  ctx.objects.remove(d.id);
}

/** The backend's own id of the domain on a device's RID (null: none or an mdev). */
function backendDomainId(d: HostDevice): number | null {
  if (d.parent !== null) return null;
  try {
    return d.backend.attached(d.rid, { kind: d.ridAttach?.kind ?? "rid" })?.id ?? null;
  } catch {
    return null;
  }
}

/** The plain description of a device. */
export function deviceInfo(d: HostDevice): DeviceInfo {
  return {
    id: d.id,
    kind: d.kind,
    iommu: d.iommu,
    rid: d.rid,
    pasidBits: d.pasidBits,
    parent: d.parent?.id ?? null,
    ridAttach: d.ridAttach === null ? null : { kind: d.ridAttach.kind, hwpt: d.ridAttach.hwpt.id },
    pasids: [...d.pasids].map(([p, h]): [number, number] => [p, h.id]).sort((a, b) => a[0] - b[0]),
    access: d.access?.id ?? null,
    children: d.children,
    // What the backend itself has on the RID (its domain id), to catch host/backend drift.
    backendRid: backendDomainId(d),
  };
}
