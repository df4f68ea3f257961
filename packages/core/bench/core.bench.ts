import { Iotlb } from "../src/driver.ts";
import type { BenchCase } from "../src/testing/index.ts";
import { createTestMemory } from "../src/testing/memory.ts";

/** Consumes results so the optimiser cannot drop the measured work. */
export let sink = 0;

/** Core building blocks: the IOTLB hash and page reads, each against its plain baseline. */
export function cases(): BenchCase[] {
  const n = 1024;
  const tlb = new Iotlb(12);
  const map = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    tlb.insert(7, 0x10000 + i, 0x80000000 + i * 4096, 3, 12);
    map.set(i, i * 4096);
  }
  let i = 0;
  const { memory } = createTestMemory();
  const flat = new Uint32Array(1024 * 256);
  for (let p = 0; p < 256; p++) memory.write32(p * 4096, p);
  let a = 0;
  return [
    {
      name: "Iotlb.lookup hit (1K entries)",
      baseline: "Map.get, 1K small-int keys",
      target: 2,
      fn: () => {
        const s = tlb.lookup(7, 0x10000 + (i++ & 1023));
        sink += tlb.pas[s]!;
      },
      baselineFn: () => {
        sink += map.get(i++ & 1023)!;
      },
    },
    {
      name: "PhysicalMemory.read32 (256 pages)",
      baseline: "Uint32Array index",
      target: 4,
      fn: () => {
        sink += memory.read32((a++ & 255) * 4096);
      },
      baselineFn: () => {
        sink += flat[(a++ & 255) * 1024]!;
      },
    },
  ];
}
