import { readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isBackendFactory } from "../src/registry.ts";
import { DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME } from "../src/scenario/default-scenario.ts";
import { loadScenario, parseScenarioText, ScenarioError, validateScenario } from "../src/scenario/load.ts";
import { OPS, scenarioSchema } from "../src/scenario/schema.ts";

const base = {
  iommus: [{ name: "smmu0", backend: "smmuv3" }],
  devices: [{ name: "nic", iommu: "smmu0", rid: "0x10", pasidBits: 20 }],
};

function errorOf(doc: unknown): ScenarioError {
  try {
    validateScenario(doc, "t.json");
  } catch (e) {
    if (e instanceof ScenarioError) return e;
    throw e;
  }
  throw new Error("no error");
}

describe("scenario files", () => {
  it("accepts a small valid scenario in JSON and YAML", () => {
    const doc = {
      ...base,
      steps: [
        { op: "ioas.alloc", as: "ioas" },
        {
          op: "ioas.map",
          ioas: "ioas",
          iova: "0x10000",
          length: 4096,
          pa: "0x100000",
          prot: "rw",
          expect: { iova: "0x10000" },
        },
        { op: "attach", device: "nic", target: "rid", pt: "ioas", as: "hwpt" },
        { op: "dma", device: "nic", iova: "0x10000", length: 4, expect: { pa: "0x100000" } },
        { op: "attach", device: "nic", target: { pasid: 3 }, pt: "hwpt" },
      ],
    };
    expect(loadScenario(JSON.stringify(doc), "a.json").steps).toHaveLength(5);
    const yaml = [
      "iommus: [{name: smmu0, backend: smmuv3}]",
      "devices:",
      "  - {name: nic, iommu: smmu0, rid: 0x10}",
      "steps:",
      "  - op: ioas.alloc",
      "    as: ioas",
      "  - {op: ioas.map, ioas: ioas, length: 0x1000, pa: 0x100000}",
    ].join("\n");
    const s = loadScenario(yaml, "a.yaml");
    expect(s.steps[1]).toMatchObject({ op: "ioas.map", length: 4096 });
  });

  it("points at a missing required argument", () => {
    const e = errorOf({
      ...base,
      steps: [
        { op: "ioas.alloc", as: "i" },
        { op: "ioas.map", ioas: "i", pa: 0 },
      ],
    });
    expect(e.pointer).toBe("/steps/1/length");
    expect(e.message).toBe("t.json: /steps/1/length: is required");
  });

  it("points at an unknown argument", () => {
    const e = errorOf({ ...base, steps: [{ op: "ioas.alloc", as: "i", size: 3 }] });
    expect(e.pointer).toBe("/steps/0/size");
    expect(e.message).toMatch(/not a known field/);
  });

  it("points at a bad number", () => {
    const e = errorOf({
      ...base,
      steps: [
        { op: "ioas.alloc", as: "i" },
        { op: "ioas.map", ioas: "i", pa: 0, length: "4k" },
      ],
    });
    expect(e.pointer).toBe("/steps/1/length");
    expect(e.message).toMatch(/non-negative integer or a 0x hex string/);
  });

  it("points at an unknown op and lists the known ones", () => {
    const e = errorOf({ ...base, steps: [{ op: "ioas.mapp" }] });
    expect(e.pointer).toBe("/steps/0/op");
    expect(e.message).toMatch(/must be one of "ioas.alloc"/);
  });

  it("points at a bad attach target", () => {
    const e = errorOf({
      ...base,
      steps: [
        { op: "ioas.alloc", as: "i" },
        { op: "attach", device: "nic", target: "pasid", pt: "i" },
      ],
    });
    expect(e.pointer).toBe("/steps/1/target");
  });

  it("points at references to undeclared names", () => {
    expect(errorOf({ ...base, steps: [{ op: "ioas.map", ioas: "nope", pa: 0, length: 4096 }] }).pointer).toBe(
      "/steps/0/ioas",
    );
    expect(errorOf({ ...base, steps: [{ op: "hw_info", device: "gpu" }] }).pointer).toBe("/steps/0/device");
    expect(errorOf({ iommus: [], devices: [{ name: "d", iommu: "x", rid: 1 }], steps: [] }).pointer).toBe(
      "/devices/0/iommu",
    );
    expect(
      errorOf({ ...base, devices: [...base.devices, { name: "m", parent: "zz" }], steps: [] }).pointer,
    ).toBe("/devices/1/parent");
    expect(errorOf({ ...base, devices: [...base.devices, base.devices[0]], steps: [] }).pointer).toBe(
      "/devices/1/name",
    );
  });

  it("vIOMMU and fault ops: required fields, names of earlier objects, code values", () => {
    const pre = [
      { op: "ioas.alloc", as: "i" },
      { op: "hwpt.alloc", device: "nic", pt: "i", flags: ["nest_parent"], as: "s2" },
    ];
    const at = (steps: unknown[]) => errorOf({ ...base, steps: [...pre, ...steps] }).pointer;
    expect(at([{ op: "viommu.alloc", device: "nic", hwpt: "s2", as: "v" }])).toBe("/steps/2/type");
    expect(at([{ op: "viommu.alloc", device: "nic", hwpt: "zz", type: "arm-smmuv3", as: "v" }])).toBe(
      "/steps/2/hwpt",
    );
    expect(at([{ op: "vdevice.alloc", viommu: "nope", device: "nic", virtId: 1, as: "vd" }])).toBe(
      "/steps/2/viommu",
    );
    expect(at([{ op: "veventq.read", veventq: "q" }])).toBe("/steps/2/veventq");
    expect(at([{ op: "hwpt.alloc", device: "nic", pt: "i", faultQueue: "f", as: "h" }])).toBe(
      "/steps/2/faultQueue",
    );
    expect(
      at([
        { op: "fault.alloc", as: "f" },
        { op: "fault.respond", fault: "f", cookie: 1, code: "retry" },
      ]),
    ).toBe("/steps/3/code");
    expect(
      validateScenario(
        {
          ...base,
          steps: [
            ...pre,
            { op: "viommu.alloc", device: "nic", hwpt: "s2", type: "arm-smmuv3", as: "v" },
            { op: "vdevice.alloc", viommu: "v", device: "nic", virtId: "0x99", as: "vd" },
            { op: "veventq.alloc", viommu: "v", type: "arm-smmuv3", depth: 4, as: "q" },
            { op: "veventq.read", veventq: "q", max: 2 },
            { op: "fault.alloc", as: "f" },
            { op: "fault.read", fault: "f" },
            { op: "fault.respond", fault: "f", cookie: 1, code: "success" },
            { op: "invalidate", hwpt: "v", data: [["0x10", "0x0"]] },
          ],
        },
        "t.json",
      ).steps.length,
    ).toBe(10);
  });

  it("requires iova and length for a partial unmap, data for a write", () => {
    expect(
      errorOf({
        ...base,
        steps: [
          { op: "ioas.alloc", as: "i" },
          { op: "ioas.unmap", ioas: "i", iova: 0 },
        ],
      }).pointer,
    ).toBe("/steps/1/length");
    expect(
      errorOf({ ...base, steps: [{ op: "dma", device: "nic", iova: 0, access: "write" }] }).pointer,
    ).toBe("/steps/0/data");
  });

  it("refuses JSON numbers that lost precision, keeps big YAML integers exact", () => {
    const text = `{"steps": [{"op": "mem.read", "pa": 18446744073709551615, "length": 1}]}`;
    expect(() => loadScenario(text, "big.json")).toThrow(
      "big.json: /steps/0/pa: is at or above 2^53 and lost precision",
    );
    const yaml = "steps:\n  - {op: mem.read, pa: 0xffffffffffffffff, length: 0x10}";
    const doc = parseScenarioText(yaml, "big.yaml") as { steps: unknown[] };
    expect(doc.steps[0]).toMatchObject({ pa: "0xffffffffffffffff", length: 16 });
    // Exact, but the host takes numbers below 2^53: refused at load, with its place.
    expect(() => loadScenario(yaml, "big.yaml")).toThrow(
      "big.yaml: /steps/0/pa: 0xffffffffffffffff is at or above 2^53 (out of range)",
    );
  });

  it("reports JSON and YAML syntax errors as invalid files", () => {
    expect(() => parseScenarioText("{ bad", "x.json")).toThrow(/x.json: \/: not valid JSON/);
    expect(() => parseScenarioText("a: [1, 2", "x.yaml")).toThrow(/x.yaml: \/: not valid YAML/);
  });

  it("validates backend config against the backend's configSchema", () => {
    const schemas = {
      smmuv3: { type: "object", additionalProperties: false, properties: { ssidBits: { type: "integer" } } },
    };
    const doc = { iommus: [{ name: "s", backend: "smmuv3", config: { ssidBits: "x" } }], steps: [] };
    expect(() => validateScenario(doc, "c.json", schemas)).toThrow(/\/iommus\/0\/config\/ssidBits/);
  });

  it("the default scenario is valid", () => {
    expect(() => validateScenario(DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME)).not.toThrow();
  });

  it("documents every op in the schema", () => {
    const s = scenarioSchema() as { $defs: Record<string, { description?: string }> };
    for (const op of OPS) expect(s.$defs[`step:${op}`]?.description).toBeTruthy();
  });

  it("the published schema file is up to date (UPDATE_SCHEMA=1 rewrites it)", async () => {
    // The built-in backends document their config in the published schema.
    const configs: Record<string, Readonly<Record<string, unknown>> | undefined> = {};
    for (const pkg of ["smmuv3", "vtd", "mdev-emulated"]) {
      const mod = (await import(`@iommu-kit/${pkg}`)) as Record<string, unknown>;
      for (const v of Object.values(mod)) {
        if (isBackendFactory(v)) configs[v.name] = v.configSchema;
      }
    }
    const schema = scenarioSchema(configs);
    const text = `${JSON.stringify(schema, null, 2)}\n`;
    const path = new URL("../schema/scenario.schema.json", import.meta.url);
    if (process.env.UPDATE_SCHEMA === "1") writeFileSync(path, text);
    // Compared as data (biome formats the file). The host's part must match exactly; each
    // built-in backend's config rule must be present (its details are the backend's to change).
    type S = {
      properties: { iommus: { items: { allOf?: { if: { properties: { backend: { const: string } } } }[] } } };
    };
    const strip = (x: S): unknown => {
      const c = structuredClone(x);
      delete c.properties.iommus.items.allOf;
      return c;
    };
    const published = JSON.parse(readFileSync(path, "utf8")) as S;
    const fresh = JSON.parse(text) as S;
    expect(strip(published)).toEqual(strip(fresh));
    const names = (x: S) =>
      (x.properties.iommus.items.allOf ?? []).map((r) => r.if.properties.backend.const).sort();
    expect(names(published)).toEqual(names(fresh));
  });
});
