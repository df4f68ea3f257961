/**
 * `pnpm release [--dry-run] [--skip-checks]`: build, test and check every package, then
 * publish the workspace with `pnpm -r publish` (public access). `--dry-run` runs the same
 * path through `pnpm -r publish --dry-run`: nothing is published. `--skip-checks` skips
 * build/test/check:packages (the packaging test uses it after CI already ran them; the
 * packages must be built).
 * Versions come from changesets (`pnpm version-packages`) beforehand.
 */

import { spawnSync } from "node:child_process";

const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (!["--dry-run", "--skip-checks", "--help"].includes(a)) {
    console.error(`release: unknown option ${a}`);
    process.exit(2);
  }
}
if (args.has("--help")) {
  console.log("usage: pnpm release [--dry-run] [--skip-checks]");
  process.exit(0);
}
const root = new URL("..", import.meta.url).pathname;

function step(cmd: string, argv: string[]): void {
  console.log(`\n$ ${cmd} ${argv.join(" ")}`);
  const r = spawnSync(cmd, argv, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`release: ${cmd} ${argv.join(" ")} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

// `pnpm test` builds first; --skip-checks expects the packages already built.
if (!args.has("--skip-checks")) {
  step("pnpm", ["run", "test"]);
  step("pnpm", ["run", "check:packages"]);
}
const publish = ["-r", "publish", "--access", "public", "--no-git-checks"];
if (args.has("--dry-run")) publish.push("--dry-run");
step("pnpm", publish);
console.log(args.has("--dry-run") ? "\nrelease dry run complete: nothing was published" : "\nreleased");
