/**
 * Issue 16's map + unmap case: 256 x 4K mapped then unmapped through a domain attached
 * to one stream, the unmap issuing what Linux's arm_smmu_iotlb_sync issues (one range
 * TLBI with IDR3.RIL, else 256 TLBI_NH_VA batched, then one CMD_SYNC), executed by the
 * hardware model; against a tight loop writing then clearing the same 256 descriptors
 * in a typed array (target <= 5x with RIL; without it, reported for scale).
 */

import type { Backend } from "@iommu-kit/core";
import { Intent, Perm } from "@iommu-kit/core";
import type { BenchCase, BenchCases } from "@iommu-kit/core/testing";
import { createTestMemory } from "@iommu-kit/core/testing";
import type { SmmuPagingDomain } from "../src/index.ts";
import { smmuv3Backend } from "../src/index.ts";

const BASE = 0x40_0000_0000;

/** The baseline: 256 stage-1 pages (AF, SH, AP, attr) written, then cleared. */
function writeClear256(t: Uint32Array): void {
  for (let k = 0; k < 256; k++) {
    t[2 * k] = (0x4000_0000 + k * 4096 + 0x743) >>> 0;
    t[2 * k + 1] = 0x0060_0000;
  }
  for (let k = 0; k < 512; k++) t[k] = 0;
}

function mapUnmapCase(ril: boolean): BenchCase {
  const { memory, tables } = createTestMemory(2 ** 34, 2 ** 30);
  const b = smmuv3Backend.create({ memory, tables, name: "bench" }, {}) as Backend;
  if (!ril) (b as unknown as { hw: { ril: boolean } }).hw.ril = false;
  const d = b.allocDomain({ type: "paging" }) as SmmuPagingDomain;
  b.addDevice({ rid: 0x10, pasidBits: 0 });
  b.attach(0x10, Intent.rid, d);
  const at = BASE + 0x20_0000;
  // One page at +1 MiB keeps the level-3 table alive between runs, as in a domain in use.
  d.map(at + 0x10_0000, 0x1000, 0x1000, Perm.R);
  const scratch = new Uint32Array(1024);
  return {
    name: `map + unmap 256 x 4K through a domain, ${ril ? "one range TLBI" : "256 TLBIs"} + CMD_SYNC`,
    baseline: "write + clear the same 256 descriptors in a typed array",
    // Without RIL Linux itself issues one TLBI per page (256 commands the model executes
    // one by one): reported for scale, the target is for the range TLBI.
    ...(ril ? { target: 5 } : {}),
    fn: () => {
      d.map(at, 0x4000_0000, 256 * 4096, Perm.R | Perm.W);
      d.unmap(at, 256 * 4096);
    },
    baselineFn: () => writeClear256(scratch),
  };
}

export const cases: BenchCases = () => [() => mapUnmapCase(true), () => mapUnmapCase(false)];
