import { defineProject } from "vitest/config";

// Packs the packages and installs the tarballs into temporary projects with npm: slow,
// needs the npm registry for third-party dependencies, and needs built dist/ folders
// (the root `pnpm test` builds first).
export default defineProject({
  test: {
    name: "packaging",
    include: ["*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 600_000,
  },
});
