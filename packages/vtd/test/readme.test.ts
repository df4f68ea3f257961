/** The README's quick example, verbatim in behaviour. */

import { Access, createTranslation, Intent, Perm } from "@iommu-kit/core";
import { createTestMemory } from "@iommu-kit/core/testing";
import { describe, expect, it } from "vitest";
import { vtdBackend } from "../src/index.ts";

describe("README example", () => {
  it("maps a 2 MiB first-stage page for PASID 5 and faults PASID 6", () => {
    const { memory, tables } = createTestMemory();
    const vtd = vtdBackend.create({ memory, tables, name: "dmar0" }, { mode: "scalable" });
    vtd.addDevice({ rid: 0x0100, pasidBits: 20 });
    const dom = vtd.allocDomain({ type: "paging", format: "vtd-fs-4lvl" });
    dom.map(0x20_0000, 0x8000_0000, 0x20_0000, Perm.R | Perm.W);
    vtd.attach(0x0100, Intent.pasid(5), dom);
    const out = createTranslation();
    expect(vtd.translate(0x0100, 5, 0x20_1234, Access.WRITE, out)).toBe(true);
    expect(out.pa).toBe(0x8000_1234);
    expect(out.sizeLg2).toBe(21);
    expect(vtd.translate(0x0100, 6, 0x20_1234, Access.READ, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(0x59);
  });

  it("a page request answered Success, then the retry translates", () => {
    const { memory, tables } = createTestMemory();
    const vtd = vtdBackend.create({ memory, tables, name: "dmar0" }, { mode: "scalable" });
    vtd.addDevice({ rid: 0x0200, pasidBits: 20, ats: true, pri: true });
    const dom = vtd.allocDomain({ type: "paging", format: "vtd-fs-4lvl" });
    vtd.attach(0x0200, Intent.pasid(5), dom);
    const out = createTranslation();
    expect(vtd.translate(0x0200, 5, 0x40_0000, Access.WRITE, out)).toBe(false);
    expect(out.fault!.pageRequest!.grpid).toBe(0);
    dom.map(0x40_0000, 0x9000_0000, 0x1000, Perm.W);
    vtd.pageResponse!(out.fault!.pageRequest!, "success");
    expect(vtd.translate(0x0200, 5, 0x40_0000, Access.WRITE, out)).toBe(true);
    expect(out.pa).toBe(0x9000_0000);
  });
});
