/**
 * The SMMUv3 backend: core's contract over the hardware model (internal/hw.ts). The
 * driver half allocates table pages, writes STEs, CDs and page tables into physical
 * memory and issues the commands a careful driver issues (CFGI_STE, CFGI_CD, TLBI_*,
 * CMD_SYNC) through the command queue in memory; the hardware half consumes them.
 * Every translation goes through the hardware model. Mapping to the contract:
 * rid = StreamID; `rid` -> STE (stage 1 with CD 0, or stage 2); `pasid` -> CD[SSID];
 * `rid-all-pasids` -> a nested STE from the user's STE words over a stage-2 parent.
 */

import type {
  AttachIntent,
  AttachResult,
  Backend,
  BackendContext,
  BackendFactory,
  CacheCounters,
  Capabilities,
  DeviceSpec,
  Domain,
  DomainFlags,
  DomainRequest,
  DomainType,
  IovaRange,
  PhysicalMemory,
  TableAllocator,
  Translation,
  TranslationOutcome,
  WalkStep,
} from "@iommu-kit/core";
import { assertIntentAllowed, createTranslation, hex, IommuError, outcomeOf, Perm } from "@iommu-kit/core";
import type { PtFormat } from "@iommu-kit/core/driver";
import { PageTable } from "@iommu-kit/core/driver";
import { decodeCd, encodeCd, encodeL1Cd } from "./format/cd.ts";
import type { Command } from "./format/command.ts";
import { CmdError, CmdOp, encodeCommand } from "./format/command.ts";
import type { EventRecord } from "./format/event.ts";
import { decodeEvent } from "./format/event.ts";
import type { LpaeFormatSpec } from "./format/lpae-pte.ts";
import { lpaeFormat, lpaeGeometry } from "./format/lpae-pte.ts";
import { Cr0, Cr2, Gbpa, paEncoding } from "./format/registers.ts";
import { decodeSte, encodeL1Std, encodeSte, S1Dss, SteConfig } from "./format/ste.ts";
import type { RegisterValues } from "./hardware.ts";
import { SmmuHw } from "./hardware.ts";
import { capabilitiesOf, domainFormats, domainInputBits, granulePageSizes, granules } from "./hw-info.ts";

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
}

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
  },
};

/** The software MSI window Linux reserves (MSI_IOVA_BASE 0x8000000, MSI_IOVA_LENGTH 0x100000). */
export const MSI_IOVA_BASE = 0x8000000;
const MSI_IOVA_LENGTH = 0x100000;
/** MAIR Linux programs (io-pgtable-arm: NC 0x44, cacheable 0xff, device 0x04, inner-NC/outer-cache 0xf4). */
const MAIR = 0xf404ff44n;
/** Perm.R | Perm.W: a mapping must grant one of them. */
const PERM_RW = Perm.R | Perm.W;
const TWO32 = 4294967296;
/** 2^i for i in [0, 127] (outside, undefined: callers fall back to `2 ** i`, Math.pow). */
const POW2 = Float64Array.from({ length: 128 }, (_, i) => 2 ** i);
const STRTAB_SPLIT = 8; // Linux STRTAB_SPLIT
const CD_SPLIT = 10; // Linux CTXDESC_SPLIT: 64K leaves (S1Fmt = 2)

function bad(
  code: "EINVAL" | "EOPNOTSUPP" | "EBUSY" | "ENOENT" | "EEXIST" | "EIO",
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
  // IDR0 (6.3.1): S2P, S1P, TTF=AArch64, COHACC, HTTU=A+D, ASID16, VMID16, CD2L, TTENDIAN=LE, STALL_MODEL=terminate, ST_LEVEL=2-level.
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
    (1 << 24) |
    (1 << 27);
  const idr1 = (config.sidBits ?? 16) | ((s1 ? (config.ssidBits ?? 20) : 0) << 6) | (19 << 16) | (19 << 21);
  const idr3 = (1 << 2) | (1 << 10); // HAD, RIL
  const idr5 =
    paEncoding(config.oas ?? 48) |
    (gr.includes("4k") ? 1 << 4 : 0) |
    (gr.includes("16k") ? 1 << 5 : 0) |
    (gr.includes("64k") ? 1 << 6 : 0);
  return {
    IDR0: BigInt(idr0 >>> 0),
    IDR1: BigInt(idr1 >>> 0),
    IDR2: 0n,
    IDR3: BigInt(idr3),
    IDR4: 0n,
    IDR5: BigInt(idr5),
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

function checkConfig(config: unknown): SmmuV3Config {
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

interface CdTable {
  readonly base: number;
  /** S1CDMax. */
  readonly cdMax: number;
  /** 0 = linear (or a single CD), 2 = 2-level with 64K leaves. */
  readonly fmt: number;
  /** Leaf tables of a 2-level table by L1 index, with the count of valid CDs. */
  readonly leaves: Map<number, { pa: number; used: number }>;
}

interface DeviceState {
  readonly rid: number;
  readonly ssidBits: number;
  slot: { kind: "rid" | "rid-all-pasids"; domain: SmmuDomain } | null;
  readonly pasids: Map<number, SmmuPagingDomain>;
  cd: CdTable | null;
}

/** Any domain of this backend. */
export abstract class SmmuDomain implements Domain {
  readonly backend: SmmuV3Backend;
  readonly id: number;
  abstract readonly type: DomainType;
  readonly format: string;
  readonly flags: DomainFlags;
  readonly aperture: IovaRange;
  readonly pageSizeBitmap: bigint;
  /** Attach points using this domain ("rid:pasid"). */
  readonly users: Set<string> = new Set();
  freed = false;

  constructor(
    backend: SmmuV3Backend,
    id: number,
    format: string,
    flags: DomainFlags,
    aperture: IovaRange,
    pageSizes: bigint,
  ) {
    this.backend = backend;
    this.id = id;
    this.format = format;
    this.flags = flags;
    this.aperture = aperture;
    this.pageSizeBitmap = pageSizes;
  }

  map(_iova: number, _pa: number, _length: number, _prot: number): void {
    throw bad("EINVAL", `a ${this.type} domain has no page table to map into`);
  }

  unmap(_iova: number, _length: number): number {
    throw bad("EINVAL", `a ${this.type} domain has no page table to unmap from`);
  }

  iovaToPhys(_iova: number): number {
    return -1;
  }

  free(): void {
    if (this.users.size > 0) throw bad("EBUSY", `domain ${this.id} is attached`, { id: this.id });
    if (this.freed) throw bad("EINVAL", `domain ${this.id} was already freed`, { id: this.id });
    this.release();
    this.freed = true;
  }

  protected release(): void {}
}

class SmmuSimpleDomain extends SmmuDomain {
  readonly type: DomainType;
  constructor(backend: SmmuV3Backend, id: number, type: "blocked" | "identity") {
    super(backend, id, "", {}, { start: 0, last: -1 }, 0n);
    this.type = type;
  }
}

/** A paging domain: a stage-1 (ASID) or stage-2 (VMID) VMSAv8-64 table written by the driver. */
export class SmmuPagingDomain extends SmmuDomain {
  readonly type: DomainType = "paging";
  readonly spec: LpaeFormatSpec;
  readonly stage: 1 | 2;
  readonly pt: PageTable;
  readonly ptFormat: PtFormat;
  /** ASID (stage 1) or VMID (stage 2). */
  readonly tagId: number;
  /** Nested domains built over this (stage-2) parent. */
  children = 0;
  dirtyEnabled = false;

  constructor(
    backend: SmmuV3Backend,
    id: number,
    spec: LpaeFormatSpec,
    flags: DomainFlags,
    pt: PageTable,
    fmt: PtFormat,
    tagId: number,
    pageSizes: bigint,
  ) {
    super(backend, id, spec.name, flags, { start: 0, last: 2 ** spec.inputBits - 1 }, pageSizes);
    this.spec = spec;
    this.stage = spec.stage;
    this.pt = pt;
    this.ptFormat = fmt;
    this.tagId = tagId;
  }

  override map(iova: number, pa: number, length: number, prot: number): void {
    // One combined test for the common valid call; anything else takes the full checks
    // (same order, same errors) in #checkMap. Passing it implies every check there holds.
    const min = POW2[this.spec.granuleLg2] ?? 2 ** this.spec.granuleLg2;
    if (
      !(
        !this.freed &&
        length > 0 &&
        iova >= 0 &&
        pa >= 0 &&
        iova % min === 0 &&
        pa % min === 0 &&
        length % min === 0 &&
        iova + length - 1 <= this.aperture.last &&
        pa + length <= (POW2[this.backend.hw.oas] ?? 2 ** this.backend.hw.oas) &&
        (prot & PERM_RW) !== 0 &&
        Number.isSafeInteger(iova + length) &&
        Number.isSafeInteger(pa + length)
      )
    )
      this.#checkMap(iova, pa, length, prot);
    this.pt.map(iova, pa, length, prot);
    // New entries replace invalid ones: nothing cached to invalidate (the SMMU caches no faults).
  }

  #checkMap(iova: number, pa: number, length: number, prot: number): void {
    this.#live();
    const min = 2 ** this.spec.granuleLg2;
    const details = { iova, pa, length };
    if (
      !Number.isSafeInteger(iova) ||
      !Number.isSafeInteger(pa) ||
      !Number.isSafeInteger(length) ||
      length <= 0
    )
      throw bad("EINVAL", `map ${iova}+${length} -> ${pa}: not a valid range`, details);
    if (iova % min !== 0 || pa % min !== 0 || length % min !== 0)
      throw bad(
        "EINVAL",
        `map ${hex(iova)}+${hex(length)} -> ${hex(pa)} is not ${hex(min)}-aligned`,
        details,
      );
    if (iova < 0 || iova + length - 1 > this.aperture.last)
      throw bad("EINVAL", `map ${hex(iova)}+${hex(length)} is outside the aperture`, details);
    if (pa < 0 || pa + length > 2 ** this.backend.hw.oas)
      throw bad("EINVAL", `pa ${hex(pa)} is beyond the OAS`, details);
    if ((prot & (Perm.R | Perm.W)) === 0) throw bad("EINVAL", "prot must grant read or write", { prot });
  }

  override unmap(iova: number, length: number): number {
    this.#live();
    const min = POW2[this.spec.granuleLg2] ?? 2 ** this.spec.granuleLg2;
    if (
      !Number.isSafeInteger(iova) ||
      !Number.isSafeInteger(length) ||
      iova % min !== 0 ||
      length % min !== 0 ||
      iova < 0
    )
      throw bad("EINVAL", `unmap ${hex(iova)}+${hex(length)} is not ${hex(min)}-aligned`, { iova, length });
    if (length === 0) return 0;
    const done = this.pt.unmap(iova, length);
    if (done > 0) this.invalidateIova(iova, length);
    return done;
  }

  override iovaToPhys(iova: number): number {
    if (this.freed || iova < 0 || iova > this.aperture.last) return -1;
    return this.pt.lookup(iova)?.pa ?? -1;
  }

  /** Issues the TLB invalidation a driver issues after changing [iova, iova + length) (range TLBI + CMD_SYNC). */
  invalidateIova(iova: number, length: number): void {
    this.backend.invalidateDomainRange(this, iova, length);
  }

  /**
   * Test aid: rewrites, in memory only, the leaf mapping `iova` to point at `newPa`
   * (same size and attributes), without any invalidation.
   */
  rewriteLeaf(iova: number, newPa: number): void {
    let done = false;
    this.pt.forEachLeaf(iova, 1, (base, sizeLg2, words, wi) => {
      const size = 2 ** sizeLg2;
      const target = newPa - (iova - base);
      if (target % size !== 0) throw bad("EINVAL", "new address is not aligned to the leaf");
      const out = new Uint32Array(2);
      const lo = words[wi]!;
      this.ptFormat.encodeLeaf(target, sizeLg2 === this.spec.granuleLg2 ? 0 : 1, 0, out);
      const addrMaskLo = sizeLg2 >= 32 ? 0 : (2 ** 32 - 2 ** sizeLg2) >>> 0;
      words[wi] =
        ((lo & ~addrMaskLo & ~(this.spec.granuleLg2 === 16 ? 0xf000 : 0)) |
          (out[0]! & addrMaskLo) |
          (this.spec.granuleLg2 === 16 ? out[0]! & 0xf000 : 0)) >>>
        0;
      words[wi + 1] = ((words[wi + 1]! & ~0xffff) | (out[1]! & 0xffff)) >>> 0;
      done = true;
    });
    if (!done) throw bad("ENOENT", `iova ${hex(iova)} is not mapped`);
  }

  setDirtyTracking(enable: boolean): void {
    this.#live();
    if (!this.flags.dirtyTracking) throw bad("EOPNOTSUPP", "domain was not allocated with dirty tracking");
    this.dirtyEnabled = enable;
  }

  readDirty(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void {
    this.#live();
    if (!this.flags.dirtyTracking) throw bad("EOPNOTSUPP", "domain was not allocated with dirty tracking");
    const page = 2 ** pageSizeLg2;
    if (iova % page !== 0 || length % page !== 0) throw bad("EINVAL", "dirty range is not page-aligned");
    if (bitmap.length * 8 < length / page) throw bad("EINVAL", "bitmap too small");
    const fmt = this.ptFormat;
    const out = new Uint32Array(2);
    let cleared = false;
    this.pt.forEachLeaf(iova, length, (base, sizeLg2, words, wi, level) => {
      if (!fmt.isDirty!(words[wi]!, words[wi + 1]!, level)) return;
      const first = Math.max(base, iova);
      const last = Math.min(base + 2 ** sizeLg2, iova + length);
      for (let a = first - ((first - iova) % page); a < last; a += page) {
        const bit = (a - iova) / page;
        bitmap[bit >>> 3]! |= 1 << (bit & 7);
      }
      if (!noClear) {
        fmt.clearDirty!(words[wi]!, words[wi + 1]!, level, out);
        words[wi] = out[0]!;
        words[wi + 1] = out[1]!;
        cleared = true;
      }
    });
    if (cleared) this.invalidateIova(iova, length);
  }

  #live(): void {
    if (this.freed) throw bad("EINVAL", `domain ${this.id} was freed`, { id: this.id });
  }

  protected override release(): void {
    if (this.children > 0)
      throw bad("EBUSY", `domain ${this.id} is the parent of nested domains`, { id: this.id });
    this.pt.destroy();
    this.backend.releaseTag(this);
  }
}

/** A nested domain: the user's STE words (S1ContextPtr = guest CD table IPA) over a stage-2 parent. */
export class SmmuNestedDomain extends SmmuDomain {
  readonly type: DomainType = "nested";
  readonly parent: SmmuPagingDomain;
  /** The validated user STE words 0 and 1. */
  readonly ste: readonly [bigint, bigint];

  constructor(
    backend: SmmuV3Backend,
    id: number,
    parent: SmmuPagingDomain,
    ste: [bigint, bigint],
    flags: DomainFlags,
  ) {
    super(backend, id, "arm-smmuv3-nested", flags, { start: 0, last: 2 ** 48 - 1 }, parent.pageSizeBitmap);
    this.parent = parent;
    this.ste = ste;
  }

  /**
   * Handles raw 128-bit commands as iommu_viommu_arm_smmuv3_invalidate carries them:
   * TLBI_NH_ALL/ASID/VA/VAA and TLBI_NSNH_ALL get the parent's VMID, CFGI_CD(_ALL) go to
   * every StreamID this domain serves (no vSID table here), ATC_INV is accepted (no ATS).
   * Anything else: EIO with details.handled (arm_vsmmu_convert_user_cmd).
   */
  invalidate(entries: readonly unknown[]): number {
    let handled = 0;
    for (const e of entries) {
      const cmd = (e as { cmd?: unknown } | null)?.cmd;
      if (!Array.isArray(cmd) || cmd.length !== 2)
        throw new IommuError("EINVAL", "entry must be { cmd: [w0, w1] }", { handled });
      let w0: bigint;
      let w1: bigint;
      try {
        w0 = BigInt(cmd[0] as bigint | string);
        w1 = BigInt(cmd[1] as bigint | string);
      } catch {
        throw new IommuError("EINVAL", "command words must be bigints or hex strings", { handled });
      }
      const op = Number(w0 & 0xffn);
      const vmid = BigInt(this.parent.tagId) << 32n;
      let out: [bigint, bigint][];
      switch (op) {
        case CmdOp.TLBI_NH_ALL:
        case CmdOp.TLBI_NH_ASID:
        case CmdOp.TLBI_NH_VA:
        case CmdOp.TLBI_NH_VAA:
          out = [[(w0 & ~(0xffffn << 32n)) | vmid, w1]];
          break;
        case CmdOp.TLBI_NSNH_ALL:
          out = [[BigInt(CmdOp.TLBI_NH_ALL) | vmid, 0n]];
          break;
        case CmdOp.CFGI_CD:
        case CmdOp.CFGI_CD_ALL:
          out = [...this.users].map(
            (u) => [(w0 & 0xffff_ffffn) | (BigInt(Number(u.split(":")[0])) << 32n), w1] as [bigint, bigint],
          );
          break;
        case CmdOp.ATC_INV:
          out = [];
          break;
        default:
          throw new IommuError("EIO", `command ${hex(op)} is not a nested invalidation`, { handled, op });
      }
      if (out.length > 0) this.backend.submit(out);
      handled++;
    }
    return handled;
  }

  protected override release(): void {
    this.parent.children--;
  }
}

/** An SMMUv3 instance: the hardware model plus (unless built from registers) the driver. */
export class SmmuV3Backend implements Backend {
  readonly kind = "smmuv3";
  readonly name: string;
  readonly hw: SmmuHw;
  readonly memory: PhysicalMemory;
  readonly #tables: TableAllocator | null;
  readonly #devices = new Map<number, DeviceState>();
  #nextId = 1;
  readonly #asids = new Set<number>();
  readonly #vmids = new Set<number>();
  #cmdqBase = 0;
  // Commands being assembled for #issue: four 32-bit halves each, #cmdN of them.
  #cmdBuf = new Uint32Array(64);
  #cmdN = 0;
  #cmdqLog2 = 0;
  #evtqBase = 0;
  #evtqLog2 = 0;
  #strtab = 0;
  #linear = false;
  readonly #l2 = new Map<number, { pa: number; refs: number }>();

  constructor(
    memory: PhysicalMemory,
    tables: TableAllocator | null,
    name: string,
    registers: RegisterValues,
    tlbLg2: number,
  ) {
    this.name = name;
    this.memory = memory;
    this.#tables = tables;
    this.hw = new SmmuHw(memory, registers, tlbLg2);
  }

  /** Brings the SMMU up as Linux's arm_smmu_device_reset does: tables, queues, CFGI_ALL, TLBI_NSNH_ALL, SMMUEN. */
  initDriver(config: SmmuV3Config): void {
    const t = this.#tables!;
    const hw = this.hw;
    this.#cmdqLog2 = Math.min(config.cmdQueueLog2 ?? 8, hw.cmdqsMax);
    this.#evtqLog2 = Math.min(config.eventQueueLog2 ?? 7, hw.eventqsMax);
    this.#linear = config.streamTable === "linear" || !hw.twoLevelSt || hw.sidBits <= STRTAB_SPLIT;
    const sidBits = hw.sidBits;
    if (this.#linear && sidBits > 20)
      throw bad("EINVAL", `a linear stream table of 2^${sidBits} STEs is too large`);
    // All three blocks or none (a failed create leaks nothing).
    const taken: number[] = [];
    try {
      taken.push(t.alloc(Math.max(12, this.#cmdqLog2 + 4), "smmuv3 cmdq"));
      taken.push(t.alloc(Math.max(12, this.#evtqLog2 + 5), "smmuv3 eventq"));
      taken.push(
        this.#linear
          ? t.alloc(Math.max(12, sidBits + 6), "smmuv3 strtab")
          : t.alloc(Math.max(12, sidBits - STRTAB_SPLIT + 3), "smmuv3 strtab l1"),
      );
    } catch (e) {
      for (const pa of taken) t.free(pa);
      throw e;
    }
    [this.#cmdqBase, this.#evtqBase, this.#strtab] = taken as [number, number, number];
    if (this.#linear) {
      // Every STE aborts until a device is attached (Linux arm_smmu_init_bypass_stes, disable_bypass).
      for (let sid = 0; sid < 2 ** sidBits; sid++) this.memory.write32(this.#strtab + sid * 64, 1);
      hw.writeRegister("STRTAB_BASE_CFG", BigInt(sidBits));
    } else {
      hw.writeRegister("STRTAB_BASE_CFG", BigInt((1 << 16) | (STRTAB_SPLIT << 6) | sidBits));
    }
    hw.writeRegister("STRTAB_BASE", (1n << 62n) | BigInt(this.#strtab)); // RA [62]
    hw.writeRegister("CMDQ_BASE", (1n << 62n) | BigInt(this.#cmdqBase) | BigInt(this.#cmdqLog2));
    hw.writeRegister("EVENTQ_BASE", (1n << 62n) | BigInt(this.#evtqBase) | BigInt(this.#evtqLog2));
    hw.writeRegister("CR2", BigInt(Cr2.RECINVSID));
    hw.writeRegister("GBPA", BigInt(Gbpa.UPDATE + Gbpa.ABORT));
    hw.writeRegister("CR0", BigInt(Cr0.CMDQEN | Cr0.EVTQEN));
    this.submit([
      encodeCommand({ op: CmdOp.CFGI_STE_RANGE, range: 31 }),
      encodeCommand({ op: CmdOp.TLBI_NSNH_ALL }),
    ]);
    hw.writeRegister("CR0", BigInt(Cr0.CMDQEN | Cr0.EVTQEN | Cr0.SMMUEN));
  }

  #driver(): TableAllocator {
    if (this.#tables === null)
      throw bad("EOPNOTSUPP", `${this.name} is a hardware-model-only instance (built from registers)`);
    return this.#tables;
  }

  /**
   * Submits commands through the command queue in memory and a CMDQ_PROD write, with a
   * CMD_SYNC at the end, as arm_smmu_cmdq_issue_cmdlist does. EIO if the SMMU stops the queue.
   */
  submit(cmds: readonly (readonly [bigint, bigint])[]): void {
    this.#cmdN = 0;
    for (const [w0, w1] of cmds) {
      this.#pushCmd(
        Number(w0 & 0xffff_ffffn),
        Number((w0 >> 32n) & 0xffff_ffffn),
        Number(w1 & 0xffff_ffffn),
        Number((w1 >> 32n) & 0xffff_ffffn),
      );
    }
    this.#issue();
  }

  /** Appends one command as its four 32-bit halves (word 0 low, word 0 high, word 1 low, word 1 high). */
  #pushCmd(a: number, b: number, c: number, d: number): void {
    const i = this.#cmdN * 4;
    let buf = this.#cmdBuf;
    if (i + 4 > buf.length) {
      const grown = new Uint32Array(buf.length * 2);
      grown.set(buf);
      this.#cmdBuf = buf = grown;
    }
    buf[i] = a;
    buf[i + 1] = b;
    buf[i + 2] = c;
    buf[i + 3] = d;
    this.#cmdN++;
  }

  /**
   * Appends a TLBI of the address family: the bytes encodeCommand writes for
   * { op, vmid, asid, num, scale, leaf, tg, addr } (TTL 0), without bigint.
   */
  #pushTlbi(
    op: number,
    vmid: number,
    asid: number,
    num: number,
    scale: number,
    tg: number,
    addr: number,
  ): void {
    if (!(Number.isSafeInteger(addr) && addr >= 0)) {
      const [w0, w1] = encodeCommand({ op, vmid, asid, num, scale, leaf: 1, tg, addr: BigInt(addr) });
      this.#pushCmd(
        Number(w0 & 0xffff_ffffn),
        Number((w0 >> 32n) & 0xffff_ffffn),
        Number(w1 & 0xffff_ffffn),
        Number((w1 >> 32n) & 0xffff_ffffn),
      );
      return;
    }
    this.#pushCmd(
      (op & 0xff) | ((num & 0x1f) << 12) | ((scale & 0x1f) << 20),
      (vmid & 0xffff) | ((asid & 0xffff) << 16),
      1 | ((tg & 3) << 10) | ((addr % TWO32) & 0xffff_f000),
      Math.floor(addr / TWO32),
    );
  }

  /**
   * Writes the pending commands and a CMD_SYNC to the queue in memory, 32-bit halves at a
   * time, and moves CMDQ_PROD as arm_smmu_cmdq_issue_cmdlist does. EIO if the SMMU stops the queue.
   */
  #issue(): void {
    this.#pushCmd(CmdOp.CMD_SYNC, 0, 0, 0);
    const hw = this.hw;
    const memory = this.memory;
    const buf = this.#cmdBuf;
    const n = this.#cmdN;
    this.#cmdN = 0;
    const size = POW2[this.#cmdqLog2] ?? 2 ** this.#cmdqLog2;
    const mask = size * 2 - 1;
    let i = 0;
    while (i < n) {
      let prod = hw.cmdqProd & mask;
      const cons = hw.cmdqCons & mask;
      let room = size - ((prod - cons + size * 2) & mask);
      while (room > 0 && i < n) {
        const at = this.#cmdqBase + (prod & (size - 1)) * 16;
        const page = memory.writePage(Math.floor(at / 4096));
        if (page === null) memory.write64(at, 0n); // throws the bus error write64 does
        const w = (at % 4096) >>> 2;
        const k = i * 4;
        page![w] = buf[k]!;
        page![w + 1] = buf[k + 1]!;
        page![w + 2] = buf[k + 2]!;
        page![w + 3] = buf[k + 3]!;
        i++;
        prod = (prod + 1) & mask;
        room--;
      }
      hw.writeCmdqProd(prod);
      const after = hw.cmdqCons;
      const err = (after >>> 24) & 0x7f;
      if (err !== CmdError.NONE) {
        throw new IommuError("EIO", `the SMMU stopped the command queue with CERROR ${err}`, { cons: after });
      }
    }
  }

  // ---------------------------------------------------------------- devices

  #device(rid: number): DeviceState {
    const d = this.#devices.get(rid);
    if (d === undefined) throw bad("ENOENT", `no device with rid ${rid}`, { rid });
    return d;
  }

  addDevice(spec: DeviceSpec): void {
    const t = this.#driver();
    const rid = spec.rid;
    if (!Number.isInteger(rid) || rid < 0 || rid >= 2 ** this.hw.sidBits)
      throw bad("EINVAL", `rid ${rid} is outside [0, 2^${this.hw.sidBits})`, { rid });
    if (this.#devices.has(rid)) throw bad("EEXIST", `rid ${rid} is already a device`, { rid });
    if (!Number.isInteger(spec.pasidBits) || spec.pasidBits < 0 || spec.pasidBits > 20)
      throw bad("EINVAL", `pasidBits ${spec.pasidBits} is outside [0, 20]`, { pasidBits: spec.pasidBits });
    const ssidBits = this.hw.s1p ? Math.min(spec.pasidBits, this.hw.ssidBits) : 0;
    if (!this.#linear) {
      const l1 = Math.floor(rid / 2 ** STRTAB_SPLIT);
      let l2 = this.#l2.get(l1);
      if (l2 === undefined) {
        const pa = t.alloc(STRTAB_SPLIT + 6, "smmuv3 strtab l2");
        for (let i = 0; i < 2 ** STRTAB_SPLIT; i++) this.memory.write32(pa + i * 64, 1); // abort STEs
        l2 = { pa, refs: 0 };
        this.#l2.set(l1, l2);
        this.memory.write64(this.#strtab + l1 * 8, encodeL1Std(STRTAB_SPLIT + 1, pa));
      }
      l2.refs++;
    }
    const dev: DeviceState = { rid, ssidBits, slot: null, pasids: new Map(), cd: null };
    this.#devices.set(rid, dev);
    this.#writeSte(dev);
  }

  removeDevice(rid: number): void {
    this.#driver();
    const dev = this.#device(rid);
    if (dev.slot !== null || dev.pasids.size > 0)
      throw bad("EBUSY", `rid ${rid} has attached domains`, { rid });
    this.#devices.delete(rid);
    if (!this.#linear) {
      const l1 = Math.floor(rid / 2 ** STRTAB_SPLIT);
      const l2 = this.#l2.get(l1)!;
      if (--l2.refs === 0) {
        this.memory.write64(this.#strtab + l1 * 8, 0n);
        this.submit([encodeCommand({ op: CmdOp.CFGI_STE, sid: rid })]);
        this.#tables!.free(l2.pa);
        this.#l2.delete(l1);
      }
    }
  }

  capabilities(rid: number): Capabilities {
    return capabilitiesOf(this.hw, this.#device(rid).ssidBits);
  }

  reservedRegions(rid: number): readonly IovaRange[] {
    this.#device(rid);
    return [{ start: MSI_IOVA_BASE, last: MSI_IOVA_BASE + MSI_IOVA_LENGTH - 1 }];
  }

  // ---------------------------------------------------------------- domains

  #allocTag(set: Set<number>, what: string): number {
    for (let i = 1; i < 65536; i++) {
      if (!set.has(i)) {
        set.add(i);
        return i;
      }
    }
    throw bad("ENOSPC" as "EBUSY", `no free ${what}`);
  }

  allocDomain(request: DomainRequest): Domain {
    const t = this.#driver();
    const id = this.#nextId;
    if (request.type === "blocked" || request.type === "identity") {
      this.#nextId++;
      return new SmmuSimpleDomain(this, id, request.type);
    }
    if (request.rid !== undefined) this.#device(request.rid);
    const flags = request.flags ?? {};
    if (request.type === "nested") return this.#allocNested(request.parent, request.data, flags);
    if (request.type !== "paging")
      throw bad("EOPNOTSUPP", `domain type ${(request as { type: string }).type} is not supported`);
    const formats = domainFormats(this.hw);
    let format = request.format;
    if (format === undefined)
      format = flags.nestParent ? formats.find((f) => f.includes("-s2-")) : formats[0];
    if (format === undefined || !formats.includes(format))
      throw bad("EOPNOTSUPP", `format ${format ?? "(stage 2)"} is not supported`, { format: format ?? null });
    const stage = format.includes("-s2-") ? 2 : 1;
    if (flags.nestParent && stage !== 2) throw bad("EOPNOTSUPP", "a nest parent must be a stage-2 table");
    if (flags.pasid && stage !== 1) throw bad("EOPNOTSUPP", "PASID domains must be stage-1 tables");
    if (flags.dirtyTracking && this.hw.httu < 2) throw bad("EOPNOTSUPP", "dirty tracking needs HTTU");
    const g = granules(this.hw).find((x) => format.endsWith(x === 12 ? "-4k" : x === 14 ? "-16k" : "-64k"))!;
    const spec = lpaeGeometry(stage, g, domainInputBits(this.hw, stage, g));
    const fmt = lpaeFormat(spec, flags.dirtyTracking === true);
    const tagId = this.#allocTag(stage === 1 ? this.#asids : this.#vmids, stage === 1 ? "ASID" : "VMID");
    let pt: PageTable;
    try {
      pt = new PageTable(fmt, t);
    } catch (e) {
      (stage === 1 ? this.#asids : this.#vmids).delete(tagId);
      throw e;
    }
    this.#nextId++;
    const sizes = granulePageSizes(g).reduce((b, l) => b | (1n << BigInt(l)), 0n);
    return new SmmuPagingDomain(this, id, spec, flags, pt, fmt, tagId, sizes);
  }

  #allocNested(parent: Domain, data: unknown, flags: DomainFlags): Domain {
    if (!(parent instanceof SmmuPagingDomain) || parent.backend !== this || parent.freed)
      throw bad("EINVAL", "the parent must be a live paging domain of this SMMU");
    if (!parent.flags.nestParent || parent.stage !== 2)
      throw bad("EINVAL", "the parent was not allocated as a nest parent");
    if (!this.hw.s1p) throw bad("EOPNOTSUPP", "nesting needs stage 1");
    const ste = (data as { ste?: unknown } | null)?.ste;
    if (!Array.isArray(ste) || ste.length !== 2) throw bad("EINVAL", "nested data must be { ste: [w0, w1] }");
    let w0: bigint;
    let w1: bigint;
    try {
      w0 = BigInt.asUintN(64, BigInt(ste[0] as string | bigint));
      w1 = BigInt.asUintN(64, BigInt(ste[1] as string | bigint));
    } catch {
      throw bad("EINVAL", "STE words must be bigints or hex strings");
    }
    // arm_smmu_validate_vste: V=0 means abort; only the nesting-allowed fields; Config abort/bypass/S1.
    if ((w0 & 1n) === 0n) {
      w0 = 0n;
      w1 = 0n;
    } else {
      const allowed0 = 0x1n | 0xen | 0x30n | 0x000f_ffff_ffff_ffc0n | (0x1fn << 59n);
      const allowed1 = 0x3n | 0xcn | 0x30n | 0xc0n | (1n << 27n) | (3n << 28n);
      if ((w0 & ~allowed0) !== 0n || (w1 & ~allowed1) !== 0n)
        throw bad("EIO", "the user STE sets fields nesting does not allow");
      const cfg = Number((w0 >> 1n) & 7n);
      if (cfg !== SteConfig.ABORT && cfg !== SteConfig.BYPASS && cfg !== SteConfig.S1_TRANS)
        throw bad("EIO", `user STE Config ${cfg} is not abort, bypass or stage 1`);
      if (((w1 >> 28n) & 3n) === 2n) throw bad("EIO", "user STE EATS=translate is not supported");
    }
    const d = new SmmuNestedDomain(this, this.#nextId++, parent, [w0, w1], flags);
    parent.children++;
    return d;
  }

  /** Releases an ASID/VMID after invalidating everything tagged with it (arm_smmu_domain_free). */
  releaseTag(d: SmmuPagingDomain): void {
    this.#cmdN = 0;
    if (d.stage === 1) {
      this.#pushCmd(CmdOp.TLBI_NH_ASID, (d.tagId & 0xffff) << 16, 0, 0);
      this.#issue();
      this.#asids.delete(d.tagId);
    } else {
      this.#pushCmd(CmdOp.TLBI_S12_VMALL, d.tagId & 0xffff, 0, 0);
      this.#issue();
      this.#vmids.delete(d.tagId);
    }
  }

  /** Range invalidation of a domain (arm_smmu_tlb_inv_range_domain with RIL), CMD_SYNC included. */
  invalidateDomainRange(d: SmmuPagingDomain, iova: number, length: number): void {
    const g = d.spec.granuleLg2;
    const tg = g === 12 ? 1 : g === 14 ? 2 : 3;
    const gs = POW2[g] ?? 2 ** g; // (the 2^n table: Math.pow is slow here)
    this.#cmdN = 0;
    let pages = Math.ceil(length / gs);
    let at = iova - (iova % gs);
    if (pages > 2 ** 20) {
      if (d.stage === 1) this.#pushCmd(CmdOp.TLBI_NH_ASID, (d.tagId & 0xffff) << 16, 0, 0);
      else this.#pushCmd(CmdOp.TLBI_S12_VMALL, d.tagId & 0xffff, 0, 0);
    } else {
      while (pages > 0) {
        // Each command covers (NUM+1) * 2^SCALE granules: 5 bits of the remaining count.
        let scale = 0;
        while (pages % (POW2[scale + 1] ?? 2 ** (scale + 1)) === 0) scale++;
        const num = Math.floor(pages / (POW2[scale] ?? 2 ** scale)) % 32;
        const n = num * (POW2[scale] ?? 2 ** scale);
        if (d.stage === 1) this.#pushTlbi(CmdOp.TLBI_NH_VA, 0, d.tagId, num - 1, scale, tg, at);
        else this.#pushTlbi(CmdOp.TLBI_S2_IPA, d.tagId, 0, num - 1, scale, tg, at);
        at += n * gs;
        pages -= n;
      }
    }
    // A nest parent's change reaches every nested S1 entry of its VMID (Linux: TLBI_NH_ALL).
    if (d.stage === 2 && d.flags.nestParent) this.#pushCmd(CmdOp.TLBI_NH_ALL, d.tagId & 0xffff, 0, 0);
    this.#issue();
  }

  // ---------------------------------------------------------------- STE / CD programming

  #steAddr(rid: number): number {
    if (this.#linear) return this.#strtab + rid * 64;
    const l2 = this.#l2.get(Math.floor(rid / 2 ** STRTAB_SPLIT))!;
    return l2.pa + (rid % 2 ** STRTAB_SPLIT) * 64;
  }

  #s2Fields(d: SmmuPagingDomain): Record<string, bigint | number> {
    const g = d.spec.granuleLg2;
    const lvl = d.spec.startLevel;
    return {
      S2VMID: d.tagId,
      S2T0SZ: 64 - d.spec.inputBits,
      S2SL0: g === 12 ? 2 - lvl : 3 - lvl,
      S2IR0: 1,
      S2OR0: 1,
      S2SH0: 3,
      S2TG: g === 12 ? 0 : g === 16 ? 1 : 2,
      S2PS: paEncoding(this.hw.oas),
      S2AA64: 1,
      S2AFFD: 0,
      S2PTW: 1,
      S2HA: d.flags.dirtyTracking ? 1 : 0,
      S2HD: d.flags.dirtyTracking ? 1 : 0,
      S2R: 1,
      S2TTB: d.pt.root,
    };
  }

  #steWords(dev: DeviceState): bigint[] {
    const slot = dev.slot;
    const dom = slot?.domain;
    const s1Ste = (dss: number): bigint[] => {
      const cd = dev.cd!;
      return encodeSte({
        V: 1,
        Config: SteConfig.S1_TRANS,
        S1Fmt: cd.fmt,
        S1ContextPtr: cd.base,
        S1CDMax: cd.cdMax,
        S1DSS: cd.cdMax > 0 ? dss : 0,
        S1CIR: 1,
        S1COR: 1,
        S1CSH: 3,
      });
    };
    if (dom instanceof SmmuNestedDomain) {
      const [u0, u1] = dom.ste;
      const cfg = Number((u0 >> 1n) & 7n);
      if ((u0 & 1n) === 0n || (cfg & 4) === 0) return encodeSte({ V: 1, Config: SteConfig.ABORT });
      const s2 = encodeSte({
        V: 1,
        Config: cfg === SteConfig.BYPASS ? SteConfig.S2_TRANS : SteConfig.NESTED,
        ...this.#s2Fields(dom.parent),
      });
      if (cfg === SteConfig.S1_TRANS) {
        s2[0] = (s2[0]! & 0xfn) | (u0 & ~0xfn);
        s2[1] = u1 & ~(3n << 28n);
      }
      return s2;
    }
    if (dom instanceof SmmuPagingDomain) {
      if (dom.stage === 2) return encodeSte({ V: 1, Config: SteConfig.S2_TRANS, ...this.#s2Fields(dom) });
      return s1Ste(S1Dss.SSID0);
    }
    const identity = dom?.type === "identity";
    if (dev.pasids.size > 0) return s1Ste(identity ? S1Dss.BYPASS : S1Dss.TERMINATE);
    return encodeSte({ V: 1, Config: identity ? SteConfig.BYPASS : SteConfig.ABORT });
  }

  #writeSte(dev: DeviceState): void {
    const at = this.#steAddr(dev.rid);
    const w = this.#steWords(dev);
    // Word 0 (V, Config) last, so no torn STE is ever valid (arm_smmu_write_entry).
    for (let i = 7; i >= 0; i--) this.memory.write64(at + i * 8, w[i]!);
    this.submit([encodeCommand({ op: CmdOp.CFGI_STE, sid: dev.rid, leaf: 1 })]);
  }

  #needsCd(_dev: DeviceState, slot: DeviceState["slot"], pasids: number): boolean {
    const d = slot?.domain;
    if (d instanceof SmmuPagingDomain) return d.stage === 1 || pasids > 0;
    if (d instanceof SmmuNestedDomain) return false;
    return pasids > 0;
  }

  /** Allocates the device's CD table (and the leaf holding `ssid`, for 2-level); returns what it took. */
  #prepareCd(dev: DeviceState, ssids: readonly number[]): number[] {
    const t = this.#tables!;
    const taken: number[] = [];
    try {
      if (dev.cd === null) {
        const cdMax = dev.ssidBits;
        const fmt = cdMax > CD_SPLIT ? 2 : 0;
        const bytesLg2 = fmt === 2 ? cdMax - CD_SPLIT + 3 : cdMax + 6;
        const base = t.alloc(Math.max(12, bytesLg2), "smmuv3 cd table");
        taken.push(base);
        dev.cd = { base, cdMax, fmt, leaves: new Map() };
      }
      const cd = dev.cd;
      if (cd.fmt === 2) {
        for (const ssid of ssids) {
          const l1 = Math.floor(ssid / 2 ** CD_SPLIT);
          if (!cd.leaves.has(l1)) {
            const pa = t.alloc(CD_SPLIT + 6, "smmuv3 cd leaf");
            taken.push(pa);
            cd.leaves.set(l1, { pa, used: 0 });
            this.memory.write64(cd.base + l1 * 8, encodeL1Cd(true, pa));
          }
        }
      }
    } catch (e) {
      this.#unprepareCd(dev, taken);
      throw e;
    }
    return taken;
  }

  #unprepareCd(dev: DeviceState, taken: readonly number[]): void {
    const cd = dev.cd;
    for (const pa of taken) {
      if (cd !== null && pa === cd.base) {
        dev.cd = null;
      } else if (cd !== null) {
        for (const [l1, leaf] of cd.leaves) {
          if (leaf.pa === pa) {
            cd.leaves.delete(l1);
            this.memory.write64(cd.base + l1 * 8, 0n);
          }
        }
      }
      this.#tables!.free(pa);
    }
  }

  #cdAddr(dev: DeviceState, ssid: number): number {
    const cd = dev.cd!;
    if (cd.fmt === 0) return cd.base + ssid * 64;
    const leaf = cd.leaves.get(Math.floor(ssid / 2 ** CD_SPLIT))!;
    return leaf.pa + (ssid % 2 ** CD_SPLIT) * 64;
  }

  #writeCd(dev: DeviceState, ssid: number, d: SmmuPagingDomain | null): void {
    const cd = dev.cd!;
    const at = this.#cdAddr(dev, ssid);
    const was = this.memory.read32(at) >>> 31 === 1;
    let w: bigint[];
    if (d === null) w = new Array<bigint>(8).fill(0n);
    else {
      const g = d.spec.granuleLg2;
      w = encodeCd({
        T0SZ: 64 - d.spec.inputBits,
        TG0: g === 12 ? 0 : g === 16 ? 1 : 2,
        IR0: 1,
        OR0: 1,
        SH0: 3,
        EPD1: 1,
        V: 1,
        IPS: paEncoding(this.hw.oas),
        AA64: 1,
        HA: this.hw.httu >= 1 ? 1 : 0,
        HD: d.flags.dirtyTracking ? 1 : 0,
        R: 1,
        A: 1,
        ASET: 1,
        ASID: d.tagId,
        TTB0: d.pt.root,
        MAIR,
      });
    }
    // Word 0 (V) last when installing, first when clearing (arm_smmu_write_cd_entry).
    if (d === null) this.memory.write64(at, 0n);
    for (let i = 7; i >= 1; i--) this.memory.write64(at + i * 8, w[i]!);
    if (d !== null) this.memory.write64(at, w[0]!);
    if (cd.fmt === 2) {
      const leaf = cd.leaves.get(Math.floor(ssid / 2 ** CD_SPLIT))!;
      leaf.used += (d !== null ? 1 : 0) - (was ? 1 : 0);
    }
    this.submit([encodeCommand({ op: CmdOp.CFGI_CD, sid: dev.rid, ssid, leaf: 1 })]);
  }

  /** Frees CD leaves with no valid CD, and the whole table when nothing needs it. */
  #trimCd(dev: DeviceState): void {
    const cd = dev.cd;
    if (cd === null) return;
    if (!this.#needsCd(dev, dev.slot, dev.pasids.size)) {
      // The STE no longer points at the table (and was invalidated): free it.
      for (const leaf of cd.leaves.values()) this.#tables!.free(leaf.pa);
      this.#tables!.free(cd.base);
      dev.cd = null;
      return;
    }
    for (const [l1, leaf] of [...cd.leaves]) {
      if (leaf.used === 0) {
        this.memory.write64(cd.base + l1 * 8, 0n);
        this.submit([encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: dev.rid })]);
        this.#tables!.free(leaf.pa);
        cd.leaves.delete(l1);
      }
    }
  }

  // ---------------------------------------------------------------- attach

  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    this.#driver();
    const dev = this.#device(rid);
    assertIntentAllowed(this.capabilities(rid), intent);
    if (!(domain instanceof SmmuDomain) || domain.backend !== this)
      throw bad("EINVAL", "the domain belongs to another IOMMU", { rid });
    if (domain.freed) throw bad("EINVAL", `domain ${domain.id} was freed`, { id: domain.id });
    switch (intent.kind) {
      case "rid": {
        if (domain instanceof SmmuNestedDomain)
          throw bad("EINVAL", "a nested domain attaches with rid-all-pasids");
        if (domain instanceof SmmuPagingDomain && domain.stage === 2 && dev.pasids.size > 0)
          throw bad("EINVAL", "PASIDs are attached: the RID needs a stage-1 domain", { rid });
        this.#setSlot(dev, domain.type === "blocked" ? null : { kind: "rid", domain });
        return {};
      }
      case "rid-all-pasids": {
        if (!(domain instanceof SmmuNestedDomain))
          throw bad("EINVAL", "rid-all-pasids needs a nested domain");
        if (dev.pasids.size > 0) throw bad("EINVAL", "PASIDs are attached to this device", { rid });
        this.#setSlot(dev, { kind: "rid-all-pasids", domain });
        return {};
      }
      case "pasid": {
        const pasid = intent.pasid as number;
        if (pasid === 0) throw bad("EINVAL", "SubstreamID 0 serves the RID (S1DSS=SSID0)", { pasid });
        if (domain.type === "blocked") {
          this.detach(rid, intent);
          return { pasid };
        }
        if (!(domain instanceof SmmuPagingDomain) || domain.stage !== 1)
          throw bad("EINVAL", "a PASID needs a stage-1 paging domain", { pasid });
        const rd = dev.slot?.domain;
        if (rd instanceof SmmuNestedDomain || (rd instanceof SmmuPagingDomain && rd.stage === 2))
          throw bad("EINVAL", "the RID's domain cannot serve PASIDs", { rid });
        const steChanges = dev.pasids.size === 0;
        this.#prepareCd(dev, [pasid]); // CD table and leaf first: ENOMEM leaves nothing behind
        const old = dev.pasids.get(pasid);
        dev.pasids.set(pasid, domain);
        old?.users.delete(`${rid}:${pasid}`);
        domain.users.add(`${rid}:${pasid}`);
        this.#writeCd(dev, pasid, domain);
        // The first PASID turns an abort/bypass STE into stage 1 (S1DSS terminate/bypass);
        // a stage-1 RID already points at the CD table.
        if (steChanges && !(dev.slot?.domain instanceof SmmuPagingDomain)) this.#writeSte(dev);
        return { pasid };
      }
      default:
        throw bad("EOPNOTSUPP", `intent ${intent.kind} is not supported`);
    }
  }

  #setSlot(dev: DeviceState, slot: DeviceState["slot"]): void {
    const needCd = this.#needsCd(dev, slot, dev.pasids.size);
    const s1 = slot?.domain instanceof SmmuPagingDomain && slot.domain.stage === 1;
    if (needCd) this.#prepareCd(dev, s1 ? [0] : []);
    const old = dev.slot;
    dev.slot = slot;
    old?.domain.users.delete(`${dev.rid}:-1`);
    slot?.domain.users.add(`${dev.rid}:-1`);
    if (s1) this.#writeCd(dev, 0, slot.domain as SmmuPagingDomain);
    else if (dev.cd !== null && old?.domain instanceof SmmuPagingDomain && old.domain.stage === 1 && needCd)
      this.#writeCd(dev, 0, null);
    this.#writeSte(dev);
    this.#trimCd(dev);
  }

  detach(rid: number, intent: AttachIntent): void {
    this.#driver();
    const dev = this.#device(rid);
    if (intent.kind === "pasid") {
      const pasid = intent.pasid;
      if (typeof pasid !== "number") return;
      const d = dev.pasids.get(pasid);
      if (d === undefined) return;
      dev.pasids.delete(pasid);
      d.users.delete(`${rid}:${pasid}`);
      this.#writeCd(dev, pasid, null);
      if (dev.pasids.size === 0 && !(dev.slot?.domain instanceof SmmuPagingDomain)) this.#writeSte(dev);
      this.#trimCd(dev);
      return;
    }
    if (dev.slot === null || dev.slot.kind !== intent.kind) return;
    this.#setSlot(dev, null);
  }

  attached(rid: number, intent: AttachIntent): Domain | null {
    const dev = this.#device(rid);
    if (intent.kind === "pasid")
      return typeof intent.pasid === "number" ? (dev.pasids.get(intent.pasid) ?? null) : null;
    return dev.slot !== null && dev.slot.kind === intent.kind ? dev.slot.domain : null;
  }

  // ---------------------------------------------------------------- translation

  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    return this.hw.translate(rid, pasid, iova, access, out);
  }

  translateBig(rid: number, pasid: number, iova: bigint, access: number): TranslationOutcome {
    const out = createTranslation();
    return outcomeOf(this.hw.translateBigInto(rid, pasid, iova, access, out), out);
  }

  counters(): CacheCounters {
    return this.hw.snapshotCounters();
  }

  flushCaches(): void {
    this.hw.flushCaches();
  }

  explain(rid: number, pasid: number, iova: bigint, access: number): readonly WalkStep[] {
    return this.hw.explain(rid, pasid, iova, access);
  }

  /** Events the SMMU wrote since the last drain, decoded; advances EVENTQ_CONS as a driver does. */
  drainEvents(): EventRecord[] {
    const base = this.hw.readRegister("EVENTQ_BASE");
    const log2 = Math.min(Number(base & 0x1fn), this.hw.eventqsMax);
    const addr = Number(base & 0x000f_ffff_ffff_ffe0n);
    const size = 2 ** log2;
    const mask = size * 2 - 1;
    const prod = Number(this.hw.readRegister("EVENTQ_PROD")) & mask;
    let cons = Number(this.hw.readRegister("EVENTQ_CONS")) & mask;
    const out: EventRecord[] = [];
    for (let n = 0; n < size && cons !== prod; n++) {
      const at = addr + (cons & (size - 1)) * 32;
      const w: bigint[] = [];
      for (let i = 0; i < 4; i++) w.push(this.memory.read64(at + i * 8));
      out.push(decodeEvent(w));
      cons = (cons + 1) & mask;
    }
    const ovf = Number(this.hw.readRegister("EVENTQ_PROD")) & 0x8000_0000;
    this.hw.writeRegister("EVENTQ_CONS", BigInt((cons | ovf) >>> 0)); // OVACKFLG follows OVFLG
    return out;
  }

  dump(rid?: number): unknown {
    const regs = Object.fromEntries(Object.entries(this.hw.registers()).map(([k, v]) => [k, hex(v)]));
    const one = (sid: number): unknown => {
      const dev = this.#devices.get(sid);
      const steps = this.hw.describe(sid);
      const cds: Record<string, unknown> = {};
      if (dev?.cd) {
        for (const ssid of [0, ...dev.pasids.keys()]) {
          const at = this.#cdAddr(dev, ssid);
          const w: bigint[] = [];
          for (let i = 0; i < 8; i++) w.push(this.memory.read64(at + i * 8));
          const f = decodeCd(w);
          if (f.V === 1n) cds[ssid] = Object.fromEntries(Object.entries(f).map(([k, v]) => [k, hex(v)]));
        }
      }
      let ste: unknown = null;
      const steStep = steps.find((s) => s.what === "STE" && s.raw !== undefined);
      if (steStep?.raw)
        ste = Object.fromEntries(
          Object.entries(decodeSte(steStep.raw.map((r) => BigInt(r)))).map(([k, v]) => [k, hex(v)]),
        );
      return { streamId: sid, steps, ste, cds };
    };
    const sids =
      rid !== undefined ? [rid] : this.#devices.size > 0 ? [...this.#devices.keys()] : this.#scanSids();
    return {
      kind: this.kind,
      name: this.name,
      registers: regs,
      counters: this.counters(),
      streams: sids.map(one),
    };
  }

  #scanSids(): number[] {
    const out: number[] = [];
    const limit = Math.min(2 ** Math.min(this.hw.sidBits, 12), 4096);
    for (let sid = 0; sid < limit; sid++) {
      const steps = this.hw.describe(sid);
      const ste = steps.find((s) => s.what === "STE");
      if (ste !== undefined && !ste.note.startsWith("abort") && !ste.note.includes("V=0")) out.push(sid);
    }
    return out;
  }

  /** Decodes a raw command (for tools). */
  static decode(cmd: Command): string {
    return SmmuHw.commandName(cmd.op);
  }
}

/** The registered `smmuv3` backend kind. */
export const smmuv3Backend: BackendFactory = {
  name: "smmuv3",
  description:
    "ARM SMMUv3 (IHI 0070): stream table, STE/CD, VMSAv8-64 stage 1/2/nested, command and event queues",
  configSchema: SMMUV3_CONFIG_SCHEMA,
  registerDefaults: Object.freeze(registersFor()),
  create(ctx: BackendContext, config?: unknown): Backend {
    const c = checkConfig(config);
    const b = new SmmuV3Backend(ctx.memory, ctx.tables, ctx.name, registersFor(c), c.iotlbSizeLg2 ?? 14);
    b.initDriver(c);
    return b;
  },
  fromRegisters(memory: PhysicalMemory, registers: Readonly<Record<string, bigint>>): Backend {
    const regs = { ...registersFor(), ...registers };
    return new SmmuV3Backend(memory, null, "smmuv3-snapshot", regs, 14);
  },
};
