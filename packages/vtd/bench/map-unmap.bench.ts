/**
 * Issue 16's map + unmap case: 256 x 4K mapped then unmapped through a domain attached
 * to one device, each call issuing the invalidation the driver issues (one PSI with the
 * smallest covering AM and one wait descriptor, Linux cache_tag_flush_range), executed by
 * the hardware model; against a tight loop writing then clearing the same 256
 * second-stage descriptors in a typed array (target <= 5x).
 */

import { Intent, Perm } from "@iommu-kit/core";
import type { BenchCase, BenchCases } from "@iommu-kit/core/testing";
import { createTestMemory } from "@iommu-kit/core/testing";
import type { VtdDomain } from "../src/index.ts";
import { createVtd } from "../src/index.ts";

const BASE = 0x40_0000_0000;

/** The baseline: 256 second-stage leaves (R|W) written, then cleared (a plain function: one compiled loop). */
function writeClear256(t: Uint32Array): void {
  for (let k = 0; k < 256; k++) {
    t[2 * k] = (0x4000_0000 + k * 4096 + 3) >>> 0;
    t[2 * k + 1] = 0;
  }
  for (let k = 0; k < 512; k++) t[k] = 0;
}

function mapUnmapCase(mode: "scalable" | "legacy"): BenchCase {
  const { memory, tables } = createTestMemory(2 ** 34, 2 ** 30);
  const b = createVtd({ memory, tables, name: "bench" }, { mode });
  const d = b.allocDomain({ type: "paging" }) as VtdDomain;
  b.addDevice({ rid: 0x10, pasidBits: 0 });
  b.attach(0x10, Intent.rid, d);
  const at = BASE + 0x20_0000;
  // One page at +1 MiB keeps the leaf table alive between runs, as in a domain in use.
  d.map(at + 0x10_0000, 0x1000, 0x1000, Perm.R);
  const scratch = new Uint32Array(1024);
  return {
    name: `map + unmap 256 x 4K through a domain, one PSI + wait each (${mode})`,
    baseline: "write + clear the same 256 descriptors in a typed array",
    target: 5,
    fn: () => {
      d.map(at, 0x4000_0000, 256 * 4096, Perm.R | Perm.W);
      d.unmap(at, 256 * 4096);
    },
    baselineFn: () => writeClear256(scratch),
  };
}

export const cases: BenchCases = () => [() => mapUnmapCase("scalable"), () => mapUnmapCase("legacy")];
