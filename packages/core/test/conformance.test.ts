import { describe, it } from "vitest";
import { MockBackend, mockRewriteLeaf, runConformance } from "../src/testing/index.ts";
import { createTestMemory } from "../src/testing/memory.ts";

runConformance(
  { describe, it },
  {
    name: "mock",
    setup() {
      const { memory, tables, ram } = createTestMemory();
      const backend = new MockBackend({ memory, tables, name: "mock0" });
      return {
        backend,
        memory,
        tables,
        ram,
        devices: [
          { rid: 0x10, pasidBits: 20 },
          { rid: 0x11, pasidBits: 0 },
        ],
        rewriteLeaf: mockRewriteLeaf,
        invalidateLeaf: (domain, iova) => backend.invalidateRange(domain, iova, 4096),
      };
    },
  },
);
