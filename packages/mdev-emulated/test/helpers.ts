/** Shared fixtures: memory, a mock parent with a PASID-capable and a plain device, and the backend. */

import type { Backend } from "@iommu-kit/core";
import type { MockBackend, TestMemory } from "@iommu-kit/core/testing";
import { createTestMemory, mockBackend } from "@iommu-kit/core/testing";
import { MdevEmulatedBackend } from "../src/backend.ts";

/** Parent rid with 20-bit PASIDs. */
export const PASID_PARENT = 0x10;
/** Parent rid without PASIDs. */
export const PLAIN_PARENT = 0x20;

export interface Fixture extends TestMemory {
  readonly parent: MockBackend;
  readonly mdev: MdevEmulatedBackend;
}

/** Fresh memory (256 MiB RAM), a mock parent with two devices, and an mdev backend. */
export function fixture(ramSize: number = 2 ** 28, iotlbSizeLg2?: number): Fixture {
  const mem = createTestMemory(ramSize, 2 ** 24);
  const parent = mockBackend.create({
    memory: mem.memory,
    tables: mem.tables,
    name: "parent",
  }) as MockBackend;
  parent.addDevice({ rid: PASID_PARENT, pasidBits: 20 });
  parent.addDevice({ rid: PLAIN_PARENT, pasidBits: 0 });
  const mdev = new MdevEmulatedBackend(
    { memory: mem.memory, tables: mem.tables, name: "mdev" },
    iotlbSizeLg2 === undefined ? {} : { iotlbSizeLg2 },
  );
  return { ...mem, parent, mdev };
}

/** Adds mdev `rid` on `parentRid` of the fixture's parent. */
export function addMdev(
  f: Fixture,
  rid: number,
  parentRid: number = PASID_PARENT,
  backend: Backend = f.parent,
): void {
  f.mdev.addDevice({ rid, pasidBits: 0, parent: { backend, rid: parentRid } });
}
