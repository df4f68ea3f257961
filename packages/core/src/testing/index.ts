/**
 * @iommu-kit/core/testing: the mock backend (in the spirit of iommufd's selftest mock
 * domain), the conformance suite every backend runs, and the benchmark case shape.
 */

export type { BenchCase, BenchCases, BenchEntry, BenchMetric, MapRunCaseOptions } from "./bench.ts";
export { mapRunCase, smallIntMap, tableMemoryMetrics } from "./bench.ts";
export { runConformance } from "./conformance.ts";
export type { ConformanceFactory, ConformanceSetup, TestApi } from "./conformance-types.ts";
export type { TestMemory } from "./memory.ts";
export { createTestMemory } from "./memory.ts";
export {
  MOCK_PASID_WIDTH,
  MockBackend,
  MockDomain,
  MockFaultCode,
  mockBackend,
  mockRewriteLeaf,
} from "./mock-backend.ts";
export { MockPte, mockFormat } from "./mock-format.ts";
