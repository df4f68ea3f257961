/**
 * The selftest mock driver (src/selftest-mock): the mock domain's IO pages, huge IOVA
 * entries and dirty read (mock_domain_map_pages, mock_domain_read_and_clear_dirty),
 * the nested domain's IOTLB and invalidation (mock_domain_cache_invalidate_user), and
 * the access domain's pin / rw / unmap callback, and the 6.15 mock vIOMMU.
 */

import { PhysicalMemory } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { MockAccessDomain } from "../src/selftest-mock/access.ts";
import type { MockNestedDomain } from "../src/selftest-mock/backend.ts";
import { SelftestMockBackend } from "../src/selftest-mock/backend.ts";
import type { MockViommu } from "../src/selftest-mock/viommu.ts";
import { expectErrno } from "./helpers.ts";

const mem = (): PhysicalMemory => new PhysicalMemory([{ base: 0, size: 2 ** 32, name: "ram" }]);

describe("mock paging domain", () => {
  it("maps 2 KiB IO pages inside the aperture only; EEXIST on overlap", () => {
    const b = new SelftestMockBackend("mock", mem());
    b.addDevice({ rid: 0, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging", rid: 0 });
    expect(d.pageSizeBitmap).toBe(2048n);
    expectErrno(() => d.map(0x800000, 0x1000, 0x800, 3), "EINVAL");
    expectErrno(() => d.map(1 << 24, 0x1000, 0x400, 3), "EINVAL");
    d.map(1 << 24, 0x10800, 0x1000, 3);
    expect(d.iovaToPhys((1 << 24) + 0x900)).toBe(0x11100);
    expectErrno(() => d.map((1 << 24) + 0x800, 0x0, 0x800, 3), "EEXIST");
    expect(d.unmap(1 << 24, 0x2000)).toBe(0x1000);
    expect(d.iovaToPhys(1 << 24)).toBe(-1);
  });

  it("a huge entry reports its whole 1 MiB page dirty at the bitmap's granularity", () => {
    const b = new SelftestMockBackend("mock", mem());
    b.nextFlags = 2; // MOCK_FLAGS_DEVICE_HUGE_IOVA
    b.addDevice({ rid: 0, pasidBits: 0 });
    const d = b.allocDomain({ type: "paging", rid: 0, flags: { dirtyTracking: true } }) as ReturnType<
      SelftestMockBackend["allocDomain"]
    > & { markDirtyIndex(i: number): number };
    d.map(1 << 24, 1 << 20, 2 << 20, 3);
    expect(d.markDirtyIndex(((1 << 24) + 0x1000) / 2048)).toBe(1);
    const bitmap = new Uint8Array(64);
    d.readDirty!(1 << 24, 2 << 20, 15, bitmap, true); // 32 KiB bits: 32 bits per MiB
    expect([...bitmap.subarray(0, 5)]).toEqual([0xff, 0xff, 0xff, 0xff, 0]);
    bitmap.fill(0);
    d.readDirty!(1 << 24, 2 << 20, 15, bitmap, false);
    expect(bitmap[3]).toBe(0xff);
    bitmap.fill(0);
    d.readDirty!(1 << 24, 2 << 20, 15, bitmap, false);
    expect(bitmap.every((x) => x === 0)).toBe(true);
  });

  it("a device flagged NO_DIRTY cannot get a dirty domain (EOPNOTSUPP)", () => {
    const b = new SelftestMockBackend("mock", mem());
    b.nextFlags = 1;
    b.addDevice({ rid: 0, pasidBits: 0 });
    expect(b.capabilities(0).features.dirtyTracking).toBe(false);
    expectErrno(
      () => b.allocDomain({ type: "paging", rid: 0, flags: { dirtyTracking: true } }),
      "EOPNOTSUPP",
    );
  });
});

describe("nested mock domain", () => {
  it("IOTLB slots start at the data's value; invalidation clears one or all, stops at a bad entry", () => {
    const b = new SelftestMockBackend("mock", mem());
    b.addDevice({ rid: 0, pasidBits: 0 });
    const parent = b.allocDomain({ type: "paging", rid: 0, flags: { nestParent: true } });
    const data = new Uint8Array([0xef, 0xbe, 0xad, 0x0b]);
    expectErrno(
      () => b.allocDomain({ type: "nested", rid: 0, parent, data: { type: 1, bytes: data } }),
      "EOPNOTSUPP",
    );
    expectErrno(
      () =>
        b.allocDomain({ type: "nested", rid: 0, parent, data: { type: 0xdead, bytes: new Uint8Array(5) } }),
      "EINVAL",
    );
    const n = b.allocDomain({
      type: "nested",
      rid: 0,
      parent,
      data: { type: 0xdead, bytes: data },
    }) as unknown as {
      iotlb: number[];
      invalidate(e: unknown[]): number;
    };
    expect(n.iotlb).toEqual([0xbadbeef, 0xbadbeef, 0xbadbeef, 0xbadbeef]);
    const entry = (flags: number, id: number): { type: number; bytes: Uint8Array } => {
      const v = new DataView(new ArrayBuffer(8));
      v.setUint32(0, flags, true);
      v.setUint32(4, id, true);
      return { type: 0xdeadbeef, bytes: new Uint8Array(v.buffer) };
    };
    expect(n.invalidate([entry(0, 1)])).toBe(1);
    expect(n.iotlb).toEqual([0xbadbeef, 0, 0xbadbeef, 0xbadbeef]);
    expect(() => n.invalidate([entry(0, 2), entry(0, 4)])).toThrow(
      expect.objectContaining({ code: "EINVAL", details: { handled: 1 } }),
    );
    expect(() => n.invalidate([entry(2, 0)])).toThrow(expect.objectContaining({ code: "EOPNOTSUPP" }));
    expect(n.invalidate([entry(1, 0)])).toBe(1);
    expect(n.iotlb).toEqual([0, 0, 0, 0]);
    expect(() => n.invalidate([{ type: 0xdadbeef, bytes: null }])).toThrow(
      expect.objectContaining({ code: "EINVAL" }),
    );
  });
});

describe("selftest access domain", () => {
  it("rw across extents, EPERM/ENOENT, pins per 4 KiB page, unmap callback before the unmap", () => {
    const m = mem();
    const b = new SelftestMockBackend("mock", m);
    const a = new MockAccessDomain(b, 1, m, true);
    expect(a.pageSizeBitmap).toBe(4096n);
    expect(new MockAccessDomain(b, 2, m, false).pageSizeBitmap).toBe(1n);
    a.map(0x1000, 0x20000, 0x1000, 3);
    a.map(0x2000, 0x50000, 0x1000, 1);
    m.write(0x20ffe, new Uint8Array([1, 2]));
    m.write(0x50000, new Uint8Array([3, 4]));
    expect([...a.read(0x1ffe, 4)]).toEqual([1, 2, 3, 4]);
    expectErrno(() => a.write(0x1ffe, new Uint8Array(4)), "EPERM");
    expectErrno(() => a.read(0x2ffe, 4), "ENOENT");
    expectErrno(() => a.read(0x1000, 0), "EINVAL");
    expect(a.pin(0x1800, 0x1000, false)).toEqual([0x20000, 0x50000]);
    expect(a.pinCount()).toBe(2);
    const seen: number[] = [];
    a.onUnmap = (iova, length) => {
      seen.push(iova, length);
      a.unpin(0x1800, 0x1000);
    };
    expect(a.unmap(0x1000, 0x1000)).toBe(0x1000);
    expect(seen).toEqual([0x1000, 0x1000]);
    expect(a.pinCount()).toBe(0);
    expectErrno(() => a.unpin(0x2000, 1), "EINVAL");
  });
});

describe("mock vIOMMU (mock_viommu_alloc, mock_viommu_cache_invalidate, 6.15)", () => {
  const inv = (flags: number, vdev: number, cache: number, extra: number[] = []) => {
    const v = new DataView(new ArrayBuffer(12 + 4 * extra.length));
    v.setUint32(0, flags, true);
    v.setUint32(4, vdev, true);
    v.setUint32(8, cache, true);
    for (let i = 0; i < extra.length; i++) v.setUint32(12 + 4 * i, extra[i]!, true);
    return { type: 0xdeadbeef, bytes: new Uint8Array(v.buffer) };
  };

  function rig() {
    const b = new SelftestMockBackend("mock", mem());
    b.addDevice({ rid: 0, pasidBits: 0 });
    b.addDevice({ rid: 1, pasidBits: 0 });
    const parent = b.allocDomain({ type: "paging", rid: 0, flags: { nestParent: true } });
    const v = b.allocViommu({ type: "selftest", rid: 0, parent }) as MockViommu;
    return { b, parent, v };
  }

  it("selftest type only, a mock device, a mock parent", () => {
    const { b, parent, v } = rig();
    expect(v).toMatchObject({ type: "selftest", parent, id: 1 });
    expectErrno(() => b.allocViommu({ type: "arm-smmuv3", rid: 0, parent }), "EOPNOTSUPP");
    expectErrno(() => b.allocViommu({ type: "selftest", rid: 7, parent }), "ENOENT");
    const other = new SelftestMockBackend("m2", mem());
    other.addDevice({ rid: 0, pasidBits: 0 });
    const foreign = other.allocDomain({ type: "paging", rid: 0 });
    expectErrno(() => b.allocViommu({ type: "selftest", rid: 0, parent: foreign }), "EINVAL");
  });

  it("vDEVICEs, nested domains and the attach rule of mock_domain_nop_attach", () => {
    const { b, v } = rig();
    v.addVdevice(0, 0x99);
    expectErrno(() => v.addVdevice(1, 0x99), "EEXIST");
    expectErrno(() => v.addVdevice(0, 0x98), "EEXIST");
    expectErrno(() => v.addVdevice(5, 0x98), "EINVAL");
    expect([v.virtId(0), v.virtId(1)]).toEqual([0x99, -1]);
    expectErrno(
      () => v.allocNested({ type: 0xdead, bytes: new Uint8Array(4) }, { nestParent: true }),
      "EOPNOTSUPP",
    );
    expectErrno(() => v.allocNested({ ste: [1n, 0n] }, {}), "EOPNOTSUPP");
    const n = v.allocNested({ type: 0xdead, bytes: new Uint8Array([1, 0, 0, 0]) }, {}) as MockNestedDomain;
    expect(n.iotlb).toEqual([1, 1, 1, 1]);
    expect(n.viommu).toBe(v);
    // A device without a vDEVICE on the vIOMMU cannot attach its nested domain (ENOENT).
    expectErrno(() => b.attach(1, { kind: "rid" }, n), "ENOENT");
    b.attach(0, { kind: "rid" }, n);
    expect(b.deviceViommu(0)).toEqual({ viommu: v, vdevId: 0x99 });
    expectErrno(() => v.free(), "EBUSY");
    b.detach(0, { kind: "rid" });
    expect(b.deviceViommu(0)).toBe(null);
    n.free();
    expectErrno(() => v.free(), "EBUSY");
    v.removeVdevice(0);
    expectErrno(() => v.removeVdevice(0), "ENOENT");
    v.free();
    expectErrno(() => v.addVdevice(0, 1), "ENOENT");
  });

  it("invalidation: the zero-length probe, type and size rules, per-entry errnos with handled, FLAG_ALL", () => {
    const { b, v } = rig();
    v.addVdevice(0, 0x99);
    const cache = b.deviceCache(0)!;
    expect(cache).toEqual([0xbaddad, 0xbaddad, 0xbaddad, 0xbaddad]);
    expect(v.invalidate([{ type: 0xdeadbeef, bytes: null }])).toBe(0);
    const fails = (entries: unknown[], code: string, handled: number) =>
      expect(() => v.invalidate(entries)).toThrow(expect.objectContaining({ code, details: { handled } }));
    fails([{ type: 0xdadbeef, bytes: null }], "EINVAL", 0);
    fails([inv(0, 0x99, 1), { type: 0xdadbeef, bytes: new Uint8Array(12) }], "EINVAL", 0);
    fails([inv(0, 0x99, 1, [1])], "E2BIG", 0);
    fails([inv(0, 0x99, 1), inv(2, 0x99, 0)], "EOPNOTSUPP", 1);
    expect(cache).toEqual([0xbaddad, 0, 0xbaddad, 0xbaddad]);
    fails([inv(0, 0x99, 4)], "EINVAL", 0);
    fails([inv(1, 0x99, 4)], "EINVAL", 0);
    fails([inv(0, 0x98, 0)], "EINVAL", 0);
    // A shorter entry is zero-extended (copy_struct_from_user): cache_id 0.
    expect(v.invalidate([{ type: 0xdeadbeef, bytes: inv(0, 0x99, 0).bytes.subarray(0, 8) }])).toBe(1);
    expect(cache).toEqual([0, 0, 0xbaddad, 0xbaddad]);
    expect(v.invalidate([inv(1, 0x99, 0, [0])])).toBe(1);
    expect(cache).toEqual([0, 0, 0, 0]);
    expect(b.deviceCache(1)).toEqual([0xbaddad, 0xbaddad, 0xbaddad, 0xbaddad]);
  });

  it("events: one sink per type; the selftest event carries the virt_id; no sink EOPNOTSUPP", () => {
    const { v } = rig();
    const got: Array<{ type: string; data: number[] }> = [];
    expectErrno(() => v.reportSelftest(0x99), "EOPNOTSUPP");
    v.setEventSink("selftest", (e) => got.push({ type: e.type, data: [...e.data] }));
    expectErrno(() => v.setEventSink("selftest", () => {}), "EEXIST");
    v.reportSelftest(0x1234);
    expect(got).toEqual([{ type: "selftest", data: [0x34, 0x12, 0, 0] }]);
    v.setEventSink("selftest", null);
    expectErrno(() => v.reportSelftest(1), "EOPNOTSUPP");
  });
});
