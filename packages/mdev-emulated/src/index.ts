/**
 * @iommu-kit/mdev-emulated: mediated devices with no IOMMU of their own. An emulated
 * page table read in software (pin pages, read/write through an IOVA, dirty tracking,
 * unmap callbacks), and PASID attach through the parent device's backend.
 */

export type { MdevEmulatedConfig, UnmapCallback } from "./backend.ts";
export { MdevEmulatedBackend, mdevEmulatedBackend } from "./backend.ts";
export type { AccessUser, DomainHost } from "./domain.ts";
export { EmulatedDomain } from "./domain.ts";
export type { Chunk, EntryVisitor } from "./format/emulated-table.ts";
export { EmulatedTable, EntryBit, IOVA_BITS } from "./format/emulated-table.ts";
export type { MdevFaultCodeValue } from "./format/fault.ts";
export { MDEV_VENDOR, MdevFaultCode } from "./format/fault.ts";
export { MDEV_FORMAT, mdevCapabilities } from "./hw-info.ts";
