import { createTestMemory } from "@iommu-kit/core/testing";
import { describe, expect, it } from "vitest";
import type { SmmuV3Backend } from "../src/index.ts";
import { capabilitiesOf, domainFormats, hwInfo, registersFor, smmuv3Backend } from "../src/index.ts";

function hwFor(config = {}) {
  const { memory } = createTestMemory();
  return (smmuv3Backend.fromRegisters!(memory, registersFor(config)) as SmmuV3Backend).hw;
}

describe("ID registers -> capabilities", () => {
  it("IDR0/IDR1/IDR5 of the default (most capable) SMMU", () => {
    const r = registersFor();
    expect(Number(r.IDR0! & 3n)).toBe(3); // S2P, S1P
    expect(Number((r.IDR0! >> 2n) & 3n)).toBe(2); // TTF = AArch64
    expect(Number((r.IDR0! >> 6n) & 3n)).toBe(2); // HTTU = access + dirty
    expect(Number((r.IDR0! >> 27n) & 3n)).toBe(1); // 2-level stream tables
    expect(Number(r.IDR1! & 0x3fn)).toBe(16); // SIDSIZE
    expect(Number((r.IDR1! >> 6n) & 0x1fn)).toBe(20); // SSIDSIZE
    expect(Number(r.IDR5! & 7n)).toBe(5); // OAS 48 bits
    expect(Number((r.IDR5! >> 4n) & 7n)).toBe(7); // 4K, 16K, 64K
    expect(smmuv3Backend.registerDefaults).toMatchObject({ IDR0: r.IDR0, IDR5: r.IDR5 });
  });

  it("formats follow the stages and granules; dirty tracking follows HTTU", () => {
    expect(domainFormats(hwFor({ stages: "s2", granules: ["64k"] }))).toEqual(["arm-lpae-s2-64k"]);
    expect(domainFormats(hwFor({ granules: ["16k"] }))).toEqual(["arm-lpae-s1-16k", "arm-lpae-s2-16k"]);
    const c = capabilitiesOf(hwFor({ oas: 52, granules: ["64k"] }), 4);
    expect(c).toMatchObject({
      maxPasidLog2: 4,
      outputAddressBits: 52,
      pageSizeBitmap: (1n << 16n) | (1n << 29n),
    });
    expect(c.features).toMatchObject({
      dirtyTracking: true,
      nesting: true,
      atsNotSupported: true,
      coherent: true,
    });
    expect(hwInfo(hwFor())).toMatchObject({ type: "arm-smmuv3", flags: 0, iidr: 0x43b, aidr: 2 });
  });

  it("the config schema lists every option with its default", () => {
    const props = (smmuv3Backend.configSchema as { properties: Record<string, { default?: unknown }> })
      .properties;
    expect(Object.keys(props).sort()).toEqual(
      [
        "cmdQueueLog2",
        "eventQueueLog2",
        "granules",
        "iotlbSizeLg2",
        "oas",
        "sidBits",
        "ssidBits",
        "stages",
        "stallMax",
        "stallModel",
        "streamTable",
      ].sort(),
    );
    expect(props.stages!.default).toBe("nested");
    expect(props.stallModel!.default).toBe("terminate");
  });
});
