/**
 * Per-device capability reporting, in the shape of iommufd's IOMMU_GET_HW_INFO
 * (include/uapi/linux/iommufd.h, struct iommu_hw_info): common flags + the PASID
 * width + a vendor-tagged block of raw registers, plus what iommu-kit adds: the
 * intents the device supports, address widths, page sizes and table formats.
 * A backend reports these *before* anyone attaches, and refuses anything else.
 */

import { IommuError } from "./errors.ts";
import type { AttachIntent, IntentKind } from "./intent.ts";
import { intentString } from "./intent.ts";

/** Raw SMMUv3 ID registers, as struct iommu_hw_info_arm_smmuv3 carries them. */
export interface SmmuV3HwInfo {
  readonly type: "arm-smmuv3";
  /** IOMMU_HW_INFO_ARM_SMMUV3_FLAG_* (errata). */
  readonly flags: number;
  /** SMMU_IDR0..IDR5. */
  readonly idr: readonly [number, number, number, number, number, number];
  readonly iidr: number;
  readonly aidr: number;
}
/** Raw VT-d capability registers, as struct iommu_hw_info_vtd carries them. */
export interface VtdHwInfo {
  readonly type: "intel-vtd";
  /** IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = bit 0. */
  readonly flags: number;
  /** CAP_REG (offset 0x08). */
  readonly capReg: bigint;
  /** ECAP_REG (offset 0x10). */
  readonly ecapReg: bigint;
}
/** No vendor block (emulated devices, mock backends): IOMMU_HW_INFO_TYPE_NONE. */
export interface NoHwInfo {
  readonly type: "none";
}
/** The vendor hardware info, tagged by type. */
export type HwInfo = SmmuV3HwInfo | VtdHwInfo | NoHwInfo;

/** enum iommu_hw_info_type values (include/uapi/linux/iommufd.h). */
export const HwInfoType = {
  none: 0,
  "intel-vtd": 1,
  "arm-smmuv3": 2,
} as const;

/** Feature flags with iommufd's meanings. */
export interface Features {
  /** IOMMU_HW_CAP_DIRTY_TRACKING: domains can track dirty pages. */
  readonly dirtyTracking: boolean;
  /** IOMMU_HW_CAP_PCI_PASID_EXEC: PASID requests may be instruction fetches. */
  readonly pasidExec: boolean;
  /** IOMMU_HW_CAP_PCI_PASID_PRIV: PASID requests may be privileged. */
  readonly pasidPriv: boolean;
  /** IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED: ATS cannot be enabled. */
  readonly atsNotSupported: boolean;
  /** Nested (two-stage) HWPTs can be built over a nest-parent domain. */
  readonly nesting: boolean;
  /** DMA is cache-coherent (IOMMU_CAP_CACHE_COHERENCY). */
  readonly coherent: boolean;
  /**
   * I/O page faults can be enabled (IOMMU_DEV_FEAT_IOPF): HWPTs with a fault object
   * (IOMMU_HWPT_FAULT_ID_VALID) may be attached and their faults are page requests.
   * Optional: absent means false.
   */
  readonly iopf?: boolean;
  /** vIOMMU types this device's IOMMU can host (IOMMU_VIOMMU_TYPE_*); absent means none. */
  readonly viommuTypes?: readonly string[];
}

/** iommu_hw_info.out_capabilities bits. */
export const HwCap = {
  DIRTY_TRACKING: 1,
  PCI_PASID_EXEC: 2,
  PCI_PASID_PRIV: 4,
  PCI_ATS_NOT_SUPPORTED: 8,
} as const;

/** The capability record of one device behind one backend. */
export interface Capabilities {
  /** Intents this device accepts; every other is refused with EOPNOTSUPP. */
  readonly intents: readonly IntentKind[];
  /** PASID width: PASIDs are [0, 2^maxPasidLog2); 0 = no PASID support. */
  readonly maxPasidLog2: number;
  /** Who picks the PASID of a `pasid` attach: the caller, or the backend (mediated devices). */
  readonly pasidAssignment: "caller" | "backend";
  /** Input (IOVA) address width in bits. */
  readonly inputAddressBits: number;
  /** Output (physical) address width in bits. */
  readonly outputAddressBits: number;
  /** Supported page sizes as a bitmap: bit n set = 2^n bytes (like iommu's pgsize_bitmap). */
  readonly pageSizeBitmap: bigint;
  /** Table formats the backend can allocate for this device (first is the default). */
  readonly formats: readonly string[];
  readonly features: Features;
  /** Raw vendor registers, as IOMMU_GET_HW_INFO reports them. */
  readonly hwInfo: HwInfo;
}

/** The log2 page sizes in a bitmap, ascending. */
export function pageSizesLg2(bitmap: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if ((bitmap >> BigInt(i)) & 1n) out.push(i);
  return out;
}

/** A page-size bitmap from log2 sizes. */
export function pageSizeBitmap(lg2s: readonly number[]): bigint {
  let b = 0n;
  for (const l of lg2s) b |= 1n << BigInt(l);
  return b;
}

/** iommu_hw_info.out_capabilities for a capability record. */
export function hwCapFlags(caps: Capabilities): number {
  let f = 0;
  if (caps.features.dirtyTracking) f |= HwCap.DIRTY_TRACKING;
  if (caps.maxPasidLog2 > 0 && caps.features.pasidExec) f |= HwCap.PCI_PASID_EXEC;
  if (caps.maxPasidLog2 > 0 && caps.features.pasidPriv) f |= HwCap.PCI_PASID_PRIV;
  if (caps.features.atsNotSupported) f |= HwCap.PCI_ATS_NOT_SUPPORTED;
  return f;
}

/** Names of the set out_capabilities flags ("dirty_tracking", "pasid_exec", "pasid_priv", "ats_not_supported"). */
export function hwCapNames(caps: Capabilities): string[] {
  const f = hwCapFlags(caps);
  const out: string[] = [];
  if (f & HwCap.DIRTY_TRACKING) out.push("dirty_tracking");
  if (f & HwCap.PCI_PASID_EXEC) out.push("pasid_exec");
  if (f & HwCap.PCI_PASID_PRIV) out.push("pasid_priv");
  if (f & HwCap.PCI_ATS_NOT_SUPPORTED) out.push("ats_not_supported");
  return out;
}

/** True when the device lists the intent kind at all. */
export function supportsIntent(caps: Capabilities, kind: IntentKind): boolean {
  return caps.intents.includes(kind);
}

/** True when `intent` may be attached: listed kind and, for `pasid`, a PASID the device can use. */
export function intentAllowed(caps: Capabilities, intent: AttachIntent): boolean {
  try {
    assertIntentAllowed(caps, intent);
    return true;
  } catch {
    return false;
  }
}

/**
 * Throws unless `intent` may be attached. An intent kind the device does not list is
 * EOPNOTSUPP, always (iommufd answers EINVAL for a PASID attach on a device without
 * PASIDs; iommu-kit says "not supported" for every unlisted intent). A listed `pasid`
 * intent with a PASID outside [0, 2^maxPasidLog2), or with the wrong assignment
 * (a number where the backend assigns, "auto" where the caller picks) is EINVAL.
 */
export function assertIntentAllowed(caps: Capabilities, intent: AttachIntent): void {
  if (!caps.intents.includes(intent.kind)) {
    throw new IommuError("EOPNOTSUPP", `intent ${intentString(intent)} is not supported by this device`, {
      intent: intent.kind,
    });
  }
  if (intent.kind !== "pasid") return;
  if (caps.pasidAssignment === "backend") {
    if (intent.pasid !== "auto") {
      throw new IommuError(
        "EINVAL",
        `this device's PASID is assigned by its backend; got pasid ${intent.pasid}`,
        {
          pasid: intent.pasid,
        },
      );
    }
    return;
  }
  const p = intent.pasid;
  if (p === "auto") throw new IommuError("EINVAL", "this device needs an explicit PASID, got auto");
  if (!Number.isInteger(p) || p < 0 || p >= 2 ** caps.maxPasidLog2) {
    throw new IommuError("EINVAL", `pasid ${p} is outside [0, 2^${caps.maxPasidLog2})`, {
      pasid: p,
      maxPasidLog2: caps.maxPasidLog2,
    });
  }
}
