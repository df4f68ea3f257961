/**
 * Scenario options of an SMMUv3 instance and the registers they give (ARM IHI 0070
 * 6.3.1-6.3.6: what IDR0/IDR1/IDR3/IDR5 say a most-capable SMMU implements), with the
 * checks a backend factory applies to user-supplied options, and the errors every
 * driver-side room raises for misuse.
 */

import { IommuError } from "@iommu-kit/core";
import { paEncoding } from "./format/registers.ts";

/** Scenario configuration of an SMMUv3 instance (every field optional; omitted = most capable). */
export interface SmmuV3Config {
  /** Translation stages implemented: "s1", "s2" or "nested" (both; default). */
  readonly stages?: "s1" | "s2" | "nested";
  /** SSIDSIZE (0..20, default 20). */
  readonly ssidBits?: number;
  /** SIDSIZE (1..32, default 16). */
  readonly sidBits?: number;
  /** Stream table format the driver uses (default "2level"). */
  readonly streamTable?: "linear" | "2level";
  /** Output address size in bits: 32, 36, 40, 42, 44, 48 or 52 (default 48). */
  readonly oas?: number;
  /** Translation granules (default all three). */
  readonly granules?: readonly ("4k" | "16k" | "64k")[];
  /** log2 entries of the event queue (default 7). */
  readonly eventQueueLog2?: number;
  /** log2 entries of the command queue (default 8). */
  readonly cmdQueueLog2?: number;
  /** log2 slots of the IOTLB (default 14). */
  readonly iotlbSizeLg2?: number;
  /**
   * IDR0.STALL_MODEL (6.3.1, 3.12): "terminate" (0b01, default: stalls not supported),
   * "both" (0b00: stall and terminate, chosen per CD.S / STE.S1STALLD) or "stall" (0b10:
   * stalls forced, CD.S = 0 ILLEGAL).
   */
  readonly stallModel?: "terminate" | "both" | "stall";
  /** IDR5.STALL_MAX (6.3.6): stalled transactions the SMMU can hold (1..65535, default 32; RES0 for "terminate"). */
  readonly stallMax?: number;
}

/** IDR0.STALL_MODEL encodings of {@link SmmuV3Config.stallModel}. */
const STALL_MODELS = { both: 0, terminate: 1, stall: 2 } as const;

/** JSON Schema of {@link SmmuV3Config}. */
export const SMMUV3_CONFIG_SCHEMA: Readonly<Record<string, unknown>> = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  properties: {
    stages: { enum: ["s1", "s2", "nested"], default: "nested" },
    ssidBits: { type: "integer", minimum: 0, maximum: 20, default: 20 },
    sidBits: { type: "integer", minimum: 1, maximum: 32, default: 16 },
    streamTable: { enum: ["linear", "2level"], default: "2level" },
    oas: { enum: [32, 36, 40, 42, 44, 48, 52], default: 48 },
    granules: { type: "array", items: { enum: ["4k", "16k", "64k"] }, minItems: 1, uniqueItems: true },
    eventQueueLog2: { type: "integer", minimum: 1, maximum: 19, default: 7 },
    cmdQueueLog2: { type: "integer", minimum: 1, maximum: 19, default: 8 },
    iotlbSizeLg2: { type: "integer", minimum: 4, maximum: 24, default: 14 },
    stallModel: { enum: ["terminate", "both", "stall"], default: "terminate" },
    stallMax: { type: "integer", minimum: 1, maximum: 65535, default: 32 },
  },
};

/** An `IommuError` for misuse (the errno names the kind). */
export function bad(
  code: "EINVAL" | "EOPNOTSUPP" | "EBUSY" | "ENOENT" | "EEXIST" | "EIO" | "ERANGE",
  msg: string,
  details = {},
): IommuError {
  return new IommuError(code, msg, details);
}

/** Register values of a most-capable SMMUv3 for a config (also `registerDefaults`). */
export function registersFor(config: SmmuV3Config = {}): Record<string, bigint> {
  const stages = config.stages ?? "nested";
  const s1 = stages !== "s2";
  const s2 = stages !== "s1";
  const gr = config.granules ?? ["4k", "16k", "64k"];
  const stallModel = STALL_MODELS[config.stallModel ?? "terminate"];
  // IDR0 (6.3.1): S2P, S1P, TTF=AArch64, COHACC, HTTU=A+D, ASID16, VMID16, CD2L, TTENDIAN=LE, STALL_MODEL, ST_LEVEL=2-level.
  const idr0 =
    (s2 ? 1 : 0) |
    (s1 ? 2 : 0) |
    (2 << 2) |
    (1 << 4) |
    (2 << 6) |
    (1 << 12) |
    (1 << 18) |
    (1 << 19) |
    (2 << 21) |
    (stallModel << 24) |
    (1 << 27);
  const idr1 = (config.sidBits ?? 16) | ((s1 ? (config.ssidBits ?? 20) : 0) << 6) | (19 << 16) | (19 << 21);
  const idr3 = (1 << 2) | (1 << 10); // HAD, RIL
  const idr5 =
    paEncoding(config.oas ?? 48) |
    (gr.includes("4k") ? 1 << 4 : 0) |
    (gr.includes("16k") ? 1 << 5 : 0) |
    (gr.includes("64k") ? 1 << 6 : 0) |
    // STALL_MAX [31:16] is RES0 when STALL_MODEL == 0b01 (6.3.6).
    (stallModel === 1 ? 0 : (config.stallMax ?? 32) << 16);
  return {
    IDR0: BigInt(idr0 >>> 0),
    IDR1: BigInt(idr1 >>> 0),
    IDR2: 0n,
    IDR3: BigInt(idr3),
    IDR4: 0n,
    IDR5: BigInt(idr5 >>> 0),
    IIDR: 0x43bn, // Implementer = ARM (JEP106 0x43B)
    AIDR: 0x02n, // SMMUv3.2
    CR0: 0n,
    CR1: 0n,
    CR2: 0n,
    GBPA: 0n,
    STRTAB_BASE: 0n,
    STRTAB_BASE_CFG: 0n,
  };
}

/** Validates user options (EINVAL naming the field). */
export function checkConfig(config: unknown): SmmuV3Config {
  if (config === undefined || config === null) return {};
  if (typeof config !== "object") throw bad("EINVAL", "smmuv3 config must be an object");
  const c = config as Record<string, unknown>;
  const known = Object.keys((SMMUV3_CONFIG_SCHEMA.properties as Record<string, unknown>) ?? {});
  for (const k of Object.keys(c))
    if (!known.includes(k)) throw bad("EINVAL", `unknown smmuv3 config field ${k}`, { field: k });
  const int = (k: string, lo: number, hi: number): void => {
    const v = c[k];
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi))
      throw bad("EINVAL", `smmuv3 config ${k} must be an integer in [${lo}, ${hi}]`, { field: k });
  };
  int("ssidBits", 0, 20);
  int("sidBits", 1, 32);
  int("eventQueueLog2", 1, 19);
  int("cmdQueueLog2", 1, 19);
  int("iotlbSizeLg2", 4, 24);
  int("stallMax", 1, 65535);
  if (c.stallModel !== undefined && !["terminate", "both", "stall"].includes(c.stallModel as string))
    throw bad("EINVAL", "bad stallModel", { field: "stallModel" });
  if (c.stages !== undefined && !["s1", "s2", "nested"].includes(c.stages as string))
    throw bad("EINVAL", "bad stages");
  if (c.streamTable !== undefined && !["linear", "2level"].includes(c.streamTable as string))
    throw bad("EINVAL", "bad streamTable");
  if (c.oas !== undefined && ![32, 36, 40, 42, 44, 48, 52].includes(c.oas as number))
    throw bad("EINVAL", "bad oas");
  if (c.granules !== undefined) {
    const g = c.granules;
    if (!Array.isArray(g) || g.length === 0 || g.some((x) => !["4k", "16k", "64k"].includes(x as string)))
      throw bad("EINVAL", "bad granules");
  }
  return c as SmmuV3Config;
}
