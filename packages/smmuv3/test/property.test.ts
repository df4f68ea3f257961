/**
 * Issue 15 property test: random and mutated STE / CD / table images, queue contents and
 * register writes. For every request: no throw, bounded work (at most one walk), a PA below
 * 2^52 and the OAS whose reported region holds it at the IOVA's offset, explain ==
 * translate == translateBig, cached == uncached; misuse (fractional, negative or
 * out-of-range StreamID / SubstreamID / IOVA) refused with IommuError on every entry point.
 * Before the fixes it failed on the misaligned Contiguous region (walk.ts runLg2), on
 * explain vs translate under HTTU, and on misuse (RangeError, a fractional IOVA hitting).
 */
import type { TranslationOutcome } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeCd, encodeSte } from "../src/index.ts";
import { CMDQ, rig, s1Cd, s1Ste, s2Fields } from "./rig.ts";

const REGION = 0x40_0000;
const PAGES = 16;
const word = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const desc = fc.oneof(
  word,
  fc
    .tuple(fc.integer({ min: 0, max: PAGES - 1 }), word, fc.integer({ min: 0, max: 3 }))
    .map(
      ([page, noise, type]) =>
        BigInt(REGION + page * 0x1000) | (noise & 0xfff0_0000_0000_0ffcn) | BigInt(type),
    ),
);
const mutate = (words: bigint[]) =>
  fc.array(fc.integer({ min: 0, max: words.length * 64 - 1 }), { maxLength: 4 }).map((flips) => {
    const w = [...words];
    for (const bit of flips) w[bit >> 6] = w[bit >> 6]! ^ (1n << BigInt(bit & 63));
    return w;
  });
const stes = [
  encodeSte(s1Ste(REGION + 0xf000, { S1CDMax: 2, S1DSS: 2 })),
  encodeSte({ V: 1, Config: 7, S1ContextPtr: REGION + 0xf000, ...s2Fields(REGION) }),
  encodeSte({ V: 1, Config: 6, ...s2Fields(REGION) }),
];
const cds = [encodeCd(s1Cd(REGION, { HA: 1, HD: 1 })), encodeCd(s1Cd(REGION + 0x10, { T0SZ: 33 }))];
/** Registers a guest or a dump may hold, written after setup (names and raw values). */
const regWrite = fc.tuple(
  fc.constantFrom(
    "STRTAB_BASE_CFG",
    "STRTAB_BASE",
    "GBPA",
    "CMDQ_PROD",
    "CMDQ_CONS",
    "EVENTQ_CONS",
    "CR2",
    "GERRORN",
  ),
  fc.oneof(word, fc.bigInt({ min: 0n, max: 0x3_ffffn })),
);
const iova = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 53 - 1 }),
  fc.integer({ min: 0, max: 2 ** 24 }).map((x) => x * 4096 + (x % 4096)),
);
const scenario = fc.record({
  ste: fc.oneof(...stes.map(mutate), fc.array(word, { minLength: 8, maxLength: 8 })),
  cd: fc.oneof(...cds.map(mutate), fc.array(word, { minLength: 8, maxLength: 8 })),
  writes: fc.array(fc.tuple(fc.integer({ min: 0, max: PAGES * 512 - 1 }), desc), { maxLength: 120 }),
  cmds: fc.array(fc.tuple(word, word), { maxLength: 4 }),
  regs: fc.array(regWrite, { maxLength: 3 }),
  reqs: fc.array(
    fc.record({
      sid: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 0xffff })),
      ssid: fc.integer({ min: -1, max: 5 }),
      iova,
      access: fc.integer({ min: 1, max: 15 }).map((a) => (a & 2 ? a & ~1 : a | 1)),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  misuse: fc.oneof(
    fc.record({
      sid: fc.constantFrom(-1, 1.5, 2 ** 32, Number.NaN),
      ssid: fc.constant(-1),
      iova: fc.constant(0x1000),
    }),
    fc.record({ sid: fc.constant(1), ssid: fc.constantFrom(-2, 0.5, 2 ** 20), iova: fc.constant(0x1000) }),
    fc.record({ sid: fc.constant(1), ssid: fc.constant(-1), iova: fc.constantFrom(-4096, 4096.5, 2 ** 53) }),
  ),
});

function key(o: TranslationOutcome): string {
  return o.ok ? `ok ${o.pa} ${o.perm} ${o.sizeLg2}` : `fault ${o.fault.vendor.name}`;
}

function misuseCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof IommuError ? e.code : `threw ${(e as Error).name}`;
  }
  return "accepted";
}

describe("property: hostile images, queues and registers (issue 15)", () => {
  it("no throw, bounded, PA in range and inside sizeLg2, explain == translate == translateBig, cached == uncached, misuse refused", () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const r = rig({ oas: 48 });
        for (let i = 0; i < 8; i++) r.memory.write64(0x10_0000 + 64 + i * 8, s.ste[i]!);
        for (let c = 0; c < 3; c++)
          for (let i = 0; i < 8; i++) r.memory.write64(REGION + 0xf000 + c * 64 + i * 8, s.cd[i]!);
        for (const [slot, v] of s.writes) r.memory.write64(REGION + slot * 8, v);
        // Hit the caches first, then let queue noise and register writes change what they see.
        r.x(1, -1, 0x1000, 1);
        r.cmd(...(s.cmds as [bigint, bigint][]));
        for (const [name, v] of s.regs) r.b.hw.writeRegister(name, v);
        void CMDQ;
        const oas = r.b.hw.oas;
        for (const q of s.reqs) {
          const walks = r.b.counters().walks;
          const first = r.x(q.sid, q.ssid, q.iova, q.access);
          expect(r.b.counters().walks - walks).toBeLessThanOrEqual(1);
          if (first.ok) {
            expect(Number.isSafeInteger(first.pa)).toBe(true);
            expect(first.pa).toBeLessThan(2 ** Math.min(52, oas));
            const size = 2 ** first.sizeLg2;
            expect(first.sizeLg2).toBeGreaterThanOrEqual(12);
            expect(first.pa % size, `region 2^${first.sizeLg2}`).toBe(q.iova % size);
          }
          const steps = r.b.explain(q.sid, q.ssid, BigInt(q.iova), q.access);
          const last = steps.at(-1)!;
          if (first.ok) expect(last.address).toBe(first.pa);
          else expect(last.note).toContain(first.fault.vendor.name);
          const big = r.x(q.sid, q.ssid, BigInt(q.iova), q.access);
          expect(key(big)).toBe(key(first));
          const cached = r.x(q.sid, q.ssid, q.iova, q.access);
          r.b.flushCaches();
          const walked = r.x(q.sid, q.ssid, q.iova, q.access);
          expect(key(cached)).toBe(key(first));
          expect(key(walked)).toBe(key(first));
        }
        const m = s.misuse;
        const bigIova = Number.isFinite(m.iova) && Number.isInteger(m.iova) ? BigInt(m.iova) : -1n;
        expect(misuseCode(() => r.x(m.sid, m.ssid, m.iova, 1))).toBe("EINVAL");
        if (m.iova !== 2 ** 53) {
          expect(misuseCode(() => r.x(m.sid, m.ssid, bigIova, 1))).toBe("EINVAL");
          expect(misuseCode(() => r.b.explain(m.sid, m.ssid, bigIova, 1))).toBe("EINVAL");
        }
      }),
      { numRuns: 250 },
    );
  });
});
