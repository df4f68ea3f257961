/**
 * The hardware half of page requests (Intel VT-d spec rev 4.x 7.5, 7.5.1, 7.5.2; the
 * page request registers of 11.4.11; the page group response descriptor of 6.5.2):
 * which fault becomes a page request, the descriptor bytes in the queue, PQH / PQT /
 * PRS / PECTL after each step, overflow, and the response through the invalidation
 * queue. A hand-built unit (rig.ts) stands in for someone else's driver.
 */

import type { Translation } from "@iommu-kit/core";
import { Access, createTranslation, IommuError, NO_PASID, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { Fr } from "../src/format/fault-record.ts";
import type { InvDescriptor } from "../src/format/inv-desc.ts";
import { encodeDescriptor } from "../src/format/inv-desc.ts";
import { decodePageRequest, encodePageRequest, PgrpResponse } from "../src/format/page-request.ts";
import { Pgtt } from "../src/format/pasid-entry.ts";
import { Fectl, Fsts, Gcmd, IQA_DW, Iqei, Prs, Reg } from "../src/format/registers.ts";
import type { VtdConfig } from "../src/hw-info.ts";
import { prng } from "./hostile.ts";
import type { Rig } from "./rig.ts";
import { rig, SID } from "./rig.ts";

const R = Access.READ;
const W = Access.WRITE;
const PRQ = 0x40_0000;
const QUEUE = 0x30_0000;
const STATUS = 0x30_8000;
const IM = BigInt(Fectl.IM >>> 0);
const IP = BigInt(Fectl.IP);

/**
 * A scalable unit whose device SID has PRI enabled and PRE = 1: PASID 5 and RID_PASID
 * through one second-stage table mapping only 0x1000 (read-only at 0x6000 too), and a
 * page request queue of 2^pqs pages at PRQ. PECTL stays masked (no driver).
 */
function prqRig(config: VtdConfig = {}, pqs = 0, pre = true): Rig & { root: number } {
  const r = rig(config);
  r.scalableContext({ pre, dte: true });
  const root = r.page();
  r.pasidEntry(0, { ssptptr: root });
  r.pasidEntry(5, { ssptptr: root });
  r.ssMap(root, 4, 0x1000, { addr: 0x5000 });
  r.ssMap(root, 4, 0x6000, { addr: 0x7000, w: false });
  r.hw.prq.priEnabled.add(SID);
  r.hw.writeRegister(Reg.PQA, BigInt(PRQ) | BigInt(pqs));
  r.hw.writeRegister(Reg.PQH, 0n);
  r.hw.writeRegister(Reg.PQT, 0n);
  return { ...r, root };
}

function xlate(r: Rig, pasid: number, iova: number, access: number): Translation {
  const out = createTranslation();
  expect(r.hw.translate(SID, pasid, iova, access, out)).toBe(false);
  return out;
}

function hexBytes(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Little-endian hex of 64-bit words, as they sit in memory. */
function wordsHex(words: readonly bigint[]): string {
  return words
    .map((w) => {
      let s = "";
      for (let i = 0; i < 8; i++)
        s += Number((w >> BigInt(8 * i)) & 0xffn)
          .toString(16)
          .padStart(2, "0");
      return s;
    })
    .join("");
}

function regs(r: Rig): Record<string, bigint> {
  const hw = r.hw;
  return {
    PQH: hw.readNamed("PQH"),
    PQT: hw.readNamed("PQT"),
    PRS: hw.readNamed("PRS"),
    PECTL: hw.readNamed("PECTL"),
  };
}

function enableQi(r: Rig, dw = true): void {
  r.hw.writeRegister(Reg.IQA, BigInt(QUEUE) | (dw ? BigInt(IQA_DW) : 0n));
  r.hw.writeRegister(Reg.IQT, 0n);
  r.hw.writeRegister(Reg.GCMD, BigInt((Gcmd.TE | Gcmd.QIE) >>> 0), 4);
}

/** Writes raw descriptors (2 or 4 qwords each) at the invalidation queue tail and moves IQT past them. */
function queue(r: Rig, descs: ReadonlyArray<InvDescriptor | readonly bigint[]>): void {
  const hw = r.hw;
  const size = hw.descriptorBytes;
  let tail = Number(hw.iqt) / size;
  for (const d of descs) {
    const words = "type" in d ? encodeDescriptor(d) : d;
    const all = size === 32 && words.length === 2 ? [...words, 0n, 0n] : words;
    all.forEach((w, i) => {
      r.w64(QUEUE + tail * size + i * 8, w);
    });
    tail = (tail + 1) % hw.queueEntries;
  }
  hw.writeRegister(Reg.IQT, BigInt(tail * size));
}

const RESP_SID_P5: InvDescriptor = {
  type: "page-group-response",
  pp: true,
  rc: 0,
  rid: SID,
  pasid: 5,
  prgi: 0,
};

describe("which fault becomes a page request (spec 7.5)", () => {
  it("a not-present second-stage write with PASID: 32 exact bytes in the queue, PQT, PPR, IP", () => {
    const r = prqRig();
    const out = xlate(r, 5, 0x2345, W);
    const f = out.fault!;
    expect(f.recorded).toBe(false);
    expect(f.class).toBe("translation");
    expect(f.vendor.code).toBe(Fr.SS_NOT_PRESENT);
    expect(f.pageRequest).toEqual({
      rid: SID,
      pasid: 5,
      addr: 0x2000,
      perm: Perm.W,
      priv: false,
      grpid: 0,
      last: true,
    });
    // qw0: Type 01h | PP (bit 8) | RID 0x0010 << 16 | PASID 5 << 32; qw1: WRR (bit 1) | LPIG (bit 2) | PRGI 0 | ADDR.
    const expected = `01011000050000000620000000000000${"00".repeat(16)}`;
    expect(hexBytes(r.memory.read(PRQ, 32))).toBe(expected);
    expect(hexBytes(f.vendor.raw!)).toBe(expected);
    expect(f.vendor.fields).toMatchObject({
      PRQ: "queued",
      PRGI: 0,
      LPIG: 1,
      WRR: 1,
      RDR: 0,
      PP: 1,
      RESPONSE: null,
    });
    expect(regs(r)).toEqual({ PQH: 0n, PQT: 0x20n, PRS: BigInt(Prs.PPR), PECTL: IM | IP });
    expect(r.hw.pendingFaults()).toEqual([]);
    expect(r.hw.fsts).toBe(0);
    expect(r.hw.prq.isHeld(SID, 0)).toBe(true);
  });

  it("without PASID (RID_PASID): PP = 0, PASID 0; the next group takes PRGI 1 and no second event", () => {
    const r = prqRig();
    xlate(r, 5, 0x2000, W);
    const f = xlate(r, NO_PASID, 0x3fff, R).fault!;
    expect(f.pageRequest).toEqual({
      rid: SID,
      pasid: NO_PASID,
      addr: 0x3000,
      perm: Perm.R,
      priv: false,
      grpid: 1,
      last: true,
    });
    // qw0: Type | RID; qw1: RDR | LPIG | PRGI 1 << 3 | 0x3000.
    expect(hexBytes(r.memory.read(PRQ + 0x20, 32))).toBe(
      `0100100000000000${"0d30000000000000"}${"00".repeat(16)}`,
    );
    expect(regs(r)).toEqual({ PQH: 0n, PQT: 0x40n, PRS: BigInt(Prs.PPR), PECTL: IM | IP });
  });

  it("ERR and PMR travel with the PASID: a privileged fetch sets bits 52 and 53 and RDR", () => {
    const r = prqRig();
    const f = xlate(r, 5, 0x9000, R | Access.EXEC | Access.PRIV).fault!;
    expect(f.pageRequest).toMatchObject({ perm: Perm.R | Perm.X, priv: true, pasid: 5 });
    const d = decodePageRequest([r.memory.read64(PRQ), r.memory.read64(PRQ + 8), 0n, 0n]);
    expect(d).toMatchObject({ exe: true, pmr: true, rdr: true, wrr: false, pp: true, reserved: false });
    expect(r.memory.read64(PRQ)).toBe(0x0030_0005_0010_0101n);
    // Without a PASID the same access has no prefix: no ERR, no PMR.
    const g = xlate(r, NO_PASID, 0x9000, R | Access.EXEC).fault!;
    expect(g.pageRequest).toMatchObject({ perm: Perm.R, priv: false, pasid: NO_PASID });
  });

  it("a permission fault (write to a read-only leaf, 0x85) becomes one too", () => {
    const r = prqRig();
    const f = xlate(r, 5, 0x6000, W).fault!;
    expect(f.vendor.code).toBe(Fr.SM_NO_WRITE);
    expect(f.class).toBe("permission");
    expect(f.pageRequest).toMatchObject({ addr: 0x6000, perm: Perm.W });
  });

  it("first-stage not-present (0x71) and U/S (0x81) faults are recoverable too", () => {
    const r = prqRig();
    const fsRoot = r.page();
    r.pasidEntry(7, { pgtt: Pgtt.FIRST_STAGE, fsptptr: fsRoot, aw: 2 });
    r.fsMap(fsRoot, 4, 0x1000, { addr: 0x8000, us: false });
    expect(xlate(r, 7, 0x4000, R).fault!.vendor.code).toBe(Fr.FS_NOT_PRESENT);
    const us = xlate(r, 7, 0x1000, R).fault!;
    expect(us.vendor.code).toBe(Fr.FS_USER_NOT_ALLOWED);
    expect(us.pageRequest).toMatchObject({ pasid: 7, grpid: 1 });
  });

  it("stays an unrecoverable fault record: PRE = 0, PRI off, ECAP.PRS = 0, legacy, or a reason that is not R = W = 0", () => {
    const cases: Array<[string, () => Rig, number, number]> = [
      ["PRE = 0", () => prqRig({}, 0, false), 5, 0x2000],
      [
        "PRI disabled",
        () => {
          const r = prqRig();
          r.hw.prq.priEnabled.clear();
          return r;
        },
        5,
        0x2000,
      ],
      ["ECAP.PRS = 0", () => prqRig({ pageRequests: false }), 5, 0x2000],
      ["PASID entry not present (0x59)", () => prqRig(), 9, 0x2000],
    ];
    for (const [name, make, pasid, iova] of cases) {
      const r = make();
      const f = xlate(r, pasid, iova, W).fault!;
      expect(f.pageRequest, name).toBeUndefined();
      expect(f.recorded, name).toBe(true);
      expect(r.hw.pendingFaults(), name).toHaveLength(1);
      expect(r.memory.read64(PRQ), name).toBe(0n);
      expect(r.hw.readNamed("PQT"), name).toBe(0n);
    }
    // Legacy mode has no PRE: a PRI device's not-present fault is recorded (0x5 / 0x6 there).
    const l = rig({ mode: "legacy" });
    l.legacyContext({ slptptr: l.page() });
    l.hw.prq.priEnabled.add(SID);
    const out = createTranslation();
    expect(l.hw.translate(SID, NO_PASID, 0x2000, W, out)).toBe(false);
    expect(out.fault).toMatchObject({ recorded: true });
    expect(out.fault!.pageRequest).toBeUndefined();
  });

  it("ECAP.PRS = 0, or PRS without DT: the page request registers are RsvdZ (read 0, writes ignored)", () => {
    for (const r of [rig({ pageRequests: false }), rig({}, 1n << 2n)]) {
      for (const off of [Reg.PQH, Reg.PQT, Reg.PQA]) r.hw.writeRegister(off, 0xffff_ffff_ffff_ffffn);
      r.hw.writeRegister(Reg.PRS, 3n, 4);
      r.hw.writeRegister(Reg.PECTL, 0n, 4);
      for (const n of ["PQH", "PQT", "PQA", "PRS", "PECTL", "PEDATA", "PEADDR", "PEUADDR"])
        expect(r.hw.readNamed(n), n).toBe(0n);
      expect(r.hw.pageRequester).toBe(null);
    }
    expect(rig().hw.pageRequester).not.toBe(null);
  });
});

describe("registers (spec 11.4.11)", () => {
  it("PQH / PQT keep bits 18:5, PQA bits 63:12 and 2:0; PEDATA / PEADDR / PEUADDR; 32-bit halves", () => {
    const r = rig();
    const hw = r.hw;
    hw.writeRegister(Reg.PQH, 0xffff_ffff_ffff_ffffn);
    hw.writeRegister(Reg.PQT, 0x1234_5678_9abc_def0n);
    hw.writeRegister(Reg.PQA, 0xffff_ffff_ffff_ffffn);
    expect(hw.readNamed("PQH")).toBe(0x7ffe0n);
    expect(hw.readNamed("PQT")).toBe(0x4dee0n);
    expect(hw.readNamed("PQA")).toBe(0xffff_ffff_ffff_f007n);
    expect(hw.prq.queueEntries).toBe(2 ** 14);
    hw.writeRegister(Reg.PEDATA, 0x4021n, 4);
    hw.writeRegister(Reg.PEADDR, 0xfee0_0003n, 4);
    hw.writeRegister(Reg.PEUADDR, 0x1n, 4);
    expect([hw.readNamed("PEDATA"), hw.readNamed("PEADDR"), hw.readNamed("PEUADDR")]).toEqual([
      0x4021n,
      0xfee0_0000n,
      1n,
    ]);
    // PECTL and PEDATA share the 64-bit slot at 0xE0; PECTL resets masked.
    expect(hw.readRegister(Reg.PECTL)).toBe((0x4021n << 32n) | IM);
    expect(hw.readRegister(Reg.PRS, 4)).toBe(0n);
  });

  it("PRS is write-1-to-clear; clearing PPR and PRO drops IP; unmasking with IP delivers one event", () => {
    const r = prqRig();
    const hw = r.hw;
    const seen: Array<Record<string, bigint>> = [];
    hw.prq.onEvent = () => seen.push(regs(r));
    xlate(r, 5, 0x2000, W);
    expect(hw.prq.interrupts).toBe(0);
    hw.writeRegister(Reg.PRS, 0n, 4);
    expect(hw.readNamed("PRS")).toBe(1n);
    // Unmask: the pending event is delivered and IP clears (spec 7.5, as FECTL in 7.3.1).
    hw.writeRegister(Reg.PECTL, 0n, 4);
    expect(hw.prq.interrupts).toBe(1);
    expect(seen).toEqual([{ PQH: 0n, PQT: 0x20n, PRS: 1n, PECTL: 0n }]);
    // PPR still set: the next request raises no event.
    xlate(r, 5, 0x3000, W);
    expect(hw.prq.interrupts).toBe(1);
    hw.writeRegister(Reg.PRS, BigInt(Prs.PPR), 4);
    expect(hw.readNamed("PRS")).toBe(0n);
    xlate(r, 5, 0x4000, W);
    expect(hw.prq.interrupts).toBe(2);
    expect(seen[1]).toEqual({ PQH: 0n, PQT: 0x60n, PRS: 1n, PECTL: 0n });
    // Masked again with a request pending: IP, then W1C of PPR clears IP without an event.
    hw.writeRegister(Reg.PECTL, IM, 4);
    hw.writeRegister(Reg.PRS, BigInt(Prs.PPR), 4);
    xlate(r, 5, 0x5000, W);
    expect(hw.readNamed("PECTL")).toBe(IM | IP);
    hw.writeRegister(Reg.PRS, BigInt(Prs.PPR), 4);
    expect(hw.readNamed("PECTL")).toBe(IM);
    hw.writeRegister(Reg.PECTL, 0n, 4);
    expect(hw.prq.interrupts).toBe(2);
  });
});

describe("the queue full (spec 7.5.2): PRO, auto-response", () => {
  it("127 requests fill a 128-entry queue; the 128th sets PRO and is answered Success by the hardware", () => {
    const r = prqRig();
    const hw = r.hw;
    for (let i = 0; i < 127; i++)
      expect(xlate(r, 5, 0x10_0000 + i * 4096, W).fault!.pageRequest?.grpid).toBe(i);
    expect(regs(r)).toEqual({ PQH: 0n, PQT: 127n * 32n, PRS: 1n, PECTL: IM | IP });
    // Software clears PPR (IP goes) but consumes nothing: the overflow itself is an event.
    hw.writeRegister(Reg.PRS, BigInt(Prs.PPR), 4);
    expect(regs(r)).toEqual({ PQH: 0n, PQT: 127n * 32n, PRS: 0n, PECTL: IM });
    const f = xlate(r, 5, 0x20_0000, W).fault!;
    expect(f.pageRequest).toBeUndefined();
    expect(f.recorded).toBe(false);
    expect(f.vendor.fields).toMatchObject({ PRQ: "overflow", RESPONSE: PgrpResponse.SUCCESS, PRGI: 127 });
    expect(f.vendor.raw).toBeUndefined();
    expect(regs(r)).toEqual({ PQH: 0n, PQT: 127n * 32n, PRS: BigInt(Prs.PRO), PECTL: IM | IP });
    expect(hw.prq.responses.at(-1)).toEqual({ rid: SID, pasid: 5, grpid: 127, code: 0, auto: true });
    expect(hw.prq.isHeld(SID, 127)).toBe(false);
    // The slot after the last descriptor is untouched.
    expect(r.memory.read64(PRQ + 127 * 32)).toBe(0n);
    // Software drains the queue but leaves PRO: nothing is queued and no event while PRO is set.
    hw.writeRegister(Reg.PQH, 127n * 32n);
    hw.writeRegister(Reg.PRS, BigInt(Prs.PPR), 4);
    expect(xlate(r, 5, 0x21_0000, W).fault!.vendor.fields.PRQ).toBe("overflow");
    expect(regs(r)).toEqual({ PQH: 127n * 32n, PQT: 127n * 32n, PRS: BigInt(Prs.PRO), PECTL: IM | IP });
    // Clearing PRO: the next request is queued at the tail, wrapping the queue.
    hw.writeRegister(Reg.PRS, BigInt(Prs.PRO), 4);
    expect(hw.readNamed("PECTL")).toBe(IM);
    expect(xlate(r, 5, 0x22_0000, W).fault!.pageRequest?.grpid).toBe(127);
    expect(regs(r)).toEqual({ PQH: 127n * 32n, PQT: 0n, PRS: 1n, PECTL: IM | IP });
    expect(r.memory.read64(PRQ + 127 * 32 + 8)).toBe(0x22_0000n | (127n << 3n) | 4n | 2n);
  });

  it("every one of a device's 512 groups outstanding: the fault stays an unrecoverable record", () => {
    const r = prqRig({}, 7);
    for (let i = 0; i < 512; i++)
      expect(xlate(r, 5, 0x10_0000 + i * 4096, W).fault!.pageRequest?.grpid).toBe(i);
    const f = xlate(r, 5, 0x40_0000, W).fault!;
    expect(f.pageRequest).toBeUndefined();
    expect(f.recorded).toBe(true);
    expect(r.hw.pendingFaults()).toHaveLength(1);
    expect(r.hw.prq.heldRequests()).toHaveLength(512);
  });
});

describe("the page group response descriptor (type 9h, spec 6.5.2)", () => {
  it("exact bytes; Success ends the group; the retry after the mapping is fixed translates", () => {
    const r = prqRig();
    enableQi(r);
    xlate(r, 5, 0x2000, W);
    expect(encodeDescriptor(RESP_SID_P5)).toEqual([0x0000_0005_0010_0019n, 0n]);
    queue(r, [RESP_SID_P5]);
    expect(r.hw.fsts & Fsts.IQE).toBe(0);
    expect(r.hw.descriptorCounts.get(9)).toBe(1);
    expect(r.hw.prq.responses).toEqual([{ rid: SID, pasid: 5, grpid: 0, code: 0, auto: false }]);
    expect(r.hw.prq.heldRequests()).toEqual([]);
    r.ssMap(r.root, 4, 0x2000, { addr: 0x9000 });
    const out = createTranslation();
    expect(r.hw.translate(SID, 5, 0x2010, W, out)).toBe(true);
    expect(out.pa).toBe(0x9010);
  });

  it("Invalid (code 1) ends the group with failure; PRGI reuse; a response matching nothing is ignored", () => {
    const r = prqRig();
    enableQi(r);
    xlate(r, NO_PASID, 0x2000, R);
    xlate(r, 5, 0x3000, R);
    // PASID present but the group had none; wrong PRGI; another device: unexpected, not an error.
    queue(r, [
      { type: "page-group-response", pp: true, rc: 1, rid: SID, pasid: 0, prgi: 0 },
      { type: "page-group-response", pp: true, rc: 1, rid: SID, pasid: 5, prgi: 7 },
      { type: "page-group-response", pp: false, rc: 1, rid: SID + 1, pasid: 0, prgi: 0 },
    ]);
    expect(r.hw.fsts & Fsts.IQE).toBe(0);
    expect(r.hw.prq.unexpectedResponses).toBe(3);
    expect(r.hw.prq.heldRequests().map((q) => q.grpid)).toEqual([0, 1]);
    queue(r, [
      { type: "page-group-response", pp: false, rc: PgrpResponse.INVALID, rid: SID, pasid: 0, prgi: 0 },
    ]);
    expect(r.hw.prq.responses).toEqual([{ rid: SID, pasid: NO_PASID, grpid: 0, code: 1, auto: false }]);
    // The freed index is the lowest free again.
    expect(xlate(r, 5, 0x4000, R).fault!.pageRequest?.grpid).toBe(0);
  });

  it("reserved fields halt the queue with IQE (IQEI 4) at the descriptor; bit 66 (LPIG until rev 4) is ignored", () => {
    const [lo, hi] = encodeDescriptor(RESP_SID_P5);
    const bad: Array<[string, bigint[]]> = [
      ["qw0 bit 5 (PDP until rev 4)", [lo | (1n << 5n), hi, 0n, 0n]],
      ["qw0 bit 8", [lo | (1n << 8n), hi, 0n, 0n]],
      ["qw0 bit 52", [lo | (1n << 52n), hi, 0n, 0n]],
      ["qw1 bit 0", [lo, hi | 1n, 0n, 0n]],
      ["qw1 bit 12", [lo, hi | (1n << 12n), 0n, 0n]],
      ["qw2 (private data until rev 4)", [lo, hi, 1n, 0n]],
    ];
    for (const [name, words] of bad) {
      const r = prqRig();
      enableQi(r);
      xlate(r, 5, 0x2000, W);
      queue(r, [
        { type: "wait", ifl: false, sw: true, fn: false, pd: false, statusData: 1, statusAddr: STATUS },
        words,
      ]);
      expect(r.hw.fsts & Fsts.IQE, name).toBe(Fsts.IQE);
      expect(r.hw.iqercd, name).toBe(BigInt(Iqei.RESERVED_FIELD));
      expect(r.hw.iqh, name).toBe(32n);
      expect(r.memory.read32(STATUS), name).toBe(1);
      expect(r.hw.prq.isHeld(SID, 0), name).toBe(true);
    }
    const r = prqRig();
    enableQi(r);
    xlate(r, 5, 0x2000, W);
    queue(r, [[lo, hi | 4n, 0n, 0n]]);
    expect(r.hw.fsts & Fsts.IQE).toBe(0);
    expect(r.hw.prq.isHeld(SID, 0)).toBe(false);
  });

  it("a 128-bit queue cannot carry it (IQEI 5); without ECAP.PRS it is an unknown type (IQEI 3)", () => {
    const r = prqRig();
    enableQi(r, false);
    xlate(r, 5, 0x2000, W);
    queue(r, [RESP_SID_P5]);
    expect(r.hw.iqercd).toBe(BigInt(Iqei.INVALID_WIDTH));
    expect(r.hw.prq.isHeld(SID, 0)).toBe(true);
    const n = prqRig({ pageRequests: false });
    enableQi(n);
    queue(n, [RESP_SID_P5]);
    expect(n.hw.iqercd).toBe(BigInt(Iqei.INVALID_TYPE));
    expect(n.hw.iqh).toBe(0n);
  });
});

describe("hostile page request registers", () => {
  it("PQA outside RAM loses the request; PQH or PQT beyond the queue counts as full", () => {
    const r = prqRig();
    r.hw.writeRegister(Reg.PQA, 1n << 40n);
    const f = xlate(r, 5, 0x2000, W).fault!;
    expect(f.vendor.fields).toMatchObject({ PRQ: "lost", RESPONSE: null });
    expect(f.pageRequest).toBeUndefined();
    expect(regs(r)).toEqual({ PQH: 0n, PQT: 0n, PRS: 0n, PECTL: IM });
    expect(r.hw.prq.heldRequests()).toEqual([]);
    for (const reg of [Reg.PQH, Reg.PQT]) {
      const q = prqRig();
      q.hw.writeRegister(reg, 0x7ffe0n);
      expect(xlate(q, 5, 0x2000, W).fault!.vendor.fields.PRQ).toBe("overflow");
      expect(q.hw.readNamed("PRS")).toBe(BigInt(Prs.PRO));
      expect(q.memory.read64(PRQ)).toBe(0n);
    }
  });

  it("random register values and page group responses never throw anything but IommuError, never hang", () => {
    const rnd = prng(0x5eed);
    const word = (): bigint =>
      (BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32));
    const offsets = [
      Reg.PQH,
      Reg.PQT,
      Reg.PQA,
      Reg.PRS,
      Reg.PECTL,
      Reg.PEDATA,
      Reg.PEADDR,
      Reg.PEUADDR,
      0xd8,
      0xe4,
    ];
    for (let round = 0; round < 40; round++) {
      const r = prqRig({}, Math.floor(rnd() * 8));
      enableQi(r);
      let calls = 0;
      r.hw.prq.onEvent = () => {
        calls++;
        r.hw.writeRegister(Reg.PQH, word());
      };
      for (let i = 0; i < 30; i++) {
        try {
          const off = offsets[Math.floor(rnd() * offsets.length)]!;
          if (rnd() < 0.5) r.hw.writeRegister(off, word());
          else r.hw.writeRegister(off & ~3, word(), 4);
          const out = createTranslation();
          r.hw.translate(
            SID,
            rnd() < 0.5 ? 5 : NO_PASID,
            Math.floor(rnd() * 64) * 4096,
            rnd() < 0.5 ? R : W,
            out,
          );
          if (rnd() < 0.3)
            queue(r, [[(word() & ~0xe00n & ~0xfn) | 9n, word(), rnd() < 0.8 ? 0n : word(), 0n]]);
          if (r.hw.fsts & Fsts.IQE) r.hw.writeRegister(Reg.FSTS, BigInt(Fsts.IQE), 4);
        } catch (e) {
          expect(e).toBeInstanceOf(IommuError);
        }
      }
      expect(calls).toBeLessThanOrEqual(30 + 30);
    }
  });
});

describe("codec", () => {
  it("encode / decode round trip; reserved bits are reported", () => {
    const d = {
      pp: true,
      rid: 0xbeef,
      pasid: 0xfffff,
      exe: true,
      pmr: false,
      rdr: true,
      wrr: true,
      lpig: false,
      prgi: 0x1ff,
      addr: 0xf_ffff_f000,
    };
    const w = encodePageRequest(d);
    expect(w).toEqual([0x001f_ffff_beef_0101n, 0xf_ffff_fffbn, 0n, 0n]);
    expect(decodePageRequest(w)).toEqual({ ...d, type: 1, reserved: false });
    expect(decodePageRequest([w[0] | (1n << 9n), w[1]]).reserved).toBe(true);
    expect(decodePageRequest([w[0] | (1n << 54n), w[1]]).reserved).toBe(true);
    expect(decodePageRequest([w[0], w[1], 0n, 1n]).reserved).toBe(true);
    expect(wordsHex(w)).toBe(`0101efbeffff1f00fbffffff0f000000${"00".repeat(16)}`);
  });
});
