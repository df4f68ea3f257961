import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      "packages/*",
      "tests/snapshots",
      "tests/packaging",
      "tests/architecture",
      "tests/docs",
      "tests/qemu",
    ],
    // The JSON report feeds the plain "N passed, N failed" line that .ci/run prints.
    reporters: ["default", ["json", { outputFile: ".vitest-results.json" }]],
  },
});
