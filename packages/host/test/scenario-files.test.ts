/**
 * Every scenario shipped in scenarios/ (the iommufd selftest semantics, ported) and the
 * built-in default scenario run in-process and must pass.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { isBackendFactory } from "../src/registry.ts";
import { DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME } from "../src/scenario/default-scenario.ts";
import { createScenarioHost } from "../src/scenario/host.ts";
import type { Scenario } from "../src/scenario/load.ts";
import { loadScenario, validateScenario } from "../src/scenario/load.ts";
import type { FileReport } from "../src/scenario/runner.ts";
import { runScenario } from "../src/scenario/runner.ts";
import { OPS } from "../src/scenario/schema.ts";

const dir = fileURLToPath(new URL("../scenarios/", import.meta.url));
const files = readdirSync(dir)
  .filter((f) => /\.(json|ya?ml)$/.test(f))
  .sort();

function failures(rep: FileReport): string[] {
  return rep.steps.filter((s) => !s.pass).map((s) => `step ${s.step} ${s.label}: ${s.mismatches.join("; ")}`);
}

async function run(s: Scenario, name: string): Promise<FileReport> {
  return runScenario(s, name, (x) => createScenarioHost(x, { baseDir: dir }));
}

// The tour needs the vendor backends; until a package exports its factory, it is skipped.
const vendors = await Promise.all(
  ["smmuv3", "vtd", "mdev-emulated"].map(async (p) =>
    Object.values((await import(`@iommu-kit/${p}`)) as Record<string, unknown>).some(isBackendFactory),
  ),
);

describe("scenario files", () => {
  it("there are selftest ports to run", () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
  });
  it("together with the tour they use every op of the schema", () => {
    const used = new Set(DEFAULT_SCENARIO.steps.map((st) => st.op));
    for (const f of files)
      for (const st of loadScenario(readFileSync(`${dir}${f}`, "utf8"), f).steps) used.add(st.op);
    expect([...OPS].filter((op) => !used.has(op))).toEqual([]);
  });
  it.each(files)("%s passes", async (f) => {
    const s = loadScenario(readFileSync(`${dir}${f}`, "utf8"), f);
    const rep = await run(s, f);
    expect(failures(rep)).toEqual([]);
    expect(rep.steps.length).toBe(s.steps.length);
    expect(rep.pass).toBe(true);
  });
  it.skipIf(vendors.includes(false))("the default scenario passes", async () => {
    const rep = await run(validateScenario(DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME), DEFAULT_SCENARIO_NAME);
    expect(failures(rep)).toEqual([]);
    expect(rep.pass).toBe(true);
  });
});
