/**
 * The VT-d backend: the core contract's glue over the two halves of a VT-d unit. The
 * hardware half (hardware.ts: registers and queues, Intel VT-d spec chapters 6, 7, 10;
 * fast-path.ts, config-cache.ts, iotlb.ts, walk.ts: caches and walks, spec 3.4-3.8,
 * 6.1-6.2) translates; the driver half (driver/devices.ts, driver/queue.ts) programs it
 * as Linux's intel-iommu does (drivers/iommu/intel/iommu.c, pasid.c, nested.c): table
 * pages, root / context / PASID entries, and the invalidation descriptors a careful
 * driver submits through its own queue in memory. Domains are in domain.ts. Level names
 * of the paging tables follow generic_pt/fmt/vtdss.h (PTE = 0, PDE = 1, PDPE = 2,
 * PML4E = 3, PML5E = 4).
 *
 * Mapping decisions: device rid = source-id (bus << 8 | devfn). `rid` intent = legacy
 * context entry, or in scalable mode the PASID entry of RID_PASID (0); `pasid` intent
 * = PASID table entry (1..2^maxPasidLog2 - 1). `rid-all-pasids` and `emulated` are
 * refused: VT-d keeps the PASID table host-owned.
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
  IovaRange,
  PageRequest,
  PageResponseCode,
  PhysicalMemory,
  TableAllocator,
  Translation,
  TranslationOutcome,
  Viommu,
  ViommuRequest,
  WalkStep,
} from "@iommu-kit/core";
import {
  Access,
  assertIntentAllowed,
  createTranslation,
  hex,
  IommuError,
  NO_PASID,
  outcomeOf,
  parseU64,
} from "@iommu-kit/core";
import type { PtFormat } from "@iommu-kit/core/driver";
import { PageTable } from "@iommu-kit/core/driver";
import type { VtdDomainHost, VtdS1Data } from "./domain.ts";
import { VtdDomain } from "./domain.ts";
import { RID_PASID, VtdDriver } from "./driver/devices.ts";
import type { BadPageRequest } from "./driver/prq.ts";
import { Fr } from "./format/fault-record.ts";
import { fsFormat } from "./format/fs-pte.ts";
import type { InvDescriptor } from "./format/inv-desc.ts";
import { Gcmd, Reg } from "./format/registers.ts";
import { ssFormat } from "./format/ss-pte.ts";
import { VtdHardware } from "./hardware.ts";
import type { ResolvedConfig } from "./hw-info.ts";
import {
  capabilitiesFor,
  formatsFor,
  pageSizesFor,
  registersFor,
  resolveConfig,
  vtdConfigSchema,
} from "./hw-info.ts";
import { isReadFault } from "./internal/config.ts";
import { dumpUnit } from "./internal/dump.ts";
import { readWords } from "./internal/words.ts";
import type { Cfg } from "./walk.ts";
import { Kind, reduceBig } from "./walk.ts";

export type { DomainKind, VtdDomainHost, VtdS1Data, VtdS1Invalidation } from "./domain.ts";
export { VTD_INV_FLAGS_LEAF, VtdDomain, VtdS1Flags } from "./domain.ts";
export { psiRange } from "./driver/devices.ts";

const U64_MAX = (1n << 64n) - 1n;

/** A VT-d unit: hardware model plus (unless built from registers) the driver half. */
export class VtdBackend implements Backend, VtdDomainHost {
  readonly kind = "vtd";
  readonly name: string;
  readonly memory: PhysicalMemory;
  /**
   * The hardware model. `declare`: no field definition (undefined first); the
   * constructor's store creates it, written once, so V8 treats it as constant and folds
   * a hit path through a known backend.
   */
  declare readonly hw: VtdHardware;
  /** Null for a hardware-model-only instance (fromRegisters). */
  readonly tables: TableAllocator | null;
  readonly scalable: boolean;
  readonly haw: number;
  readonly cachingMode: boolean;
  /** Fault records the driver's handler drained (newest last, at most 256). */
  readonly faultLog: Array<readonly [bigint, bigint]>;
  /** The driver half; null for a hardware-model-only instance. */
  readonly #driver: VtdDriver | null;
  #nextDomain = 1;

  constructor(
    name: string,
    memory: PhysicalMemory,
    hw: VtdHardware,
    tables: TableAllocator | null,
    scalable: boolean,
    haw: number,
  ) {
    this.name = name;
    this.memory = memory;
    this.hw = hw;
    this.tables = tables;
    this.scalable = scalable;
    this.haw = haw;
    this.cachingMode = hw.cap.cm;
    this.#driver = tables === null ? null : new VtdDriver(hw, memory, tables, scalable, haw);
    this.faultLog = this.#driver?.queue.faultLog ?? [];
  }

  /** The driver half, or EOPNOTSUPP for an instance built from registers. */
  #need(op: string): VtdDriver {
    if (this.#driver === null)
      throw new IommuError(
        "EOPNOTSUPP",
        `${op}: this VT-d instance is a hardware model built from registers`,
      );
    return this.#driver;
  }

  /** Submits descriptors and a wait descriptor, then checks completion (spec 6.5.2.8). */
  submit(descs: readonly InvDescriptor[]): void {
    this.#need("submit").queue.submit(descs);
  }

  // ----------------------------------------------------------------- devices

  addDevice(spec: DeviceSpec): void {
    this.#need("addDevice").addDevice(spec);
  }

  removeDevice(rid: number): void {
    this.#need("removeDevice").removeDevice(rid);
  }

  capabilities(rid: number): Capabilities {
    if (this.tables === null) {
      return capabilitiesFor(
        this.hw.cap,
        this.hw.ecap,
        this.hw.capReg,
        this.hw.ecapReg,
        this.haw,
        this.hw.ttm === 1,
        {
          pasidBits: this.hw.ecap.pss + 1,
        },
      );
    }
    return this.#need("capabilities").device(rid).caps;
  }

  reservedRegions(_rid: number): readonly IovaRange[] {
    // The interrupt address range is never remapped (spec 3.15; Linux intel_iommu_get_resv_regions).
    return [{ start: 0xfee00000, last: 0xfeefffff }];
  }

  allocDomain(request: DomainRequest): Domain {
    const drv = this.#need("allocDomain");
    const tables = drv.tables;
    const cap = this.hw.cap;
    const ecap = this.hw.ecap;
    if (request.type === "blocked") {
      return new VtdDomain(this, this.#nextDomain++, {
        type: "blocked",
        kind: "blocked",
        format: "",
        flags: {},
        did: 0,
        levels: 0,
        table: null,
        parent: null,
        s1: null,
        pageSizes: [],
      });
    }
    if (request.type === "identity") {
      if (!ecap.pt) throw new IommuError("EOPNOTSUPP", "this VT-d unit has no pass-through (ECAP.PT = 0)");
      return new VtdDomain(this, this.#nextDomain++, {
        type: "identity",
        kind: "identity",
        format: "",
        flags: {},
        did: this.#need("allocDomain").allocDid(),
        levels: 0,
        table: null,
        parent: null,
        s1: null,
        pageSizes: [],
      });
    }
    if (request.rid !== undefined) drv.device(request.rid);
    const flags = request.flags ?? {};
    if (request.type === "nested") return this.#allocNested(request.parent, request.data, flags);
    const formats = formatsFor(cap, ecap, this.scalable);
    const format = request.format ?? formats[0]!;
    if (!formats.includes(format))
      throw new IommuError("EOPNOTSUPP", `VT-d has no paging format ${format} here`, { format });
    const ss = format.startsWith("vtd-ss");
    if (flags.nestParent && (!ss || !this.scalable || !ecap.nest))
      throw new IommuError("EOPNOTSUPP", "a nest parent must be a second-stage domain on a nesting unit", {
        format,
      });
    if (flags.dirtyTracking && (!ss || !this.scalable || !ecap.ssads))
      throw new IommuError("EOPNOTSUPP", "dirty tracking needs second-stage A/D (ECAP.SSADS)", { format });
    const levels = Number(format.charAt(7));
    const maxLeaf = ss ? (cap.sllps & 2 ? 2 : cap.sllps & 1 ? 1 : 0) : cap.fs1gp ? 2 : 1;
    const fmt: PtFormat = ss ? ssFormat(levels, maxLeaf) : fsFormat(levels, maxLeaf);
    const table = new PageTable(fmt, tables);
    let did: number;
    try {
      did = this.#need("allocDomain").allocDid();
    } catch (e) {
      table.destroy();
      throw e;
    }
    return new VtdDomain(this, this.#nextDomain++, {
      type: "paging",
      kind: ss ? "ss" : "fs",
      format,
      flags: { ...flags },
      did,
      levels,
      table,
      parent: null,
      s1: null,
      pageSizes: pageSizesFor(format, cap),
    });
  }

  #allocNested(parent: Domain, data: unknown, flags: DomainFlags): Domain {
    if (!this.scalable || !this.hw.ecap.nest)
      throw new IommuError("EOPNOTSUPP", "this VT-d unit does not support nesting");
    const p = this.#own(parent);
    if (p.kind !== "ss" || !p.flags.nestParent)
      throw new IommuError("EINVAL", `domain ${p.id} is not a second-stage nest parent`, { domain: p.id });
    const d = data as Partial<VtdS1Data> | null;
    if (d === null || typeof d !== "object")
      throw new IommuError("EINVAL", "nested VT-d domains need iommu_hwpt_vtd_s1 data");
    const f = d.flags ?? 0;
    if (typeof f !== "number" || !Number.isInteger(f) || (f & ~7) !== 0)
      throw new IommuError("EINVAL", `unknown iommu_hwpt_vtd_s1 flags ${String(f)}`, { flags: String(f) });
    if (d.addrWidth !== 48 && d.addrWidth !== 57)
      throw new IommuError("EINVAL", `addrWidth must be 48 or 57, got ${String(d.addrWidth)}`);
    if (d.addrWidth === 57 && !this.hw.cap.fs5lp)
      throw new IommuError("EINVAL", "57-bit first stage needs CAP.FS5LP");
    let pgtbl: bigint;
    try {
      if (d.pgtblAddr === undefined) throw 0;
      pgtbl = parseU64(d.pgtblAddr);
    } catch {
      throw new IommuError("EINVAL", `pgtblAddr ${String(d.pgtblAddr)} is not an address`);
    }
    if (pgtbl % 4096n !== 0n || pgtbl >= 2n ** BigInt(12 + 9 * p.levels))
      throw new IommuError("EINVAL", `pgtblAddr ${hex(pgtbl)} is not a page inside the parent's input range`);
    if (flags.nestParent || flags.dirtyTracking)
      throw new IommuError("EOPNOTSUPP", "nested domains take no nest-parent or dirty-tracking flag");
    const levels = d.addrWidth === 57 ? 5 : 4;
    const dom = new VtdDomain(this, this.#nextDomain++, {
      type: "nested",
      kind: "nested",
      format: `vtd-fs-${levels}lvl`,
      flags: { ...flags },
      did: this.#need("allocDomain").allocDid(),
      levels,
      table: null,
      parent: p,
      s1: { flags: f, pgtbl: Number(pgtbl), levels },
      pageSizes: pageSizesFor("vtd-fs", this.hw.cap),
    });
    p.children.add(dom);
    return dom;
  }

  #own(domain: Domain): VtdDomain {
    if (!(domain instanceof VtdDomain) || domain.backend !== this)
      throw new IommuError(
        "EINVAL",
        `domain ${domain.id} belongs to another backend (${domain.backend.name})`,
        {
          domain: domain.id,
        },
      );
    if (domain.freed) throw new IommuError("EINVAL", `domain ${domain.id} is freed`, { domain: domain.id });
    return domain;
  }

  /** Called by VtdDomain.free: invalidates everything tagged with its DID and recycles the DID. */
  releaseDomain(d: VtdDomain): void {
    this.#driver?.releaseDomain(d);
  }

  // ------------------------------------------------------------------ attach

  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    const drv = this.#need("attach");
    const dev = drv.device(rid);
    assertIntentAllowed(dev.caps, intent);
    const dom = this.#own(domain);
    if (!this.scalable && (dom.kind === "fs" || dom.kind === "nested"))
      throw new IommuError("EINVAL", `a ${dom.format} domain needs scalable mode`, { domain: dom.id });
    if (intent.kind === "pasid") {
      const pasid = intent.pasid as number;
      if (pasid === RID_PASID)
        throw new IommuError("EINVAL", `PASID ${RID_PASID} is RID_PASID: attach it with the rid intent`, {
          pasid,
        });
      drv.setPasid(dev, pasid, dom.kind === "blocked" ? null : dom);
      return { pasid };
    }
    if (dom.kind === "blocked") drv.setRid(dev, null);
    else drv.setRid(dev, dom);
    return {};
  }

  detach(rid: number, intent: AttachIntent): void {
    if (this.#driver === null) return;
    const drv = this.#driver;
    const dev = drv.device(rid);
    if (intent.kind === "pasid") {
      if (typeof intent.pasid !== "number") throw new IommuError("EINVAL", "detach needs the PASID number");
      if (!dev.pasids.has(intent.pasid)) return;
      drv.setPasid(dev, intent.pasid, null);
      return;
    }
    if (intent.kind !== "rid" || dev.rid === null) return;
    drv.setRid(dev, null);
  }

  attached(rid: number, intent: AttachIntent): Domain | null {
    if (this.#driver === null) return null;
    const d = this.#driver.device(rid);
    if (intent.kind === "pasid")
      return typeof intent.pasid === "number" ? (d.pasids.get(intent.pasid) ?? null) : null;
    return intent.kind === "rid" ? d.rid : null;
  }

  // ---------------------------------------------------------- page requests

  /**
   * Answers a page request group the driver reported (a fault's `pageRequest`) with a
   * page group response descriptor, as intel_iommu_page_response (driver/prq.ts).
   * ENOENT when that group is not pending; EINVAL for a malformed request or code;
   * EOPNOTSUPP on an instance built from registers.
   */
  pageResponse(request: PageRequest, code: PageResponseCode): void {
    this.#need("pageResponse").prq.pageResponse(request, code);
  }

  /** The page requests reported and not answered yet, in group order (tests, dumps). */
  pendingPageRequests(): PageRequest[] {
    const p = this.#driver?.prq.pending ?? new Map<number, PageRequest>();
    return [...p.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  }

  /** Page requests the driver refused (handle_bad_prq_event), newest last. */
  refusedPageRequests(): readonly BadPageRequest[] {
    return this.#driver?.prq.badLog ?? [];
  }

  /**
   * IOMMU_VIOMMU_ALLOC: VT-d has no vIOMMU type in Linux 6.15 (intel_iommu_ops has no
   * viommu_alloc, so iommufd_viommu_alloc_ioctl answers EOPNOTSUPP). Always throws.
   */
  allocViommu(request: ViommuRequest): Viommu {
    throw new IommuError("EOPNOTSUPP", `VT-d hosts no vIOMMU (type ${String(request?.type)})`, {
      type: String(request?.type),
    });
  }

  // ------------------------------------------------------------ invalidation

  /** Invalidates a changed IOVA range of a paging domain (Linux cache_tag_flush_range). */
  flushRange(d: VtdDomain, iova: number, length: number, ih = false): void {
    this.#need("flushRange").flushRange(d, iova, length, ih);
  }

  /** Nested user invalidation: PASID-based IOTLB for every PASID the domain serves. */
  flushNested(d: VtdDomain, all: boolean, addr: bigint, npages: bigint, leaf: boolean): void {
    this.#need("flushNested").flushNested(d, all, addr, npages, leaf);
  }

  /** Turns second-stage A/D on or off in every PASID entry using the domain (Linux intel_pasid_setup_dirty_tracking). */
  setDirtyTracking(d: VtdDomain, enable: boolean): void {
    this.#need("setDirtyTracking").setDirtyTracking(d, enable);
  }

  // -------------------------------------------------------------- translate

  /** Software walk of a nested domain (no caches, no faults, no A/D writes). */
  nestedToPhys(d: VtdDomain, iova: number): number {
    const p = d.parent!;
    const s1 = d.s1!;
    const cfg: Cfg = {
      sid: 0,
      pasid: 0,
      did: d.did,
      tag: 0,
      kind: Kind.NESTED,
      legacy: false,
      fpd: true,
      ssRoot: p.table!.root,
      ssLevels: p.levels,
      ssee: false,
      ssade: false,
      fsRoot: s1.pgtbl,
      fsLevels: s1.levels,
      sre: true,
      wpe: false,
      eafe: false,
      pwsnp: true,
      ridPriv: false,
    };
    const w = this.hw.walker;
    w.dryRun = true;
    try {
      return w.walk(cfg, iova, 1, true, false) === 0 ? w.pa : -1;
    } finally {
      w.dryRun = false;
    }
  }

  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    return this.hw.translate(rid, pasid, iova, access, out);
  }

  translateBig(rid: number, pasid: number, iova: bigint, access: number): TranslationOutcome {
    const out = createTranslation();
    checkBigIova(iova);
    if (iova < 2n ** 53n) return outcomeOf(this.translate(rid, pasid, Number(iova), access, out), out);
    const hw = this.hw;
    // Misuse is refused as translate refuses it, before any table is read.
    hw.checkRequest(rid, pasid, 0);
    const page = Number(iova - (iova % 4096n));
    const offset = Number(iova % 4096n);
    // Untranslated, but no physical address reaches 2^53 (HAW is at most 52 bits).
    if (!hw.enabled) return outcomeOf(hw.untranslatedBeyondHaw(out, rid, pasid, page), out);
    const r = hw.resolve(rid, pasid);
    if (isReadFault(r)) {
      hw.fault(out, r.fr, r.fpd, rid, pasid, page, access);
      return outcomeOf(false, out);
    }
    const priv = pasid === NO_PASID ? r.ridPriv : (access & Access.PRIV) !== 0;
    if (priv && !r.sre && !r.legacy) {
      hw.fault(out, Fr.SM_SRE_CLEAR, r.fpd, rid, pasid, page, access);
      return outcomeOf(false, out);
    }
    if (r.kind === Kind.PASS_THROUGH) {
      hw.fault(out, r.legacy ? Fr.BEYOND_AGAW : Fr.SM_BEYOND_AGAW, r.fpd, rid, pasid, page, access);
      return outcomeOf(false, out);
    }
    const red = reduceBig(r, iova);
    if (typeof red === "number") {
      hw.fault(out, red, r.fpd, rid, pasid, page, access);
      return outcomeOf(false, out);
    }
    // Not cached: the IOTLB is keyed by numbers below 2^53. No page request either: its
    // address travels as a number below 2^53 (a fault here stays unrecoverable).
    hw.prq.suspended = true;
    let ok: boolean;
    try {
      ok = hw.walkAndFill(r, rid, pasid, red.addr, access, priv, red.upper, out, false);
    } finally {
      hw.prq.suspended = false;
    }
    if (ok) out.pa += offset;
    return outcomeOf(ok, out);
  }

  counters(): CacheCounters {
    return this.hw.counters();
  }

  flushCaches(): void {
    this.hw.flushAll();
  }

  explain(rid: number, pasid: number, iova: bigint, access: number): readonly WalkStep[] {
    checkBigIova(iova);
    if (iova < 2n ** 53n) return this.hw.explainWalk(rid, pasid, Number(iova), access);
    return this.hw.explainWalk(rid, pasid, 0, access, iova);
  }

  dump(rid?: number): unknown {
    return dumpUnit(this.hw, this.memory, rid);
  }

  /** Reads the raw words of the context entry of `rid` (tests, dumps). */
  contextEntryWords(rid: number): bigint[] | null {
    return readWords(this.memory, this.#need("contextEntryWords").ctxEntryPa(rid), this.scalable ? 4 : 2);
  }
}

/** Refuses an input address that is not a bigint in [0, 2^64) (misuse, IommuError EINVAL). */
function checkBigIova(iova: bigint): void {
  if (typeof iova !== "bigint" || iova < 0n || iova > U64_MAX)
    throw new IommuError("EINVAL", `iova ${String(iova)} is not a 64-bit address`, { iova: String(iova) });
}

/** Register names accepted by fromRegisters and their defaults (a fresh unit, most capable). */
function defaultRegisters(): Record<string, bigint> {
  const { cap, ecap } = registersFor(resolveConfig({}));
  return {
    CAP: cap,
    ECAP: ecap,
    GCMD: 0n,
    GSTS: 0n,
    RTADDR: 0n,
    FSTS: 0n,
    FECTL: 0x80000000n,
    IQA: 0n,
    IQH: 0n,
    IQT: 0n,
    HAW: 52n,
  };
}

/** Builds a VT-d backend (driver half included) in a host's memory. */
export function createVtd(ctx: BackendContext, config?: unknown): VtdBackend {
  const c: ResolvedConfig = resolveConfig(config);
  const { cap, ecap } = registersFor(c);
  const hw = new VtdHardware(ctx.memory, { cap, ecap, haw: c.haw, iotlbSizeLg2: c.iotlbSizeLg2 });
  return new VtdBackend(ctx.name, ctx.memory, hw, ctx.tables, c.scalable, c.haw);
}

/**
 * A hardware-model-only instance over an existing memory image: register values as a
 * driver left them (names without prefix, any case, optional "_REG"; missing ones take
 * the defaults). RTADDR is taken as latched (as after SRTP); GSTS.TES enables
 * translation. HAW (the host address width, from the DMAR table rather than a
 * register) is accepted as a pseudo-register. No side effects run.
 */
export function vtdFromRegisters(
  memory: PhysicalMemory,
  registers: Readonly<Record<string, bigint>>,
): VtdBackend {
  const regs = { ...defaultRegisters() };
  for (const [k, v] of Object.entries(registers)) {
    const n = k.toUpperCase().replace(/_REG$/, "");
    if (!(n in regs) && !["CCMD", "IVA", "IOTLB", "ICS"].includes(n))
      throw new IommuError("EINVAL", `unknown VT-d register ${k}`, { register: k });
    if (typeof v !== "bigint")
      throw new IommuError("EINVAL", `register ${k} is not a bigint`, { register: k });
    // Registers are unsigned 64-bit values: a negative bigint stands for its two's-complement pattern.
    regs[n] = n === "HAW" ? v : BigInt.asUintN(64, v);
  }
  const haw = Number(regs.HAW);
  if (!Number.isInteger(haw) || haw < 32 || haw > 52)
    throw new IommuError("EINVAL", `HAW ${haw} is not in [32, 52]`);
  const hw = new VtdHardware(memory, { cap: regs.CAP!, ecap: regs.ECAP!, haw });
  hw.writeRegister(Reg.RTADDR, regs.RTADDR!);
  hw.writeRegister(Reg.IQA, regs.IQA!);
  const gsts = Number(regs.GSTS! & 0xffffffffn);
  // Latch the root pointer as SRTP did, then set the status bits as the snapshot has them.
  hw.rta = Number((hw.rtaddr >> 12n) << 12n);
  hw.ttm = Number((hw.rtaddr >> 10n) & 3n);
  hw.gsts = gsts >>> 0;
  hw.enabled = (gsts & Gcmd.TE) !== 0;
  hw.gcmd = Number(regs.GCMD! & 0xffffffffn);
  hw.fsts = Number(regs.FSTS! & 0xffffffffn);
  hw.fectl = Number(regs.FECTL! & 0xffffffffn);
  // IQH_REG QH and IQT_REG QT are bits 18:4 (spec 11.4.10.1, 11.4.10.2).
  hw.iqh = regs.IQH! & 0x7fff0n;
  hw.iqt = regs.IQT! & 0x7fff0n;
  hw.ccmd = regs.CCMD ?? 0n;
  hw.iva = regs.IVA ?? 0n;
  hw.iotlbReg = regs.IOTLB ?? 0n;
  hw.ics = Number((regs.ICS ?? 0n) & 1n);
  return new VtdBackend("vtd-snapshot", memory, hw, null, hw.ttm === 1, haw);
}

/** The VT-d backend factory ("vtd"). */
export const vtdBackend: BackendFactory = {
  name: "vtd",
  description:
    "Intel VT-d: legacy and scalable mode, first/second-stage and nested walks, context/PASID/IOTLB caches, queued invalidation, fault records.",
  configSchema: vtdConfigSchema,
  create: (ctx: BackendContext, config?: unknown): Backend => createVtd(ctx, config),
  registerDefaults: defaultRegisters(),
  fromRegisters: (memory: PhysicalMemory, registers: Readonly<Record<string, bigint>>): Backend =>
    vtdFromRegisters(memory, registers),
};
