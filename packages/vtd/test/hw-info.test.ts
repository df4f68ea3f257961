/** Config validation, CAP/ECAP per config, and the capability report. */

import { describe, expect, it } from "vitest";
import { decodeCap, decodeEcap } from "../src/format/registers.ts";
import { capabilitiesFor, formatsFor, pageSizesFor, registersFor, resolveConfig } from "../src/hw-info.ts";

function unit(config: Record<string, unknown>) {
  const { cap, ecap } = registersFor(resolveConfig(config));
  return { cap: decodeCap(cap), ecap: decodeEcap(ecap), capReg: cap, ecapReg: ecap };
}

describe("resolveConfig", () => {
  it("defaults to the most capable scalable-mode unit", () => {
    expect(resolveConfig(undefined)).toEqual({
      scalable: true,
      pasidBits: 20,
      firstStage: true,
      secondStage: true,
      nesting: true,
      sagaw: 12,
      haw: 52,
      fs5lp: true,
      iotlbSizeLg2: 12,
      faultRecords: 8,
      cachingMode: false,
      dirtyTracking: true,
      pageRequests: true,
    });
  });

  it("names the offending field", () => {
    expect(() => resolveConfig({ mode: "turbo" })).toThrow(/mode/);
    expect(() => resolveConfig({ pasidBits: 0 })).toThrow(/pasidBits/);
    expect(() => resolveConfig({ nesting: "yes" })).toThrow(/nesting/);
    expect(() => resolveConfig({ sagaw: 0b10001 })).toThrow(/sagaw/);
    expect(() => resolveConfig({ extra: 1 })).toThrow(/unknown field extra/);
    expect(() => resolveConfig([])).toThrow(/object/);
  });
});

describe("registers per config", () => {
  it("MGAW follows the deepest SAGAW level; PSS = pasidBits - 1", () => {
    expect(unit({ sagaw: 0b0010 }).cap.mgaw).toBe(39);
    expect(unit({ sagaw: 0b0110 }).cap.mgaw).toBe(48);
    expect(unit({}).cap.mgaw).toBe(57);
    expect(unit({ pasidBits: 8 }).ecap.pss).toBe(7);
  });

  it("feature switches clear their ECAP bits", () => {
    expect(unit({ firstStage: false }).ecap).toMatchObject({ fsts: false, nest: false, eafs: false });
    expect(unit({ firstStage: false }).cap.fs5lp).toBe(false);
    expect(unit({ nesting: false }).ecap.nest).toBe(false);
    expect(unit({ dirtyTracking: false }).ecap.ssads).toBe(false);
    expect(unit({ cachingMode: true }).cap.cm).toBe(true);
    expect(unit({ faultRecords: 1 }).cap.nfr).toBe(1);
    // ECAP.PRS is bit 29: the only bit pageRequests: false clears.
    expect(unit({}).ecapReg ^ unit({ pageRequests: false }).ecapReg).toBe(1n << 29n);
    expect(() => resolveConfig({ pageRequests: 1 })).toThrow(/pageRequests/);
  });
});

describe("formats and page sizes", () => {
  it("default second-stage 4-level first, then the others the unit has", () => {
    const u = unit({ sagaw: 0b1110 });
    expect(formatsFor(u.cap, u.ecap, true)).toEqual([
      "vtd-ss-4lvl",
      "vtd-ss-3lvl",
      "vtd-ss-5lvl",
      "vtd-fs-4lvl",
      "vtd-fs-5lvl",
    ]);
    const noSs = unit({ secondStage: false });
    expect(formatsFor(noSs.cap, noSs.ecap, true)).toEqual(["vtd-fs-4lvl", "vtd-fs-5lvl"]);
    const legacy = unit({ mode: "legacy", sagaw: 0b0010 });
    expect(formatsFor(legacy.cap, legacy.ecap, false)).toEqual(["vtd-ss-3lvl"]);
  });

  it("second stage follows SLLPS, first stage has 2M always and 1G with FS1GP", () => {
    const u = unit({});
    expect(pageSizesFor("vtd-ss-4lvl", u.cap)).toEqual([12, 21, 30]);
    expect(pageSizesFor("vtd-fs-4lvl", { ...u.cap, fs1gp: false })).toEqual([12, 21]);
    expect(pageSizesFor("vtd-ss-4lvl", { ...u.cap, sllps: 1 })).toEqual([12, 21]);
  });
});

describe("capabilitiesFor", () => {
  it("ATS and PASID features follow the device and the unit", () => {
    const u = unit({});
    const c = capabilitiesFor(u.cap, u.ecap, u.capReg, u.ecapReg, 48, true, { pasidBits: 16, ats: true });
    expect(c).toMatchObject({ maxPasidLog2: 16, inputAddressBits: 57, outputAddressBits: 48 });
    expect(c.features).toEqual({
      dirtyTracking: true,
      pasidExec: true,
      pasidPriv: true,
      atsNotSupported: false,
      nesting: true,
      coherent: true,
      iopf: false,
    });
    const legacy = unit({ mode: "legacy", sagaw: 0b0100 });
    const l = capabilitiesFor(legacy.cap, legacy.ecap, legacy.capReg, legacy.ecapReg, 46, false, {
      pasidBits: 16,
    });
    expect(l).toMatchObject({ intents: ["rid"], maxPasidLog2: 0, inputAddressBits: 48 });
    expect(l.features.nesting).toBe(false);
    expect(l.features.dirtyTracking).toBe(false);
  });

  it("iopf: ECAP.PRS (with DT) and a device with ATS, PRI and PASID (intel_iommu_probe_device 6.15)", () => {
    const u = unit({});
    const iopf = (spec: { pasidBits: number; ats?: boolean; pri?: boolean }, v = u, sm = true): boolean =>
      capabilitiesFor(v.cap, v.ecap, v.capReg, v.ecapReg, 48, sm, spec).features.iopf === true;
    expect(iopf({ pasidBits: 20, ats: true, pri: true })).toBe(true);
    expect(iopf({ pasidBits: 20, ats: true })).toBe(false);
    expect(iopf({ pasidBits: 20, pri: true })).toBe(false);
    expect(iopf({ pasidBits: 0, ats: true, pri: true })).toBe(false);
    expect(iopf({ pasidBits: 20, ats: true, pri: true }, unit({ pageRequests: false }))).toBe(false);
    const legacy = unit({ mode: "legacy" });
    expect(iopf({ pasidBits: 20, ats: true, pri: true }, legacy, false)).toBe(false);
    // DT clear: no ATS, so no PRI either.
    const noDt = { ...u, ecap: { ...u.ecap, dt: false } };
    expect(iopf({ pasidBits: 20, ats: true, pri: true }, noDt)).toBe(false);
    expect(
      capabilitiesFor(u.cap, u.ecap, u.capReg, u.ecapReg, 48, true, { pasidBits: 20 }).features.viommuTypes,
    ).toBe(undefined);
  });
});
