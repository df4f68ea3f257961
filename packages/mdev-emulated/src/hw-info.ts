/**
 * The capability report of a mediated device. It has no IOMMU of its own, so there are
 * no vendor registers (IOMMU_HW_INFO_TYPE_NONE, as iommufd reports for a device whose
 * driver has no hw_info op). It supports exactly two intents:
 * - `emulated` always: the parent driver reads the emulated table ("mdev-emulated");
 * - `pasid` only when the parent device lists `pasid`: its DMA is then issued by the
 *   parent tagged with a PASID this backend assigns (`pasidAssignment: "backend"`), and
 *   the PASID width, PASID features and extra table formats are the parent's.
 */

import type { Capabilities } from "@iommu-kit/core";
import { pageSizeBitmap } from "@iommu-kit/core";
import { IOVA_BITS, LEAF_SIZES_LG2 } from "./format/emulated-table.ts";

/** Name of the emulated table format. */
export const MDEV_FORMAT = "mdev-emulated";

/** Physical addresses an emulated mapping may target: below 2^52, as PhysicalMemory. */
export const OUTPUT_BITS = 52;

/** Capabilities of an mdev whose parent device reports `parent` (null: no parent). */
export function mdevCapabilities(parent: Capabilities | null): Capabilities {
  const pasid = parent?.intents.includes("pasid") === true && parent.maxPasidLog2 > 0;
  return Object.freeze({
    intents: Object.freeze(pasid ? (["emulated", "pasid"] as const) : (["emulated"] as const)),
    maxPasidLog2: pasid ? parent.maxPasidLog2 : 0,
    pasidAssignment: "backend",
    inputAddressBits: IOVA_BITS,
    outputAddressBits: OUTPUT_BITS,
    pageSizeBitmap: pageSizeBitmap(LEAF_SIZES_LG2),
    formats: Object.freeze(pasid ? [MDEV_FORMAT, ...parent.formats] : [MDEV_FORMAT]),
    features: Object.freeze({
      dirtyTracking: true,
      pasidExec: pasid && parent.features.pasidExec,
      pasidPriv: pasid && parent.features.pasidPriv,
      // The mdev never issues ATS requests of its own.
      atsNotSupported: true,
      nesting: false,
      coherent: true,
    }),
    hwInfo: Object.freeze({ type: "none" }),
  });
}
