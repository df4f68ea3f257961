/**
 * @iommu-kit/core/testing: the mock backend (in the spirit of iommufd's selftest mock
 * domain), the conformance suite every backend runs, and the benchmark case shape.
 */

export type { BenchCase, BenchCases } from "./bench.ts";
export type { ConformanceFactory, ConformanceSetup, TestApi } from "./conformance-types.ts";
