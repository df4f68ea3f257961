import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { zeroPage } from "../src/driver/pt-unmap.ts";
import type { UnmapGather } from "../src/driver.ts";
import { PageTable, unmapRun } from "../src/driver.ts";
import { Perm, PhysicalMemory, TableAllocator } from "../src/index.ts";
import { mockFormat } from "../src/testing/index.ts";

function setup() {
  const memory = new PhysicalMemory([{ base: 0, size: 2 ** 33 }]);
  const tables = new TableAllocator(memory, 2 ** 32, 2 ** 26);
  return { memory, tables, pt: new PageTable(mockFormat, tables) };
}

/** Every table block with its bytes: what the two tables must agree on. */
function image(t: ReturnType<typeof setup>): string[] {
  return t.tables.blocks().map(([pa, lg2]) => `${pa}:${t.memory.read(pa, 2 ** lg2).join(",")}`);
}

describe("unmapRun (the unmap fast lane)", () => {
  it("clears a run inside one leaf table in place and reports pgsize 4K, nothing freed", () => {
    const t = setup();
    t.pt.map(0x20_0000, 0x4000_0000, 256 * 4096, Perm.R | Perm.W);
    t.pt.map(0x30_0000, 0x1000, 0x1000, Perm.R);
    const blocks = t.tables.stats().blocks;
    const g: UnmapGather = { pgsizeLg2: -1, freed: true };
    expect(unmapRun(t.pt, 0x20_0000, 256 * 4096, g)).toBe(256 * 4096);
    expect(g).toEqual({ pgsizeLg2: 12, freed: false });
    expect(t.tables.stats().blocks).toBe(blocks);
    expect(t.pt.lookup(0x20_0000)).toBeNull();
    expect(t.pt.lookup(0x30_0000)?.pa).toBe(0x1000);
  });

  it("frees the tables a run leaves empty (as PageTable.unmap) and says so", () => {
    const t = setup();
    const before = t.tables.stats().blocks;
    t.pt.map(0x20_0000, 0x4000_0000, 4 * 4096, Perm.R);
    const g: UnmapGather = { pgsizeLg2: -1, freed: false };
    expect(unmapRun(t.pt, 0x20_0000, 4 * 4096, g)).toBe(4 * 4096);
    expect(g).toEqual({ pgsizeLg2: 12, freed: true });
    expect(t.tables.stats().blocks).toBe(before);
  });

  it("hands blocks and runs over two leaf tables to PageTable.unmap (pgsize unknown)", () => {
    const t = setup();
    t.pt.map(0x40_0000, 0x4000_0000, 0x40_0000, Perm.R); // two 2 MiB blocks
    const g: UnmapGather = { pgsizeLg2: 12, freed: true };
    expect(unmapRun(t.pt, 0x40_0000, 0x40_0000, g)).toBe(0x40_0000);
    expect(g).toEqual({ pgsizeLg2: -1, freed: true });
    t.pt.map(0x1f_f000, 0x4000_0000, 0x2000, Perm.R); // straddles two leaf tables
    t.pt.map(0x10_0000, 0x1000, 0x1000, Perm.R);
    t.pt.map(0x30_0000, 0x1000, 0x1000, Perm.R);
    expect(unmapRun(t.pt, 0x1f_f000, 0x2000, g)).toBe(0x2000);
    expect(g).toEqual({ pgsizeLg2: -1, freed: false });
  });

  it("leaves state unchanged and throws EINVAL when a block straddles the range", () => {
    const t = setup();
    t.pt.map(0x20_0000, 0x4000_0000, 0x20_0000, Perm.R);
    const img = image(t);
    expect(() => unmapRun(t.pt, 0x20_1000, 0x1000)).toThrow(/split/);
    expect(image(t)).toEqual(img);
  });

  it("matches PageTable.unmap byte for byte under random map/unmap (property)", () => {
    const page = fc.integer({ min: 0, max: 2047 });
    const op = fc.oneof(
      fc.record({ k: fc.constant("map" as const), at: page, n: fc.integer({ min: 1, max: 600 }) }),
      fc.record({ k: fc.constant("unmap" as const), at: page, n: fc.integer({ min: 1, max: 600 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const a = setup();
        const b = setup();
        for (const o of ops) {
          const iova = o.at * 4096;
          const len = o.n * 4096;
          if (o.k === "map") {
            let ea: unknown = null;
            let eb: unknown = null;
            try {
              a.pt.map(iova, 0x4000_0000 + iova, len, Perm.R);
            } catch (e) {
              ea = (e as { code?: string }).code;
            }
            try {
              b.pt.map(iova, 0x4000_0000 + iova, len, Perm.R);
            } catch (e) {
              eb = (e as { code?: string }).code;
            }
            expect(eb).toBe(ea);
          } else {
            const blocks = b.tables.stats().blocks;
            const g: UnmapGather = { pgsizeLg2: -1, freed: false };
            // A run that cuts a 2 MiB block is EINVAL on both lanes, nothing changed.
            let ra: unknown;
            let rb: unknown;
            try {
              ra = a.pt.unmap(iova, len);
            } catch (e) {
              ra = (e as { code?: string }).code;
            }
            try {
              rb = unmapRun(b.pt, iova, len, g);
            } catch (e) {
              rb = (e as { code?: string }).code;
            }
            expect(rb).toBe(ra);
            if (typeof ra === "number") expect(g.freed).toBe(b.tables.stats().blocks !== blocks);
            else expect(b.tables.stats().blocks).toBe(blocks);
          }
          expect(image(b)).toEqual(image(a));
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe("zeroPage (the emptied-table scan)", () => {
  it("finds one set bit at any word and any bit position of a table page", () => {
    expect(zeroPage(new Uint32Array(1024))).toBe(true);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1023 }), fc.integer({ min: 0, max: 31 }), (w, bit) => {
        const words = new Uint32Array(1024);
        words[w] = 2 ** bit;
        return !zeroPage(words);
      }),
    );
    for (let w = 0; w < 1024; w++) {
      const words = new Uint32Array(1024);
      words[w] = 0x8000_0000;
      expect(zeroPage(words)).toBe(false);
    }
  });
});
