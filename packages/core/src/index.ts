/**
 * @iommu-kit/core: the contract every iommu-kit backend implements and every consumer
 * uses: addresses, access flags and permissions, attach intents, capability reports,
 * faults, translation results, errors, physical memory, the table allocator and the
 * backend registry. Vendor helpers live in `@iommu-kit/core/driver`; the mock backend
 * and the conformance suite in `@iommu-kit/core/testing`.
 */

export type { AccessName, Prot } from "./access.ts";
export { Access, accessFlags, accessName, Perm, parsePerm, permNeeded, permString } from "./access.ts";
export type { Brand, Gpa, Hpa, Iova } from "./addresses.ts";
export {
  alignDownLg2,
  gpa,
  hi32,
  hpa,
  iova,
  isAddress,
  isAlignedLg2,
  join32,
  lo32,
  MAX_NUMBER_ADDRESS,
  NO_PASID,
  parseU64,
  TWO_POW_32,
  toNumberAddress,
} from "./addresses.ts";
export type {
  AttachResult,
  Backend,
  BackendContext,
  BackendFactory,
  CacheCounters,
  DeviceSpec,
  Domain,
  DomainFlags,
  DomainRequest,
  DomainType,
  EmulatedAccess,
  IovaRange,
  Viommu,
  ViommuEvent,
  ViommuEventSink,
  ViommuRequest,
  ViommuType,
  WalkStep,
} from "./backend.ts";
export { isEmulatedAccess, ZERO_COUNTERS } from "./backend.ts";
export type { Capabilities, Features, HwInfo, NoHwInfo, SmmuV3HwInfo, VtdHwInfo } from "./capabilities.ts";
export {
  assertIntentAllowed,
  HwCap,
  HwInfoType,
  hwCapFlags,
  hwCapNames,
  intentAllowed,
  pageSizeBitmap,
  pageSizesLg2,
  supportsIntent,
} from "./capabilities.ts";
export type { ErrnoCode, ErrorDetails } from "./errors.ts";
export { Errno, hex, IommuError, isIommuError } from "./errors.ts";
export { FailNth } from "./fail-nth.ts";
export type {
  Fault,
  FaultClass,
  PageRequest,
  PageResponseCode,
  VendorFault,
  VendorFieldValue,
} from "./fault.ts";
export { FAULT_CLASSES, makeFault } from "./fault.ts";
export type {
  AttachIntent,
  EmulatedIntent,
  IntentKind,
  PasidIntent,
  RidAllPasidsIntent,
  RidIntent,
} from "./intent.ts";
export { INTENT_KINDS, Intent, intentString, sameIntent } from "./intent.ts";
export type { PhysicalMemoryOptions, RamRegion } from "./memory/physical-memory.ts";
export { PAGE_LG2, PAGE_SIZE, PhysicalMemory } from "./memory/physical-memory.ts";
export type { AllocatorStats } from "./memory/table-allocator.ts";
export { TableAllocator } from "./memory/table-allocator.ts";
export { BackendRegistry, defaultRegistry, registerBackend } from "./registry.ts";
export type { Translation, TranslationOutcome } from "./translation.ts";
export { createTranslation, outcomeOf } from "./translation.ts";
