import type { MdevEmulatedBackend } from "@iommu-kit/mdev-emulated";
import { describe, expect, it } from "vitest";
import type { DeviceInfo } from "../src/index.ts";
import { expectErrno, mockHost, pattern } from "./helpers.ts";

function setup() {
  const h = mockHost();
  const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
  const m = h.addMdev({ parent });
  const ioas = h.ioasAlloc();
  h.ioasMap(ioas, { iova: 0x100000, length: 0x4000, pa: 0x800000, prot: "rw" });
  return { h, parent, m, ioas };
}

describe("mediated devices", () => {
  it("an mdev gets an mdev IOMMU instance and lists emulated + pasid", () => {
    const { h, m } = setup();
    expect(h.iommus()).toEqual([
      { name: "m0", backend: "mock" },
      { name: "m1", backend: "mock" },
      { name: "mdev", backend: "mdev-emulated" },
    ]);
    expect(h.hwInfo(m).intents).toEqual(["emulated", "pasid"]);
    expect(h.describe(m)).toMatchObject({ kind: "device", iommu: "mdev", rid: 0, parent: 1 });
    expect(h.describe(h.addMdev({ parent: 1 }))).toMatchObject({ rid: 1 });
    expectErrno(() => h.addMdev({ parent: m }), "EINVAL");
    expectErrno(() => h.attach(m, "rid", 4), "EOPNOTSUPP");
  });

  it("emulated: an access object on the IOAS; pin, rw, unmap runs the unmap callback", () => {
    const { h, m, ioas } = setup();
    expectErrno(() => h.accessPin(m, 0x100000, 0x1000, false), "ENOENT");
    const { hwpt: acc } = h.attach(m, "emulated", ioas);
    expect(h.describe(acc)).toMatchObject({ kind: "access", ioas, device: m, pins: 0 });
    expectErrno(() => h.attach(m, "emulated", ioas), "EBUSY");
    expect(h.accessPin(m, 0x101800, 0x1000, true)).toEqual([0x801000, 0x802000]);
    expect(h.describe(acc)).toMatchObject({ pins: 2 });
    h.accessRw(m, { iova: 0x100ffe, data: pattern(4), write: true });
    expect(h.memRead(0x800ffe, 4)).toEqual(pattern(4));
    expect(h.accessRw(m, { iova: 0x100ffe, length: 4, write: false })).toEqual(pattern(4));
    expectErrno(() => h.destroy(acc), "EBUSY");
    expectErrno(() => h.destroy(ioas), "EBUSY");
    // Later maps reach the access; the unmap callback drops the pins (iommufd access_pin_unmap).
    h.ioasMap(ioas, { iova: 0x200000, length: 0x1000, pa: 0x900000, prot: "r" });
    expect(h.accessRw(m, { iova: 0x200000, length: 2, write: false })).toEqual(new Uint8Array(2));
    expect(h.ioasUnmap(ioas, 0x100000, 0x4000)).toBe(0x4000);
    expect(h.describe(acc)).toMatchObject({ pins: 0 });
    expectErrno(() => h.accessPin(m, 0x100000, 0x1000, false), "ENOENT");
    h.detach(m, "emulated");
    expectErrno(() => h.describe(acc), "ENOENT");
    h.destroy(ioas);
  });

  it("a DMA from an emulated mdev is translated in software", () => {
    const { h, m, ioas } = setup();
    h.attach(m, "emulated", ioas);
    expect(h.dma(m, { iova: 0x100010, access: "write", data: pattern(8) })).toEqual({
      ok: true,
      pa: 0x800010,
    });
    const r = h.dma(m, { iova: 0x300000, access: "read", length: 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.fault).toMatchObject({ device: m, pasid: null, class: "translation" });
  });

  it("pasid auto: the backend picks the PASID; DMA leaves through the parent with it", () => {
    const { h, parent, m, ioas } = setup();
    expectErrno(() => h.attach(m, { pasid: 5 }, ioas), "EINVAL");
    const hw = h.hwptAlloc({ device: m, pt: ioas, flags: ["pasid"] });
    expect(h.describe(hw)).toMatchObject({ kind: "hwpt-paging", iommu: "m0" });
    const res = h.attach(m, { pasid: "auto" }, hw);
    expect(res.hwpt).toBe(hw);
    expect(typeof res.pasid).toBe("number");
    const pasid = res.pasid!;
    expect(h.describe(m)).toMatchObject({ pasids: [[pasid, hw]] });
    expect(h.dma(m, { iova: 0x100004, access: "read", length: 4 })).toMatchObject({ ok: true, pa: 0x800004 });
    // The parent itself, with that PASID, reaches the same table.
    expect(h.dma(parent, { pasid, iova: 0x100004, access: "read", length: 4 })).toMatchObject({ ok: true });
    expectErrno(() => h.attach(m, { pasid: "auto" }, hw), "EBUSY");
    const hw2 = h.hwptAlloc({ device: m, pt: ioas, flags: ["pasid"] });
    expect(h.replace(m, { pasid: "auto" }, hw2)).toEqual({ hwpt: hw2, pasid });
    h.detach(m, { pasid: "auto" });
    expect(h.describe(m)).toMatchObject({ pasids: [] });
    const r = h.dma(m, { iova: 0x100004, access: "read", length: 4 });
    expect(r.ok).toBe(false);
    expectErrno(() => h.destroy(parent), "EBUSY");
    h.destroy(m);
    h.destroy(hw);
    h.destroy(hw2);
    h.destroy(parent);
  });

  it("an access that keeps its pins makes the unmap EBUSY and nothing changes (other accesses re-mapped)", () => {
    const { h, parent, m, ioas } = setup();
    const m2 = h.addMdev({ parent });
    h.attach(parent, "rid", ioas);
    h.attach(m, "emulated", ioas);
    h.attach(m2, "emulated", ioas);
    const mdev = h.iommu("mdev") as MdevEmulatedBackend;
    const rid2 = (h.describe(m2) as DeviceInfo).rid;
    mdev.setUnmapCallback(rid2, () => {});
    h.accessPin(m2, 0x101000, 0x1000, false);
    const before = h.state();
    expect(() => h.ioasUnmap(ioas, 0x100000, 0x4000)).toThrow(/EBUSY/);
    expect(h.state()).toEqual(before);
    expect(h.accessRw(m, { iova: 0x100000, length: 1, write: false })).toEqual(new Uint8Array(1));
    expect(h.dma(parent, { iova: 0x100000, access: "read", length: 1 }).ok).toBe(true);
    mdev.setUnmapCallback(rid2, null);
    expect(h.ioasUnmap(ioas, 0x100000, 0x4000)).toBe(0x4000);
    expect(h.dma(parent, { iova: 0x100000, access: "read", length: 1 }).ok).toBe(false);
  });
});
