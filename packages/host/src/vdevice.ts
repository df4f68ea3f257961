/**
 * vDEVICE objects, after iommufd's viommu.c (Linux 6.15 iommufd_vdevice_alloc_ioctl,
 * iommufd_vdevice_destroy): a device's virtual id on one vIOMMU (the SMMUv3 vSID the
 * guest writes in its commands and reads in its events). A vDEVICE holds its vIOMMU
 * (`refcount_inc(&viommu->obj.users)`) and its device (get_device: the device cannot
 * be unbound while it exists).
 */

import { IommuError } from "@iommu-kit/core";
import type { DeviceRef, HostCtx, HostObject } from "./context.ts";
import type { ViommuObject } from "./viommu.ts";
import { getViommu } from "./viommu.ts";

/** IOMMU_VDEVICE_ALLOC arguments. */
export interface VdeviceAllocOptions {
  readonly viommu: number;
  readonly device: number;
  /** virt_id: the id the guest knows the device by (SMMUv3: the vSID, 32 bits). */
  readonly virtId: number;
}

/** `Host.describe` of a vDEVICE. */
export interface VdeviceInfo {
  readonly id: number;
  readonly kind: "vdevice";
  readonly viommu: number;
  readonly device: number;
  readonly virtId: number;
}

/** A vDEVICE (IOMMUFD_OBJ_VDEVICE; struct iommufd_vdevice). */
export class VdeviceObject implements HostObject {
  readonly kind = "vdevice" as const;
  readonly id: number;
  readonly viommu: ViommuObject;
  readonly device: DeviceRef;
  readonly virtId: number;

  constructor(id: number, viommu: ViommuObject, device: DeviceRef, virtId: number) {
    this.id = id;
    this.viommu = viommu;
    this.device = device;
    this.virtId = virtId;
  }
}

/** The largest virt_id: the SMMUv3 vSID is 32 bits (EVTQ_0_SID, CMDQ_CFGI_0_SID). */
export const MAX_VIRT_ID: number = 2 ** 32 - 1;

/** EINVAL unless `virtId` is an integer in [0, 2^32 - 1] (see {@link vdeviceAlloc}). */
export function checkVirtId(virtId: number): void {
  if (!Number.isInteger(virtId) || virtId < 0 || virtId > MAX_VIRT_ID)
    throw new IommuError("EINVAL", `virt_id ${virtId} is not a 32-bit id`, { virtId: String(virtId) });
}

/**
 * IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl, in its order): EINVAL for a virt_id
 * that is not an integer in [0, 2^32 - 1] (6.15 checks virt_id > ULONG_MAX; no SMMUv3
 * command or record carries more than 32 bits); ENOENT for an unknown vIOMMU or device
 * (`getDevice` is the caller's); EINVAL for a device not behind the vIOMMU's IOMMU
 * (viommu->iommu_dev != __iommu_get_iommu_dev(idev->dev)); then the object, and EEXIST
 * from the backend for a taken virt_id (xa_cmpxchg) or a device that has one.
 * `getDevice` looks the device up.
 */
export function vdeviceAlloc(
  ctx: HostCtx,
  opts: VdeviceAllocOptions,
  getDevice: (id: number) => DeviceRef,
): number {
  checkVirtId(opts.virtId);
  const v = getViommu(ctx, opts.viommu);
  const dev = getDevice(opts.device);
  if (dev.backend !== v.backend)
    throw new IommuError(
      "EINVAL",
      `device ${dev.id} is not behind vIOMMU ${v.id}'s IOMMU ${v.backend.name}`,
      {
        device: dev.id,
        viommu: v.id,
      },
    );
  const objects = ctx.objects;
  objects.reserve("vdevice");
  v.viommu.addVdevice(dev.rid, opts.virtId);
  const o = objects.insert(new VdeviceObject(objects.nextId, v, dev, opts.virtId));
  v.vdevices++;
  return o.id;
}

/** IOMMU_DESTROY of a vDEVICE (iommufd_vdevice_destroy): the id is forgotten, the vIOMMU released. */
export function destroyVdevice(ctx: HostCtx, d: VdeviceObject): void {
  d.viommu.viommu.removeVdevice(d.device.rid);
  d.viommu.vdevices--;
  ctx.objects.remove(d.id);
}

/** The plain description of a vDEVICE. */
export function vdeviceInfo(d: VdeviceObject): VdeviceInfo {
  return { id: d.id, kind: d.kind, viommu: d.viommu.id, device: d.device.id, virtId: d.virtId };
}
