/**
 * `pnpm check:packages`: for every package, publint on the package and
 * @arethetypeswrong/cli (--profile esm-only) on its packed tarball. Packages must be
 * built first. Exits 1 when either tool reports anything.
 */

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const only = process.argv.slice(2);
let failed = 0;
for (const dir of readdirSync(join(root, "packages")).sort()) {
  if (only.length > 0 && !only.includes(dir)) continue;
  const pkgDir = join(root, "packages", dir);
  const out = mkdtempSync(join(tmpdir(), `iommu-kit-pack-${dir}-`));
  try {
    const run = (cmd: string, args: string[]): [boolean, string] => {
      try {
        return [
          true,
          execFileSync(cmd, args, { cwd: pkgDir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }),
        ];
      } catch (e) {
        const err = e as { stdout?: string; stderr?: string };
        return [false, `${err.stdout ?? ""}${err.stderr ?? ""}`];
      }
    };
    const [lintOk, lintOut] = run("pnpm", ["exec", "publint", "--strict"]);
    const clean = lintOk && /All good!/.test(lintOut);
    run("pnpm", ["pack", "--pack-destination", out]);
    const tgz = readdirSync(out).find((f) => f.endsWith(".tgz"));
    const [attwOk, attwOut] =
      tgz === undefined
        ? [false, "pack failed"]
        : run("pnpm", ["exec", "attw", "--profile", "esm-only", "--format", "table-flipped", join(out, tgz)]);
    const status = `${clean ? "publint ok" : "publint FAILED"}, ${attwOk ? "attw ok" : "attw FAILED"}`;
    console.log(`${dir.padEnd(14)} ${status}`);
    if (!clean) {
      failed++;
      console.log(lintOut);
    }
    if (!attwOk) {
      failed++;
      console.log(attwOut);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
if (failed > 0) {
  console.log(`${failed} check(s) failed`);
  process.exit(1);
}
console.log("all packages pass publint and attw (esm-only)");
