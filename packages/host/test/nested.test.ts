/**
 * Nested HWPTs through the host's plumbing (iommufd_ioas.alloc_hwpt_nested), on a
 * nesting test double: the vendor backends' own nested formats are tested in
 * vendor.test.ts.
 */

import { describe, expect, it } from "vitest";
import { expectErrno, mockHost } from "./helpers.ts";

function setup() {
  const h = mockHost();
  h.addIommu("n0", "mock-nest");
  const dev = h.addDevice({ iommu: "n0", rid: 1, pasidBits: 8 });
  const other = h.addDevice({ iommu: "m0", rid: 1 });
  const ioas = h.ioasAlloc();
  h.ioasMap(ioas, { iova: 0x40000, length: 0x1000, pa: 0x7000, prot: "rw" });
  const parent = h.hwptAlloc({ device: dev, pt: ioas, flags: ["nest_parent"] });
  return { h, dev, other, ioas, parent };
}

describe("nested HWPTs (alloc_hwpt_nested)", () => {
  it("allocation errors: no data EOPNOTSUPP, non-parent EINVAL, nested-on-nested EINVAL, bad flags EOPNOTSUPP", () => {
    const { h, dev, other, ioas, parent } = setup();
    const plain = h.hwptAlloc({ device: dev, pt: ioas });
    // iommufd_hwpt_nested_alloc: no vendor data is EOPNOTSUPP.
    expectErrno(() => h.hwptAlloc({ device: dev, pt: parent }), "EOPNOTSUPP");
    expectErrno(() => h.hwptAlloc({ device: dev, pt: plain, data: { ok: true } }), "EINVAL");
    expectErrno(
      () => h.hwptAlloc({ device: dev, pt: parent, data: { ok: true }, flags: ["dirty_tracking"] }),
      "EOPNOTSUPP",
    );
    expectErrno(
      () => h.hwptAlloc({ device: dev, pt: parent, data: { ok: true }, flags: ["nest_parent"] }),
      "EOPNOTSUPP",
    );
    expectErrno(() => h.hwptAlloc({ device: other, pt: parent, data: { ok: true } }), "EINVAL");
    expectErrno(() => h.hwptAlloc({ device: dev, pt: parent, data: { ok: false } }), "EINVAL");
    const nested = h.hwptAlloc({ device: dev, pt: parent, data: { ok: true } });
    expect(h.describe(nested)).toMatchObject({ kind: "hwpt-nested", parent, users: 0 });
    expectErrno(() => h.hwptAlloc({ device: dev, pt: nested, data: { ok: true } }), "EINVAL");
    // The parent is busy while a nested HWPT sits on it.
    expectErrno(() => h.destroy(parent), "EBUSY");
    h.destroy(nested);
    h.destroy(parent);
  });

  it("attach rid-all-pasids to a nested HWPT; DMA through the parent; invalidate counts", () => {
    const { h, dev, ioas, parent } = setup();
    const nested = h.hwptAlloc({ device: dev, pt: parent, data: { ok: true } });
    expectErrno(() => h.attach(dev, "rid-all-pasids", ioas), "EINVAL");
    expect(h.attach(dev, "rid-all-pasids", nested)).toEqual({ hwpt: nested });
    expect(h.describe(dev)).toMatchObject({ ridAttach: { kind: "rid-all-pasids", hwpt: nested } });
    expect(h.dma(dev, { iova: 0x40010, access: "read", length: 4 })).toMatchObject({ ok: true, pa: 0x7010 });
    // The user owns every PASID: host PASID attaches are refused.
    const pasidHwpt = h.hwptAlloc({ device: dev, pt: ioas, flags: ["pasid"] });
    expectErrno(() => h.attach(dev, { pasid: 1 }, pasidHwpt), "EBUSY");
    expectErrno(() => h.destroy(nested), "EBUSY");
    expectErrno(() => h.destroy(ioas), "EBUSY");
    expect(h.invalidate(nested, [{ ok: true }, { ok: true }])).toBe(2);
    expect(h.invalidate(nested, [])).toBe(0);
    let err: unknown;
    try {
      h.invalidate(nested, [{ ok: true }, { ok: false }, { ok: true }]);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: "EINVAL", details: { handled: 1 } });
    // iommufd_get_hwpt_nested: a paging HWPT is ENOENT (the 6.12 selftest alloc_hwpt_nested checks it).
    expectErrno(() => h.invalidate(parent, [{ ok: true }]), "ENOENT");
    expectErrno(() => h.invalidate(99, []), "ENOENT");
    // Replace back to a plain RID attach of the parent (S2 only).
    expect(h.replace(dev, "rid", parent)).toEqual({ hwpt: parent });
    h.destroy(nested);
    h.detach(dev, "rid");
    expect(h.describe(parent)).toMatchObject({ users: 0, children: 0 });
  });

  it("switching the RID between rid and rid-all-pasids on one HWPT keeps one user", () => {
    const { h, dev, parent } = setup();
    const nested = h.hwptAlloc({ device: dev, pt: parent, data: { ok: true } });
    h.attach(dev, "rid", nested);
    h.replace(dev, "rid-all-pasids", nested);
    expect(h.describe(nested)).toMatchObject({ users: 1 });
    expect(h.describe(dev)).toMatchObject({ ridAttach: { kind: "rid-all-pasids", hwpt: nested } });
    h.detach(dev, "rid-all-pasids");
    expect(h.describe(nested)).toMatchObject({ users: 0 });
    h.destroy(nested);
  });
});
