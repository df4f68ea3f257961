/**
 * `pnpm release [--dry-run] [--skip-checks]`: publish every workspace package whose
 * version is not yet on the registry, then tag each one published `<name>@<version>`.
 *
 * The flow (see CONTRIBUTING.md "How versions are cut"):
 *   1. `pnpm version-packages` (changeset version) turns `.changeset/*.md` into versions
 *      and CHANGELOG entries; commit that.
 *   2. `pnpm release`: refuses while a changeset is still pending or tracked files are
 *      modified (the tags must name a commit that holds the released versions), builds,
 *      tests and checks the packages, then `pnpm -r publish`. pnpm publishes in dependency
 *      order (core first) and rewrites each `workspace:^` range to `^<the version in the
 *      workspace now>`, which is why versions must be bumped before publishing: a vtd
 *      published against an unbumped core would ask for a core that was never released.
 *
 * `--dry-run` walks the same path with `pnpm -r publish --dry-run`: nothing is published
 * or tagged. `--skip-checks` skips build/test/check:packages (the packaging test uses it;
 * the packages must be built). The registry is whatever npm/pnpm config says
 * (`npm_config_registry`, `.npmrc`).
 */

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

const OPTIONS = ["--dry-run", "--skip-checks", "--help"];
const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (!OPTIONS.includes(a)) {
    console.error(`release: unknown option ${a} (known: ${OPTIONS.join(", ")})`);
    process.exit(2);
  }
}
if (args.has("--help")) {
  console.log("usage: pnpm release [--dry-run] [--skip-checks]");
  process.exit(0);
}
const dryRun = args.has("--dry-run");
const root = new URL("..", import.meta.url).pathname;

function fail(message: string): never {
  console.error(`release: ${message}`);
  process.exit(1);
}

function step(cmd: string, argv: string[]): void {
  console.log(`\n$ ${cmd} ${argv.join(" ")}`);
  const r = spawnSync(cmd, argv, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) fail(`${cmd} ${argv.join(" ")} failed (exit ${r.status ?? r.signal})`);
}

function git(argv: string[]): string {
  const r = spawnSync("git", argv, { cwd: root, encoding: "utf8" });
  if (r.status !== 0) fail(`git ${argv.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

// 1. Nothing left to version: a pending changeset means the versions on disk are not the
// ones its change deserves (`changeset version` deletes each file it applies).
const pending = readdirSync(join(root, ".changeset")).filter((f) => f.endsWith(".md") && f !== "README.md");
if (pending.length > 0) {
  fail(
    `${pending.length} unversioned changeset(s) in .changeset/ (${pending.join(", ")}): ` +
      "run `pnpm version-packages`, commit, then release",
  );
}
const dirty = git(["status", "--porcelain", "--untracked-files=no"]).trim();
if (dirty !== "") fail(`tracked files are modified; commit the version bump first:\n${dirty}`);

// 2. Build, test and check (the packed tarballs are what users get).
if (!args.has("--skip-checks")) {
  step("pnpm", ["run", "test"]);
  step("pnpm", ["run", "check:packages"]);
}

// 3. Publish what the registry lacks, in dependency order.
const summary = join(root, "pnpm-publish-summary.json");
rmSync(summary, { force: true });
const publish = ["-r", "publish", "--access", "public", "--no-git-checks", "--report-summary"];
if (dryRun) publish.push("--dry-run");
step("pnpm", publish);
const published: { name: string; version: string }[] = existsSync(summary)
  ? JSON.parse(readFileSync(summary, "utf8")).publishedPackages
  : [];
rmSync(summary, { force: true });

if (dryRun) {
  console.log(
    `\nrelease dry run complete: nothing was published (would publish: ${
      published.map((p) => `${p.name}@${p.version}`).join(", ") || "none"
    })`,
  );
  process.exit(0);
}

// 4. Tag each released package at this commit (annotated tags are not needed: the tag
// name carries package and version, as `changeset tag` names them).
const existing = new Set(git(["tag", "--list"]).split("\n"));
for (const { name, version } of published) {
  const tag = `${name}@${version}`;
  if (existing.has(tag)) console.log(`tag ${tag} exists, left as is`);
  else {
    git(["tag", tag]);
    console.log(`tagged ${tag}`);
  }
}
console.log(
  published.length === 0
    ? "\nreleased nothing: every version is already on the registry"
    : `\nreleased ${published.map((p) => `${p.name}@${p.version}`).join(", ")}; push the tags with \`git push --tags\``,
);
