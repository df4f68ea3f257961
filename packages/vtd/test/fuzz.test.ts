/**
 * Issue 15 fuzzing (fast-check, bounded to a few seconds): random and mutated table
 * images (Intel VT-d spec 9.1-9.8 formats), invalidation-queue contents (6.5.2) and
 * register writes (chapter 10), then requests valid and not. Properties, per request:
 * no throw but IommuError for misuse, the same misuse refused by translate,
 * translateBig and explain alike; bounded memory reads (at most five levels per stage,
 * spec 3.6-3.8); a PA below 2^52 and 2^HAW whose sizeLg2 region holds the IOVA's
 * offset; explain == translate == translateBig; cached == uncached; every register
 * reads as an unsigned value.
 */

import type { Translation, TranslationOutcome, WalkStep } from "@iommu-kit/core";
import { Access, createTranslation, Intent, IommuError, NO_PASID, Perm } from "@iommu-kit/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { VtdBackend } from "../src/backend.ts";
import { vtdFromRegisters } from "../src/backend.ts";
import { Pgtt } from "../src/format/pasid-entry.ts";
import { Reg } from "../src/format/registers.ts";
import { fresh } from "./helpers.ts";
import { hostileMemory, REGION } from "./hostile.ts";
import { rig, SID } from "./rig.ts";

/** Memory reads one request may make: 15 configuration words + 5 x (5 + 1) + 5 entries, rounded up. */
const MAX_READS = 64;
const BAD_SIDS = [1.5, -1, 0x1_0000, Number.NaN];
const BAD_PASIDS = [1.5, 0x10_0000, -2, Number.NaN];
const BAD_IOVAS = [-4096, -8192, -1, 0.5, 4096.5, 2 ** 53, 2 ** 64, Number.NaN, Number.POSITIVE_INFINITY];

interface Req {
  readonly sid: number;
  readonly pasid: number;
  readonly iova: number;
  /** An input at or above 2^53 for translateBig / explain (null: none). */
  readonly big: bigint | null;
  readonly access: number;
}

const reqArb: fc.Arbitrary<Req> = fc.record({
  sid: fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 3 }), weight: 8 },
    { arbitrary: fc.integer({ min: 0, max: 0xffff }), weight: 3 },
    { arbitrary: fc.constantFrom(...BAD_SIDS), weight: 1 },
  ),
  pasid: fc.oneof(
    { arbitrary: fc.constant(NO_PASID), weight: 6 },
    { arbitrary: fc.integer({ min: 0, max: 70 }), weight: 6 },
    { arbitrary: fc.integer({ min: 0, max: 0xfffff }), weight: 2 },
    { arbitrary: fc.constantFrom(...BAD_PASIDS), weight: 1 },
  ),
  iova: fc.oneof(
    {
      arbitrary: fc.constantFrom(0, 0x1000, 0x20_1234, 0x4000_0000, 2 ** 39, 2 ** 47, 0xfee0_0000),
      weight: 6,
    },
    { arbitrary: fc.integer({ min: 0, max: 2 ** 20 }).map((n) => n * 4096 + 8), weight: 6 },
    { arbitrary: fc.double({ min: 0, max: 2 ** 53 - 1, noNaN: true }).map(Math.floor), weight: 3 },
    { arbitrary: fc.constantFrom(...BAD_IOVAS), weight: 1 },
  ),
  big: fc.option(fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }), { nil: null }),
  access: fc.constantFrom(
    Access.READ,
    Access.WRITE,
    Access.READ | Access.EXEC,
    Access.READ | Access.PRIV,
    Access.WRITE | Access.PRIV,
  ),
});

const validSid = (s: number): boolean => Number.isInteger(s) && s >= 0 && s <= 0xffff;
const validPasid = (p: number): boolean => p === NO_PASID || (Number.isInteger(p) && p >= 0 && p < 2 ** 20);
const validIova = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;

/** The error code a call throws ("no error" when it returns). */
function thrown(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof IommuError ? e.code : `not IommuError: ${String(e)}`;
  }
  return "no error";
}

function outcome(ok: boolean, t: Translation): string {
  return ok ? `ok ${t.pa} ${t.perm} ${t.sizeLg2}` : `fault ${t.fault!.vendor.code} ${t.fault!.class}`;
}

function bigOutcome(o: TranslationOutcome): string {
  return o.ok ? `ok ${o.pa} ${o.perm} ${o.sizeLg2}` : `fault ${o.fault.vendor.code} ${o.fault.class}`;
}

/** "ok <pa>" or "fault <code>" from an outcome string. */
function short(s: string): string {
  const p = s.split(" ");
  return `${p[0]} ${p[1]}`;
}

/** explain's verdict: its last step, as "ok <pa>" or "fault <code | null>". */
function explained(steps: readonly WalkStep[]): string {
  const last = steps.at(-1)!;
  const m = /^fault 0x([0-9a-f]+)/.exec(last.note);
  if (m !== null) return `fault ${Number.parseInt(m[1]!, 16)}`;
  if (last.note.startsWith("fault")) return "fault null";
  return `ok ${last.address}`;
}

/** A successful outcome: PA below 2^52 and 2^HAW, its sizeLg2 region holding the input's offset. */
function checkPa(pa: number, sizeLg2: number, offset: number, haw: number): void {
  expect(Number.isSafeInteger(pa) && pa >= 0 && pa < 2 ** 52 && pa < 2 ** haw).toBe(true);
  expect(sizeLg2 >= 12 && sizeLg2 <= 30).toBe(true);
  expect(pa % 2 ** sizeLg2).toBe(offset % 2 ** sizeLg2);
}

/** Counts entry and configuration reads of a memory. */
function countReads(b: VtdBackend): { n: number } {
  const c = { n: 0 };
  const m = b.memory;
  const readPage = m.readPage.bind(m);
  const read64 = m.read64.bind(m);
  m.readPage = (pfn: number) => {
    c.n++;
    return readPage(pfn);
  };
  m.read64 = (pa: number) => {
    c.n++;
    return read64(pa);
  };
  return c;
}

/** Every property of one request on `b`. */
function checkRequest(b: VtdBackend, q: Req, reads: { n: number }): void {
  const { sid, pasid, iova, access } = q;
  const a = createTranslation();
  if (!validSid(sid) || !validPasid(pasid) || !validIova(iova)) {
    const big = validIova(iova) ? BigInt(iova) : iova < 0 ? -1n : 2n ** 64n;
    expect(thrown(() => b.translate(sid, pasid, iova, access, a))).toBe("EINVAL");
    expect(thrown(() => b.translateBig(sid, pasid, big, access))).toBe("EINVAL");
    expect(thrown(() => b.explain(sid, pasid, big, access))).toBe("EINVAL");
    if (q.big !== null && validIova(iova)) {
      expect(thrown(() => b.translateBig(sid, pasid, q.big!, access))).toBe("EINVAL");
      expect(thrown(() => b.explain(sid, pasid, q.big!, access))).toBe("EINVAL");
    }
    return;
  }
  b.flushCaches();
  reads.n = 0;
  const first = b.translate(sid, pasid, iova, access, a);
  expect(reads.n).toBeLessThanOrEqual(MAX_READS);
  if (first) checkPa(a.pa, a.sizeLg2, iova, b.haw);
  const cached = outcome(b.translate(sid, pasid, iova, access, a), a);
  b.flushCaches();
  const walked = outcome(b.translate(sid, pasid, iova, access, a), a);
  expect(cached).toBe(walked);
  b.flushCaches();
  expect(bigOutcome(b.translateBig(sid, pasid, BigInt(iova), access))).toBe(walked);
  expect(explained(b.explain(sid, pasid, BigInt(iova), access))).toBe(short(walked));
  if (q.big !== null) {
    reads.n = 0;
    const o = b.translateBig(sid, pasid, q.big, access);
    expect(reads.n).toBeLessThanOrEqual(MAX_READS);
    if (o.ok) checkPa(o.pa, o.sizeLg2, Number(q.big % 2n ** 30n), b.haw);
    expect(explained(b.explain(sid, pasid, q.big, access))).toBe(short(bigOutcome(o)));
  }
}

/** Every register offset reads as an unsigned 32- and 64-bit value. */
function checkRegisters(b: VtdBackend): void {
  for (let off = 0; off < 0x300; off += 4) {
    const v4 = b.hw.readRegister(off, 4);
    expect(v4 >= 0n && v4 < 2n ** 32n).toBe(true);
    const v8 = b.hw.readRegister(off & ~7, 8);
    expect(v8 >= 0n && v8 < 2n ** 64n).toBe(true);
  }
}

const regWriteArb = fc.record({
  which: fc.nat(),
  value: fc.oneof(
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    fc.constantFrom(0n, 1n << 31n, 1n << 63n, -1n),
  ),
  size: fc.constantFrom(4 as const, 8 as const),
});

/** Every leaf level and stage with noise in the flag bits (lo 12:0, hi 63:52): the PA stays in its region. */
const leafArb = fc.record({
  stage: fc.constantFrom("fs", "ss-legacy", "ss-scalable"),
  level: fc.integer({ min: 0, max: 2 }),
  frame: fc.nat(),
  page: fc.nat(),
  offset: fc.integer({ min: 0, max: 4095 }),
  lo: fc.integer({ min: 0, max: 0x1fff }),
  hi: fc.integer({ min: 0, max: 0xfff }),
  access: fc.constantFrom(Access.READ, Access.WRITE, Access.READ | Access.EXEC),
});

describe("fuzz: hostile inputs end in a PA or a fault, the same way everywhere (issue 15)", () => {
  it("random leaves of every size with noisy flag bits: PA < 2^52 inside its sizeLg2 region, explain == translate", () => {
    fc.assert(
      fc.property(leafArb, (c) => {
        const r = rig({ haw: 52, mode: c.stage === "ss-legacy" ? "legacy" : "scalable" });
        const sizeLg2 = 12 + 9 * c.level;
        const base = 0x4000_0000 + (c.page % 512) * 2 ** sizeLg2;
        const addr = (c.frame % 2 ** (40 - 9 * c.level)) * 2 ** sizeLg2;
        const iova = base + ((c.offset * 4099) % 2 ** sizeLg2);
        const root = r.page();
        let path: number[];
        let pasid = NO_PASID;
        if (c.stage === "fs") {
          r.scalableContext();
          r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root });
          path = r.fsMap(root, 4, base, { addr }, c.level);
          pasid = 5;
        } else if (c.stage === "ss-legacy") {
          r.legacyContext({ slptptr: root });
          path = r.ssMap(root, 4, base, { addr }, c.level);
        } else {
          r.scalableContext();
          r.pasidEntry(0, { ssptptr: root });
          path = r.ssMap(root, 4, base, { addr }, c.level);
        }
        const leaf = path.at(-1)!;
        r.w64(leaf, r.memory.read64(leaf) | BigInt(c.lo) | (BigInt(c.hi) << 52n));
        const out = createTranslation();
        const ok = r.hw.translate(SID, pasid, iova, c.access, out);
        if (ok) checkPa(out.pa, out.sizeLg2, iova, 52);
        expect(explained(r.hw.explainWalk(SID, pasid, iova, c.access))).toBe(short(outcome(ok, out)));
      }),
      { numRuns: 200 },
    );
  });

  it("random table images: bounded, PA < 2^52 in its region, explain == translate == translateBig", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.constantFrom(0, 1, 1, 3),
        fc.boolean(),
        fc.array(reqArb, { minLength: 1, maxLength: 8 }),
        (seed, ttm, enabled, reqs) => {
          const memory = hostileMemory(seed);
          const b = vtdFromRegisters(memory, {
            RTADDR: BigInt(REGION) | (BigInt(ttm) << 10n),
            GSTS: enabled ? 0xc000_0000n : 0n,
            HAW: 48n,
          });
          const reads = countReads(b);
          for (const q of reqs) checkRequest(b, q, reads);
          checkRegisters(b);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("driver-built tables, mutated, with hostile queue words and register writes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.constantFrom(0, 1, 7, 11, 12, 20, 30, 31, 62, 63)), {
          maxLength: 16,
        }),
        fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 16 }),
        fc.array(regWriteArb, { maxLength: 6 }),
        fc.array(reqArb, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (flips, queueWords, writes, reqs, firstStage) => {
          const t = fresh({}, 2 ** 30);
          const b = t.backend;
          b.addDevice({ rid: 1, pasidBits: 8 });
          b.addDevice({ rid: 2, pasidBits: 0 });
          const d = b.allocDomain({ type: "paging", format: firstStage ? "vtd-fs-4lvl" : "vtd-ss-4lvl" });
          d.map(0, 0x20_0000, 0x40_0000, Perm.R | Perm.W); // 2 MiB leaves
          d.map(0x40_0000, 0x10_0000, 0x2000, Perm.R | Perm.W); // 4 KiB leaves
          d.map(0x4000_0000, 0x20_0000, 0x1000, Perm.R);
          b.attach(1, Intent.rid, d);
          b.attach(1, Intent.pasid(5), d);
          b.attach(2, Intent.rid, d);
          // Mutations land on live entries (root, context, PASID, paging) or anywhere in a table block.
          const live: number[] = [];
          const blocks = t.tables.blocks();
          for (const [base, lg2] of blocks)
            for (let p = base / 4096; p < (base + 2 ** lg2) / 4096; p++) {
              const words = t.memory.readPage(p);
              for (let w = 0; words !== null && w < 1024; w += 2)
                if ((words[w]! | words[w + 1]!) !== 0) live.push(p * 4096 + w * 4);
            }
          for (const [which, word, bit] of flips) {
            const [base, lg2] = blocks[which % blocks.length]!;
            const entry =
              which % 4 !== 0 && live.length > 0
                ? live[word % live.length]!
                : base + (word % (2 ** lg2 / 8)) * 8;
            const pa = entry + (bit >= 32 ? 4 : 0);
            t.memory.write32(pa, (t.memory.read32(pa) ^ (1 << (bit % 32))) >>> 0);
          }
          const hw = b.hw;
          queueWords.forEach((w, i) => {
            t.memory.write64(hw.queueBase + ((Number(hw.iqt) + i * 8) % 4096), w);
          });
          const offsets = [
            Reg.GCMD,
            Reg.RTADDR,
            Reg.CCMD,
            Reg.FSTS,
            Reg.FECTL,
            Reg.IQT,
            Reg.IQA,
            0x9c,
            0xa0,
            hw.ivaOffset,
            hw.ivaOffset + 8,
            hw.frcdOffset + 8,
            hw.frcdOffset + 12,
          ];
          for (const w of writes) {
            const off =
              w.which % 3 === 0 ? ((w.which >>> 2) % 0x400) & ~3 : offsets[w.which % offsets.length]!;
            hw.writeRegister(off, w.value, w.size);
          }
          checkRegisters(b);
          const reads = countReads(b);
          for (const q of reqs) checkRequest(b, { ...q, sid: validSid(q.sid) ? q.sid % 3 : q.sid }, reads);
        },
      ),
      { numRuns: 30 },
    );
  });
});
