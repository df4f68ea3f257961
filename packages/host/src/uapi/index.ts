/**
 * @iommu-kit/host/uapi: the iommufd uAPI of Linux 6.12 as bytes over a {@link Host}
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
