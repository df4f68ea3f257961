import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Iotlb } from "../src/driver.ts";

describe("Iotlb", () => {
  it("hits exactly the (tag, page) inserted", () => {
    const t = new Iotlb(6);
    t.insert(5, 0x12345, 0x8000_0000, 3, 12, 9);
    const s = t.lookup(5, 0x12345);
    expect(s).toBeGreaterThanOrEqual(0);
    expect(t.pas[s]).toBe(0x8000_0000);
    expect(t.perms[s]).toBe(3);
    expect(t.sizes[s]).toBe(12);
    expect(t.aux[s]).toBe(9);
    expect(t.lookup(6, 0x12345)).toBe(-1);
    expect(t.lookup(5, 0x12346)).toBe(-1);
  });

  it("keys tags and pages above 2^32 exactly", () => {
    const t = new Iotlb(6);
    t.insert(2 ** 36 + 1, 2 ** 40 + 3, 0x1000, 1, 12);
    expect(t.lookup(1, 2 ** 40 + 3)).toBe(-1);
    expect(t.lookup(2 ** 36 + 1, 3)).toBe(-1);
    expect(t.lookup(2 ** 36 + 1, 2 ** 40 + 3)).toBeGreaterThanOrEqual(0);
  });

  it("drops every entry whose leaf covers an invalidated address", () => {
    const t = new Iotlb(8);
    // A 2 MiB leaf at 0x20_0000 cached for two of its 4K pages, and a 4K leaf elsewhere.
    t.insert(1, 0x200, 0x4000_0000, 3, 21);
    t.insert(1, 0x3ff, 0x401f_f000, 3, 21);
    t.insert(1, 0x400, 0x5000_0000, 3, 12);
    t.insert(2, 0x200, 0x6000_0000, 3, 21);
    expect(t.invalidateRange(1, 0x20_1000, 0x1000)).toBe(2);
    expect(t.lookup(1, 0x200)).toBe(-1);
    expect(t.lookup(1, 0x3ff)).toBe(-1);
    expect(t.lookup(1, 0x400)).toBeGreaterThanOrEqual(0);
    expect(t.lookup(2, 0x200)).toBeGreaterThanOrEqual(0);
    expect(t.invalidateRange(-1, 0x20_0000, 1)).toBe(1);
    expect(t.size).toBe(1);
  });

  it("empties itself when full (the documented policy) and keeps working", () => {
    const t = new Iotlb(4);
    for (let i = 0; i < 12; i++) t.insert(0, i, i * 4096, 1, 12);
    expect(t.size).toBe(12);
    t.insert(0, 100, 0, 1, 12);
    expect(t.size).toBe(1);
    expect(t.lookup(0, 100)).toBeGreaterThanOrEqual(0);
  });

  it("behaves like a Map under random inserts, lookups and invalidations (property)", () => {
    const key = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 63 }));
    const op = fc.oneof(
      fc.record({ k: fc.constant("ins" as const), key, pa: fc.integer({ min: 0, max: 1000 }) }),
      fc.record({
        k: fc.constant("inv" as const),
        tag: fc.integer({ min: -1, max: 3 }),
        page: fc.integer({ min: 0, max: 63 }),
        n: fc.integer({ min: 1, max: 8 }),
      }),
      fc.record({ k: fc.constant("tag" as const), tag: fc.integer({ min: 0, max: 3 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const t = new Iotlb(10);
        const ref = new Map<string, number>();
        for (const o of ops) {
          if (o.k === "ins") {
            t.insert(o.key[0], o.key[1], o.pa * 4096, 1, 12);
            ref.set(`${o.key[0]}:${o.key[1]}`, o.pa * 4096);
          } else if (o.k === "inv") {
            t.invalidateRange(o.tag, o.page * 4096, o.n * 4096);
            for (const k of [...ref.keys()]) {
              const [tg, pg] = k.split(":").map(Number) as [number, number];
              if ((o.tag === -1 || tg === o.tag) && pg >= o.page && pg < o.page + o.n) ref.delete(k);
            }
          } else {
            t.invalidateTag(o.tag);
            for (const k of [...ref.keys()]) if (k.startsWith(`${o.tag}:`)) ref.delete(k);
          }
        }
        expect(t.size).toBe(ref.size);
        for (let tag = 0; tag < 4; tag++)
          for (let p = 0; p < 64; p++) {
            const s = t.lookup(tag, p);
            const want = ref.get(`${tag}:${p}`);
            if (want === undefined) expect(s).toBe(-1);
            else expect(t.pas[s]).toBe(want);
          }
      }),
      { numRuns: 100 },
    );
  });
});

describe("Iotlb under pressure (deleted-slot reuse, rehash, clear when full)", () => {
  it("never returns a wrong or invalidated entry, and counts exactly what it holds (property)", () => {
    const op = fc.oneof(
      fc.record({
        k: fc.constant("ins" as const),
        tag: fc.integer({ min: 0, max: 2 }),
        page: fc.integer({ min: 0, max: 40 }),
        pa: fc.nat(999),
      }),
      fc.record({
        k: fc.constant("inv" as const),
        tag: fc.integer({ min: -1, max: 2 }),
        page: fc.integer({ min: 0, max: 40 }),
        n: fc.integer({ min: 1, max: 4 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const t = new Iotlb(4); // 16 slots, 12 usable
        const ref = new Map<string, number>();
        for (const o of ops) {
          if (o.k === "ins") {
            t.insert(o.tag, o.page, o.pa * 4096, 1, 12);
            ref.set(`${o.tag}:${o.page}`, o.pa * 4096);
          } else {
            t.invalidateRange(o.tag, o.page * 4096, o.n * 4096);
            for (const key of [...ref.keys()]) {
              const [tg, pg] = key.split(":").map(Number) as [number, number];
              if ((o.tag === -1 || tg === o.tag) && pg >= o.page && pg < o.page + o.n) ref.delete(key);
            }
          }
          let hits = 0;
          for (let tag = 0; tag < 3; tag++)
            for (let p = 0; p <= 40; p++) {
              const s = t.lookup(tag, p);
              if (s < 0) continue;
              hits++;
              expect(t.pas[s]).toBe(ref.get(`${tag}:${p}`));
            }
          expect(t.size).toBe(hits);
          expect(t.size).toBeLessThanOrEqual(12);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe("Iotlb range invalidation with mixed leaf sizes", () => {
  it("a short range of a tag with 4 KiB leaves only is probed page by page, minLeafLg2 honoured", () => {
    const t = new Iotlb(8);
    t.insert(1, 10, 0xa000, 1, 12);
    t.insert(1, 11, 0xb000, 1, 12);
    t.insert(2, 10, 0xc000, 1, 21);
    expect(t.invalidateRange(1, 10 * 4096, 2 * 4096, 21)).toBe(0);
    expect(t.size).toBe(3);
    expect(t.invalidateRange(1, 10 * 4096 + 5, 1)).toBe(1);
    expect(t.lookup(1, 10)).toBe(-1);
    expect(t.lookup(1, 11)).toBeGreaterThanOrEqual(0);
    // Tag 2 holds a 2 MiB leaf: its page 10 covers the whole first 2 MiB (scan path).
    expect(t.invalidateRange(2, 0x1f_f000, 0x1000)).toBe(1);
  });

  it("drops exactly the entries whose leaf covers the range, probing or scanning (property)", () => {
    const op = fc.oneof(
      fc.record({
        k: fc.constant("ins" as const),
        tag: fc.integer({ min: 0, max: 4 }),
        page: fc.integer({ min: 0, max: 2047 }),
        // Mostly 4K, so many tags take the page-probing path.
        sizeLg2: fc.constantFrom(12, 12, 12, 12, 12, 12, 12, 14, 21),
      }),
      fc.record({
        k: fc.constant("inv" as const),
        tag: fc.integer({ min: -1, max: 4 }),
        at: fc.integer({ min: 0, max: 8 * 2 ** 20 }),
        length: fc.oneof(fc.integer({ min: 1, max: 64 * 4096 }), fc.integer({ min: 1, max: 600 * 4096 })),
        minLeafLg2: fc.constantFrom(0, 0, 12, 14, 21),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 150 }), (ops) => {
        const t = new Iotlb(9);
        const ref = new Map<string, number>(); // "tag:page" -> leaf size log2
        for (const o of ops) {
          if (o.k === "ins") {
            t.insert(o.tag, o.page, o.page * 4096, 1, o.sizeLg2);
            ref.set(`${o.tag}:${o.page}`, o.sizeLg2); // (150 inserts never fill 384 usable slots)
          } else {
            let want = 0;
            for (const [key, sizeLg2] of [...ref]) {
              const [tg, pg] = key.split(":").map(Number) as [number, number];
              const size = 2 ** sizeLg2;
              const base = Math.floor((pg * 4096) / size) * size;
              const covers = base < o.at + o.length && base + size > o.at;
              if ((o.tag === -1 || tg === o.tag) && sizeLg2 >= o.minLeafLg2 && covers) {
                ref.delete(key);
                want++;
              }
            }
            expect(t.invalidateRange(o.tag, o.at, o.length, o.minLeafLg2)).toBe(want);
          }
          expect(t.size).toBe(ref.size);
        }
        for (const [key, sizeLg2] of ref) {
          const [tg, pg] = key.split(":").map(Number) as [number, number];
          const s = t.lookup(tg, pg);
          expect(s).toBeGreaterThanOrEqual(0);
          expect(t.sizes[s]).toBe(sizeLg2);
        }
      }),
      { numRuns: 200 },
    );
  });
});
