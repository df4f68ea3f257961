/** The interleaved IOTLB against a plain Map model (inserts, lookups, invalidations, the full-clear policy). */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Meta, VtdIotlb } from "../src/internal/iotlb.ts";

type Op =
  | { op: "insert"; did: number; pasid: number; vpn: number; pa: number; meta: number }
  | { op: "dropDid"; did: number }
  | { op: "lookup"; did: number; pasid: number; vpn: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant("insert" as const),
    did: fc.integer({ min: 0, max: 5000 }),
    pasid: fc.integer({ min: 0, max: 3 }),
    vpn: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 2 ** 45 })),
    pa: fc.integer({ min: 0, max: 2 ** 40 }).map((n) => n * 4096),
    meta: fc.integer({ min: 0, max: 0xffff }),
  }),
  fc.record({ op: fc.constant("dropDid" as const), did: fc.integer({ min: 0, max: 5000 }) }),
  fc.record({
    op: fc.constant("lookup" as const),
    did: fc.integer({ min: 0, max: 5000 }),
    pasid: fc.integer({ min: 0, max: 3 }),
    vpn: fc.integer({ min: 0, max: 40 }),
  }),
);

describe("VtdIotlb", () => {
  it("behaves like a map with the clear-when-full policy", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
        const t = new VtdIotlb(5);
        const model = new Map<string, { tag: number; vpn: number; pa: number; meta: number }>();
        for (const o of ops) {
          if (o.op === "insert") {
            const tag = o.did * 2 ** 20 + o.pasid;
            if (model.size >= 24) model.clear();
            model.set(`${tag}:${o.vpn}`, { tag, vpn: o.vpn, pa: o.pa, meta: o.meta });
            t.insert(tag, o.vpn, o.pa, o.meta);
          } else if (o.op === "dropDid") {
            const n = t.invalidateWhere((i) => Math.floor(t.tag(i) / 2 ** 20) === o.did);
            let m = 0;
            for (const [k, v] of model)
              if (Math.floor(v.tag / 2 ** 20) === o.did) {
                model.delete(k);
                m++;
              }
            expect(n).toBe(m);
          } else {
            const tag = o.did * 2 ** 20 + o.pasid;
            const slot = t.lookup(tag, o.vpn);
            const e = model.get(`${tag}:${o.vpn}`);
            expect(slot >= 0).toBe(e !== undefined);
            if (e !== undefined) {
              expect(t.data[slot * 4 + 2]).toBe(e.pa);
              expect(t.meta(slot)).toBe(e.meta);
            }
          }
          expect(t.size).toBe(model.size);
          for (const v of model.values()) expect(t.hasDid(Math.floor(v.tag / 2 ** 20))).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("covers() uses the leaf size: a 2 MiB entry covers any page of its leaf", () => {
    const t = new VtdIotlb(4);
    t.insert(1, 0x201, 0x40_1000, 21 << Meta.SIZE_SHIFT);
    const slot = t.lookup(1, 0x201);
    expect(t.covers(slot, 0x3f_f000, 0x40_0000)).toBe(true);
    expect(t.covers(slot, 0x20_0000, 0x20_1000)).toBe(true);
    expect(t.covers(slot, 0x40_0000, 0x40_1000)).toBe(false);
    expect(t.covers(slot, 0x1f_f000, 0x20_0000)).toBe(false);
  });
});

describe("VtdIotlb.invalidateRange", () => {
  it("drops what a full scan would, probing short ranges of plain 4 KiB entries (property)", () => {
    const insert = fc.record({
      op: fc.constant("insert" as const),
      did: fc.integer({ min: 0, max: 3 }),
      pasid: fc.integer({ min: 0, max: 2 }),
      vpn: fc.integer({ min: 0, max: 1023 }),
      // Mostly 4 KiB second-stage leaves, so most DIDs take the probing path.
      sizeLg2: fc.constantFrom(12, 12, 12, 12, 12, 21),
      kind: fc.constantFrom(1, 1, 1, 1, 2, 3),
    });
    const inv = fc.record({
      op: fc.constant("inv" as const),
      did: fc.integer({ min: 0, max: 3 }),
      pasid: fc.integer({ min: -1, max: 2 }),
      start: fc.integer({ min: 0, max: 1023 }).map((p) => p * 4096),
      pages: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: 600 })),
    });
    fc.assert(
      fc.property(fc.array(fc.oneof(insert, insert, inv), { maxLength: 150 }), (ops) => {
        const t = new VtdIotlb(10);
        const model = new Map<string, { tag: number; vpn: number; meta: number }>();
        for (const o of ops) {
          if (o.op === "insert") {
            const tag = o.did * 2 ** 20 + o.pasid;
            const meta = 3 | (o.kind << Meta.KIND_SHIFT) | (o.sizeLg2 << Meta.SIZE_SHIFT);
            model.set(`${tag}:${o.vpn}`, { tag, vpn: o.vpn, meta });
            t.insert(tag, o.vpn, o.vpn * 4096, meta);
            continue;
          }
          const end = o.start + o.pages * 4096;
          const tag = o.pasid < 0 ? -1 : o.did * 2 ** 20 + o.pasid;
          const inScope = (etag: number) => Math.floor(etag / 2 ** 20) === o.did && (tag < 0 || etag === tag);
          const covers = (vpn: number, meta: number) => {
            const size = 2 ** ((meta >>> Meta.SIZE_SHIFT) & 63);
            const base = Math.floor((vpn * 4096) / size) * size;
            return base < end && base + size > o.start;
          };
          let want = 0;
          for (const [k, e] of [...model])
            if (inScope(e.tag) && covers(e.vpn, e.meta)) {
              model.delete(k);
              want++;
            }
          const got = t.invalidateRange(
            o.did,
            tag,
            o.start,
            end,
            (i) => inScope(t.tag(i)) && t.covers(i, o.start, end),
          );
          expect(got).toBe(want);
          expect(t.size).toBe(model.size);
        }
        for (const e of model.values()) {
          const slot = t.lookup(e.tag, e.vpn);
          expect(slot).toBeGreaterThanOrEqual(0);
          expect(t.meta(slot)).toBe(e.meta);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("a nested or 2 MiB entry of the DID forces the scan (it may cover pages it was not filled for)", () => {
    const t = new VtdIotlb(8);
    const tag = 5 * 2 ** 20;
    t.insert(tag, 0x201, 0x40_1000, 3 | (1 << Meta.KIND_SHIFT) | (21 << Meta.SIZE_SHIFT));
    t.insert(tag, 0x10, 0x10_000, 3 | (1 << Meta.KIND_SHIFT) | (12 << Meta.SIZE_SHIFT));
    // [0x20_0000, 0x20_1000) is not page 0x201, but its 2 MiB leaf covers it.
    expect(t.invalidateRange(5, tag, 0x20_0000, 0x20_1000, (i) => t.covers(i, 0x20_0000, 0x20_1000))).toBe(1);
    expect(t.lookup(tag, 0x201)).toBe(-1);
    expect(t.lookup(tag, 0x10)).toBeGreaterThanOrEqual(0);
    expect(t.invalidateRange(4, -1, 0, 2 ** 30, () => true)).toBe(0);
  });
});
