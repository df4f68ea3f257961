/**
 * The driver half of page requests (Linux drivers/iommu/intel/prq.c): the queue the
 * driver programs, the handler that consumes it (prq_event_thread), the page group
 * response it writes into the invalidation queue (intel_iommu_page_response), and the
 * contract around them (Backend.pageResponse, capabilities().features.iopf,
 * allocViommu), including atomicity and hostile register values.
 */

import type { Domain, PageRequest, Translation } from "@iommu-kit/core";
import {
  Access,
  createTranslation,
  Intent,
  IommuError,
  isIommuError,
  NO_PASID,
  Perm,
  PhysicalMemory,
} from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { VtdBackend } from "../src/backend.ts";
import { vtdFromRegisters } from "../src/backend.ts";
import { decodeScalableContextEntry } from "../src/format/context-entry.ts";
import { Fr } from "../src/format/fault-record.ts";
import { decodeDescriptor, encodeDescriptor } from "../src/format/inv-desc.ts";
import { Prs, Reg } from "../src/format/registers.ts";
import { fresh } from "./helpers.ts";
import { prng } from "./hostile.ts";

const R = Access.READ;
const W = Access.WRITE;
const DEV = 0x0108;
const PRI = { rid: DEV, pasidBits: 20, ats: true, pri: true } as const;

function throwsCode(fn: () => unknown, code: string): IommuError {
  try {
    fn();
  } catch (e) {
    if (isIommuError(e) && e.code === code) return e;
    throw e;
  }
  throw new Error(`expected ${code}`);
}

/** A backend with a PRI device whose PASID 5 and RID are attached to one paging domain. */
function setup(format = "vtd-ss-4lvl"): { b: VtdBackend; dom: Domain; t: ReturnType<typeof fresh> } {
  const t = fresh();
  const b = t.backend;
  b.addDevice(PRI);
  const dom = b.allocDomain({ type: "paging", format });
  dom.map(0x1000, 0x8000_0000, 0x1000, Perm.R | Perm.W);
  b.attach(DEV, Intent.pasid(5), dom);
  b.attach(DEV, Intent.rid, dom);
  return { b, dom, t };
}

function fault(b: VtdBackend, pasid: number, iova: number, access: number): Translation["fault"] {
  const out = createTranslation();
  expect(b.translate(DEV, pasid, iova, access, out)).toBe(false);
  return out.fault;
}

/** The 32 bytes of the invalidation queue slot `back` entries before IQH (1 = the last wait). */
function iqSlot(b: VtdBackend, back: number): bigint[] {
  const hw = b.hw;
  const size = hw.descriptorBytes;
  const slot = (Number(hw.iqh) / size - back + hw.queueEntries) % hw.queueEntries;
  const at = hw.queueBase + slot * size;
  return [0, 8, 16, 24].map((o) => b.memory.read64(at + o));
}

function prqRegs(b: VtdBackend): Record<string, bigint> {
  const hw = b.hw;
  return {
    PQH: hw.readNamed("PQH"),
    PQT: hw.readNamed("PQT"),
    PRS: hw.readNamed("PRS"),
    PECTL: hw.readNamed("PECTL"),
  };
}

describe("bring-up (intel_iommu_enable_prq) and capabilities", () => {
  it("a 64 KiB queue, PQA = queue | PRQ_ORDER 4, PQH = PQT = 0, the interrupt unmasked", () => {
    const { backend: b } = fresh();
    const pqa = b.hw.readNamed("PQA");
    expect(pqa & 0xfffn).toBe(4n);
    expect(Number(pqa) % 0x10000).toBe(4);
    expect(b.hw.prq.queueEntries).toBe(2048);
    expect(prqRegs(b)).toEqual({ PQH: 0n, PQT: 0n, PRS: 0n, PECTL: 0n });
    // Without ECAP.PRS no queue is allocated and the registers stay zero.
    const n = fresh({ pageRequests: false });
    expect(n.tables.stats().blocks).toBe(fresh().tables.stats().blocks - 1);
    expect(n.backend.hw.readNamed("PQA")).toBe(0n);
  });

  it("PRE and DTE in the context entry for an ATS + PRI device; features.iopf needs PASID too", () => {
    const { backend: b } = fresh();
    b.addDevice(PRI);
    b.addDevice({ rid: 0x200, pasidBits: 20, ats: true });
    b.addDevice({ rid: 0x300, pasidBits: 0, ats: true, pri: true });
    b.addDevice({ rid: 0x400, pasidBits: 20, pri: true });
    const ctx = (rid: number) => decodeScalableContextEntry(b.contextEntryWords(rid)!);
    expect([ctx(DEV).pre, ctx(DEV).dte]).toEqual([true, true]);
    // P (bit 0) | DTE (2) | PASIDE (3) | PRE (4); FPD (1) clear.
    expect(b.contextEntryWords(DEV)![0]! & 0x1fn).toBe(0x1dn);
    expect([ctx(0x200).pre, ctx(0x300).pre, ctx(0x400).pre]).toEqual([false, true, false]);
    expect([DEV, 0x200, 0x300, 0x400].map((r) => b.capabilities(r).features.iopf)).toEqual([
      true,
      false,
      false,
      false,
    ]);
    expect([...b.hw.prq.priEnabled]).toEqual([DEV]);
    expect(b.capabilities(DEV).features.viommuTypes).toBeUndefined();
    const off = fresh({ pageRequests: false }).backend;
    off.addDevice(PRI);
    expect(decodeScalableContextEntry(off.contextEntryWords(DEV)!).pre).toBe(false);
    expect(off.capabilities(DEV).features.iopf).toBe(false);
  });

  it("allocViommu: VT-d has no vIOMMU type in 6.15 (EOPNOTSUPP)", () => {
    const { b, dom } = setup();
    const e = throwsCode(() => b.allocViommu({ type: "arm-smmuv3", rid: DEV, parent: dom }), "EOPNOTSUPP");
    expect(e.errno).toBe(95);
  });
});

describe("prq_event_thread: the driver consumes the queue", () => {
  it("a fault becomes a reported page request; PQH follows PQT; PPR is cleared; no fault record", () => {
    const { b } = setup();
    const f = fault(b, 5, 0x2345, W)!;
    const req: PageRequest = {
      rid: DEV,
      pasid: 5,
      addr: 0x2000,
      perm: Perm.W,
      priv: false,
      grpid: 0,
      last: true,
    };
    expect(f.pageRequest).toEqual(req);
    expect(f).toMatchObject({ recorded: false, class: "translation" });
    expect(f.vendor.code).toBe(Fr.SS_NOT_PRESENT);
    expect(b.pendingPageRequests()).toEqual([req]);
    expect(prqRegs(b)).toEqual({ PQH: 0x20n, PQT: 0x20n, PRS: 0n, PECTL: 0n });
    expect(b.hw.prq.interrupts).toBe(1);
    expect(b.faultLog).toEqual([]);
    // The driver read its own queue: the descriptor is there, byte for byte.
    const base = Number(b.hw.readNamed("PQA") & ~0xfffn);
    expect(b.memory.read64(base)).toBe(0x0000_0005_0108_0101n);
    expect(b.memory.read64(base + 8)).toBe(0x2006n);
    const g = fault(b, NO_PASID, 0x3000, R)!;
    expect(g.pageRequest).toEqual({
      rid: DEV,
      pasid: NO_PASID,
      addr: 0x3000,
      perm: Perm.R,
      priv: false,
      grpid: 1,
      last: true,
    });
    expect(b.pendingPageRequests().map((p) => p.grpid)).toEqual([0, 1]);
    expect(prqRegs(b)).toMatchObject({ PQH: 0x40n, PQT: 0x40n, PRS: 0n });
  });

  it("handle_bad_prq_event: privileged R/W, execute, and non-canonical requests are answered Invalid at once", () => {
    const { backend: b } = fresh();
    b.addDevice(PRI);
    const fs = b.allocDomain({ type: "paging", format: "vtd-fs-4lvl" });
    b.attach(DEV, Intent.pasid(6), fs);
    const ss = b.allocDomain({ type: "paging" });
    b.attach(DEV, Intent.pasid(5), ss);
    const cases: Array<[number, number, number, string]> = [
      [6, 0x4000, W | Access.PRIV, "Page request in Privilege Mode"],
      [6, 0x4000, R | Access.EXEC, "Execution request not supported"],
      [5, 2 ** 47, R, "Address is not canonical"],
    ];
    cases.forEach(([pasid, iova, access, reason], i) => {
      const f = fault(b, pasid, iova, access)!;
      expect(f.pageRequest, reason).toBeUndefined();
      expect(f.vendor.fields, reason).toMatchObject({ PRQ: "queued", RESPONSE: 1 });
      expect(b.hw.prq.responses.at(-1), reason).toEqual({ rid: DEV, pasid, grpid: 0, code: 1, auto: false });
      expect(b.refusedPageRequests(), reason).toHaveLength(i + 1);
      expect(b.refusedPageRequests()[i]!.reason).toBe(reason);
      // The response descriptor handle_bad_prq_event wrote: PP, Invalid, RID, PASID; PRGI 0.
      expect(iqSlot(b, 2), reason).toEqual([
        0x19n | (1n << 12n) | (BigInt(DEV) << 16n) | (BigInt(pasid) << 32n),
        0n,
        0n,
        0n,
      ]);
    });
    expect(b.pendingPageRequests()).toEqual([]);
    expect(b.hw.prq.heldRequests()).toEqual([]);
  });
});

describe("pageResponse (intel_iommu_page_response)", () => {
  it("success: the exact descriptor in the invalidation queue; the retry after the mapping is fixed translates", () => {
    const { b, dom } = setup();
    const req = fault(b, 5, 0x2345, W)!.pageRequest!;
    const iqh = b.hw.iqh;
    b.pageResponse(req, "success");
    // Two descriptors went through: the page group response and qi_submit_sync's wait.
    expect(Number(b.hw.iqh - iqh) / 32).toBe(2);
    const words = iqSlot(b, 2);
    // qw0: Type 9h | PP (bit 4) | Response Code 0 | RID 0x0108 << 16 | PASID 5 << 32; qw1: PRGI 0 << 3; no LPIG (bit 66).
    expect(words).toEqual([0x0000_0005_0108_0019n, 0n, 0n, 0n]);
    expect(decodeDescriptor(words).desc).toEqual({
      type: "page-group-response",
      pp: true,
      rc: 0,
      rid: DEV,
      pasid: 5,
      prgi: 0,
    });
    expect(b.hw.prq.responses).toEqual([{ rid: DEV, pasid: 5, grpid: 0, code: 0, auto: false }]);
    expect(b.pendingPageRequests()).toEqual([]);
    expect(b.hw.prq.heldRequests()).toEqual([]);
    dom.map(0x2000, 0x9000_0000, 0x1000, Perm.W);
    const out = createTranslation();
    expect(b.translate(DEV, 5, 0x2345, W, out)).toBe(true);
    expect(out.pa).toBe(0x9000_0345);
    // A second response to the same group: nothing is pending (ENOENT), nothing is written.
    const after = b.hw.iqh;
    throwsCode(() => b.pageResponse(req, "success"), "ENOENT");
    expect(b.hw.iqh).toBe(after);
  });

  it("invalid: the device receives Invalid Request and the DMA fails; without PASID the descriptor has no PP", () => {
    const { b } = setup();
    const req = fault(b, NO_PASID, 0x7000, R)!.pageRequest!;
    b.pageResponse(req, "invalid");
    expect(iqSlot(b, 2)).toEqual([0x0108_1009n, 0n, 0n, 0n]);
    expect(b.hw.prq.responses).toEqual([{ rid: DEV, pasid: NO_PASID, grpid: 0, code: 1, auto: false }]);
    // Nothing was mapped: the device's next attempt faults again and is a new group.
    expect(fault(b, NO_PASID, 0x7000, R)!.pageRequest).toMatchObject({ grpid: 0, addr: 0x7000 });
  });

  it("ENOENT for a group never reported or of another PASID; EINVAL for malformed arguments", () => {
    const { b } = setup();
    const req = fault(b, 5, 0x2000, W)!.pageRequest!;
    throwsCode(() => b.pageResponse({ ...req, grpid: 1 }, "success"), "ENOENT");
    throwsCode(() => b.pageResponse({ ...req, pasid: 6 }, "success"), "ENOENT");
    throwsCode(() => b.pageResponse({ ...req, pasid: NO_PASID }, "success"), "ENOENT");
    throwsCode(() => b.pageResponse({ ...req, rid: 0x200 }, "invalid"), "ENOENT");
    const bad: unknown[] = [
      [req, "retry"],
      [null, "success"],
      [{ ...req, grpid: 512 }, "success"],
      [{ ...req, grpid: 1.5 }, "success"],
      [{ ...req, rid: -1 }, "success"],
      [{ ...req, rid: "1" }, "success"],
      [{ ...req, pasid: 2 ** 20 }, "success"],
    ];
    for (const [r, c] of bad as Array<[PageRequest, "success"]>)
      throwsCode(() => b.pageResponse(r, c), "EINVAL");
    expect(b.pendingPageRequests()).toEqual([req]);
    b.pageResponse(req, "success");
  });

  it("atomic: a refused response changes nothing; a response allocates nothing (fail_nth never fires in it)", () => {
    const { b, t } = setup();
    const req = fault(b, 5, 0x2000, W)!.pageRequest!;
    const snap = t.memory.snapshot();
    const state = () => [
      prqRegs(b),
      b.hw.iqh,
      b.hw.iqt,
      b.pendingPageRequests(),
      b.hw.prq.heldRequests(),
      [...b.hw.prq.responses],
    ];
    const before = state();
    throwsCode(() => b.pageResponse({ ...req, grpid: 3 }, "success"), "ENOENT");
    throwsCode(() => b.pageResponse(req, "maybe" as "success"), "EINVAL");
    expect(PhysicalMemory.sameContents(snap, t.memory.snapshot())).toBe(true);
    expect(state()).toEqual(before);
    const points = t.memory.failNth.points;
    t.memory.failNth.arm(1);
    try {
      b.pageResponse(req, "success");
      expect(t.memory.failNth.armed).toBe(true);
      expect(t.memory.failNth.points).toBe(points);
    } finally {
      t.memory.failNth.disarm();
    }
    expect(b.pendingPageRequests()).toEqual([]);
  });

  it("addDevice of a PRI device is atomic under fail_nth (PRI stays off until it succeeds)", () => {
    for (let n = 1; n < 20; n++) {
      const t = fresh();
      const snap = t.memory.snapshot();
      t.memory.failNth.arm(n);
      try {
        t.backend.addDevice(PRI);
        t.memory.failNth.disarm();
        expect(n).toBeGreaterThan(1);
        expect([...t.backend.hw.prq.priEnabled]).toEqual([DEV]);
        return;
      } catch (e) {
        t.memory.failNth.disarm();
        expect(isIommuError(e, "ENOMEM")).toBe(true);
        expect(PhysicalMemory.sameContents(snap, t.memory.snapshot())).toBe(true);
        expect(t.backend.hw.prq.priEnabled.size).toBe(0);
      }
    }
    throw new Error("never succeeded");
  });

  it("a hardware-model-only instance has no driver: pageResponse is EOPNOTSUPP", () => {
    const { b } = setup();
    const req = fault(b, 5, 0x2000, W)!.pageRequest!;
    const regs = {
      RTADDR: b.hw.readRegister(Reg.RTADDR),
      GSTS: b.hw.readNamed("GSTS"),
      CAP: b.hw.capReg,
      ECAP: b.hw.ecapReg,
    };
    const only = vtdFromRegisters(b.memory, regs);
    throwsCode(() => only.pageResponse(req, "success"), "EOPNOTSUPP");
    expect(only.pendingPageRequests()).toEqual([]);
    expect(only.refusedPageRequests()).toEqual([]);
  });
});

describe("what does not become a page request", () => {
  it("explain and translateBig issue none; removeDevice forgets the device's groups", () => {
    const { b } = setup("vtd-fs-5lvl");
    const pqt = b.hw.readNamed("PQT");
    expect(b.explain(DEV, 5, 0x2000n, W).at(-1)!.note).toMatch(/^fault 0x71/);
    expect(b.hw.readNamed("PQT")).toBe(pqt);
    // Above 2^53 the address would not fit the number a PageRequest carries: the fault is recorded.
    const big = b.translateBig(DEV, 5, 2n ** 55n, R);
    expect(big.ok).toBe(false);
    if (!big.ok) {
      expect(big.fault.pageRequest).toBeUndefined();
      expect(big.fault.recorded).toBe(true);
    }
    expect(b.hw.readNamed("PQT")).toBe(pqt);
    expect(b.hw.prq.suspended).toBe(false);
    fault(b, 5, 0x2000, W);
    expect(b.pendingPageRequests()).toHaveLength(1);
    b.detach(DEV, Intent.pasid(5));
    b.detach(DEV, Intent.rid);
    b.removeDevice(DEV);
    expect(b.pendingPageRequests()).toEqual([]);
    expect(b.hw.prq.heldRequests()).toEqual([]);
    expect(b.hw.prq.priEnabled.size).toBe(0);
  });
});

describe("hostile page request registers under the driver", () => {
  it("a PQH that makes the queue look full: PRO, an auto-response, then the handler drains and clears PRO", () => {
    const { b } = setup();
    const hw = b.hw;
    hw.writeRegister(Reg.PECTL, BigInt(0x8000_0000), 4);
    fault(b, 5, 0x2000, W);
    expect(prqRegs(b)).toEqual({ PQH: 0n, PQT: 0x20n, PRS: 1n, PECTL: 0xc000_0000n });
    hw.writeRegister(Reg.PQH, 0x40n);
    const f = fault(b, 5, 0x3000, W)!;
    expect(f.vendor.fields).toMatchObject({ PRQ: "overflow", RESPONSE: 0 });
    expect(hw.readNamed("PRS")).toBe(BigInt(Prs.PPR | Prs.PRO));
    // Unmasking runs the handler: from PQH 0x40 round to PQT 0x20, 2047 slots; zeros are refused, the real one reported.
    hw.writeRegister(Reg.PECTL, 0n, 4);
    expect(prqRegs(b)).toEqual({ PQH: 0x20n, PQT: 0x20n, PRS: 0n, PECTL: 0n });
    expect(b.pendingPageRequests()).toEqual([
      { rid: DEV, pasid: 5, addr: 0x2000, perm: Perm.W, priv: false, grpid: 0, last: true },
    ]);
    expect(b.refusedPageRequests()).toHaveLength(256);
    expect(b.hw.prq.responses).toEqual([{ rid: DEV, pasid: 5, grpid: 1, code: 0, auto: true }]);
  });

  it("random PRQ register writes and queue garbage: only IommuErrors, bounded, and the driver keeps working", () => {
    const rnd = prng(0x9e7);
    const word = (): bigint =>
      (BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32));
    const offsets = [Reg.PQH, Reg.PQT, Reg.PQA, Reg.PRS, Reg.PECTL, 0xd8, 0xe4, 0xe8];
    for (let round = 0; round < 12; round++) {
      const { b } = setup();
      const base = Number(b.hw.readNamed("PQA") & ~0xfffn);
      for (let i = 0; i < 64; i++) b.memory.write64(base + Math.floor(rnd() * 8192) * 8, word());
      for (let i = 0; i < 25; i++) {
        try {
          const off = offsets[Math.floor(rnd() * offsets.length)]!;
          if (rnd() < 0.5) b.hw.writeRegister(off, word());
          else b.hw.writeRegister(off, word(), 4);
          const out = createTranslation();
          b.translate(
            DEV,
            rnd() < 0.5 ? 5 : NO_PASID,
            Math.floor(rnd() * 32) * 4096,
            rnd() < 0.5 ? R : W,
            out,
          );
          for (const p of b.pendingPageRequests().slice(0, 2))
            b.pageResponse(p, rnd() < 0.5 ? "success" : "invalid");
        } catch (e) {
          expect(e).toBeInstanceOf(IommuError);
        }
      }
    }
  });
});

describe("page group response codec (inv-desc.ts)", () => {
  it("encode and decode agree with the bytes Linux's QI_PGRP_* macros give", () => {
    const d = {
      type: "page-group-response",
      pp: true,
      rc: 0xf,
      rid: 0xffff,
      pasid: 0xfffff,
      prgi: 0x1ff,
    } as const;
    expect(encodeDescriptor(d)).toEqual([0x000f_ffff_ffff_f019n, 0xff8n]);
    expect(decodeDescriptor(encodeDescriptor(d))).toEqual({ desc: d, error: null });
  });
});
