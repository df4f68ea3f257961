/**
 * Hostile input: tables filled with arbitrary and mutated bytes. Every translate ends
 * in a physical address or a spec fault (never an exception, a hang or a read outside
 * memory), and the cached path agrees with an uncached walk.
 */

import type { Translation } from "@iommu-kit/core";
import {
  Access,
  createTranslation,
  FAULT_CLASSES,
  Intent,
  NO_PASID,
  Perm,
  PhysicalMemory,
} from "@iommu-kit/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Fr } from "../src/format/fault-record.ts";
import { Reg } from "../src/format/registers.ts";
import { VtdHardware } from "../src/hardware.ts";
import { registersFor, resolveConfig } from "../src/hw-info.ts";
import { fresh } from "./helpers.ts";
import { hostileMemory, REGION } from "./hostile.ts";

const KNOWN_CODES = new Set<number>(Object.values(Fr));
function unit(memory: PhysicalMemory, ttm: number, enabled = true): VtdHardware {
  const { cap, ecap } = registersFor(resolveConfig({ haw: 48 }));
  const hw = new VtdHardware(memory, { cap, ecap, haw: 48 });
  hw.writeRegister(Reg.RTADDR, BigInt(REGION) | (BigInt(ttm) << 10n));
  hw.writeRegister(Reg.GCMD, (1n << 30n) | (enabled ? 1n << 31n : 0n), 4);
  return hw;
}

interface Req {
  sid: number;
  pasid: number;
  iova: number;
  access: number;
}

const reqArb: fc.Arbitrary<Req> = fc.record({
  sid: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff })),
  pasid: fc.oneof(
    fc.constant(NO_PASID),
    fc.integer({ min: 0, max: 70 }),
    fc.integer({ min: 0, max: 0xfffff }),
  ),
  iova: fc.oneof(
    fc.constantFrom(0, 0x1000, 0x20_0000, 0x4000_0000, 2 ** 39, 2 ** 47, 0xfee0_0000),
    fc.integer({ min: 0, max: 2 ** 20 }).map((n) => n * 4096 + 8),
    fc.double({ min: 0, max: 2 ** 53 - 1, noNaN: true }).map(Math.floor),
  ),
  access: fc.constantFrom(
    Access.READ,
    Access.WRITE,
    Access.READ | Access.EXEC,
    Access.READ | Access.PRIV,
    Access.WRITE | Access.PRIV,
  ),
});

function outcome(ok: boolean, t: Translation): string {
  return ok ? `ok ${t.pa} ${t.perm} ${t.sizeLg2}` : `fault ${t.fault!.vendor.code} ${t.fault!.class}`;
}

function checkSane(ok: boolean, t: Translation): void {
  if (ok) {
    expect(Number.isSafeInteger(t.pa) && t.pa >= 0).toBe(true);
    expect(t.sizeLg2 >= 12 && t.sizeLg2 <= 30).toBe(true);
    expect(t.perm & ~(Perm.R | Perm.W | Perm.X)).toBe(0);
  } else {
    const f = t.fault!;
    expect(FAULT_CLASSES).toContain(f.class);
    if (f.vendor.code !== null) expect(KNOWN_CODES.has(f.vendor.code)).toBe(true);
  }
}

describe("hostile tables", () => {
  it("arbitrary bytes: every request ends in a PA or a spec fault; cached equals uncached", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.constantFrom(0, 1, 1, 3),
        fc.array(reqArb, { minLength: 1, maxLength: 12 }),
        (seed, ttm, reqs) => {
          const memory = hostileMemory(seed);
          const cached = unit(memory, ttm);
          const bare = unit(memory, ttm);
          const a = createTranslation();
          const b = createTranslation();
          for (const q of reqs) {
            const first = cached.translate(q.sid, q.pasid, q.iova, q.access, a);
            checkSane(first, a);
            const again = cached.translate(q.sid, q.pasid, q.iova, q.access, a);
            const againOut = outcome(again, a);
            bare.flushAll();
            const walked = bare.translate(q.sid, q.pasid, q.iova, q.access, b);
            checkSane(walked, b);
            expect(againOut).toBe(outcome(walked, b));
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("the hostile generator reaches deep: successes and many distinct fault reasons", () => {
    const codes = new Set<number | null>();
    let successes = 0;
    const out = createTranslation();
    for (let seed = 0; seed < 400; seed++) {
      const memory = hostileMemory(seed);
      const hw = unit(memory, seed % 2);
      for (const [sid, pasid, iova] of [
        [0, NO_PASID, 0],
        [1, 0, 0x1000],
        [2, 5, 0x20_0000],
        [0, 1, 0x4000_0000],
      ] as const) {
        if (hw.translate(sid, pasid, iova, Access.READ, out)) successes++;
        else codes.add(out.fault!.vendor.code);
      }
    }
    expect(successes).toBeGreaterThan(10);
    expect(codes.size).toBeGreaterThan(15);
  });

  it("explain and dump never throw on hostile tables", () => {
    fc.assert(
      fc.property(fc.integer(), fc.constantFrom(0, 1), reqArb, (seed, ttm, q) => {
        const memory = hostileMemory(seed);
        const hw = unit(memory, ttm);
        const steps = hw.explainWalk(q.sid, q.pasid, q.iova, q.access);
        expect(steps.length).toBeGreaterThan(0);
        expect(steps.length).toBeLessThan(40);
      }),
      { numRuns: 60 },
    );
  });
});

describe("mutated driver-built tables", () => {
  it("flipping bits in table pages: PA or spec fault, cached equals uncached", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 1023 }), fc.integer({ min: 0, max: 31 })), {
          minLength: 1,
          maxLength: 24,
        }),
        fc.array(reqArb, { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        (flips, reqs, firstStage) => {
          const t = fresh({}, 2 ** 30);
          const b = t.backend;
          b.addDevice({ rid: 1, pasidBits: 8 });
          b.addDevice({ rid: 2, pasidBits: 0 });
          const d = b.allocDomain({ type: "paging", format: firstStage ? "vtd-fs-4lvl" : "vtd-ss-4lvl" });
          d.map(0, 0x10_0000, 0x40_0000, Perm.R | Perm.W);
          d.map(0x4000_0000, 0x20_0000, 0x1000, Perm.R);
          b.attach(1, Intent.rid, d);
          b.attach(1, Intent.pasid(5), d);
          b.attach(2, Intent.rid, d);
          const blocks = t.tables.blocks();
          for (const [which, word, bit] of flips) {
            const [base, lg2] = blocks[which % blocks.length]!;
            const pa = base + (word % (2 ** lg2 / 4)) * 4;
            t.memory.write32(pa, (t.memory.read32(pa) ^ (1 << bit)) >>> 0);
          }
          const { cap, ecap } = registersFor(resolveConfig({}));
          const bare = new VtdHardware(t.memory, { cap, ecap, haw: 52 });
          bare.writeRegister(Reg.RTADDR, b.hw.readRegister(Reg.RTADDR));
          bare.writeRegister(Reg.GCMD, (1n << 30n) | (1n << 31n), 4);
          const x = createTranslation();
          const y = createTranslation();
          for (const q of reqs) {
            const sid = (q.sid % 3) as number;
            const first = b.translate(sid, q.pasid, q.iova, q.access, x);
            checkSane(first, x);
            const again = b.translate(sid, q.pasid, q.iova, q.access, x);
            bare.flushAll();
            const walked = bare.translate(sid, q.pasid, q.iova, q.access, y);
            expect(outcome(again, x)).toBe(outcome(walked, y));
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it("a hostile invalidation queue never hangs: IQE or completion", () => {
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 2, maxLength: 64 }),
        fc.integer({ min: 0, max: 255 }),
        fc.boolean(),
        (words, tail, dw) => {
          const memory = new PhysicalMemory([{ base: 0, size: 2 ** 24 }]);
          const { cap, ecap } = registersFor(resolveConfig({}));
          const hw = new VtdHardware(memory, { cap, ecap, haw: 48 });
          words.forEach((w, i) => {
            memory.write64(0x1000 + i * 8, w);
          });
          hw.writeRegister(Reg.IQA, 0x1000n | (dw ? 0x800n : 0n));
          hw.writeRegister(Reg.GCMD, 1n << 26n, 4);
          hw.writeRegister(Reg.IQT, BigInt(tail) << 4n);
          const head = Number(hw.readRegister(Reg.IQH));
          expect((hw.fsts & 0x10) !== 0 || head === Number(hw.iqt)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("untranslated and misuse", () => {
  it("requests with a source-id, PASID or iova out of range are misuse (EINVAL), not faults", () => {
    const memory = hostileMemory(1);
    const hw = unit(memory, 1);
    const out = createTranslation();
    expect(() => hw.translate(0x1_0000, NO_PASID, 0, Access.READ, out)).toThrow(/source-id/);
    expect(() => hw.translate(1, 0x10_0000, 0, Access.READ, out)).toThrow(/PASID/);
    expect(() => hw.translate(1, NO_PASID, -4096, Access.READ, out)).toThrow(/iova/);
  });
});
