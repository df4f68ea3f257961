import type { TranslationOutcome } from "@iommu-kit/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EVENT_NAMES, encodeCd, encodeSte } from "../src/index.ts";
import { rig, s1Cd, s1Ste, s2Fields } from "./rig.ts";

const REGION = 0x40_0000; // 16 pages of tables the generator points into
const PAGES = 16;

const word = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** A descriptor: valid-looking pointers into the region with random attribute bits, or raw noise. */
const desc = fc.oneof(
  word,
  fc
    .tuple(
      fc.integer({ min: 0, max: PAGES - 1 }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.integer({ min: 0, max: 3 }),
    )
    .map(
      ([page, noise, type]) =>
        BigInt(REGION + page * 0x1000) | (noise & 0xfff0_0000_0000_0ffcn) | BigInt(type),
    ),
);
const mutate = (words: bigint[]) =>
  fc.array(fc.tuple(fc.integer({ min: 0, max: words.length * 64 - 1 })), { maxLength: 4 }).map((flips) => {
    const w = [...words];
    for (const [bit] of flips) w[bit >> 6] = w[bit >> 6]! ^ (1n << BigInt(bit & 63));
    return w;
  });

const validS1Ste = encodeSte(s1Ste(REGION + 0xf000, { S1CDMax: 2, S1DSS: 2 }));
const validNestedSte = encodeSte({ V: 1, Config: 7, S1ContextPtr: REGION + 0xf000, ...s2Fields(REGION) });
const validCd = encodeCd(s1Cd(REGION, { HA: 1, HD: 1 }));

const scenario = fc.record({
  ste: fc.oneof(mutate(validS1Ste), mutate(validNestedSte), fc.array(word, { minLength: 8, maxLength: 8 })),
  cd: fc.oneof(mutate(validCd), fc.array(word, { minLength: 8, maxLength: 8 })),
  writes: fc.array(fc.tuple(fc.integer({ min: 0, max: PAGES * 512 - 1 }), desc), { maxLength: 200 }),
  reqs: fc.array(
    fc.record({
      ssid: fc.integer({ min: -1, max: 5 }),
      iova: fc.oneof(
        fc.integer({ min: 0, max: 2 ** 53 - 1 }),
        fc.integer({ min: 0, max: 2 ** 24 }).map((x) => x * 4096),
      ),
      access: fc.integer({ min: 1, max: 15 }).map((a) => (a & 2 ? a & ~1 : a | 1)),
    }),
    { minLength: 1, maxLength: 8 },
  ),
});

function key(o: TranslationOutcome): string {
  if (o.ok) return `ok ${o.pa} ${o.perm} ${o.sizeLg2}`;
  return `fault ${o.fault.class} ${o.fault.vendor.code} ${o.fault.vendor.name}`;
}

describe("hostile tables", () => {
  it("any bytes: every translate returns a PA or a spec event, never throws; cached == uncached", () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(scenario, (s) => {
        const r = rig();
        for (let i = 0; i < 8; i++) r.memory.write64(0x10_0000 + 64 + i * 8, s.ste[i]!);
        for (let i = 0; i < 8; i++) {
          r.memory.write64(REGION + 0xf000 + i * 8, s.cd[i]!);
          r.memory.write64(REGION + 0xf000 + 64 + i * 8, s.cd[i]!);
          r.memory.write64(REGION + 0xf000 + 128 + i * 8, s.cd[i]!);
        }
        for (const [slot, v] of s.writes) r.memory.write64(REGION + slot * 8, v);
        expect(() =>
          JSON.stringify(r.b.dump(1), (_k, v) => (typeof v === "bigint" ? v.toString() : v)),
        ).not.toThrow();
        for (const q of s.reqs) {
          const first = r.x(1, q.ssid, q.iova, q.access);
          if (!first.ok) {
            const v = first.fault.vendor;
            expect(v.vendor).toBe("arm-smmuv3");
            if (v.code !== null) expect(EVENT_NAMES[v.code]).toBe(v.name);
            else expect(["STE_ABORT", "GBPA_ABORT"]).toContain(v.name);
          } else {
            expect(Number.isSafeInteger(first.pa)).toBe(true);
            expect(first.pa).toBeLessThan(2 ** 52);
          }
          seen.add(first.ok ? "ok" : first.fault.vendor.name);
          // explain() walks the same way without side effects and agrees on the outcome.
          const steps = r.b.explain(1, q.ssid, BigInt(q.iova), q.access);
          expect(steps.at(-1)!.note.startsWith(first.ok ? "pa " : "fault: ")).toBe(true);
          const cached = r.x(1, q.ssid, q.iova, q.access);
          r.b.flushCaches();
          const walked = r.x(1, q.ssid, q.iova, q.access);
          expect(key(cached)).toBe(key(first));
          expect(key(walked)).toBe(key(first));
        }
      }),
      { numRuns: 300 },
    );
    // The generator reaches deep into the walk: successes and walk-level faults both occur.
    for (const name of ["F_TRANSLATION", "C_BAD_CD", "C_BAD_STE"]) expect(seen).toContain(name);
    expect(seen.size).toBeGreaterThanOrEqual(6);
  });

  it("random stream-table and queue registers never throw", () => {
    fc.assert(
      fc.property(
        word,
        fc.integer({ min: 0, max: 0x3_ffff }),
        word,
        fc.integer({ min: 0, max: 0xfffff }),
        (base, cfg, cmdBase, prod) => {
          const r = rig({}, { STRTAB_BASE: base, STRTAB_BASE_CFG: BigInt(cfg), CMDQ_BASE: cmdBase });
          r.b.hw.writeRegister("CMDQ_PROD", BigInt(prod));
          for (const sid of [0, 1, 0xffff, 2 ** 31]) {
            const o = r.x(sid, -1, 0x1000, 1);
            if (!o.ok) expect(o.fault.vendor.vendor).toBe("arm-smmuv3");
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a command queue full of noise stops at the first illegal command or consumes everything", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(word, word), { minLength: 1, maxLength: 64 }), (cmds) => {
        const r = rig();
        r.cmd(...(cmds as [bigint, bigint][]));
        const cons = r.b.hw.readRegister("CMDQ_CONS");
        const err = Number(cons >> 24n) & 0x7f;
        expect([0, 1]).toContain(err);
        if (err === 0) expect(Number(cons & 0x7fn)).toBe(cmds.length % 128);
      }),
      { numRuns: 200 },
    );
  });
});
