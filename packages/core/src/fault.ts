/**
 * Faults: a generic class (vendor-neutral, for callers that do not care which IOMMU
 * raised it) plus the vendor's own record with exactly the spec's codes.
 */

/**
 * Generic fault classes (DESIGN.md, "Contract"):
 * - `translation`: no valid mapping (invalid descriptor, out-of-range input, TTBx gap).
 * - `permission`: the mapping forbids this access.
 * - `address-size`: an output or table address beyond the configured size.
 * - `access-flag`: AF = 0 with software AF management.
 * - `bad-config`: an illegal STE/CD, context or PASID entry (C_BAD_*, reserved bits).
 * - `walk-abort`: a table fetch failed (bus error).
 * - `blocked`: abort configuration, detached device, disabled stream, blocking type.
 */
export type FaultClass =
  | "translation"
  | "permission"
  | "address-size"
  | "access-flag"
  | "bad-config"
  | "walk-abort"
  | "blocked";

/** Every fault class, for schema enums and tests. */
export const FAULT_CLASSES: readonly FaultClass[] = [
  "translation",
  "permission",
  "address-size",
  "access-flag",
  "bad-config",
  "walk-abort",
  "blocked",
];

/** A decoded field of a vendor record. */
export type VendorFieldValue = number | bigint | boolean | string | null;

/**
 * The vendor's own fault record. `code` is the spec's number (SMMUv3 event ID, VT-d
 * fault reason) or null when the spec raises none (an abort STE terminates silently).
 * `raw`, when present, is the record exactly as the hardware writes it (a 32-byte
 * SMMUv3 event, a 16-byte VT-d FRCD).
 */
export interface VendorFault {
  /** "arm-smmuv3", "intel-vtd", "mdev-emulated", "mock", ... */
  readonly vendor: string;
  readonly code: number | null;
  /** The spec's name: "F_TRANSLATION", "C_BAD_STE", "DMAR_FR_PTE_NOT_PRESENT"... */
  readonly name: string;
  /** Decoded record fields by the spec's names (StreamID, SSV, S2, CLASS, FR, ...). */
  readonly fields: Readonly<Record<string, VendorFieldValue>>;
  readonly raw?: Uint8Array;
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

/** A translation that did not produce an address. */
export interface Fault {
  readonly class: FaultClass;
  /**
   * True when the configuration says to record it (event queue, fault registers).
   * A suppressed fault (FPD, CD.R = 0, abort STE) still fails the request.
   */
  readonly recorded: boolean;
  readonly vendor: VendorFault;
  /**
   * Set when the IOMMU holds the request for software to answer (a recoverable I/O
   * page fault: SMMUv3 stall, VT-d page request); the device retries after a success
   * response through `Backend.pageResponse`.
   */
  readonly pageRequest?: PageRequest;
}

/** Builds a fault object. Off the hot path: faults may allocate. */
export function makeFault(
  cls: FaultClass,
  recorded: boolean,
  vendor: VendorFault,
  pageRequest?: PageRequest,
): Fault {
  return pageRequest === undefined
    ? { class: cls, recorded, vendor }
    : { class: cls, recorded, vendor, pageRequest };
}
