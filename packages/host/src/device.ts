/**
 * Devices, after iommufd's `struct iommufd_device` (drivers/iommu/iommufd/device.c):
 * a device behind one IOMMU instance, with what is attached to it per attach point:
 * the RID (intent `rid` or `rid-all-pasids`), each PASID, and, for a mediated
 * device, its emulated access. Detaching leaves the attach point blocked.
 */

import type { Backend } from "@iommu-kit/core";
import type { HostObject } from "./context.ts";
import type { AccessObject, Hwpt } from "./hw-pagetable.ts";

/** What serves the RID: a plain RID attach, or the whole PASID table (SMMUv3 user STE). */
export interface RidAttachment {
  readonly kind: "rid" | "rid-all-pasids";
  readonly hwpt: Hwpt;
}

/** The parent of a mediated device. */
export interface MdevParent {
  readonly device: HostDevice;
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
