import { defineProject, mergeConfig } from "vitest/config";
import { shared } from "../../vitest.shared.ts";

// The differential campaign against QEMU (`pnpm test:qemu`); QEMU must be installed
// (tests/qemu/run.sh installs it).
export default mergeConfig(
  shared,
  defineProject({
    test: { name: "qemu", include: ["*.test.ts"], testTimeout: 600_000, hookTimeout: 600_000 },
  }),
);
