import { Access, createTranslation, Intent, NO_PASID, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { EmulatedDomain } from "../src/domain.ts";
import { EntryBit } from "../src/format/emulated-table.ts";
import { addMdev, fixture } from "./helpers.ts";

const K4 = 0x1000;
const M2 = 0x20_0000;

function attached(flags = {}, iotlbSizeLg2?: number) {
  const f = fixture(2 ** 28, iotlbSizeLg2);
  addMdev(f, 1);
  const dom = f.mdev.allocDomain({ type: "paging", flags }) as EmulatedDomain;
  f.mdev.attach(1, Intent.emulated, dom);
  return { ...f, dom, out: createTranslation() };
}

describe("emulated translate", () => {
  it("walks on a miss, hits the IOTLB after, with the same answer", () => {
    const { mdev, dom, out } = attached();
    dom.map(0x4000, 0x8000, K4, Perm.R | Perm.W);
    expect(mdev.translate(1, NO_PASID, 0x4abc, Access.READ, out)).toBe(true);
    expect([out.pa, out.perm, out.sizeLg2, out.fault]).toEqual([0x8abc, Perm.R | Perm.W, 12, null]);
    expect(mdev.counters()).toMatchObject({ iotlbHits: 0, iotlbMisses: 1, walks: 1 });
    expect(mdev.translate(1, NO_PASID, 0x4ff0, Access.WRITE, out)).toBe(true);
    expect(out.pa).toBe(0x8ff0);
    expect(mdev.counters()).toMatchObject({ iotlbHits: 1, iotlbMisses: 1, walks: 1 });
  });

  it("reports the leaf size of 2 MiB and 1 GiB leaves", () => {
    const { mdev, dom, out } = attached();
    dom.map(M2, 4 * M2, M2, Perm.R);
    dom.map(2 ** 30, 2 ** 30, 2 ** 30, Perm.R);
    expect(mdev.translate(1, NO_PASID, M2 + 0x1_2345, Access.READ, out)).toBe(true);
    expect([out.pa, out.sizeLg2]).toEqual([4 * M2 + 0x1_2345, 21]);
    expect(mdev.translate(1, NO_PASID, 2 ** 30 + 0x123_4567, Access.READ, out)).toBe(true);
    expect([out.pa, out.sizeLg2]).toEqual([2 ** 30 + 0x123_4567, 30]);
    expect(mdev.translate(1, NO_PASID, 2 ** 30 + 0x123_4567, Access.READ, out)).toBe(true);
    expect(out.sizeLg2).toBe(30);
  });

  it("faults: unmapped is translation, write to read-only is permission (walk and hit)", () => {
    const { mdev, dom, out } = attached();
    dom.map(0, 0x10_0000, K4, Perm.R);
    expect(mdev.translate(1, NO_PASID, K4, Access.READ, out)).toBe(false);
    expect(out.fault).toEqual({
      class: "translation",
      recorded: true,
      vendor: {
        vendor: "mdev-emulated",
        code: 1,
        name: "MDEV_UNMAPPED",
        fields: { rid: 1, pasid: null, iova: "0x1000", write: false, exec: false },
      },
    });
    expect(mdev.translate(1, NO_PASID, 8, Access.WRITE, out)).toBe(false);
    expect(out.fault?.class).toBe("permission");
    expect(out.fault?.vendor.code).toBe(2);
    expect(mdev.translate(1, NO_PASID, 8, Access.READ, out)).toBe(true);
    expect(mdev.translate(1, NO_PASID, 8, Access.WRITE, out)).toBe(false);
    expect(out.fault?.vendor.name).toBe("MDEV_PERMISSION");
    expect(mdev.counters().iotlbHits).toBe(1);
  });

  it("an instruction fetch needs X and R", () => {
    const { mdev, dom, out } = attached();
    dom.map(0, 0, K4, Perm.R);
    dom.map(K4, K4, K4, Perm.R | Perm.X);
    expect(mdev.translate(1, NO_PASID, 0, Access.READ | Access.EXEC, out)).toBe(false);
    expect(out.fault?.vendor.fields.exec).toBe(true);
    expect(mdev.translate(1, NO_PASID, K4, Access.READ | Access.EXEC, out)).toBe(true);
  });

  it.each([2 ** 48, 2 ** 52, -1, Number.NaN])("iova %d is beyond the aperture", (iova) => {
    const { mdev, out } = attached();
    expect(mdev.translate(1, NO_PASID, iova, Access.READ, out)).toBe(false);
    expect(out.fault?.vendor.name).toBe("MDEV_BEYOND_APERTURE");
    expect(out.fault?.class).toBe("translation");
  });

  it("keeps a cached entry stale until invalidated; unmap invalidates on its own", () => {
    const { mdev, dom, out } = attached();
    dom.map(0, 0x10_0000, K4, Perm.R);
    mdev.translate(1, NO_PASID, 0, Access.READ, out);
    dom.table.set(0, 0x20_0000, dom.table.flagsAt(0));
    mdev.translate(1, NO_PASID, 0, Access.READ, out);
    expect(out.pa).toBe(0x10_0000);
    mdev.invalidateRange(dom, 0, K4);
    mdev.translate(1, NO_PASID, 0, Access.READ, out);
    expect(out.pa).toBe(0x20_0000);
    dom.unmap(0, K4);
    expect(mdev.translate(1, NO_PASID, 0, Access.READ, out)).toBe(false);
    dom.map(0, 0x30_0000, K4, Perm.R);
    mdev.translate(1, NO_PASID, 0, Access.READ, out);
    mdev.flushCaches();
    expect(mdev.counters().invalidations).toBeGreaterThanOrEqual(3);
  });

  it("a write translation marks the page dirty while tracking, even after a cached read", () => {
    const { mdev, dom, out } = attached({ dirtyTracking: true });
    dom.map(0, 0x10_0000, 2 * K4, Perm.R | Perm.W);
    dom.setDirtyTracking(true);
    mdev.translate(1, NO_PASID, K4, Access.READ, out);
    expect(dom.table.flagsAt(K4) & EntryBit.D).toBe(0);
    mdev.translate(1, NO_PASID, K4, Access.WRITE, out);
    expect(dom.table.flagsAt(K4) & EntryBit.D).toBe(EntryBit.D);
    const bm = new Uint8Array(1);
    dom.readDirty(0, 2 * K4, 12, bm, false);
    expect(bm[0]).toBe(2);
    // After the clear, a cached write must walk again to re-mark.
    mdev.translate(1, NO_PASID, K4, Access.WRITE, out);
    expect(dom.table.flagsAt(K4) & EntryBit.D).toBe(EntryBit.D);
  });

  it("two domains never share cached entries", () => {
    const f = attached();
    addMdev(f, 2);
    const other = f.mdev.allocDomain({ type: "paging" }) as EmulatedDomain;
    f.mdev.attach(2, Intent.emulated, other);
    f.dom.map(0, 0x10_0000, K4, Perm.R);
    other.map(0, 0x20_0000, K4, Perm.R);
    f.mdev.translate(1, NO_PASID, 0, Access.READ, f.out);
    expect(f.out.pa).toBe(0x10_0000);
    f.mdev.translate(2, NO_PASID, 0, Access.READ, f.out);
    expect(f.out.pa).toBe(0x20_0000);
    f.mdev.translate(1, NO_PASID, 0, Access.READ, f.out);
    expect(f.out.pa).toBe(0x10_0000);
  });

  it("stays exact when the IOTLB overflows", () => {
    const { mdev, dom, out } = attached({}, 4);
    dom.map(0, 0x10_0000, 64 * K4, Perm.R);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 64; i++) {
        expect(mdev.translate(1, NO_PASID, i * K4 + 5, Access.READ, out)).toBe(true);
        expect(out.pa).toBe(0x10_0000 + i * K4 + 5);
      }
    }
  });
});
