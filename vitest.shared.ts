import type { ViteUserConfig } from "vitest/config";

/** Shared per-package vitest settings: tests read sources through the source condition. */
export const shared: ViteUserConfig = {
  resolve: {
    conditions: ["@iommu-kit/source"],
  },
  ssr: {
    resolve: {
      conditions: ["@iommu-kit/source"],
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
  },
};
