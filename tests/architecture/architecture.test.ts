/**
 * Architecture checks over every `packages/<pkg>/src`: (1) no import circle among a
 * package's .ts files, (2) no source file over {@link MAX_LINES} lines, (3) package
 * imports point one way, as DESIGN.md draws them: host -> vendor packages -> core,
 * vendors never import each other, mdev-emulated only core (it reaches its parent
 * through core's contract), (4) the host's rooms import downwards only
 * ({@link HOST_LAYERS}). Each check lists every violation, not just the first.
 */

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  findCycles,
  loadSources,
  packageGraph,
  ROOT,
  type SourceFile,
  specifiers,
  workspacePackage,
} from "./graph.ts";

/** The longest a source file may be. */
const MAX_LINES = 600;

/**
 * Files allowed over {@link MAX_LINES} while a split is under way: empty since issue 11
 * landed. An entry must still exist and still be too long, so the list can only shrink.
 */
const PENDING_SPLIT: readonly string[] = [];

/** The workspace packages each package may import (itself is always allowed). Others: core only. */
const ALLOWED_IMPORTS: Readonly<Record<string, readonly string[]>> = {
  core: [],
  smmuv3: ["core"],
  vtd: ["core"],
  "mdev-emulated": ["core"],
  host: ["core", "smmuv3", "vtd", "mdev-emulated"],
};

function allowed(pkg: string): readonly string[] {
  return ALLOWED_IMPORTS[pkg] ?? ["core"];
}

const files: SourceFile[] = loadSources();
const packages: string[] = [...new Set(files.map((f) => f.pkg))].sort();

describe("the sources", () => {
  it("are found (every package has a src folder with .ts files)", () => {
    expect(packages).toEqual(expect.arrayContaining(["core", "host", "mdev-emulated", "smmuv3", "vtd"]));
    for (const p of packages) expect(files.filter((f) => f.pkg === p).length).toBeGreaterThan(0);
  });
});

describe("no import circle", () => {
  it.each(packages)("in packages/%s/src", (pkg) => {
    const cycles = findCycles(packageGraph(files, pkg)).map((c) => c.join(" -> "));
    expect(cycles).toEqual([]);
  });
});

describe(`no source file over ${MAX_LINES} lines`, () => {
  it("outside the PENDING_SPLIT allowlist", () => {
    const over = files
      .filter((f) => f.lines > MAX_LINES && !PENDING_SPLIT.includes(f.path))
      .map((f) => `${f.path}: ${f.lines} lines`);
    expect(over).toEqual([]);
  });

  it("PENDING_SPLIT names only files that exist and are still too long", () => {
    const stale = PENDING_SPLIT.filter((p) => {
      const f = files.find((x) => x.path === p);
      return f === undefined || f.lines <= MAX_LINES;
    });
    expect(stale).toEqual([]);
  });

  it("PENDING_SPLIT holds nothing of the host (its split is done)", () => {
    expect(PENDING_SPLIT.filter((p) => p.startsWith("packages/host/"))).toEqual([]);
  });
});

describe("package imports point one way (host -> vendors -> core)", () => {
  it.each(packages)("packages/%s/src imports only the packages it may", (pkg) => {
    const ok = allowed(pkg);
    const bad: string[] = [];
    for (const f of files) {
      if (f.pkg !== pkg) continue;
      for (const s of f.bare) {
        const target = workspacePackage(s);
        if (target !== undefined && target !== pkg && !ok.includes(target))
          bad.push(`${f.path} imports ${s}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it.each(packages)("packages/%s/package.json depends only on the packages it may", (pkg) => {
    const json = JSON.parse(readFileSync(join(ROOT, "packages", pkg, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
    };
    const names = [...Object.keys(json.dependencies ?? {}), ...Object.keys(json.peerDependencies ?? {})];
    const bad = names.filter((n) => {
      const t = workspacePackage(n);
      return t !== undefined && t !== pkg && !allowed(pkg).includes(t);
    });
    expect(bad).toEqual([]);
  });
});

/**
 * The host's rooms by layer, after iommufd's split (drivers/iommu/iommufd/): a file may
 * import only files of a lower layer, so the arrows run context / pages / io-pagetable
 * <- ioas <- hw-pagetable, access <- device <- the facade; the vIOMMU (viommu.ts) sits
 * below its vDEVICEs, vEVENTQs and the nested HWPTs allocated on it. Files not listed here are
 * held to the circle check only.
 */
const HOST_LAYERS: readonly (readonly string[])[] = [
  ["context.ts", "pages.ts", "dma.ts", "registry.ts"],
  ["io-pagetable.ts", "fault.ts", "viommu.ts"],
  ["ioas.ts", "vdevice.ts", "veventq.ts"],
  ["hw-pagetable.ts", "access.ts"],
  ["device.ts"],
  ["device-dma.ts", "describe.ts", "mdev.ts"],
  ["destroy.ts", "host-options.ts"],
  ["host.ts"],
  ["index.ts"],
];

describe("host layering", () => {
  it("every listed room exists", () => {
    const missing = HOST_LAYERS.flat().filter((n) => !files.some((f) => f.path === `packages/host/src/${n}`));
    expect(missing).toEqual([]);
  });

  it("rooms import only lower layers", () => {
    const layer = new Map<string, number>();
    HOST_LAYERS.forEach((names, i) => {
      for (const n of names) layer.set(`packages/host/src/${n}`, i);
    });
    const bad: string[] = [];
    for (const f of files) {
      const from = layer.get(f.path);
      if (from === undefined) continue;
      for (const to of f.local) {
        const l = layer.get(to);
        if (l !== undefined && l >= from) bad.push(`${f.path} (layer ${from}) imports ${to} (layer ${l})`);
      }
    }
    expect(bad).toEqual([]);
  });
});

describe("the checks themselves", () => {
  it("findCycles reports a synthetic circle as its closing path, once", () => {
    const g = new Map<string, string[]>([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a", "d"]],
      ["d", []],
      ["e", ["a"]],
    ]);
    expect(findCycles(g)).toEqual([["a", "b", "c", "a"]]);
  });

  it("findCycles reports a self-import and two separate circles", () => {
    const g = new Map<string, string[]>([
      ["x", ["x"]],
      ["p", ["q"]],
      ["q", ["p"]],
    ]);
    expect(findCycles(g)).toEqual([
      ["p", "q", "p"],
      ["x", "x"],
    ]);
  });

  it("findCycles passes a diamond (shared imports are no circle)", () => {
    const g = new Map<string, string[]>([
      ["top", ["left", "right"]],
      ["left", ["base"]],
      ["right", ["base"]],
      ["base", []],
    ]);
    expect(findCycles(g)).toEqual([]);
  });

  it("specifiers counts import, import type, export-from and side-effect imports and require-imports; not comments, strings or import()", () => {
    const text = [
      'import { a } from "./a.ts";',
      'import type { B } from "./b.ts";',
      'export { c } from "./c.ts";',
      'export * from "./d.ts";',
      'import "./e.ts";',
      '// import { z } from "./z.ts";',
      "const s = \"import { y } from './y.ts'\";",
      'const later = import("./dyn.ts");',
      'import fs = require("node:fs");',
    ].join("\n");
    expect(specifiers(text)).toEqual(["./a.ts", "./b.ts", "./c.ts", "./d.ts", "./e.ts", "node:fs"]);
  });

  describe("on a synthetic repository", () => {
    const root = mkdtempSync(join(tmpdir(), "iommu-kit-arch-"));
    afterAll(() => rmSync(root, { recursive: true, force: true }));
    const put = (path: string, text: string): void => {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    };
    put("packages/one/src/a.ts", 'import type { B } from "./sub/b.ts";\nexport const a = 1;\n');
    put("packages/one/src/sub/b.ts", 'export { a } from "../a.ts";\nexport type B = number;\n');
    put(
      "packages/one/src/c.ts",
      'import type { A } from "./a.ts";\nimport { a } from "./a.ts";\nimport { x } from "@iommu-kit/two/driver";\n',
    );
    put("packages/two/src/index.ts", `${"// line\n".repeat(601)}`);

    it("finds a type-only circle across folders, with its path", () => {
      const fs = loadSources(root);
      expect(findCycles(packageGraph(fs, "one"))).toEqual([
        ["packages/one/src/a.ts", "packages/one/src/sub/b.ts", "packages/one/src/a.ts"],
      ]);
      expect(findCycles(packageGraph(fs, "two"))).toEqual([]);
    });

    it("counts lines, merges repeated edges and names the workspace package of a subpath import", () => {
      const fs = loadSources(root);
      expect(fs.find((f) => f.path === "packages/two/src/index.ts")?.lines).toBe(601);
      expect(fs.find((f) => f.path === "packages/one/src/c.ts")?.bare).toEqual(["@iommu-kit/two/driver"]);
      // `import type` and `import` of one file are one edge.
      expect(fs.find((f) => f.path === "packages/one/src/c.ts")?.local).toEqual(["packages/one/src/a.ts"]);
      expect(workspacePackage("@iommu-kit/two/driver")).toBe("two");
      expect(workspacePackage("node:fs")).toBeUndefined();
    });
  });
});
