/**
 * Fault records of the emulated path (vendor "mdev-emulated"). No spec defines them:
 * the parent driver's software walk of the emulated table raises them, and they are
 * modelled on the errors iommufd's access path returns for the same conditions
 * (drivers/iommu/iommufd/device.c, iommufd_access_rw: -ENOENT for an IOVA no area
 * covers, -EPERM when the area's protection forbids the access, -ENOENT when the
 * access has no IOAS). There are no table levels: the record names the page only.
 *
 * | code | name                | class         | when                                      |
 * |------|---------------------|---------------|-------------------------------------------|
 * | 1    | MDEV_UNMAPPED       | `translation` | no entry for the page                      |
 * | 2    | MDEV_PERMISSION     | `permission`  | the entry lacks the R / W / X needed       |
 * | 3    | MDEV_BLOCKED        | `blocked`     | nothing attached (or an unassigned PASID)  |
 * | 4    | MDEV_BEYOND_APERTURE| `translation` | IOVA at or above 2^48, the table's width  |
 *
 * Fields: `rid` (the mdev), `pasid` (null without one), `iova` (hex), `write`, `exec`.
 */

import type { Fault, FaultClass } from "@iommu-kit/core";
import { Access, hex, NO_PASID } from "@iommu-kit/core";

/** Vendor tag of every fault this package raises. */
export const MDEV_VENDOR = "mdev-emulated";

/** Fault codes of the emulated path. */
export const MdevFaultCode = {
  MDEV_UNMAPPED: 1,
  MDEV_PERMISSION: 2,
  MDEV_BLOCKED: 3,
  MDEV_BEYOND_APERTURE: 4,
} as const;

/** A fault code. */
export type MdevFaultCodeValue = (typeof MdevFaultCode)[keyof typeof MdevFaultCode];

const NAMES: readonly string[] = [
  "",
  "MDEV_UNMAPPED",
  "MDEV_PERMISSION",
  "MDEV_BLOCKED",
  "MDEV_BEYOND_APERTURE",
];
const CLASSES: readonly FaultClass[] = ["translation", "translation", "permission", "blocked", "translation"];

/**
 * Builds the fault record for `code`. Off the hot path (allocates). Every fault is
 * recorded except `blocked`, which, like an abort configuration, only fails the request.
 */
export function mdevFault(
  code: MdevFaultCodeValue,
  rid: number,
  pasid: number,
  iova: number,
  access: number,
): Fault {
  const cls = CLASSES[code]!;
  return {
    class: cls,
    recorded: cls !== "blocked",
    vendor: {
      vendor: MDEV_VENDOR,
      code,
      name: NAMES[code]!,
      fields: {
        rid,
        pasid: pasid === NO_PASID ? null : pasid,
        iova: hex(iova),
        write: (access & Access.WRITE) !== 0,
        exec: (access & Access.EXEC) !== 0,
      },
    },
  };
}
