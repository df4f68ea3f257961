/**
 * The core conformance suite over a backend created the way the host creates every
 * backend: found by name in a registry and instantiated by `Host.addIommu` over the
 * host's memory map and table region.
 */

import { BackendRegistry } from "@iommu-kit/core";
import type { MockBackend } from "@iommu-kit/core/testing";
import { mockBackend, mockRewriteLeaf, runConformance } from "@iommu-kit/core/testing";
import { describe, it } from "vitest";
import { Host } from "../src/index.ts";

runConformance(
  { describe, it },
  {
    name: "mock created by the host",
    setup() {
      const registry = new BackendRegistry();
      registry.register(mockBackend);
      const host = new Host({
        registry,
        ram: [{ base: 0, size: 2 ** 30 }],
        tables: { base: 2 ** 30, size: 2 ** 26 },
      });
      const backend = host.addIommu("conf", "mock") as MockBackend;
      return {
        backend,
        memory: host.memory,
        tables: host.tables,
        devices: [
          { rid: 1, pasidBits: 0 },
          { rid: 2, pasidBits: 8 },
        ],
        ram: { base: 0, size: 2 ** 30 },
        rewriteLeaf: mockRewriteLeaf,
        invalidateLeaf: (domain, iova) => backend.invalidateRange(domain, iova, 4096),
      };
    },
  },
);
