import type { Domain } from "@iommu-kit/core";
import { Access, createTranslation, Intent, IommuError, NO_PASID, Perm } from "@iommu-kit/core";
import { createTestMemory, MockDomain, mockBackend } from "@iommu-kit/core/testing";
import { describe, expect, it } from "vitest";
import { MdevEmulatedBackend, mdevEmulatedBackend } from "../src/backend.ts";
import { EmulatedDomain } from "../src/domain.ts";
import { addMdev, fixture, PASID_PARENT, PLAIN_PARENT } from "./helpers.ts";

const K4 = 0x1000;
const RW = Perm.R | Perm.W;

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  return "none";
}

function emulated(f: ReturnType<typeof fixture>, flags = {}): EmulatedDomain {
  return f.mdev.allocDomain({ type: "paging", flags }) as EmulatedDomain;
}

function pasidDomain(f: ReturnType<typeof fixture>, rid: number): Domain {
  return f.mdev.allocDomain({ type: "paging", rid, flags: { pasid: true } });
}

describe("devices", () => {
  it("adds, refuses duplicates and bad rids, removes", () => {
    const f = fixture();
    addMdev(f, 7);
    expect(code(() => addMdev(f, 7))).toBe("EEXIST");
    expect(code(() => f.mdev.addDevice({ rid: -1, pasidBits: 0 }))).toBe("EINVAL");
    expect(code(() => f.mdev.addDevice({ rid: 1.5, pasidBits: 0 }))).toBe("EINVAL");
    expect(code(() => f.mdev.addDevice({ rid: 2 ** 32, pasidBits: 0 }))).toBe("EINVAL");
    f.mdev.removeDevice(7);
    expect(code(() => f.mdev.capabilities(7))).toBe("ENOENT");
    expect(code(() => f.mdev.removeDevice(7))).toBe("ENOENT");
  });

  it("refuses a parent the parent backend does not know (ENOENT) and itself as a parent", () => {
    const f = fixture();
    expect(code(() => addMdev(f, 1, 0x99))).toBe("ENOENT");
    expect(code(() => f.mdev.addDevice({ rid: 1, pasidBits: 0, parent: { backend: f.mdev, rid: 0 } }))).toBe(
      "EINVAL",
    );
    expect(code(() => f.mdev.capabilities(1))).toBe("ENOENT");
  });

  it("refuses to remove an attached mdev", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = emulated(f);
    f.mdev.attach(1, Intent.emulated, d);
    expect(code(() => f.mdev.removeDevice(1))).toBe("EBUSY");
    f.mdev.detach(1, Intent.emulated);
    const p = pasidDomain(f, 1);
    f.mdev.attach(1, Intent.autoPasid, p);
    expect(code(() => f.mdev.removeDevice(1))).toBe("EBUSY");
    f.mdev.detach(1, Intent.autoPasid);
    f.mdev.removeDevice(1);
  });

  it("reports no reserved regions", () => {
    const f = fixture();
    addMdev(f, 1);
    expect(f.mdev.reservedRegions(1)).toEqual([]);
    expect(code(() => f.mdev.reservedRegions(2))).toBe("ENOENT");
  });
});

describe("capabilities", () => {
  it("lists emulated and pasid on a PASID-capable parent, with the parent's width and formats", () => {
    const f = fixture();
    addMdev(f, 1, PASID_PARENT);
    const c = f.mdev.capabilities(1);
    expect(c.intents).toEqual(["emulated", "pasid"]);
    expect(c.maxPasidLog2).toBe(20);
    expect(c.pasidAssignment).toBe("backend");
    expect(c.formats).toEqual(["mdev-emulated", "mock-3lvl"]);
    expect(c.hwInfo).toEqual({ type: "none" });
    expect(c.pageSizeBitmap).toBe((1n << 12n) | (1n << 21n) | (1n << 30n));
    expect(c.inputAddressBits).toBe(48);
    expect(c.features.dirtyTracking).toBe(true);
    expect(c.features.pasidExec).toBe(true);
  });

  it("lists emulated only on a parent without PASIDs, or with no parent", () => {
    const f = fixture();
    addMdev(f, 1, PLAIN_PARENT);
    f.mdev.addDevice({ rid: 2, pasidBits: 20 });
    for (const rid of [1, 2]) {
      const c = f.mdev.capabilities(rid);
      expect(c.intents).toEqual(["emulated"]);
      expect(c.maxPasidLog2).toBe(0);
      expect(c.formats).toEqual(["mdev-emulated"]);
      expect(c.features.pasidExec).toBe(false);
    }
  });
});

describe("allocDomain", () => {
  it("allocates an emulated table without flags.pasid, with unique ids", () => {
    const f = fixture();
    const a = emulated(f);
    const b = f.mdev.allocDomain({ type: "paging", format: "mdev-emulated" });
    expect(a).toBeInstanceOf(EmulatedDomain);
    expect(a.format).toBe("mdev-emulated");
    expect(a.backend).toBe(f.mdev);
    expect(a.id).not.toBe(b.id);
    expect(a.aperture).toEqual({ start: 0, last: 2 ** 48 - 1 });
  });

  it("delegates flags.pasid to the parent backend", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = pasidDomain(f, 1);
    expect(d).toBeInstanceOf(MockDomain);
    expect(d.backend).toBe(f.parent);
    expect(d.flags.pasid).toBe(true);
  });

  it.each([
    ["nested", { type: "nested" as const, parent: null as unknown as Domain, data: null }],
    ["blocked", { type: "blocked" as const }],
    ["identity", { type: "identity" as const }],
    ["another format", { type: "paging" as const, format: "mock-3lvl" }],
    ["a nest parent", { type: "paging" as const, flags: { nestParent: true } }],
    ["pasid without rid", { type: "paging" as const, flags: { pasid: true } }],
  ])("refuses %s with EOPNOTSUPP", (_n, req) => {
    const f = fixture();
    expect(code(() => f.mdev.allocDomain(req))).toBe("EOPNOTSUPP");
  });

  it("refuses a PASID domain for an mdev whose parent has no PASIDs, or in the emulated format", () => {
    const f = fixture();
    addMdev(f, 1, PLAIN_PARENT);
    addMdev(f, 2, PASID_PARENT);
    expect(code(() => pasidDomain(f, 1))).toBe("EOPNOTSUPP");
    expect(
      code(() =>
        f.mdev.allocDomain({ type: "paging", rid: 2, format: "mdev-emulated", flags: { pasid: true } }),
      ),
    ).toBe("EOPNOTSUPP");
    expect(code(() => f.mdev.allocDomain({ type: "paging", rid: 9 }))).toBe("ENOENT");
  });
});

describe("emulated attach", () => {
  it("attaches, reports, detaches to blocked", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = emulated(f);
    d.map(0x1000, 0x2000, K4, RW);
    expect(f.mdev.attach(1, Intent.emulated, d)).toEqual({});
    expect(f.mdev.attached(1, Intent.emulated)).toBe(d);
    const out = createTranslation();
    expect(f.mdev.translate(1, NO_PASID, 0x1010, Access.READ, out)).toBe(true);
    expect(out.pa).toBe(0x2010);
    f.mdev.detach(1, Intent.emulated);
    f.mdev.detach(1, Intent.emulated);
    expect(f.mdev.attached(1, Intent.emulated)).toBeNull();
    expect(f.mdev.translate(1, NO_PASID, 0x1010, Access.READ, out)).toBe(false);
    expect(out.fault?.class).toBe("blocked");
    expect(out.fault?.vendor.name).toBe("MDEV_BLOCKED");
    expect(out.fault?.recorded).toBe(false);
  });

  it("refuses unlisted intents with EOPNOTSUPP and a domain of another backend with EINVAL", () => {
    const f = fixture();
    addMdev(f, 1, PLAIN_PARENT);
    const d = emulated(f);
    expect(code(() => f.mdev.attach(1, Intent.rid, d))).toBe("EOPNOTSUPP");
    expect(code(() => f.mdev.attach(1, Intent.ridAllPasids, d))).toBe("EOPNOTSUPP");
    expect(code(() => f.mdev.attach(1, Intent.autoPasid, d))).toBe("EOPNOTSUPP");
    const other = new MdevEmulatedBackend({ memory: f.memory, tables: f.tables, name: "other" });
    expect(code(() => f.mdev.attach(1, Intent.emulated, other.allocDomain({ type: "paging" })))).toBe(
      "EINVAL",
    );
    expect(code(() => f.mdev.attach(1, Intent.emulated, f.parent.allocDomain({ type: "paging" })))).toBe(
      "EINVAL",
    );
    d.free();
    expect(code(() => f.mdev.attach(1, Intent.emulated, d))).toBe("EINVAL");
    expect(f.mdev.attached(1, Intent.emulated)).toBeNull();
  });

  it("replace runs the unmap callback over the old table (iommufd_access_change_ioas)", () => {
    const f = fixture();
    addMdev(f, 1);
    const a = emulated(f);
    const b = emulated(f);
    a.map(0, 0x10_0000, 2 * K4, RW);
    f.mdev.attach(1, Intent.emulated, a);
    a.pin(0, 2 * K4, false);
    const calls: [number, number][] = [];
    f.mdev.setUnmapCallback(1, (iova, len) => {
      calls.push([iova, len]);
      a.unpin(0, 2 * K4);
    });
    f.mdev.attach(1, Intent.emulated, b);
    expect(calls).toEqual([[0, 2 ** 48]]);
    expect(a.pinCount()).toBe(0);
    expect(f.mdev.attached(1, Intent.emulated)).toBe(b);
    expect(a.users.size).toBe(0);
    a.free();
  });

  it("a replace or detach that leaves the mdev's pins is refused with EBUSY and keeps the old table", () => {
    const f = fixture();
    addMdev(f, 1);
    const a = emulated(f);
    const b = emulated(f);
    a.map(0, 0x10_0000, K4, RW);
    f.mdev.attach(1, Intent.emulated, a);
    a.pin(0, K4, true);
    f.mdev.setUnmapCallback(1, () => {});
    expect(code(() => f.mdev.attach(1, Intent.emulated, b))).toBe("EBUSY");
    expect(code(() => f.mdev.detach(1, Intent.emulated))).toBe("EBUSY");
    expect(f.mdev.attached(1, Intent.emulated)).toBe(a);
    expect(a.users.size).toBe(1);
    expect(b.users.size).toBe(0);
    f.mdev.setUnmapCallback(1, null);
    f.mdev.detach(1, Intent.emulated);
    expect(a.pinCount()).toBe(0);
  });

  it("replace without pins lets the old table go, so it can be freed", () => {
    const f = fixture();
    addMdev(f, 1);
    const a = emulated(f);
    const b = emulated(f);
    f.mdev.attach(1, Intent.emulated, a);
    f.mdev.attach(1, Intent.emulated, b);
    expect([a.users.size, b.users.size]).toEqual([0, 1]);
    a.free();
    expect(code(() => b.free())).toBe("EBUSY");
    f.mdev.detach(1, Intent.emulated);
    b.free();
  });

  it("two mdevs may share one table", () => {
    const f = fixture();
    addMdev(f, 1);
    addMdev(f, 2);
    const d = emulated(f);
    d.map(0, 0x5000, K4, Perm.R);
    f.mdev.attach(1, Intent.emulated, d);
    f.mdev.attach(2, Intent.emulated, d);
    const out = createTranslation();
    expect(f.mdev.translate(2, NO_PASID, 4, Access.READ, out) && out.pa).toBe(0x5004);
    f.mdev.detach(1, Intent.emulated);
    expect(f.mdev.translate(2, NO_PASID, 4, Access.READ, out) && out.pa).toBe(0x5004);
    expect(f.mdev.translate(1, NO_PASID, 4, Access.READ, out)).toBe(false);
  });
});

describe("PASID attach through the parent", () => {
  it("assigns the lowest free PASID >= 1 and attaches on (parent rid, PASID)", () => {
    const f = fixture();
    addMdev(f, 1);
    addMdev(f, 2);
    const d1 = pasidDomain(f, 1);
    const d2 = pasidDomain(f, 2);
    expect(f.mdev.attach(1, Intent.autoPasid, d1)).toEqual({ pasid: 1 });
    expect(f.mdev.attach(2, Intent.autoPasid, d2)).toEqual({ pasid: 2 });
    expect(f.mdev.assignedPasid(1)).toBe(1);
    expect(f.mdev.assignedPasid(2)).toBe(2);
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(1))).toBe(d1);
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(2))).toBe(d2);
    expect(f.mdev.attached(1, Intent.autoPasid)).toBe(d1);
    expect(f.mdev.attached(1, Intent.pasid(1))).toBe(d1);
    expect(f.mdev.attached(1, Intent.pasid(2))).toBeNull();
  });

  it("skips PASIDs the parent already has attached by others", () => {
    const f = fixture();
    addMdev(f, 1);
    const other = f.parent.allocDomain({ type: "paging", flags: { pasid: true } });
    f.parent.attach(PASID_PARENT, Intent.pasid(1), other);
    f.parent.attach(PASID_PARENT, Intent.pasid(2), other);
    expect(f.mdev.attach(1, Intent.autoPasid, pasidDomain(f, 1))).toEqual({ pasid: 3 });
  });

  it("releases the PASID on detach and reuses it", () => {
    const f = fixture();
    addMdev(f, 1);
    addMdev(f, 2);
    const d = pasidDomain(f, 1);
    f.mdev.attach(1, Intent.autoPasid, d);
    f.mdev.attach(2, Intent.autoPasid, pasidDomain(f, 2));
    f.mdev.detach(1, Intent.pasid(1));
    expect(f.mdev.assignedPasid(1)).toBeNull();
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(1))).toBeNull();
    expect(f.mdev.attached(1, Intent.autoPasid)).toBeNull();
    addMdev(f, 3);
    expect(f.mdev.attach(3, Intent.autoPasid, pasidDomain(f, 3))).toEqual({ pasid: 1 });
  });

  it("detach with another number or with nothing attached is harmless", () => {
    const f = fixture();
    addMdev(f, 1);
    f.mdev.detach(1, Intent.autoPasid);
    const d = pasidDomain(f, 1);
    f.mdev.attach(1, Intent.autoPasid, d);
    f.mdev.detach(1, Intent.pasid(5));
    f.mdev.detach(1, Intent.rid);
    expect(f.mdev.assignedPasid(1)).toBe(1);
    f.mdev.detach(1, Intent.autoPasid);
    expect(f.mdev.assignedPasid(1)).toBeNull();
  });

  it("replacing keeps the assigned PASID", () => {
    const f = fixture();
    addMdev(f, 1);
    const a = pasidDomain(f, 1);
    const b = pasidDomain(f, 1);
    expect(f.mdev.attach(1, Intent.autoPasid, a)).toEqual({ pasid: 1 });
    expect(f.mdev.attach(1, Intent.autoPasid, b)).toEqual({ pasid: 1 });
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(1))).toBe(b);
    expect(code(() => a.free())).toBe("none");
  });

  it("mdevs on different parents each start at PASID 1", () => {
    const mem = createTestMemory(2 ** 28, 2 ** 24);
    const p = mockBackend.create({ ...mem, name: "p" });
    p.addDevice({ rid: 1, pasidBits: 8 });
    p.addDevice({ rid: 2, pasidBits: 8 });
    const m = new MdevEmulatedBackend({ ...mem, name: "m" });
    m.addDevice({ rid: 10, pasidBits: 0, parent: { backend: p, rid: 1 } });
    m.addDevice({ rid: 20, pasidBits: 0, parent: { backend: p, rid: 2 } });
    const r1 = m.attach(
      10,
      Intent.autoPasid,
      m.allocDomain({ type: "paging", rid: 10, flags: { pasid: true } }),
    );
    const r2 = m.attach(
      20,
      Intent.autoPasid,
      m.allocDomain({ type: "paging", rid: 20, flags: { pasid: true } }),
    );
    expect([r1.pasid, r2.pasid]).toEqual([1, 1]);
    expect(m.capabilities(10).maxPasidLog2).toBe(8);
  });

  it("runs out of PASIDs with ENOSPC and changes nothing", () => {
    const mem = createTestMemory(2 ** 28, 2 ** 24);
    const p = mockBackend.create({ ...mem, name: "p" });
    p.addDevice({ rid: 1, pasidBits: 1 });
    const m = new MdevEmulatedBackend({ ...mem, name: "m" });
    m.addDevice({ rid: 10, pasidBits: 0, parent: { backend: p, rid: 1 } });
    m.addDevice({ rid: 11, pasidBits: 0, parent: { backend: p, rid: 1 } });
    expect(
      m.attach(10, Intent.autoPasid, m.allocDomain({ type: "paging", rid: 10, flags: { pasid: true } })),
    ).toEqual({
      pasid: 1,
    });
    const d = m.allocDomain({ type: "paging", rid: 11, flags: { pasid: true } });
    expect(code(() => m.attach(11, Intent.autoPasid, d))).toBe("ENOSPC");
    expect(m.assignedPasid(11)).toBeNull();
  });

  it("refuses an explicit PASID (EINVAL) and a domain not from the parent (EINVAL)", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = pasidDomain(f, 1);
    expect(code(() => f.mdev.attach(1, Intent.pasid(3), d))).toBe("EINVAL");
    expect(code(() => f.mdev.attach(1, Intent.autoPasid, emulated(f)))).toBe("EINVAL");
    expect(f.mdev.assignedPasid(1)).toBeNull();
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(1))).toBeNull();
  });

  it("translates PASID DMA through the parent; other PASIDs are blocked", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = pasidDomain(f, 1);
    d.map(0x40_0000, 0x80_0000, K4, RW);
    const { pasid } = f.mdev.attach(1, Intent.autoPasid, d);
    const out = createTranslation();
    expect(f.mdev.translate(1, pasid!, 0x40_0010, Access.WRITE, out)).toBe(true);
    expect(out.pa).toBe(0x80_0010);
    expect(f.mdev.translate(1, pasid! + 1, 0x40_0010, Access.READ, out)).toBe(false);
    expect(out.fault?.class).toBe("blocked");
    expect(out.fault?.vendor.fields.pasid).toBe(pasid! + 1);
    // The PASID does not leak into the emulated path.
    expect(f.mdev.translate(1, NO_PASID, 0x40_0010, Access.READ, out)).toBe(false);
    expect(out.fault?.class).toBe("blocked");
  });
});

describe("translate misuse and odd inputs", () => {
  it("an unknown rid is blocked, not an exception", () => {
    const f = fixture();
    const out = createTranslation();
    expect(f.mdev.translate(42, NO_PASID, 0, Access.READ, out)).toBe(false);
    expect(out.fault?.vendor).toMatchObject({ vendor: "mdev-emulated", code: 3, name: "MDEV_BLOCKED" });
    expect(out.fault?.vendor.fields.rid).toBe(42);
  });

  it("forgets a removed mdev: its rid no longer translates", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = emulated(f);
    d.map(0, 0x1000, K4, Perm.R);
    f.mdev.attach(1, Intent.emulated, d);
    const out = createTranslation();
    expect(f.mdev.translate(1, NO_PASID, 0, Access.READ, out)).toBe(true);
    f.mdev.detach(1, Intent.emulated);
    f.mdev.removeDevice(1);
    expect(f.mdev.translate(1, NO_PASID, 0, Access.READ, out)).toBe(false);
    expect(out.fault?.vendor.name).toBe("MDEV_BLOCKED");
    addMdev(f, 1);
    expect(f.mdev.translate(1, NO_PASID, 0, Access.READ, out)).toBe(false);
  });

  it("translateBig handles IOVAs at and above 2^53", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = emulated(f);
    d.map(0x3000, 0x9000, K4, Perm.R);
    f.mdev.attach(1, Intent.emulated, d);
    expect(f.mdev.translateBig(1, NO_PASID, 0x3004n, Access.READ)).toEqual({
      ok: true,
      pa: 0x9004,
      perm: Perm.R,
      sizeLg2: 12,
    });
    const big = f.mdev.translateBig(1, NO_PASID, 2n ** 60n, Access.READ);
    expect(big.ok).toBe(false);
    if (!big.ok) expect(big.fault.vendor.name).toBe("MDEV_BEYOND_APERTURE");
  });
});

describe("explain and dump", () => {
  it("explains an emulated walk and a blocked one", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = emulated(f);
    d.map(0x20_0000, 0x50_0000, K4, RW);
    expect(f.mdev.explain(1, NO_PASID, 0n, Access.READ)[0]?.note).toMatch(/blocked/);
    f.mdev.attach(1, Intent.emulated, d);
    const steps = f.mdev.explain(1, NO_PASID, 0x20_0123n, Access.READ);
    expect(steps.map((s) => s.what)).toEqual(["chunk directory", "page entry"]);
    expect(steps[0]?.index).toBe(1);
    expect(steps[1]?.index).toBe(0);
    expect(steps[1]?.note).toBe("page 4K -> 0x500123");
    expect(steps[1]?.fields).toMatchObject({ V: true, R: true, W: true, X: false, D: false, pa: "0x500000" });
    expect(f.mdev.explain(1, NO_PASID, 0x40_0000n, Access.READ)[0]?.note).toMatch(/MDEV_UNMAPPED/);
    expect(f.mdev.explain(1, NO_PASID, 2n ** 50n, Access.READ)[0]?.note).toMatch(/BEYOND/);
  });

  it("explains a PASID walk by handing over to the parent", () => {
    const f = fixture();
    addMdev(f, 1);
    const d = pasidDomain(f, 1);
    d.map(0, 0x10_0000, K4, RW);
    f.mdev.attach(1, Intent.autoPasid, d);
    const steps = f.mdev.explain(1, 1, 0x10n, Access.READ);
    expect(steps[0]?.note).toBe("PASID 1 -> parent parent rid 16");
    expect(steps.length).toBeGreaterThan(1);
    expect(f.mdev.explain(1, 2, 0x10n, Access.READ)[0]?.note).toMatch(/not assigned/);
  });

  it("dumps mdevs with their mappings as runs", () => {
    const f = fixture();
    addMdev(f, 1);
    addMdev(f, 2);
    const d = emulated(f);
    d.map(0, 0x10_0000, 2 * K4, RW);
    d.map(2 * K4, 0x30_0000, K4, Perm.R);
    f.mdev.attach(1, Intent.emulated, d);
    expect(f.mdev.dump(1)).toEqual({
      "1": {
        parent: { backend: "parent", rid: PASID_PARENT },
        pasid: null,
        emulated: {
          domain: d.id,
          mappings: [
            { iova: "0x0", pa: "0x100000", length: "0x2000", perm: 3 },
            { iova: "0x2000", pa: "0x300000", length: "0x1000", perm: 1 },
          ],
        },
      },
    });
    expect(Object.keys(f.mdev.dump() as object)).toEqual(["1", "2"]);
  });
});

describe("factory", () => {
  it("creates a backend named by the context and checks its config", () => {
    const mem = createTestMemory(2 ** 28, 2 ** 24);
    const b = mdevEmulatedBackend.create({ ...mem, name: "m0" });
    expect(b.kind).toBe("mdev-emulated");
    expect(b.name).toBe("m0");
    expect(mdevEmulatedBackend.name).toBe("mdev-emulated");
    expect(code(() => mdevEmulatedBackend.create({ ...mem, name: "x" }, { iotlbSizeLg2: 2 }))).toBe("EINVAL");
    expect(mdevEmulatedBackend.create({ ...mem, name: "y" }, { iotlbSizeLg2: 6 })).toBeInstanceOf(
      MdevEmulatedBackend,
    );
  });
});
