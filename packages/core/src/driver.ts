/**
 * @iommu-kit/core/driver: helpers for vendor backends: bit-field access on 32-bit
 * halves, the IOTLB hash, and the generic page table with its format plug-in
 * interface. Consumers never need these.
 */

export {
  addressField,
  bit32,
  bits32,
  bits64,
  field,
  halves64,
  hex64,
  join64,
  setBits32,
  setField,
  toBigInt64,
} from "./driver/bits.ts";
export {
  FastIotlb,
  IOTLB_MICRO_MASK,
  IOTLB_MICRO_META,
  IotlbMeta,
  iotlbMeta,
  microMetaView,
  newMicroTlb,
} from "./driver/fast-iotlb.ts";
export { PageTable } from "./driver/page-table.ts";
export type { LeafVisitor, PtFormat, PtLeaf } from "./driver/pt-format.ts";
export { EntryKind, entrySizeLg2, inputBits } from "./driver/pt-format.ts";
export type { UnmapGather } from "./driver/pt-map.ts";
export { unmapRun } from "./driver/pt-map.ts";
