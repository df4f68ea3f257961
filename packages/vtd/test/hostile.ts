/**
 * A generator of hostile memory images for the property tests: pages laid out as a
 * root table, legacy and scalable context tables, a PASID directory and table and
 * paging tables pointing at each other (Intel VT-d spec 9.1-9.8 formats), then
 * corrupted at random. Deterministic from one seed.
 */

import { PhysicalMemory } from "@iommu-kit/core";

/** Where the hostile structures start (the root table). */
export const REGION = 0x10_0000;
const PAGES = 12;

/** mulberry32: a tiny deterministic PRNG for filling pages from one seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Fills the region with structures that are plausible for the role of each page (root
 * table, legacy and scalable context tables, PASID directory and table, paging tables
 * pointing at each other), then corrupts words at random: flipped bits and garbage.
 */
export function hostileMemory(seed: number): PhysicalMemory {
  const memory = new PhysicalMemory([
    { base: 0, size: 2 ** 30 },
    { base: 2 ** 32, size: 2 ** 20 },
  ]);
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const pg = (i: number): number => REGION + i * 4096;
  const paging = (): number => pg(5 + Math.floor(rnd() * (PAGES - 5)));
  const put = (p: number, i: number, lo: number, hi: number): void => {
    const page = memory.writePage(REGION / 4096 + p)!;
    page[i * 2] = lo >>> 0;
    page[i * 2 + 1] = hi >>> 0;
  };
  for (let i = 0; i < 512; i++) {
    // Root: legacy -> page 1; scalable lower -> page 2, upper -> page 2.
    put(0, i, pick([pg(1), pg(2)]) | 1, i % 2 === 1 ? pg(2) | 1 : 0);
    // Legacy context entries (16 bytes): TT 0 or 2, AW 2, DID small.
    if (i % 2 === 0) put(1, i, paging() | pick([1, 1, 1, 9]), 2 | (Math.floor(rnd() * 4) << 8));
    else put(1, i, 0, 0);
    // Scalable context entries (32 bytes): PASID directory page 3, PASIDE, PDTS 0.
    put(2, i, i % 4 === 0 ? pg(3) | pick([1, 9, 0xb]) : 0, 0);
    // PASID directory: everything -> PASID table page 4.
    put(3, i, pg(4) | 1, 0);
    // PASID table entries (64 bytes): PGTT 1-4 with AW 2; DID; SRE and FSPTPTR.
    const q = i % 8;
    if (q === 0) put(4, i, paging() | pick([0x89, 0x49, 0xc9, 0x109, 0x89]), 0);
    else if (q === 1) put(4, i, Math.floor(rnd() * 8), 0);
    else if (q === 2) put(4, i, paging() | pick([1, 1, 5]), 0);
    else put(4, i, 0, 0);
    // Paging tables: second-stage R/W (some PS), first-stage P|RW|US|A (some PS), holes.
    for (let p = 5; p < PAGES; p++) {
      const f = rnd();
      put(p, i, f < 0.15 ? 0 : paging() | pick([3, 3, 1, 2, 0x83, 0x27, 0x67, 0xa7, 0x25]), 0);
    }
  }
  // Corruption: flipped bits and garbage words.
  for (let p = 0; p < PAGES; p++) {
    const page = memory.writePage(REGION / 4096 + p)!;
    for (let w = 0; w < 1024; w++) {
      const k = rnd();
      if (k < 0.03) page[w] = (page[w]! ^ (1 << Math.floor(rnd() * 32))) >>> 0;
      else if (k < 0.04) page[w] = Math.floor(rnd() * 4294967296) >>> 0;
    }
  }
  return memory;
}
