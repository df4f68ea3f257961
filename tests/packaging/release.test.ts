/**
 * The documented release flow against a real npm registry (verdaccio on 127.0.0.1, see
 * registry.ts), in a temporary copy of the work tree (its own git repository, so tags and
 * version bumps never touch this one): `pnpm release` refuses pending changesets,
 * `pnpm version-packages`, commit, `pnpm release --dry-run`, `pnpm release`. Then, as a
 * user with only that registry configured: `npm install @iommu-kit/vtd` alone and the
 * README's Quick example, `npx -p @iommu-kit/host iommu-kit run`, and the example
 * third-party backend installed from the registry.
 */

import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { get } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkResultComments, codeBlocks } from "./markdown.ts";
import { type Registry, seedDependencies, startRegistry } from "./registry.ts";

const root = new URL("../..", import.meta.url).pathname;
const PACKAGES = ["core", "smmuv3", "vtd", "mdev-emulated", "host"] as const;
const work = mkdtempSync(join(tmpdir(), "iommu-kit-release-"));
const repo = join(work, "repo");
let registry: Registry;

/** The environment without any npm/pnpm setting inherited from the caller (pnpm sets many). */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm|pnpm)_/i.test(k)) env[k] = v;
  const empty = join(work, "empty-global-npmrc");
  if (!existsSync(empty)) writeFileSync(empty, "");
  return {
    ...env,
    npm_config_globalconfig: empty,
    npm_config_cache: join(work, "npm-cache"),
    npm_config_fund: "false",
    npm_config_audit: "false",
    npm_config_update_notifier: "false",
    // The temp repository ignores the machine's git config (signing, hooks, default branch).
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: empty,
    GIT_AUTHOR_NAME: "release test",
    GIT_AUTHOR_EMAIL: "release@test.invalid",
    GIT_COMMITTER_NAME: "release test",
    GIT_COMMITTER_EMAIL: "release@test.invalid",
    ...extra,
  };
}

/** Publishing side: the registry and its token, from a user config outside the copy. */
const releaseEnv = (): NodeJS.ProcessEnv => cleanEnv({ npm_config_userconfig: join(work, "release-npmrc") });
/** User side: no user config; the project's `.npmrc` names the registry and nothing else. */
const userEnv = (): NodeJS.ProcessEnv => {
  const empty = join(work, "empty-user-npmrc");
  if (!existsSync(empty)) writeFileSync(empty, "");
  return cleanEnv({ npm_config_userconfig: empty });
};

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout: 120_000 });
}

function ok(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): string {
  const r = run(cmd, args, cwd, env);
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.join(" ")} in ${cwd}: exit ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`,
    );
  return r.stdout;
}

const version = (pkg: string): string =>
  JSON.parse(readFileSync(join(repo, "packages", pkg, "package.json"), "utf8")).version;

/** GET a packument on a connection of its own (verdaccio may close an idle keep-alive one). */
function packument(name: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = get(
      `${registry.url}${name.replace("/", "%2f")}`,
      { agent: false, timeout: 10_000 },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${name}: timeout`)));
    req.on("error", reject);
  });
}

/** A fresh npm project whose only registry is the test's. */
function userProject(name: string, from?: string): string {
  const dir = join(work, name);
  if (from === undefined) {
    mkdirSync(dir);
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name, private: true, type: "module" }));
  } else cpSync(from, dir, { recursive: true, filter: (src) => !src.includes("node_modules") });
  writeFileSync(join(dir, ".npmrc"), `registry=${registry.url}\n`);
  return dir;
}

beforeAll(async () => {
  for (const pkg of PACKAGES) {
    if (!existsSync(join(root, "packages", pkg, "dist", "index.js"))) {
      ok("pnpm", ["run", "build"], root, process.env);
      break;
    }
  }
  registry = await startRegistry(join(work, "registry"));
  writeFileSync(join(work, "release-npmrc"), registry.npmrc());
  await seedDependencies(
    registry,
    PACKAGES.map((p) => join(root, "packages", p)),
    join(work, "seed"),
  );

  // The work tree as it is (tracked and untracked-but-not-ignored files) plus the built
  // dist/ folders, committed in a repository of its own.
  const files = spawnSync("git", ["ls-files", "-co", "--exclude-standard", "-z"], {
    cwd: root,
    encoding: "utf8",
  })
    .stdout.split("\0")
    .filter((f) => f !== "" && existsSync(join(root, f)));
  for (const f of files) {
    mkdirSync(dirname(join(repo, f)), { recursive: true });
    cpSync(join(root, f), join(repo, f));
  }
  for (const pkg of PACKAGES)
    cpSync(join(root, "packages", pkg, "dist"), join(repo, "packages", pkg, "dist"), { recursive: true });
  ok("git", ["init", "-q", "-b", "main"], repo, releaseEnv());
  ok("git", ["add", "-A"], repo, releaseEnv());
  ok("git", ["commit", "-q", "-m", "the work tree under test"], repo, releaseEnv());
  // From the local store only: the registry holds no dev dependencies.
  ok("pnpm", ["install", "--offline", "--frozen-lockfile", "--reporter=silent"], repo, releaseEnv());
}, 180_000);

afterAll(async () => {
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("release against a local registry", () => {
  it("pnpm release refuses while changesets are unversioned, and publishes nothing", async () => {
    const pending = readdirSync(join(repo, ".changeset")).filter(
      (f) => f.endsWith(".md") && f !== "README.md",
    );
    expect(pending.length).toBeGreaterThan(0);
    const r = run("pnpm", ["release", "--skip-checks"], repo, releaseEnv());
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${pending.length} unversioned changeset(s)`);
    expect((await packument("@iommu-kit/core")).status).toBe(404);
  });

  it("pnpm version-packages, a commit, and a dry run that names every package and publishes nothing", async () => {
    ok("pnpm", ["run", "version-packages"], repo, releaseEnv());
    expect(readdirSync(join(repo, ".changeset")).filter((f) => f.endsWith(".md"))).toEqual(["README.md"]);
    for (const pkg of PACKAGES)
      expect(existsSync(join(repo, "packages", pkg, "CHANGELOG.md")), pkg).toBe(true);
    // A modified tree is refused: tags must name the commit holding the versions.
    const dirty = run("pnpm", ["release", "--skip-checks"], repo, releaseEnv());
    expect(dirty.status).toBe(1);
    expect(dirty.stderr).toMatch(/tracked files are modified/);
    ok("git", ["add", "-A"], repo, releaseEnv());
    ok("git", ["commit", "-q", "-m", "version packages"], repo, releaseEnv());

    const dry = ok("pnpm", ["release", "--dry-run", "--skip-checks"], repo, releaseEnv());
    expect(dry).toMatch(/nothing was published/);
    for (const pkg of PACKAGES) expect(dry).toContain(`@iommu-kit/${pkg}@${version(pkg)}`);
    expect((await packument("@iommu-kit/core")).status).toBe(404);
    expect(ok("git", ["tag", "--list"], repo, releaseEnv())).toBe("");
  });

  it("pnpm release publishes every package with released ranges and tags each at the version commit", async () => {
    const out = ok("pnpm", ["release", "--skip-checks"], repo, releaseEnv());
    const tags = PACKAGES.map((p) => `@iommu-kit/${p}@${version(p)}`);
    for (const tag of tags) expect(out).toContain(`tagged ${tag}`);
    expect(ok("git", ["tag", "--list"], repo, releaseEnv()).trim().split("\n").sort()).toEqual(
      [...tags].sort(),
    );
    const head = ok("git", ["rev-parse", "HEAD"], repo, releaseEnv());
    for (const tag of tags)
      expect(ok("git", ["rev-parse", `${tag}^{commit}`], repo, releaseEnv())).toBe(head);

    for (const pkg of PACKAGES) {
      const { status, body } = await packument(`@iommu-kit/${pkg}`);
      expect(status, pkg).toBe(200);
      const manifest = (body.versions as Record<string, { dependencies?: Record<string, string> }>)[
        version(pkg)
      ]!;
      // workspace:^ became the range of the version being released, not of the old one.
      for (const [dep, range] of Object.entries(manifest.dependencies ?? {})) {
        if (dep.startsWith("@iommu-kit/"))
          expect(range, `${pkg} -> ${dep}`).toBe(`^${version(dep.slice(11))}`);
      }
    }
    // Released once: a second run publishes and tags nothing.
    expect(ok("pnpm", ["release", "--skip-checks"], repo, releaseEnv())).toMatch(/released nothing/);
  });

  it("npm install @iommu-kit/vtd alone, from that registry only, runs the README's Quick example", () => {
    const dir = userProject("user");
    ok("npm", ["install", "--loglevel=error", "@iommu-kit/vtd"], dir, userEnv());
    expect(readdirSync(join(dir, "node_modules", "@iommu-kit")).sort()).toEqual(["core", "vtd"]);
    const lock = JSON.parse(readFileSync(join(dir, "package-lock.json"), "utf8"));
    for (const [path, entry] of Object.entries(lock.packages as Record<string, { resolved?: string }>)) {
      if (path !== "") expect(entry.resolved, path).toMatch(new RegExp(`^${registry.url}`));
    }

    const readme = readFileSync(join(root, "README.md"), "utf8");
    const quick = codeBlocks(readme).find((b) => b.heading === "Quick example");
    expect(quick?.lang).toBe("ts");
    const ts = createRequire(import.meta.url)("typescript") as typeof import("typescript");
    const js = ts.transpileModule(quick!.code, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const { code, checks } = checkResultComments(js);
    expect(checks).toBeGreaterThanOrEqual(2); // translate(...) is true, out.pa is 0x80001234
    writeFileSync(join(dir, "quick.mjs"), code);
    ok("node", ["quick.mjs"], dir, userEnv());
  });

  it("npx -p @iommu-kit/host iommu-kit run: the CLI and its dependencies come from that registry", () => {
    const dir = join(work, "user");
    const version = JSON.parse(readFileSync(join(repo, "packages", "host", "package.json"), "utf8")).version;
    const v = ok("npx", ["--yes", "-p", "@iommu-kit/host", "iommu-kit", "--version"], dir, userEnv());
    expect(v.trim()).toBe(version);
    const r = run("npx", ["--yes", "-p", "@iommu-kit/host", "iommu-kit", "run"], dir, userEnv());
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("npm warn"))).toEqual([]);
  });

  it("the example backend, installed from that registry, passes the conformance suite and plugs into the CLI", () => {
    const dir = userProject("example", join(root, "examples", "mock-backend"));
    ok(
      "npm",
      [
        "install",
        "--loglevel=error",
        `@iommu-kit/core@${version("core")}`,
        "--save-dev",
        `@iommu-kit/host@${version("host")}`,
      ],
      dir,
      userEnv(),
    );
    const test = run("node", ["--test", "test/"], dir, userEnv());
    expect(test.status, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/# fail 0/);
    expect(test.stdout).toMatch(/# pass [1-9]/);
    const scenario = run("npm", ["run", "--silent", "scenario"], dir, userEnv());
    expect(scenario.status, scenario.stdout + scenario.stderr).toBe(0);
  });
});
