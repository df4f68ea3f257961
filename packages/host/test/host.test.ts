import { Access, Intent } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { MAX_IOVA } from "../src/index.ts";
import { expectErrno, mockHost, pattern, ReservingMock } from "./helpers.ts";

describe("IOAS area rules (iommufd_ioas.area, unmap_fully_contained_areas)", () => {
  it("unmap of nothing ENOENT, partial unmap ENOENT, overlap EEXIST, unmap-all twice", () => {
    const h = mockHost();
    const ioas = h.ioasAlloc();
    expectErrno(() => h.ioasUnmap(ioas, 0x100000, 0x1000), "ENOENT");
    expect(h.ioasMap(ioas, { iova: 0x100000, length: 0x4000, pa: 0x200000, prot: "rw" })).toBe(0x100000);
    expectErrno(() => h.ioasUnmap(ioas, 0x100000, 0x2000), "ENOENT");
    expectErrno(() => h.ioasUnmap(ioas, 0x101000, 0x3000), "ENOENT");
    expectErrno(() => h.ioasMap(ioas, { iova: 0x103000, length: 0x1000, pa: 0, prot: "r" }), "EEXIST");
    expectErrno(() => h.ioasMap(ioas, { iova: 0xff000, length: 0x2000, pa: 0, prot: "r" }), "EEXIST");
    expect(h.ioasUnmapAll(ioas)).toBe(0x4000);
    expect(h.ioasUnmapAll(ioas)).toBe(0);
    expect(h.ioasAreas(ioas)).toEqual([]);
  });

  it("a straddling unmap is ENOENT; a superset unmaps every area inside and returns the sum", () => {
    const h = mockHost();
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x10000, length: 0x2000, pa: 0x100000, prot: "rw" });
    h.ioasMap(ioas, { iova: 0x20000, length: 0x3000, pa: 0x200000, prot: "r" });
    expectErrno(() => h.ioasUnmap(ioas, 0x11000, 0x10000), "ENOENT");
    expect(h.ioasAreas(ioas)).toHaveLength(2);
    expect(h.ioasUnmap(ioas, 0x8000, 0x30000)).toBe(0x5000);
    expect(h.ioasAreas(ioas)).toEqual([]);
  });

  it("bad arguments: zero length, no prot, exec prot, table region, not RAM", () => {
    const h = mockHost();
    const ioas = h.ioasAlloc();
    expectErrno(() => h.ioasMap(ioas, { length: 0, pa: 0, prot: "rw" }), "EINVAL");
    expectErrno(() => h.ioasMap(ioas, { length: 0x1000, pa: 0, prot: "" }), "EINVAL");
    expectErrno(() => h.ioasMap(ioas, { length: 0x1000, pa: 0, prot: "rx" }), "EINVAL");
    expectErrno(() => h.ioasMap(ioas, { length: 0x1000, pa: 2 ** 30, prot: "rw" }), "EINVAL");
    expectErrno(() => h.ioasMap(ioas, { length: 0x1000, pa: 2 ** 34, prot: "rw" }), "EFAULT");
    expectErrno(() => h.ioasMap(99, { length: 0x1000, pa: 0, prot: "rw" }), "ENOENT");
  });
});

describe("automatic IOVA (area_auto_iova, area_allowed, reserved)", () => {
  it("aligns to the lowest set bit of the length", () => {
    const h = mockHost();
    const ioas = h.ioasAlloc();
    const iovas: number[] = [];
    for (let i = 0; i < 10; i++) {
      const length = 0x1000 * (i + 1);
      const iova = h.ioasMap(ioas, { length, pa: 0x40000000 - 0x400000, prot: "rw" });
      expect(iova % 2 ** Math.log2(length & -length)).toBe(0);
      expect(iova % Math.min(2 ** Math.ceil(Math.log2(length)), 0x400000)).toBe(0);
      iovas.push(iova);
    }
    // First fit from PAGE_SIZE (iopt_alloc_iova never returns 0): the first (4 KiB) lands at 0x1000.
    expect(iovas[0]).toBe(0x1000);
    expect(new Set(iovas).size).toBe(10);
  });

  it("stays inside allowed ranges, avoids reserved ones, ENOSPC when full", () => {
    const h = mockHost();
    const ioas = h.ioasAlloc();
    h.ioasAllowIovas(ioas, [{ start: 0x8000000, last: 0x8100fff }]);
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    h.iommu("m0");
    // Allowed [0x8000000, 0x8100fff] intersects the mock-resv window: attach fails.
    h.addIommu("r0", "mock-resv");
    const rdev = h.addDevice({ iommu: "r0", rid: 2 });
    expectErrno(() => h.attach(rdev, "rid", ioas), "EADDRINUSE");
    h.attach(dev, "rid", ioas);
    h.ioasAllowIovas(ioas, [{ start: 0x9000000, last: 0x9003fff }]);
    expect(h.ioasMap(ioas, { length: 0x2000, pa: 0x100000, prot: "rw" })).toBe(0x9000000);
    expect(h.ioasMap(ioas, { length: 0x2000, pa: 0x100000, prot: "rw" })).toBe(0x9002000);
    expectErrno(() => h.ioasMap(ioas, { length: 0x1000, pa: 0x100000, prot: "rw" }), "ENOSPC");
    // Fixed IOVAs ignore the allowed ranges (iopt_check_iova).
    expect(h.ioasMap(ioas, { iova: 0x1000, length: 0x1000, pa: 0x100000, prot: "rw" })).toBe(0x1000);
  });

  it("a device's reserved window: fixed map EINVAL, auto IOVA skips it, allow over it EADDRINUSE", () => {
    const h = mockHost();
    h.addIommu("r0", "mock-resv");
    const dev = h.addDevice({ iommu: "r0", rid: 2 });
    const ioas = h.ioasAlloc();
    h.attach(dev, "rid", ioas);
    const w = ReservingMock.window;
    expectErrno(() => h.ioasMap(ioas, { iova: w.start, length: 0x1000, pa: 0, prot: "rw" }), "EINVAL");
    expectErrno(() => h.ioasAllowIovas(ioas, [{ start: w.start - 0x1000, last: w.start }]), "EADDRINUSE");
    h.ioasAllowIovas(ioas, [{ start: w.start - 0x1000, last: w.last + 0x2000 }].slice(0, 0));
    h.ioasAllowIovas(ioas, [
      { start: w.start - 0x1000, last: w.start - 1 },
      { start: w.last + 1, last: w.last + 0x2000 },
    ]);
    expect(h.ioasMap(ioas, { length: 0x1000, pa: 0, prot: "rw" })).toBe(w.start - 0x1000);
    expect(h.ioasMap(ioas, { length: 0x2000, pa: 0, prot: "rw" })).toBe(w.last + 1);
    // A map into the window before the device attaches makes the attach fail.
    const ioas2 = h.ioasAlloc();
    h.ioasMap(ioas2, { iova: w.start, length: 0x1000, pa: 0, prot: "rw" });
    h.detach(dev, "rid");
    expectErrno(() => h.attach(dev, "rid", ioas2), "EADDRINUSE");
  });
});

describe("iova_ranges and alignment (iova_ranges, ioas_iova_alloc, ioas_align_change)", () => {
  it("no domain: everything, alignment 1; mock domain: its aperture, 4 KiB", () => {
    const h = mockHost();
    const ioas = h.ioasAlloc();
    expect(h.ioasIovaRanges(ioas)).toEqual({ ranges: [{ start: 0, last: MAX_IOVA }], alignment: 1 });
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    h.attach(dev, "rid", ioas);
    expect(h.ioasIovaRanges(ioas)).toEqual({ ranges: [{ start: 0, last: 2 ** 39 - 1 }], alignment: 0x1000 });
    h.detach(dev, "rid");
    expect(h.ioasIovaRanges(ioas)).toEqual({ ranges: [{ start: 0, last: MAX_IOVA }], alignment: 1 });
  });

  it("a reserving device splits the ranges", () => {
    const h = mockHost();
    h.addIommu("r0", "mock-resv");
    const dev = h.addDevice({ iommu: "r0", rid: 2 });
    const ioas = h.ioasAlloc();
    h.attach(dev, "rid", ioas);
    const w = ReservingMock.window;
    expect(h.ioasIovaRanges(ioas).ranges).toEqual([
      { start: 0, last: w.start - 1 },
      { start: w.last + 1, last: 2 ** 39 - 1 },
    ]);
  });

  it("with a domain, unaligned lengths are EINVAL; an unaligned area blocks a domain (EADDRINUSE)", () => {
    const h = mockHost();
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x800, length: 0x800, pa: 0x800, prot: "rw" });
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const before = h.state();
    expectErrno(() => h.attach(dev, "rid", ioas), "EADDRINUSE");
    expect(h.state()).toEqual(before);
    h.ioasUnmapAll(ioas);
    h.attach(dev, "rid", ioas);
    expectErrno(() => h.ioasMap(ioas, { length: 0x800, pa: 0, prot: "rw" }), "EINVAL");
    expectErrno(() => h.ioasMap(ioas, { iova: 0x800, length: 0x1000, pa: 0, prot: "rw" }), "EINVAL");
    expectErrno(() => h.ioasMap(ioas, { iova: 0x1000, length: 0x1000, pa: 0x800, prot: "rw" }), "EINVAL");
  });
});

describe("domains mirror the IOAS (mock_domain.basic, all_aligns)", () => {
  it("every map and unmap reaches every domain of the IOAS, on two IOMMUs", () => {
    const h = mockHost();
    const a = h.addDevice({ iommu: "m0", rid: 1 });
    const b = h.addDevice({ iommu: "m1", rid: 1 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x400000, length: 0x3000, pa: 0x1000000, prot: "rw" });
    const ha = h.attach(a, "rid", ioas).hwpt;
    const hb = h.attach(b, "rid", ioas).hwpt;
    expect(ha).not.toBe(hb);
    h.ioasMap(ioas, { iova: 0x800000, length: 0x200000, pa: 0x2000000, prot: "r" });
    for (const dev of [a, b]) {
      expect(h.dma(dev, { iova: 0x401234, access: "read", length: 4 })).toMatchObject({
        ok: true,
        pa: 0x1001234,
      });
      expect(h.dma(dev, { iova: 0x9ff000, access: "read", length: 4 })).toMatchObject({
        ok: true,
        pa: 0x21ff000,
      });
      const f = h.dma(dev, { iova: 0x800000, access: "write", data: new Uint8Array(1) });
      expect(f.ok).toBe(false);
      if (!f.ok) expect(f.fault.class).toBe("permission");
    }
    h.ioasUnmap(ioas, 0x400000, 0x3000);
    for (const dev of [a, b]) {
      const r = h.dma(dev, { iova: 0x401234, access: "read", length: 4 });
      expect(r.ok).toBe(false);
      if (!r.ok)
        expect(r.fault).toMatchObject({ class: "translation", device: dev, iova: 0x401234, access: "read" });
    }
  });

  it("a second device of the same IOMMU reuses the automatic HWPT", () => {
    const h = mockHost();
    const a = h.addDevice({ iommu: "m0", rid: 1 });
    const b = h.addDevice({ iommu: "m0", rid: 2 });
    const ioas = h.ioasAlloc();
    const ha = h.attach(a, "rid", ioas).hwpt;
    expect(h.attach(b, "rid", ioas).hwpt).toBe(ha);
    expect(h.describe(ha)).toMatchObject({ kind: "hwpt-paging", auto: true, users: 2 });
    h.detach(a, "rid");
    expect(h.describe(ha)).toMatchObject({ users: 1 });
    h.detach(b, "rid");
    expectErrno(() => h.describe(ha), "ENOENT");
  });
});

describe("DMA", () => {
  it("moves bytes through the table, all or nothing across pages", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x10000, length: 0x1000, pa: 0x300000, prot: "rw" });
    h.ioasMap(ioas, { iova: 0x11000, length: 0x1000, pa: 0x500000, prot: "rw" });
    h.attach(dev, "rid", ioas);
    const data = pattern(0x1800, 7);
    expect(h.dma(dev, { iova: 0x10800, access: "write", data })).toEqual({ ok: true, pa: 0x300800 });
    expect(h.memRead(0x300800, 0x800)).toEqual(data.subarray(0, 0x800));
    expect(h.memRead(0x500000, 0x1000)).toEqual(data.subarray(0x800));
    const r = h.dma(dev, { iova: 0x10800, access: "read", length: 0x1800 });
    expect(r).toEqual({ ok: true, pa: 0x300800, data });
    // Last page unmapped: nothing is written.
    const before = h.memRead(0x300000, 0x1000);
    const f = h.dma(dev, { iova: 0x10000, access: "write", data: new Uint8Array(0x2001).fill(0xee) });
    expect(f.ok).toBe(false);
    if (!f.ok)
      expect(f.fault).toMatchObject({ iova: 0x12000, class: "translation", pasid: null, access: "write" });
    expect(h.memRead(0x300000, 0x1000)).toEqual(before);
    expect(h.faultsRead(dev)).toHaveLength(1);
    expect(h.faultsRead(dev)).toHaveLength(0);
  });

  it("detach leaves the device blocked; faults carry the vendor record", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const r0 = h.dma(dev, { iova: 0, access: "read", length: 1 });
    expect(r0.ok).toBe(false);
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0, length: 0x1000, pa: 0, prot: "r" });
    h.attach(dev, "rid", ioas);
    expect(h.dma(dev, { iova: 0, access: "read", length: 1 }).ok).toBe(true);
    h.detach(dev, "rid");
    const r = h.dma(dev, { iova: 0, access: "read", length: 1, priv: true });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.fault.class).toBe("blocked");
      expect(r.fault.priv).toBe(true);
      expect(r.fault.vendor).toMatchObject({ vendor: "mock", name: "MOCK_BLOCKED", code: 3 });
    }
    expect(h.faultsRead().map((f) => f.class)).toEqual(["blocked", "blocked"]);
  });

  it("a DMA across 2 MiB blocks moves every byte; explain and dump go to the backend", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x200000, length: 0x400000, pa: 0x800000, prot: "rw" });
    h.attach(dev, "rid", ioas);
    const data = pattern(0x3000, 5);
    expect(h.dma(dev, { iova: 0x3ff000, access: "write", data })).toEqual({ ok: true, pa: 0x9ff000 });
    expect(h.memRead(0x9ff000, 0x3000)).toEqual(data);
    const steps = h.explain(dev, { iova: 0x3ff000, access: "read" });
    expect(steps.map((s) => s.note)).toEqual(["table", "leaf 2^21"]);
    expect(h.dump(dev)).toMatchObject({ "1": { rid: { type: "paging" } } });
  });

  it("dmaInto is the allocation-free path with the same result", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x2000, length: 0x2000, pa: 0x7000, prot: "rw" });
    h.attach(dev, "rid", ioas);
    const buf = pattern(0x1000, 3);
    expect(h.dmaInto(dev, null, 0x2800, Access.WRITE, buf)).toBe(0x7800);
    const back = new Uint8Array(0x1000);
    expect(h.dmaInto(dev, null, 0x2800, Access.READ, back)).toBe(0x7800);
    expect(back).toEqual(buf);
    expect(h.dmaInto(dev, null, 0x3800, Access.READ, back)).toBe(-1);
    expect(h.faultsRead(dev)[0]).toMatchObject({ iova: 0x4000, class: "translation" });
  });

  it("a fault queue object takes no non-recoverable fault: those stay in the host log", () => {
    // iommu_report_device_fault takes only page requests since Linux 6.7 ("iommu: Remove
    // unrecoverable fault data"): iommufd_fault_iopf_handler never sees a translation fault.
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    const fq = h.faultQueueAlloc();
    const hw = h.hwptAlloc({ device: dev, pt: ioas, faultQueue: fq });
    h.attach(dev, "rid", hw);
    expect(h.dma(dev, { iova: 0x5000, access: "write", data: new Uint8Array(4) })).toMatchObject({
      ok: false,
      fault: { device: dev, iova: 0x5000, class: "translation" },
    });
    expect(h.faultQueueRead(fq)).toEqual([]);
    expect(h.faultsRead(dev)).toMatchObject([{ device: dev, iova: 0x5000, class: "translation" }]);
    expectErrno(() => h.destroy(fq), "EBUSY");
    h.detach(dev, "rid");
    h.destroy(hw);
    h.destroy(fq);
  });
});

describe("memory", () => {
  it("mem.write into the table region is EINVAL, outside RAM EFAULT", () => {
    const h = mockHost();
    expectErrno(() => h.memWrite(2 ** 30 - 2, new Uint8Array(4)), "EINVAL");
    expectErrno(() => h.memWrite(2 ** 31, new Uint8Array(4)), "EFAULT");
    h.memWrite(0x1000, new Uint8Array([1, 2, 3]));
    expect(h.memRead(0x1000, 3)).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("the default layout: RAM [0, 4 GiB), tables at 4 GiB", () => {
    const h = mockHost({ ram: undefined as never, tables: undefined as never });
    expect(h.tables.base).toBe(2 ** 32);
    expect(h.tables.size).toBe(2 ** 28);
    expect(h.memory.isRam(2 ** 32 - 1)).toBe(true);
    expect(h.memory.isRam(2 ** 32 + 2 ** 28)).toBe(false);
  });
});

describe("HWPT allocation and destroy (alloc_hwpt, ioas_destroy, replace)", () => {
  it("unknown flags EOPNOTSUPP, bad device ENOENT, bad pt EINVAL, nest_parent on a non-nesting IOMMU EOPNOTSUPP", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    expectErrno(() => h.hwptAlloc({ device: dev, pt: ioas, flags: ["bogus" as never] }), "EOPNOTSUPP");
    expectErrno(() => h.hwptAlloc({ device: 99, pt: ioas }), "ENOENT");
    // iommufd_hwpt_alloc: a pt_id that is no IOAS / HWPT is EINVAL (the device id stays ENOENT).
    expectErrno(() => h.hwptAlloc({ device: dev, pt: 99 }), "EINVAL");
    expectErrno(() => h.hwptAlloc({ device: dev, pt: dev }), "EINVAL");
    expectErrno(() => h.hwptAlloc({ device: dev, pt: ioas, flags: ["nest_parent"] }), "EOPNOTSUPP");
    expectErrno(() => h.hwptAlloc({ device: dev, pt: ioas, data: { x: 1 } }), "EOPNOTSUPP");
    const hw = h.hwptAlloc({ device: dev, pt: ioas });
    expectErrno(() => h.hwptAlloc({ device: dev, pt: hw, data: { x: 1 } }), "EINVAL");
    // iommufd_hwpt_nested_alloc checks for vendor data before the parent: EOPNOTSUPP.
    expectErrno(() => h.hwptAlloc({ device: dev, pt: hw }), "EOPNOTSUPP");
  });

  it("destroy: IOAS with a HWPT EBUSY, attached HWPT EBUSY, device attached EBUSY; then all go", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    const hw = h.hwptAlloc({ device: dev, pt: ioas });
    expectErrno(() => h.destroy(ioas), "EBUSY");
    h.attach(dev, "rid", hw);
    expectErrno(() => h.destroy(hw), "EBUSY");
    expectErrno(() => h.destroy(dev), "EBUSY");
    h.detach(dev, "rid");
    const blocks = h.tables.stats().blocks;
    expect(blocks).toBeGreaterThan(0);
    h.destroy(hw);
    expect(h.tables.stats().blocks).toBe(0);
    h.destroy(ioas);
    h.destroy(dev);
    expectErrno(() => h.destroy(dev), "ENOENT");
    expect(h.objects()).toEqual([]);
  });

  it("a device may attach straight to a HWPT id; replacing away from an auto HWPT frees it", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0, length: 0x1000, pa: 0x1000, prot: "rw" });
    const auto = h.attach(dev, "rid", ioas).hwpt;
    const ioas2 = h.ioasAlloc();
    h.ioasMap(ioas2, { iova: 0, length: 0x1000, pa: 0x9000, prot: "rw" });
    const hw = h.hwptAlloc({ device: dev, pt: ioas2 });
    expectErrno(() => h.attach(dev, "rid", hw), "EBUSY");
    expect(h.replace(dev, "rid", hw)).toEqual({ hwpt: hw });
    expectErrno(() => h.describe(auto), "ENOENT");
    expect(h.dma(dev, { iova: 0x10, access: "read", length: 1 })).toMatchObject({ ok: true, pa: 0x9010 });
    h.detach(dev, "rid");
    expectErrno(() => h.replace(dev, "rid", hw), "EINVAL");
  });
});

describe("PASID attach rules (iommufd_device_pasid.pasid_attach)", () => {
  function setup() {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1, pasidBits: 20 });
    const nopasid = h.addDevice({ iommu: "m0", rid: 2 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x1000, length: 0x1000, pa: 0xa000, prot: "rw" });
    const pasidHwpt = h.hwptAlloc({ device: dev, pt: ioas, flags: ["pasid"] });
    const plainHwpt = h.hwptAlloc({ device: dev, pt: ioas });
    return { h, dev, nopasid, ioas, pasidHwpt, plainHwpt };
  }

  it("IOAS EINVAL, non-PASID HWPT EINVAL, device without PASID EOPNOTSUPP, out of range EINVAL", () => {
    const { h, dev, nopasid, ioas, pasidHwpt, plainHwpt } = setup();
    expectErrno(() => h.attach(dev, { pasid: 100 }, ioas), "EINVAL");
    expectErrno(() => h.attach(dev, { pasid: 100 }, plainHwpt), "EINVAL");
    expectErrno(() => h.attach(nopasid, { pasid: 100 }, pasidHwpt), "EOPNOTSUPP");
    expectErrno(() => h.attach(dev, { pasid: 2 ** 20 }, pasidHwpt), "EINVAL");
    expectErrno(() => h.attach(dev, "emulated", ioas), "EOPNOTSUPP");
    expect(h.attach(dev, { pasid: 100 }, pasidHwpt)).toEqual({ hwpt: pasidHwpt, pasid: 100 });
    expect(h.dma(dev, { pasid: 100, iova: 0x1004, access: "read", length: 4 })).toMatchObject({
      ok: true,
      pa: 0xa004,
    });
    const r = h.dma(dev, { pasid: 101, iova: 0x1004, access: "read", length: 4 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.fault).toMatchObject({ pasid: 101, class: "blocked" });
  });

  it("attached PASID EBUSY; replace of an unattached PASID EINVAL; detach of one harmless", () => {
    const { h, dev, pasidHwpt } = setup();
    h.attach(dev, Intent.pasid(100), pasidHwpt);
    expectErrno(() => h.attach(dev, { pasid: 100 }, pasidHwpt), "EBUSY");
    expectErrno(() => h.replace(dev, { pasid: 200 }, pasidHwpt), "EINVAL");
    h.detach(dev, { pasid: 200 });
    h.detach(dev, { pasid: 100 });
    expectErrno(() => h.detach(dev, "emulated"), "EOPNOTSUPP");
    expectErrno(() => h.detach(h.addDevice({ iommu: "m0", rid: 9 }), { pasid: 1 }), "EOPNOTSUPP");
    expect(h.describe(dev)).toMatchObject({ pasids: [] });
  });

  it("RID and PASID HWPTs must both be PASID-capable, in either order", () => {
    const { h, dev, pasidHwpt, plainHwpt } = setup();
    h.attach(dev, "rid", plainHwpt);
    expectErrno(() => h.attach(dev, { pasid: 1 }, pasidHwpt), "EINVAL");
    h.replace(dev, "rid", pasidHwpt);
    h.attach(dev, { pasid: 1 }, pasidHwpt);
    expectErrno(() => h.replace(dev, "rid", plainHwpt), "EINVAL");
    // The failed replace kept the old table.
    expect(h.describe(dev)).toMatchObject({ ridAttach: { kind: "rid", hwpt: pasidHwpt } });
    h.detach(dev, "rid");
    expectErrno(() => h.attach(dev, "rid", plainHwpt), "EINVAL");
  });

  it("replace swaps the PASID's table; the old one can then be destroyed", () => {
    const { h, dev, ioas, pasidHwpt } = setup();
    const other = h.hwptAlloc({ device: dev, pt: ioas, flags: ["pasid"] });
    h.attach(dev, { pasid: 7 }, pasidHwpt);
    expect(h.replace(dev, { pasid: 7 }, other)).toEqual({ hwpt: other, pasid: 7 });
    h.destroy(pasidHwpt);
    expectErrno(() => h.destroy(other), "EBUSY");
  });
});

describe("hw_info", () => {
  it("reports flags, PASID width and type", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1, pasidBits: 20 });
    const info = h.hwInfo(dev);
    expect(info.maxPasidLog2).toBe(20);
    expect(info.type).toBe("none");
    expect(info.typeId).toBe(0);
    expect(info.capabilities).toEqual(["dirty_tracking", "pasid_exec", "pasid_priv", "ats_not_supported"]);
    expect(info.flags).toBe(15);
    expect(h.hwInfo(h.addDevice({ iommu: "m0", rid: 2 })).maxPasidLog2).toBe(0);
  });
});

describe("dirty tracking (iommufd_dirty_tracking)", () => {
  it("dirty flag on a non-dirty IOMMU EOPNOTSUPP; a non-dirty device cannot join a dirty HWPT (EINVAL)", () => {
    const h = mockHost();
    h.addIommu("nd", "mock-nodirty");
    const nd = h.addDevice({ iommu: "nd", rid: 1 });
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    expect(h.hwInfo(nd).capabilities).not.toContain("dirty_tracking");
    expectErrno(() => h.hwptAlloc({ device: nd, pt: ioas, flags: ["dirty_tracking"] }), "EOPNOTSUPP");
    const hw = h.hwptAlloc({ device: dev, pt: ioas, flags: ["dirty_tracking"] });
    expectErrno(() => h.attach(nd, "rid", hw), "EINVAL");
    h.attach(nd, "rid", ioas);
    expectErrno(() => h.dirtySet(99, true), "ENOENT");
  });

  it("set, DMA writes mark pages, read-and-clear and no-clear bitmaps", () => {
    const h = mockHost();
    const dev = h.addDevice({ iommu: "m0", rid: 1 });
    const ioas = h.ioasAlloc();
    h.ioasMap(ioas, { iova: 0x100000, length: 0x20000, pa: 0x100000, prot: "rw" });
    const plain = h.hwptAlloc({ device: dev, pt: ioas });
    expectErrno(() => h.dirtySet(plain, true), "EOPNOTSUPP");
    const hw = h.hwptAlloc({ device: dev, pt: ioas, flags: ["dirty_tracking"] });
    h.attach(dev, "rid", hw);
    h.dirtySet(hw, true);
    for (const page of [0, 3, 9, 17]) {
      h.dma(dev, { iova: 0x100000 + page * 0x1000 + 8, access: "write", data: new Uint8Array([1]) });
    }
    h.dma(dev, { iova: 0x105000, access: "read", length: 1 });
    const opts = { iova: 0x100000, length: 0x20000, pageSize: 0x1000 };
    expectErrno(() => h.dirtyRead(hw, { ...opts, pageSize: 0x1800 }), "EINVAL");
    expectErrno(() => h.dirtyRead(hw, { ...opts, iova: 0x100800 }), "EINVAL");
    const want = new Uint8Array([0b0000_1001, 0b0000_0010, 0b0000_0010, 0]);
    expect(h.dirtyRead(hw, { ...opts, noClear: true })).toEqual(want);
    expect(h.dirtyRead(hw, opts)).toEqual(want);
    expect(h.dirtyRead(hw, opts)).toEqual(new Uint8Array(4));
    // 8 KiB bitmap pages: page 9 -> bit 4.
    h.dma(dev, { iova: 0x109000, access: "write", data: new Uint8Array([1]) });
    expect(h.dirtyRead(hw, { ...opts, pageSize: 0x2000 })).toEqual(new Uint8Array([0b0001_0000, 0]));
  });
});

describe("ioas.copy permissions", () => {
  it("refuses a writable copy of read-only pages with EPERM and changes nothing (iopt_get_pages)", async () => {
    const { Host } = await import("../src/index.ts");
    const h = new Host();
    const src = h.ioasAlloc();
    const dst = h.ioasAlloc();
    h.ioasMap(src, { iova: 0x10000, length: 0x2000, pa: 0x100000, prot: "r" });
    const before = JSON.stringify(h.state());
    let code: string | undefined;
    try {
      h.ioasCopy({ src, srcIova: 0x10000, dst, dstIova: 0x40000, length: 0x2000, prot: "rw" });
    } catch (e) {
      code = (e as { code?: string }).code;
    }
    expect(code).toBe("EPERM");
    expect(JSON.stringify(h.state())).toBe(before);
    expect(h.ioasCopy({ src, srcIova: 0x10000, dst, dstIova: 0x40000, length: 0x2000, prot: "r" })).toBe(
      0x40000,
    );
  });
});
