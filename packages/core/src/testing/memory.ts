/**
 * A ready-made memory map for tests: RAM [0, ramSize) and a table region just above it
 * (the host's default layout: 4 GiB of RAM, 256 MiB of tables at 4 GiB).
 */

import { PhysicalMemory } from "../memory/physical-memory.ts";
import { TableAllocator } from "../memory/table-allocator.ts";

/** Memory, allocator and the RAM range user mappings may target. */
export interface TestMemory {
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  readonly ram: { readonly base: number; readonly size: number };
}

/** RAM [0, ramSize) plus `tablesSize` bytes of table region at ramSize. */
export function createTestMemory(ramSize: number = 2 ** 32, tablesSize: number = 2 ** 28): TestMemory {
  const memory = new PhysicalMemory([
    { base: 0, size: ramSize, name: "ram" },
    { base: ramSize, size: tablesSize, name: "tables" },
  ]);
  return { memory, tables: new TableAllocator(memory, ramSize, tablesSize), ram: { base: 0, size: ramSize } };
}
