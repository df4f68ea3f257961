/**
 * iommufd_fail_nth (tools/testing/selftests/iommu/iommufd_fail_nth.c): every operation
 * is swept with failure injection at each of its allocation points (table blocks,
 * object creation, area insertion); each failure must leave state and table
 * accounting exactly as before, and the sweep must end in a success.
 */

import { describe, expect, it } from "vitest";
import type { Host } from "../src/index.ts";
import { mockHost, sweepFailNth } from "./helpers.ts";

/** Two mock IOMMUs, one device each, both attached to one IOAS holding a few areas. */
function twoDomains(): { h: Host; a: number; b: number; ioas: number } {
  const h = mockHost();
  const a = h.addDevice({ iommu: "m0", rid: 1, pasidBits: 8 });
  const b = h.addDevice({ iommu: "m1", rid: 1 });
  const ioas = h.ioasAlloc();
  h.ioasMap(ioas, { iova: 0x10000, length: 0x3000, pa: 0x100000, prot: "rw" });
  h.ioasMap(ioas, { iova: 0x40000000, length: 0x200000, pa: 0x200000, prot: "r" });
  h.attach(a, "rid", ioas);
  h.attach(b, "rid", ioas);
  return { h, a, b, ioas };
}

describe("fail_nth", () => {
  it("basic: ioas alloc, allow_iovas", () => {
    const h = mockHost();
    const s = sweepFailNth(h, () => h.ioasAlloc());
    expect(s.succeededAt).toBe(2);
    const ioas = s.result as number;
    expect(sweepFailNth(h, () => h.ioasAllowIovas(ioas, [{ start: 0, last: 0xfffff }])).succeededAt).toBe(2);
  });

  it("map_two_domains: a map that needs new tables in two domains", () => {
    const { h, a, b, ioas } = twoDomains();
    // 0x7fe00000 + 6 MiB crosses a 1 GiB boundary: new tables at two levels in each domain.
    const s = sweepFailNth(h, () =>
      h.ioasMap(ioas, { iova: 0x7fe00000 - 0x1000, length: 0x401000, pa: 0x1000000 - 0x1000, prot: "rw" }),
    );
    expect(s.succeededAt).toBeGreaterThan(4);
    for (const dev of [a, b]) {
      expect(h.dma(dev, { iova: 0x801ff000, access: "read", length: 1 })).toMatchObject({
        ok: true,
        pa: 0x13ff000,
      });
    }
  });

  it("map with an automatic IOVA", () => {
    const { h, ioas } = twoDomains();
    h.ioasAllowIovas(ioas, [{ start: 0x4000000000, last: 0x7fffffffff }]);
    const s = sweepFailNth(h, () => h.ioasMap(ioas, { length: 0x5000, pa: 0x3000000, prot: "rw" }));
    expect(s.result).toBe(0x4000000000);
    expect(s.succeededAt).toBeGreaterThan(4);
  });

  it("copy into an IOAS with domains", () => {
    const { h, a, ioas } = twoDomains();
    const dst = h.ioasAlloc();
    const c = h.addDevice({ iommu: "m0", rid: 3 });
    h.attach(c, "rid", dst);
    const s = sweepFailNth(h, () =>
      h.ioasCopy({ src: ioas, srcIova: 0x10000, dst, dstIova: 0x123450000, length: 0x3000, prot: "r" }),
    );
    expect(s.succeededAt).toBeGreaterThan(2);
    expect(h.dma(c, { iova: 0x123452000, access: "read", length: 1 })).toMatchObject({
      ok: true,
      pa: 0x102000,
    });
    expect(h.dma(a, { iova: 0x12000, access: "read", length: 1 })).toMatchObject({ ok: true, pa: 0x102000 });
  });

  it("device: attach to an IOAS (automatic HWPT, filled with every area)", () => {
    const { h, ioas } = twoDomains();
    const c = h.addDevice({ iommu: "m0", rid: 7 });
    const d = h.addDevice({ iommu: "m1", rid: 7 });
    // c reuses m0's automatic HWPT: no allocation at all.
    expect(sweepFailNth(h, () => h.attach(c, "rid", ioas)).succeededAt).toBe(1);
    const ioas2 = h.ioasAlloc();
    h.ioasMap(ioas2, { iova: 0x200000, length: 0x400000, pa: 0x400000, prot: "rw" });
    const s = sweepFailNth(h, () => h.attach(d, "rid", ioas2));
    expect(s.succeededAt).toBeGreaterThan(3);
    expect(h.dma(d, { iova: 0x3ff000, access: "read", length: 1 })).toMatchObject({ ok: true, pa: 0x5ff000 });
  });

  it("replace to another IOAS, and hwpt alloc", () => {
    const { h, a, ioas } = twoDomains();
    const ioas2 = h.ioasAlloc();
    h.ioasMap(ioas2, { iova: 0x1000, length: 0x1000, pa: 0x9000, prot: "rw" });
    const s = sweepFailNth(h, () => h.replace(a, "rid", ioas2));
    expect(s.succeededAt).toBeGreaterThan(2);
    expect(h.dma(a, { iova: 0x1000, access: "read", length: 1 })).toMatchObject({ ok: true, pa: 0x9000 });
    const hw = sweepFailNth(h, () => h.hwptAlloc({ device: a, pt: ioas, flags: ["pasid"] }));
    expect(hw.succeededAt).toBeGreaterThan(2);
    expect(sweepFailNth(h, () => h.replace(a, "rid", hw.result as number)).succeededAt).toBe(1);
    expect(sweepFailNth(h, () => h.attach(a, { pasid: 3 }, hw.result as number)).succeededAt).toBe(1);
  });

  it("add device, fault queue, access (mdev emulated attach, pin, rw)", () => {
    const { h, a, ioas } = twoDomains();
    expect(sweepFailNth(h, () => h.addDevice({ iommu: "m0", rid: 9 })).succeededAt).toBe(2);
    expect(sweepFailNth(h, () => h.faultQueueAlloc()).succeededAt).toBe(2);
    const m = sweepFailNth(h, () => h.addMdev({ parent: a })).result as number;
    const s = sweepFailNth(h, () => h.attach(m, "emulated", ioas));
    expect(s.succeededAt).toBeGreaterThan(1);
    const pins = sweepFailNth(h, () => h.accessPin(m, 0x10000, 0x2000, true)).result;
    expect(pins).toEqual([0x100000, 0x101000]);
    sweepFailNth(h, () => h.accessRw(m, { iova: 0x10ffe, data: new Uint8Array([1, 2, 3, 4]), write: true }));
    expect(h.memRead(0x100ffe, 4)).toEqual(new Uint8Array([1, 2, 3, 4]));
  });

  it("unmap and destroy never allocate", () => {
    const { h, a, b, ioas } = twoDomains();
    expect(sweepFailNth(h, () => h.ioasUnmap(ioas, 0x10000, 0x3000)).succeededAt).toBe(1);
    expect(sweepFailNth(h, () => h.detach(a, "rid")).succeededAt).toBe(1);
    h.detach(b, "rid");
    expect(sweepFailNth(h, () => h.destroy(ioas)).succeededAt).toBe(1);
    expect(h.tables.stats()).toEqual({ blocks: 0, bytes: 0 });
  });
});
