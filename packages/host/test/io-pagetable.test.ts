import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Area } from "../src/io-pagetable.ts";
import { complement, IoPagetable, lowestBit, mergeRanges, roundupPow2 } from "../src/io-pagetable.ts";
import { createPages } from "../src/pages.ts";
import { expectErrno } from "./helpers.ts";

function area(iova: number, length: number): Area {
  return { iova, length, pages: createPages(0, length, true), offset: 0, prot: 3 };
}

describe("range helpers", () => {
  it("merges adjacent and overlapping ranges", () => {
    expect(
      mergeRanges([
        { start: 10, last: 20 },
        { start: 0, last: 4 },
        { start: 21, last: 25 },
        { start: 5, last: 5 },
        { start: 30, last: 31 },
      ]),
    ).toEqual([
      { start: 0, last: 5 },
      { start: 10, last: 25 },
      { start: 30, last: 31 },
    ]);
  });

  it("complements inside bounds", () => {
    expect(
      complement(
        [
          { start: 0, last: 9 },
          { start: 20, last: 29 },
        ],
        0,
        99,
      ),
    ).toEqual([
      { start: 10, last: 19 },
      { start: 30, last: 99 },
    ]);
    expect(complement([], 5, 9)).toEqual([{ start: 5, last: 9 }]);
    expect(complement([{ start: 0, last: 99 }], 0, 99)).toEqual([]);
  });

  it("roundupPow2 and lowestBit", () => {
    expect(roundupPow2(1)).toBe(1);
    expect(roundupPow2(0x3000)).toBe(0x4000);
    expect(roundupPow2(2 ** 40)).toBe(2 ** 40);
    expect(lowestBit(0x3000)).toBe(0x1000);
    expect(lowestBit(2 ** 45)).toBe(2 ** 45);
    expect(lowestBit(0)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("IoPagetable", () => {
  it("checkFixed: alignment EINVAL, reserved EINVAL, overlap EEXIST, overflow EOVERFLOW", () => {
    const t = new IoPagetable();
    t.insert(area(0x10000, 0x2000));
    const resv = [{ start: 0x40000, last: 0x40fff }];
    expectErrno(() => t.checkFixed(0x800, 0x1000, 0x1000, resv), "EINVAL");
    expectErrno(() => t.checkFixed(0x40000, 0x1000, 0x1000, resv), "EINVAL");
    expectErrno(() => t.checkFixed(0x11000, 0x1000, 0x1000, resv), "EEXIST");
    expectErrno(() => t.checkFixed(0xf000, 0x2000, 0x1000, resv), "EEXIST");
    expectErrno(() => t.checkFixed(2 ** 53 - 0x1000, 0x2000, 0x1000, resv), "EOVERFLOW");
    t.checkFixed(0x12000, 0x1000, 0x1000, resv);
    t.checkFixed(0xf000, 0x1000, 0x1000, resv);
  });

  it("allocIova: first fit, aligned, skipping areas and reserved, inside allowed, ENOSPC", () => {
    const t = new IoPagetable();
    expect(t.allocIova(0x1000, 0x1000, [])).toBe(0);
    t.insert(area(0, 0x3000));
    expect(t.allocIova(0x1000, 0x1000, [])).toBe(0x3000);
    expect(t.allocIova(0x4000, 0x4000, [])).toBe(0x4000);
    expect(t.allocIova(0x1000, 0x1000, [{ start: 0x3000, last: 0x7fff }])).toBe(0x8000);
    t.allowed = [{ start: 0x100000, last: 0x101fff }];
    expect(t.allocIova(0x2000, 0x1000, [])).toBe(0x100000);
    expectErrno(() => t.allocIova(0x3000, 0x1000, []), "ENOSPC");
  });

  it("allocIova agrees with a brute-force model", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 4 })), {
          maxLength: 12,
        }),
        fc.integer({ min: 1, max: 8 }),
        fc.constantFrom(1, 2, 4),
        (spans, len, align) => {
          const t = new IoPagetable();
          const used = new Array<boolean>(80).fill(false);
          for (const [s, l] of spans) {
            if (s + l > 64 || used.slice(s, s + l).some(Boolean)) continue;
            t.insert(area(s, l));
            for (let i = s; i < s + l; i++) used[i] = true;
          }
          t.allowed = [{ start: 0, last: 71 }];
          let want = -1;
          for (let c = 0; c + len - 1 <= 71; c += align) {
            if (!used.slice(c, c + len).some(Boolean)) {
              want = c;
              break;
            }
          }
          if (want < 0) expectErrno(() => t.allocIova(len, align, []), "ENOSPC");
          else expect(t.allocIova(len, align, [])).toBe(want);
        },
      ),
    );
  });

  it("span and removeSpan keep areas sorted", () => {
    const t = new IoPagetable();
    for (const i of [5, 1, 3, 9, 7]) t.insert(area(i * 0x1000, 0x1000));
    expect(t.areas.map((a) => a.iova / 0x1000)).toEqual([1, 3, 5, 7, 9]);
    expect(t.span(0x3000, 0x7fff)).toEqual([1, 4]);
    t.removeSpan(1, 3);
    expect(t.areas.map((a) => a.iova / 0x1000)).toEqual([1, 7, 9]);
    t.removeSpan(0, 1);
    expect(t.areas.map((a) => a.iova / 0x1000)).toEqual([7, 9]);
  });

  it("checkLayout: misaligned area, area in reserved, allowed in reserved: EADDRINUSE", () => {
    const t = new IoPagetable();
    t.insert(area(0x1800, 0x800));
    expectErrno(() => t.checkLayout([], 0x1000), "EADDRINUSE");
    t.checkLayout([], 0x800);
    expectErrno(() => t.checkLayout([{ start: 0x1000, last: 0x1fff }], 1), "EADDRINUSE");
    t.allowed = [{ start: 0x10000, last: 0x1ffff }];
    expectErrno(() => t.checkLayout([{ start: 0x1f000, last: 0x20000 }], 1), "EADDRINUSE");
  });
});
