/**
 * Recoverable I/O page faults through FAULT objects (Linux 6.15: iommufd's eventq.c
 * iommufd_fault_iopf_handler / iommufd_fault_fops_read / _write /
 * iommufd_auto_response_faults / iommufd_fault_destroy; drivers/iommu/io-pgfault.c
 * iommu_report_device_fault, iopf_error_response): the SMMUv3 stall model (a stalled
 * transaction, CMD_RESUME Retry / Abort read back from the command queue) and VT-d page
 * requests (PRI, the page request queue, the page group response), the DMA held on a
 * request and retried or failed by the answer, and the errnos of the fault fd.
 */

import { BackendRegistry, Perm } from "@iommu-kit/core";
import { mockBackend } from "@iommu-kit/core/testing";
import { CmdOp, encodeCd, encodeLeafPte, ResumeResp } from "@iommu-kit/smmuv3";
import { describe, expect, it } from "vitest";
import { Host, PGFAULT_FLAGS_LAST_PAGE, PGFAULT_FLAGS_PASID_VALID, PGFAULT_PERM_PRIV } from "../src/index.ts";
import { expectErrno, mockHost, sweepFailNth } from "./helpers.ts";
import { guestWrite64, hpa, smmuRig, VSTE0, VSTE1 } from "./viommu-rig.ts";

/** CMD_RESUME as arm_smmu_page_response builds it (IHI 0070 4.7.1): StreamID, STAG, Resp. */
const resume = (sid: number, stag: number, resp: number): [bigint, bigint] => [
  BigInt(CmdOp.RESUME) | (BigInt(resp) << 12n) | (BigInt(sid) << 32n),
  BigInt(stag),
];

/** A stall-capable SMMU (STALL_MODEL 0b00) and device 0x10 on a stage-1 paging HWPT with a fault queue. */
async function stalling(withQueue = true) {
  const r = await smmuRig({ stallModel: "both" }, true);
  const { h, dev, ioas } = r;
  const fq = h.faultQueueAlloc();
  const hwpt = h.hwptAlloc({ device: dev, pt: ioas, ...(withQueue ? { faultQueue: fq } : {}) });
  h.attach(dev, "rid", hwpt);
  r.trace();
  return { ...r, fq, hwpt };
}

describe("SMMUv3 stall model: a stalled DMA held on the FAULT object", () => {
  it("held, read as iommu_hwpt_pgfault, answered SUCCESS: CMD_RESUME Retry and the DMA lands", async () => {
    const { h, b, dev, ioas, fq, trace } = await stalling();
    const r = h.dma(dev, { iova: 0x200_0010, access: "write", data: new Uint8Array([1, 2, 3, 4]) });
    expect(r).toMatchObject({
      ok: false,
      pending: true,
      cookie: 1,
      fault: { class: "translation", vendor: { name: "F_TRANSLATION", fields: { STALL: 1, STAG: 0 } } },
    });
    expect(b.hw.stalls.held).toBe(1);
    // Not read yet: no response entry for the cookie (xa_erase finds nothing): EINVAL.
    expectErrno(() => h.faultRespond(fq, { cookie: 1, code: "success" }), "EINVAL");
    expect(h.describe(fq)).toEqual({ id: fq, kind: "fault", pending: 1, outstanding: [] });
    // A stall is always the last of its group; no PASID; perm WRITE.
    expect(h.faultQueueRead(fq)).toEqual([
      {
        flags: PGFAULT_FLAGS_LAST_PAGE,
        devId: dev,
        pasid: 0,
        grpid: 0,
        perm: 2,
        addr: 0x200_0000,
        length: 0,
        cookie: 1,
      },
    ]);
    expect(h.describe(fq)).toEqual({ id: fq, kind: "fault", pending: 0, outstanding: [1] });
    expect(h.faultsRead()).toEqual([]); // a held page request is not a host fault
    h.ioasMap(ioas, { iova: 0x200_0000, length: 0x1000, pa: 0x300_0000, prot: Perm.R | Perm.W });
    trace();
    expectErrno(() => h.faultRespond(fq, { cookie: 1, code: "retry" as never }), "EINVAL");
    expect(h.faultRespond(fq, { cookie: 1, code: "success" })).toEqual([{ ok: true, pa: 0x300_0010 }]);
    // arm_smmu_page_response: CMD_RESUME with the StreamID and STAG, no CMD_SYNC.
    expect(trace()).toEqual([resume(0x10, 0, ResumeResp.RETRY)]);
    expect(h.memRead(0x300_0010, 4)).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(b.hw.stalls.held).toBe(0);
    expectErrno(() => h.faultRespond(fq, { cookie: 1, code: "success" }), "EINVAL");
    expect(h.describe(fq)).toEqual({ id: fq, kind: "fault", pending: 0, outstanding: [] });
  });

  it("answered INVALID: CMD_RESUME Abort and the DMA fails; the STAG and the cookie are free again", async () => {
    const { h, b, dev, fq, trace } = await stalling();
    const r = h.dma(dev, { iova: 0x200_0000, access: "read", length: 8, priv: true });
    expect(r).toMatchObject({ pending: true, cookie: 1 });
    expect(h.faultQueueRead(fq)).toMatchObject([{ perm: Perm.R | PGFAULT_PERM_PRIV, grpid: 0 }]);
    const out = h.faultRespond(fq, { cookie: 1, code: "invalid" });
    expect(out).toEqual([{ ok: false, fault: (r as { fault: unknown }).fault }]);
    expect(trace()).toEqual([resume(0x10, 0, ResumeResp.ABORT)]);
    expect(b.hw.stalls.held).toBe(0);
    expect(h.dma(dev, { iova: 0x200_0000, access: "read", length: 1 })).toMatchObject({
      pending: true,
      cookie: 1,
    });
    expect(h.faultQueueRead(fq)).toMatchObject([{ grpid: 0, cookie: 1 }]);
  });

  it("a retried DMA that faults again is held again under a new request", async () => {
    const { h, dev, fq } = await stalling();
    h.dma(dev, { iova: 0x200_0000, access: "read", length: 1 });
    expect(h.faultQueueRead(fq, 0)).toEqual([]); // a zero-byte read takes nothing
    h.faultQueueRead(fq);
    const again = h.faultRespond(fq, { cookie: 1, code: "success" }); // nothing mapped: stalls again
    expect(again).toMatchObject([{ ok: false, pending: true, cookie: 1 }]);
    expect(h.faultQueueRead(fq, 5)).toMatchObject([{ addr: 0x200_0000, grpid: 0, cookie: 1 }]);
    expectErrno(() => h.faultQueueRead(fq, -1), "EINVAL");
    expectErrno(() => h.faultQueueRead(fq, 1.5), "EINVAL");
    expectErrno(() => h.faultQueueRead(dev), "ENOENT");
  });

  it("reads take at most max groups, oldest first; cookies are the lowest free", async () => {
    const { h, dev, fq } = await stalling();
    for (const iova of [0x200_0000, 0x200_1000, 0x200_2000]) h.dma(dev, { iova, access: "read", length: 1 });
    expect(h.faultQueueRead(fq, 2).map((x) => [x.cookie, x.grpid, x.addr])).toEqual([
      [1, 0, 0x200_0000],
      [2, 1, 0x200_1000],
    ]);
    h.faultRespond(fq, { cookie: 1, code: "invalid" });
    h.dma(dev, { iova: 0x200_3000, access: "read", length: 1 });
    expect(h.faultQueueRead(fq).map((x) => [x.cookie, x.grpid, x.addr])).toEqual([
      [3, 2, 0x200_2000],
      [1, 0, 0x200_3000],
    ]);
  });

  it("no FAULT object on the HWPT: the stall is answered Abort at once (iopf_error_response), the host logs it", async () => {
    const { h, b, dev, trace } = await stalling(false);
    const r = h.dma(dev, { iova: 0x200_0000, access: "read", length: 1 });
    expect(r.ok).toBe(false);
    expect((r as { pending?: boolean }).pending).toBe(undefined);
    expect(trace()).toEqual([resume(0x10, 0, ResumeResp.ABORT)]);
    expect(b.hw.stalls.held).toBe(0);
    expect(h.faultsRead(dev)).toMatchObject([{ iova: 0x200_0000, vendor: { fields: { STALL: 1 } } }]);
  });

  it("detach answers what is held Invalid (iommufd_auto_response_faults); the fault queue is EBUSY while a HWPT uses it", async () => {
    const { h, b, dev, fq, hwpt, trace } = await stalling();
    h.dma(dev, { iova: 0x200_0000, access: "read", length: 1 });
    h.dma(dev, { iova: 0x200_1000, access: "read", length: 1 });
    h.faultQueueRead(fq, 1);
    expectErrno(() => h.destroy(fq), "EBUSY");
    h.detach(dev, "rid");
    // The queued one and the read one, each with its STAG, both Abort; nothing left.
    const cmds = trace().filter((c) => Number(c[0] & 0xffn) === CmdOp.RESUME);
    expect(cmds).toEqual([resume(0x10, 1, ResumeResp.ABORT), resume(0x10, 0, ResumeResp.ABORT)]);
    expect(b.hw.stalls.held).toBe(0);
    expect(h.describe(fq)).toEqual({ id: fq, kind: "fault", pending: 0, outstanding: [] });
    expectErrno(() => h.faultRespond(fq, { cookie: 1, code: "success" }), "EINVAL");
    h.destroy(hwpt);
    h.destroy(fq);
  });
});

describe("a nested HWPT on a vIOMMU with a FAULT object (IOMMU_HWPT_FAULT_ID_VALID on nested)", () => {
  it("the guest's CD.S stall is a page request of the nested HWPT, not a vEVENTQ event; the guest maps, SUCCESS retries", async () => {
    const r = await smmuRig({ stallModel: "both" }, true);
    const { h, dev, parent, trace } = r;
    // The guest's CD 0 with S = 1 (stall, IHI 0070 5.4); STE.S1STALLD = 0 in the vSTE.
    const cd = encodeCd({
      V: 1,
      T0SZ: 16,
      EPD1: 1,
      IPS: 5,
      AA64: 1,
      R: 1,
      A: 1,
      S: 1,
      ASID: 42,
      TTB0: 0x10_0000,
    });
    for (let i = 0; i < 8; i++) guestWrite64(h, 0x1000 + i * 8, cd[i]!);
    const v = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    h.vdeviceAlloc({ viommu: v, device: dev, virtId: 0x99 });
    const q = h.veventqAlloc({ viommu: v, type: "arm-smmuv3", depth: 4 });
    const fq = h.faultQueueAlloc();
    const n = h.hwptAlloc({ device: dev, pt: v, data: { ste: [VSTE0, VSTE1] }, faultQueue: fq });
    expect(h.describe(n)).toMatchObject({ viommu: v, faultQueue: fq });
    h.attach(dev, "rid-all-pasids", n);
    trace();
    expect(h.dma(dev, { iova: 0x2004, access: "read", length: 4 })).toMatchObject({
      pending: true,
      cookie: 1,
    });
    expect(h.faultQueueRead(fq)).toEqual([
      {
        flags: PGFAULT_FLAGS_LAST_PAGE,
        devId: dev,
        pasid: 0,
        grpid: 0,
        perm: Perm.R,
        addr: 0x2000,
        length: 0,
        cookie: 1,
      },
    ]);
    expect(h.veventqRead(q)).toEqual([]);
    expect(h.faultsRead()).toEqual([]);
    // The guest maps IOVA 0x2000 -> IPA 0x51_0000 (L3 index 2), then answers.
    guestWrite64(h, 0x10_3000 + 16, encodeLeafPte(0x51_0000n, 3, { ap: 1, ng: 1 }));
    h.memWrite(hpa(0x51_0004), new Uint8Array([5, 6, 7, 8]));
    expect(h.faultRespond(fq, { cookie: 1, code: "success" })).toEqual([
      { ok: true, pa: hpa(0x51_0004), data: new Uint8Array([5, 6, 7, 8]) },
    ]);
    expect(trace()).toEqual([resume(0x10, 0, ResumeResp.RETRY)]);
  });
});

describe("VT-d page requests (PRI, the page request queue, the page group response)", () => {
  async function vtd() {
    const registry = new BackendRegistry();
    registry.register(mockBackend);
    const h = new Host({
      registry,
      ram: [{ base: 0, size: 2 ** 32 }],
      tables: { base: 2 ** 32, size: 2 ** 27 },
    });
    await h.loadBackend("vtd");
    h.addIommu("dmar0", "vtd");
    const dev = h.addDevice({ iommu: "dmar0", rid: 0x300, pasidBits: 20, ats: true, pri: true });
    const ioas = h.ioasAlloc();
    const fq = h.faultQueueAlloc();
    const hwpt = h.hwptAlloc({ device: dev, pt: ioas, flags: ["pasid"], faultQueue: fq });
    h.attach(dev, "rid", hwpt);
    h.attach(dev, { pasid: 5 }, hwpt);
    return { h, dev, ioas, fq, hwpt };
  }

  it("a PASID page request: PASID_VALID | LAST_PAGE, answered success, the DMA retried", async () => {
    const { h, dev, ioas, fq } = await vtd();
    expect(h.hwInfo(dev).caps.features.iopf).toBe(true);
    const r = h.dma(dev, { pasid: 5, iova: 0x40_0008, access: "write", data: new Uint8Array([0xab]) });
    expect(r).toMatchObject({
      ok: false,
      pending: true,
      cookie: 1,
      fault: { recorded: false, vendor: { vendor: "intel-vtd" } },
    });
    expect(h.faultQueueRead(fq)).toEqual([
      {
        flags: PGFAULT_FLAGS_PASID_VALID | PGFAULT_FLAGS_LAST_PAGE,
        devId: dev,
        pasid: 5,
        grpid: 0,
        perm: Perm.W,
        addr: 0x40_0000,
        length: 0,
        cookie: 1,
      },
    ]);
    h.ioasMap(ioas, { iova: 0x40_0000, length: 0x1000, pa: 0x900_0000, prot: Perm.R | Perm.W });
    expect(h.faultRespond(fq, { cookie: 1, code: "success" })).toEqual([{ ok: true, pa: 0x900_0008 }]);
    expect(h.memRead(0x900_0008, 1)).toEqual(new Uint8Array([0xab]));
    expect(h.faultsRead()).toEqual([]);
  });

  it("answered invalid: the DMA fails; the PRGI is free again (the next request takes 0)", async () => {
    const { h, dev, fq } = await vtd();
    const r = h.dma(dev, { iova: 0x40_0000, access: "read", length: 4 });
    expect(h.faultQueueRead(fq)).toMatchObject([{ flags: PGFAULT_FLAGS_LAST_PAGE, pasid: 0, grpid: 0 }]);
    expect(h.faultRespond(fq, { cookie: 1, code: "invalid" })).toEqual([
      { ok: false, fault: (r as { fault: unknown }).fault },
    ]);
    h.dma(dev, { iova: 0x40_1000, access: "read", length: 4 });
    h.dma(dev, { iova: 0x40_2000, access: "read", length: 4 });
    expect(h.faultQueueRead(fq).map((x) => [x.grpid, x.cookie])).toEqual([
      [0, 1],
      [1, 2],
    ]);
  });

  it("dmaInto: the held write keeps its bytes; the retry returns them written", async () => {
    const { h, dev, ioas, fq } = await vtd();
    const buf = new Uint8Array([9, 8, 7]);
    expect(h.dmaInto(dev, null, 0x40_0000, 2, buf)).toBe(-1);
    buf.fill(0);
    h.faultQueueRead(fq);
    h.ioasMap(ioas, { iova: 0x40_0000, length: 0x1000, pa: 0x910_0000, prot: Perm.R | Perm.W });
    expect(h.faultRespond(fq, { cookie: 1, code: "success" })).toEqual([{ ok: true, pa: 0x910_0000 }]);
    expect(h.memRead(0x910_0000, 3)).toEqual(new Uint8Array([9, 8, 7]));
  });
});

describe("FAULT objects and which HWPTs take them", () => {
  it("paging and nested HWPTs may take a fault queue (6.15 valid_flags); an unknown one ENOENT", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    const fq = h.faultQueueAlloc();
    const before = h.state();
    expectErrno(() => h.hwptAlloc({ device: dev, pt: ioas, faultQueue: ioas }), "ENOENT");
    expect(h.state()).toEqual(before);
    const hw = h.hwptAlloc({ device: dev, pt: ioas, faultQueue: fq });
    expect(h.describe(hw)).toMatchObject({ faultQueue: fq });
  });

  it("fail_nth: faultQueueAlloc, a held DMA, faultQueueRead and faultRespond", () => {
    const h = mockHost();
    h.addIommu("p0", "mock-iopf");
    const dev = h.addDevice({ iommu: "p0", rid: 1 });
    const ioas = h.ioasAlloc();
    const fq = sweepFailNth(h, () => h.faultQueueAlloc()).result as number;
    const hw = sweepFailNth(h, () => h.hwptAlloc({ device: dev, pt: ioas, faultQueue: fq })).result as number;
    h.attach(dev, "rid", hw);
    expect(h.dma(dev, { iova: 0x5000, access: "read", length: 1 })).toMatchObject({
      pending: true,
      cookie: 1,
    });
    expect((sweepFailNth(h, () => h.faultQueueRead(fq)).result as unknown[]).length).toBe(1);
    h.ioasMap(ioas, { iova: 0x5000, length: 0x1000, pa: 0x8000, prot: Perm.R });
    expect(sweepFailNth(h, () => h.faultRespond(fq, { cookie: 1, code: "success" })).result).toEqual([
      { ok: true, pa: 0x8000, data: new Uint8Array(1) },
    ]);
    h.detach(dev, "rid");
    sweepFailNth(h, () => h.destroy(hw));
    sweepFailNth(h, () => h.destroy(fq));
  });
});
