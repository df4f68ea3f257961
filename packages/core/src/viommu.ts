/**
 * Virtual IOMMUs and recoverable faults: the contract half of iommufd's vIOMMU,
 * vDEVICE and vEVENTQ objects (Linux 6.13-6.15, drivers/iommu/iommufd/viommu.c and
 * eventq.c) and of I/O page faults (iommu_report_device_fault / iommu_page_response).
 *
 * A backend that can host a guest's view of its IOMMU implements
 * {@link Backend.allocViommu}: the vIOMMU owns the stage-2 context of one VM (the
 * SMMUv3 VMID), maps virtual device ids (vSIDs) to real ones, converts the guest's raw
 * invalidation commands and reports the guest's events with the virtual id in place.
 *
 * A backend that can hold a faulting request and let it retry (SMMUv3 stall model,
 * VT-d page requests) sets {@link Fault.pageRequest} on the fault it returns and
 * implements {@link Backend.pageResponse}.
 */

import type { Backend, Domain, DomainFlags } from "./backend.ts";

/** IOMMU_VIOMMU_TYPE_* by name: "arm-smmuv3" (IOMMU_VIOMMU_TYPE_ARM_SMMUV3), "selftest". */
export type ViommuType = string;

/** IOMMU_VIOMMU_ALLOC: a vIOMMU of `type` over nest-parent `parent`, for the IOMMU behind device `rid`. */
export interface ViommuRequest {
  readonly type: ViommuType;
  readonly rid: number;
  /** A paging domain of this backend allocated with `flags.nestParent`. */
  readonly parent: Domain;
}

/** One guest-visible event, as iommufd_viommu_report_event receives it. */
export interface ViommuEvent {
  /** IOMMU_VEVENTQ_TYPE_* by name ("arm-smmuv3", "selftest"). */
  readonly type: string;
  /** The record as the guest reads it (SMMUv3: the 32-byte event with the vSID in place of the SID). */
  readonly data: Uint8Array;
}

/** Receives a vIOMMU's events of one type (a vEVENTQ). */
export type ViommuEventSink = (event: ViommuEvent) => void;

/**
 * A virtual IOMMU (struct iommufd_viommu). Every throwing call leaves it exactly as it was.
 */
export interface Viommu {
  readonly backend: Backend;
  /** Unique within its backend. */
  readonly id: number;
  readonly type: ViommuType;
  readonly parent: Domain;
  /** Vendor ids it owns, for describe/dump ({ vmid: 5 } on SMMUv3). */
  readonly info: Readonly<Record<string, number | string | boolean>>;
  /**
   * IOMMU_VDEVICE_ALLOC: device `rid` is `virtId` (the vSID) to the guest. EEXIST when
   * `virtId` is taken or the device already has one; EINVAL for a device not behind this
   * vIOMMU's IOMMU or a `virtId` out of range.
   */
  addVdevice(rid: number, virtId: number): void;
  /** Forgets the device's virtual id. ENOENT when it has none. */
  removeVdevice(rid: number): void;
  /** The virtual id of device `rid`, or -1. */
  virtId(rid: number): number;
  /** IOMMU_HWPT_ALLOC with pt_id = this vIOMMU: a nested domain over `parent` (vendor data). */
  allocNested(data: unknown, flags: DomainFlags): Domain;
  /**
   * IOMMU_HWPT_INVALIDATE on the vIOMMU: processes raw vendor entries in order and
   * returns how many were handled; on a bad entry throws with `details.handled` set.
   */
  invalidate(entries: readonly unknown[]): number;
  /** Routes events of `type` to `sink` (a vEVENTQ); null stops them. EEXIST when one is set. */
  setEventSink(type: string, sink: ViommuEventSink | null): void;
  /** Releases the vIOMMU's ids. EBUSY while vdevices or nested domains exist. */
  free(): void;
}

/**
 * A request the IOMMU holds for software to answer (struct iommu_fault_page_request):
 * the SMMUv3 stalled transaction (event STALL = 1, STAG) or the VT-d page request
 * descriptor. The DMA that raised it retries after a `success` response.
 */
export interface PageRequest {
  readonly rid: number;
  /** NO_PASID when the request carried none. */
  readonly pasid: number;
  /** The faulting address, page aligned. */
  readonly addr: number;
  /** Perm bits requested (Perm.R / W / X; Access.PRIV is not a Perm). */
  readonly perm: number;
  readonly priv: boolean;
  /** Page request group index (SMMUv3: STAG; VT-d: PRGI). */
  readonly grpid: number;
  /** Last request of its group (SMMUv3 stalls are always last). */
  readonly last: boolean;
}

/** IOMMUFD_PAGE_RESP_*: SUCCESS retries the request, INVALID fails it. */
export type PageResponseCode = "success" | "invalid";
