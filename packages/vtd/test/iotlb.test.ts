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
