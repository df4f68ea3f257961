import type { DeviceSpec, Domain } from "@iommu-kit/core";
import type { ConformanceSetup } from "@iommu-kit/core/testing";
import { runConformance } from "@iommu-kit/core/testing";
import { describe, it } from "vitest";
import type { EmulatedDomain } from "../src/domain.ts";
import { leafLg2, PAGE } from "../src/format/emulated-table.ts";
import type { Fixture } from "./helpers.ts";
import { fixture, PASID_PARENT, PLAIN_PARENT } from "./helpers.ts";

function setup(devices: (f: Fixture) => readonly DeviceSpec[]): ConformanceSetup {
  const f = fixture(2 ** 28);
  return {
    backend: f.mdev,
    memory: f.memory,
    tables: f.tables,
    ram: f.ram,
    devices: devices(f),
    rewriteLeaf(domain: Domain, iova: number, newPa: number) {
      // Rewrites every page entry of the leaf holding `iova`, as one leaf rewrite.
      const t = (domain as EmulatedDomain).table;
      const flags = t.flagsAt(iova);
      const size = 2 ** leafLg2(flags);
      const base = iova - (iova % size);
      const pa = newPa - (newPa % size);
      for (let off = 0; off < size; off += PAGE) t.set(base + off, pa + off, flags);
    },
    invalidateLeaf(domain: Domain, iova: number) {
      f.mdev.invalidateRange(domain, iova - (iova % PAGE), PAGE);
    },
  };
}

// Both intents: mdevs on a PASID-capable mock parent, on a parent without PASIDs, and with none.
runConformance(
  { describe, it },
  {
    name: "mdev-emulated (mock parent)",
    setup: () =>
      setup((f) => [
        { rid: 1, pasidBits: 0, parent: { backend: f.parent, rid: PASID_PARENT } },
        { rid: 2, pasidBits: 0, parent: { backend: f.parent, rid: PLAIN_PARENT } },
        { rid: 3, pasidBits: 0 },
      ]),
  },
);

// The emulated intent alone.
runConformance(
  { describe, it },
  {
    name: "mdev-emulated (emulated only)",
    setup: () => setup(() => [{ rid: 7, pasidBits: 0 }]),
  },
);
