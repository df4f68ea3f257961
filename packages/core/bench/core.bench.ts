import {
  FastIotlb,
  IOTLB_MICRO_MASK,
  IOTLB_MICRO_META,
  iotlbMeta,
  microMetaView,
  PageTable,
} from "../src/driver.ts";
import { Perm } from "../src/index.ts";
import type { BenchCase } from "../src/testing/index.ts";
import { mockFormat } from "../src/testing/index.ts";
import { createTestMemory } from "../src/testing/memory.ts";

/** Consumes results so the optimiser cannot drop the measured work. */
export let sink = 0;

/** Core building blocks: the IOTLB hash and page reads, each against its plain baseline. */
export function cases(): BenchCase[] {
  return [...blockCases(), ...pageTableCases()];
}

function blockCases(): BenchCase[] {
  const n = 1024;
  const map = new Map<number, number>();
  for (let i = 0; i < n; i++) map.set(i, i * 4096);
  const fast = new FastIotlb(12);
  for (let i = 0; i < n; i++) fast.insert(7, 0x10000 + i, 0x80000000 + i * 4096, iotlbMeta(3, 12));
  const fd = fast.data;
  // The micro-TLB filled for every page, under key 7.5 (a vendor key with a variant folded in).
  for (let i = 0; i < n; i++) {
    const vpn = 0x10000 + i;
    fast.remember(fast.lookup(7, vpn), vpn, 7.5, 3);
  }
  const micro = fast.micro;
  const micro32 = microMetaView(micro);
  let f = 0;
  let u = 0;
  const { memory } = createTestMemory();
  const flat = new Uint32Array(1024 * 256);
  for (let p = 0; p < 256; p++) memory.write32(p * 4096, p);
  let a = 0;
  return [
    {
      name: "FastIotlb.lookup hit + perm check (1K entries)",
      baseline: "Map.get, 1K small-int keys",
      target: 1.25,
      fn: () => {
        const vpn = 0x10000 + (f++ & 1023);
        const s = fast.lookup(7, vpn);
        const b = s << 2;
        if ((fd[b + 3]! & 1) !== 0) sink += fd[b + 2]!;
      },
      baselineFn: () => {
        sink += map.get(f++ & 1023)!;
      },
    },
    {
      name: "FastIotlb micro-TLB hit + perm check (1K entries)",
      baseline: "Map.get, 1K small-int keys",
      target: 1.25,
      fn: () => {
        const vpn = 0x10000 + (u++ & 1023);
        const x = (vpn & IOTLB_MICRO_MASK) << 2;
        if (
          micro[x] === vpn * 4096 &&
          micro[x + 1] === 7.5 &&
          (micro32[(x << 1) + IOTLB_MICRO_META]! & 1) !== 0
        )
          sink += micro[x + 2]!;
      },
      baselineFn: () => {
        sink += map.get(u++ & 1023)!;
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

/** The generic page table: map of 256 contiguous 4K pages (then unmap, untimed state reset). */
function pageTableCases(): BenchCase[] {
  const { tables } = createTestMemory();
  const pt = new PageTable(mockFormat, tables);
  // Warm: the leaf table exists (a neighbour page stays mapped), as in a steady-state IOAS.
  pt.map(0x4000_0000 + 0x20_0000 - 0x1000, 0x1000, 0x1000, Perm.R);
  const raw = new Uint32Array(1024);
  const out = new Uint32Array(2);
  return [
    {
      name: "PageTable.map+unmap 256 x 4K (mock format)",
      baseline: "encode + write 256 descriptors, then clear them",
      target: 4,
      fn: () => {
        pt.map(0x4000_0000, 0x8000_0000, 256 * 4096, Perm.R | Perm.W);
        sink += pt.unmap(0x4000_0000, 256 * 4096);
      },
      baselineFn: () => {
        for (let i = 0; i < 256; i++) {
          mockFormat.encodeLeaf(0x8000_0000 + i * 4096, 0, Perm.R | Perm.W, out);
          raw[2 * i] = out[0]!;
          raw[2 * i + 1] = out[1]!;
        }
        for (let i = 0; i < 512; i++) raw[i] = 0;
        sink++;
      },
    },
  ];
}
