/** Shared test fixtures: a fresh memory + backend, and table-rewrite hooks. */

import type { Domain } from "@iommu-kit/core";
import type { TestMemory } from "@iommu-kit/core/testing";
import { createTestMemory } from "@iommu-kit/core/testing";
import type { VtdBackend, VtdDomain } from "../src/backend.ts";
import { createVtd } from "../src/backend.ts";
import type { VtdConfig } from "../src/hw-info.ts";

/** A backend over fresh test memory (4 GiB RAM + 256 MiB tables). */
export function fresh(
  config: VtdConfig = {},
  ramSize: number = 2 ** 32,
): TestMemory & { backend: VtdBackend } {
  const tm = createTestMemory(ramSize, 2 ** 28);
  const backend = createVtd({ memory: tm.memory, tables: tm.tables, name: "vtd0" }, config);
  return { ...tm, backend };
}

const scratch = new Uint32Array(2);

/** Rewrites the leaf mapping `iova` to `newPa` in memory only (no invalidation). */
export function rewriteLeaf(domain: Domain, iova: number, newPa: number): void {
  const d = domain as VtdDomain;
  const t = d.table!;
  const leaf = t.lookup(iova);
  if (leaf === null) throw new Error(`no leaf at ${iova}`);
  t.forEachLeaf(iova, 1, (_base, sizeLg2, words, w, level) => {
    t.format.encodeLeaf(newPa - (newPa % 2 ** sizeLg2), level, leaf.perm, scratch);
    words[w] = scratch[0]!;
    words[w + 1] = scratch[1]!;
  });
}

/** The invalidation the driver issues after changing one leaf. */
export function invalidateLeaf(domain: Domain, iova: number): void {
  const d = domain as VtdDomain;
  d.backend.flushRange(d, iova, 4096);
}
