/**
 * The VT-d backend: the driver half over the hardware model. What the contract's
 * addDevice / allocDomain / attach / map / unmap / invalidate do is what Linux's
 * intel-iommu driver does (drivers/iommu/intel/iommu.c, pasid.c, nested.c): allocate
 * table pages, write root / context / PASID entries and paging entries into physical
 * memory, and submit the invalidation descriptors a careful driver submits, through
 * its own invalidation queue in memory, which the hardware half consumes. Translation
 * always goes through the hardware half (registers, caches, walker).
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
  DomainType,
  IovaRange,
  PhysicalMemory,
  TableAllocator,
  Translation,
  TranslationOutcome,
  WalkStep,
} from "@iommu-kit/core";
import {
  Access,
  assertIntentAllowed,
  createTranslation,
  hex,
  IommuError,
  makeFault,
  NO_PASID,
  outcomeOf,
  Perm,
  pageSizeBitmap,
  parseU64,
} from "@iommu-kit/core";
import type { PtFormat } from "@iommu-kit/core/driver";
import { PageTable } from "@iommu-kit/core/driver";
import { reduceBig } from "./fast-path.ts";
import { encodeContextEntry, encodeScalableContextEntry, Tt } from "./format/context-entry.ts";
import { Fr } from "./format/fault-record.ts";
import { fsFormat } from "./format/fs-pte.ts";
import type { InvDescriptor } from "./format/inv-desc.ts";
import { encodeDescriptor, encodeDescriptorHalves } from "./format/inv-desc.ts";
import type { PasidEntry } from "./format/pasid-entry.ts";
import { EMPTY_PASID_ENTRY, encodePasidDirEntry, encodePasidEntry, Pgtt } from "./format/pasid-entry.ts";
import { Fsts, Gcmd, IQA_DW, Reg } from "./format/registers.ts";
import { encodeRootEntry, encodeScalableRootEntry } from "./format/root-entry.ts";
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
import { readWords, writeWords } from "./internal/words.ts";
import type { Cfg } from "./walk.ts";
import { Kind } from "./walk.ts";

/** iommu_hwpt_vtd_s1 flags (include/uapi/linux/iommufd.h). */
export const VtdS1Flags = {
  SRE: 1,
  EAFE: 2,
  WPE: 4,
} as const;

/** IOMMU_VTD_INV_FLAGS_LEAF. */
export const VTD_INV_FLAGS_LEAF = 1;

/** Nested-domain data (struct iommu_hwpt_vtd_s1). */
export interface VtdS1Data {
  readonly flags?: number;
  /** GPA of the user's first-stage table. */
  readonly pgtblAddr: number | string;
  readonly addrWidth: 48 | 57;
}

/** One nested invalidation entry (struct iommu_hwpt_vtd_s1_invalidate). */
export interface VtdS1Invalidation {
  readonly addr: number | string;
  /** 0 or U64_MAX = everything. */
  readonly npages: number | string;
  readonly flags?: number;
}

const U64_MAX = (1n << 64n) - 1n;
const RID_PASID = 0;
const MAX_DID = 65535;
/** Perm.R | Perm.W as a module-local constant (map's per-call check). */
const PERM_RW: number = Perm.R | Perm.W;

/** What a VT-d domain is: second-stage, first-stage, nested, identity or blocked. */
export type DomainKind = "ss" | "fs" | "nested" | "identity" | "blocked";

/** A domain of a VT-d backend. */
export class VtdDomain implements Domain {
  readonly backend: VtdBackend;
  readonly id: number;
  readonly type: DomainType;
  readonly format: string;
  readonly flags: DomainFlags;
  readonly aperture: IovaRange;
  readonly pageSizeBitmap: bigint;
  /** Domain identifier (0 for blocked). */
  readonly did: number;
  readonly kind: DomainKind;
  /** Levels of its table (paging), or of the user's first stage (nested). */
  readonly levels: number;
  readonly table: PageTable | null;
  /** Nested: the second-stage parent and the user's first-stage data. */
  readonly parent: VtdDomain | null;
  readonly s1: { readonly flags: number; readonly pgtbl: number; readonly levels: number } | null;
  /** Attach points holding it: "rid:pasid" (pasid -1 = the RID). */
  readonly users: Set<string> = new Set();
  /** Nested domains built over it. */
  readonly children: Set<VtdDomain> = new Set();
  dirtyTracking = false;
  #freed = false;

  constructor(
    backend: VtdBackend,
    id: number,
    init: {
      type: DomainType;
      kind: DomainKind;
      format: string;
      flags: DomainFlags;
      did: number;
      levels: number;
      table: PageTable | null;
      parent: VtdDomain | null;
      s1: { flags: number; pgtbl: number; levels: number } | null;
      pageSizes: number[];
    },
  ) {
    this.backend = backend;
    this.id = id;
    this.type = init.type;
    this.kind = init.kind;
    this.format = init.format;
    this.flags = init.flags;
    this.did = init.did;
    this.levels = init.levels;
    this.table = init.table;
    this.parent = init.parent;
    this.s1 = init.s1;
    this.pageSizeBitmap = pageSizeBitmap(init.pageSizes);
    const bits =
      init.kind === "ss"
        ? 12 + 9 * init.levels
        : init.kind === "fs" || init.kind === "nested"
          ? 11 + 9 * init.levels
          : 0;
    this.aperture = bits === 0 ? { start: 0, last: 0 } : { start: 0, last: Math.min(2 ** bits, 2 ** 53) - 1 };
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#freed;
  }

  #paging(op: string): PageTable {
    if (this.#freed)
      throw new IommuError("EINVAL", `${op} on freed VT-d domain ${this.id}`, { domain: this.id });
    if (this.table === null)
      throw new IommuError("EINVAL", `${op} needs a paging domain, not ${this.type}`, { domain: this.id });
    return this.table;
  }

  map(iova: number, pa: number, length: number, prot: number): void {
    const t = this.#paging("map");
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length <= 0)
      throw new IommuError("EINVAL", `map ${iova}+${length} is not a valid range`, { iova, length });
    if (iova + length - 1 > this.aperture.last)
      throw new IommuError("EINVAL", `map ${hex(iova)}+${hex(length)} is outside the aperture`, {
        iova,
        length,
      });
    if (!Number.isSafeInteger(pa) || pa < 0 || pa + length > 2 ** this.backend.haw)
      throw new IommuError("EINVAL", `map target ${pa} is beyond the host address width`, { pa });
    if ((prot & PERM_RW) === 0)
      throw new IommuError("EINVAL", `map needs read or write permission (prot ${prot})`, { prot });
    t.map(iova, pa, length, prot);
    // Not-present entries are never cached without caching mode (spec 6.1), so a map
    // needs no invalidation unless CAP.CM is set.
    if (this.backend.cachingMode) this.backend.flushRange(this, iova, length);
  }

  unmap(iova: number, length: number): number {
    const t = this.#paging("unmap");
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0)
      throw new IommuError("EINVAL", `unmap ${iova}+${length} is not a valid range`, { iova, length });
    const n = t.unmap(iova, length);
    if (n > 0) this.backend.flushRange(this, iova, length);
    return n;
  }

  iovaToPhys(iova: number): number {
    if (this.#freed) return -1;
    if (this.kind === "identity") return iova;
    if (this.table !== null) return this.table.lookup(iova)?.pa ?? -1;
    if (this.kind === "nested") return this.backend.nestedToPhys(this, iova);
    return -1;
  }

  free(): void {
    if (this.#freed)
      throw new IommuError("EINVAL", `VT-d domain ${this.id} is already freed`, { domain: this.id });
    if (this.users.size > 0)
      throw new IommuError("EBUSY", `VT-d domain ${this.id} is attached ${this.users.size} time(s)`, {
        domain: this.id,
      });
    if (this.children.size > 0)
      throw new IommuError(
        "EBUSY",
        `VT-d domain ${this.id} is the parent of ${this.children.size} nested domain(s)`,
        {
          domain: this.id,
        },
      );
    this.#freed = true;
    this.table?.destroy();
    this.parent?.children.delete(this);
    this.backend.releaseDomain(this);
  }

  setDirtyTracking(enable: boolean): void {
    this.#paging("setDirtyTracking");
    if (!this.flags.dirtyTracking)
      throw new IommuError("EINVAL", "domain was not allocated with dirty tracking", { domain: this.id });
    this.backend.setDirtyTracking(this, enable);
  }

  readDirty(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void {
    const t = this.#paging("readDirty");
    if (!this.flags.dirtyTracking)
      throw new IommuError("EINVAL", "domain was not allocated with dirty tracking", { domain: this.id });
    const page = 2 ** pageSizeLg2;
    const pages = Math.ceil(length / page);
    if (bitmap.length * 8 < pages)
      throw new IommuError("EINVAL", `bitmap of ${bitmap.length} bytes < ${pages} pages`, { pages });
    let cleared = false;
    t.forEachLeaf(iova, length, (base, sizeLg2, words, w) => {
      if ((words[w]! & (1 << 9)) === 0) return;
      const from = Math.max(base, iova);
      const to = Math.min(base + 2 ** sizeLg2, iova + length);
      for (let p = Math.floor((from - iova) / page); p * page + iova < to; p++)
        bitmap[p >>> 3]! |= 1 << (p & 7);
      if (!noClear) {
        words[w] = (words[w]! & ~(1 << 9)) >>> 0;
        cleared = true;
      }
    });
    if (cleared) this.backend.flushRange(this, iova, length);
  }

  /**
   * Nested domains: processes iommu_hwpt_vtd_s1_invalidate entries in order (PASID-based
   * IOTLB invalidation for every PASID the domain is attached to). Returns the count;
   * a bad entry throws EINVAL with details.handled.
   */
  invalidate(entries: readonly unknown[]): number {
    if (this.kind !== "nested")
      throw new IommuError("EOPNOTSUPP", "only nested VT-d domains take user invalidations", {
        domain: this.id,
      });
    let handled = 0;
    for (const raw of entries) {
      const e = raw as Partial<VtdS1Invalidation> | null;
      let addr: bigint;
      let npages: bigint;
      try {
        if (e === null || typeof e !== "object" || e.addr === undefined || e.npages === undefined) throw 0;
        addr = parseU64(e.addr);
        npages = parseU64(e.npages);
      } catch {
        throw new IommuError("EINVAL", `invalidation entry ${handled} is malformed`, { handled });
      }
      const flags = e.flags ?? 0;
      // Linux intel_nested_cache_invalidate_user: only the LEAF flag, 4K-aligned addresses,
      // and "all" (U64_MAX) only from address 0.
      if (typeof flags !== "number" || (flags & ~VTD_INV_FLAGS_LEAF) !== 0)
        throw new IommuError("EINVAL", `invalidation entry ${handled} has unknown flags ${flags}`, {
          handled,
        });
      if (addr % 4096n !== 0n || (npages === U64_MAX && addr !== 0n))
        throw new IommuError("EINVAL", `invalidation entry ${handled} address ${hex(addr)} is invalid`, {
          handled,
        });
      const all = npages === 0n || npages === U64_MAX;
      this.backend.flushNested(this, all, addr, npages, (flags & VTD_INV_FLAGS_LEAF) !== 0);
      handled++;
    }
    return handled;
  }
}

interface Device {
  readonly spec: DeviceSpec;
  readonly caps: Capabilities;
  /** Scalable mode: PASID directory and its size. */
  readonly dirPa: number;
  readonly pdts: number;
  /** PASID tables by directory index. */
  readonly pasidTables: Map<number, number>;
  rid: VtdDomain | null;
  readonly pasids: Map<number, VtdDomain>;
}

/** A VT-d unit: hardware model plus (unless built from registers) the driver half. */
export class VtdBackend implements Backend {
  readonly kind = "vtd";
  readonly name: string;
  readonly memory: PhysicalMemory;
  /** The hardware model. */
  readonly hw: VtdHardware;
  /** Null for a hardware-model-only instance (fromRegisters). */
  readonly tables: TableAllocator | null;
  readonly scalable: boolean;
  readonly haw: number;
  readonly cachingMode: boolean;
  readonly #devices = new Map<number, Device>();
  /** Context tables by bus (legacy) or bus * 2 + upper (scalable). */
  readonly #contextTables = new Map<number, number>();
  #root = 0;
  #queue = 0;
  #status = 0;
  #tail = 0;
  #seq = 0;
  #gcmd = 0;
  #nextDomain = 1;
  #nextDid = 1;
  readonly #freeDids: number[] = [];
  /** Fault records the driver's handler drained (newest last, at most 256). */
  readonly faultLog: Array<readonly [bigint, bigint]> = [];

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
    if (tables !== null) this.#initDriver(tables);
  }

  // ------------------------------------------------------------ driver setup

  #initDriver(tables: TableAllocator): void {
    const hw = this.hw;
    this.#root = tables.alloc(12, "vtd root table");
    this.#queue = tables.alloc(12, "vtd invalidation queue");
    this.#status = tables.alloc(12, "vtd wait status");
    // Root table pointer with TTM (legacy 00b / scalable 01b), then SRTP (spec 10.4.6).
    hw.writeRegister(Reg.RTADDR, BigInt(this.#root) | (this.scalable ? 1n << 10n : 0n));
    this.#writeGcmd(Gcmd.SRTP);
    // Global context-cache and IOTLB invalidation through the registers before QI (Linux iommu_flush_*).
    hw.writeRegister(Reg.CCMD, (1n << 63n) | (1n << 61n));
    hw.writeRegister(hw.ivaOffset + 8, (1n << 63n) | (1n << 60n));
    // Invalidation queue: one page, 256-bit descriptors in scalable mode (Linux dmar_enable_qi).
    hw.writeRegister(Reg.IQA, BigInt(this.#queue) | (this.scalable ? BigInt(IQA_DW) : 0n));
    hw.writeRegister(Reg.IQT, 0n);
    this.#gcmd |= Gcmd.QIE;
    this.#writeGcmd(0);
    // Fault events unmasked; the handler drains the records (Linux dmar_fault).
    hw.onFaultEvent = () => this.#serviceFaults();
    hw.writeRegister(Reg.FECTL, 0n, 4);
    this.#gcmd |= Gcmd.TE;
    this.#writeGcmd(0);
  }

  #writeGcmd(oneShot: number): void {
    this.hw.writeRegister(Reg.GCMD, BigInt((this.#gcmd | oneShot) >>> 0), 4);
  }

  #serviceFaults(): void {
    const hw = this.hw;
    for (const { index, words } of hw.pendingFaults()) {
      this.faultLog.push(words);
      if (this.faultLog.length > 256) this.faultLog.shift();
      hw.writeRegister(hw.frcdOffset + index * 16 + 12, 1n << 31n, 4);
    }
    hw.writeRegister(Reg.FSTS, BigInt(Fsts.PFO), 4);
  }

  /** Submits descriptors and a wait descriptor, then checks completion (spec 6.5.2.8). */
  submit(descs: readonly InvDescriptor[]): void {
    const hw = this.hw;
    const size = hw.descriptorBytes;
    const entries = hw.queueEntries;
    const per = entries - 2;
    let i = 0;
    for (;;) {
      const end = Math.min(descs.length, i + per);
      this.#seq = (this.#seq + 1) >>> 0;
      for (let k = i; k < end; k++) this.#put(descs[k]!, size, entries);
      this.#put(
        {
          type: "wait",
          ifl: false,
          sw: true,
          fn: true,
          pd: false,
          statusData: this.#seq,
          statusAddr: this.#status,
        },
        size,
        entries,
      );
      i = end > i ? end : i + 1;
      hw.writeQueueTail(this.#tail * size);
      if (hw.fsts & Fsts.IQE || this.memory.read32(this.#status) !== this.#seq) {
        throw new Error(`VT-d invalidation queue error (FSTS ${hex(hw.fsts)}, IQERCD ${hex(hw.iqercd)})`);
      }
      if (i >= descs.length) break;
    }
  }

  /** Scratch for one descriptor's 32-bit halves. */
  readonly #halves = new Uint32Array(4);

  /** Writes one descriptor at the queue tail (zero upper half in a 256-bit queue) and advances it. */
  #put(d: InvDescriptor, size: number, entries: number): void {
    const at = this.#queue + this.#tail * size;
    const page = this.memory.writePage(Math.floor(at / 4096));
    if (page === null) {
      // Not RAM: the 64-bit path reports the bus error.
      const words = encodeDescriptor(d);
      writeWords(this.memory, at, size === 32 ? [...words, 0n, 0n] : words);
    } else {
      const h = this.#halves;
      encodeDescriptorHalves(d, h, 0);
      const w = (at & 0xfff) >>> 2;
      page[w] = h[0]!;
      page[w + 1] = h[1]!;
      page[w + 2] = h[2]!;
      page[w + 3] = h[3]!;
      if (size === 32) page.fill(0, w + 4, w + 8);
    }
    this.#tail = (this.#tail + 1) % entries;
  }

  // ----------------------------------------------------------------- devices

  #driver(op: string): TableAllocator {
    if (this.tables === null)
      throw new IommuError(
        "EOPNOTSUPP",
        `${op}: this VT-d instance is a hardware model built from registers`,
      );
    return this.tables;
  }

  addDevice(spec: DeviceSpec): void {
    const tables = this.#driver("addDevice");
    if (!Number.isInteger(spec.rid) || spec.rid < 0 || spec.rid > 0xffff)
      throw new IommuError("EINVAL", `VT-d source-id ${spec.rid} is not a 16-bit number`, { rid: spec.rid });
    if (this.#devices.has(spec.rid))
      throw new IommuError("EEXIST", `VT-d device ${spec.rid} exists`, { rid: spec.rid });
    if (!Number.isInteger(spec.pasidBits) || spec.pasidBits < 0 || spec.pasidBits > 20)
      throw new IommuError("EINVAL", `pasidBits ${spec.pasidBits} is not in [0, 20]`, {
        pasidBits: spec.pasidBits,
      });
    const caps = capabilitiesFor(
      this.hw.cap,
      this.hw.ecap,
      this.hw.capReg,
      this.hw.ecapReg,
      this.haw,
      this.scalable,
      spec,
    );
    const bus = spec.rid >>> 8;
    const devfn = spec.rid & 0xff;
    const key = this.scalable ? bus * 2 + (devfn >= 128 ? 1 : 0) : bus;
    const fresh: number[] = [];
    let ctxTable = this.#contextTables.get(key);
    let dirPa = 0;
    let pdts = 0;
    try {
      if (ctxTable === undefined) {
        ctxTable = tables.alloc(12, "vtd context table");
        fresh.push(ctxTable);
      }
      if (this.scalable) {
        // A directory entry covers 64 PASIDs; PDTS gives 2^(PDTS+7) entries (spec 9.4).
        const dirEntries = 2 ** Math.max(0, Math.max(caps.maxPasidLog2, 1) - 6);
        pdts = Math.max(0, Math.ceil(Math.log2(dirEntries)) - 7);
        dirPa = tables.alloc(Math.max(12, pdts + 10), "vtd PASID directory");
        fresh.push(dirPa);
      }
    } catch (e) {
      for (const pa of fresh) tables.free(pa);
      throw e;
    }
    if (!this.#contextTables.has(key)) {
      this.#contextTables.set(key, ctxTable);
      this.#writeRootEntry(bus);
    }
    const dev: Device = { spec, caps, dirPa, pdts, pasidTables: new Map(), rid: null, pasids: new Map() };
    this.#devices.set(spec.rid, dev);
    if (this.scalable) {
      // Present context entry, blocked through an empty PASID directory (RID_PASID 0).
      const words = encodeScalableContextEntry({
        present: true,
        fpd: false,
        dte: spec.ats === true && this.hw.ecap.dt,
        paside: caps.maxPasidLog2 > 0,
        pre: false,
        pdts,
        pasidDirPtr: dirPa,
        ridPasid: RID_PASID,
        ridPriv: false,
      });
      writeWords(this.memory, ctxTable + (devfn & 0x7f) * 32, words);
    }
    // Linux context_present_cache_flush: device-selective context-cache invalidation.
    this.submit([{ type: "context-cache", g: 3, did: 0, sid: spec.rid, fm: 0 }]);
  }

  #writeRootEntry(bus: number): void {
    const at = this.#root + bus * 16;
    if (this.scalable) {
      const lower = this.#contextTables.get(bus * 2);
      const upper = this.#contextTables.get(bus * 2 + 1);
      writeWords(
        this.memory,
        at,
        encodeScalableRootEntry({
          lowerPresent: lower !== undefined,
          lowerCtp: lower ?? 0,
          upperPresent: upper !== undefined,
          upperCtp: upper ?? 0,
        }),
      );
    } else {
      writeWords(this.memory, at, encodeRootEntry({ present: true, ctp: this.#contextTables.get(bus)! }));
    }
  }

  #device(rid: number): Device {
    const d = this.#devices.get(rid);
    if (d === undefined) throw new IommuError("ENOENT", `no VT-d device with rid ${rid}`, { rid });
    return d;
  }

  #ctxEntryPa(rid: number): number {
    const bus = rid >>> 8;
    const devfn = rid & 0xff;
    if (this.scalable)
      return this.#contextTables.get(bus * 2 + (devfn >= 128 ? 1 : 0))! + (devfn & 0x7f) * 32;
    return this.#contextTables.get(bus)! + devfn * 16;
  }

  removeDevice(rid: number): void {
    this.#driver("removeDevice");
    const d = this.#device(rid);
    if (d.rid !== null || d.pasids.size > 0)
      throw new IommuError("EBUSY", `VT-d device ${rid} is attached`, { rid });
    writeWords(this.memory, this.#ctxEntryPa(rid), this.scalable ? [0n, 0n, 0n, 0n] : [0n, 0n]);
    this.submit([
      { type: "context-cache", g: 3, did: 0, sid: rid, fm: 0 },
      ...(this.scalable ? [{ type: "pasid-cache", g: 3, did: 0, pasid: 0 } as const] : []),
    ]);
    for (const pa of d.pasidTables.values()) this.tables!.free(pa);
    if (this.scalable) this.tables!.free(d.dirPa);
    this.#devices.delete(rid);
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
    return this.#device(rid).caps;
  }

  reservedRegions(_rid: number): readonly IovaRange[] {
    // The interrupt address range is never remapped (spec 3.15; Linux intel_iommu_get_resv_regions).
    return [{ start: 0xfee00000, last: 0xfeefffff }];
  }

  // ----------------------------------------------------------------- domains

  #allocDid(): number {
    const reused = this.#freeDids.pop();
    if (reused !== undefined) return reused;
    if (this.#nextDid > MAX_DID) throw new IommuError("ENOSPC", "no free VT-d domain identifier");
    return this.#nextDid++;
  }

  allocDomain(request: DomainRequest): Domain {
    const tables = this.#driver("allocDomain");
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
        did: this.#allocDid(),
        levels: 0,
        table: null,
        parent: null,
        s1: null,
        pageSizes: [],
      });
    }
    if (request.rid !== undefined) this.#device(request.rid);
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
      did = this.#allocDid();
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
      did: this.#allocDid(),
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
    if (d.did === 0) return;
    const descs: InvDescriptor[] = [
      { type: "iotlb", g: 2, dr: true, dw: true, did: d.did, addr: 0, ih: false, am: 0 },
    ];
    if (this.scalable) descs.push({ type: "pasid-cache", g: 0, did: d.did, pasid: 0 });
    this.submit(descs);
    this.#freeDids.push(d.did);
  }

  // ------------------------------------------------------------------ attach

  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    this.#driver("attach");
    const dev = this.#device(rid);
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
      this.#setPasid(dev, pasid, dom.kind === "blocked" ? null : dom);
      return { pasid };
    }
    if (dom.kind === "blocked") this.#setRid(dev, null);
    else this.#setRid(dev, dom);
    return {};
  }

  detach(rid: number, intent: AttachIntent): void {
    if (this.tables === null) return;
    const dev = this.#device(rid);
    if (intent.kind === "pasid") {
      if (typeof intent.pasid !== "number") throw new IommuError("EINVAL", "detach needs the PASID number");
      if (!dev.pasids.has(intent.pasid)) return;
      this.#setPasid(dev, intent.pasid, null);
      return;
    }
    if (intent.kind !== "rid" || dev.rid === null) return;
    this.#setRid(dev, null);
  }

  attached(rid: number, intent: AttachIntent): Domain | null {
    if (this.tables === null) return null;
    const d = this.#device(rid);
    if (intent.kind === "pasid")
      return typeof intent.pasid === "number" ? (d.pasids.get(intent.pasid) ?? null) : null;
    return intent.kind === "rid" ? d.rid : null;
  }

  #setRid(dev: Device, dom: VtdDomain | null): void {
    const old = dev.rid;
    if (old === dom) return;
    if (this.scalable) {
      this.#writePasidEntry(dev, RID_PASID, dom, old);
    } else {
      const words = dom === null ? [0n, 0n] : this.#legacyContext(dev, dom);
      writeWords(this.memory, this.#ctxEntryPa(dev.spec.rid), words);
      // Context change: device-selective context cache, then the old domain's IOTLB (spec 6.5.3.3).
      const descs: InvDescriptor[] = [
        { type: "context-cache", g: 3, did: old?.did ?? 0, sid: dev.spec.rid, fm: 0 },
      ];
      if (old !== null && old.did !== 0)
        descs.push({ type: "iotlb", g: 2, dr: true, dw: true, did: old.did, addr: 0, ih: false, am: 0 });
      if (dev.spec.ats === true) descs.push(devTlbAll(dev.spec.rid));
      this.submit(descs);
    }
    old?.users.delete(`${dev.spec.rid}:-1`);
    dom?.users.add(`${dev.spec.rid}:-1`);
    dev.rid = dom;
  }

  #legacyContext(dev: Device, dom: VtdDomain): bigint[] {
    const ats = dev.spec.ats === true && this.hw.ecap.dt;
    if (dom.kind === "identity") {
      const aw = this.hw.cap.sagaw & 8 ? 3 : this.hw.cap.sagaw & 4 ? 2 : 1;
      return encodeContextEntry({
        present: true,
        fpd: false,
        tt: Tt.PASS_THROUGH,
        slptptr: 0,
        aw,
        did: dom.did,
      });
    }
    return encodeContextEntry({
      present: true,
      fpd: false,
      tt: ats ? Tt.DEVICE_TLB : Tt.TRANSLATE,
      slptptr: dom.table!.root,
      aw: dom.levels - 2,
      did: dom.did,
    });
  }

  #setPasid(dev: Device, pasid: number, dom: VtdDomain | null): void {
    const old = dev.pasids.get(pasid) ?? null;
    if (old === dom) return;
    this.#writePasidEntry(dev, pasid, dom, old);
    old?.users.delete(`${dev.spec.rid}:${pasid}`);
    if (dom === null) dev.pasids.delete(pasid);
    else {
      dom.users.add(`${dev.spec.rid}:${pasid}`);
      dev.pasids.set(pasid, dom);
    }
  }

  /** Writes the PASID entry of `pasid` for `dom` (null = blocked) and invalidates as Linux's pasid.c does. */
  #writePasidEntry(dev: Device, pasid: number, dom: VtdDomain | null, old: VtdDomain | null): void {
    const dirIndex = pasid >>> 6;
    let table = dev.pasidTables.get(dirIndex);
    if (table === undefined) {
      if (dom === null) return;
      table = this.tables!.alloc(12, "vtd PASID table");
      dev.pasidTables.set(dirIndex, table);
      writeWords(this.memory, dev.dirPa + dirIndex * 8, [
        encodePasidDirEntry({ present: true, fpd: false, tablePtr: table }),
      ]);
    }
    const entry = dom === null ? EMPTY_PASID_ENTRY : this.#pasidEntry(dom);
    writeWords(this.memory, table + (pasid & 0x3f) * 64, encodePasidEntry(entry));
    const descs: InvDescriptor[] = [];
    if (old !== null) {
      // pasid_cache PASID-selective for the old DID, then its translations (Linux intel_pasid_tear_down_entry).
      descs.push({ type: "pasid-cache", g: 1, did: old.did, pasid });
      if (old.kind === "fs" || old.kind === "nested")
        descs.push({ type: "pasid-iotlb", g: 2, did: old.did, pasid, addr: 0, ih: false, am: 0 });
      else descs.push({ type: "iotlb", g: 2, dr: true, dw: true, did: old.did, addr: 0, ih: false, am: 0 });
      if (dev.spec.ats === true)
        descs.push(pasid === RID_PASID ? devTlbAll(dev.spec.rid) : pasidDevTlbAll(dev.spec.rid, pasid));
    }
    if (descs.length > 0) this.submit(descs);
  }

  #pasidEntry(dom: VtdDomain): PasidEntry {
    const pwsnp = this.hw.ecap.smpwcs;
    const base = { ...EMPTY_PASID_ENTRY, present: true, did: dom.did, pwsnp };
    switch (dom.kind) {
      case "identity":
        return { ...base, pgtt: Pgtt.PASS_THROUGH, aw: this.hw.cap.sagaw & 4 ? 2 : 1, sre: true };
      case "ss":
        return {
          ...base,
          pgtt: Pgtt.SECOND_STAGE,
          aw: dom.levels - 2,
          ssptptr: dom.table!.root,
          ssade: dom.dirtyTracking,
          sre: true,
        };
      case "fs":
        return {
          ...base,
          pgtt: Pgtt.FIRST_STAGE,
          aw: 2,
          fsptptr: dom.table!.root,
          fspm: dom.levels === 5 ? 1 : 0,
          sre: true,
        };
      default: {
        const p = dom.parent!;
        const s1 = dom.s1!;
        return {
          ...base,
          pgtt: Pgtt.NESTED,
          aw: p.levels - 2,
          ssptptr: p.table!.root,
          ssade: p.dirtyTracking,
          fsptptr: s1.pgtbl,
          fspm: s1.levels === 5 ? 1 : 0,
          sre: (s1.flags & VtdS1Flags.SRE) !== 0,
          eafe: (s1.flags & VtdS1Flags.EAFE) !== 0,
          wpe: (s1.flags & VtdS1Flags.WPE) !== 0,
        };
      }
    }
  }

  /** The (DID, PASID) tags a domain's translations carry, and the ATS source-ids behind it. */
  #tagsOf(d: VtdDomain): { pasids: number[]; ats: InvDescriptor[] } {
    const pasids = new Set<number>();
    const ats: InvDescriptor[] = [];
    for (const u of d.users) {
      const [r, p] = u.split(":").map(Number) as [number, number];
      pasids.add(p < 0 ? (this.scalable ? RID_PASID : 0) : p);
      if (this.#devices.get(r)?.spec.ats === true) ats.push(p < 0 ? devTlbAll(r) : pasidDevTlbAll(r, p));
    }
    return { pasids: [...pasids], ats };
  }

  /** Invalidates a changed IOVA range of a paging domain (Linux cache_tag_flush_range). */
  flushRange(d: VtdDomain, iova: number, length: number): void {
    const { addr, am } = psiRange(iova, length);
    const mamv = this.hw.cap.mamv;
    const descs: InvDescriptor[] = [];
    if (d.kind === "ss") {
      descs.push(
        am > mamv
          ? { type: "iotlb", g: 2, dr: true, dw: true, did: d.did, addr: 0, ih: false, am: 0 }
          : { type: "iotlb", g: 3, dr: true, dw: true, did: d.did, addr, ih: false, am },
      );
      // Nested domains over this parent cache IOVA -> HPA through it.
      for (const c of d.children)
        descs.push({ type: "iotlb", g: 2, dr: true, dw: true, did: c.did, addr: 0, ih: false, am: 0 });
    } else {
      for (const pasid of this.#tagsOf(d).pasids) {
        descs.push(
          am > mamv
            ? { type: "pasid-iotlb", g: 2, did: d.did, pasid, addr: 0, ih: false, am: 0 }
            : { type: "pasid-iotlb", g: 3, did: d.did, pasid, addr, ih: false, am },
        );
      }
    }
    this.#pushAts(d, descs);
    for (const c of d.children) this.#pushAts(c, descs);
    this.submit(descs);
  }

  /** Appends #tagsOf(d).ats to `descs` (per unmap: no Set, no split). */
  #pushAts(d: VtdDomain, descs: InvDescriptor[]): void {
    for (const u of d.users) {
      const colon = u.indexOf(":");
      const r = Number(u.slice(0, colon));
      if (this.#devices.get(r)?.spec.ats !== true) continue;
      const p = Number(u.slice(colon + 1));
      descs.push(p < 0 ? devTlbAll(r) : pasidDevTlbAll(r, p));
    }
  }

  /** Nested user invalidation: PASID-based IOTLB for every PASID the domain serves. */
  flushNested(d: VtdDomain, all: boolean, addr: bigint, npages: bigint, leaf: boolean): void {
    const descs: InvDescriptor[] = [];
    const { pasids, ats } = this.#tagsOf(d);
    let am = 0;
    while (1n << BigInt(am) < npages) am++;
    const start = Number(addr - (addr % (1n << BigInt(12 + am))));
    for (const pasid of pasids) {
      descs.push(
        all || am > this.hw.cap.mamv || addr >= 2n ** 53n
          ? { type: "pasid-iotlb", g: 2, did: d.did, pasid, addr: 0, ih: false, am: 0 }
          : { type: "pasid-iotlb", g: 3, did: d.did, pasid, addr: start, ih: leaf, am },
      );
    }
    descs.push(...ats);
    this.submit(descs);
  }

  /** Turns second-stage A/D on or off in every PASID entry using the domain (Linux intel_pasid_setup_dirty_tracking). */
  setDirtyTracking(d: VtdDomain, enable: boolean): void {
    if (d.dirtyTracking === enable) return;
    d.dirtyTracking = enable;
    const users = [...d.users, ...[...d.children].flatMap((c) => [...c.users])];
    for (const u of users) {
      const [r, p] = u.split(":").map(Number) as [number, number];
      const dev = this.#devices.get(r)!;
      const pasid = p < 0 ? RID_PASID : p;
      const holder = p < 0 ? dev.rid! : dev.pasids.get(p)!;
      const table = dev.pasidTables.get(pasid >>> 6)!;
      writeWords(this.memory, table + (pasid & 0x3f) * 64, encodePasidEntry(this.#pasidEntry(holder)));
      this.submit([
        { type: "pasid-cache", g: 1, did: holder.did, pasid },
        { type: "iotlb", g: 2, dr: true, dw: true, did: holder.did, addr: 0, ih: false, am: 0 },
      ]);
    }
  }

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

  // -------------------------------------------------------------- translate

  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    return this.hw.translate(rid, pasid, iova, access, out);
  }

  translateBig(rid: number, pasid: number, iova: bigint, access: number): TranslationOutcome {
    const out = createTranslation();
    if (iova < 0n || iova > U64_MAX) throw new IommuError("EINVAL", `iova ${iova} is not a 64-bit address`);
    if (iova < 2n ** 53n) return outcomeOf(this.translate(rid, pasid, Number(iova), access, out), out);
    const hw = this.hw;
    const page = Number(iova - (iova % 4096n));
    const offset = Number(iova % 4096n);
    if (!hw.enabled) {
      // Untranslated, but no physical address reaches 2^53 (HAW is at most 52 bits).
      out.fault = makeFault("address-size", false, {
        vendor: "intel-vtd",
        code: null,
        name: "untranslated address beyond the host address width",
        fields: { SID: rid, PASID: pasid === NO_PASID ? null : pasid, FI: hex(page) },
      });
      return outcomeOf(false, out);
    }
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
    // Not cached: the IOTLB is keyed by numbers below 2^53.
    const ok = hw.walkAndFill(r, rid, pasid, red.addr, access, priv, red.upper, out, false);
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
    if (iova < 0n || iova > U64_MAX) throw new IommuError("EINVAL", `iova ${iova} is not a 64-bit address`);
    if (iova < 2n ** 53n) return this.hw.explainWalk(rid, pasid, Number(iova), access);
    return this.hw.explainWalk(rid, pasid, 0, access, iova);
  }

  dump(rid?: number): unknown {
    return dumpUnit(this.hw, this.memory, rid);
  }

  /** Reads the raw words of the context entry of `rid` (tests, dumps). */
  contextEntryWords(rid: number): bigint[] | null {
    return readWords(this.memory, this.#ctxEntryPa(rid), this.scalable ? 4 : 2);
  }
}

function pasidDevTlbAll(sid: number, pasid: number): InvDescriptor {
  // PASID-based device-TLB invalidation of everything (Linux qi_flush_dev_iotlb_pasid, spec 6.5.2.7).
  return {
    type: "pasid-dev-tlb",
    sid,
    pasid,
    pfsid: sid,
    qdep: 0,
    global: false,
    s: true,
    addr: 0x7ffffffffffff000,
  };
}

function devTlbAll(sid: number): InvDescriptor {
  // Device-TLB invalidation of the whole range: ADDR with S = 1 and bit 63 clear (spec 6.5.2.5).
  return { type: "dev-tlb", sid, pfsid: sid, qdep: 0, s: true, addr: 0x7ffffffffffff000 };
}

/** The smallest naturally aligned power-of-two block (addr, AM) covering [iova, iova + length). */
export function psiRange(iova: number, length: number): { addr: number; am: number } {
  // Halve both page numbers until they meet (no 2 ** am: a Math.pow call per step).
  let first = Math.floor(iova / 4096);
  let last = Math.floor((iova + Math.max(length, 1) - 1) / 4096);
  let am = 0;
  let block = 4096;
  while (first !== last) {
    first = Math.floor(first / 2);
    last = Math.floor(last / 2);
    am++;
    block *= 2;
  }
  return { addr: first * block, am };
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
    regs[n] = v;
  }
  const haw = Number(regs.HAW);
  if (!Number.isInteger(haw) || haw < 32 || haw > 52)
    throw new IommuError("EINVAL", `HAW ${haw} is not in [32, 52]`);
  const hw = new VtdHardware(memory, { cap: regs.CAP!, ecap: regs.ECAP!, haw });
  hw.writeRegister(Reg.RTADDR, regs.RTADDR!);
  hw.writeRegister(Reg.IQA, regs.IQA!);
  const gsts = Number(regs.GSTS! & 0xffffffffn);
  // Latch the root pointer as SRTP did, then set the status bits as the snapshot has them.
  hw.rta = Number((regs.RTADDR! >> 12n) << 12n);
  hw.ttm = Number((regs.RTADDR! >> 10n) & 3n);
  hw.gsts = gsts >>> 0;
  hw.enabled = (gsts & Gcmd.TE) !== 0;
  hw.gcmd = Number(regs.GCMD! & 0xffffffffn);
  hw.fsts = Number(regs.FSTS! & 0xffffffffn);
  hw.fectl = Number(regs.FECTL! & 0xffffffffn);
  hw.iqh = regs.IQH!;
  hw.iqt = regs.IQT!;
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
