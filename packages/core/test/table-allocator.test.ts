import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FailNth, IommuError, PhysicalMemory, TableAllocator } from "../src/index.ts";

function setup(size = 0x100000, base = 0x100000) {
  const memory = new PhysicalMemory([{ base: 0, size: base + size }]);
  return { memory, tables: new TableAllocator(memory, base, size) };
}

describe("TableAllocator", () => {
  it("hands out naturally aligned, zeroed blocks and accounts them", () => {
    const { memory, tables } = setup();
    const a = tables.alloc(12);
    memory.write32(a, 0xffffffff);
    const b = tables.alloc(16);
    expect(b % 0x10000).toBe(0);
    expect(tables.stats()).toEqual({ blocks: 2, bytes: 0x1000 + 0x10000 });
    tables.free(a);
    const c = tables.alloc(12);
    expect(memory.read32(c)).toBe(0);
    expect(tables.blockSizeLg2(b)).toBe(16);
    tables.free(b);
    tables.free(c);
    expect(tables.stats()).toEqual({ blocks: 0, bytes: 0 });
    // Fully merged again: the whole region is one block.
    expect(tables.alloc(20)).toBe(0x100000);
  });

  it("fails with ENOMEM when exhausted and EINVAL on a bad free", () => {
    const { tables } = setup(0x4000);
    for (let i = 0; i < 4; i++) tables.alloc(12);
    expect(() => tables.alloc(12)).toThrowError(/ENOMEM/);
    expect(() => tables.free(0x100800)).toThrowError(/EINVAL/);
    expect(() => tables.alloc(11)).toThrowError(/EINVAL/);
  });

  it("cuts an unaligned region into naturally aligned blocks", () => {
    const memory = new PhysicalMemory([{ base: 0, size: 0x40000 }]);
    const t = new TableAllocator(memory, 0x3000, 0x10000);
    const big = t.alloc(15);
    expect(big % 0x8000).toBe(0);
    expect(big >= 0x3000 && big + 0x8000 <= 0x13000).toBe(true);
    expect(() => t.alloc(15)).toThrowError(/ENOMEM/);
  });

  it("injects a failure at the n-th allocation point without changing anything", () => {
    const failNth = new FailNth();
    const memory = new PhysicalMemory([{ base: 0, size: 0x200000 }], { failNth });
    const t = new TableAllocator(memory, 0x100000, 0x100000);
    t.alloc(12);
    failNth.arm(2);
    t.alloc(12);
    const before = t.stats();
    let err: unknown;
    try {
      t.alloc(12);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IommuError);
    expect((err as IommuError).code).toBe("ENOMEM");
    expect(t.stats()).toEqual(before);
    expect(failNth.armed).toBe(false);
    t.alloc(12);
  });

  it("never hands out overlapping blocks and returns to empty (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 12, max: 16 }), fc.nat()), { maxLength: 120 }),
        (ops) => {
          const { tables } = setup();
          const live: Array<[number, number]> = [];
          for (const [alloc, lg2, pick] of ops) {
            if (alloc || live.length === 0) {
              try {
                const pa = tables.alloc(lg2);
                expect(pa % 2 ** lg2).toBe(0);
                for (const [q, ql] of live) expect(pa + 2 ** lg2 <= q || q + 2 ** ql <= pa).toBe(true);
                live.push([pa, lg2]);
              } catch (e) {
                expect((e as IommuError).code).toBe("ENOMEM");
                // Only when no aligned slot of that size is free (buddies merge lazily).
                for (let at = 0x100000; at < 0x200000; at += 2 ** lg2) {
                  const busy = live.some(([q, ql]) => at < q + 2 ** ql && q < at + 2 ** lg2);
                  expect(busy).toBe(true);
                }
              }
            } else {
              const [pa] = live.splice(pick % live.length, 1)[0]!;
              tables.free(pa);
            }
            expect(tables.stats().blocks).toBe(live.length);
          }
          for (const [pa] of live) tables.free(pa);
          expect(tables.stats()).toEqual({ blocks: 0, bytes: 0 });
          expect(tables.alloc(20)).toBe(0x100000);
        },
      ),
      { numRuns: 100 },
    );
  });
});
