/**
 * The shared IOTLB (FastIotlb) against full-scan reference models: inserts, lookups,
 * the clear-when-full policy, tombstone reuse and rehash, range invalidation by page
 * probing or scanning, and the micro-TLB's subset invariant.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  FastIotlb,
  IOTLB_MICRO_MASK,
  IOTLB_MICRO_META,
  IotlbMeta,
  iotlbMeta,
  microMetaView,
} from "../src/driver.ts";

const SPAN = 2 ** 20;

describe("iotlbMeta", () => {
  it("packs vendor bits, SCAN and the leaf size where the hot path reads them", () => {
    const m = iotlbMeta(0x1ff_ffff, 21, true);
    expect(m >>> IotlbMeta.SIZE_SHIFT).toBe(21);
    expect(m & IotlbMeta.VENDOR_MASK).toBe(0x1ff_ffff);
    expect(m & IotlbMeta.SCAN).toBe(IotlbMeta.SCAN);
    // A 4 TiB leaf (lg2 42) sets bit 31: still non-negative, still read back exactly.
    const big = iotlbMeta(5, 42);
    expect(big).toBeGreaterThan(0);
    expect(big >>> IotlbMeta.SIZE_SHIFT).toBe(42);
    expect(big & 7).toBe(5);
    expect(iotlbMeta(0x7fff_ffff, 12) & IotlbMeta.SCAN).toBe(0);
  });
});

describe("FastIotlb", () => {
  it("hits exactly the (tag, page) inserted, keys above 2^32 compared in full", () => {
    const t = new FastIotlb(6);
    t.insert(5, 0x12345, 0x8000_0000, iotlbMeta(3, 12));
    const s = t.lookup(5, 0x12345);
    expect(s).toBeGreaterThanOrEqual(0);
    expect(t.pa(s)).toBe(0x8000_0000);
    expect(t.meta(s) & 7).toBe(3);
    expect(t.sizeLg2(s)).toBe(12);
    expect(t.vpn(s)).toBe(0x12345);
    expect(t.tag(s)).toBe(5);
    expect(t.lookup(6, 0x12345)).toBe(-1);
    expect(t.lookup(5, 0x12346)).toBe(-1);
    t.insert(2 ** 36 + 1, 2 ** 40 + 3, 0x1000, iotlbMeta(1, 12));
    expect(t.lookup(1, 2 ** 40 + 3)).toBe(-1);
    expect(t.lookup(2 ** 36 + 1, 3)).toBe(-1);
    expect(t.lookup(2 ** 36 + 1, 2 ** 40 + 3)).toBeGreaterThanOrEqual(0);
  });

  it("empties itself when full (the documented policy) and keeps working", () => {
    const t = new FastIotlb(4);
    for (let i = 0; i < 12; i++) t.insert(0, i, i * 4096, iotlbMeta(1, 12));
    expect(t.size).toBe(12);
    t.insert(0, 100, 0, iotlbMeta(1, 12));
    expect(t.size).toBe(1);
    expect(t.lookup(0, 100)).toBeGreaterThanOrEqual(0);
  });

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
      meta: fc.integer({ min: 0, max: 0xffff }).map((v) => iotlbMeta(v, 12)),
    }),
    fc.record({ op: fc.constant("dropDid" as const), did: fc.integer({ min: 0, max: 5000 }) }),
    fc.record({
      op: fc.constant("lookup" as const),
      did: fc.integer({ min: 0, max: 5000 }),
      pasid: fc.integer({ min: 0, max: 3 }),
      vpn: fc.integer({ min: 0, max: 40 }),
    }),
  );

  it("behaves like a map with the clear-when-full policy, grouped by DID (property)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), fc.boolean(), (ops, byGroup) => {
        const t = new FastIotlb(5, SPAN);
        const model = new Map<string, { tag: number; vpn: number; pa: number; meta: number }>();
        for (const o of ops) {
          if (o.op === "insert") {
            const tag = o.did * SPAN + o.pasid;
            if (model.size >= 24) model.clear();
            model.set(`${tag}:${o.vpn}`, { tag, vpn: o.vpn, pa: o.pa, meta: o.meta });
            t.insert(tag, o.vpn, o.pa, o.meta);
          } else if (o.op === "dropDid") {
            const n = byGroup
              ? t.invalidateGroup(o.did)
              : t.invalidateWhere((i) => Math.floor(t.tag(i) / SPAN) === o.did);
            let m = 0;
            for (const [k, v] of model)
              if (Math.floor(v.tag / SPAN) === o.did) {
                model.delete(k);
                m++;
              }
            expect(n).toBe(m);
          } else {
            const tag = o.did * SPAN + o.pasid;
            const slot = t.lookup(tag, o.vpn);
            const e = model.get(`${tag}:${o.vpn}`);
            expect(slot >= 0).toBe(e !== undefined);
            if (e !== undefined) {
              expect(t.data[slot * 4 + 2]).toBe(e.pa);
              expect(t.meta(slot)).toBe(e.meta);
            }
          }
          expect(t.size).toBe(model.size);
          for (const v of model.values()) {
            expect(t.hasGroup(Math.floor(v.tag / SPAN))).toBe(true);
            expect(t.hasTag(v.tag)).toBe(true);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("never returns a wrong or invalidated entry under pressure: tombstones, rehash, clear (property)", () => {
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
      fc.record({ k: fc.constant("tag" as const), tag: fc.integer({ min: 0, max: 2 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const t = new FastIotlb(4); // 16 slots, 12 usable
        const ref = new Map<string, number>();
        for (const o of ops) {
          if (o.k === "ins") {
            t.insert(o.tag, o.page, o.pa * 4096, iotlbMeta(1, 12));
            ref.set(`${o.tag}:${o.page}`, o.pa * 4096);
          } else if (o.k === "inv") {
            // groupSpan 1: the group of a tag is the tag.
            t.invalidateRange(o.tag, o.tag, o.page * 4096, (o.page + o.n) * 4096);
            for (const key of [...ref.keys()]) {
              const [tg, pg] = key.split(":").map(Number) as [number, number];
              if ((o.tag === -1 || tg === o.tag) && pg >= o.page && pg < o.page + o.n) ref.delete(key);
            }
          } else {
            t.invalidateTag(o.tag);
            for (const key of [...ref.keys()]) if (key.startsWith(`${o.tag}:`)) ref.delete(key);
          }
          let hits = 0;
          for (let tag = 0; tag < 3; tag++)
            for (let p = 0; p <= 40; p++) {
              const s = t.lookup(tag, p);
              if (s < 0) continue;
              hits++;
              expect(t.pa(s)).toBe(ref.get(`${tag}:${p}`));
            }
          expect(t.size).toBe(hits);
          expect(t.size).toBeLessThanOrEqual(12);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("covers() uses the leaf size: a 2 MiB entry covers any page of its leaf", () => {
    const t = new FastIotlb(4);
    t.insert(1, 0x201, 0x40_1000, iotlbMeta(0, 21));
    const slot = t.lookup(1, 0x201);
    expect(t.covers(slot, 0x3f_f000, 0x40_0000)).toBe(true);
    expect(t.covers(slot, 0x20_0000, 0x20_1000)).toBe(true);
    expect(t.covers(slot, 0x40_0000, 0x40_1000)).toBe(false);
    expect(t.covers(slot, 0x1f_f000, 0x20_0000)).toBe(false);
  });
});

describe("FastIotlb.invalidateRange", () => {
  it("drops exactly what a full scan would, probing short ranges of plain 4 KiB entries (property)", () => {
    const insert = fc.record({
      op: fc.constant("insert" as const),
      did: fc.integer({ min: 0, max: 3 }),
      pasid: fc.integer({ min: 0, max: 2 }),
      vpn: fc.integer({ min: 0, max: 1023 }),
      // Mostly 4 KiB leaves, so most groups take the probing path.
      sizeLg2: fc.constantFrom(12, 12, 12, 12, 12, 14, 21),
      scan: fc.constantFrom(false, false, false, false, true),
    });
    const inv = fc.record({
      op: fc.constant("inv" as const),
      did: fc.integer({ min: -1, max: 3 }),
      pasid: fc.integer({ min: -1, max: 2 }),
      start: fc.integer({ min: 0, max: 1023 }).map((p) => p * 4096 + (p % 7)),
      length: fc.oneof(fc.integer({ min: 1, max: 64 * 4096 }), fc.integer({ min: 1, max: 600 * 4096 })),
      // A vendor predicate: "SCAN entries go whatever their address" (VT-d's nested rule) and a TTL-like floor.
      withMatch: fc.boolean(),
      minLeafLg2: fc.constantFrom(0, 0, 12, 14, 21),
    });
    fc.assert(
      fc.property(fc.array(fc.oneof(insert, insert, inv), { maxLength: 150 }), (ops) => {
        const t = new FastIotlb(10, SPAN);
        const model = new Map<string, { tag: number; vpn: number; meta: number }>();
        for (const o of ops) {
          if (o.op === "insert") {
            const tag = o.did * SPAN + o.pasid;
            const meta = iotlbMeta(3, o.sizeLg2, o.scan);
            model.set(`${tag}:${o.vpn}`, { tag, vpn: o.vpn, meta });
            t.insert(tag, o.vpn, o.vpn * 4096, meta);
            continue;
          }
          const end = o.start + o.length;
          const tag = o.pasid < 0 || o.did < 0 ? -1 : o.did * SPAN + o.pasid;
          const inScope = (etag: number) =>
            (o.did < 0 || Math.floor(etag / SPAN) === o.did) && (tag < 0 || etag === tag);
          const covers = (vpn: number, meta: number) => {
            const size = 2 ** (meta >>> IotlbMeta.SIZE_SHIFT);
            const base = Math.floor((vpn * 4096) / size) * size;
            return base < end && base + size > o.start;
          };
          const wanted = (e: { vpn: number; meta: number }) =>
            o.withMatch
              ? (e.meta & IotlbMeta.SCAN) !== 0 ||
                (e.meta >>> IotlbMeta.SIZE_SHIFT >= o.minLeafLg2 && covers(e.vpn, e.meta))
              : covers(e.vpn, e.meta);
          let want = 0;
          for (const [k, e] of [...model])
            if (inScope(e.tag) && wanted(e)) {
              model.delete(k);
              want++;
            }
          const match = o.withMatch
            ? (i: number) =>
                (t.meta(i) & IotlbMeta.SCAN) !== 0 ||
                (t.sizeLg2(i) >= o.minLeafLg2 && t.covers(i, o.start, end))
            : null;
          expect(t.invalidateRange(o.did, tag, o.start, end, match)).toBe(want);
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

  it("a SCAN or 2 MiB entry of the group forces the scan (it may cover pages it was not filled for)", () => {
    const t = new FastIotlb(8, SPAN);
    const tag = 5 * SPAN;
    t.insert(tag, 0x201, 0x40_1000, iotlbMeta(3, 21));
    t.insert(tag, 0x10, 0x10_000, iotlbMeta(3, 12));
    // [0x20_0000, 0x20_1000) is not page 0x201, but its 2 MiB leaf covers it.
    expect(t.invalidateRange(5, tag, 0x20_0000, 0x20_1000)).toBe(1);
    expect(t.lookup(tag, 0x201)).toBe(-1);
    expect(t.lookup(tag, 0x10)).toBeGreaterThanOrEqual(0);
    t.insert(tag + 1, 0x500, 0, iotlbMeta(3, 12, true));
    expect(t.invalidateRange(5, -1, 0, 4096, (i) => (t.meta(i) & IotlbMeta.SCAN) !== 0)).toBe(1);
    expect(t.invalidateRange(4, -1, 0, 2 ** 30, () => true)).toBe(0);
    expect(t.size).toBe(1);
  });
});

describe("FastIotlb micro-TLB", () => {
  it("is a subset of the IOTLB: a replace empties the page's micro slot, any drop empties it all", () => {
    const t = new FastIotlb(6);
    t.insert(1, 7, 0x7000, iotlbMeta(3, 12));
    t.insert(1, 8, 0x8000, iotlbMeta(3, 12));
    const x = (7 & IOTLB_MICRO_MASK) << 2;
    t.remember(t.lookup(1, 7), 7, 1.5, 1);
    t.remember(t.lookup(1, 8), 8, 1.5, 1);
    // Slot: [page address, key, pa, meta as an int32 in the fourth double's first bytes].
    expect([...t.micro.subarray(x, x + 3)]).toEqual([0x7000, 1.5, 0x7000]);
    expect(microMetaView(t.micro)[(x << 1) + IOTLB_MICRO_META]).toBe(1);
    t.insert(1, 7, 0x9000, iotlbMeta(3, 12));
    expect(t.micro[x]).toBe(-1);
    expect(t.micro[x + 4]).toBe(0x8000);
    expect(t.invalidateTag(2)).toBe(0);
    expect(t.micro[x + 4]).toBe(0x8000);
    expect(t.invalidateRange(1, 1, 0x7000, 0x8000)).toBe(1);
    expect(t.micro[x + 4]).toBe(-1);
    t.remember(t.lookup(1, 8), 8, 1, 1);
    t.clear();
    expect(t.micro[x + 4]).toBe(-1);
  });
});
