import type { Capabilities } from "@iommu-kit/core";
import { hwCapNames } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { MDEV_FORMAT, mdevCapabilities } from "../src/hw-info.ts";

const parent = (intents: Capabilities["intents"], maxPasidLog2: number, exec: boolean): Capabilities => ({
  intents,
  maxPasidLog2,
  pasidAssignment: "caller",
  inputAddressBits: 39,
  outputAddressBits: 52,
  pageSizeBitmap: 1n << 12n,
  formats: ["p-fmt-a", "p-fmt-b"],
  features: {
    dirtyTracking: false,
    pasidExec: exec,
    pasidPriv: false,
    atsNotSupported: false,
    nesting: true,
    coherent: false,
  },
  hwInfo: { type: "none" },
});

describe("mdev capabilities", () => {
  it("without a parent: emulated only, no PASIDs, no vendor registers", () => {
    const c = mdevCapabilities(null);
    expect(c.intents).toEqual(["emulated"]);
    expect(c.maxPasidLog2).toBe(0);
    expect(c.formats).toEqual([MDEV_FORMAT]);
    expect(c.hwInfo.type).toBe("none");
    expect(hwCapNames(c)).toEqual(["dirty_tracking", "ats_not_supported"]);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("with a PASID parent: the parent's width, PASID features and formats after ours", () => {
    const c = mdevCapabilities(parent(["rid", "pasid"], 16, true));
    expect(c.intents).toEqual(["emulated", "pasid"]);
    expect(c.maxPasidLog2).toBe(16);
    expect(c.pasidAssignment).toBe("backend");
    expect(c.formats).toEqual([MDEV_FORMAT, "p-fmt-a", "p-fmt-b"]);
    expect(c.features).toMatchObject({
      pasidExec: true,
      pasidPriv: false,
      nesting: false,
      dirtyTracking: true,
    });
  });

  it("a parent listing pasid with width 0, or not listing it, gives no pasid intent", () => {
    expect(mdevCapabilities(parent(["rid", "pasid"], 0, true)).intents).toEqual(["emulated"]);
    expect(mdevCapabilities(parent(["rid"], 20, true)).intents).toEqual(["emulated"]);
  });
});
