import { Access, NO_PASID } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { MDEV_VENDOR, MdevFaultCode, mdevFault } from "../../src/format/fault.ts";

describe("mdev fault records", () => {
  it.each([
    [MdevFaultCode.MDEV_UNMAPPED, "MDEV_UNMAPPED", "translation", true],
    [MdevFaultCode.MDEV_PERMISSION, "MDEV_PERMISSION", "permission", true],
    [MdevFaultCode.MDEV_BLOCKED, "MDEV_BLOCKED", "blocked", false],
    [MdevFaultCode.MDEV_BEYOND_APERTURE, "MDEV_BEYOND_APERTURE", "translation", true],
  ] as const)("code %d is %s, class %s, recorded %s", (code, name, cls, recorded) => {
    const f = mdevFault(code, 3, 7, 0xabc000, Access.WRITE);
    expect(f).toEqual({
      class: cls,
      recorded,
      vendor: {
        vendor: MDEV_VENDOR,
        code,
        name,
        fields: { rid: 3, pasid: 7, iova: "0xabc000", write: true, exec: false },
      },
    });
  });

  it("reports no PASID as null", () => {
    expect(mdevFault(1, 0, NO_PASID, 0, Access.READ | Access.EXEC).vendor.fields).toMatchObject({
      pasid: null,
      write: false,
      exec: true,
    });
  });
});
