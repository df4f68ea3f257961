import { runConformance } from "@iommu-kit/core/testing";
import { describe, it } from "vitest";
import type { VtdConfig } from "../src/hw-info.ts";
import { fresh, invalidateLeaf, rewriteLeaf } from "./helpers.ts";

function factory(name: string, config: VtdConfig, pagingFormat?: string) {
  return {
    name,
    ...(pagingFormat === undefined ? {} : { pagingFormat }),
    setup() {
      const f = fresh(config);
      return {
        backend: f.backend,
        memory: f.memory,
        tables: f.tables,
        devices: [
          { rid: 0x0010, pasidBits: 0 },
          { rid: 0x0108, pasidBits: 20 },
          { rid: 0x0381, pasidBits: 8, ats: true },
        ],
        ram: f.ram,
        rewriteLeaf,
        invalidateLeaf,
      };
    },
  };
}

runConformance({ describe, it }, factory("vtd scalable, second stage 4-level", {}));
runConformance({ describe, it }, factory("vtd scalable, first stage 4-level", {}, "vtd-fs-4lvl"));
runConformance({ describe, it }, factory("vtd scalable, second stage 5-level", {}, "vtd-ss-5lvl"));
runConformance({ describe, it }, factory("vtd legacy, second stage", { mode: "legacy" }));
runConformance({ describe, it }, factory("vtd legacy, 3-level", { mode: "legacy", sagaw: 0b0010 }));
