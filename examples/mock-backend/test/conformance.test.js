// @ts-check
// The core conformance suite, bound to node:test (no other test runner needed).
import { describe, it } from "node:test";
import { createTestMemory, runConformance } from "@iommu-kit/core/testing";
import { ToyDomain, ToyIommu, toyBackend, toyFormat } from "../src/index.js";

runConformance(
  { describe, it },
  {
    name: "toy",
    setup() {
      const { memory, tables, ram } = createTestMemory();
      const backend = toyBackend.create({ memory, tables, name: "toy0" });
      if (!(backend instanceof ToyIommu)) throw new Error("toyBackend.create returned no ToyIommu");
      return {
        backend,
        memory,
        tables,
        ram,
        devices: [{ rid: 1, pasidBits: 0 }],
        // Rewrite the leaf in memory with the same permissions and no invalidation: the
        // suite checks the IOTLB keeps serving the old address until invalidateLeaf.
        rewriteLeaf(domain, iova, newPa) {
          if (!(domain instanceof ToyDomain)) throw new Error("not a toy domain");
          const entry = new Uint32Array(2);
          domain.paging().forEachLeaf(iova, 1, (_iova, _sizeLg2, words, w) => {
            toyFormat.encodeLeaf(newPa, 0, toyFormat.leafPerm(words[w], words[w + 1], 0), entry);
            words[w] = entry[0];
            words[w + 1] = entry[1];
          });
        },
        // What the toy driver issues after changing one leaf: drop that page from the IOTLB.
        invalidateLeaf(domain, iova) {
          backend.tlb.invalidateRange(-1, domain.id, iova, iova + 4096);
        },
      };
    },
  },
);
