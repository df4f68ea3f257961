/**
 * The vIOMMU ioctls of Linux 6.13-6.15 as bytes (include/uapi/linux/iommufd.h of 6.15,
 * drivers/iommu/iommufd/viommu.c, eventq.c, hw_pagetable.c): IOMMU_VIOMMU_ALLOC,
 * IOMMU_VDEVICE_ALLOC, IOMMU_VEVENTQ_ALLOC, the SMMUv3 structs of IOMMU_HWPT_ALLOC and
 * IOMMU_HWPT_INVALIDATE on a vIOMMU, and the host's page requests as FAULT groups.
 * `ioctl.ts` dispatches here; the checks are the ones the kernel makes on the raw struct,
 * the rest is {@link Host}'s.
 */

import type { ErrnoCode } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import type { Host } from "../host.ts";
import { SELFTEST, VEVENTQ_TYPE_SELFTEST, VIOMMU_TYPE_SELFTEST } from "../selftest-mock/viommu.ts";
import type { EventSource, PageFaultGroup, VeventSourceRecord } from "./eventq.ts";
import {
  PAGE_RESP_SUCCESS,
  VEVENTQ_TYPE_ARM_SMMUV3,
  VEVENTQ_TYPE_DEFAULT,
  VIOMMU_TYPE_ARM_SMMUV3,
  VIOMMU_TYPE_DEFAULT,
} from "./layout.ts";
import type { IoctlContext } from "./types.ts";

function fail(code: ErrnoCode, msg: string): never {
  throw new IommuError(code, msg);
}

const u64 = (v: DataView, o: number): bigint => v.getBigUint64(o, true);
const u32 = (v: DataView, o: number): number => v.getUint32(o, true);

/** IOMMU_VIOMMU_TYPE_* -> the host's type names (iommufd_test.h: IOMMU_VIOMMU_TYPE_SELFTEST 0xdeadbeef). */
const VIOMMU_TYPES: Readonly<Record<number, string>> = {
  [VIOMMU_TYPE_ARM_SMMUV3]: "arm-smmuv3",
  [VIOMMU_TYPE_SELFTEST]: SELFTEST,
};
/** IOMMU_VEVENTQ_TYPE_* -> the host's type names (iommufd_test.h: IOMMU_VEVENTQ_TYPE_SELFTEST 0xbeefbeef). */
const VEVENTQ_TYPES: Readonly<Record<number, string>> = {
  [VEVENTQ_TYPE_ARM_SMMUV3]: "arm-smmuv3",
  [VEVENTQ_TYPE_SELFTEST]: SELFTEST,
};
/** A type number no table names: a name no backend knows, so it refuses it (EOPNOTSUPP). */
const typeName = (table: Readonly<Record<number, string>>, n: number): string =>
  table[n] ?? `type-0x${n.toString(16)}`;

/**
 * copy_struct_from_user of `size` bytes from `b` (include/linux/uaccess.h): a shorter
 * source is zero-extended, a longer one must have an all-zero tail (E2BIG).
 */
function copyStruct(b: Uint8Array, size: number): DataView {
  if (b.length > size && b.subarray(size).some((x) => x !== 0))
    fail("E2BIG", `${b.length} bytes with non-zero bytes past ${size}`);
  const out = new Uint8Array(size);
  out.set(b.subarray(0, Math.min(size, b.length)));
  return new DataView(out.buffer);
}

/**
 * IOMMU_VIOMMU_ALLOC, struct iommu_viommu_alloc {size, flags, type, dev_id, hwpt_id,
 * out_viommu_id} (iommufd_viommu_alloc_ioctl): flags or IOMMU_VIOMMU_TYPE_DEFAULT
 * EOPNOTSUPP; the device, the nest-parent HWPT and the driver's type are the host's.
 */
export function viommuAlloc(c: IoctlContext): void {
  const v = c.cmd;
  const type = u32(v, 8);
  if (u32(v, 4) !== 0 || type === VIOMMU_TYPE_DEFAULT) fail("EOPNOTSUPP", "VIOMMU_ALLOC flags / type");
  const id = c.host.viommuAlloc({ device: u32(v, 12), hwpt: u32(v, 16), type: typeName(VIOMMU_TYPES, type) });
  v.setUint32(20, id, true);
  c.respond();
}

/**
 * IOMMU_VDEVICE_ALLOC, struct iommu_vdevice_alloc {size, viommu_id, dev_id,
 * out_vdevice_id, virt_id} (iommufd_vdevice_alloc_ioctl): virt_id is a u64 (an xarray
 * index); the host holds ids below 2^53 and refuses the ones it cannot take (EINVAL).
 */
export function vdeviceAlloc(c: IoctlContext): void {
  const v = c.cmd;
  const virtId = u64(v, 16);
  if (virtId > BigInt(Number.MAX_SAFE_INTEGER)) fail("EINVAL", `virt_id ${virtId}`);
  const id = c.host.vdeviceAlloc({ viommu: u32(v, 4), device: u32(v, 8), virtId: Number(virtId) });
  v.setUint32(12, id, true);
  c.respond();
}

/**
 * IOMMU_VEVENTQ_ALLOC, struct iommu_veventq_alloc {size, flags, viommu_id, type,
 * veventq_depth, out_veventq_id, out_veventq_fd, __reserved} (iommufd_veventq_alloc):
 * flags, __reserved or IOMMU_VEVENTQ_TYPE_DEFAULT EOPNOTSUPP, depth 0 EINVAL, then the
 * vIOMMU (ENOENT) and one queue per type (EEXIST). Returns the new id (the caller makes
 * the descriptor, stored at offset 24).
 */
export function veventqAlloc(c: IoctlContext): number {
  const v = c.cmd;
  const type = u32(v, 12);
  const depth = u32(v, 16);
  if (u32(v, 4) !== 0 || u32(v, 28) !== 0 || type === VEVENTQ_TYPE_DEFAULT)
    fail("EOPNOTSUPP", "VEVENTQ_ALLOC flags / __reserved / type");
  if (depth === 0) fail("EINVAL", "veventq_depth 0");
  const id = c.host.veventqAlloc({ viommu: u32(v, 8), type: typeName(VEVENTQ_TYPES, type), depth });
  v.setUint32(20, id, true);
  c.respond();
  return id;
}

/**
 * struct iommu_hwpt_arm_smmuv3 {ste[2]} for arm_vsmmu_alloc_domain_nested, copied by
 * iommu_copy_struct_from_user(..., IOMMU_HWPT_DATA_ARM_SMMUV3, ste): shorter than
 * offsetofend(ste) = 16 EINVAL, longer with a non-zero tail E2BIG. The vSTE checks
 * (arm_smmu_validate_vste) are the backend's.
 */
export function smmuv3Ste(c: IoctlContext, len: number): { ste: [bigint, bigint] } {
  if (len < 16) fail("EINVAL", `iommu_hwpt_arm_smmuv3 of ${len} bytes`);
  const d = copyStruct(c.mem.read(c.cmd.getBigUint64(32, true), len), 16);
  return { ste: [d.getBigUint64(0, true), d.getBigUint64(8, true)] };
}

/**
 * IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 entries for arm_vsmmu_cache_invalidate, as
 * iommu_copy_struct_from_full_user_array reads them: no entries EINVAL; each struct
 * iommu_viommu_arm_smmuv3_invalidate {cmd[2]} is copied with copy_struct_from_user
 * (shorter zero-extended, non-zero tail E2BIG), all before any command is issued
 * (handled 0). Returns the commands as `[w0, w1]`.
 */
export function smmuv3Commands(
  c: IoctlContext,
  ptr: bigint,
  entryLen: number,
  n: number,
): [bigint, bigint][] {
  if (n === 0) fail("EINVAL", "no SMMUv3 commands");
  const out: [bigint, bigint][] = [];
  for (let i = 0; i < n; i++) {
    const d = copyStruct(c.mem.read(ptr + BigInt(i * entryLen), entryLen), 16);
    out.push([d.getBigUint64(0, true), d.getBigUint64(8, true)]);
  }
  return out;
}

/**
 * Page requests the host delivered to FAULT `id` (recoverable faults of DMAs on HWPTs
 * with that fault queue), each a group of one, taken from the host one at a time as a
 * read hands them out. The host names them by its own cookie; the descriptor hands out
 * its own at read time (as the kernel's xa_alloc) and answers the host's when user
 * space answers it.
 */
export function hostPageFaults(host: Host, id: number): EventSource<PageFaultGroup> {
  return {
    pending: () => (host.describe(id) as { pending?: number }).pending !== 0,
    pull: () => {
      const r = host.faultQueueRead(id, 1)[0];
      if (r === undefined) return undefined;
      return {
        faults: [
          {
            flags: r.flags,
            devId: r.devId,
            pasid: r.pasid,
            grpid: r.grpid,
            perm: r.perm,
            addr: BigInt(r.addr),
          },
        ],
        respond: (code: number) => {
          host.faultRespond(id, {
            cookie: r.cookie,
            code: code === PAGE_RESP_SUCCESS ? "success" : "invalid",
          });
        },
      };
    },
  };
}

/**
 * The host's records of vEVENTQ `id`, one at a time as a read takes them (so the host's
 * num_events counts what user space has not read, as the kernel's does); `pending`
 * includes the LOST_EVENTS record.
 */
export function hostVevents(host: Host, id: number): EventSource<VeventSourceRecord> {
  return {
    pending: () => {
      const d = host.describe(id) as { pending?: number; lost?: boolean };
      return (d.pending ?? 0) > 0 || d.lost === true;
    },
    pull: () => host.veventqRead(id, 1)[0],
  };
}
