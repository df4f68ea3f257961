/**
 * Register values for snapshots: a JSON object of the spec's register names (no prefix
 * or suffix) to values, or, for VT-d, the text of Linux's debugfs `iommu_regset`
 * (drivers/iommu/intel/debugfs.c, iommu_regset_show: an `IOMMU: <name> Register Base
 * Address: <hex>` line, a `Name Offset Contents` header, then one
 * `%-16s\t0x%02x\t\t0x%016llx` line per register, a blank line between units).
 *
 * Names a backend does not model but a real dump carries (VT-d VER, FRCD*, IQH...;
 * SMMUv3 CR0ACK, IIDR, GERROR...) are accepted and ignored; any other name is bad input.
 * The table pointers (VT-d RTADDR, IQA, IRTA; SMMUv3 STRTAB_BASE, CMDQ_BASE, EVENTQ_BASE)
 * are listed with the enable bit that makes the hardware use them, so the CLI can warn
 * when one points outside every memory image.
 */

import { UsageError } from "./errors.ts";

const NUM_RE = /^(0[xX][0-9a-fA-F]+|[0-9]+)$/;

// VT-d spec 3.x, 11.4 "Register Descriptions" (Linux DMAR_*_REG names, include/linux/dmar.h
// and intel/iommu.h), the registers a dump carries that no translation reads.
const VTD_EXTRA = new Set([
  "VER",
  "CCMD",
  "FEDATA",
  "FEADDR",
  "FEUADDR",
  "AFLOG",
  "PMEN",
  "PLMBASE",
  "PLMLIMIT",
  "PHMBASE",
  "PHMLIMIT",
  "IECTL",
  "IEDATA",
  "IEADDR",
  "IEUADDR",
  "IQERCD",
  "ICS",
  "IRTA",
  "PQH",
  "PQT",
  "PQA",
  "PRS",
  "PECTL",
  "PEDATA",
  "PEADDR",
  "PEUADDR",
  "MTRRCAP",
  "MTRRDEF",
  "VCCAP",
  "VCMD",
  "VCRSP",
  "ECMD",
  "ECRSP",
  "ECEO",
  "ECAP2",
]);
const VTD_EXTRA_RE = /^(FRCD\d+(_LO|_HI)?|MTRR_[A-Z0-9_]+|IVA|IOTLB)$/;

// IHI 0070 6.3 "Register formats": the SMMU_* page-0 registers no translation reads.
const SMMU_EXTRA = new Set([
  "IIDR",
  "AIDR",
  "CR0ACK",
  "STATUSR",
  "AGBPA",
  "IRQ_CTRL",
  "IRQ_CTRLACK",
  "GERROR",
  "GERRORN",
  "GERROR_IRQ_CFG0",
  "GERROR_IRQ_CFG1",
  "GERROR_IRQ_CFG2",
  "CMDQ_BASE",
  "CMDQ_PROD",
  "CMDQ_CONS",
  "EVENTQ_BASE",
  "EVENTQ_PROD",
  "EVENTQ_CONS",
  "EVENTQ_IRQ_CFG0",
  "EVENTQ_IRQ_CFG1",
  "EVENTQ_IRQ_CFG2",
  "PRIQ_BASE",
  "PRIQ_PROD",
  "PRIQ_CONS",
  "PRIQ_IRQ_CFG0",
  "PRIQ_IRQ_CFG1",
  "PRIQ_IRQ_CFG2",
  "GATOS_CTRL",
  "GATOS_SID",
  "GATOS_ADDR",
  "GATOS_PAR",
  "IDR6",
  "VATOS_SEL",
]);

/** True when `name` is a register of `backend`'s spec that its model ignores. */
export function isExtraRegister(backend: string, name: string): boolean {
  if (backend === "vtd") return VTD_EXTRA.has(name) || VTD_EXTRA_RE.test(name);
  if (backend === "smmuv3") return SMMU_EXTRA.has(name);
  return false;
}

/** A register that holds a table's physical address, used when `enable` is set. */
export interface TablePointer {
  readonly reg: string;
  readonly what: string;
  /** Address bits (mask applied to the value). */
  readonly mask: bigint;
  /** The register and bit that say the hardware uses it. */
  readonly enable: { readonly reg: string; readonly bit: bigint };
}

const bits = (hi: number, lo: number): bigint => ((1n << BigInt(hi + 1)) - 1n) & ~((1n << BigInt(lo)) - 1n);

/** The table pointers of a backend's registers (none for a backend the CLI does not know). */
export function tablePointers(backend: string): readonly TablePointer[] {
  if (backend === "vtd") {
    // VT-d 11.4.5 RTADDR_REG RTA[63:12], GSTS.RTPS (30); 11.4.9.3 IQA_REG IQA[63:12],
    // GSTS.QIES (26); 11.4.8.1 IRTA_REG IRTA[63:12], GSTS.IRES (25).
    return [
      { reg: "RTADDR", what: "root table", mask: bits(63, 12), enable: { reg: "GSTS", bit: 30n } },
      { reg: "IQA", what: "invalidation queue", mask: bits(63, 12), enable: { reg: "GSTS", bit: 26n } },
      {
        reg: "IRTA",
        what: "interrupt remapping table",
        mask: bits(63, 12),
        enable: { reg: "GSTS", bit: 25n },
      },
    ];
  }
  if (backend === "smmuv3") {
    // IHI 0070 6.3.23 SMMU_STRTAB_BASE ADDR[51:6], CR0.SMMUEN (0); 6.3.26 SMMU_CMDQ_BASE
    // ADDR[51:5], CR0.CMDQEN (3); 6.3.29 SMMU_EVENTQ_BASE ADDR[51:5], CR0.EVENTQEN (2).
    return [
      { reg: "STRTAB_BASE", what: "stream table", mask: bits(51, 6), enable: { reg: "CR0", bit: 0n } },
      { reg: "CMDQ_BASE", what: "command queue", mask: bits(51, 5), enable: { reg: "CR0", bit: 3n } },
      { reg: "EVENTQ_BASE", what: "event queue", mask: bits(51, 5), enable: { reg: "CR0", bit: 2n } },
    ];
  }
  return [];
}

/** Register values as given (upper-case names to values), before defaults. */
export type RawRegisters = Map<string, { value: bigint; where: string }>;

function value(v: unknown, where: string): bigint {
  let val: bigint;
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) val = BigInt(v);
  else if (typeof v === "string" && NUM_RE.test(v.trim())) val = BigInt(v.trim());
  else throw new UsageError(`${where}: ${JSON.stringify(v)} is not a number or 0x hex string`);
  if (val >= 1n << 64n) throw new UsageError(`${where}: value does not fit in 64 bits`);
  return val;
}

/** Registers from a JSON object (`source` names the file in errors). */
export function registersFromJson(json: unknown, source: string): RawRegisters {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new UsageError(`${source}: must be a JSON object of register names to values`);
  }
  const out: RawRegisters = new Map();
  for (const [k, v] of Object.entries(json)) {
    const where = `${source}: /${k}`;
    out.set(k.toUpperCase(), { value: value(v, `${source}: register ${k}`), where });
  }
  return out;
}

/** True when `text` looks like debugfs iommu_regset output. */
export function isRegsetText(text: string): boolean {
  return /^IOMMU: \S+ Register Base Address: [0-9a-fA-F]+\s*$/m.test(text);
}

/**
 * Registers of one unit from iommu_regset text: the unit named `unit`, or the only one.
 * Errors name the line.
 */
export function registersFromRegset(text: string, source: string, unit?: string): RawRegisters {
  const units = new Map<string, RawRegisters>();
  let cur: RawRegisters | null = null;
  const lines = text.split(/\r?\n/);
  for (const [i, line] of lines.entries()) {
    const where = `${source} line ${i + 1}`;
    const head = /^IOMMU: (\S+) Register Base Address: ([0-9a-fA-F]+)\s*$/.exec(line);
    if (head !== null) {
      cur = new Map();
      units.set(head[1]!, cur);
      continue;
    }
    if (line.trim() === "" || /^Name\s+Offset\s+Contents\s*$/.test(line)) continue;
    if (cur === null) throw new UsageError(`${where}: expected "IOMMU: NAME Register Base Address: HEX"`);
    const m = /^([A-Z][A-Z0-9_]*)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]{1,16})\s*$/.exec(line);
    if (m === null)
      throw new UsageError(
        `${where}: expected "NAME\\t0xOFFSET\\t\\t0xVALUE", got ${JSON.stringify(line.slice(0, 60))}`,
      );
    cur.set(m[1]!, { value: BigInt(`0x${m[3]!}`), where });
  }
  if (units.size === 0) throw new UsageError(`${source}: no "IOMMU: NAME Register Base Address" line`);
  if (unit !== undefined) {
    const u = units.get(unit);
    if (u === undefined)
      throw new UsageError(`${source}: no unit ${unit} (units: ${[...units.keys()].join(", ")})`);
    return u;
  }
  if (units.size > 1)
    throw new UsageError(
      `${source}: ${units.size} units (${[...units.keys()].join(", ")}): choose one with --unit NAME`,
    );
  return [...units.values()][0]!;
}

/**
 * The registers `fromRegisters` takes: `defaults` overridden by `raw`. Names the
 * backend ignores (see {@link isExtraRegister}) are dropped and returned in `ignored`;
 * other unknown names are bad input naming where they came from.
 */
export function resolveRegisters(
  raw: RawRegisters,
  defaults: Readonly<Record<string, bigint>>,
  backend: string,
): { registers: Record<string, bigint>; ignored: Record<string, bigint> } {
  const registers: Record<string, bigint> = { ...defaults };
  const ignored: Record<string, bigint> = {};
  for (const [k, { value: v, where }] of raw) {
    if (k in defaults) registers[k] = v;
    else if (isExtraRegister(backend, k)) ignored[k] = v;
    else
      throw new UsageError(
        `${where}: unknown register ${JSON.stringify(k)} (known: ${Object.keys(defaults).join(", ")})`,
      );
  }
  return { registers, ignored };
}
