/**
 * An mdev's PASID on its parent: detach takes down only the domain the mdev put there
 * (iommu_detach_device_pasid names the domain it removes), and a PASID other than the
 * assigned one is blocked, whichever mdev of the same parent holds it.
 */

import { Access, createTranslation, Intent } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { addMdev, fixture, PASID_PARENT } from "./helpers.ts";

describe("PASID ownership on the parent", () => {
  it("detach leaves a domain the parent's driver put on the mdev's PASID since", () => {
    const f = fixture();
    addMdev(f, 1);
    const mine = f.mdev.allocDomain({ type: "paging", rid: 1, flags: { pasid: true } });
    const { pasid } = f.mdev.attach(1, Intent.autoPasid, mine);
    expect(pasid).toBe(1);
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(1))).toBe(mine);
    // The parent's own driver, below the host, attaches PASID 1 directly.
    const theirs = f.parent.allocDomain({ type: "paging", rid: PASID_PARENT, flags: { pasid: true } });
    f.parent.attach(PASID_PARENT, Intent.pasid(1), theirs);
    f.mdev.detach(1, Intent.autoPasid);
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(1))).toBe(theirs);
    expect(f.mdev.assignedPasid(1)).toBeNull();
  });

  it("detach removes the mdev's own domain from the parent", () => {
    const f = fixture();
    addMdev(f, 1);
    const mine = f.mdev.allocDomain({ type: "paging", rid: 1, flags: { pasid: true } });
    f.mdev.attach(1, Intent.autoPasid, mine);
    f.mdev.detach(1, Intent.autoPasid);
    expect(f.parent.attached(PASID_PARENT, Intent.pasid(1))).toBeNull();
  });

  it("a sibling's PASID is MDEV_BLOCKED for the other mdev", () => {
    const f = fixture();
    addMdev(f, 1);
    addMdev(f, 2);
    for (const rid of [1, 2]) {
      const d = f.mdev.allocDomain({ type: "paging", rid, flags: { pasid: true } });
      f.mdev.attach(rid, Intent.autoPasid, d);
    }
    expect([f.mdev.assignedPasid(1), f.mdev.assignedPasid(2)]).toEqual([1, 2]);
    const out = createTranslation();
    expect(f.mdev.translate(1, 2, 0x1000, Access.READ, out)).toBe(false);
    expect(out.fault).toMatchObject({
      class: "blocked",
      recorded: false,
      vendor: { vendor: "mdev-emulated", code: 3, name: "MDEV_BLOCKED", fields: { rid: 1, pasid: 2 } },
    });
  });
});
