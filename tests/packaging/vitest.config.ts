import { defineProject } from "vitest/config";

// Packs packages and installs the tarballs into temporary npm projects, and runs a whole
// release against a local verdaccio (release.test.ts): no network, about two minutes, and
// needs built dist/ folders (the root `pnpm test` builds first) and the pnpm store that
// `pnpm install` filled (the release copy installs from it offline).
export default defineProject({
  test: {
    name: "packaging",
    include: ["*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 600_000,
  },
});
