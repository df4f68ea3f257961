import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EntryKind, PageTable } from "../src/driver.ts";
import { FailNth, type IommuError, Perm, PhysicalMemory, TableAllocator } from "../src/index.ts";
import { MockPte, mockFormat } from "../src/testing/index.ts";

function setup(failNth = new FailNth()) {
  const memory = new PhysicalMemory([{ base: 0, size: 2 ** 33 }], { failNth });
  const tables = new TableAllocator(memory, 2 ** 32, 2 ** 26);
  return { memory, tables, pt: new PageTable(mockFormat, tables) };
}

describe("PageTable over the mock format", () => {
  it("writes the exact entry bytes of a 4K mapping", () => {
    const { memory, tables, pt } = setup();
    pt.map(0x4020_3000, 0x1_2345_6000, 0x1000, Perm.R | Perm.W);
    // L2 index 1 (1 GiB), L1 index 1 (2 MiB), L0 index 3.
    const l2 = memory.read64(pt.root + 1 * 8);
    expect(Number(l2 & 0xfffn)).toBe(MockPte.V);
    const l1Table = Number(l2 & ~0xfffn);
    const l1 = memory.read64(l1Table + 1 * 8);
    const l0 = memory.read64(Number(l1 & ~0xfffn) + 3 * 8);
    expect(l0).toBe(0x1_2345_6000n | BigInt(MockPte.V | MockPte.L | MockPte.R | MockPte.W));
    expect(tables.stats().blocks).toBe(3);
  });

  it("uses 2 MiB and 1 GiB leaves when aligned, and 4K at the ragged ends", () => {
    const { tables, pt } = setup();
    pt.map(0x3ff000, 0x3ff000, 0x4000_0000 + 0x201000 - 0x3ff000 + 0x1000, Perm.R);
    expect(pt.lookup(0x3ff000)?.sizeLg2).toBe(12);
    expect(pt.lookup(0x400000)?.sizeLg2).toBe(21);
    expect(pt.lookup(0x4000_0000)?.sizeLg2).toBe(21);
    expect(pt.lookup(0x4020_0000)?.sizeLg2).toBe(12);
    pt.map(0x8000_0000, 0x4000_0000, 0x4000_0000, Perm.R);
    expect(pt.lookup(0x8123_4567)).toEqual({ pa: 0x4123_4567, perm: Perm.R, sizeLg2: 30, level: 2 });
    expect(pt.unmap(0x8000_0000, 0x4000_0000)).toBe(0x4000_0000);
    expect(pt.lookup(0x8000_0000)).toBeNull();
    expect(tables.stats().blocks).toBeGreaterThan(1);
  });

  it("refuses an overlapping map with EEXIST and a splitting unmap with EINVAL, changing nothing", () => {
    const { memory, tables, pt } = setup();
    pt.map(0x20_0000, 0x4000_0000, 0x20_0000, Perm.R);
    const snap = memory.snapshot();
    const stats = tables.stats();
    expect(() => pt.map(0x1f_f000, 0x1000, 0x2000, Perm.R)).toThrowError(/EEXIST/);
    expect(() => pt.unmap(0x20_0000, 0x1000)).toThrowError(/EINVAL/);
    expect(PhysicalMemory.sameContents(snap, memory.snapshot())).toBe(true);
    expect(tables.stats()).toEqual(stats);
    expect(() => pt.map(0x1000, 0x1001, 0x1000, Perm.R)).toThrowError(/EINVAL/);
    expect(() => pt.map(2 ** 39, 0, 0x1000, Perm.R)).toThrowError(/EINVAL/);
  });

  it("is atomic under failure injection at every table allocation", () => {
    const failNth = new FailNth();
    const { memory, tables, pt } = setup(failNth);
    pt.map(0x1000, 0x1000, 0x1000, Perm.R);
    let n = 1;
    for (; n < 50; n++) {
      const snap = memory.snapshot();
      const stats = tables.stats();
      failNth.arm(n);
      try {
        pt.map(0x40_0000_1000, 0x2000_0000, 0x40_0000, Perm.R | Perm.W);
        break;
      } catch (e) {
        expect((e as IommuError).code).toBe("ENOMEM");
        expect(PhysicalMemory.sameContents(snap, memory.snapshot())).toBe(true);
        expect(tables.stats()).toEqual(stats);
      }
    }
    failNth.disarm();
    expect(n).toBeGreaterThan(2);
    expect(pt.lookup(0x40_0020_1234)?.pa).toBe(0x2020_0234);
  });

  it("frees every table when the last mapping goes, and destroy frees the root", () => {
    const { tables, pt } = setup();
    pt.map(0x1234_5000, 0x1000, 0x3000, Perm.R);
    pt.map(0x7_0000_0000, 0x1000, 0x1000, Perm.R);
    expect(pt.unmap(0, 2 ** 39)).toBe(0x4000);
    expect(tables.stats().blocks).toBe(1);
    pt.destroy();
    expect(tables.stats().blocks).toBe(0);
  });

  it("matches a page-granular reference model under random map/unmap (property)", () => {
    const page = fc.integer({ min: 0, max: 1023 });
    const op = fc.oneof(
      fc.record({
        k: fc.constant("map" as const),
        at: page,
        n: fc.integer({ min: 1, max: 600 }),
        pa: page,
        rw: fc.boolean(),
      }),
      fc.record({ k: fc.constant("unmap" as const), at: page, n: fc.integer({ min: 1, max: 600 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 25 }), (ops) => {
        const { tables, pt } = setup();
        const ref = new Map<number, { pa: number; perm: number }>();
        const base = 0x4000_0000; // 1 GiB aligned: 2 MiB leaves possible
        for (const o of ops) {
          const iova = base + o.at * 4096;
          const len = o.n * 4096;
          if (o.k === "map") {
            const perm = o.rw ? Perm.R | Perm.W : Perm.R;
            const pa = o.pa * 4096 * 512; // 2 MiB aligned targets when at is
            let clash = false;
            for (let i = 0; i < o.n; i++) if (ref.has(o.at + i)) clash = true;
            if (clash) expect(() => pt.map(iova, pa, len, perm)).toThrowError(/EEXIST/);
            else {
              pt.map(iova, pa, len, perm);
              for (let i = 0; i < o.n; i++) ref.set(o.at + i, { pa: pa + i * 4096, perm });
            }
          } else {
            let bytes = 0;
            let split = false;
            for (const [p] of ref) {
              const leaf = pt.lookup(base + p * 4096)!;
              const lstart = base + p * 4096 - ((base + p * 4096) % 2 ** leaf.sizeLg2);
              const inRange = p >= o.at && p < o.at + o.n;
              if (inRange && (lstart < iova || lstart + 2 ** leaf.sizeLg2 > iova + len)) split = true;
              if (inRange) bytes += 4096;
            }
            if (split) expect(() => pt.unmap(iova, len)).toThrowError(/EINVAL/);
            else {
              expect(pt.unmap(iova, len)).toBe(bytes);
              for (let i = 0; i < o.n; i++) ref.delete(o.at + i);
            }
          }
          for (let p = 0; p < 1024; p += 7) {
            const want = ref.get(p);
            const got = pt.lookup(base + p * 4096 + 5);
            if (want === undefined) expect(got).toBeNull();
            else {
              expect(got?.pa).toBe(want.pa + 5);
              expect(got?.perm).toBe(want.perm);
            }
          }
        }
        pt.unmap(0, 2 ** 39);
        expect(tables.stats().blocks).toBe(1);
      }),
      { numRuns: 60 },
    );
  });

  it("counts the pages of a dropped leaf table from pageBits as entryKind would", () => {
    const { pageBits: _, ...plain } = mockFormat;
    for (const fmt of [mockFormat, plain]) {
      const memory = new PhysicalMemory([{ base: 0, size: 2 ** 33 }]);
      const tables = new TableAllocator(memory, 2 ** 32, 2 ** 26);
      const pt = new PageTable(fmt, tables);
      // 2 MiB region of 4K pages with a hole at page 100: one level-0 table of 511 pages.
      pt.map(0x4000_0000, 0x1000, 100 * 4096, Perm.R);
      pt.map(0x4000_0000 + 101 * 4096, 0x20_0000, 411 * 4096, Perm.R | Perm.W);
      expect(tables.stats().blocks).toBe(3);
      expect(pt.unmap(0x4000_0000, 0x20_0000)).toBe(511 * 4096);
      expect(tables.stats().blocks).toBe(1);
      expect(pt.lookup(0x4000_0000)).toBeNull();
    }
  });

  it("undoes a one-pass run that meets a used slot: EEXIST with the leaf table byte-identical", () => {
    const { memory, tables, pt } = setup();
    pt.map(0x4000_0000 + 10 * 4096, 0x9000_0000, 10 * 4096, Perm.R);
    const leafPa = (pa: number) => Number(memory.read64(pa) & ~0xfffn);
    const leaf = leafPa(leafPa(pt.root + 1 * 8) + 0 * 8);
    const before = memory.read(leaf, 4096);
    const blocks = tables.stats();
    expect(() => pt.map(0x4000_0000, 0x8000_0000, 256 * 4096, Perm.R | Perm.W)).toThrowError(/EEXIST/);
    expect(memory.read(leaf, 4096)).toEqual(before);
    expect(tables.stats()).toEqual(blocks);
    expect(pt.lookup(0x4000_0000)).toBeNull();
    expect(pt.lookup(0x4000_0000 + 12 * 4096)?.pa).toBe(0x9000_2000);
  });

  it("classifies entries through the format", () => {
    expect(mockFormat.entryKind(0, 0, 1)).toBe(EntryKind.EMPTY);
    expect(mockFormat.entryKind(MockPte.V, 0, 1)).toBe(EntryKind.TABLE);
    expect(mockFormat.entryKind(MockPte.V, 0, 0)).toBe(EntryKind.LEAF);
    expect(mockFormat.entryKind(MockPte.V | MockPte.L, 0, 2)).toBe(EntryKind.LEAF);
    expect(mockFormat.entryAddress(0x8765_4fff, 0x000f_ffff, 0)).toBe(0xf_ffff_8765_4000);
  });
});
