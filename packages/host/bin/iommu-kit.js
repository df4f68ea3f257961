#!/usr/bin/env node
// The `iommu-kit` command. It is committed (not built) so that `pnpm install` in a fresh
// clone can link the bin before `dist/` exists; it only loads the built CLI.
import { existsSync } from "node:fs";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write("iommu-kit: the CLI is not built (no dist/cli/main.js): run `pnpm run build` first\n");
  process.exit(2);
}
await import(main.href);
