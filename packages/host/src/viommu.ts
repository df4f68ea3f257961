/**
 * vIOMMU objects, after iommufd's viommu.c (Linux 6.15): IOMMU_VIOMMU_ALLOC over a
 * nest-parent paging HWPT for the IOMMU behind one device (the backend's
 * `allocViommu`, which owns the VMID), IOMMU_HWPT_INVALIDATE on a vIOMMU id (the
 * guest's raw commands through `Viommu.invalidate`) and IOMMU_DESTROY with its
 * refcounts: vDEVICEs (vdevice.ts), nested HWPTs allocated on it (hw-pagetable.ts)
 * and vEVENTQs (veventq.ts) each hold `viommu->obj.users`; the vIOMMU holds its
 * parent HWPT (`refcount_inc(&viommu->hwpt->common.obj.users)`).
 *
 * A vIOMMU takes its device as a `DeviceRef` and its parent as a `ViommuParent`, so this
 * file imports neither device.ts nor hw-pagetable.ts.
 */

import type { Backend, Domain, Viommu } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import type { DeviceRef, HostCtx, HostObject } from "./context.ts";

/**
 * What a vIOMMU needs of its parent paging HWPT (hw-pagetable.ts's `HwptPaging` has
 * it), so this file sits below hw-pagetable.ts, which allocates nested HWPTs on it.
 */
export interface ViommuParent extends HostObject {
  readonly domain: Domain;
  /** vIOMMUs holding it. */
  viommus: number;
}

/** IOMMU_VIOMMU_ALLOC arguments. */
export interface ViommuAllocOptions {
  /** A device behind the IOMMU the vIOMMU virtualises (dev_id). */
  readonly device: number;
  /** A nest-parent paging HWPT (hwpt_id): the guest's stage 2. */
  readonly hwpt: number;
  /** IOMMU_VIOMMU_TYPE_* by name: "arm-smmuv3", "selftest". */
  readonly type: string;
}

/** `Host.describe` of a vIOMMU. */
export interface ViommuInfo {
  readonly id: number;
  readonly kind: "viommu";
  readonly type: string;
  readonly iommu: string;
  /** The nest-parent HWPT it holds. */
  readonly hwpt: number;
  /** vDEVICEs on it. */
  readonly vdevices: number;
  /** Nested HWPTs allocated on it. */
  readonly nested: number;
  /** Its vEVENTQ ids, by type. */
  readonly veventqs: Readonly<Record<string, number>>;
  /** The backend's own ids ({ vmid } on SMMUv3). */
  readonly vendor: Readonly<Record<string, number | string | boolean>>;
}

/** A vIOMMU (IOMMUFD_OBJ_VIOMMU; struct iommufd_viommu). */
export class ViommuObject implements HostObject {
  readonly kind = "viommu" as const;
  readonly id: number;
  readonly viommu: Viommu;
  /** viommu->hwpt: the nest parent. */
  readonly hwpt: ViommuParent;
  /** viommu->iommu_dev, in the model the IOMMU instance. */
  readonly backend: Backend;
  /** vDEVICEs holding it. */
  vdevices = 0;
  /** Nested HWPTs holding it. */
  nested = 0;
  /** Its vEVENTQs by type (viommu->veventqs, one per type; veventq.ts's objects). */
  readonly veventqs: Map<string, HostObject> = new Map();

  constructor(id: number, viommu: Viommu, hwpt: ViommuParent, backend: Backend) {
    this.id = id;
    this.viommu = viommu;
    this.hwpt = hwpt;
    this.backend = backend;
  }
}

/** The vIOMMU `id`; ENOENT otherwise (iommufd_get_viommu). */
export function getViommu(ctx: HostCtx, id: number): ViommuObject {
  return ctx.objects.get(id, "viommu") as ViommuObject;
}

/**
 * IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl, in its order): the type "default"
 * (IOMMU_VIOMMU_TYPE_DEFAULT) is EOPNOTSUPP; ENOENT for an unknown device; EOPNOTSUPP
 * when the device's IOMMU has no viommu_alloc; ENOENT for a hwpt that is not a paging
 * HWPT (iommufd_get_hwpt_paging); EINVAL unless it is a nest parent; then the driver's
 * rules (arm_vsmmu_alloc: EOPNOTSUPP for another type, EINVAL for a parent of another IOMMU).
 */
export function viommuAlloc(
  ctx: HostCtx,
  opts: ViommuAllocOptions,
  getDevice: (id: number) => DeviceRef,
): number {
  const objects = ctx.objects;
  if (typeof opts.type !== "string" || opts.type === "" || opts.type === "default")
    throw new IommuError("EOPNOTSUPP", `vIOMMU type ${JSON.stringify(opts.type)} is not a type`);
  const dev = getDevice(opts.device);
  const backend = dev.backend;
  if (backend.allocViommu === undefined)
    throw new IommuError("EOPNOTSUPP", `IOMMU ${dev.iommu} has no vIOMMU (no viommu_alloc)`, {
      device: dev.id,
    });
  const hwpt = objects.get(opts.hwpt, "hwpt-paging") as ViommuParent;
  if (!hwpt.domain.flags.nestParent)
    throw new IommuError("EINVAL", `HWPT ${hwpt.id} is not a nest parent`, { hwpt: hwpt.id });
  objects.reserve("viommu");
  const v = backend.allocViommu({ type: opts.type, rid: dev.rid, parent: hwpt.domain });
  const o = objects.insert(new ViommuObject(objects.nextId, v, hwpt, backend));
  hwpt.viommus++;
  return o.id;
}

/**
 * IOMMU_HWPT_INVALIDATE on a vIOMMU (iommufd_hwpt_invalidate -> viommu->ops->cache_invalidate,
 * arm_vsmmu_cache_invalidate): the raw entries go to the backend, which returns how many
 * it handled; on an error that count is in `details.handled` (cmd->entry_num = done_num).
 */
export function viommuInvalidate(v: ViommuObject, entries: readonly unknown[]): number {
  return v.viommu.invalidate(entries);
}

/**
 * IOMMU_DESTROY of a vIOMMU (iommufd_viommu_destroy once obj.users allows): EBUSY while
 * vDEVICEs, nested HWPTs or vEVENTQs hold it; then the backend frees its ids and the
 * parent HWPT is released (refcount_dec(&viommu->hwpt->common.obj.users)).
 */
export function destroyViommu(ctx: HostCtx, v: ViommuObject, busy: (why: string) => never): void {
  if (v.vdevices > 0) busy(`${v.vdevices} vDEVICE(s) on it`);
  if (v.nested > 0) busy(`${v.nested} nested HWPT(s) on it`);
  if (v.veventqs.size > 0) busy(`vEVENTQ ${[...v.veventqs.values()][0]!.id} on it`);
  v.viommu.free();
  v.hwpt.viommus--;
  ctx.objects.remove(v.id);
}

/** The plain description of a vIOMMU. */
export function viommuInfo(v: ViommuObject): ViommuInfo {
  const veventqs: Record<string, number> = {};
  for (const [t, q] of [...v.veventqs].sort((a, b) => (a[0] < b[0] ? -1 : 1))) veventqs[t] = q.id;
  return {
    id: v.id,
    kind: v.kind,
    type: v.viommu.type,
    iommu: v.backend.name,
    hwpt: v.hwpt.id,
    vdevices: v.vdevices,
    nested: v.nested,
    veventqs,
    vendor: { ...v.viommu.info },
  };
}
