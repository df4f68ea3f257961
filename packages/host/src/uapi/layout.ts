/**
 * The iommufd uAPI of Linux 6.12, plus the 6.13-6.15 vIOMMU ioctls, as numbers: ioctl numbers, struct sizes, the offset
 * of the last mandatory field (`min_size` of drivers/iommu/iommufd/main.c IOCTL_OP,
 * `offsetofend(struct, last)`), flags and errno numbers. Layouts are
 * include/uapi/linux/iommufd.h of 6.12 (little-endian, `__aligned_u64`), field offsets
 * are in the decoders of `ioctl.ts`.
 */

/** `IOMMUFD_TYPE` (';'). */
export const IOMMUFD_TYPE = 0x3b;

/** `_IO(IOMMUFD_TYPE, nr)`: iommufd ioctls carry no size or direction in the number. */
export function iommufdIoctl(nr: number): number {
  return (IOMMUFD_TYPE << 8) | nr;
}

/** IOMMUFD_CMD_* (6.12) and the selftest's IOMMU_TEST_CMD (IOMMUFD_CMD_BASE + 32). */
export const Cmd = {
  DESTROY: 0x80,
  IOAS_ALLOC: 0x81,
  IOAS_ALLOW_IOVAS: 0x82,
  IOAS_COPY: 0x83,
  IOAS_IOVA_RANGES: 0x84,
  IOAS_MAP: 0x85,
  IOAS_UNMAP: 0x86,
  OPTION: 0x87,
  VFIO_IOAS: 0x88,
  HWPT_ALLOC: 0x89,
  GET_HW_INFO: 0x8a,
  HWPT_SET_DIRTY_TRACKING: 0x8b,
  HWPT_GET_DIRTY_BITMAP: 0x8c,
  HWPT_INVALIDATE: 0x8d,
  FAULT_QUEUE_ALLOC: 0x8e,
  /** Linux 6.13 (IOMMUFD_CMD_IOAS_MAP_FILE, not served). */
  IOAS_MAP_FILE: 0x8f,
  /** Linux 6.13. */
  VIOMMU_ALLOC: 0x90,
  /** Linux 6.13. */
  VDEVICE_ALLOC: 0x91,
  /** Linux 6.14 (IOMMUFD_CMD_IOAS_CHANGE_PROCESS, not served). */
  IOAS_CHANGE_PROCESS: 0x92,
  /** Linux 6.15. */
  VEVENTQ_ALLOC: 0x93,
  TEST: 0xa0,
} as const;

/** `sizeof(struct)` and `offsetofend(struct, last)` of each ioctl (iommufd_ioctl_ops). */
export const Layout: Readonly<Record<number, { readonly size: number; readonly min: number }>> = {
  [Cmd.DESTROY]: { size: 8, min: 8 },
  [Cmd.IOAS_ALLOC]: { size: 12, min: 12 },
  [Cmd.IOAS_ALLOW_IOVAS]: { size: 24, min: 24 },
  [Cmd.IOAS_COPY]: { size: 40, min: 40 },
  [Cmd.IOAS_IOVA_RANGES]: { size: 32, min: 32 },
  [Cmd.IOAS_MAP]: { size: 40, min: 40 },
  [Cmd.IOAS_UNMAP]: { size: 24, min: 24 },
  [Cmd.OPTION]: { size: 24, min: 24 },
  [Cmd.VFIO_IOAS]: { size: 12, min: 12 },
  // struct iommu_hwpt_alloc: min_size = offsetofend(__reserved) = 24; fault_id is an extension.
  [Cmd.HWPT_ALLOC]: { size: 48, min: 24 },
  // struct iommu_hw_info: min_size = offsetofend(__reserved) = 32.
  [Cmd.GET_HW_INFO]: { size: 40, min: 32 },
  [Cmd.HWPT_SET_DIRTY_TRACKING]: { size: 16, min: 16 },
  [Cmd.HWPT_GET_DIRTY_BITMAP]: { size: 48, min: 48 },
  [Cmd.HWPT_INVALIDATE]: { size: 32, min: 32 },
  [Cmd.FAULT_QUEUE_ALLOC]: { size: 16, min: 16 },
  // 6.15 main.c IOCTL_OP(IOMMU_VIOMMU_ALLOC, ..., struct iommu_viommu_alloc, out_viommu_id):
  // {size, flags, type, dev_id, hwpt_id, out_viommu_id} (data_len / data_uptr are 6.16).
  [Cmd.VIOMMU_ALLOC]: { size: 24, min: 24 },
  // IOCTL_OP(IOMMU_VDEVICE_ALLOC, ..., struct iommu_vdevice_alloc, virt_id).
  [Cmd.VDEVICE_ALLOC]: { size: 24, min: 24 },
  // IOCTL_OP(IOMMU_VEVENTQ_ALLOC, ..., struct iommu_veventq_alloc, out_veventq_fd).
  [Cmd.VEVENTQ_ALLOC]: { size: 32, min: 28 },
};

export const IOAS_MAP_FIXED_IOVA = 1;
export const IOAS_MAP_WRITEABLE = 2;
export const IOAS_MAP_READABLE = 4;
export const HWPT_ALLOC_NEST_PARENT = 1;
export const HWPT_ALLOC_DIRTY_TRACKING = 2;
export const HWPT_FAULT_ID_VALID = 4;
export const HWPT_DATA_NONE = 0;
export const HWPT_DATA_VTD_S1 = 1;
/** IOMMU_HWPT_DATA_ARM_SMMUV3: struct iommu_hwpt_arm_smmuv3 {ste[2]} (16 bytes). */
export const HWPT_DATA_ARM_SMMUV3 = 2;
/** IOMMU_VIOMMU_TYPE_DEFAULT (reserved: EOPNOTSUPP) and IOMMU_VIOMMU_TYPE_ARM_SMMUV3. */
export const VIOMMU_TYPE_DEFAULT = 0;
export const VIOMMU_TYPE_ARM_SMMUV3 = 1;
/** IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: struct iommu_viommu_arm_smmuv3_invalidate {cmd[2]}. */
export const VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1;
/** IOMMU_VEVENTQ_TYPE_DEFAULT (reserved: EOPNOTSUPP) and IOMMU_VEVENTQ_TYPE_ARM_SMMUV3. */
export const VEVENTQ_TYPE_DEFAULT = 0;
export const VEVENTQ_TYPE_ARM_SMMUV3 = 1;
/** IOMMU_VEVENTQ_FLAG_LOST_EVENTS of struct iommufd_vevent_header. */
export const VEVENTQ_FLAG_LOST_EVENTS = 1;
/** sizeof(struct iommufd_vevent_header) {flags, sequence}. */
export const VEVENT_HEADER_SIZE = 8;
/** sizeof(struct iommu_hwpt_pgfault) and sizeof(struct iommu_hwpt_page_response). */
export const PGFAULT_SIZE = 40;
export const PAGE_RESPONSE_SIZE = 8;
/** IOMMU_PGFAULT_FLAGS_PASID_VALID / _LAST_PAGE. */
export const PGFAULT_FLAGS_PASID_VALID = 1;
export const PGFAULT_FLAGS_LAST_PAGE = 2;
/** IOMMUFD_PAGE_RESP_SUCCESS / _INVALID. */
export const PAGE_RESP_SUCCESS = 0;
export const PAGE_RESP_INVALID = 1;
export const HW_INFO_TYPE_NONE = 0;
export const HW_INFO_TYPE_INTEL_VTD = 1;
export const HW_INFO_TYPE_ARM_SMMUV3 = 2;
/** IOMMU_HW_INFO_FLAG_INPUT_TYPE: later uAPI (6.17); the Debian 6.12 selftest already sends it. */
export const HW_INFO_FLAG_INPUT_TYPE = 1;
export const HW_CAP_DIRTY_TRACKING = 1;
export const DIRTY_TRACKING_ENABLE = 1;
export const GET_DIRTY_BITMAP_NO_CLEAR = 1;
export const HWPT_INVALIDATE_DATA_VTD_S1 = 0;
export const OPTION_RLIMIT_MODE = 0;
export const OPTION_HUGE_PAGES = 1;
export const OPTION_OP_SET = 0;
export const OPTION_OP_GET = 1;
export const VFIO_IOAS_GET = 0;
export const VFIO_IOAS_SET = 1;
export const VFIO_IOAS_CLEAR = 2;
/** IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, always set by intel_iommu_hw_info (6.12). */
export const HW_INFO_VTD_ERRATA_772415_SPR17 = 1;

/** ULONG_MAX on a 64-bit kernel: the `>= ULONG_MAX` EOVERFLOW checks of ioas.c. */
export const ULONG_MAX = 0xffff_ffff_ffff_ffffn;
/** U64_MAX: `iova == 0 && length == U64_MAX` is unmap-all (iommufd_ioas_unmap). */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;
