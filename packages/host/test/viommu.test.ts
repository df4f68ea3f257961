/**
 * vIOMMU, vDEVICE and vEVENTQ objects over a real SMMUv3 (Linux 6.15 semantics:
 * drivers/iommu/iommufd/viommu.c, eventq.c, driver.c, hw_pagetable.c;
 * drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c): the errno of each rule with
 * nothing changed, the guest's STE through its vSID, the guest's commands as they reach
 * the physical command queue, the guest's events with the vSID, the vEVENTQ's depth,
 * sequence numbers and LOST_EVENTS record, destroy ordering and fail_nth atomicity.
 */

import { CmdOp, encodeCommand } from "@iommu-kit/smmuv3";
import { describe, expect, it } from "vitest";
import { VeventqObject } from "../src/veventq.ts";
import type { ViommuObject } from "../src/viommu.ts";
import { expectErrno, sweepFailNth } from "./helpers.ts";
import { err, guestWrite64, hpa, le64, smmuRig, VSTE0, VSTE1 } from "./viommu-rig.ts";

const SYNC: [bigint, bigint] = [BigInt(CmdOp.CMD_SYNC), 0n];
const STE = { ste: [VSTE0, VSTE1] };

/** A guest: vIOMMU, vDEVICE (vSID 0x99) and a stage-1 vSTE attached to the device's RID and PASIDs. */
async function guest(depth?: number) {
  const r = await smmuRig();
  const { h, dev, parent } = r;
  const viommu = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
  const vdev = h.vdeviceAlloc({ viommu, device: dev, virtId: 0x99 });
  const q = depth === undefined ? null : h.veventqAlloc({ viommu, type: "arm-smmuv3", depth });
  const nested = h.hwptAlloc({ device: dev, pt: viommu, data: STE });
  h.attach(dev, "rid-all-pasids", nested);
  r.trace();
  return { ...r, viommu, vdev, q, nested };
}

/** Expects `fn` to throw `code` and leave the host exactly as it was. */
function refused(h: Awaited<ReturnType<typeof smmuRig>>["h"], fn: () => unknown, code: string): void {
  const before = h.state();
  expectErrno(fn, code);
  expect(h.state()).toEqual(before);
}

/** The 32-byte F_TRANSLATION record of a read without PASID at `iova`, StreamID field `sid` (IHI 0070 7.3.10). */
function fTranslation(sid: number, iova: number): Uint8Array {
  // EventID 0x10 [7:0], StreamID [63:32]; RnW [99] = read, CLASS [105:104] = IN (0b10); InputAddr [191:128].
  return le64(0x10n | (BigInt(sid) << 32n), (1n << 35n) | (0b10n << 40n), BigInt(iova), 0n);
}

describe("IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl, arm_vsmmu_alloc)", () => {
  it("errnos in the kernel's order, nothing changed", async () => {
    const { h, dev, ioas, parent } = await smmuRig();
    const plain = h.hwptAlloc({ device: dev, pt: ioas });
    refused(h, () => h.viommuAlloc({ device: dev, hwpt: parent, type: "default" }), "EOPNOTSUPP");
    // IOMMU_VIOMMU_TYPE_DEFAULT is refused before the device is looked up.
    refused(h, () => h.viommuAlloc({ device: 99, hwpt: parent, type: "default" }), "EOPNOTSUPP");
    refused(h, () => h.viommuAlloc({ device: 99, hwpt: parent, type: "arm-smmuv3" }), "ENOENT");
    // iommufd_get_hwpt_paging: an IOAS id is no paging HWPT.
    refused(h, () => h.viommuAlloc({ device: dev, hwpt: ioas, type: "arm-smmuv3" }), "ENOENT");
    refused(h, () => h.viommuAlloc({ device: dev, hwpt: plain, type: "arm-smmuv3" }), "EINVAL");
    // arm_vsmmu_alloc: only IOMMU_VIOMMU_TYPE_ARM_SMMUV3.
    refused(h, () => h.viommuAlloc({ device: dev, hwpt: parent, type: "selftest" }), "EOPNOTSUPP");
    // A device whose IOMMU has no viommu_alloc.
    h.addIommu("m0", "mock");
    const md = h.addDevice({ iommu: "m0", rid: 1 });
    refused(h, () => h.viommuAlloc({ device: md, hwpt: parent, type: "arm-smmuv3" }), "EOPNOTSUPP");
    // A nest parent of another SMMU.
    h.addIommu("smmu1", "smmuv3");
    const other = h.addDevice({ iommu: "smmu1", rid: 0x10 });
    refused(h, () => h.viommuAlloc({ device: other, hwpt: parent, type: "arm-smmuv3" }), "EINVAL");
    const v = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    // The vIOMMU uses the parent's VMID (vsmmu->vmid = s2_parent->s2_cfg.vmid).
    expect(h.describe(v)).toEqual({
      id: v,
      kind: "viommu",
      type: "arm-smmuv3",
      iommu: "smmu0",
      hwpt: parent,
      vdevices: 0,
      nested: 0,
      veventqs: {},
      vendor: { vmid: 1, parent: expect.any(Number) },
    });
    expect(h.describe(parent)).toMatchObject({ viommus: 1, children: 0 });
  });
});

describe("IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl)", () => {
  it("errnos: virt_id range EINVAL, unknown ids ENOENT, another IOMMU EINVAL, EEXIST; nothing changed", async () => {
    const { h, dev, dev2, parent } = await smmuRig();
    const v = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN])
      refused(h, () => h.vdeviceAlloc({ viommu: v, device: dev, virtId: bad }), "EINVAL");
    refused(h, () => h.vdeviceAlloc({ viommu: parent, device: dev, virtId: 1 }), "ENOENT");
    refused(h, () => h.vdeviceAlloc({ viommu: v, device: 999, virtId: 1 }), "ENOENT");
    h.addIommu("smmu1", "smmuv3");
    const other = h.addDevice({ iommu: "smmu1", rid: 0x10 });
    refused(h, () => h.vdeviceAlloc({ viommu: v, device: other, virtId: 1 }), "EINVAL");
    const vd = h.vdeviceAlloc({ viommu: v, device: dev, virtId: 2 ** 32 - 1 });
    expect(h.describe(vd)).toEqual({ id: vd, kind: "vdevice", viommu: v, device: dev, virtId: 2 ** 32 - 1 });
    // xa_cmpxchg: a taken vSID; and a device that has a vDEVICE already.
    refused(h, () => h.vdeviceAlloc({ viommu: v, device: dev2, virtId: 2 ** 32 - 1 }), "EEXIST");
    refused(h, () => h.vdeviceAlloc({ viommu: v, device: dev, virtId: 5 }), "EEXIST");
    expect(h.describe(v)).toMatchObject({ vdevices: 1 });
  });
});

describe("IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc)", () => {
  it("errnos: DEFAULT or unknown type EOPNOTSUPP, depth 0 EINVAL, unknown vIOMMU ENOENT, same type EEXIST", async () => {
    const { h, dev, parent } = await smmuRig();
    const v = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    refused(h, () => h.veventqAlloc({ viommu: v, type: "default", depth: 4 }), "EOPNOTSUPP");
    refused(h, () => h.veventqAlloc({ viommu: v, type: "bogus", depth: 4 }), "EOPNOTSUPP");
    for (const d of [0, -1, 2 ** 32, 0.5])
      refused(h, () => h.veventqAlloc({ viommu: v, type: "arm-smmuv3", depth: d }), "EINVAL");
    refused(h, () => h.veventqAlloc({ viommu: parent, type: "arm-smmuv3", depth: 4 }), "ENOENT");
    const q = h.veventqAlloc({ viommu: v, type: "arm-smmuv3", depth: 4 });
    refused(h, () => h.veventqAlloc({ viommu: v, type: "arm-smmuv3", depth: 8 }), "EEXIST");
    expect(h.describe(q)).toEqual({
      id: q,
      kind: "veventq",
      viommu: v,
      type: "arm-smmuv3",
      depth: 4,
      pending: 0,
      lost: false,
      sequence: 0,
    });
    expect(h.describe(v)).toMatchObject({ veventqs: { "arm-smmuv3": q } });
    expectErrno(() => h.veventqRead(v), "ENOENT");
    expect(h.veventqRead(q, 0)).toEqual([]);
    expectErrno(() => h.veventqRead(q, -1), "EINVAL");
  });
});

describe("IOMMU_HWPT_ALLOC on a vIOMMU (iommufd_viommu_alloc_hwpt_nested, arm_vsmmu_alloc_domain_nested)", () => {
  it("errnos: nested-on-parent EOPNOTSUPP, another IOMMU EINVAL, flags / no data EOPNOTSUPP, bad vSTE EIO", async () => {
    const { h, dev, parent } = await smmuRig();
    const v = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    refused(h, () => h.hwptAlloc({ device: dev, pt: parent, data: STE }), "EOPNOTSUPP");
    h.addIommu("smmu1", "smmuv3");
    const other = h.addDevice({ iommu: "smmu1", rid: 0x10 });
    refused(h, () => h.hwptAlloc({ device: other, pt: v, data: STE }), "EINVAL");
    refused(h, () => h.hwptAlloc({ device: dev, pt: v, data: STE, flags: ["pasid"] }), "EOPNOTSUPP");
    refused(h, () => h.hwptAlloc({ device: dev, pt: v }), "EOPNOTSUPP");
    // arm_smmu_validate_vste: a bit outside STRTAB_STE_0_NESTING_ALLOWED (word 0 bit 60 is S1CDMax's,
    // bit 62 is not; Config 0b110 (stage 2) is not a guest Config).
    refused(h, () => h.hwptAlloc({ device: dev, pt: v, data: { ste: [1n | (6n << 1n), 0n] } }), "EIO");
    refused(h, () => h.hwptAlloc({ device: dev, pt: v, data: STE, faultQueue: 999 }), "ENOENT");
    const n = h.hwptAlloc({ device: dev, pt: v, data: STE });
    expect(h.describe(n)).toMatchObject({ kind: "hwpt-nested", parent, viommu: v, faultQueue: null });
    expect(h.describe(v)).toMatchObject({ nested: 1 });
    expect(h.describe(parent)).toMatchObject({ children: 0, viommus: 1 });
  });

  it("the guest STE through its vSID: the DMA walks the guest CD table and stage 1 over the parent", async () => {
    const { h, dev, dev2, parent } = await smmuRig();
    const v = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    const n = h.hwptAlloc({ device: dev2, pt: v, data: STE });
    // arm_smmu_attach_prepare_vmaster: a stage-1 vSTE needs the device's vDEVICE (ENOENT).
    refused(h, () => h.attach(dev2, "rid-all-pasids", n), "ENOENT");
    h.vdeviceAlloc({ viommu: v, device: dev2, virtId: 0x42 });
    h.attach(dev2, "rid-all-pasids", n);
    expect(h.dma(dev2, { iova: 0x1008, access: "read", length: 4 })).toMatchObject({
      ok: true,
      pa: hpa(0x50_0008),
    });
  });
});

describe("IOMMU_HWPT_INVALIDATE on a vIOMMU (arm_vsmmu_cache_invalidate)", () => {
  it("the commands reaching the physical queue: VMID applied, vSIDs translated, one CMD_SYNC", async () => {
    const { h, viommu, trace } = await guest();
    const vmid = BigInt((h.describe(viommu) as unknown as { vendor: { vmid: number } }).vendor.vmid);
    const guestCmds: [bigint, bigint][] = [
      encodeCommand({ op: CmdOp.TLBI_NH_ALL }),
      encodeCommand({ op: CmdOp.TLBI_NH_VA, asid: 42, vmid: 7, addr: 0x1000n }),
      encodeCommand({ op: CmdOp.TLBI_NSNH_ALL }),
      encodeCommand({ op: CmdOp.CFGI_CD, sid: 0x99, ssid: 0, leaf: 1 }),
      encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: 0x99 }),
    ];
    expect(h.invalidate(viommu, guestCmds)).toBe(5);
    expect(trace()).toEqual([
      encodeCommand({ op: CmdOp.TLBI_NH_ALL, vmid: Number(vmid) }),
      encodeCommand({ op: CmdOp.TLBI_NH_VA, asid: 42, vmid: Number(vmid), addr: 0x1000n }),
      encodeCommand({ op: CmdOp.TLBI_NH_ALL, vmid: Number(vmid) }),
      encodeCommand({ op: CmdOp.CFGI_CD, sid: 0x10, ssid: 0, leaf: 1 }),
      encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: 0x10 }),
      SYNC,
    ]);
  });

  it("an unknown vSID or CFGI_STE is EIO with the index handled; the batch before it is not issued", async () => {
    const { h, viommu, trace } = await guest();
    const tlbi = encodeCommand({ op: CmdOp.TLBI_NH_ALL });
    let e = err(() => h.invalidate(viommu, [tlbi, encodeCommand({ op: CmdOp.CFGI_CD, sid: 0x55 })]));
    expect(e).toMatchObject({ code: "EIO", details: { handled: 1 } });
    e = err(() => h.invalidate(viommu, [tlbi, tlbi, encodeCommand({ op: CmdOp.CFGI_STE, sid: 0x99 })]));
    expect(e).toMatchObject({ code: "EIO", details: { handled: 2 } });
    expect(trace()).toEqual([]);
    // Not a command: EINVAL, nothing handled.
    expect(err(() => h.invalidate(viommu, [[1n]]))).toMatchObject({
      code: "EINVAL",
      details: { handled: 0 },
    });
    expect(h.invalidate(viommu, [])).toBe(0);
  });

  it("the guest's TLBI through the vIOMMU makes a remapped page visible (stale before it)", async () => {
    const { h, dev, viommu } = await guest();
    expect(h.dma(dev, { iova: 0x1000, access: "read", length: 1 })).toMatchObject({ pa: hpa(0x50_0000) });
    const { encodeLeafPte } = await import("@iommu-kit/smmuv3");
    guestWrite64(h, 0x10_3000 + 8, encodeLeafPte(0x60_0000n, 3, { ap: 1, ng: 1 }));
    expect(h.dma(dev, { iova: 0x1000, access: "read", length: 1 })).toMatchObject({ pa: hpa(0x50_0000) });
    expect(h.invalidate(viommu, [encodeCommand({ op: CmdOp.TLBI_NH_ASID, asid: 42 })])).toBe(1);
    expect(h.dma(dev, { iova: 0x1000, access: "read", length: 1 })).toMatchObject({ pa: hpa(0x60_0000) });
  });

  it("a paging HWPT is ENOENT (iommufd_get_hwpt_nested up to 6.12), an unknown id ENOENT", async () => {
    const { h, parent } = await guest();
    expectErrno(() => h.invalidate(parent, []), "ENOENT");
    expectErrno(() => h.invalidate(999, []), "ENOENT");
  });
});

describe("vEVENTQ: the guest's events (arm_vmaster_report_event, iommufd_viommu_report_event)", () => {
  it("a stage-1 fault of the nested translation reaches the vEVENTQ with the vSID, not the host log", async () => {
    const { h, dev, q } = await guest(8);
    const r = h.dma(dev, { iova: 0x2000, access: "read", length: 4 });
    expect(r).toMatchObject({
      ok: false,
      fault: { class: "translation", vendor: { name: "F_TRANSLATION" } },
    });
    expect(h.veventqRead(q!)).toEqual([{ flags: 0, sequence: 0, data: fTranslation(0x99, 0x2000) }]);
    expect(h.faultsRead()).toEqual([]);
    expect(h.veventqRead(q!)).toEqual([]);
  });

  it("without a vEVENTQ the event is dropped for the guest and the host logs it; a stage-2 fault is the host's", async () => {
    const { h, dev, viommu } = await guest();
    h.dma(dev, { iova: 0x2000, access: "read", length: 4 });
    expect(h.faultsRead(dev)).toMatchObject([{ iova: 0x2000, vendor: { name: "F_TRANSLATION" } }]);
    const q = h.veventqAlloc({ viommu, type: "arm-smmuv3", depth: 4 });
    // IOVA 0x3000 -> IPA 0x200_0000, beyond the parent's mapping: a stage-2 fault (S2 = 1).
    const { encodeLeafPte } = await import("@iommu-kit/smmuv3");
    guestWrite64(h, 0x10_3000 + 0x18, encodeLeafPte(0x200_0000n, 3, { ap: 1, ng: 1 }));
    const r = h.dma(dev, { iova: 0x3000, access: "read", length: 4 });
    expect(r).toMatchObject({ ok: false, fault: { vendor: { fields: { S2: 1 } } } });
    expect(h.veventqRead(q)).toEqual([]);
    expect(h.faultsRead(dev)).toMatchObject([{ iova: 0x3000 }]);
  });

  it("depth, sequence numbers and the one LOST_EVENTS record (iommufd_vevent_handler)", async () => {
    const { h, dev, q } = await guest(2);
    const fault = (iova: number) => h.dma(dev, { iova, access: "read", length: 1 });
    for (const iova of [0x2000, 0x3000, 0x4000, 0x5000]) fault(iova);
    // Two kept (0, 1); the third and fourth lost: the LOST_EVENTS header is requeued at the
    // tail with each lost event's sequence number, so it carries 3.
    expect(h.describe(q!)).toMatchObject({ pending: 2, lost: true, sequence: 4 });
    expect(h.veventqRead(q!)).toEqual([
      { flags: 0, sequence: 0, data: fTranslation(0x99, 0x2000) },
      { flags: 0, sequence: 1, data: fTranslation(0x99, 0x3000) },
      { flags: 1, sequence: 3, data: new Uint8Array(0) },
    ]);
    // Overflow again, read one, then a new event: it replaces the LOST_EVENTS header at the
    // tail ("Remove the lost_events_header and add the new node at the same time"); the
    // gap in sequence numbers (5 -> 7) is what tells the reader.
    for (const iova of [0x6000, 0x7000, 0x8000]) fault(iova);
    expect(h.veventqRead(q!, 1)).toEqual([{ flags: 0, sequence: 4, data: fTranslation(0x99, 0x6000) }]);
    fault(0x9000);
    expect(h.veventqRead(q!)).toEqual([
      { flags: 0, sequence: 5, data: fTranslation(0x99, 0x7000) },
      { flags: 0, sequence: 7, data: fTranslation(0x99, 0x9000) },
    ]);
    expect(h.describe(q!)).toMatchObject({ pending: 0, lost: false, sequence: 8 });
  });

  it("sequence numbers wrap at 2^31: (sequence + 1) & INT_MAX", () => {
    const q = new VeventqObject(1, { id: 9 } as ViommuObject, "arm-smmuv3", 4, 0x7fff_fffe);
    for (const b of [1, 2, 3]) q.report(new Uint8Array([b]));
    expect(q.read().map((r) => r.sequence)).toEqual([0x7fff_fffe, 0x7fff_ffff, 0]);
    expect(q.info()).toMatchObject({ sequence: 1, pending: 0 });
  });

  it("a destroyed vEVENTQ takes no more events; a new one starts at sequence 0", async () => {
    const { h, dev, viommu, q } = await guest(4);
    h.dma(dev, { iova: 0x2000, access: "read", length: 1 });
    h.destroy(q!);
    h.dma(dev, { iova: 0x3000, access: "read", length: 1 });
    expect(h.faultsRead(dev)).toMatchObject([{ iova: 0x3000 }]);
    const q2 = h.veventqAlloc({ viommu, type: "arm-smmuv3", depth: 4 });
    h.dma(dev, { iova: 0x4000, access: "read", length: 1 });
    expect(h.veventqRead(q2)).toEqual([{ flags: 0, sequence: 0, data: fTranslation(0x99, 0x4000) }]);
  });
});

describe("destroy ordering (the refcounts of viommu.c and hw_pagetable.c)", () => {
  it("vIOMMU EBUSY while vDEVICEs, nested HWPTs or vEVENTQs hold it; the parent while the vIOMMU does", async () => {
    const { h, dev, parent, ioas, viommu, vdev, q, nested } = await guest(4);
    refused(h, () => h.destroy(viommu), "EBUSY");
    refused(h, () => h.destroy(parent), "EBUSY");
    refused(h, () => h.destroy(nested), "EBUSY"); // attached
    refused(h, () => h.destroy(dev), "EBUSY");
    h.detach(dev, "rid-all-pasids");
    h.destroy(nested);
    refused(h, () => h.destroy(viommu), "EBUSY"); // vDEVICE, vEVENTQ
    // A device with a vDEVICE (get_device in iommufd_vdevice_alloc_ioctl).
    refused(h, () => h.destroy(dev), "EBUSY");
    h.destroy(vdev);
    refused(h, () => h.destroy(viommu), "EBUSY"); // vEVENTQ
    h.destroy(q!);
    refused(h, () => h.destroy(parent), "EBUSY"); // held by the vIOMMU
    h.destroy(viommu);
    expect(h.describe(parent)).toMatchObject({ viommus: 0 });
    h.destroy(parent);
    h.destroy(dev);
    expect(h.objects().map((o) => o.kind)).toEqual(["device", "ioas"]);
    expect(h.describe(ioas)).toMatchObject({ kind: "ioas" });
    for (const id of [viommu, vdev, q!, nested]) expectErrno(() => h.describe(id), "ENOENT");
  });
});

describe("fail_nth over every new operation (state and table blocks unchanged on ENOMEM)", () => {
  it("viommuAlloc, vdeviceAlloc, veventqAlloc, hwptAlloc on a vIOMMU, invalidate, veventqRead, destroys", async () => {
    const { h, dev, parent } = await smmuRig();
    const v = sweepFailNth(h, () => h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" }), false)
      .result as number;
    const vd = sweepFailNth(h, () => h.vdeviceAlloc({ viommu: v, device: dev, virtId: 0x99 }), false)
      .result as number;
    const q = sweepFailNth(h, () => h.veventqAlloc({ viommu: v, type: "arm-smmuv3", depth: 4 }), false)
      .result as number;
    const n = sweepFailNth(h, () => h.hwptAlloc({ device: dev, pt: v, data: STE }), false).result as number;
    sweepFailNth(h, () => h.attach(dev, "rid-all-pasids", n), false);
    // The kcalloc of arm_vsmmu_cache_invalidate fails before any command: ENOMEM, nothing issued.
    const inv = sweepFailNth(h, () => h.invalidate(v, [encodeCommand({ op: CmdOp.TLBI_NH_ALL })]), false);
    expect(inv.result).toBe(1);
    expect(inv.succeededAt).toBeGreaterThan(1);
    h.dma(dev, { iova: 0x2000, access: "read", length: 1 });
    expect((sweepFailNth(h, () => h.veventqRead(q), false).result as unknown[]).length).toBe(1);
    h.detach(dev, "rid-all-pasids");
    for (const id of [n, vd, q, v]) sweepFailNth(h, () => h.destroy(id), false);
    expect(h.describe(parent)).toMatchObject({ viommus: 0, children: 0 });
  });
});
