/**
 * Installing single packages, outside the workspace, the way a user does: pack every
 * package, install only the tarballs a scenario needs into a fresh npm project, and use
 * them from plain Node ESM and from TypeScript (node16, nodenext and bundler
 * resolution). Also: the CLI from the host tarball, the example third-party backend
 * against the tarballs, and the release dry run.
 */

import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = new URL("../..", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "iommu-kit-packaging-"));
const tarballs = new Map<string, string>();
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, npm_config_fund: "false", npm_config_audit: "false" },
  });
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.join(" ")} failed in ${cwd} (exit ${r.status}):\n${r.stdout}\n${r.stderr}`,
    );
  return r.stdout;
}

function project(name: string, pkgs: string[]): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, private: true, type: "module" }));
  sh(
    "npm",
    ["install", "--no-audit", "--no-fund", "--loglevel=error", ...pkgs.map((p) => tarballs.get(p)!)],
    dir,
  );
  return dir;
}

beforeAll(() => {
  for (const pkg of ["core", "smmuv3", "vtd", "mdev-emulated", "host"]) {
    if (!existsSync(join(root, "packages", pkg, "dist", "index.js"))) sh("pnpm", ["run", "build"], root);
  }
  const out = join(work, "tarballs");
  mkdirSync(out);
  for (const pkg of ["core", "smmuv3", "vtd", "mdev-emulated", "host"]) {
    sh("pnpm", ["pack", "--pack-destination", out], join(root, "packages", pkg));
    const file = readdirSync(out).find((f) => f.startsWith(`iommu-kit-${pkg}-`) && f.endsWith(".tgz"));
    if (file === undefined) throw new Error(`no tarball for ${pkg}`);
    tarballs.set(pkg, join(out, file));
  }
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

const VTD_SCRIPT = `
import { Access, createTranslation, Intent, Perm } from "@iommu-kit/core";
import { createTestMemory } from "@iommu-kit/core/testing";
import { vtdBackend } from "@iommu-kit/vtd";
const { memory, tables } = createTestMemory();
const vtd = vtdBackend.create({ memory, tables, name: "dmar0" });
vtd.addDevice({ rid: 0x10, pasidBits: 20 });
const domain = vtd.allocDomain({ type: "paging", rid: 0x10 });
domain.map(0x10000000, 0x80000000, 0x200000, Perm.R | Perm.W);
vtd.attach(0x10, Intent.rid, domain);
const out = createTranslation();
const ok = vtd.translate(0x10, -1, 0x10001234, Access.WRITE, out);
console.log(JSON.stringify({ ok, pa: out.pa.toString(16) }));
`;

describe("single packages installed from their tarballs", () => {
  it("core + vtd alone: builds a VT-d domain, maps, translates from plain Node ESM", () => {
    const dir = project("vtd-only", ["core", "vtd"]);
    expect(readdirSync(join(dir, "node_modules", "@iommu-kit")).sort()).toEqual(["core", "vtd"]);
    writeFileSync(join(dir, "main.mjs"), VTD_SCRIPT);
    expect(JSON.parse(sh("node", ["main.mjs"], dir))).toEqual({ ok: true, pa: "80001234" });

    // Types resolve under node16, nodenext and bundler.
    writeFileSync(
      join(dir, "main.ts"),
      VTD_SCRIPT.replace("const ok =", "const ok: boolean =").replace(
        /console\.log\(.*\);/,
        "export const result = { ok, pa: out.pa };",
      ),
    );
    for (const [module, resolution] of [
      ["node16", "node16"],
      ["nodenext", "nodenext"],
      ["esnext", "bundler"],
    ] as const) {
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            module,
            moduleResolution: resolution,
            target: "es2022",
            strict: true,
            noEmit: true,
            types: [],
            lib: ["es2023"],
          },
          files: ["main.ts"],
        }),
      );
      const r = spawnSync("node", [tsc, "-p", "tsconfig.json"], { cwd: dir, encoding: "utf8" });
      expect(r.stdout + r.stderr, `${module}/${resolution}`).toBe("");
      expect(r.status).toBe(0);
    }
    // A type error is caught (the check is real).
    writeFileSync(
      join(dir, "bad.ts"),
      `import { Perm } from "@iommu-kit/core"; const x: string = Perm.R; void x;\n`,
    );
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { module: "nodenext", strict: true, noEmit: true, types: [] },
        files: ["bad.ts"],
      }),
    );
    expect(() =>
      execFileSync("node", [tsc, "-p", "tsconfig.json"], { cwd: dir, encoding: "utf8" }),
    ).toThrow();
  });

  it("the CLI installs and runs from the host tarball", () => {
    const dir = project("cli", ["core", "smmuv3", "vtd", "mdev-emulated", "host"]);
    const help = sh("npx", ["--no-install", "iommu-kit", "--help"], dir);
    expect(help).toMatch(/run/);
    expect(help).toMatch(/translate/);
    const r = spawnSync("npx", ["--no-install", "iommu-kit", "run"], { cwd: dir, encoding: "utf8" });
    expect(r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("npm warn"))).toEqual([]);
    expect(r.status, r.stdout).toBe(0);
  });

  it("the example third-party backend passes the conformance suite and plugs into the CLI", () => {
    const dir = join(work, "example");
    cpSync(join(root, "examples", "mock-backend"), dir, { recursive: true });
    sh(
      "npm",
      [
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        ...["core", "smmuv3", "vtd", "mdev-emulated", "host"].map((p) => tarballs.get(p)!),
      ],
      dir,
    );
    const test = spawnSync("node", ["--test", "test/"], { cwd: dir, encoding: "utf8" });
    expect(test.stdout).toMatch(/# pass 11/);
    expect(test.status).toBe(0);
    const run = spawnSync("npx", ["--no-install", "iommu-kit", "run", "scenario.json"], {
      cwd: dir,
      encoding: "utf8",
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });
});

describe("release", () => {
  it("pnpm release --dry-run publishes nothing and walks every package", () => {
    const r = spawnSync("pnpm", ["release", "--dry-run", "--skip-checks"], { cwd: root, encoding: "utf8" });
    const text = r.stdout + r.stderr;
    expect(r.status, text).toBe(0);
    for (const pkg of ["core", "smmuv3", "vtd", "mdev-emulated", "host"])
      expect(text).toContain(`@iommu-kit/${pkg}`);
    expect(text).toMatch(/nothing was published/);
  });
});
