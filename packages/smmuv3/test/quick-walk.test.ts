import { Access, createTranslation } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { resultStep } from "../src/explain.ts";
import { chain4k, encodeLeafPte, encodeTablePte, rig, s1Cd, s1Ste } from "./rig.ts";

// The quick stage-1 walk (Walker.walkS1QuickAt, its inputs cached per StreamID) against
// the general walk (explain: no cache, no quick walk) over the CD and descriptor bits it
// folds: WXN, PAN, HAD0 (5.4), AP[2:1], PXN, UXN (DDI 0487 D8.4), APTable, OA beyond IPS.

const CD = 0x40_0000;
const PT = 0x50_0000;
const PA = 0x1234_5000;
const IOVA = 0x7f12_3456_7000;
const ACCESSES = [
  Access.READ,
  Access.WRITE,
  Access.EXEC,
  Access.READ | Access.PRIV,
  Access.WRITE | Access.PRIV,
  Access.EXEC | Access.PRIV,
];

/** The general walk's verdict as explain's result step reports it. */
function general(r: ReturnType<typeof rig>, iova: number, access: number): string {
  const steps = r.b.explain(1, -1, BigInt(iova), access);
  return steps[steps.length - 1]!.note;
}

/** The translate outcome in the same words (explain's resultStep). */
function quick(r: ReturnType<typeof rig>, iova: number, access: number): string {
  const out = createTranslation();
  return resultStep(r.b.translate(1, -1, iova, access, out), out).note;
}

describe("quick stage-1 walk agrees with the general walk", () => {
  const rows: [string, Record<string, number>][] = [];
  for (let f = 0; f < 16; f++)
    rows.push([
      `WXN ${f & 1} PAN ${(f >> 1) & 1} HAD0 ${(f >> 2) & 1} IPS ${f & 8 ? 40 : 48}`,
      { WXN: f & 1, PAN: (f >> 1) & 1, HAD0: (f >> 2) & 1, IPS: f & 8 ? 2 : 5 },
    ]);

  it.each(rows)("%s, every AP[2:1], PXN, UXN and APTable", (_name, cd) => {
    for (let ap = 0; ap < 4; ap++)
      for (let xn = 0; xn < 4; xn++)
        for (let apTable = 0; apTable < 4; apTable++) {
          const r = rig(); // IDR3.HAD set: CD.HAD0 applies
          r.ste(1, s1Ste(CD));
          r.cd(CD, s1Cd(PT, cd));
          // Page 1 (through the slow path, which caches the config), then page 2 (the
          // StreamID's cached quick inputs), whose output is beyond a 40-bit IPS.
          const leaf = (oa: number) => encodeLeafPte(BigInt(oa), 3, { ap, pxn: xn & 1, xn: xn >> 1, ng: 1 });
          const entries = chain4k(r, PT, IOVA, leaf(PA));
          r.pte(entries[3]! + 8, leaf(2 ** 40 + PA));
          r.pte(entries[0]!, encodeTablePte(BigInt(PT + 0x1000), { apTable }));
          for (const page of [IOVA, IOVA + 0x1000])
            for (const access of ACCESSES)
              expect([ap, xn, apTable, page, access, quick(r, page + 8, access)]).toEqual([
                ap,
                xn,
                apTable,
                page,
                access,
                general(r, page + 8, access),
              ]);
        }
  });
});
