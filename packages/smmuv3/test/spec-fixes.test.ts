/**
 * Issue 15, "correct off the common path": each rule below is read from ARM IHI 0070 (or
 * the Linux function named) and failed before its fix.
 */
import { Access } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { encodeL1Std } from "../src/format/ste.ts";
import { chain4k, encodeLeafPte, encodeTablePte, rig, STRTAB, s1Cd, s1Ste } from "./rig.ts";

const R = Access.READ;
const CD = 0x40_0000;
const PT = 0x50_0000;
const PA = 0x1234_5000;
const IOVA = 0x7f12_3456_7000;
const L2 = 0x60_0000;

/** A stage-1 STE at `steAt` whose CD maps IOVA -> PA through a 4K 4-level chain. */
function s1At(r: ReturnType<typeof rig>, steAt: number): void {
  const ste = s1Ste(CD);
  r.cd(CD, s1Cd(PT));
  chain4k(r, PT, IOVA, encodeLeafPte(BigInt(PA), 3, { ap: 1, ng: 1 }));
  // r.ste writes at STRTAB + sid * 64; write at an arbitrary address through sid arithmetic.
  const sid = (steAt - STRTAB) / 64;
  r.ste(sid, ste);
}

describe("6.3.24 SMMU_STRTAB_BASE: the effective base is aligned to the table", () => {
  it("linear: ADDR[LOG2SIZE + 5:0] = 0 (LOG2SIZE 8: 16 KiB), ADDR bits below are ignored", () => {
    const r = rig({}, { STRTAB_BASE: BigInt(STRTAB + 0x40) });
    s1At(r, STRTAB + 64); // StreamID 1 of a table at STRTAB
    expect(r.x(1, -1, IOVA + 8, R)).toMatchObject({ ok: true, pa: PA + 8 });
    expect(r.b.explain(1, -1, BigInt(IOVA + 8), R)[0]).toMatchObject({ what: "STE", address: STRTAB + 64 });
  });

  it("2-level: ADDR[MAX(5, LOG2SIZE - SPLIT - 1 + 3):0] = 0 (LOG2SIZE 16, SPLIT 6: an 8 KiB L1)", () => {
    const IDR0 = rig().b.hw.readRegister("IDR0") | (1n << 27n); // ST_LEVEL = 2-level
    const r = rig(
      {},
      { IDR0, STRTAB_BASE: BigInt(STRTAB + 0x1040), STRTAB_BASE_CFG: (1n << 16n) | (6n << 6n) | 16n },
    );
    r.memory.write64(STRTAB, encodeL1Std(7, L2)); // L1STD 0: 64 STEs at L2
    s1At(r, L2 + 64);
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
  });
});

describe("6.3.25 SMMU_STRTAB_BASE_CFG.SPLIT: other values are reserved, behave as 6", () => {
  for (const split of [7, 9, 11, 31]) {
    it(`SPLIT ${split} indexes the L1 with StreamID[LOG2SIZE-1:6]`, () => {
      const IDR0 = rig().b.hw.readRegister("IDR0") | (1n << 27n);
      const cfg = (1n << 16n) | (BigInt(split) << 6n) | 16n;
      const r = rig({}, { IDR0, STRTAB_BASE_CFG: cfg });
      // StreamID 0x41 = L1 index 1, L2 index 1 with SPLIT 6.
      r.memory.write64(STRTAB + 8, encodeL1Std(7, L2));
      s1At(r, L2 + 64);
      expect(r.x(0x41, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
    });
  }
});

describe("5.4 CD.TTB0 + DDI 0487 TTBR_ELx.BADDR: aligned to the start-level table, not to 64", () => {
  it("T0SZ 33 (4K): a 16-byte level-1 table at a 16-byte-aligned TTB0 (IPS 48)", () => {
    const r = rig();
    const ttb = PT + 0x10;
    r.ste(1, s1Ste(CD));
    r.cd(CD, s1Cd(ttb, { T0SZ: 33 }));
    const iova = 0x4000_1000 + 0x123; // L1 index 1, L2 0, L3 1
    r.pte(ttb + 8, encodeTablePte(BigInt(PT + 0x1000)));
    r.pte(PT + 0x1000, encodeTablePte(BigInt(PT + 0x2000)));
    r.pte(PT + 0x2000 + 8, encodeLeafPte(BigInt(PA), 3, { ap: 1, ng: 1 }));
    expect(r.x(1, -1, iova, R)).toMatchObject({ ok: true, pa: PA + 0x123, sizeLg2: 12 });
    expect(r.b.explain(1, -1, BigInt(iova), R)[2]).toMatchObject({ what: "S1 L1", address: ttb + 8 });
  });
});

describe("7.4 / 6.3.30-6.3.31 event queue overflow: OVFLG changes once per episode", () => {
  it("two and three losses in one episode leave OVFLG toggled once; after OVACKFLG the next episode toggles back", () => {
    const r = rig(); // EVENTQ LOG2SIZE 3: 8 records
    const ovf = () => r.b.hw.readRegister("EVENTQ_PROD") >> 31n;
    for (let i = 0; i < 8; i++) expect(r.fault(0x100 + i, -1, 0, R).recorded).toBe(true);
    expect(r.fault(0x200, -1, 0, R).recorded).toBe(false);
    expect(r.fault(0x201, -1, 0, R).recorded).toBe(false);
    expect(ovf()).toBe(1n);
    expect(r.fault(0x202, -1, 0, R).recorded).toBe(false);
    expect(ovf()).toBe(1n);
    expect(r.b.hw.eventsDropped).toBe(3);
    // Software consumes and acknowledges (EVENTQ_CONS.OVACKFLG [31] = OVFLG): no overflow now.
    expect(r.events()).toHaveLength(8);
    expect(r.b.hw.readRegister("EVENTQ_CONS") >> 31n).toBe(1n);
    for (let i = 0; i < 8; i++) expect(r.fault(0x300 + i, -1, 0, R).recorded).toBe(true);
    expect(ovf()).toBe(1n); // a full queue alone is no overflow
    expect(r.fault(0x400, -1, 0, R).recorded).toBe(false);
    expect(r.fault(0x401, -1, 0, R).recorded).toBe(false);
    expect(ovf()).toBe(0n);
  });
});

describe("explain narrates what translate does (HTTU included, nothing written)", () => {
  it("CD.HA=1 with AF=0: translate sets AF and succeeds; explain reports success and writes nothing", () => {
    const r = rig();
    r.ste(1, s1Ste(CD));
    r.cd(CD, s1Cd(PT, { HA: 1 }));
    const entries = chain4k(r, PT, IOVA, encodeLeafPte(BigInt(PA), 3, { ap: 1, ng: 1, af: 0 }));
    const before = r.memory.read64(entries[3]!);
    const steps = r.b.explain(1, -1, BigInt(IOVA), R);
    expect(steps.at(-1)).toMatchObject({ what: "result", address: PA });
    expect(r.memory.read64(entries[3]!)).toBe(before);
    expect(r.x(1, -1, IOVA, R)).toMatchObject({ ok: true, pa: PA });
    expect(r.memory.read64(entries[3]!)).toBe(before | 0x400n);
  });
});

describe("6.3.24-6.3.25: STRTAB_BASE(_CFG) are guarded by SMMUEN (a write while enabled is IGNORED, v3.2+)", () => {
  it("a write while SMMUEN=1 changes nothing; with SMMUEN=0 it applies", () => {
    const r = rig();
    s1At(r, STRTAB + 64);
    r.b.hw.writeRegister("STRTAB_BASE_CFG", 0n);
    r.b.hw.writeRegister("STRTAB_BASE", 0x20_0000n);
    expect(r.b.hw.readRegister("STRTAB_BASE_CFG")).toBe(8n);
    expect(r.b.explain(1, -1, BigInt(IOVA), R).at(-1)).toMatchObject({ address: PA });
    r.b.hw.writeRegister("CR0", 0xcn);
    r.b.hw.writeRegister("STRTAB_BASE_CFG", 0n);
    expect(r.b.hw.readRegister("STRTAB_BASE_CFG")).toBe(0n);
  });
});

describe("5.2 STE.S2TTB: aligned to the start-level table (64 bytes only with a 52-bit S2PS)", () => {
  it("S2T0SZ 33, S2SL0 1 (4K, level 1, 2 entries): a 16-byte table at a 16-byte-aligned S2TTB", () => {
    const r = rig();
    const ttb = PT + 0x30;
    r.ste(1, {
      V: 1,
      Config: 6,
      S2VMID: 3,
      S2T0SZ: 33,
      S2SL0: 1,
      S2TG: 0,
      S2PS: 5,
      S2AA64: 1,
      S2R: 1,
      S2TTB: ttb,
    });
    r.pte(ttb + 8, encodeTablePte(BigInt(PT + 0x1000))); // IPA 0x4000_0000: level-1 index 1
    r.pte(PT + 0x1000, encodeTablePte(BigInt(PT + 0x2000)));
    r.pte(PT + 0x2000 + 8, encodeLeafPte(BigInt(PA), 3, { ap: 3 })); // S2AP [7:6] = RW
    const t = r.x(1, -1, 0x4000_1010, R);
    expect(t).toMatchObject({ ok: true, pa: PA + 0x10 });
  });
});
