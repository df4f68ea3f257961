import { defaultRegistry } from "@iommu-kit/core";
import { mockBackend } from "@iommu-kit/core/testing";
import { beforeAll, describe, expect, it } from "vitest";
import { createScenarioHost } from "../src/scenario/host.ts";
import { validateScenario } from "../src/scenario/load.ts";
import { runScenario } from "../src/scenario/runner.ts";

beforeAll(() => {
  defaultRegistry.register(mockBackend);
});

async function run(doc: unknown) {
  const s = validateScenario(doc, "t.json");
  return runScenario(s, "t.json", (x) => createScenarioHost(x));
}

const base = {
  iommus: [{ name: "m0", backend: "mock" }],
  devices: [{ name: "dev", iommu: "m0", rid: 1, pasidBits: 8 }],
};

describe("scenario runner on the mock backend", () => {
  it("maps, attaches, DMAs and checks every expectation", async () => {
    const rep = await run({
      ...base,
      steps: [
        { op: "mem.write", pa: "0x100000", data: "deadbeef" },
        { op: "ioas.alloc", as: "ioas" },
        {
          op: "ioas.map",
          ioas: "ioas",
          iova: "0x10000",
          length: "0x2000",
          pa: "0x100000",
          prot: "rw",
          expect: { iova: "0x10000" },
        },
        { op: "attach", device: "dev", target: "rid", pt: "ioas", as: "auto" },
        {
          op: "dma",
          device: "dev",
          iova: "0x10000",
          length: 4,
          expect: { pa: "0x100000", data: "DEADBEEF" },
        },
        {
          op: "dma",
          device: "dev",
          iova: "0x10002",
          access: "write",
          data: "0102",
          expect: { pa: "0x100002" },
        },
        { op: "mem.read", pa: "0x100000", length: 4, expect: { data: "dead0102" } },
        { op: "dma", device: "dev", iova: "0x40000", length: 4, expect: { fault: "MOCK_TRANSLATION" } },
        { op: "dma", device: "dev", iova: "0x40000", length: 4, expect: { fault: "translation" } },
        {
          op: "faults.read",
          device: "dev",
          expect: { faults: [{ name: "MOCK_TRANSLATION", iova: "0x40000", device: "dev" }, { code: 1 }] },
        },
        { op: "destroy", id: "ioas", expect: { error: "EBUSY" } },
        { op: "ioas.unmap", ioas: "ioas", iova: "0x10000", length: "0x1000", expect: { error: "ENOENT" } },
        { op: "detach", device: "dev", target: "rid" },
        { op: "dma", device: "dev", iova: "0x10000", length: 4, expect: { fault: "blocked" } },
        { op: "ioas.unmap", ioas: "ioas", all: true, expect: { length: "0x2000" } },
        { op: "destroy", id: "ioas" },
      ],
    });
    for (const s of rep.steps) expect({ step: s.step, m: s.mismatches }).toEqual({ step: s.step, m: [] });
    expect(rep.pass).toBe(true);
    expect(rep.caps).toHaveLength(1);
    expect(rep.caps[0]).toMatchObject({ device: "dev", backend: "mock", rid: 1, maxPasidLog2: 8 });
  });

  it("fails a step whose expectation does not hold and names it", async () => {
    const rep = await run({
      ...base,
      steps: [
        { op: "ioas.alloc", as: "ioas" },
        {
          op: "ioas.map",
          ioas: "ioas",
          iova: "0x10000",
          length: "0x1000",
          pa: "0x100000",
          expect: { iova: "0x20000" },
        },
        { op: "ioas.map", ioas: "ioas", iova: "0x10000", length: "0x1000", pa: "0x100000" },
      ],
    });
    expect(rep.pass).toBe(false);
    expect(rep.steps.map((s) => s.pass)).toEqual([true, false, false]);
    expect(rep.steps[1]!.mismatches).toEqual(['iova: expected "0x20000", got "0x10000"']);
    expect(rep.steps[2]!.outcome).toMatchObject({ kind: "error", error: { code: "EEXIST" } });
  });
});
