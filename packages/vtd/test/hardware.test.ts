/**
 * The register interface, primary fault logging and the invalidation queue of the
 * hardware model (spec 6.5, 7.2, 10, 11).
 */

import { Access, createTranslation, NO_PASID } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { decodeFaultRecord, Fr } from "../src/format/fault-record.ts";
import type { InvDescriptor } from "../src/format/inv-desc.ts";
import { encodeDescriptor } from "../src/format/inv-desc.ts";
import { Pgtt } from "../src/format/pasid-entry.ts";
import { Fectl, Fsts, Gcmd, IQA_DW, Iqei, Reg } from "../src/format/registers.ts";
import type { Rig } from "./rig.ts";
import { CTX, PTBL, ROOT, rig, SID } from "./rig.ts";

const R = Access.READ;
const QUEUE = 0x30_0000;
const STATUS = 0x30_8000;

/** Enables queued invalidation with the queue at QUEUE. */
function enableQi(r: Rig, dw: boolean): void {
  r.hw.writeRegister(Reg.IQA, BigInt(QUEUE) | (dw ? BigInt(IQA_DW) : 0n));
  r.hw.writeRegister(Reg.IQT, 0n);
  r.hw.writeRegister(Reg.GCMD, BigInt((Gcmd.TE | Gcmd.QIE) >>> 0), 4);
}

/** Writes descriptors at the tail and moves IQT past them. */
function queue(r: Rig, descs: ReadonlyArray<InvDescriptor | bigint[]>): void {
  const hw = r.hw;
  const size = hw.descriptorBytes;
  let tail = Number(hw.iqt) / size;
  for (const d of descs) {
    const words = Array.isArray(d) ? d : encodeDescriptor(d);
    const all = size === 32 && words.length === 2 ? [...words, 0n, 0n] : words;
    all.forEach((w, i) => {
      r.w64(QUEUE + tail * size + i * 8, w);
    });
    tail = (tail + 1) % hw.queueEntries;
  }
  hw.writeRegister(Reg.IQT, BigInt(tail * size));
}

function legacyWith(r: Rig, pa: number): number {
  const root = r.page();
  r.legacyContext({ slptptr: root });
  r.ssMap(root, 4, 0x1000, { addr: pa });
  return root;
}

function pa(r: Rig, sid: number, pasid: number, iova: number, access: number = R): number {
  const out = createTranslation();
  return r.hw.translate(sid, pasid, iova, access, out) ? out.pa : -(out.fault!.vendor.code ?? 1);
}

describe("GCMD / GSTS / RTADDR", () => {
  it("TE, SRTP and QIE are reflected in GSTS; GCMD reads as 0", () => {
    const r = rig({ mode: "legacy" });
    const hw = r.hw;
    expect(Number(hw.readRegister(Reg.GSTS, 4)) >>> 0).toBe((Gcmd.TE | Gcmd.SRTP) >>> 0);
    expect(hw.readRegister(Reg.GCMD, 4)).toBe(0n);
    hw.writeRegister(Reg.GCMD, 0n, 4);
    expect(hw.enabled).toBe(false);
    hw.writeRegister(Reg.GCMD, BigInt(Gcmd.QIE), 4);
    expect(hw.gsts & Gcmd.QIE).toBe(Gcmd.QIE);
  });

  it("RTADDR takes effect only on SRTP", () => {
    const r = rig({ mode: "legacy" });
    legacyWith(r, 0x5000);
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    r.hw.writeRegister(Reg.RTADDR, 0x70_0000n);
    r.hw.flushAll();
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    r.hw.writeRegister(Reg.GCMD, BigInt((Gcmd.TE | Gcmd.SRTP) >>> 0), 4);
    r.hw.flushAll();
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(-Fr.ROOT_NOT_PRESENT);
  });

  it("abort-DMA mode (TTM = 11b) blocks everything without a record", () => {
    const r = rig();
    r.hw.writeRegister(Reg.RTADDR, BigInt(ROOT) | (3n << 10n));
    r.hw.writeRegister(Reg.GCMD, BigInt((Gcmd.TE | Gcmd.SRTP) >>> 0), 4);
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0, R, out)).toBe(false);
    expect(out.fault).toMatchObject({ class: "blocked", recorded: false });
    expect(out.fault!.vendor.code).toBe(null);
    expect(r.hw.pendingFaults()).toHaveLength(0);
  });

  it("32-bit accesses reach either half of a 64-bit register", () => {
    const r = rig({ mode: "legacy" });
    r.hw.writeRegister(Reg.RTADDR, 0x1234_5000n, 4);
    r.hw.writeRegister(Reg.RTADDR + 4, 0x9n, 4);
    expect(r.hw.readRegister(Reg.RTADDR)).toBe(0x9_1234_5000n);
    expect(r.hw.readRegister(Reg.RTADDR + 4, 4)).toBe(9n);
    expect(r.hw.readRegister(Reg.CAP + 4, 4)).toBe(r.hw.capReg >> 32n);
    expect(r.hw.readNamed("ecap")).toBe(r.hw.ecapReg);
    expect(() => r.hw.readNamed("NOPE")).toThrow(/unknown VT-d register/);
  });
});

describe("register-based invalidation", () => {
  it("context cache stays stale until CCMD, then ICC clears and CAIG reports the granularity", () => {
    const r = rig({ mode: "legacy" });
    legacyWith(r, 0x5000);
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    // A new table for the device, mapping 0x2000 too; the cached context keeps the old one.
    const root2 = r.page();
    r.ssMap(root2, 4, 0x2000, { addr: 0x8000 });
    r.legacyContext({ slptptr: root2, did: 2 });
    expect(pa(r, SID, NO_PASID, 0x2000)).toBe(-Fr.NO_READ);
    // Device-selective: CIRG 11b, SID 31:16.
    r.hw.writeRegister(Reg.CCMD, (1n << 63n) | (3n << 61n) | (BigInt(SID) << 16n));
    const ccmd = r.hw.readRegister(Reg.CCMD);
    expect(ccmd >> 63n).toBe(0n);
    expect((ccmd >> 59n) & 3n).toBe(3n);
    expect(pa(r, SID, NO_PASID, 0x2000)).toBe(0x8000);
  });

  it("IOTLB page-selective invalidation through IVA (AM) and IAIG", () => {
    const r = rig({ mode: "legacy" });
    const root = legacyWith(r, 0x5000);
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    r.ssMap(root, 4, 0x1000, { addr: 0x6000 });
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    const iotlb = r.hw.ivaOffset + 8;
    // Page 0x0 with AM 1 covers 0x0-0x1fff; DID 2 does not match.
    r.hw.writeRegister(r.hw.ivaOffset, 0x0n | 1n);
    r.hw.writeRegister(iotlb, (1n << 63n) | (3n << 60n) | (2n << 32n));
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    r.hw.writeRegister(iotlb, (1n << 63n) | (3n << 60n) | (1n << 32n));
    expect((r.hw.readRegister(iotlb) >> 57n) & 3n).toBe(3n);
    expect(r.hw.readRegister(iotlb) >> 63n).toBe(0n);
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x6000);
  });

  it("an AM above MAMV is not performed (IAIG = 0)", () => {
    const r = rig({ mode: "legacy" });
    const iotlb = r.hw.ivaOffset + 8;
    r.hw.writeRegister(r.hw.ivaOffset, 19n);
    r.hw.writeRegister(iotlb, (1n << 63n) | (3n << 60n) | (1n << 32n));
    expect((r.hw.readRegister(iotlb) >> 57n) & 3n).toBe(0n);
  });
});

describe("primary fault logging (spec 7.2.1)", () => {
  it("records, sets PPF and FRI, and clears F with write-1-to-clear", () => {
    const r = rig({ mode: "legacy" });
    const hw = r.hw;
    expect(pa(r, SID, NO_PASID, 0x3000)).toBe(-Fr.ROOT_NOT_PRESENT);
    expect(hw.fsts & Fsts.PPF).toBe(Fsts.PPF);
    expect((hw.fsts >>> 8) & 0xff).toBe(0);
    const rec = decodeFaultRecord([hw.readRegister(hw.frcdOffset), hw.readRegister(hw.frcdOffset + 8)]);
    expect(rec).toMatchObject({ fi: 0x3000, sid: SID, fr: 1, f: true, t1: true });
    hw.writeRegister(hw.frcdOffset + 12, 1n << 31n, 4);
    expect(hw.readRegister(hw.frcdOffset + 8) >> 63n).toBe(0n);
    expect(hw.fsts & Fsts.PPF).toBe(0);
  });

  it("a second fault from the same source-id is not recorded while the first is pending", () => {
    const r = rig({ mode: "legacy" });
    const out = createTranslation();
    r.hw.translate(SID, NO_PASID, 0x1000, R, out);
    expect(out.fault!.recorded).toBe(true);
    r.hw.translate(SID, NO_PASID, 0x2000, Access.WRITE, out);
    expect(out.fault!.recorded).toBe(false);
    expect(r.hw.pendingFaults()).toHaveLength(1);
    r.hw.translate(SID + 1, NO_PASID, 0x2000, R, out);
    expect(out.fault!.recorded).toBe(true);
    expect(r.hw.pendingFaults().map((p) => Number(p.words[1] & 0xffffn))).toEqual([SID, SID + 1]);
  });

  it("FRI names the first pending record; later faults go to the next registers", () => {
    const r = rig({ mode: "legacy", faultRecords: 4 });
    const out = createTranslation();
    const hw = r.hw;
    r.hw.translate(1, NO_PASID, 0, R, out);
    hw.writeRegister(hw.frcdOffset + 12, 1n << 31n, 4);
    expect(hw.fsts & Fsts.PPF).toBe(0);
    r.hw.translate(2, NO_PASID, 0, R, out);
    r.hw.translate(3, NO_PASID, 0, R, out);
    expect((hw.fsts >>> 8) & 0xff).toBe(1);
    expect(hw.pendingFaults().map((p) => p.index)).toEqual([1, 2]);
  });

  it("overflow: a full FRCD at the next index sets PFO and loses the fault", () => {
    const r = rig({ mode: "legacy", faultRecords: 2 });
    const out = createTranslation();
    for (const sid of [1, 2]) r.hw.translate(sid, NO_PASID, 0, R, out);
    expect(r.hw.fsts & Fsts.PFO).toBe(0);
    r.hw.translate(3, NO_PASID, 0, R, out);
    expect(out.fault!.recorded).toBe(false);
    expect(r.hw.fsts & Fsts.PFO).toBe(Fsts.PFO);
    // PFO is write-1-to-clear.
    r.hw.writeRegister(Reg.FSTS, BigInt(Fsts.PFO), 4);
    expect(r.hw.fsts & Fsts.PFO).toBe(0);
  });

  it("FPD suppresses recording of qualified faults; the request still fails", () => {
    const r = rig({ mode: "legacy" });
    const root = r.page();
    r.legacyContext({ slptptr: root, fpd: true });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.NO_READ);
    expect(out.fault!.recorded).toBe(false);
    expect(out.fault!.vendor.fields.FPD).toBe(true);
    expect(r.hw.pendingFaults()).toHaveLength(0);
  });

  // This test used to assert the opposite (recorded). Spec 9.3: the context entry's FPD "is
  // evaluated by hardware irrespective of the setting of the present (P) field", and 7.1.3
  // lists a not-present context entry (0x2) as a qualified fault; QEMU vtd_qualified_faults agrees.
  it("FPD suppresses a fault of the entry that carries it (context not present, spec 9.3)", () => {
    const r = rig({ mode: "legacy" });
    r.legacyContext({ present: false, fpd: true });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.CONTEXT_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(false);
  });

  it("PASID-entry FPD suppresses its walk's faults (scalable)", () => {
    const r = rig();
    r.scalableContext();
    r.pasidEntry(0, { ssptptr: r.page(), fpd: true });
    const out = createTranslation();
    r.hw.translate(SID, NO_PASID, 0x1000, R, out);
    expect(out.fault!.vendor.code).toBe(Fr.SS_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(false);
  });

  it("context FPD suppresses faults found below it in scalable mode (PASID entry not present)", () => {
    const r = rig();
    r.scalableContext({ fpd: true });
    const out = createTranslation();
    r.hw.translate(SID, NO_PASID, 0x1000, R, out);
    expect(out.fault!.vendor.code).toBe(Fr.SM_PASID_NOT_PRESENT);
    expect(out.fault!.recorded).toBe(false);
  });

  it("legacy pass-through ignores SLPTPTR (even beyond the host address width)", () => {
    const r = rig({ mode: "legacy" });
    r.legacyContext({ tt: 2, slptptr: 2 ** 50 });
    expect(pa(r, SID, NO_PASID, 0x1234)).toBe(0x1234);
  });

  it("fault events: masked -> IP pending, unmasking delivers it", () => {
    const r = rig({ mode: "legacy" });
    r.hw.writeRegister(Reg.FECTL, BigInt(Fectl.IM >>> 0), 4);
    let events = 0;
    r.hw.onFaultEvent = () => {
      events++;
    };
    pa(r, SID, NO_PASID, 0);
    expect(r.hw.fectl & Fectl.IP).toBe(Fectl.IP);
    expect(events).toBe(0);
    r.hw.writeRegister(Reg.FECTL, 0n, 4);
    expect(events).toBe(1);
    expect(r.hw.fectl & Fectl.IP).toBe(0);
  });
});

describe("queued invalidation (spec 6.5.2)", () => {
  it("128-bit queue: descriptors run in order, the wait descriptor writes its status", () => {
    const r = rig({ mode: "legacy" });
    enableQi(r, false);
    const root = legacyWith(r, 0x5000);
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    r.ssMap(root, 4, 0x1000, { addr: 0x6000 });
    queue(r, [
      { type: "iotlb", g: 3, dr: false, dw: false, did: 1, addr: 0x1000, ih: false, am: 0 },
      { type: "wait", ifl: true, sw: true, fn: false, pd: false, statusData: 0x1234, statusAddr: STATUS },
    ]);
    expect(r.memory.read32(STATUS)).toBe(0x1234);
    expect(r.hw.readRegister(Reg.IQH)).toBe(32n);
    expect(r.hw.ics & 1).toBe(1);
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x6000);
  });

  it("a reserved bit sets IQE, halts the queue with IQH on the bad descriptor; clearing IQE resumes", () => {
    const r = rig({ mode: "legacy" });
    enableQi(r, false);
    const bad = encodeDescriptor({ type: "context-cache", g: 1, did: 0, sid: 0, fm: 0 });
    bad[1] = 1n;
    queue(r, [
      { type: "wait", ifl: false, sw: true, fn: false, pd: false, statusData: 1, statusAddr: STATUS },
      bad,
      { type: "wait", ifl: false, sw: true, fn: false, pd: false, statusData: 2, statusAddr: STATUS },
    ]);
    expect(r.hw.fsts & Fsts.IQE).toBe(Fsts.IQE);
    expect(r.hw.readRegister(Reg.IQH)).toBe(16n);
    expect(Number(r.hw.iqercd)).toBe(Iqei.RESERVED_FIELD);
    expect(r.memory.read32(STATUS)).toBe(1);
    // Software repairs the descriptor and clears IQE: processing resumes at IQH.
    r.w64(QUEUE + 16 + 8, 0n);
    r.hw.writeRegister(Reg.FSTS, BigInt(Fsts.IQE), 4);
    expect(r.hw.fsts & Fsts.IQE).toBe(0);
    expect(r.memory.read32(STATUS)).toBe(2);
    expect(r.hw.readRegister(Reg.IQH)).toBe(48n);
  });

  it("an unknown descriptor type sets IQE (IQEI = invalid type)", () => {
    const r = rig({ mode: "legacy" });
    enableQi(r, false);
    queue(r, [[0xfn, 0n]]);
    expect(r.hw.fsts & Fsts.IQE).toBe(Fsts.IQE);
    expect(Number(r.hw.iqercd)).toBe(Iqei.INVALID_TYPE);
  });

  it("a PASID-based descriptor in a 128-bit queue sets IQE", () => {
    const r = rig({ mode: "legacy" });
    enableQi(r, false);
    queue(r, [{ type: "pasid-cache", g: 3, did: 0, pasid: 0 }]);
    expect(Number(r.hw.iqercd)).toBe(Iqei.INVALID_WIDTH);
  });

  it("256-bit queue: IQT must be 32-byte aligned", () => {
    const r = rig();
    enableQi(r, true);
    r.hw.writeRegister(Reg.IQT, 0x10n);
    expect(r.hw.fsts & Fsts.IQE).toBe(Fsts.IQE);
    expect(Number(r.hw.iqercd)).toBe(Iqei.TAIL_INVALID);
  });

  it("256-bit queue: a non-zero upper half is a reserved field", () => {
    const r = rig();
    enableQi(r, true);
    queue(r, [[...encodeDescriptor({ type: "pasid-cache", g: 3, did: 0, pasid: 0 }), 0n, 5n]]);
    expect(Number(r.hw.iqercd)).toBe(Iqei.RESERVED_FIELD);
  });

  it("a queue outside RAM is a fetch error", () => {
    const r = rig({ mode: "legacy" });
    r.hw.writeRegister(Reg.IQA, 0x8000_0000n);
    r.hw.writeRegister(Reg.IQT, 0n);
    r.hw.writeRegister(Reg.GCMD, BigInt((Gcmd.TE | Gcmd.QIE) >>> 0), 4);
    r.hw.writeRegister(Reg.IQT, 0x10n);
    expect(Number(r.hw.iqercd)).toBe(Iqei.FETCH_ERROR);
  });

  it("the queue wraps around and processing is bounded by its size", () => {
    const r = rig({ mode: "legacy" });
    enableQi(r, false);
    for (let round = 0; round < 3; round++) {
      const descs: InvDescriptor[] = [];
      for (let i = 0; i < 200; i++)
        descs.push({
          type: "wait",
          ifl: false,
          sw: true,
          fn: false,
          pd: false,
          statusData: i,
          statusAddr: STATUS,
        });
      queue(r, descs);
      expect(r.memory.read32(STATUS)).toBe(199);
    }
    expect(r.hw.readRegister(Reg.IQH)).toBe(BigInt(((600 % 256) * 16) >>> 0));
  });

  it("PASID cache stays stale until a PASID-selective invalidation", () => {
    const r = rig();
    enableQi(r, true);
    const a = r.page();
    const b = r.page();
    r.scalableContext();
    r.ssMap(a, 4, 0x1000, { addr: 0x5000 });
    r.ssMap(b, 4, 0x2000, { addr: 0x7000 });
    r.pasidEntry(0, { ssptptr: a, did: 4 });
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    r.pasidEntry(0, { ssptptr: b, did: 4 });
    expect(pa(r, SID, NO_PASID, 0x2000)).toBe(-Fr.SS_NOT_PRESENT);
    queue(r, [{ type: "pasid-cache", g: 1, did: 3, pasid: 0 }]);
    expect(pa(r, SID, NO_PASID, 0x2000)).toBe(-Fr.SS_NOT_PRESENT);
    queue(r, [{ type: "pasid-cache", g: 1, did: 4, pasid: 0 }]);
    expect(pa(r, SID, NO_PASID, 0x2000)).toBe(0x7000);
    // The IOTLB still holds the old 0x1000 translation (DID 4, PASID 0).
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    queue(r, [{ type: "iotlb", g: 2, dr: false, dw: false, did: 4, addr: 0, ih: false, am: 0 }]);
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(-Fr.SS_NOT_PRESENT);
  });

  it("page-selective IOTLB invalidation drops every entry whose leaf covers the address", () => {
    const r = rig();
    enableQi(r, true);
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(0, { ssptptr: root });
    r.ssMap(root, 4, 0x20_0000, { addr: 0x80_0000 }, 1);
    for (const off of [0, 0x1000, 0x1f_f000])
      expect(pa(r, SID, NO_PASID, 0x20_0000 + off)).toBe(0x80_0000 + off);
    expect(r.hw.iotlb.size).toBe(3);
    r.ssMap(root, 4, 0x20_0000, { addr: 0xa0_0000 }, 1);
    // One 4K page inside the 2M leaf: all three cached pieces go.
    queue(r, [{ type: "iotlb", g: 3, dr: false, dw: false, did: 1, addr: 0x20_5000, ih: false, am: 0 }]);
    expect(r.hw.iotlb.size).toBe(0);
    expect(pa(r, SID, NO_PASID, 0x20_1000)).toBe(0xa0_1000);
  });

  it("PASID-based IOTLB invalidation targets first-stage entries of (DID, PASID) only", () => {
    const r = rig();
    enableQi(r, true);
    const fs = r.page();
    const ss = r.page();
    r.scalableContext();
    r.pasidEntry(0, { ssptptr: ss, did: 1 });
    r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: fs, did: 1 });
    r.ssMap(ss, 4, 0x1000, { addr: 0x5000 });
    r.fsMap(fs, 4, 0x1000, { addr: 0x6000 });
    expect(pa(r, SID, NO_PASID, 0x1000)).toBe(0x5000);
    expect(pa(r, SID, 5, 0x1000)).toBe(0x6000);
    r.fsMap(fs, 4, 0x1000, { addr: 0x7000 });
    queue(r, [{ type: "pasid-iotlb", g: 3, did: 1, pasid: 6, addr: 0x1000, ih: false, am: 0 }]);
    expect(pa(r, SID, 5, 0x1000)).toBe(0x6000);
    queue(r, [{ type: "pasid-iotlb", g: 3, did: 1, pasid: 5, addr: 0x1000, ih: false, am: 0 }]);
    expect(pa(r, SID, 5, 0x1000)).toBe(0x7000);
    expect(r.hw.iotlb.size).toBe(2);
  });

  it("counters move: hits, misses, walks, config hits and invalidations", () => {
    const r = rig({ mode: "legacy" });
    legacyWith(r, 0x5000);
    pa(r, SID, NO_PASID, 0x1000);
    pa(r, SID, NO_PASID, 0x1008);
    pa(r, SID, NO_PASID, 0x1010);
    const k = r.hw.counters();
    expect(k).toMatchObject({ iotlbHits: 2, iotlbMisses: 1, walks: 1, configMisses: 1, configHits: 2 });
    r.hw.invalidateIotlb("global");
    expect(r.hw.counters().invalidations).toBe(k.invalidations + 1);
  });

  it("context-cache device-selective invalidation honours the function mask", () => {
    const r = rig({ mode: "legacy" });
    const root = r.page();
    r.ssMap(root, 4, 0x1000, { addr: 0x5000 });
    for (const sid of [0x10, 0x13, 0x18]) r.legacyContext({ slptptr: root }, sid);
    for (const sid of [0x10, 0x13, 0x18]) pa(r, sid, NO_PASID, 0x1000);
    // FM = 3 masks function bits 2:0: device 2 (0x10-0x17) goes, 0x18 stays.
    r.hw.invalidateContext("device", 0, 0x11, 3);
    expect([...r.hw.contextCache.keys()].sort()).toEqual([0x18]);
    expect(r.memory.read64(ROOT) & 1n).toBe(1n);
    expect(CTX).toBeGreaterThan(0);
    expect(PTBL).toBeGreaterThan(0);
  });
});
