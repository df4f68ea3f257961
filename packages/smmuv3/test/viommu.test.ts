/**
 * The SMMUv3 vIOMMU as Linux 6.15 has it (arm-smmu-v3-iommufd.c: arm_vsmmu_alloc,
 * arm_vsmmu_alloc_domain_nested, arm_smmu_validate_vste, arm_smmu_make_nested_domain_ste,
 * arm_smmu_attach_prepare_vmaster; iommufd viommu.c: iommufd_vdevice_alloc_ioctl).
 * Invalidation and events are in viommu-invalidate.test.ts and viommu-events.test.ts.
 */
import { Access, Intent, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { SmmuNestedDomain, SmmuPagingDomain, SmmuViommu } from "../src/index.ts";
import { registersFor, SteConfig } from "../src/index.ts";
import { code, err, guest, guestMemory, hpa, steWords, VSTE0, VSTE1, vrig } from "./viommu-rig.ts";

const R = Access.READ;

describe("arm_vsmmu_alloc", () => {
  it("a nest-parent stage-2 domain of this SMMU, type arm-smmuv3; the vIOMMU uses the parent's VMID", () => {
    const r = vrig();
    const { b } = r;
    b.addDevice({ rid: 8, pasidBits: 0 });
    const parent = b.allocDomain({ type: "paging", flags: { nestParent: true } }) as SmmuPagingDomain;
    const v = b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    // vsmmu->vmid = s2_parent->s2_cfg.vmid: no VMID of its own in 6.15.
    expect(v.vmid).toBe(parent.tagId);
    expect(v.info).toEqual({ vmid: parent.tagId, parent: parent.id });
    expect(v).toMatchObject({ type: "arm-smmuv3", parent, backend: b, id: 1 });
    const w = b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    expect([w.id, w.vmid]).toEqual([2, parent.tagId]);
    expect(b.capabilities(8).features.viommuTypes).toEqual(["arm-smmuv3"]);
  });

  it("errnos in iommufd_viommu_alloc_ioctl / arm_vsmmu_alloc order", () => {
    const { b } = vrig();
    b.addDevice({ rid: 8, pasidBits: 0 });
    const parent = b.allocDomain({ type: "paging", flags: { nestParent: true } });
    const s1 = b.allocDomain({ type: "paging" });
    const s2 = b.allocDomain({ type: "paging", format: "arm-lpae-s2-4k" });
    expect(code(() => b.allocViommu({ type: "arm-smmuv3", rid: 9, parent }))).toBe("ENOENT");
    for (const p of [s1, s2, b.allocDomain({ type: "blocked" })])
      expect(code(() => b.allocViommu({ type: "arm-smmuv3", rid: 8, parent: p }))).toBe("EINVAL");
    // The type is checked after the parent (EINVAL wins over EOPNOTSUPP).
    expect(code(() => b.allocViommu({ type: "selftest", rid: 8, parent: s1 }))).toBe("EINVAL");
    expect(code(() => b.allocViommu({ type: "selftest", rid: 8, parent }))).toBe("EOPNOTSUPP");
    expect(code(() => b.allocViommu({ type: 1 as unknown as string, rid: 8, parent }))).toBe("EINVAL");
    expect(code(() => b.allocViommu(null as never))).toBe("EINVAL");
    const other = vrig().b;
    const foreign = other.allocDomain({ type: "paging", flags: { nestParent: true } });
    expect(code(() => b.allocViommu({ type: "arm-smmuv3", rid: 8, parent: foreign }))).toBe("EINVAL");
    const freed = b.allocDomain({ type: "paging", flags: { nestParent: true } });
    freed.free();
    expect(code(() => b.allocViommu({ type: "arm-smmuv3", rid: 8, parent: freed }))).toBe("EINVAL");
    expect(b.viommus.size).toBe(0);
  });

  it("without ARM_SMMU_FEAT_NESTING, or neither coherent nor S2FWB: EOPNOTSUPP", () => {
    const s2only = vrig({ stages: "s2" }).b;
    s2only.addDevice({ rid: 8, pasidBits: 0 });
    const parent = s2only.allocDomain({ type: "paging", flags: { nestParent: true } });
    expect(code(() => s2only.allocViommu({ type: "arm-smmuv3", rid: 8, parent }))).toBe("EOPNOTSUPP");
    expect(s2only.capabilities(8).features.viommuTypes).toBe(undefined);
    // IDR0.COHACC = 0, IDR3.FWB = 0: arm_smmu_master_canwbs fails and there is no S2FWB.
    const idr0 = registersFor().IDR0! & ~(1n << 4n);
    const nc = vrig({}, { IDR0: idr0 }).b;
    nc.addDevice({ rid: 8, pasidBits: 0 });
    const p2 = nc.allocDomain({ type: "paging", flags: { nestParent: true } });
    expect(code(() => nc.allocViommu({ type: "arm-smmuv3", rid: 8, parent: p2 }))).toBe("EOPNOTSUPP");
    expect(nc.capabilities(8).features.viommuTypes).toBe(undefined);
    // With IDR3.FWB it is allowed again.
    const fwb = vrig({}, { IDR0: idr0, IDR3: registersFor().IDR3! | (1n << 8n) }).b;
    fwb.addDevice({ rid: 8, pasidBits: 0 });
    const p3 = fwb.allocDomain({ type: "paging", flags: { nestParent: true } });
    expect(fwb.allocViommu({ type: "arm-smmuv3", rid: 8, parent: p3 }).info.vmid).toBe(1);
  });

  it("free: EBUSY while vDEVICEs, nested domains or event queues hold it; the parent is EBUSY while the vIOMMU lives", () => {
    const { b } = vrig();
    b.addDevice({ rid: 8, pasidBits: 0 });
    const parent = b.allocDomain({ type: "paging", flags: { nestParent: true } });
    const v = b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    expect(code(() => parent.free())).toBe("EBUSY");
    v.addVdevice(8, 1);
    expect(code(() => v.free())).toBe("EBUSY");
    v.removeVdevice(8);
    const n = v.allocNested({ ste: [0n, 0n] }, {});
    expect(err(() => v.free())).toMatchObject({ code: "EBUSY", details: { nested: 1, vdevices: 0 } });
    n.free();
    v.setEventSink("arm-smmuv3", () => {});
    expect(err(() => v.free())).toMatchObject({ code: "EBUSY", details: { eventQueues: 1 } });
    v.setEventSink("arm-smmuv3", null);
    v.free();
    expect(b.viommus.size).toBe(0);
    for (const op of [
      () => v.free(),
      () => v.addVdevice(8, 1),
      () => v.allocNested({ ste: [0n, 0n] }, {}),
      () => v.invalidate([]),
      () => v.setEventSink("arm-smmuv3", null),
    ])
      expect(code(op)).toBe("EINVAL");
    parent.free();
  });
});

describe("vDEVICE (iommufd_vdevice_alloc_ioctl)", () => {
  it("vSID range, device behind this SMMU, EEXIST for a taken vSID or a device that has one", () => {
    const { b } = vrig();
    b.addDevice({ rid: 8, pasidBits: 0 });
    b.addDevice({ rid: 9, pasidBits: 0 });
    const parent = b.allocDomain({ type: "paging", flags: { nestParent: true } });
    const v = b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    const w = b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) expect(code(() => v.addVdevice(8, bad))).toBe("EINVAL");
    expect(code(() => v.addVdevice(10, 1))).toBe("EINVAL"); // not behind this SMMU
    v.addVdevice(8, 2 ** 32 - 1);
    expect(v.virtId(8)).toBe(2 ** 32 - 1);
    expect(v.virtId(9)).toBe(-1);
    expect(code(() => v.addVdevice(9, 2 ** 32 - 1))).toBe("EEXIST"); // xa_cmpxchg: vSID taken
    expect(code(() => v.addVdevice(8, 5))).toBe("EEXIST"); // the device has one (idev->vdev)
    expect(code(() => w.addVdevice(8, 5))).toBe("EEXIST"); // ... on any vIOMMU
    w.addVdevice(9, 2 ** 32 - 1); // the same vSID on another vIOMMU is fine
    expect([v.vdevices, w.vdevices]).toEqual([1, 1]);
    expect(code(() => b.removeDevice(8))).toBe("EBUSY");
    expect(code(() => w.removeVdevice(8))).toBe("ENOENT");
    v.removeVdevice(8);
    expect(v.virtId(8)).toBe(-1);
    expect(code(() => v.removeVdevice(8))).toBe("ENOENT");
    b.removeDevice(8);
    const dump = b.dump() as { viommus: unknown[] };
    expect(dump.viommus).toEqual([
      { id: 1, vmid: v.vmid, parent: parent.id, vdevices: [] },
      { id: 2, vmid: v.vmid, parent: parent.id, vdevices: [{ rid: 9, vsid: 2 ** 32 - 1 }] },
    ]);
  });
});

describe("arm_vsmmu_alloc_domain_nested + arm_smmu_validate_vste", () => {
  function viommu() {
    const r = vrig();
    r.b.addDevice({ rid: 8, pasidBits: 20 });
    const parent = r.b.allocDomain({ type: "paging", flags: { nestParent: true } }) as SmmuPagingDomain;
    return { ...r, parent, v: r.b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu };
  }

  it("V=0 is an all-zero vSTE; EATS 0b01 is accepted and cleared; any flag is EOPNOTSUPP", () => {
    const { v, parent } = viommu();
    const d = v.allocNested({ ste: [0xffff_0000_0000_fffen, 0xffffn] }, {}) as SmmuNestedDomain;
    expect(d.ste).toEqual([0n, 0n]);
    expect(d).toMatchObject({ type: "nested", parent, viommu: v, format: "arm-smmuv3-nested" });
    const e = v.allocNested({ ste: [VSTE0, VSTE1 | (1n << 28n) | (1n << 27n)] }, {}) as SmmuNestedDomain;
    expect(e.ste).toEqual([VSTE0, VSTE1 | (1n << 27n)]);
    expect(v.allocNested({ ste: ["0x9", "0"] }, {}).type).toBe("nested");
    for (const flags of [{ nestParent: true }, { dirtyTracking: true }, { pasid: true }])
      expect(code(() => v.allocNested({ ste: [VSTE0, VSTE1] }, flags))).toBe("EOPNOTSUPP");
    expect(v.allocNested({ ste: [VSTE0, VSTE1] }, { pasid: false }).type).toBe("nested");
  });

  it("EIO for a bit outside STRTAB_STE_{0,1}_NESTING_ALLOWED, a Config not abort/bypass/S1, EATS 0b1x", () => {
    const { v } = viommu();
    const eio = (w0: bigint, w1: bigint) => code(() => v.allocNested({ ste: [w0, w1] }, {}));
    // Word 0: bits [58:52] are not S1ContextPtr or S1CDMax.
    for (const bit of [52n, 55n, 58n]) expect(eio(VSTE0 | (1n << bit), 0n)).toBe("EIO");
    // Word 1: MEV [19], S2FWB [25], STRW [31:30], SHCFG [45:44], bit 8.
    for (const bit of [8n, 19n, 25n, 30n, 31n, 44n, 63n]) expect(eio(VSTE0, 1n << bit)).toBe("EIO");
    // Config: only 0b000, 0b100, 0b101 (0b001-0b011 abort in hardware, but not for a vSTE).
    for (const cfg of [1n, 2n, 3n, 6n, 7n]) expect(eio(1n | (cfg << 1n), 0n)).toBe("EIO");
    for (const cfg of [0n, 4n, 5n]) expect(eio(1n | (cfg << 1n), 0n)).toBe("none");
    expect(eio(VSTE0, 2n << 28n)).toBe("EIO");
    expect(eio(VSTE0, 3n << 28n)).toBe("EIO");
    expect(v.vdevices).toBe(0);
  });

  it("EINVAL for malformed data (iommu_copy_struct_from_user)", () => {
    const { v } = viommu();
    for (const data of [
      null,
      42,
      {},
      { ste: [VSTE0] },
      { ste: [VSTE0, 0n, 0n] },
      { ste: [-1n, 0n] },
      { ste: [1n << 64n, 0n] },
      { ste: [9, 0] },
      { ste: ["zz", "0"] },
    ])
      expect(code(() => v.allocNested(data, {}))).toBe("EINVAL");
  });
});

describe("attaching a nested domain (arm_smmu_attach_dev_nested)", () => {
  it("the physical STE: Config nested, the guest's word 0 fields, word 1 | MEV, the parent's stage 2 with its VMID", () => {
    const r = vrig();
    const { parent, viommu, dom } = guest(r);
    const w = steWords(r.b, 8);
    expect(w[0]).toBe(1n | (BigInt(SteConfig.NESTED) << 1n) | 0x1000n | (2n << 59n));
    expect(w[1]).toBe(VSTE1 | (1n << 19n));
    // Words 2-3 are exactly the parent's stage-2 STE (arm_smmu_make_s2_domain_ste) of a RID attach.
    r.b.addDevice({ rid: 9, pasidBits: 0 });
    r.b.attach(9, Intent.rid, parent);
    const s2 = steWords(r.b, 9);
    expect(s2[0]).toBe(1n | (BigInt(SteConfig.S2_TRANS) << 1n));
    expect(w.slice(2)).toEqual(s2.slice(2));
    expect(w[2]! & 0xffffn).toBe(BigInt(viommu.vmid));
    expect(r.b.attached(8, Intent.ridAllPasids)).toBe(dom);
    expect(r.x(8, 1, 0x1008, R)).toMatchObject({ ok: true, pa: hpa(0x50_0008) });
  });

  it("V=0 and Config abort vSTEs install an abort STE; bypass installs the parent's stage 2; no vDEVICE needed", () => {
    const r = vrig();
    r.b.addDevice({ rid: 8, pasidBits: 0 });
    const parent = guestMemory(r);
    const v = r.b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    r.b.attach(8, Intent.ridAllPasids, v.allocNested({ ste: [0n, 0n] }, {}));
    expect(steWords(r.b, 8)).toEqual([1n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]);
    r.b.attach(8, Intent.ridAllPasids, v.allocNested({ ste: [1n, 0n] }, {}));
    expect(steWords(r.b, 8)[0]).toBe(1n);
    expect(r.x(8, -1, 0x2008, R)).toMatchObject({ ok: false, fault: { vendor: { name: "STE_ABORT" } } });
    r.b.attach(8, Intent.ridAllPasids, v.allocNested({ ste: [9n, 0n] }, {}));
    expect(steWords(r.b, 8)[0]).toBe(1n | (BigInt(SteConfig.S2_TRANS) << 1n));
    expect(steWords(r.b, 8)[2]! & 0xffffn).toBe(BigInt(v.vmid));
    expect(r.x(8, -1, 0x2008, R)).toMatchObject({ ok: true, pa: 0x1000_2008 });
  });

  it("a stage-1 vSTE needs the device's vDEVICE on that vIOMMU (ENOENT); PASIDs in use are EBUSY; nothing changes", () => {
    const r = vrig();
    r.b.addDevice({ rid: 8, pasidBits: 20 });
    const parent = guestMemory(r);
    const v = r.b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    const w = r.b.allocViommu({ type: "arm-smmuv3", rid: 8, parent }) as SmmuViommu;
    const d = v.allocNested({ ste: [VSTE0, VSTE1] }, {});
    const before = steWords(r.b, 8);
    r.trace();
    expect(code(() => r.b.attach(8, Intent.ridAllPasids, d))).toBe("ENOENT");
    w.addVdevice(8, 0x99); // a vDEVICE on another vIOMMU does not count
    expect(code(() => r.b.attach(8, Intent.ridAllPasids, d))).toBe("ENOENT");
    expect(steWords(r.b, 8)).toEqual(before);
    expect(r.b.attached(8, Intent.ridAllPasids)).toBe(null);
    expect(r.trace()).toEqual([]); // nothing was issued
    w.removeVdevice(8);
    v.addVdevice(8, 0x99);
    const s1 = r.b.allocDomain({ type: "paging" });
    s1.map(0, 0x7000, 0x1000, Perm.R);
    r.b.attach(8, Intent.pasid(3), s1);
    expect(code(() => r.b.attach(8, Intent.ridAllPasids, d))).toBe("EBUSY");
    r.b.detach(8, Intent.pasid(3));
    r.b.attach(8, Intent.ridAllPasids, d);
    expect(code(() => r.b.attach(8, Intent.rid, d))).toBe("EINVAL");
    expect(code(() => d.free())).toBe("EBUSY");
    r.b.detach(8, Intent.ridAllPasids);
    d.free();
    expect(code(() => d.free())).toBe("EINVAL");
  });
});
