/**
 * The emulated path against same-run baselines: bulk read/write through an IOVA vs a raw
 * Buffer copy of the same bytes; a single-page pin and an IOTLB hit vs a bare Map.get
 * with small-integer keys; a table lookup at 10 and at 100,000 mappings, each against a
 * Map of the same size (the issue asks the two ratios to differ by at most 1.5x).
 */

import { Access, createTranslation, Intent, NO_PASID, Perm } from "@iommu-kit/core";
import type { BenchCase, BenchCases } from "@iommu-kit/core/testing";
import { createTestMemory } from "@iommu-kit/core/testing";
import { MdevEmulatedBackend } from "../src/backend.ts";
import type { EmulatedDomain } from "../src/domain.ts";

const K4 = 0x1000;
const K64 = 0x1_0000;

function backend(): { mdev: MdevEmulatedBackend; dom: EmulatedDomain } {
  const mem = createTestMemory(2 ** 32, 2 ** 24);
  const mdev = new MdevEmulatedBackend({ memory: mem.memory, tables: mem.tables, name: "bench" });
  mdev.addDevice({ rid: 1, pasidBits: 0 });
  const dom = mdev.allocDomain({ type: "paging" }) as EmulatedDomain;
  mdev.attach(1, Intent.emulated, dom);
  return { mdev, dom };
}

/** Deterministic pseudo-random integers (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function rwCases(): BenchCase[] {
  const { dom } = backend();
  // 64 KiB at an unaligned IOVA over 17 pages, two mappings with a PA gap between them.
  dom.map(0x100_0000, 0x800_0000, 8 * K4, Perm.R | Perm.W);
  dom.map(0x100_8000, 0x900_0000, 9 * K4, Perm.R | Perm.W);
  const iova = 0x100_0123;
  const src = Buffer.alloc(K64, 0x5a);
  const dst = Buffer.alloc(K64);
  dom.write(iova, src);
  const into = new Uint8Array(K64);
  return [
    {
      name: "read 64 KiB through the IOVA (readInto)",
      baseline: "Buffer.copy of 64 KiB",
      target: 2,
      fn: () => dom.readInto(iova, into),
      baselineFn: () => {
        src.copy(dst);
      },
    },
    {
      name: "write 64 KiB through the IOVA",
      baseline: "Buffer.copy of 64 KiB",
      target: 2,
      fn: () => dom.write(iova, src),
      baselineFn: () => {
        src.copy(dst);
      },
    },
  ];
}

function pinAndHitCases(): BenchCase[] {
  const { mdev, dom } = backend();
  dom.map(0x4000_0000, 0x1000_0000, 64 * K4, Perm.R | Perm.W);
  const map = new Map<number, number>();
  for (let i = 0; i < 64; i++) map.set(i, 0x1000_0000 + i * K4);
  const out = createTranslation();
  let i = 0;
  let j = 0;
  let k = 0;
  let sink = 0;
  mdev.translate(1, NO_PASID, 0x4000_0000, Access.READ, out);
  for (let p = 0; p < 64; p++) mdev.translate(1, NO_PASID, 0x4000_0000 + p * K4, Access.READ, out);
  return [
    {
      name: "pin one page (pins accumulate)",
      baseline: "Map.get, 64 small-int keys",
      target: 4,
      fn: () => {
        i = (i + 1) & 63;
        sink += dom.pin(0x4000_0000 + i * K4, K4, false).length;
      },
      baselineFn: () => {
        j = (j + 1) & 63;
        sink += map.get(j)!;
      },
    },
    {
      name: "translate, IOTLB hit",
      baseline: "Map.get, 64 small-int keys",
      target: 2,
      fn: () => {
        k = (k + 1) & 63;
        if (mdev.translate(1, NO_PASID, 0x4000_0000 + k * K4 + 8, Access.READ, out)) sink += out.pa;
      },
      baselineFn: () => {
        j = (j + 1) & 63;
        sink += map.get(j)!;
        if (sink === -1) throw new Error("unreachable");
      },
    },
  ];
}

/**
 * Table lookup (iovaToPhys) over `n` single-page mappings at random pages of a 1 GiB IOVA
 * window (100,000 of its 262,144 pages at the large size), looked up in random order.
 */
function lookupCase(n: number): BenchCase {
  const { dom } = backend();
  const next = rng(n);
  const used = new Set<number>();
  const iovas: number[] = [];
  const keys: number[] = [];
  const map = new Map<number, number>();
  while (iovas.length < n) {
    const page = next() % 2 ** 18;
    if (used.has(page)) continue;
    used.add(page);
    dom.map(page * K4, (iovas.length % 2 ** 16) * K4, K4, Perm.R);
    iovas.push(page * K4 + 0x10);
    keys.push(page);
    map.set(page, (iovas.length % 2 ** 16) * K4);
  }
  // Look up in a shuffled order, the same for case and baseline.
  for (let a = iovas.length - 1; a > 0; a--) {
    const b = next() % (a + 1);
    [iovas[a], iovas[b]] = [iovas[b]!, iovas[a]!];
    [keys[a], keys[b]] = [keys[b]!, keys[a]!];
  }
  const size = iovas.length;
  let i = 0;
  let j = 0;
  let sink = 0;
  return {
    name: `table lookup, ${n.toLocaleString("en")} mappings`,
    baseline: `Map.get, ${n.toLocaleString("en")} small-int keys`,
    target: 2,
    fn: () => {
      i = i + 1 === size ? 0 : i + 1;
      sink += dom.iovaToPhys(iovas[i]!);
    },
    baselineFn: () => {
      j = j + 1 === size ? 0 : j + 1;
      sink += map.get(keys[j]!)!;
      if (sink === -1) throw new Error("unreachable");
    },
  };
}

/** The cases (built once, lazily: the 100,000-mapping table takes a moment). */
export const cases: BenchCases = (): readonly BenchCase[] => [
  ...rwCases(),
  ...pinAndHitCases(),
  lookupCase(10),
  lookupCase(100_000),
];
