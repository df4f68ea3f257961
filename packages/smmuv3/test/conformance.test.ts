import { createTestMemory, runConformance } from "@iommu-kit/core/testing";
import { describe, it } from "vitest";
import { type SmmuPagingDomain, type SmmuV3Backend, smmuv3Backend } from "../src/index.ts";

function setup(config: Record<string, unknown> = {}, pasidBits = 20) {
  const { memory, tables, ram } = createTestMemory();
  const backend = smmuv3Backend.create({ memory, tables, name: "smmu0" }, config) as SmmuV3Backend;
  return {
    backend,
    memory,
    tables,
    ram,
    devices: [
      { rid: 0x10, pasidBits },
      { rid: 0x123, pasidBits: 0 },
    ],
    rewriteLeaf(domain: unknown, iova: number, newPa: number) {
      (domain as SmmuPagingDomain).rewriteLeaf(iova, newPa);
    },
    invalidateLeaf(domain: unknown, iova: number) {
      (domain as SmmuPagingDomain).invalidateIova(iova, 4096);
    },
  };
}

runConformance(
  { describe, it },
  {
    name: "smmuv3 (nested, 2-level)",
    setup: () => setup(),
    domainFor(s, device, kind) {
      if (kind !== "rid-all-pasids") return undefined;
      const parent = s.backend.allocDomain({ type: "paging", rid: device.rid, flags: { nestParent: true } });
      // A vSTE with Config=bypass on a vIOMMU: the nested domain is the parent's stage 2
      // (no vDEVICE needed: arm_smmu_attach_prepare_vmaster lets abort/bypass attach without).
      const viommu = s.backend.allocViommu!({ type: "arm-smmuv3", rid: device.rid, parent });
      return viommu.allocNested({ ste: [0x9n, 0n] }, {});
    },
  },
);
// The suite maps 4 KiB pages, so it runs on 4K-granule formats; 16K/64K are covered in backend.test.ts.
runConformance(
  { describe, it },
  {
    name: "smmuv3 (s1 only, linear stream table)",
    setup: () => setup({ stages: "s1", streamTable: "linear", sidBits: 10 }),
  },
);
runConformance({ describe, it }, { name: "smmuv3 (s2 only)", setup: () => setup({ stages: "s2" }) });
runConformance(
  { describe, it },
  {
    name: "smmuv3 (stage-2 domains on a nested SMMU)",
    setup: () => setup({}, 0),
    pagingFormat: "arm-lpae-s2-4k",
  },
);
