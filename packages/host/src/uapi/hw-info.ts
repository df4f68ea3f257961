/**
 * GET_HW_INFO vendor blocks of the built-in backends, as the drivers lay them out:
 * struct iommu_hw_info_vtd (intel_iommu_hw_info) and struct iommu_hw_info_arm_smmuv3
 * (arm_smmu_hw_info).
 */

import type { HwInfo } from "@iommu-kit/core";
import type { HwInfoBlock } from "./types.ts";

/** GET_HW_INFO vendor blocks of the built-in backends (intel_iommu_hw_info, arm_smmu_hw_info). */
export function builtinHwInfo(data: HwInfo): HwInfoBlock {
  if (data.type === "intel-vtd") {
    const b = new DataView(new ArrayBuffer(24));
    // intel_iommu_hw_info always reports IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 (6.12).
    b.setUint32(0, data.flags | 1, true);
    b.setBigUint64(8, data.capReg, true);
    b.setBigUint64(16, data.ecapReg, true);
    return { type: 1, data: new Uint8Array(b.buffer) };
  }
  if (data.type === "arm-smmuv3") {
    const b = new DataView(new ArrayBuffer(44));
    b.setUint32(0, data.flags, true);
    for (let i = 0; i < 6; i++) b.setUint32(8 + 4 * i, data.idr[i]!, true);
    b.setUint32(32, data.iidr, true);
    b.setUint32(36, data.aidr, true);
    return { type: 2, data: new Uint8Array(b.buffer) };
  }
  return { type: 0, data: new Uint8Array(0) };
}
