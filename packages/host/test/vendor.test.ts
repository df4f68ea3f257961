/**
 * The host over the real vendor backends, found by name through the loader
 * (`@iommu-kit/<name>` imported on demand): SMMUv3 and VT-d tables in memory, their
 * reserved regions, hardware info, nesting with the agreed vendor data, and DMA.
 */

import { BackendRegistry } from "@iommu-kit/core";
import { mockBackend } from "@iommu-kit/core/testing";
import * as vtdPkg from "@iommu-kit/vtd";
import { describe, expect, it } from "vitest";
import { Host } from "../src/index.ts";
import { expectErrno, sweepFailNth } from "./helpers.ts";

async function vendorHost(...backends: string[]): Promise<Host> {
  const registry = new BackendRegistry();
  registry.register(mockBackend);
  const h = new Host({
    registry,
    ram: [{ base: 0, size: 2 ** 32 }],
    tables: { base: 2 ** 32, size: 2 ** 27 },
  });
  for (const b of backends) await h.loadBackend(b);
  return h;
}

const MSI = { start: 0x8000000, last: 0x80fffff };

describe("SMMUv3 behind the host", () => {
  it("fail_nth: adding the IOMMU, a device, attaches (RID, PASID, nested)", async () => {
    const h = await vendorHost("smmuv3");
    // A failed create leaks nothing: the host takes back the blocks the instance took.
    expect(sweepFailNth(h, () => h.addIommu("s", "smmuv3")).succeededAt).toBeGreaterThan(1);
    const dev = sweepFailNth(h, () => h.addDevice({ iommu: "s", rid: 0x1234, pasidBits: 20 }))
      .result as number;
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x1000, length: 0x1000, pa: 0x1000, prot: "rw" });
    // The SMMU's command queue keeps the commands a failed operation issued (CFGI, the TLBI
    // of a freed domain's ASID): compare everything but memory contents.
    const hw = sweepFailNth(h, () => h.hwptAlloc({ device: dev, pt: ioas, flags: ["pasid"] }), false)
      .result as number;
    expect(sweepFailNth(h, () => h.attach(dev, "rid", hw), false).succeededAt).toBeGreaterThan(1);
    expect(sweepFailNth(h, () => h.attach(dev, { pasid: 77 }, hw), false).succeededAt).toBeGreaterThan(0);
    const p = sweepFailNth(h, () => h.hwptAlloc({ device: dev, pt: ioas, flags: ["nest_parent"] }), false)
      .result as number;
    // SMMUv3 nested HWPTs live on a vIOMMU (arm_vsmmu_alloc_domain_nested; no release
    // allocated one on the parent HWPT).
    const v = sweepFailNth(h, () => h.viommuAlloc({ device: dev, hwpt: p, type: "arm-smmuv3" }), false)
      .result as number;
    sweepFailNth(h, () => h.vdeviceAlloc({ viommu: v, device: dev, virtId: 0x77 }), false);
    const n = sweepFailNth(h, () => h.hwptAlloc({ device: dev, pt: v, data: { ste: ["0x9", "0"] } }), false)
      .result as number;
    h.detach(dev, { pasid: 77 });
    sweepFailNth(h, () => h.replace(dev, "rid-all-pasids", n), false);
    expect(h.dma(dev, { iova: 0x1000, access: "read", length: 1 })).toMatchObject({ ok: true, pa: 0x1000 });
  });

  it("hw_info reports arm-smmuv3 with the ID registers", async () => {
    const h = await vendorHost("smmuv3");
    h.addIommu("smmu0", "smmuv3");
    const dev = h.addDevice({ iommu: "smmu0", rid: 0x10, pasidBits: 20 });
    const info = h.hwInfo(dev);
    expect(info.type).toBe("arm-smmuv3");
    expect(info.typeId).toBe(2);
    expect(info.maxPasidLog2).toBe(20);
    expect(info.intents).toEqual(expect.arrayContaining(["rid", "pasid", "rid-all-pasids"]));
    expect(info.data.type === "arm-smmuv3" && info.data.idr.length).toBe(6);
  });

  it("RID attach to an IOAS: the MSI window is reserved, DMA lands, unmap faults", async () => {
    const h = await vendorHost("smmuv3");
    h.addIommu("smmu0", "smmuv3");
    const dev = h.addDevice({ iommu: "smmu0", rid: 0x10, pasidBits: 20 });
    const ioas = h.ioasAlloc();
    h.attach(dev, "rid", ioas);
    const { ranges, alignment } = h.ioasIovaRanges(ioas);
    expect(alignment).toBe(0x1000);
    expect(ranges[0]).toEqual({ start: 0, last: MSI.start - 1 });
    expect(ranges[1]!.start).toBe(MSI.last + 1);
    expectErrno(() => h.ioasMap(ioas, { iova: MSI.start, length: 0x1000, pa: 0, prot: "rw" }), "EINVAL");
    const iova = h.ioasMap(ioas, { iova: 0x200000, length: 0x200000, pa: 0x40000000, prot: "rw" });
    expect(h.dma(dev, { iova: iova + 0x1234, access: "write", data: new Uint8Array([9, 8]) })).toEqual({
      ok: true,
      pa: 0x40001234,
    });
    expect(h.memRead(0x40001234, 2)).toEqual(new Uint8Array([9, 8]));
    h.ioasUnmap(ioas, 0x200000, 0x200000);
    const r = h.dma(dev, { iova: iova + 0x1234, access: "read", length: 2 });
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.fault).toMatchObject({
        class: "translation",
        vendor: { vendor: "arm-smmuv3", name: "F_TRANSLATION" },
      });
  });

  it("PASID attach (stage-1 HWPTs on RID and PASID) and fail_nth over the map", async () => {
    const h = await vendorHost("smmuv3");
    h.addIommu("smmu0", "smmuv3");
    const dev = h.addDevice({ iommu: "smmu0", rid: 0x10, pasidBits: 20 });
    const ioas = h.ioasAlloc();
    const rid = h.hwptAlloc({ device: dev, pt: ioas, flags: ["pasid"] });
    const ioas2 = h.ioasAlloc();
    h.ioasMap(ioas2, { iova: 0x10000, length: 0x1000, pa: 0x5000, prot: "r" });
    const p = h.hwptAlloc({ device: dev, pt: ioas2, flags: ["pasid"] });
    h.attach(dev, "rid", rid);
    expect(h.attach(dev, { pasid: 5 }, p)).toEqual({ hwpt: p, pasid: 5 });
    expect(h.dma(dev, { pasid: 5, iova: 0x10010, access: "read", length: 1 })).toMatchObject({
      ok: true,
      pa: 0x5010,
    });
    const s = sweepFailNth(h, () =>
      h.ioasMap(ioas2, { iova: 0x7fe00000, length: 0x400000, pa: 0x10000000, prot: "rw" }),
    );
    expect(s.succeededAt).toBeGreaterThan(2);
    expect(
      h.dma(dev, { pasid: 5, iova: 0x80100000, access: "write", data: new Uint8Array(4) }),
    ).toMatchObject({
      ok: true,
      pa: 0x10300000,
    });
  });

  it("nested: a user STE (S1 bypass) on a vIOMMU over a nest-parent stage 2; invalidate with raw commands", async () => {
    const h = await vendorHost("smmuv3");
    h.addIommu("smmu0", "smmuv3");
    const dev = h.addDevice({ iommu: "smmu0", rid: 0x10, pasidBits: 20 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x100000, length: 0x1000, pa: 0x3000, prot: "rw" });
    const parent = h.hwptAlloc({ device: dev, pt: ioas, flags: ["nest_parent"] });
    // Nested on the parent itself is EOPNOTSUPP on SMMUv3 (no Linux release had it).
    expectErrno(() => h.hwptAlloc({ device: dev, pt: parent, data: { ste: ["0x9", "0x0"] } }), "EOPNOTSUPP");
    const viommu = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    // STE word 0: V (bit 0) = 1, Config (bits 3:1) = 0b100 (bypass): IHI 0070 5.2.
    const nested = h.hwptAlloc({ device: dev, pt: viommu, data: { ste: ["0x9", "0x0"] } });
    h.attach(dev, "rid-all-pasids", nested);
    expect(h.dma(dev, { iova: 0x100040, access: "read", length: 4 })).toMatchObject({ ok: true, pa: 0x3040 });
    // CMD_TLBI_NH_ALL (0x10), IHI 0070 4.4.2, through the vIOMMU (arm_vsmmu_cache_invalidate).
    expect(h.invalidate(viommu, [["0x10", "0x0"]])).toBe(1);
    // An abort STE (V=1, Config=0): blocked, nothing recorded.
    const abort = h.hwptAlloc({ device: dev, pt: viommu, data: { ste: ["0x1", "0x0"] } });
    h.replace(dev, "rid-all-pasids", abort);
    const r = h.dma(dev, { iova: 0x100040, access: "read", length: 4 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.fault.class).toBe("blocked");
    expectErrno(() => h.destroy(parent), "EBUSY");
  });
});

const hasVtd = "vtdBackend" in vtdPkg;

describe.skipIf(!hasVtd)("VT-d behind the host", () => {
  it("hw_info, the interrupt window reserved, RID DMA", async () => {
    const h = await vendorHost("vtd");
    h.addIommu("dmar0", "vtd");
    const dev = h.addDevice({ iommu: "dmar0", rid: 0x100, pasidBits: 20 });
    const info = h.hwInfo(dev);
    expect(info.type).toBe("intel-vtd");
    expect(info.typeId).toBe(1);
    const ioas = h.ioasAlloc();
    h.attach(dev, "rid", ioas);
    const ranges = h.ioasIovaRanges(ioas).ranges;
    expect(ranges.some((r) => r.start <= 0xfee00000 && 0xfee00000 <= r.last)).toBe(false);
    h.ioasMap(ioas, { iova: 0x200000, length: 0x1000, pa: 0x9000, prot: "rw" });
    expect(h.dma(dev, { iova: 0x200010, access: "write", data: new Uint8Array([1]) })).toEqual({
      ok: true,
      pa: 0x9010,
    });
  });
});

describe.skipIf(!hasVtd)("VT-d nested (iommu_hwpt_vtd_s1)", () => {
  it("a guest first-stage table in guest memory, walked through the nest parent", async () => {
    const h = await vendorHost("vtd");
    h.addIommu("dmar0", "vtd");
    const dev = h.addDevice({ iommu: "dmar0", rid: 0x100, pasidBits: 20 });
    const ioas = h.ioasAlloc();
    // Stage 2: guest-physical [0x10000000, +2 MiB) -> the same host-physical range.
    h.ioasMap(ioas, { iova: 0x10000000, length: 0x200000, pa: 0x10000000, prot: "rw" });
    const parent = h.hwptAlloc({ device: dev, pt: ioas, flags: ["nest_parent"] });
    // A 4-level first-stage table at GPA 0x10000000: IOVA 0x1000 -> GPA 0x10005000.
    // Entry bits (VT-d 3.0 9.7, x86 paging): P 0, R/W 1, U/S 2; address 51:12.
    const entry = (next: number): Uint8Array => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint32(0, (next | 0x7) >>> 0, true);
      return b;
    };
    h.memWrite(0x10000000, entry(0x10001000)); // PML4E[0]
    h.memWrite(0x10001000, entry(0x10002000)); // PDPE[0]
    h.memWrite(0x10002000, entry(0x10003000)); // PDE[0]
    h.memWrite(0x10003000 + 8, entry(0x10005000)); // PTE[1]
    expectErrno(
      () => h.hwptAlloc({ device: dev, pt: parent, data: { pgtblAddr: "0x10000000", addrWidth: 39 } }),
      "EINVAL",
    );
    const nested = h.hwptAlloc({ device: dev, pt: parent, data: { pgtblAddr: "0x10000000", addrWidth: 48 } });
    h.attach(dev, "rid", nested);
    expect(h.dma(dev, { iova: 0x1010, access: "write", data: new Uint8Array([0xab]) })).toEqual({
      ok: true,
      pa: 0x10005010,
    });
    expect(h.memRead(0x10005010, 1)).toEqual(new Uint8Array([0xab]));
    const r = h.dma(dev, { iova: 0x2000, access: "read", length: 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.fault.vendor.vendor).toBe("intel-vtd");
    // One IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 entry: the whole range.
    expect(h.invalidate(nested, [{ addr: 0, npages: "0xffffffffffffffff" }])).toBe(1);
  });
});

describe.skipIf(!hasVtd)("two vendors on one IOAS", () => {
  it("SMMUv3 and VT-d domains both mirror the IOAS", async () => {
    const h = await vendorHost("smmuv3", "vtd");
    h.addIommu("smmu0", "smmuv3");
    h.addIommu("dmar0", "vtd");
    const a = h.addDevice({ iommu: "smmu0", rid: 0x10 });
    const b = h.addDevice({ iommu: "dmar0", rid: 0x100 });
    const ioas = h.ioasAlloc();
    h.attach(a, "rid", ioas);
    h.attach(b, "rid", ioas);
    const iova = h.ioasMap(ioas, { length: 0x4000, pa: 0x20000000, prot: "rw" });
    for (const dev of [a, b]) {
      expect(h.dma(dev, { iova: iova + 0x3ff0, access: "read", length: 16 })).toMatchObject({
        ok: true,
        pa: 0x20003ff0,
      });
    }
  });
});
