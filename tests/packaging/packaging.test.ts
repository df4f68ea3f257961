/**
 * Packed tarballs, outside the workspace: core + vtd into a fresh npm project, used from
 * plain Node ESM and from TypeScript (node16, nodenext and bundler resolution). Both
 * tarballs are given: vtd's packed `@iommu-kit/core` range (`workspace:^` rewritten to
 * `^<core's version>`) names a version no registry holds here. Installing vtd alone, the
 * CLI, the example backend and the release flow run against a real registry in
 * release.test.ts.
 */

import { execFileSync, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
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
  for (const pkg of ["core", "vtd"]) {
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
});

describe("the host's committed bin launcher", () => {
  it("without a built dist/ prints one line saying to build first and exits 2", () => {
    const dir = join(work, "unbuilt-host");
    mkdirSync(join(dir, "bin"), { recursive: true });
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
    writeFileSync(
      join(dir, "bin", "iommu-kit.js"),
      readFileSync(join(root, "packages", "host", "bin", "iommu-kit.js"), "utf8"),
    );
    const r = spawnSync("node", [join(dir, "bin", "iommu-kit.js"), "run"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "iommu-kit: the CLI is not built (no dist/cli/main.js): run `pnpm run build` first\n",
    );
  });

  it("with dist/ runs the CLI, and package.json's bin names it", () => {
    const host = JSON.parse(readFileSync(join(root, "packages", "host", "package.json"), "utf8"));
    expect(host.bin).toEqual({ "iommu-kit": "./bin/iommu-kit.js" });
    expect(host.files).toContain("bin");
    const r = spawnSync("node", [join(root, "packages", "host", "bin", "iommu-kit.js"), "--version"], {
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(host.version);
  });
});
