// The core conformance suite, bound to node:test (no other test runner needed).
import { describe, it } from "node:test";
import { createTestMemory, runConformance } from "@iommu-kit/core/testing";
import { toyBackend, toyFormat } from "../src/index.js";

runConformance(
  { describe, it },
  {
    name: "toy",
    setup() {
      const { memory, tables, ram } = createTestMemory();
      const backend = /** @type {import("../src/index.js").ToyIommu} */ (
        toyBackend.create({ memory, tables, name: "toy0" })
      );
      return {
        backend,
        memory,
        tables,
        ram,
        devices: [{ rid: 1, pasidBits: 0 }],
        rewriteLeaf(domain, iova, newPa) {
          const table = /** @type {any} */ (domain).table;
          table.forEachLeaf(iova, 1, (_base, _size, words, w) => {
            const out = new Uint32Array(2);
            toyFormat.encodeLeaf(newPa, 0, toyFormat.leafPerm(words[w], words[w + 1], 0), out);
            words[w] = out[0];
            words[w + 1] = out[1];
          });
        },
        invalidateLeaf(domain, iova) {
          backend.tlb.invalidateRange(domain.id, iova, 4096);
        },
      };
    },
  },
);
