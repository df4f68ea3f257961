import { defineProject, mergeConfig } from "vitest/config";
import { shared } from "../../vitest.shared.ts";

// The differential campaign against QEMU (`pnpm test:qemu`); setup.ts installs QEMU when missing.
export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "qemu",
      include: ["*.test.ts"],
      globalSetup: ["./setup.ts"],
      testTimeout: 600_000,
      hookTimeout: 600_000,
    },
  }),
);
