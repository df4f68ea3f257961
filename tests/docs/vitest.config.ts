import { defineProject } from "vitest/config";

// Runs docs/writing-a-backend.md's code as written against the built packages (dist/):
// the root `pnpm test` builds first.
export default defineProject({
  test: {
    name: "docs",
    include: ["*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
