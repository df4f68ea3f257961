/**
 * Types of the uAPI layer: the caller's memory, the outcome of an ioctl, and the
 * hooks a backend adds (the selftest mock driver's IOMMU_TEST_CMD and hw_info).
 */

import type { Host } from "../host.ts";

/**
 * A process's memory as the uAPI layer sees it. `read` / `write` fail with an
 * EFAULT {@link IommuError}; `physical` returns the host physical address backing
 * [va, va + length) (contiguous); with `pin` (default true) the pages must be there
 * (pin_user_pages), else EFAULT.
 */
export interface UserMemory {
  read(va: bigint, length: number): Uint8Array;
  write(va: bigint, bytes: Uint8Array): void;
  physical(va: bigint, length: number, pin?: boolean): number;
  /** True when the page at `va` is part of a compound (huge) page; absent = never. */
  compound?(va: bigint): boolean;
}

/** A file descriptor the caller must create (fault queue, selftest access) and store at `offset` of the struct. */
export interface NewFd {
  readonly kind: "fault" | "access" | "veventq";
  /** The object behind the descriptor. */
  readonly id: number;
  /** Byte offset of the u32 fd field in the argument struct. */
  readonly offset: number;
}

/** The outcome of one ioctl: `errno` 0 on success. */
export interface IoctlResult {
  readonly errno: number;
  /** The ioctl's return value on success (0 but for VFIO_CHECK_EXTENSION and the like). */
  readonly ret?: number;
  readonly newFd?: NewFd;
}

/** What an extension ioctl handler receives. */
export interface IoctlContext {
  readonly host: Host;
  readonly mem: UserMemory;
  /** The struct, zero-extended to its full size. */
  readonly cmd: DataView;
  /** Address of the struct in the caller. */
  readonly arg: bigint;
  /** The caller's `size` field. */
  readonly userSize: number;
  /** Copies the struct back (min(size, sizeof) bytes), as iommufd_ucmd_respond. */
  respond(): void;
  /** Asks the caller to create a descriptor for an object. */
  newFd(fd: NewFd): void;
}

/** An extra ioctl (IOMMU_TEST_CMD): struct size, minimum size and its handler (throws IommuError). */
export interface ExtraIoctl {
  readonly size: number;
  readonly min: number;
  run(ctx: IoctlContext): void;
}

/** The vendor block GET_HW_INFO reports for a device. */
export interface HwInfoBlock {
  readonly type: number;
  readonly data: Uint8Array;
}

/** Hooks a backend adds to the uAPI (the selftest mock driver uses all of them). */
export interface UapiExtensions {
  /** Ioctls by number (`_IOC_NR`) beyond 6.12's iommufd set. */
  readonly ioctls?: Readonly<Record<number, ExtraIoctl>>;
  /** The vendor block of a device, or undefined for the built-in encoders. */
  hwInfo?(host: Host, device: number): HwInfoBlock | undefined;
  /** Called with the id of every HWPT that HWPT_ALLOC created. */
  hwptAllocated?(id: number): void;
  /** IOMMU_DESTROY of an object the extension owns; false = not one of its objects. */
  destroy?(id: number): boolean;
  /** Ioctls outside iommufd's range (the VFIO compat container); undefined = ENOTTY. */
  vfio?(ctx: { host: Host; mem: UserMemory; state: UapiState }, cmd: number, arg: bigint): number | undefined;
}

/** Per-file state the uAPI keeps beside the host (iommufd_ctx fields). */
export interface UapiState {
  /** ictx->account_mode == IOPT_PAGES_ACCOUNT_MM. */
  rlimitMm: boolean;
  /** ictx->vfio_ioas. */
  vfioIoas: number | null;
  /** IOAS ids with large pages disabled (iopt->disable_large_pages). */
  readonly noHugePages: Set<number>;
}
