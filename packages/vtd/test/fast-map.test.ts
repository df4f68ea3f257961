/**
 * The map / unmap fast lanes against the generic PageTable: same results, same tables
 * left, same errors, whatever the sequence of operations.
 */

import { isIommuError, Perm } from "@iommu-kit/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { VtdDomain } from "../src/backend.ts";
import { fastMap4k, fastUnmapAligned } from "../src/internal/fast-map.ts";
import { fresh } from "./helpers.ts";

const M2 = 0x20_0000;
const G1 = 0x4000_0000;

type Op =
  | { kind: "map"; iova: number; pa: number; len: number }
  | { kind: "unmap"; iova: number; len: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("map" as const),
    iova: fc.integer({ min: 0, max: 2047 }).map((n) => n * 4096),
    pa: fc.integer({ min: 0, max: 255 }).map((n) => n * 4096),
    len: fc.integer({ min: 1, max: 600 }).map((n) => n * 4096),
  }),
  fc.record({
    kind: fc.constant("map" as const),
    iova: fc.integer({ min: 0, max: 7 }).map((n) => n * M2),
    pa: fc.integer({ min: 0, max: 7 }).map((n) => n * M2),
    len: fc.integer({ min: 1, max: 3 }).map((n) => n * M2),
  }),
  fc.record({
    kind: fc.constant("map" as const),
    iova: fc.constant(G1),
    pa: fc.constant(0),
    len: fc.constant(G1),
  }),
  fc.record({
    kind: fc.constant("unmap" as const),
    iova: fc.integer({ min: 0, max: 7 }).map((n) => n * M2),
    len: fc.integer({ min: 1, max: 8 }).map((n) => n * M2),
  }),
  fc.record({
    kind: fc.constant("unmap" as const),
    iova: fc.constant(G1),
    len: fc.constant(M2),
  }),
);

function run(d: VtdDomain, op: Op, fast: boolean): string {
  try {
    if (op.kind === "map") {
      if (fast) d.map(op.iova, op.pa, op.len, Perm.R | Perm.W);
      else d.table!.map(op.iova, op.pa, op.len, Perm.R | Perm.W);
      return "ok";
    }
    return String(fast ? d.unmap(op.iova, op.len) : d.table!.unmap(op.iova, op.len));
  } catch (e) {
    if (isIommuError(e)) return e.code;
    throw e;
  }
}

describe("fast lanes", () => {
  for (const format of ["vtd-ss-4lvl", "vtd-fs-4lvl"]) {
    it(`${format}: same results and same tables as the generic page table`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), (ops) => {
          const a = fresh({}, 2 ** 31);
          const b = fresh({}, 2 ** 31);
          const da = a.backend.allocDomain({ type: "paging", format }) as VtdDomain;
          const db = b.backend.allocDomain({ type: "paging", format }) as VtdDomain;
          for (const op of ops) {
            expect(run(da, op, true)).toBe(run(db, op, false));
            expect(a.tables.stats()).toEqual(b.tables.stats());
          }
          for (let iova = 0; iova < 2 * G1; iova += 0x3_3000)
            expect(da.iovaToPhys(iova)).toBe(db.iovaToPhys(iova));
        }),
        { numRuns: 40 },
      );
    });
  }

  it("decline what they do not handle", () => {
    const { backend } = fresh();
    const d = backend.allocDomain({ type: "paging" }) as VtdDomain;
    const t = d.table!;
    expect(fastMap4k(t, backend.memory, 0, 0, 0x1000, Perm.R)).toBe(false); // no upper tables yet
    d.map(0x1000, 0, 0x1000, Perm.R);
    expect(fastMap4k(t, backend.memory, 0x1f_f000, 0, 0x2000, Perm.R)).toBe(false); // crosses 2 MiB
    expect(fastMap4k(t, backend.memory, 0, 0, M2, Perm.R)).toBe(false); // a 2 MiB page fits
    expect(fastMap4k(t, backend.memory, 0x2000, 0x1_0000_0000 - 0x1000, 0x2000, Perm.R)).toBe(true);
    expect(d.iovaToPhys(0x3008)).toBe(0x1_0000_0008);
    expect(fastUnmapAligned(t, backend.memory, 0x1000, M2)).toBe(-1);
    d.map(G1, 0, G1, Perm.R);
    expect(fastUnmapAligned(t, backend.memory, G1, M2)).toBe(-1); // would split a 1 GiB page
    expect(fastUnmapAligned(t, backend.memory, 0, 2 * G1)).toBe(3 * 4096 + G1);
  });
});
