import { describe, expect, it } from "vitest";
import {
  addressField,
  bits32,
  bits64,
  field,
  halves64,
  setBits32,
  setField,
  toBigInt64,
} from "../src/driver.ts";
import {
  Access,
  accessFlags,
  assertIntentAllowed,
  BackendRegistry,
  type Capabilities,
  defaultRegistry,
  Errno,
  hwCapFlags,
  hwCapNames,
  Intent,
  type IntentKind,
  IommuError,
  intentAllowed,
  Perm,
  pageSizeBitmap,
  pageSizesLg2,
  parsePerm,
  permNeeded,
  permString,
  sameIntent,
} from "../src/index.ts";
import { mockBackend } from "../src/testing/index.ts";

function caps(
  intents: IntentKind[],
  maxPasidLog2: number,
  pasidAssignment: "caller" | "backend" = "caller",
): Capabilities {
  return {
    intents,
    maxPasidLog2,
    pasidAssignment,
    inputAddressBits: 48,
    outputAddressBits: 48,
    pageSizeBitmap: pageSizeBitmap([12, 21, 30]),
    formats: ["x"],
    features: {
      dirtyTracking: true,
      pasidExec: true,
      pasidPriv: false,
      atsNotSupported: true,
      nesting: false,
      coherent: true,
    },
    hwInfo: { type: "none" },
  };
}

describe("intent checks", () => {
  const smmu = caps(["rid", "pasid", "rid-all-pasids"], 20);
  const plain = caps(["rid"], 0);
  const mdev = caps(["emulated", "pasid"], 20, "backend");
  const table: Array<[string, Capabilities, Parameters<typeof assertIntentAllowed>[1], string | null]> = [
    ["rid on a plain device", plain, Intent.rid, null],
    ["pasid on a device without PASIDs", plain, Intent.pasid(1), "EOPNOTSUPP"],
    ["rid-all-pasids on a plain device", plain, Intent.ridAllPasids, "EOPNOTSUPP"],
    ["emulated on a plain device", plain, Intent.emulated, "EOPNOTSUPP"],
    ["pasid 0 on smmu", smmu, Intent.pasid(0), null],
    ["pasid 2^20-1 on smmu", smmu, Intent.pasid(0xfffff), null],
    ["pasid 2^20 on smmu", smmu, Intent.pasid(0x100000), "EINVAL"],
    ["pasid -1 on smmu", smmu, Intent.pasid(-1), "EINVAL"],
    ["pasid 1.5 on smmu", smmu, Intent.pasid(1.5), "EINVAL"],
    ["auto pasid where the caller picks", smmu, Intent.autoPasid, "EINVAL"],
    ["rid-all-pasids on smmu", smmu, Intent.ridAllPasids, null],
    ["emulated on smmu", smmu, Intent.emulated, "EOPNOTSUPP"],
    ["rid on an mdev", mdev, Intent.rid, "EOPNOTSUPP"],
    ["auto pasid on an mdev", mdev, Intent.autoPasid, null],
    ["explicit pasid on an mdev", mdev, Intent.pasid(3), "EINVAL"],
    ["emulated on an mdev", mdev, Intent.emulated, null],
  ];
  for (const [name, c, intent, code] of table) {
    it(`${name}: ${code ?? "allowed"}`, () => {
      if (code === null) {
        expect(() => assertIntentAllowed(c, intent)).not.toThrow();
        expect(intentAllowed(c, intent)).toBe(true);
      } else {
        expect(() => assertIntentAllowed(c, intent)).toThrowError(IommuError);
        try {
          assertIntentAllowed(c, intent);
        } catch (e) {
          expect((e as IommuError).code).toBe(code);
          expect((e as IommuError).errno).toBe(Errno[code as keyof typeof Errno]);
        }
        expect(intentAllowed(c, intent)).toBe(false);
      }
    });
  }
  it("compares intents by kind and PASID", () => {
    expect(sameIntent(Intent.pasid(3), Intent.pasid(3))).toBe(true);
    expect(sameIntent(Intent.pasid(3), Intent.pasid(4))).toBe(false);
    expect(sameIntent(Intent.rid, Intent.ridAllPasids)).toBe(false);
  });
});

describe("capability flags (iommu_hw_info.out_capabilities)", () => {
  it("sets DIRTY_TRACKING=1, PASID_EXEC=2, PASID_PRIV=4, ATS_NOT_SUPPORTED=8", () => {
    expect(hwCapFlags(caps(["rid", "pasid"], 20))).toBe(1 | 2 | 8);
    expect(hwCapNames(caps(["rid", "pasid"], 20))).toEqual([
      "dirty_tracking",
      "pasid_exec",
      "ats_not_supported",
    ]);
    // PASID bits are meaningless when out_max_pasid_log2 == 0.
    expect(hwCapFlags(caps(["rid"], 0))).toBe(1 | 8);
  });
  it("converts page-size bitmaps", () => {
    expect(pageSizeBitmap([12, 21, 30])).toBe(0x4020_1000n);
    expect(pageSizesLg2(0x4020_1000n)).toEqual([12, 21, 30]);
  });
});

describe("access flags and permissions", () => {
  it("encodes requests and needs", () => {
    expect(accessFlags("read")).toBe(Access.READ);
    expect(accessFlags("write", true)).toBe(Access.WRITE | Access.PRIV);
    expect(accessFlags("exec")).toBe(Access.READ | Access.EXEC);
    expect(permNeeded(Access.WRITE)).toBe(Perm.W);
    expect(permNeeded(Access.READ | Access.EXEC)).toBe(Perm.R | Perm.X);
    expect(permString(Perm.R | Perm.X)).toBe("rx");
    expect(parsePerm("rw")).toBe(Perm.R | Perm.W);
    expect(() => parsePerm("rq")).toThrowError(/q/);
  });
});

describe("bit helpers", () => {
  it("extracts and sets fields on halves and bigints", () => {
    expect(bits32(0xf0f0_1234, 31, 28)).toBe(0xf);
    expect(bits32(0xffff_ffff, 31, 0)).toBe(0xffff_ffff);
    expect(bits32(0x8000_0000, 31, 1)).toBe(0x4000_0000);
    expect(setBits32(0, 31, 28, 0xa)).toBe(0xa000_0000);
    expect(bits64(0x8000_0000, 0x0000_0003, 33, 31)).toBe(0b111);
    expect(addressField(0x1234_5fff, 0xffff_0abc, 47, 12)).toBe(0x0abc_1234_5000);
    expect(field(0x1234_5678_9abc_def0n, 63, 48)).toBe(0x1234n);
    expect(setField(0n, 51, 12, 0xabcden)).toBe(0xab_cde0_00n);
    expect(halves64(0x1122_3344_5566_7788n)).toEqual([0x5566_7788, 0x1122_3344]);
    expect(toBigInt64(0x5566_7788, 0x1122_3344)).toBe(0x1122_3344_5566_7788n);
  });
});

describe("registry", () => {
  it("registers by name, refuses a different factory under a taken name, lists names", () => {
    const r = new BackendRegistry();
    r.register(mockBackend);
    r.register(mockBackend);
    expect(r.names()).toEqual(["mock"]);
    expect(r.get("mock")).toBe(mockBackend);
    expect(() => r.register({ ...mockBackend })).toThrowError(/EEXIST/);
    expect(() => r.get("nope")).toThrowError(/ENOENT.*registered: mock/);
    expect(() => r.register({ ...mockBackend, name: "Bad Name" })).toThrowError(/EINVAL/);
    expect(defaultRegistry).toBeInstanceOf(BackendRegistry);
  });
});

describe("intent checks against a reference predicate (property)", () => {
  it("allows exactly listed kinds with in-range, correctly assigned PASIDs", async () => {
    const fc = (await import("fast-check")).default;
    const kinds: IntentKind[] = ["rid", "pasid", "rid-all-pasids", "emulated"];
    fc.assert(
      fc.property(
        fc.subarray(kinds),
        fc.integer({ min: 0, max: 20 }),
        fc.constantFrom("caller" as const, "backend" as const),
        fc.constantFrom(...kinds),
        fc.oneof(fc.constant("auto" as const), fc.integer({ min: -2, max: 2 ** 21 })),
        (listed, width, assign, kind, pasid) => {
          const c = caps(listed, width, assign);
          const intent =
            kind === "pasid" ? { kind, pasid } : ({ kind } as Parameters<typeof intentAllowed>[1]);
          let want: string | null = null;
          if (!listed.includes(kind)) want = "EOPNOTSUPP";
          else if (kind === "pasid") {
            if (assign === "backend") want = pasid === "auto" ? null : "EINVAL";
            else want = pasid !== "auto" && pasid >= 0 && pasid < 2 ** width ? null : "EINVAL";
          }
          let got: string | null = null;
          try {
            assertIntentAllowed(c, intent);
          } catch (e) {
            got = (e as IommuError).code;
          }
          expect(got).toBe(want);
          expect(intentAllowed(c, intent)).toBe(want === null);
        },
      ),
      { numRuns: 500 },
    );
  });
});
