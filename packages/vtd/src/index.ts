/**
 * @iommu-kit/vtd: an Intel VT-d model faithful to the bit. The hardware half
 * (registers, caches, walker, queued invalidation, fault records) and the driver half
 * (tables and invalidations as Linux's intel-iommu writes them) behind core's Backend
 * contract.
 */

export type { DomainKind, VtdDomainHost, VtdS1Data, VtdS1Invalidation } from "./backend.ts";
export {
  createVtd,
  psiRange,
  VTD_INV_FLAGS_LEAF,
  VtdBackend,
  VtdDomain,
  VtdS1Flags,
  vtdBackend,
  vtdFromRegisters,
} from "./backend.ts";
export type { ConfigCaches, SavedConfigs } from "./config-cache.ts";
export type { BadPageRequest } from "./driver/prq.ts";
export { FastPath } from "./fast-path.ts";
export type { ContextEntry, ScalableContextEntry } from "./format/context-entry.ts";
export {
  decodeContextEntry,
  decodeScalableContextEntry,
  encodeContextEntry,
  encodeScalableContextEntry,
  Tt,
} from "./format/context-entry.ts";
export type { FaultRecord } from "./format/fault-record.ts";
export {
  decodeFaultRecord,
  encodeFaultRecord,
  Fr,
  faultReasonClass,
  faultReasonName,
} from "./format/fault-record.ts";
export type { FsEntry } from "./format/fs-pte.ts";
export { decodeFsEntry, encodeFsEntry, FsPte, fsFormat } from "./format/fs-pte.ts";
export type { DescriptorError, InvDescriptor } from "./format/inv-desc.ts";
export { DescType, decodeDescriptor, descTypeCode, encodeDescriptor } from "./format/inv-desc.ts";
export type { PageRequestDescriptor } from "./format/page-request.ts";
export {
  decodePageRequest,
  encodePageRequest,
  PAGE_REQUEST_BYTES,
  PAGE_REQUEST_TYPE,
  PgrpResponse,
} from "./format/page-request.ts";
export type { PasidDirEntry, PasidEntry } from "./format/pasid-entry.ts";
export {
  decodePasidDirEntry,
  decodePasidEntry,
  EMPTY_PASID_ENTRY,
  encodePasidDirEntry,
  encodePasidEntry,
  Pgtt,
} from "./format/pasid-entry.ts";
export type { CapFields, EcapFields } from "./format/registers.ts";
export {
  decodeCap,
  decodeEcap,
  encodeCap,
  encodeEcap,
  Fectl,
  Fsts,
  Gcmd,
  IQA_DW,
  Iqei,
  Prs,
  Reg,
  Ttm,
} from "./format/registers.ts";
export type { RootEntry, ScalableRootEntry } from "./format/root-entry.ts";
export {
  decodeRootEntry,
  decodeScalableRootEntry,
  encodeRootEntry,
  encodeScalableRootEntry,
} from "./format/root-entry.ts";
export type { SsEntry } from "./format/ss-pte.ts";
export { decodeSsEntry, encodeSsEntry, SsPte, ssFormat } from "./format/ss-pte.ts";
export type { HardwareOptions } from "./hardware.ts";
export { VtdHardware } from "./hardware.ts";
export type { ResolvedConfig, VtdConfig } from "./hw-info.ts";
export {
  capabilitiesFor,
  formatsFor,
  pageRequestsEnabled,
  registersFor,
  resolveConfig,
  vtdConfigSchema,
} from "./hw-info.ts";
export type { ConfigReader, CtxInfo, PasidInfo, ReadFault } from "./internal/config.ts";
export type { VtdIotlb } from "./iotlb.ts";
export type {
  DeliveredResponse,
  PageGroupResponse,
  PageRequester,
  PageRequestOutcome,
} from "./prq.ts";
export { PageRequestUnit } from "./prq.ts";
export { VtdQueues } from "./queues.ts";
export type { Cfg, WalkerParams } from "./walk.ts";
export { Kind, PageWalker } from "./walk.ts";
