/**
 * @iommu-kit/host/uapi: the iommufd uAPI of Linux 6.12 (and the 6.13-6.15 vIOMMU ioctls) as bytes over a {@link Host}
 * (see `ioctl.ts`), and the iommufd selftest's mock driver that the `serve` command
 * and the selftest run use.
 */

export {
  MockNestedDomain,
  MockPagingDomain,
  SelftestMockBackend,
  selftestMockFactory,
} from "../selftest-mock/backend.ts";
export type { SelftestAccess, SelftestServices } from "../selftest-mock/test-cmd.ts";
export { SelftestContext, TestOp } from "../selftest-mock/test-cmd.ts";
export type { MockViommuHost } from "../selftest-mock/viommu.ts";
export {
  MOCK_DEV_CACHE_ID_MAX,
  MOCK_DEV_CACHE_NUM,
  MockViommu,
  TEST_DEV_CACHE_DEFAULT,
  VEVENTQ_TYPE_SELFTEST,
  VIOMMU_INVALIDATE_DATA_SELFTEST,
  VIOMMU_TYPE_SELFTEST,
} from "../selftest-mock/viommu.ts";
export type {
  CopyIn,
  CopyOut,
  EventQueueKind,
  PageFault,
  PageFaultGroup,
  VeventSourceRecord,
} from "./eventq.ts";
export {
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDNORM,
  EventQueues,
  encodePgfault,
  FaultFile,
  VeventqFile,
} from "./eventq.ts";
export { builtinHwInfo } from "./hw-info.ts";
export { IommufdFile } from "./ioctl.ts";
export * as uapi from "./layout.ts";
export type {
  ExtraIoctl,
  HwInfoBlock,
  IoctlContext,
  IoctlResult,
  NewFd,
  UapiExtensions,
  UapiState,
  UserMemory,
} from "./types.ts";
