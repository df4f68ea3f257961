/**
 * @iommu-kit/host: iommufd in miniature. The {@link Host} facade (devices, IOAS, HW
 * page tables, attach / replace / detach with an intent, hardware info, DMA, faults,
 * dirty tracking, emulated access) and the backend loader.
 */

export type { HostObject, ObjectKind } from "./context.ts";
export type { FaultRecord, HeldDma } from "./fault.ts";
export {
  FAULT_QUEUE_DEPTH,
  PGFAULT_FLAGS_LAST_PAGE,
  PGFAULT_FLAGS_PASID_VALID,
  PGFAULT_PERM_PRIV,
} from "./fault.ts";
export type {
  AccessInfo,
  AccessRwOptions,
  AreaInfo,
  AttachOutcome,
  CopyOptions,
  DeviceInfo,
  DeviceOptions,
  DirtyReadOptions,
  DmaRequest,
  DmaResult,
  ExplainRequest,
  FaultQueueInfo,
  HostOptions,
  HostState,
  HwInfoResult,
  HwptAllocOptions,
  HwptFlag,
  HwptNestedInfo,
  HwptPagingInfo,
  IntentSpec,
  IoasInfo,
  IovaRanges,
  MapOptions,
  MdevOptions,
  ObjectInfo,
  PageFaultRecord,
  PageResponse,
  ProtSpec,
  VdeviceAllocOptions,
  VdeviceInfo,
  VeventqAllocOptions,
  VeventqInfo,
  VeventRecord,
  ViommuAllocOptions,
  ViommuInfo,
} from "./host.ts";
export { DEFAULT_RAM, DEFAULT_TABLES, Host } from "./host.ts";
export { MAX_IOVA } from "./io-pagetable.ts";
export { isBackendFactory, isModulePath, loadBackend, loadPlugin, registerExports } from "./registry.ts";
export { DEFAULT_SCENARIO } from "./scenario/default-scenario.ts";
export type { ScenarioHost, ScenarioHostOptions } from "./scenario/host.ts";
export { createScenarioHost } from "./scenario/host.ts";
export type { HostAdapter, HostDmaResult, HostFault, ViommuRow } from "./scenario/host-adapter.ts";
export type { DeviceDecl, IommuDecl, RegionDecl, Scenario, StepDecl } from "./scenario/load.ts";
export { loadScenario, validateScenario } from "./scenario/load.ts";
export type { FaultJson, Outcome } from "./scenario/matcher.ts";
export type { CapRow, FileReport, RunOptions, StepRecord } from "./scenario/runner.ts";
export { runScenario } from "./scenario/runner.ts";
export type { JsonSchema } from "./scenario/schema.ts";
export { scenarioSchema } from "./scenario/schema.ts";
export { MAX_VIRT_ID } from "./vdevice.ts";
export { VEVENTQ_FLAG_LOST_EVENTS, VEVENTQ_TYPES } from "./veventq.ts";
