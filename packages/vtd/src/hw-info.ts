/**
 * Configuration -> CAP_REG / ECAP_REG values, and CAP/ECAP -> the capability report
 * iommufd's IOMMU_GET_HW_INFO gives (struct iommu_hw_info_vtd carries the raw
 * registers). Intel VT-d spec 11.4.2-11.4.3; Linux drivers/iommu/intel/iommu.c
 * intel_iommu_hw_info and the ecap_/cap_ macros.
 */

import type { Capabilities, DeviceSpec, IntentKind } from "@iommu-kit/core";
import { IommuError, pageSizeBitmap } from "@iommu-kit/core";
import type { CapFields, EcapFields } from "./format/registers.ts";
import { encodeCap, encodeEcap } from "./format/registers.ts";

/** The scenario `config` of a VT-d backend (every field optional; omitted = most capable). */
export interface VtdConfig {
  /** Translation table mode the driver programs (default "scalable"). */
  readonly mode?: "scalable" | "legacy";
  /** PASID width of the unit, 1-20 (default 20; ECAP.PSS = pasidBits - 1). */
  readonly pasidBits?: number;
  /** First-stage translation (ECAP.FSTS, default true; scalable mode only). */
  readonly firstStage?: boolean;
  /** Second-stage translation in scalable mode (ECAP.SSTS, default true). */
  readonly secondStage?: boolean;
  /** Nested translation (ECAP.NEST, default true). */
  readonly nesting?: boolean;
  /** CAP.SAGAW: bit 1 = 3-level, bit 2 = 4-level, bit 3 = 5-level (default 0b1100). */
  readonly sagaw?: number;
  /** Host address width in bits, 39-52 (default 52). */
  readonly haw?: number;
  /** First-stage 5-level paging (CAP.FS5LP, default true). */
  readonly fs5lp?: boolean;
  /** log2 of IOTLB slots (default 12). */
  readonly iotlbSizeLg2?: number;
  /** Number of fault recording registers, 1-256 (default 8). */
  readonly faultRecords?: number;
  /** CAP.CM: caching mode (default false). */
  readonly cachingMode?: boolean;
  /** ECAP.SSADS: second-stage accessed/dirty (dirty tracking; default true). */
  readonly dirtyTracking?: boolean;
  /** ECAP.PRS: page requests through the page request queue (default true; scalable mode only). */
  readonly pageRequests?: boolean;
}

/** JSON Schema of {@link VtdConfig}. */
export const vtdConfigSchema: Readonly<Record<string, unknown>> = {
  type: "object",
  additionalProperties: false,
  properties: {
    mode: { enum: ["scalable", "legacy"], default: "scalable" },
    pasidBits: { type: "integer", minimum: 1, maximum: 20, default: 20 },
    firstStage: { type: "boolean", default: true },
    secondStage: { type: "boolean", default: true },
    nesting: { type: "boolean", default: true },
    sagaw: { type: "integer", minimum: 2, maximum: 14, default: 12 },
    haw: { type: "integer", minimum: 39, maximum: 52, default: 52 },
    fs5lp: { type: "boolean", default: true },
    iotlbSizeLg2: { type: "integer", minimum: 4, maximum: 22, default: 12 },
    faultRecords: { type: "integer", minimum: 1, maximum: 256, default: 8 },
    cachingMode: { type: "boolean", default: false },
    dirtyTracking: { type: "boolean", default: true },
    pageRequests: { type: "boolean", default: true },
  },
};

/** A validated configuration with every default applied. */
export interface ResolvedConfig {
  readonly scalable: boolean;
  readonly pasidBits: number;
  readonly firstStage: boolean;
  readonly secondStage: boolean;
  readonly nesting: boolean;
  readonly sagaw: number;
  readonly haw: number;
  readonly fs5lp: boolean;
  readonly iotlbSizeLg2: number;
  readonly faultRecords: number;
  readonly cachingMode: boolean;
  readonly dirtyTracking: boolean;
  readonly pageRequests: boolean;
}

function bad(what: string, v: unknown): never {
  throw new IommuError("EINVAL", `vtd config: ${what} (got ${JSON.stringify(v)})`, { field: what });
}

/** Validates a scenario config. EINVAL names the offending field. */
export function resolveConfig(config: unknown): ResolvedConfig {
  const c = (config ?? {}) as Record<string, unknown>;
  if (typeof c !== "object" || Array.isArray(c)) bad("config must be an object", config);
  const known = Object.keys(vtdConfigSchema.properties as object);
  for (const k of Object.keys(c)) if (!known.includes(k)) bad(`unknown field ${k}`, c[k]);
  const bool = (k: string, d: boolean): boolean => {
    const v = c[k];
    if (v === undefined) return d;
    if (typeof v !== "boolean") bad(`${k} must be a boolean`, v);
    return v;
  };
  const int = (k: string, d: number, min: number, max: number): number => {
    const v = c[k];
    if (v === undefined) return d;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
      bad(`${k} must be an integer in [${min}, ${max}]`, v);
    return v;
  };
  const mode = c.mode ?? "scalable";
  if (mode !== "scalable" && mode !== "legacy") bad("mode must be scalable or legacy", mode);
  const sagaw = int("sagaw", 0b1100, 2, 14);
  if ((sagaw & 0b1110) === 0 || (sagaw & ~0b1110) !== 0) bad("sagaw must set bits among 1-3", sagaw);
  return {
    scalable: mode === "scalable",
    pasidBits: int("pasidBits", 20, 1, 20),
    firstStage: bool("firstStage", true),
    secondStage: bool("secondStage", true),
    nesting: bool("nesting", true),
    sagaw,
    haw: int("haw", 52, 39, 52),
    fs5lp: bool("fs5lp", true),
    iotlbSizeLg2: int("iotlbSizeLg2", 12, 4, 22),
    faultRecords: int("faultRecords", 8, 1, 256),
    cachingMode: bool("cachingMode", false),
    dirtyTracking: bool("dirtyTracking", true),
    pageRequests: bool("pageRequests", true),
  };
}

/** CAP_REG and ECAP_REG of a unit with this configuration. */
export function registersFor(c: ResolvedConfig): { cap: bigint; ecap: bigint } {
  const mgaw = c.sagaw & 0b1000 ? 57 : c.sagaw & 0b100 ? 48 : 39;
  const cap: CapFields = {
    nd: 6,
    cm: c.cachingMode,
    sagaw: c.sagaw,
    mgaw,
    fro: 0x220,
    sllps: 0b11,
    psi: true,
    nfr: c.faultRecords,
    mamv: 18,
    fs1gp: true,
    fs5lp: c.scalable && c.firstStage && c.fs5lp,
  };
  const sm = c.scalable;
  const ecap: EcapFields = {
    c: true,
    qi: true,
    dt: true,
    pt: true,
    sc: true,
    iro: 0xf0,
    nest: sm && c.nesting && c.firstStage && c.secondStage,
    // PRS is reported only with DT (spec 11.4.3), which this model always reports.
    prs: sm && c.pageRequests,
    ers: sm,
    srs: sm,
    eafs: sm && c.firstStage,
    pss: c.pasidBits - 1,
    pasid: sm,
    smts: sm,
    ssads: sm && c.secondStage && c.dirtyTracking,
    ssts: sm && c.secondStage,
    fsts: sm && c.firstStage,
    smpwcs: sm,
    rps: sm,
  };
  return { cap: encodeCap(cap), ecap: encodeEcap(ecap) };
}

/** Paging-domain formats a unit supports, default first ("vtd-ss-4lvl" when available). */
export function formatsFor(cap: CapFields, ecap: EcapFields, scalable: boolean): string[] {
  const out: string[] = [];
  const ss = !scalable || ecap.ssts;
  if (ss) {
    for (const lv of [4, 3, 5]) if (cap.sagaw & (1 << (lv - 2))) out.push(`vtd-ss-${lv}lvl`);
  }
  if (scalable && ecap.fsts) {
    out.push("vtd-fs-4lvl");
    if (cap.fs5lp) out.push("vtd-fs-5lvl");
  }
  return out;
}

/** Page sizes of a format (log2): second stage by SLLPS, first stage 2M always and 1G by FS1GP. */
export function pageSizesFor(format: string, cap: CapFields): number[] {
  const out = [12];
  if (format.startsWith("vtd-ss")) {
    if (cap.sllps & 1) out.push(21);
    if (cap.sllps & 2) out.push(30);
  } else {
    out.push(21);
    if (cap.fs1gp) out.push(30);
  }
  return out;
}

/** The capability record of one device behind a unit. */
export function capabilitiesFor(
  cap: CapFields,
  ecap: EcapFields,
  capReg: bigint,
  ecapReg: bigint,
  haw: number,
  scalable: boolean,
  spec: Pick<DeviceSpec, "pasidBits" | "ats" | "pri">,
): Capabilities {
  const pasid = scalable && ecap.pasid && spec.pasidBits > 0;
  const iopf = pageRequestsEnabled(ecap, scalable, spec);
  const intents: IntentKind[] = pasid ? ["rid", "pasid"] : ["rid"];
  const formats = formatsFor(cap, ecap, scalable);
  const deepest = formats.some((f) => f.endsWith("5lvl"))
    ? 57
    : formats.some((f) => f.endsWith("4lvl"))
      ? 48
      : 39;
  return {
    intents,
    maxPasidLog2: pasid ? Math.min(spec.pasidBits, ecap.pss + 1) : 0,
    pasidAssignment: "caller",
    inputAddressBits: deepest,
    outputAddressBits: haw,
    pageSizeBitmap: pageSizeBitmap(pageSizesFor(formats[0] ?? "vtd-ss-4lvl", cap)),
    formats,
    features: {
      dirtyTracking: scalable && ecap.ssads && ecap.ssts,
      pasidExec: pasid && ecap.ers,
      pasidPriv: pasid && ecap.srs,
      atsNotSupported: !ecap.dt || spec.ats !== true,
      nesting: scalable && ecap.nest,
      coherent: ecap.c,
      iopf,
    },
    hwInfo: { type: "intel-vtd", flags: 0, capReg, ecapReg },
  };
}

/**
 * Whether the driver enables PRI on the device, so that I/O page faults work
 * (IOMMU_DEV_FEAT_IOPF): Linux 6.15 intel_iommu_probe_device sets pri_supported for an
 * ATS device on a scalable-mode unit with ECAP.PRS (ATS itself needs ECAP.DT) and
 * enables PRI when `info->pasid_enabled || !pci_prg_resp_pasid_required(pdev)`;
 * intel_iommu_enable_iopf then needs `info->pri_enabled`. The model's PRI devices set
 * "PRG Response PASID Required" (PCIe PRI status bit 15), so PASID must be enabled too.
 */
export function pageRequestsEnabled(
  ecap: EcapFields,
  scalable: boolean,
  spec: Pick<DeviceSpec, "pasidBits" | "ats" | "pri">,
): boolean {
  return (
    scalable &&
    ecap.prs &&
    ecap.dt &&
    ecap.pasid &&
    spec.ats === true &&
    spec.pri === true &&
    spec.pasidBits > 0
  );
}
