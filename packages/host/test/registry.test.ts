import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackendRegistry, IommuError } from "@iommu-kit/core";
import { mockBackend } from "@iommu-kit/core/testing";
import { describe, expect, it } from "vitest";
import { Host, isBackendFactory, isModulePath, loadBackend, registerExports } from "../src/index.ts";

const PLUGIN = `
export const notAFactory = { name: "x" };
export const toyBackend = {
  name: "toy",
  description: "a plugin backend",
  create(ctx) { return { kind: "toy", name: ctx.name }; },
};
`;

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof IommuError ? e.code : "not an IommuError";
  }
  return undefined;
}

describe("backend registry loader", () => {
  it("recognises factories and module paths", () => {
    expect(isBackendFactory(mockBackend)).toBe(true);
    expect(isBackendFactory({ name: "x" })).toBe(false);
    expect(isBackendFactory(null)).toBe(false);
    expect(isModulePath("./a.js")).toBe(true);
    expect(isModulePath("/abs/b.mjs")).toBe(true);
    expect(isModulePath("file:///x.js")).toBe(true);
    expect(isModulePath("smmuv3")).toBe(false);
    const r = new BackendRegistry();
    expect(registerExports({ a: mockBackend, b: 1, c: mockBackend }, r)).toEqual(["mock"]);
    expect(r.names()).toEqual(["mock"]);
  });

  it("a registered name resolves at once; an unknown one imports @iommu-kit/<name>", async () => {
    const r = new BackendRegistry();
    r.register(mockBackend);
    expect(await loadBackend("mock", r)).toBe(mockBackend);
    const f = await loadBackend("mdev-emulated", r);
    expect(f.name).toBe("mdev-emulated");
    expect(r.names()).toEqual(["mdev-emulated", "mock"]);
    expect(await code(loadBackend("no-such-backend", r))).toBe("ENOENT");
    expect(await code(loadBackend("Bad Name", r))).toBe("EINVAL");
  });

  it("a plugin path registers every exported factory; a module without one is EINVAL", async () => {
    const dir = mkdtempSync(join(tmpdir(), "iommu-kit-plugin-"));
    writeFileSync(join(dir, "toy.mjs"), PLUGIN);
    writeFileSync(join(dir, "empty.mjs"), "export const x = 1;\n");
    const r = new BackendRegistry();
    const host = new Host({
      registry: r,
      ram: [{ base: 0, size: 2 ** 24 }],
      tables: { base: 2 ** 24, size: 2 ** 20 },
    });
    expect(await host.loadBackend("./toy.mjs", dir)).toBe("toy");
    expect(r.names()).toEqual(["toy"]);
    expect(host.addIommu("t0", "toy")).toMatchObject({ kind: "toy", name: "t0" });
    expect(await code(host.loadBackend(join(dir, "empty.mjs")))).toBe("EINVAL");
    expect(await code(host.loadBackend(join(dir, "missing.mjs")))).toBe("ENOENT");
    expect(() => host.addIommu("t0", "toy")).toThrow(/EEXIST/);
    expect(() => host.addIommu("t1", "nope")).toThrow(/ENOENT/);
  });
});
