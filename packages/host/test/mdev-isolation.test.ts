/**
 * Issue 15, mdev part: an mdev's PASID is its own (DMA, the parent's attach and the
 * parent's RID rules all honour it), and `addMdev` finds or refuses its backend.
 */

import { BackendRegistry } from "@iommu-kit/core";
import { mockBackend } from "@iommu-kit/core/testing";
import { mdevEmulatedBackend } from "@iommu-kit/mdev-emulated";
import { vtdBackend } from "@iommu-kit/vtd";
import { describe, expect, it } from "vitest";
import { Host } from "../src/index.ts";
import type { IopfMock } from "./helpers.ts";
import { expectErrno, mockHost, pattern } from "./helpers.ts";

/** A parent (m0 rid 0x10, 20-bit PASIDs), two mdevs a and b on it, each on its own IOAS by PASID. */
function siblings() {
  const h = mockHost();
  const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
  const a = h.addMdev({ parent });
  const b = h.addMdev({ parent });
  const ioasA = h.ioasAlloc();
  const ioasB = h.ioasAlloc();
  h.ioasMap(ioasA, { iova: 0x100000, length: 0x1000, pa: 0x800000, prot: "rw" });
  h.ioasMap(ioasB, { iova: 0x100000, length: 0x1000, pa: 0x900000, prot: "rw" });
  const hwA = h.hwptAlloc({ device: a, pt: ioasA, flags: ["pasid"] });
  const hwB = h.hwptAlloc({ device: b, pt: ioasB, flags: ["pasid"] });
  const pa = h.attach(a, { pasid: "auto" }, hwA).pasid!;
  const pb = h.attach(b, { pasid: "auto" }, hwB).pasid!;
  h.memWrite(0x900000, pattern(8, 0x40));
  return { h, parent, a, b, ioasA, ioasB, hwA, hwB, pa, pb };
}

/** The fault an mdev backend raises for a PASID it did not assign to that mdev (MDEV_BLOCKED, not recorded). */
function blocked(device: number, rid: number, pasid: number, access: "read" | "write") {
  return {
    device,
    pasid,
    iova: 0x100000,
    access,
    priv: false,
    class: "blocked",
    recorded: false,
    vendor: {
      vendor: "mdev-emulated",
      code: 3,
      name: "MDEV_BLOCKED",
      fields: { rid, pasid, iova: "0x100000", write: access === "write", exec: false },
    },
  };
}

describe("an mdev's DMA carries only its own PASID", () => {
  it("a sibling's PASID is blocked by the mdev backend: no read, no write, nothing moved", () => {
    const { h, a, pa, pb } = siblings();
    // The mdev backend's lowest free PASIDs (0 is never handed out).
    expect([pa, pb]).toEqual([1, 2]);
    // Its own PASID, named or implied, reaches its own table.
    expect(h.dma(a, { iova: 0x100000, access: "read", length: 4 })).toMatchObject({ ok: true, pa: 0x800000 });
    expect(h.dma(a, { pasid: pa, iova: 0x100000, access: "read", length: 4 })).toMatchObject({
      ok: true,
      pa: 0x800000,
    });
    const before = h.memRead(0x900000, 8);
    const r = h.dma(a, { pasid: pb, iova: 0x100000, access: "read", length: 8 });
    expect(r).toEqual({ ok: false, fault: blocked(a, 0, pb, "read") });
    const w = h.dma(a, { pasid: pb, iova: 0x100000, access: "write", data: pattern(8) });
    expect(w).toEqual({ ok: false, fault: blocked(a, 0, pb, "write") });
    expect(h.memRead(0x900000, 8)).toEqual(before);
    expect(h.faultsRead(a)).toEqual([blocked(a, 0, pb, "read"), blocked(a, 0, pb, "write")]);
  });

  it("dmaInto and explain route a sibling's PASID the same way (-1, blocked walk)", () => {
    const { h, a, pb } = siblings();
    const buf = new Uint8Array(8);
    expect(h.dmaInto(a, pb, 0x100000, 1, buf)).toBe(-1);
    expect(buf).toEqual(new Uint8Array(8));
    expect(h.faultsRead(a)).toEqual([blocked(a, 0, pb, "read")]);
    expect(h.explain(a, { pasid: pb, iova: 0x100000, access: "read" })).toEqual([
      { what: "mdev", address: null, note: `blocked: PASID ${pb} is not assigned to mdev 0` },
    ]);
  });

  it("an mdev with no PASID (emulated only) cannot borrow a sibling's PASID either", () => {
    const { h, parent, ioasA, pb } = siblings();
    const c = h.addMdev({ parent });
    h.attach(c, "emulated", ioasA);
    expect(h.dma(c, { iova: 0x100000, access: "read", length: 1 })).toMatchObject({ ok: true, pa: 0x800000 });
    expect(h.dma(c, { pasid: pb, iova: 0x100000, access: "read", length: 8 })).toEqual({
      ok: false,
      fault: blocked(c, 2, pb, "read"),
    });
  });
});

describe("an mdev's PASID is recorded on its parent", () => {
  it("the parent's attach of an mdev's PASID is EBUSY (iommu_attach_device_pasid) and changes nothing", () => {
    const { h, parent, a, ioasB, pa } = siblings();
    const hwP = h.hwptAlloc({ device: parent, pt: ioasB, flags: ["pasid"] });
    const before = h.state();
    expectErrno(() => h.attach(parent, { pasid: pa }, hwP), "EBUSY");
    expect(h.state()).toEqual(before);
    // Replace of a PASID the parent never attached stays EINVAL (iommufd_device_do_replace).
    expectErrno(() => h.replace(parent, { pasid: pa }, hwP), "EINVAL");
    expect(h.state()).toEqual(before);
    // The mdev still reaches its own memory with that PASID.
    expect(h.dma(a, { iova: 0x100000, access: "read", length: 1 })).toMatchObject({ ok: true, pa: 0x800000 });
    // Once the mdev lets go, the PASID is the parent's to take.
    h.detach(a, { pasid: "auto" });
    expect(h.attach(parent, { pasid: pa }, hwP)).toEqual({ hwpt: hwP, pasid: pa });
    expect(h.dma(parent, { pasid: pa, iova: 0x100000, access: "read", length: 1 })).toMatchObject({
      ok: true,
      pa: 0x900000,
    });
  });

  it("detaching an mdev leaves the parent's own PASIDs attached", () => {
    const { h, parent, a, b, ioasB, pb } = siblings();
    const hwP = h.hwptAlloc({ device: parent, pt: ioasB, flags: ["pasid"] });
    h.attach(parent, { pasid: 7 }, hwP);
    h.detach(a, { pasid: "auto" });
    h.detach(a, { pasid: 7 });
    expect(h.describe(parent)).toMatchObject({ pasids: [[7, hwP]] });
    expect(h.dma(parent, { pasid: 7, iova: 0x100000, access: "read", length: 1 })).toMatchObject({
      ok: true,
      pa: 0x900000,
    });
    expect(h.dma(b, { pasid: pb, iova: 0x100000, access: "read", length: 1 })).toMatchObject({
      ok: true,
      pa: 0x900000,
    });
  });

  it("a new mdev never gets a PASID the parent holds", () => {
    const h = mockHost();
    const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
    const ioas = h.ioasAlloc();
    const hwP = h.hwptAlloc({ device: parent, pt: ioas, flags: ["pasid"] });
    h.attach(parent, { pasid: 1 }, hwP);
    const m = h.addMdev({ parent });
    const hwM = h.hwptAlloc({ device: m, pt: ioas, flags: ["pasid"] });
    expect(h.attach(m, { pasid: "auto" }, hwM)).toEqual({ hwpt: hwM, pasid: 2 });
  });
});

describe("iommufd_hwpt_pasid_compat covers mdev PASIDs against the parent's RID", () => {
  it("the parent's RID cannot take a HWPT without the pasid flag while an mdev holds a PASID (EINVAL)", () => {
    const { h, parent, ioasA } = siblings();
    const plain = h.hwptAlloc({ device: parent, pt: ioasA });
    const before = h.state();
    expectErrno(() => h.attach(parent, "rid", plain), "EINVAL");
    expect(h.state()).toEqual(before);
    // An IOAS gets a PASID-capable automatic HWPT instead.
    const { hwpt } = h.attach(parent, "rid", ioasA);
    expect(hwpt).not.toBe(plain);
    expect(h.describe(hwpt)).toMatchObject({ kind: "hwpt-paging", auto: true, flags: { pasid: true } });
    expectErrno(() => h.replace(parent, "rid", plain), "EINVAL");
  });

  it("an mdev's PASID attach is EINVAL while the parent's RID HWPT lacks the pasid flag", () => {
    const h = mockHost();
    const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
    const m = h.addMdev({ parent });
    const ioas = h.ioasAlloc();
    const plain = h.hwptAlloc({ device: parent, pt: ioas });
    h.attach(parent, "rid", plain);
    const hwM = h.hwptAlloc({ device: m, pt: ioas, flags: ["pasid"] });
    const before = h.state();
    expectErrno(() => h.attach(m, { pasid: "auto" }, hwM), "EINVAL");
    expect(h.state()).toEqual(before);
    // With a PASID-capable RID HWPT it goes through.
    const capable = h.hwptAlloc({ device: parent, pt: ioas, flags: ["pasid"] });
    h.replace(parent, "rid", capable);
    expect(h.attach(m, { pasid: "auto" }, hwM)).toEqual({ hwpt: hwM, pasid: 1 });
  });
});

describe("Host.addMdev finds its backend", () => {
  function bareHost(): Host {
    const registry = new BackendRegistry();
    registry.register(mockBackend);
    registry.register(vtdBackend);
    const h = new Host({
      ram: [{ base: 0, size: 2 ** 30 }],
      tables: { base: 2 ** 30, size: 2 ** 26 },
      registry,
    });
    h.addIommu("m0", "mock");
    return h;
  }

  it("without iommu and with mdev-emulated never loaded, it registers and creates the built-in one", () => {
    const h = bareHost();
    expect(h.registry.has("mdev-emulated")).toBe(false);
    const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
    const m = h.addMdev({ parent });
    expect(h.registry.get("mdev-emulated")).toBe(mdevEmulatedBackend);
    expect(h.iommus()).toEqual([
      { name: "m0", backend: "mock" },
      { name: "mdev", backend: "mdev-emulated" },
    ]);
    expect(h.describe(m)).toMatchObject({ kind: "device", iommu: "mdev", rid: 0, parent });
    expect(h.hwInfo(m).intents).toEqual(["emulated", "pasid"]);
  });

  it("a failed addMdev leaves no registration and no instance behind", () => {
    const h = bareHost();
    const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
    const before = h.state();
    expectErrno(() => h.addMdev({ parent, rid: -1 }), "EINVAL");
    expect(h.state()).toEqual(before);
    expect(h.registry.has("mdev-emulated")).toBe(false);
  });

  it("an iommu that names a non-mdev backend (a VT-d unit, a mock) is EINVAL and changes nothing", () => {
    const h = bareHost();
    h.addIommu("dmar0", "vtd");
    const parent = h.addDevice({ iommu: "m0", rid: 0x10, pasidBits: 20 });
    const before = h.state();
    expectErrno(() => h.addMdev({ parent, iommu: "dmar0" }), "EINVAL");
    expectErrno(() => h.addMdev({ parent, iommu: "m0" }), "EINVAL");
    expect(h.state()).toEqual(before);
    expectErrno(() => h.addMdev({ parent, iommu: "nope" }), "ENOENT");
  });
});

describe("faults on an mdev's PASID", () => {
  it("page requests go to the mdev's HWPT fault queue, whether the mdev or its parent issued them", () => {
    // The FAULT object carries page requests only (iommufd_fault_iopf_handler): a
    // parent IOMMU whose faults are page requests.
    const h = mockHost();
    h.addIommu("p0", "mock-iopf");
    const parent = h.addDevice({ iommu: "p0", rid: 0x10, pasidBits: 20 });
    const m = h.addMdev({ parent });
    const ioas = h.ioasAlloc();
    const fqRid = h.faultQueueAlloc();
    const fqM = h.faultQueueAlloc();
    h.attach(parent, "rid", h.hwptAlloc({ device: parent, pt: ioas, flags: ["pasid"], faultQueue: fqRid }));
    const hwM = h.hwptAlloc({ device: m, pt: ioas, flags: ["pasid"], faultQueue: fqM });
    const { pasid } = h.attach(m, { pasid: "auto" }, hwM);
    expect(h.dma(m, { iova: 0x5000, access: "read", length: 1 })).toMatchObject({ pending: true, cookie: 1 });
    expect(h.dma(parent, { pasid: pasid!, iova: 0x6000, access: "read", length: 1 })).toMatchObject({
      pending: true,
      cookie: 2,
    });
    // flags PASID_VALID | LAST_PAGE; perm READ.
    expect(h.faultQueueRead(fqM)).toEqual([
      { flags: 3, devId: m, pasid, grpid: 0, perm: 1, addr: 0x5000, length: 0, cookie: 1 },
      { flags: 3, devId: parent, pasid, grpid: 1, perm: 1, addr: 0x6000, length: 0, cookie: 2 },
    ]);
    expect(h.faultQueueRead(fqRid)).toEqual([]);
    // The mdev's detach answers both Invalid, the one its parent issued too
    // (iommufd_auto_response_faults matches the attach handle, the mdev's).
    h.detach(m, { pasid: "auto" });
    expect(h.describe(fqM)).toEqual({ id: fqM, kind: "fault", pending: 0, outstanding: [] });
    expectErrno(() => h.faultRespond(fqM, { cookie: 2, code: "success" }), "EINVAL");
    expect((h.iommu("p0") as IopfMock).responses).toEqual([
      { grpid: 0, code: "invalid" },
      { grpid: 1, code: "invalid" },
    ]);
  });
});
