/**
 * Capabilities from the ID registers (ARM IHI 0070 6.3.1-6.3.6), as Linux's
 * arm_smmu_device_hw_probe reads them, plus the raw registers iommufd's
 * IOMMU_GET_HW_INFO returns (struct iommu_hw_info_arm_smmuv3).
 */

import type { Capabilities, IntentKind, SmmuV3HwInfo } from "@iommu-kit/core";
import { pageSizeBitmap } from "@iommu-kit/core";
import { lpaeGeometry } from "./format/lpae-pte.ts";
import type { SmmuHw } from "./hardware.ts";

/** Granules the SMMU supports (IDR5.GRAN*), as log2 sizes in the order 4K, 16K, 64K. */
export function granules(hw: SmmuHw): number[] {
  const out: number[] = [];
  if (hw.gran4k) out.push(12);
  if (hw.gran16k) out.push(14);
  if (hw.gran64k) out.push(16);
  return out;
}

/** Page sizes of a granule without LPA2: 4K (4K, 2M, 1G), 16K (16K, 32M), 64K (64K, 512M). */
export function granulePageSizes(g: number): number[] {
  if (g === 12) return [12, 21, 30];
  if (g === 14) return [14, 25];
  return [16, 29];
}

/** Input bits of a paging domain of `stage`: 48-bit VAs; stage-2 IPAs up to the OAS (IAS = OAS, 3.4). */
export function domainInputBits(hw: SmmuHw, stage: 1 | 2, g: number): number {
  if (stage === 1) return 48;
  return Math.min(hw.oas, 48, g === 16 ? 52 : 48);
}

/** Table formats the SMMU can serve, default first: stage 1 before stage 2, 4K before 16K before 64K. */
export function domainFormats(hw: SmmuHw): string[] {
  const out: string[] = [];
  for (const stage of [1, 2] as const) {
    if (stage === 1 ? !hw.s1p : !hw.s2p) continue;
    for (const g of granules(hw)) out.push(lpaeGeometry(stage, g, domainInputBits(hw, stage, g)).name);
  }
  return out;
}

/** The raw ID registers as iommufd reports them. */
export function hwInfo(hw: SmmuHw): SmmuV3HwInfo {
  const r = (n: string): number => Number(hw.readRegister(n));
  return {
    type: "arm-smmuv3",
    flags: 0,
    idr: [r("IDR0"), r("IDR1"), r("IDR2"), r("IDR3"), r("IDR4"), r("IDR5")],
    iidr: r("IIDR"),
    aidr: r("AIDR"),
  };
}

/**
 * The capability record of a device with `ssidBits` usable SubstreamID bits; `stall` is
 * its master->stall_enabled (I/O page faults through the stall model, 3.12.2). vIOMMUs
 * of type "arm-smmuv3" need ARM_SMMU_FEAT_NESTING and a coherent SMMU or S2FWB
 * (arm_vsmmu_alloc).
 */
export function capabilitiesOf(hw: SmmuHw, ssidBits: number, stall = false): Capabilities {
  const intents: IntentKind[] = ["rid"];
  if (ssidBits > 0) intents.push("pasid");
  if (hw.s1p && hw.s2p) intents.push("rid-all-pasids");
  const sizes = granules(hw).flatMap(granulePageSizes);
  const idr0 = Number(hw.readRegister("IDR0"));
  return {
    intents,
    maxPasidLog2: ssidBits,
    pasidAssignment: "caller",
    inputAddressBits: hw.s1p ? 48 : domainInputBits(hw, 2, 12),
    outputAddressBits: hw.oas,
    pageSizeBitmap: pageSizeBitmap(sizes),
    formats: domainFormats(hw),
    features: {
      dirtyTracking: hw.httu >= 2,
      pasidExec: true,
      pasidPriv: true,
      atsNotSupported: !hw.ats,
      nesting: hw.s1p && hw.s2p,
      coherent: ((idr0 >>> 4) & 1) === 1,
      iopf: stall,
      ...(hw.s1p && hw.s2p && (hw.coherent || hw.fwb) ? { viommuTypes: ["arm-smmuv3"] } : {}),
    },
    hwInfo: hwInfo(hw),
  };
}
