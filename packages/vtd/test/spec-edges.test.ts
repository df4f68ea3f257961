/**
 * Issue 15, "correct off the common path": one test per rule the common path does not
 * exercise, each built from the VT-d spec section it cites. FPD qualification (7.1.3,
 * 9.3, 9.4, 9.5, 9.6), second-stage reserved bits under capability conditions (9.8),
 * the first-stage PAT bit of large leaves (9.7), recording while PFO is set (7.2.1),
 * and misuse and address-width rules on every translate entry point.
 */

import { Access, createTranslation, Intent, IommuError, NO_PASID, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { vtdFromRegisters } from "../src/backend.ts";
import { Fr } from "../src/format/fault-record.ts";
import { fsFormat } from "../src/format/fs-pte.ts";
import { encodePasidDirEntry, Pgtt } from "../src/format/pasid-entry.ts";
import { Fectl, Fsts, Reg } from "../src/format/registers.ts";
import { fresh } from "./helpers.ts";
import type { Rig } from "./rig.ts";
import { DIR, PTBL, rig, SID } from "./rig.ts";

const R: number = Access.READ;
const ECAP_DT = 1n << 2n;
const ECAP_SC = 1n << 7n;

/** The fault code of a failed translate, or the PA. */
function run(
  r: Rig,
  sid: number,
  pasid: number,
  iova: number,
  access = R,
): { pa: number; code: number | null } {
  const out = createTranslation();
  const ok = r.hw.translate(sid, pasid, iova, access, out);
  return ok ? { pa: out.pa, code: null } : { pa: -1, code: out.fault!.vendor.code };
}

describe("FPD qualifies faults of the entry that carries it (spec 7.1.3, 9.3, 9.4, 9.5, 9.6)", () => {
  // 9.3 / 9.4: FPD "is evaluated by hardware irrespective of the setting of the present (P) field":
  // a not-present or invalid context entry with FPD = 1 still blocks the request, unrecorded.
  it("9.3: legacy context entry not present (0x2) with FPD = 1: blocked, not recorded, FPD reported", () => {
    const r = rig({ mode: "legacy" });
    r.legacyContext({ present: false, fpd: true });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.CONTEXT_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(false);
    expect(out.fault!.vendor.fields.FPD).toBe(true);
    expect(r.hw.pendingFaults()).toHaveLength(0);
    expect(r.hw.fsts & Fsts.PPF).toBe(0);
  });

  it("9.3: legacy context entry invalid (TT = 11b, 0x3) with FPD = 1 is not recorded; FPD = 0 is", () => {
    for (const fpd of [true, false]) {
      const r = rig({ mode: "legacy" });
      r.legacyContext({ tt: 3, slptptr: r.page(), fpd });
      const out = createTranslation();
      expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
      expect(out.fault!.vendor.code).toBe(Fr.CONTEXT_INVALID);
      expect(out.fault!.recorded).toBe(!fpd);
      expect(r.hw.pendingFaults()).toHaveLength(fpd ? 0 : 1);
    }
  });

  it("9.4: scalable-mode context entry not present (0x41) with FPD = 1: not recorded", () => {
    const r = rig();
    r.scalableContext({ present: false, fpd: true });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.SM_CONTEXT_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(false);
    expect(out.fault!.vendor.fields.FPD).toBe(true);
  });

  it("9.5: PASID directory entry not present (0x51) with its own FPD = 1: not recorded", () => {
    const r = rig();
    r.scalableContext();
    r.w64(DIR, encodePasidDirEntry({ present: false, fpd: true, tablePtr: PTBL }));
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.SM_PASID_DIR_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(false);
  });

  it("9.6: PASID table entry not present (0x59) with its own FPD = 1: not recorded", () => {
    const r = rig();
    r.scalableContext();
    r.pasidEntry(0, { present: false, fpd: true });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.SM_PASID_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(false);
  });

  it("7.1.3: a root-entry fault is not qualified: recorded even when the context entry has FPD", () => {
    const r = rig({ mode: "legacy" });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.ROOT_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(true);
  });
});

describe("second-stage reserved bits under capability conditions (spec 9.8)", () => {
  /** A legacy or scalable second-stage mapping of 0x1000 (or 0x20_0000 at level 1) with TM (bit 62) set. */
  function withTm(r: Rig, leafLevel: number): number {
    const root = r.page();
    if (r.scalable) {
      r.scalableContext();
      r.pasidEntry(0, { ssptptr: root });
    } else {
      r.legacyContext({ slptptr: root });
    }
    const iova = leafLevel === 0 ? 0x1000 : 0x20_0000;
    const path = r.ssMap(root, 4, iova, { addr: leafLevel === 0 ? 0x5000 : 0x40_0000 }, leafLevel);
    const leaf = path.at(-1)!;
    r.w64(leaf, r.memory.read64(leaf) | (1n << 62n));
    return iova;
  }

  it("9.8: TM (bit 62) of a leaf is reserved when ECAP.DT = 0: 0xC legacy, 0x7A scalable", () => {
    for (const level of [0, 1]) {
      const legacy = rig({ mode: "legacy" }, ECAP_DT);
      expect(run(legacy, SID, NO_PASID, withTm(legacy, level)).code).toBe(Fr.PTE_RESERVED);
      const sm = rig({}, ECAP_DT);
      expect(run(sm, SID, NO_PASID, withTm(sm, level)).code).toBe(Fr.SS_RESERVED);
    }
  });

  it("9.8 (rev 3.2 on): TM is Reserved(0) with ECAP.DT = 1 too (QEMU stale-tm off)", () => {
    const legacy = rig({ mode: "legacy" });
    expect(run(legacy, SID, NO_PASID, withTm(legacy, 0) + 0x34).code).toBe(Fr.PTE_RESERVED);
    const sm = rig();
    expect(run(sm, SID, NO_PASID, withTm(sm, 1) + 0x1234).code).toBe(Fr.SS_RESERVED);
  });

  /** The same mapping with bit 11 set in the leaf (`leaf`) or in the level-3 table entry. */
  function withBit11(r: Rig, where: "leaf" | "table"): number {
    const root = r.page();
    if (r.scalable) {
      r.scalableContext();
      r.pasidEntry(0, { ssptptr: root });
    } else {
      r.legacyContext({ slptptr: root });
    }
    const path = r.ssMap(root, 4, 0x1000, { addr: 0x5000 });
    const at = where === "leaf" ? path.at(-1)! : path[0]!;
    r.w64(at, r.memory.read64(at) | 0x800n);
    return 0x1000;
  }

  it("9.8: leaf bit 11 (SNP) without ECAP.SC: reserved in legacy mode (0xC), ignored in scalable mode", () => {
    const legacy = rig({ mode: "legacy" }, ECAP_SC);
    expect(legacy.hw.ecapReg & ECAP_SC).toBe(0n);
    expect(run(legacy, SID, NO_PASID, withBit11(legacy, "leaf") + 0x34).code).toBe(Fr.PTE_RESERVED);
    const sm = rig({}, ECAP_SC);
    expect(run(sm, SID, NO_PASID, withBit11(sm, "leaf") + 0x34)).toEqual({ pa: 0x5034, code: null });
  });

  it("9.8: with ECAP.SC a legacy leaf may set SNP", () => {
    const legacy = rig({ mode: "legacy" });
    expect(legacy.hw.ecapReg & ECAP_SC).toBe(ECAP_SC);
    expect(run(legacy, SID, NO_PASID, withBit11(legacy, "leaf") + 0x34)).toEqual({ pa: 0x5034, code: null });
  });

  it("9.8: bit 11 of a non-leaf entry stays reserved without ECAP.SC in both modes (0xC / 0x7A)", () => {
    const legacy = rig({ mode: "legacy" }, ECAP_SC);
    expect(run(legacy, SID, NO_PASID, withBit11(legacy, "table")).code).toBe(Fr.PTE_RESERVED);
    const sm = rig({}, ECAP_SC);
    expect(run(sm, SID, NO_PASID, withBit11(sm, "table")).code).toBe(Fr.SS_RESERVED);
  });

  it("9.8: bits 61:52 and 63 of a leaf stay ignored", () => {
    const r = rig({ mode: "legacy" });
    const root = r.page();
    r.legacyContext({ slptptr: root });
    const leaf = r.ssMap(root, 4, 0x1000, { addr: 0x5000 }).at(-1)!;
    r.w64(leaf, r.memory.read64(leaf) | 0xbff0_0000_0000_0000n);
    expect(run(r, SID, NO_PASID, 0x1034)).toEqual({ pa: 0x5034, code: null });
  });
});

describe("first-stage large leaves: bit 12 is PAT, not an address bit (spec 9.7)", () => {
  function fsLarge(r: Rig, iova: number, addr: number, level: number): void {
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root });
    const path = r.fsMap(root, 4, iova, { addr }, level);
    const leaf = path.at(-1)!;
    r.w64(leaf, r.memory.read64(leaf) | 0x1000n); // PAT
  }

  it("9.7: a 2 MiB leaf with PAT = 1 maps the 2 MiB frame its bits 51:21 name", () => {
    const r = rig();
    fsLarge(r, 0x20_0000, 0x60_0000, 1);
    const out = createTranslation();
    expect(r.hw.translate(SID, 5, 0x20_1234, R, out)).toBe(true);
    expect([out.pa, out.sizeLg2]).toEqual([0x60_1234, 21]);
  });

  it("9.7: a 1 GiB leaf with PAT = 1 maps the 1 GiB frame its bits 51:30 name", () => {
    const r = rig();
    fsLarge(r, 0x4000_0000, 0x8000_0000, 2);
    const out = createTranslation();
    expect(r.hw.translate(SID, 5, 0x4012_3456, R, out)).toBe(true);
    expect([out.pa, out.sizeLg2]).toEqual([0x8012_3456, 30]);
  });

  it("9.7 / 3.6: PAT on the top 2 MiB frame never yields a PA at 2^52", () => {
    const r = rig({ haw: 52 });
    fsLarge(r, 0x20_0000, 2 ** 52 - 2 ** 21, 1);
    const out = createTranslation();
    expect(r.hw.translate(SID, 5, 0x3f_f000, R, out)).toBe(true);
    expect(out.pa).toBe(2 ** 52 - 0x1000);
  });

  it("9.7: the format plug-in drops PAT from a large leaf's address, not from a table's", () => {
    const f = fsFormat(4, 2);
    expect(f.entryAddress((0x60_0000 | 0x1000 | 0x80 | 1) >>> 0, 0, 1)).toBe(0x60_0000);
    expect(f.entryAddress((0x60_0000 | 0x1000 | 1) >>> 0, 0, 1)).toBe(0x60_1000);
    expect(f.entryAddress((0x1000 | 1) >>> 0, 0, 0)).toBe(0x1000);
  });
});

describe("primary fault overflow (spec 7.2.1, 11.4.9.1)", () => {
  it("7.2.1: no fault is recorded while FSTS.PFO is set, even with a free FRCD; clearing PFO resumes", () => {
    const r = rig({ mode: "legacy", faultRecords: 2 });
    const hw = r.hw;
    const out = createTranslation();
    for (const sid of [1, 2, 3]) hw.translate(sid, NO_PASID, 0, R, out);
    expect(hw.fsts & Fsts.PFO).toBe(Fsts.PFO);
    hw.writeRegister(hw.frcdOffset + 12, 1n << 31n, 4); // software frees FRCD 0
    expect(hw.pendingFaults().map((p) => p.index)).toEqual([1]);
    hw.translate(4, NO_PASID, 0, R, out);
    expect(out.fault!.recorded).toBe(false);
    expect(hw.pendingFaults().map((p) => p.index)).toEqual([1]);
    hw.writeRegister(Reg.FSTS, BigInt(Fsts.PFO), 4);
    hw.translate(5, NO_PASID, 0, R, out);
    expect(out.fault!.recorded).toBe(true);
    expect(hw.pendingFaults().map((p) => [p.index, Number(p.words[1] & 0xffffn)])).toEqual([
      [0, 5],
      [1, 2],
    ]);
  });

  it("Linux dmar_fault: the driver reads FRCDs from FSTS.FRI on, clears each F, then clears PFO", () => {
    const { backend: b } = fresh({ mode: "legacy", faultRecords: 2 });
    const hw = b.hw;
    const out = createTranslation();
    hw.writeRegister(Reg.FECTL, BigInt(Fectl.IM >>> 0), 4);
    b.translate(1, NO_PASID, 0, R, out); // FRCD 0
    hw.writeRegister(hw.frcdOffset + 12, 1n << 31n, 4);
    b.translate(2, NO_PASID, 0, R, out); // FRCD 1, FRI = 1
    b.translate(3, NO_PASID, 0, R, out); // FRCD 0
    b.translate(4, NO_PASID, 0, R, out); // overflow: PFO
    expect(hw.fsts & (Fsts.PFO | Fsts.PPF)).toBe(Fsts.PFO | Fsts.PPF);
    expect((hw.fsts >>> 8) & 0xff).toBe(1);
    hw.writeRegister(Reg.FECTL, 0n, 4); // unmask: the pending event runs the handler
    expect(b.faultLog.map((w) => Number(w[1] & 0xffffn))).toEqual([2, 3]);
    expect(Number(hw.readRegister(Reg.FSTS, 4)) & 0xff).toBe(0);
    expect(b.translate(5, NO_PASID, 0, R, out)).toBe(false);
    expect(out.fault!.recorded).toBe(true);
    expect(b.faultLog.map((w) => Number(w[1] & 0xffffn))).toEqual([2, 3, 5]);
  });
});

describe("misuse and hostile addresses on every entry point (IommuError, spec 3.4.3 widths)", () => {
  const DEV = 0x0100;
  function mapped(): ReturnType<typeof fresh>["backend"] {
    const { backend: b } = fresh();
    b.addDevice({ rid: DEV, pasidBits: 20 });
    b.addDevice({ rid: DEV + 1, pasidBits: 20 });
    const d = b.allocDomain({ type: "paging" });
    d.map(0x1000, 0x9000, 0x1000, Perm.R | Perm.W);
    b.attach(DEV, Intent.rid, d);
    b.attach(DEV, Intent.pasid(5), d);
    b.attach(DEV + 1, Intent.pasid(5), d);
    const out = createTranslation();
    // Warm every cache: configurations, IOTLB, micro-TLB.
    for (let i = 0; i < 2; i++) {
      b.translate(DEV, NO_PASID, 0x1000, R, out);
      b.translate(DEV, 5, 0x1000, R, out);
      b.translate(DEV + 1, 5, 0x1000, R, out);
    }
    return b;
  }

  function code(f: () => unknown): string {
    try {
      f();
    } catch (e) {
      return e instanceof IommuError ? e.code : `not IommuError: ${String(e)}`;
    }
    return "no error";
  }

  it("IOVA -4096 (page -1, the IOTLB's empty marker) is refused at once, cached or not", () => {
    const b = mapped();
    const out = createTranslation();
    for (const pasid of [NO_PASID, 5]) {
      expect(code(() => b.translate(DEV, pasid, -4096, R, out))).toBe("EINVAL");
      expect(code(() => b.translate(DEV, pasid, -8192, R, out))).toBe("EINVAL");
    }
  });

  it("a non-integer IOVA is refused, not served by the micro-TLB as page 1 + 0.5", () => {
    const b = mapped();
    const out = createTranslation();
    expect(code(() => b.translate(DEV, NO_PASID, 4096.5, R, out))).toBe("EINVAL");
    expect(code(() => b.translate(DEV, 5, 4096.5, R, out))).toBe("EINVAL");
  });

  it("an out-of-range PASID never aliases a cached (source-id + 1, PASID) configuration", () => {
    const b = mapped();
    // DEV * 2^20 + 2^20 + 5 is the cache key of (DEV + 1, 5).
    expect(code(() => b.translate(DEV, 0x10_0005, 0x1000, R, createTranslation()))).toBe("EINVAL");
  });

  it("bad source-id, PASID and IOVA are refused identically by translate, translateBig and explain", () => {
    for (const enabled of [true, false]) {
      const b = mapped();
      if (!enabled) b.hw.writeRegister(Reg.GCMD, 0n, 4);
      const out = createTranslation();
      const bads: Array<[number, number]> = [
        [1.5, NO_PASID],
        [-1, NO_PASID],
        [0x1_0000, NO_PASID],
        [Number.NaN, 5],
        [DEV, 1.5],
        [DEV, 0x10_0000],
        [DEV, -2],
      ];
      for (const [sid, pasid] of bads) {
        expect(code(() => b.translate(sid, pasid, 0x1000, R, out))).toBe("EINVAL");
        expect(code(() => b.translateBig(sid, pasid, 0x1000n, R))).toBe("EINVAL");
        expect(code(() => b.translateBig(sid, pasid, 2n ** 60n, R))).toBe("EINVAL");
        expect(code(() => b.explain(sid, pasid, 0x1000n, R))).toBe("EINVAL");
        expect(code(() => b.explain(sid, pasid, 2n ** 60n, R))).toBe("EINVAL");
      }
      for (const iova of [-1, -4096, 0.5, 2 ** 53, 2 ** 64, Number.NaN, Number.POSITIVE_INFINITY])
        expect(code(() => b.translate(DEV, NO_PASID, iova, R, out))).toBe("EINVAL");
      for (const iova of [-1n, 2n ** 64n]) {
        expect(code(() => b.translateBig(DEV, NO_PASID, iova, R))).toBe("EINVAL");
        expect(code(() => b.explain(DEV, NO_PASID, iova, R))).toBe("EINVAL");
      }
    }
  });

  it("10.4.5 / 8.1: with TES = 0 an address at or above 2^HAW is not a PA (address-size fault)", () => {
    const { memory } = fresh();
    const snap = vtdFromRegisters(memory, { HAW: 48n });
    const out = createTranslation();
    expect(snap.translate(1, NO_PASID, 2 ** 48 - 4096, R, out)).toBe(true);
    expect(out.pa).toBe(2 ** 48 - 4096);
    expect(snap.translate(1, NO_PASID, 2 ** 50, R, out)).toBe(false);
    expect(out.fault!.class).toBe("address-size");
    const big = snap.translateBig(1, NO_PASID, 2n ** 50n, R);
    expect(big.ok ? null : big.fault.class).toBe("address-size");
    expect(snap.explain(1, NO_PASID, 2n ** 50n, R).at(-1)!.what).toBe("fault");
  });
});

describe("explain agrees with translate (spec 7.1.3 order of checks)", () => {
  function explained(r: Rig, sid: number, pasid: number, iova: number, access = R): string {
    return r.hw.explainWalk(sid, pasid, iova, access).at(-1)!.note;
  }

  it("3.6.2 / 9.6: a supervisor request with SRE = 0 is 0x5D in both, before any first-stage read", () => {
    const r = rig();
    r.scalableContext();
    r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: r.page(), sre: false });
    expect(run(r, SID, 5, 0x1000, R | Access.PRIV).code).toBe(Fr.SM_SRE_CLEAR);
    expect(explained(r, SID, 5, 0x1000, R | Access.PRIV)).toMatch(/^fault 0x5d:/);
  });

  it("3.15: an output in the interrupt range is 0xE in both", () => {
    const r = rig({ mode: "legacy" });
    const root = r.page();
    r.legacyContext({ slptptr: root });
    r.ssMap(root, 4, 0x1000, { addr: 0xfee0_0000 });
    expect(run(r, SID, NO_PASID, 0x1000).code).toBe(Fr.INTERRUPT_RANGE);
    expect(explained(r, SID, NO_PASID, 0x1000)).toMatch(/^fault 0xe:/);
  });

  it("9.3: pass-through beyond the host address width is 0x4 in both", () => {
    const r = rig({ mode: "legacy" });
    r.legacyContext({ tt: 2 });
    expect(run(r, SID, NO_PASID, 2 ** 49).code).toBe(Fr.BEYOND_AGAW);
    expect(explained(r, SID, NO_PASID, 2 ** 49)).toMatch(/^fault 0x4:/);
    const ok = r.hw.explainWalk(SID, NO_PASID, 0x1234, R).at(-1)!;
    expect([ok.note, ok.address]).toEqual(["pass-through", 0x1234]);
  });
});

describe("registers read as unsigned 64-bit values (spec 10.4)", () => {
  it("a snapshot's negative register values read back as their unsigned 64-bit patterns", () => {
    const { memory } = fresh();
    const snap = vtdFromRegisters(memory, {
      IQH: -16n,
      IQT: -16n,
      CCMD: -1n,
      IVA: -1n,
      IOTLB: -1n,
      IQA: -1n,
    });
    for (const name of ["IQH", "IQT", "CCMD", "IVA", "IOTLB", "IQA"]) {
      const v = snap.hw.readNamed(name);
      expect(v >= 0n && v < 2n ** 64n).toBe(true);
    }
    expect(snap.hw.readNamed("CCMD")).toBe(2n ** 64n - 1n);
    expect(snap.hw.readNamed("IQH")).toBe(0x7fff0n); // IQH_REG QH is bits 18:4 (spec 11.4.10.1)
  });
});
