/**
 * Random IOAS operation sequences against a reference model (a plain list of areas):
 * results and errors must agree, a failed operation must leave the host's state
 * deep-equal, and every page must translate through both attached domains (two
 * IOMMUs) exactly as the model says.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mockHost } from "./helpers.ts";

const PAGE = 0x1000;
const BASE = 0x10000000;

type Op =
  | { op: "map"; page: number; pages: number; pa: number; prot: "r" | "rw" }
  | { op: "auto"; pages: number; pa: number }
  | { op: "unmap"; page: number; pages: number }
  | { op: "all" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant("map" as const),
    page: fc.integer({ min: 0, max: 63 }),
    pages: fc.integer({ min: 1, max: 8 }),
    pa: fc.integer({ min: 0, max: 255 }),
    prot: fc.constantFrom("r" as const, "rw" as const),
  }),
  fc.record({
    op: fc.constant("auto" as const),
    pages: fc.integer({ min: 1, max: 4 }),
    pa: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({
    op: fc.constant("unmap" as const),
    page: fc.integer({ min: 0, max: 70 }),
    pages: fc.integer({ min: 1, max: 16 }),
  }),
  fc.record({ op: fc.constant("all" as const) }),
);

interface ModelArea {
  iova: number;
  length: number;
  pa: number;
  prot: number;
}

describe("IOAS vs a reference model", () => {
  it("random map / unmap sequences", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
        const h = mockHost();
        const a = h.addDevice({ iommu: "m0", rid: 1 });
        const b = h.addDevice({ iommu: "m1", rid: 1 });
        const ioas = h.ioasAlloc();
        h.attach(a, "rid", ioas);
        h.attach(b, "rid", ioas);
        // Keep automatic IOVAs inside the probed window.
        h.ioasAllowIovas(ioas, [{ start: BASE, last: BASE + 80 * PAGE - 1 }]);
        let model: ModelArea[] = [];
        const overlaps = (iova: number, length: number) =>
          model.some((m) => m.iova < iova + length && iova < m.iova + m.length);
        for (const o of ops) {
          const before = h.state();
          let err: string | null = null;
          let got: unknown;
          try {
            if (o.op === "map") {
              got = h.ioasMap(ioas, {
                iova: BASE + o.page * PAGE,
                length: o.pages * PAGE,
                pa: o.pa * PAGE,
                prot: o.prot,
              });
            } else if (o.op === "auto") {
              got = h.ioasMap(ioas, { length: o.pages * PAGE, pa: o.pa * 0x100000, prot: "rw" });
            } else if (o.op === "unmap") {
              got = h.ioasUnmap(ioas, BASE + o.page * PAGE, o.pages * PAGE);
            } else {
              got = h.ioasUnmapAll(ioas);
            }
          } catch (e) {
            err = (e as { code: string }).code;
            expect(h.state()).toEqual(before);
          }
          if (o.op === "map") {
            const iova = BASE + o.page * PAGE;
            if (overlaps(iova, o.pages * PAGE)) expect(err).toBe("EEXIST");
            else {
              expect(err).toBeNull();
              model.push({ iova, length: o.pages * PAGE, pa: o.pa * PAGE, prot: o.prot === "r" ? 1 : 3 });
            }
          } else if (o.op === "auto") {
            if (err === null) {
              const iova = got as number;
              const align = 2 ** Math.ceil(Math.log2(o.pages * PAGE));
              expect(
                iova % Math.min(align, o.pa === 0 ? align : (o.pa * 0x100000) & -(o.pa * 0x100000)),
              ).toBe(0);
              expect(overlaps(iova, o.pages * PAGE)).toBe(false);
              model.push({ iova, length: o.pages * PAGE, pa: o.pa * 0x100000, prot: 3 });
            } else expect(err).toBe("ENOSPC");
          } else if (o.op === "unmap") {
            const first = BASE + o.page * PAGE;
            const last = first + o.pages * PAGE - 1;
            const hit = model.filter((m) => m.iova <= last && first <= m.iova + m.length - 1);
            const whole = hit.every((m) => m.iova >= first && m.iova + m.length - 1 <= last);
            if (hit.length === 0 || !whole) expect(err).toBe("ENOENT");
            else {
              expect(got).toBe(hit.reduce((s, m) => s + m.length, 0));
              model = model.filter((m) => !hit.includes(m));
            }
          } else {
            expect(got).toBe(model.reduce((s, m) => s + m.length, 0));
            model = [];
          }
        }
        expect(h.ioasAreas(ioas)).toEqual([...model].sort((x, y) => x.iova - y.iova));
        for (let p = 0; p < 80; p++) {
          const iova = BASE + p * PAGE + 8;
          const m = model.find((x) => x.iova <= iova && iova < x.iova + x.length);
          for (const dev of [a, b]) {
            const r = h.dma(dev, { iova, access: "write", data: new Uint8Array([p]) });
            if (m === undefined) expect(r.ok ? "ok" : r.fault.class).toBe("translation");
            else if (m.prot === 1) expect(r.ok ? "ok" : r.fault.class).toBe("permission");
            else expect(r).toEqual({ ok: true, pa: m.pa + (iova - m.iova) });
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
