/**
 * The `Host` facade: iommufd in miniature as a programmatic API (the CLI and the
 * scenario runner are built on it). One physical memory, any number of IOMMU
 * instances (backends found by name in a registry), devices behind them, and
 * iommufd's numbered objects.
 *
 * ```ts
 * const host = new Host();                       // RAM [0, 4 GiB), tables [4 GiB, +256 MiB)
 * await host.loadBackend("smmuv3");
 * host.addIommu("smmu0", "smmuv3");
 * const dev = host.addDevice({ iommu: "smmu0", rid: 0x10, pasidBits: 20 });
 * const ioas = host.ioasAlloc();
 * const iova = host.ioasMap(ioas, { length: 0x10000, pa: 0x100000, prot: "rw" });
 * const { hwpt } = host.attach(dev, "rid", ioas); // automatic paging HWPT
 * host.dma(dev, { iova, access: "write", data: new Uint8Array([1, 2, 3]) });
 * ```
 *
 * Method -> iommufd ioctl: `ioasAlloc` IOMMU_IOAS_ALLOC, `ioasMap` IOMMU_IOAS_MAP,
 * `ioasUnmap` / `ioasUnmapAll` IOMMU_IOAS_UNMAP, `ioasCopy` IOMMU_IOAS_COPY,
 * `ioasIovaRanges` IOMMU_IOAS_IOVA_RANGES, `ioasAllowIovas` IOMMU_IOAS_ALLOW_IOVAS,
 * `hwptAlloc` IOMMU_HWPT_ALLOC, `attach` / `replace` / `detach`
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH (+ the access calls for `emulated`),
 * `hwInfo` IOMMU_GET_HW_INFO, `invalidate` IOMMU_HWPT_INVALIDATE, `dirtySet`
 * IOMMU_HWPT_SET_DIRTY_TRACKING, `dirtyRead` IOMMU_HWPT_GET_DIRTY_BITMAP,
 * `faultQueueAlloc` IOMMU_FAULT_QUEUE_ALLOC, `destroy` IOMMU_DESTROY.
 *
 * Errors are {@link IommuError}s with iommufd's errno names. Every operation is
 * atomic: when it throws, {@link Host.state} is deep-equal to what it was before and
 * the table allocator holds the same blocks (proved by fail_nth tests).
 *
 * Rules worth knowing (iommufd's, unless noted):
 * - Attach to an occupied attach point is EBUSY; use `replace`. Replace of an empty
 *   one is EINVAL. Detach of an empty one is a no-op.
 * - Attaching the RID to an IOAS reuses a compatible automatic HWPT of that IOAS or
 *   creates one; it is destroyed when its last device leaves.
 * - A PASID attach needs a HWPT allocated with flag `pasid` (an IOAS is EINVAL), and
 *   the RID's HWPT must be PASID-capable too, in both orders (EINVAL).
 * - An mdev's PASID is assigned by its backend: attach it with `{ pasid: "auto" }`;
 *   the result says which. Its DMA is issued by its parent with that PASID.
 * - `emulated` attaches an mdev to an IOAS (not a HWPT): the result's `hwpt` is the
 *   id of the access object; `accessPin` / `accessUnpin` / `accessRw` use it.
 */

import type {
  AccessName,
  AttachIntent,
  Backend,
  BackendRegistry,
  CacheCounters,
  Capabilities,
  Domain,
  DomainFlags,
  FailNth,
  HwInfo,
  IntentKind,
  IovaRange,
  RamRegion,
  WalkStep,
} from "@iommu-kit/core";
import {
  Access,
  accessFlags,
  assertIntentAllowed,
  defaultRegistry,
  HwInfoType,
  hex,
  hwCapFlags,
  hwCapNames,
  IommuError,
  isEmulatedAccess,
  NO_PASID,
  Perm,
  PhysicalMemory,
  pageSizesLg2,
  parsePerm,
  TableAllocator,
} from "@iommu-kit/core";
import type { HostObject } from "./context.ts";
import { ObjectTable } from "./context.ts";
import { HostDevice } from "./device.ts";
import { DmaEngine } from "./dma.ts";
import type { FaultRecord } from "./fault.ts";
import { FaultQueue, FaultQueueObject } from "./fault.ts";
import type { Hwpt } from "./hw-pagetable.ts";
import {
  AccessObject,
  fillDomain,
  HwptNested,
  HwptPaging,
  Ioas,
  mapEverywhere,
  pagingOf,
  unfillDomain,
} from "./hw-pagetable.ts";
import type { Area } from "./io-pagetable.ts";
import { areaPa, complement, lowestBit, MAX_IOVA, mergeRanges, roundupPow2 } from "./io-pagetable.ts";
import { checkUserRange, createPages } from "./pages.ts";
import { loadBackend } from "./registry.ts";

/** Default RAM: [0, 4 GiB). */
export const DEFAULT_RAM: readonly RamRegion[] = [{ base: 0, size: 2 ** 32, name: "ram" }];
/** Default table region: 256 MiB just above the default RAM. */
export const DEFAULT_TABLES: { readonly base: number; readonly size: number } = {
  base: 2 ** 32,
  size: 2 ** 28,
};

/** Options of a {@link Host}. */
export interface HostOptions {
  /** RAM regions (default {@link DEFAULT_RAM}). */
  readonly ram?: readonly RamRegion[];
  /** The region table pages come from (default {@link DEFAULT_TABLES}); added as RAM when no region covers it. */
  readonly tables?: { readonly base: number; readonly size: number };
  /** Where backends are found by name (default core's `defaultRegistry`). */
  readonly registry?: BackendRegistry;
  /** The backend that hosts mediated devices when `addMdev` names none (default "mdev-emulated"). */
  readonly mdevBackend?: string;
}

/** A device behind an IOMMU instance. */
export interface DeviceOptions {
  /** The IOMMU instance name given to {@link Host.addIommu}. */
  readonly iommu: string;
  /** StreamID (SMMUv3) / source-id (VT-d) / device number. */
  readonly rid: number;
  /** PASID width; 0 (default) = no PASID. */
  readonly pasidBits?: number;
  readonly ats?: boolean;
}

/** A mediated device on a parent device. */
export interface MdevOptions {
  /** Host id of the parent (physical) device. */
  readonly parent: number;
  /** The mdev backend instance; default: the first of kind `mdevBackend`, created as "mdev" when none. */
  readonly iommu?: string;
  /** Device number inside the mdev backend; default the lowest free. */
  readonly rid?: number;
}

/** Mapping protection: Perm bits or letters ("r", "w", "rw"). */
export type ProtSpec = number | string;

/** IOMMU_IOAS_MAP arguments. */
export interface MapOptions {
  /** Fixed IOVA (IOMMU_IOAS_MAP_FIXED_IOVA); omitted: allocated. */
  readonly iova?: number;
  readonly length: number;
  /** Physical address of the first byte (RAM, outside the table region). */
  readonly pa: number;
  readonly prot: ProtSpec;
}

/** IOMMU_IOAS_COPY arguments. */
export interface CopyOptions {
  readonly src: number;
  readonly srcIova: number;
  readonly dst: number;
  /** Fixed destination IOVA; omitted: allocated. */
  readonly dstIova?: number;
  readonly length: number;
  readonly prot: ProtSpec;
}

/** IOMMU_IOAS_IOVA_RANGES result. */
export interface IovaRanges {
  /** Usable IOVA ranges (inclusive), ascending. */
  readonly ranges: readonly IovaRange[];
  /** out_iova_alignment. */
  readonly alignment: number;
}

/** IOMMU_HWPT_ALLOC flag names. */
export type HwptFlag = "nest_parent" | "dirty_tracking" | "pasid";

/** IOMMU_HWPT_ALLOC arguments. */
export interface HwptAllocOptions {
  /** The device the HWPT is allocated for (its IOMMU's format). */
  readonly device: number;
  /** An IOAS (paging HWPT) or a nest-parent paging HWPT (nested HWPT). */
  readonly pt: number;
  readonly flags?: readonly HwptFlag[] | DomainFlags;
  /** Vendor data of a nested HWPT (SMMUv3 `{ste: [w0, w1]}`, VT-d `{pgtblAddr, addrWidth, flags?}`). */
  readonly data?: unknown;
  /** A fault queue object (IOMMU_HWPT_FAULT_ID_VALID) that also receives this HWPT's faults. */
  readonly faultQueue?: number;
}

/** An attach intent: core's, or shorthand. `{pasid: "auto"}` for mdevs. */
export type IntentSpec = AttachIntent | Exclude<IntentKind, "pasid"> | { readonly pasid: number | "auto" };

/** What an attach or replace used. */
export interface AttachOutcome {
  /** The HWPT serving the attach point (an automatic one for an IOAS), or the access id for `emulated`. */
  readonly hwpt: number;
  /** The PASID (assigned by the backend for `pasid: "auto"`). */
  readonly pasid?: number;
}

/** A DMA issued by a device. */
export interface DmaRequest {
  /** PASID of the request; omitted/null = none (an mdev attached by PASID uses its assigned PASID). */
  readonly pasid?: number | null;
  readonly iova: number;
  readonly access: AccessName;
  /** Privileged (supervisor) request. */
  readonly priv?: boolean;
  /** Bytes to read (reads). */
  readonly length?: number;
  /** Bytes to write (writes). */
  readonly data?: Uint8Array;
}

/** The outcome of a DMA: bytes moved (and read), or the fault that stopped it before anything moved. */
export type DmaResult =
  | { readonly ok: true; readonly pa: number; readonly data?: Uint8Array }
  | { readonly ok: false; readonly fault: FaultRecord };

/** IOMMU_GET_HW_INFO of one device. */
export interface HwInfoResult {
  /** out_capabilities flag names ("dirty_tracking", "pasid_exec", "pasid_priv", "ats_not_supported"). */
  readonly capabilities: readonly string[];
  /** out_capabilities as a number (IOMMU_HW_CAP_*). */
  readonly flags: number;
  readonly maxPasidLog2: number;
  /** out_data_type by name: "arm-smmuv3", "intel-vtd", "none". */
  readonly type: HwInfo["type"];
  /** out_data_type as a number (IOMMU_HW_INFO_TYPE_*). */
  readonly typeId: number;
  /** The vendor block (raw registers). */
  readonly data: HwInfo;
  /** Intents the device accepts. */
  readonly intents: readonly IntentKind[];
  /** The full capability record. */
  readonly caps: Capabilities;
}

/** IOMMU_HWPT_GET_DIRTY_BITMAP arguments. */
export interface DirtyReadOptions {
  readonly iova: number;
  readonly length: number;
  /** Bytes per bitmap bit (a power of two). */
  readonly pageSize: number;
  /** IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR. */
  readonly noClear?: boolean;
}

/** IOMMU access rw through an mdev's emulated access. */
export interface AccessRwOptions {
  readonly iova: number;
  /** Reads: bytes to read. */
  readonly length?: number;
  /** Writes: bytes to write. */
  readonly data?: Uint8Array;
  readonly write: boolean;
}

/** A walk to explain (see {@link Host.explain}). */
export interface ExplainRequest {
  readonly pasid?: number | null;
  readonly iova: number | bigint;
  readonly access: AccessName;
  readonly priv?: boolean;
}

/** {@link Host.describe} of a device. */
export interface DeviceInfo {
  readonly id: number;
  readonly kind: "device";
  /** IOMMU instance name. */
  readonly iommu: string;
  readonly rid: number;
  readonly pasidBits: number;
  /** Parent device id (mdevs), else null. */
  readonly parent: number | null;
  /** What serves the RID (null: blocked). */
  readonly ridAttach: { readonly kind: "rid" | "rid-all-pasids"; readonly hwpt: number } | null;
  /** Attached PASIDs as [pasid, hwpt id], ascending. */
  readonly pasids: ReadonlyArray<readonly [number, number]>;
  /** Access object id (emulated attach), else null. */
  readonly access: number | null;
  /** Mediated devices on this one. */
  readonly children: number;
  /** The backend's own id of the domain on the RID (null: none), to catch host/backend drift. */
  readonly backendRid: number | null;
}

/** One area of an IOAS in {@link IoasInfo}. */
export interface AreaInfo {
  readonly iova: number;
  readonly length: number;
  readonly pa: number;
  readonly prot: number;
  /** Areas sharing its pages (IOMMU_IOAS_COPY). */
  readonly pagesUsers: number;
}

/** {@link Host.describe} of an IOAS. */
export interface IoasInfo {
  readonly id: number;
  readonly kind: "ioas";
  readonly areas: readonly AreaInfo[];
  readonly allowed: readonly IovaRange[];
  readonly reserved: readonly IovaRange[];
  readonly alignment: number;
  /** Paging HWPT ids built from it. */
  readonly hwpts: readonly number[];
  /** Access ids reading it. */
  readonly accesses: readonly number[];
}

/** {@link Host.describe} of a paging HWPT. */
export interface HwptPagingInfo {
  readonly id: number;
  readonly kind: "hwpt-paging";
  readonly ioas: number;
  readonly iommu: string;
  readonly format: string;
  readonly flags: DomainFlags;
  /** Created by an attach to the IOAS. */
  readonly auto: boolean;
  /** Attach points holding it. */
  readonly users: number;
  /** Nested HWPTs over it. */
  readonly children: number;
  readonly faultQueue: number | null;
}

/** {@link Host.describe} of a nested HWPT. */
export interface HwptNestedInfo {
  readonly id: number;
  readonly kind: "hwpt-nested";
  readonly parent: number;
  readonly iommu: string;
  readonly format: string;
  readonly users: number;
  readonly faultQueue: number | null;
}

/** {@link Host.describe} of an access. */
export interface AccessInfo {
  readonly id: number;
  readonly kind: "access";
  readonly ioas: number;
  readonly device: number;
  /** Pins held. */
  readonly pins: number;
}

/** {@link Host.describe} of a fault queue. */
export interface FaultQueueInfo {
  readonly id: number;
  readonly kind: "fault";
  readonly pending: number;
}

/** A plain, deep-equal comparable description of one object, by kind. */
export type ObjectInfo =
  | DeviceInfo
  | IoasInfo
  | HwptPagingInfo
  | HwptNestedInfo
  | AccessInfo
  | FaultQueueInfo;

/** A deep-equal comparable snapshot of everything the host owns (for atomicity tests). */
export interface HostState {
  readonly nextId: number;
  readonly iommus: readonly string[];
  readonly objects: readonly ObjectInfo[];
  readonly pendingFaults: number;
  readonly tableBlocks: ReadonlyArray<readonly [number, number]>;
  readonly tableBytes: number;
  /** Non-zero pages of physical memory (tables and data). */
  readonly memory: Map<number, Uint8Array>;
}

const HWPT_FLAGS: Readonly<Record<HwptFlag, keyof DomainFlags>> = {
  nest_parent: "nestParent",
  dirty_tracking: "dirtyTracking",
  pasid: "pasid",
};

function parseFlags(flags: HwptAllocOptions["flags"]): DomainFlags {
  if (flags === undefined) return {};
  if (Array.isArray(flags)) {
    const out: { nestParent?: boolean; dirtyTracking?: boolean; pasid?: boolean } = {};
    for (const f of flags as readonly string[]) {
      const key = HWPT_FLAGS[f as HwptFlag];
      if (key === undefined)
        throw new IommuError("EOPNOTSUPP", `unknown HWPT flag ${JSON.stringify(f)}`, { flag: f });
      out[key] = true;
    }
    return out;
  }
  const d = flags as DomainFlags;
  for (const k of Object.keys(d)) {
    if (k !== "nestParent" && k !== "dirtyTracking" && k !== "pasid") {
      throw new IommuError("EOPNOTSUPP", `unknown HWPT flag ${JSON.stringify(k)}`, { flag: k });
    }
  }
  return { ...d };
}

function parseProt(prot: ProtSpec): number {
  let p: number;
  try {
    p = typeof prot === "string" ? parsePerm(prot) : prot;
  } catch (e) {
    throw new IommuError("EINVAL", (e as Error).message, {}, { cause: e });
  }
  // IOMMU_IOAS_MAP_READABLE / _WRITEABLE only, at least one (ioas.c).
  if (!Number.isInteger(p) || p === 0 || (p & ~(Perm.R | Perm.W)) !== 0) {
    throw new IommuError("EINVAL", `bad map protection ${String(prot)} (want r, w or rw)`, {
      prot: String(prot),
    });
  }
  return p;
}

function toIntent(spec: IntentSpec): AttachIntent {
  if (typeof spec === "string") {
    if (spec === "rid" || spec === "rid-all-pasids" || spec === "emulated") return { kind: spec };
    throw new IommuError("EINVAL", `unknown intent ${JSON.stringify(spec)}`);
  }
  if ("kind" in spec) return spec;
  return { kind: "pasid", pasid: spec.pasid };
}

function checkLength(length: number): void {
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw new IommuError("EINVAL", `length ${length} must be a positive integer`, { length });
  }
}

function checkIova(iova: number): void {
  if (!Number.isSafeInteger(iova) || iova < 0) throw new IommuError("EINVAL", `bad iova ${iova}`, { iova });
}

function backendDomainId(d: HostDevice): number | null {
  if (d.parent !== null) return null;
  try {
    return d.backend.attached(d.rid, { kind: d.ridAttach?.kind ?? "rid" })?.id ?? null;
  } catch {
    return null;
  }
}

/** iommufd in miniature. See the file comment for the rules. */
export class Host {
  /** The physical memory every table lives in and every DMA reaches. */
  readonly memory: PhysicalMemory;
  /** The allocator of table blocks. */
  readonly tables: TableAllocator;
  /** Where backends are found. */
  readonly registry: BackendRegistry;
  readonly #iommus = new Map<string, Backend>();
  readonly #objects: ObjectTable;
  readonly #faults = new FaultQueue();
  readonly #dma = new DmaEngine();
  readonly #mdevBackend: string;
  #routeRid = 0;
  #routePasid = NO_PASID;

  constructor(options: HostOptions = {}) {
    const ram = options.ram ?? DEFAULT_RAM;
    const t = options.tables ?? DEFAULT_TABLES;
    const covered = ram.some((r) => r.base <= t.base && t.base + t.size <= r.base + r.size);
    this.memory = new PhysicalMemory(
      covered ? ram : [...ram, { base: t.base, size: t.size, name: "tables" }],
    );
    this.tables = new TableAllocator(this.memory, t.base, t.size);
    this.registry = options.registry ?? defaultRegistry;
    this.#objects = new ObjectTable(this.memory.failNth);
    this.#mdevBackend = options.mdevBackend ?? "mdev-emulated";
  }

  /** Failure injection shared by every allocation point (table blocks, objects, areas). */
  get failNth(): FailNth {
    return this.memory.failNth;
  }

  // ---------------------------------------------------------------- IOMMUs

  /**
   * Finds a backend by name or module path in the registry, importing
   * `@iommu-kit/<name>` or the plugin when needed (see `registry.ts`). Returns the
   * registered backend name.
   */
  async loadBackend(spec: string, baseDir?: string): Promise<string> {
    return (await loadBackend(spec, this.registry, baseDir)).name;
  }

  /**
   * Creates an IOMMU instance `name` of the registered backend `backendName` with its
   * `config` (omitted: the backend's most capable configuration). EEXIST for a taken
   * name, ENOENT for an unregistered backend (call {@link Host.loadBackend} first).
   */
  addIommu(name: string, backendName: string, config?: unknown): Backend {
    if (this.#iommus.has(name)) throw new IommuError("EEXIST", `an IOMMU named ${name} exists`, { name });
    const factory = this.registry.get(backendName);
    // A failed create leaves nothing behind: the host takes back every table block the
    // discarded instance took (it cannot be reached any more).
    const had = new Set(this.tables.blocks().map(([pa]) => pa));
    let backend: Backend;
    try {
      backend = factory.create(
        { memory: this.memory, tables: this.tables, name, lookup: (n: string) => this.#iommus.get(n) },
        config,
      );
    } catch (e) {
      for (const [pa] of this.tables.blocks()) if (!had.has(pa)) this.tables.free(pa);
      throw e;
    }
    this.#iommus.set(name, backend);
    return backend;
  }

  /** The IOMMU instance `name`; ENOENT otherwise. */
  iommu(name: string): Backend {
    const b = this.#iommus.get(name);
    if (b === undefined) throw new IommuError("ENOENT", `no IOMMU named ${name}`, { name });
    return b;
  }

  /** IOMMU instances: name and backend kind, in creation order. */
  iommus(): Array<{ readonly name: string; readonly backend: string }> {
    return [...this.#iommus.values()].map((b) => ({ name: b.name, backend: b.kind }));
  }

  /** Cache and walk counters of an IOMMU instance. */
  counters(iommu: string): CacheCounters {
    return this.iommu(iommu).counters();
  }

  // ---------------------------------------------------------------- devices

  /** Adds a device behind an IOMMU; returns its object id. EEXIST / EINVAL from the backend for a bad rid. */
  addDevice(opts: DeviceOptions): number {
    const backend = this.iommu(opts.iommu);
    const pasidBits = opts.pasidBits ?? 0;
    this.#objects.reserve("device");
    backend.addDevice(
      opts.ats === undefined ? { rid: opts.rid, pasidBits } : { rid: opts.rid, pasidBits, ats: opts.ats },
    );
    return this.#objects.insert(
      new HostDevice(this.#objects.nextId, opts.iommu, backend, opts.rid, pasidBits, null),
    ).id;
  }

  /**
   * Adds a mediated device on a parent device; returns its object id. Its IOMMU is an
   * mdev backend instance (created as "mdev" from `mdevBackend` when none exists).
   */
  addMdev(opts: MdevOptions): number {
    const parent = this.#device(opts.parent);
    if (parent.parent !== null)
      throw new IommuError("EINVAL", `device ${parent.id} is itself an mdev`, { parent: parent.id });
    let name = opts.iommu;
    let created = false;
    if (name === undefined) {
      name = [...this.#iommus.values()].find((b) => b.kind === this.#mdevBackend)?.name;
      if (name === undefined) {
        name = "mdev";
        for (let i = 1; this.#iommus.has(name); i++) name = `mdev${i}`;
        this.addIommu(name, this.#mdevBackend);
        created = true;
      }
    }
    const backend = this.iommu(name);
    let rid = opts.rid;
    if (rid === undefined) {
      const used = new Set(
        this.#devices()
          .filter((d) => d.backend === backend)
          .map((d) => d.rid),
      );
      rid = 0;
      while (used.has(rid)) rid++;
    }
    try {
      this.#objects.reserve("device");
      backend.addDevice({ rid, pasidBits: 0, parent: { backend: parent.backend, rid: parent.rid } });
    } catch (e) {
      if (created) this.#iommus.delete(name);
      throw e;
    }
    parent.children++;
    return this.#objects.insert(new HostDevice(this.#objects.nextId, name, backend, rid, 0, parent)).id;
  }

  /** Ids of every device, ascending. */
  deviceIds(): number[] {
    return this.#devices().map((d) => d.id);
  }

  #devices(): HostDevice[] {
    return this.#objects.values().filter((o): o is HostDevice => o.kind === "device");
  }

  #device(id: number): HostDevice {
    return this.#objects.get(id, "device") as HostDevice;
  }

  /** IOMMU_GET_HW_INFO: capability flags, PASID width and the vendor block of a device. */
  hwInfo(device: number): HwInfoResult {
    const d = this.#device(device);
    const caps = d.backend.capabilities(d.rid);
    return {
      capabilities: hwCapNames(caps),
      flags: hwCapFlags(caps),
      maxPasidLog2: caps.maxPasidLog2,
      type: caps.hwInfo.type,
      typeId: HwInfoType[caps.hwInfo.type],
      data: caps.hwInfo,
      intents: caps.intents,
      caps,
    };
  }

  // ---------------------------------------------------------------- IOAS

  /** IOMMU_IOAS_ALLOC: a new, empty IO address space. */
  ioasAlloc(): number {
    this.#objects.reserve("ioas");
    return this.#objects.insert(new Ioas(this.#objects.nextId)).id;
  }

  #ioas(id: number): Ioas {
    return this.#objects.get(id, "ioas") as Ioas;
  }

  /**
   * IOMMU_IOAS_MAP: maps [pa, pa + length) at a fixed or allocated IOVA and into every
   * domain of the IOAS. Returns the IOVA. EINVAL (alignment, reserved, bad prot, table
   * region), EEXIST (overlap), EOVERFLOW, ENOSPC (no room), EFAULT (not RAM), ENOMEM.
   */
  ioasMap(ioasId: number, opts: MapOptions): number {
    const ioas = this.#ioas(ioasId);
    const prot = parseProt(opts.prot);
    checkLength(opts.length);
    checkUserRange(this.memory, this.tables, opts.pa, opts.length);
    const iova = this.#placeArea(ioas, opts.iova, opts.pa, opts.length);
    this.failNth.point("area");
    mapEverywhere(ioas.domains, iova, opts.pa, opts.length, prot);
    const pages = createPages(opts.pa, opts.length, (prot & Perm.W) !== 0);
    pages.users = 1;
    ioas.iopt.insert({ iova, length: opts.length, pages, offset: 0, prot });
    return iova;
  }

  /** Checks a new area's placement (fixed) or allocates its IOVA (auto); changes nothing. */
  #placeArea(ioas: Ioas, iova: number | undefined, pa: number, length: number): number {
    const align = ioas.alignment;
    if (length % align !== 0 || pa % align !== 0) {
      throw new IommuError("EINVAL", `length ${hex(length)} / pa ${hex(pa)} not aligned to ${hex(align)}`, {
        length,
        pa,
        alignment: align,
      });
    }
    if (iova !== undefined) {
      ioas.iopt.checkFixed(iova, length, align, ioas.reserved);
      return iova;
    }
    // iopt_alloc_iova: keep the alignment of the source, at most the length's.
    const want = Math.max(Math.min(roundupPow2(length), lowestBit(pa)), align);
    return ioas.iopt.allocIova(length, want, ioas.reserved);
  }

  /**
   * IOMMU_IOAS_UNMAP: unmaps every area inside [iova, iova + length), which must cover
   * whole areas (ENOENT for a partial cover or nothing mapped). Returns the bytes
   * unmapped. An emulated access still pinning the range after its unmap callback
   * makes it EBUSY.
   */
  ioasUnmap(ioasId: number, iova: number, length: number): number {
    const ioas = this.#ioas(ioasId);
    checkIova(iova);
    checkLength(length);
    const last = iova + length - 1;
    if (last > MAX_IOVA)
      throw new IommuError("EOVERFLOW", `iova ${hex(iova)} + ${hex(length)} overflows`, { iova, length });
    const [from, to] = ioas.iopt.span(iova, last);
    if (from === to)
      throw new IommuError("ENOENT", `nothing is mapped in [${hex(iova)}, ${hex(last)}]`, { iova, length });
    for (let i = from; i < to; i++) {
      const a = ioas.iopt.at(i)!;
      if (a.iova < iova || a.iova + a.length - 1 > last) {
        throw new IommuError(
          "ENOENT",
          `[${hex(iova)}, ${hex(last)}] cuts the area at ${hex(a.iova)}+${hex(a.length)}`,
          {
            iova,
            length,
          },
        );
      }
    }
    return this.#unmapSpan(ioas, from, to);
  }

  /** IOMMU_IOAS_UNMAP of everything (0..U64_MAX); 0 when nothing is mapped. */
  ioasUnmapAll(ioasId: number): number {
    const ioas = this.#ioas(ioasId);
    return ioas.iopt.count === 0 ? 0 : this.#unmapSpan(ioas, 0, ioas.iopt.count);
  }

  #unmapSpan(ioas: Ioas, from: number, to: number): number {
    const iopt = ioas.iopt;
    const doms = ioas.domains;
    const ne = ioas.accesses.length;
    // Accesses first: their unmap may refuse (pins left after the unmap callback).
    if (ne > 0) {
      let done = 0;
      try {
        for (let i = from; i < to; i++) {
          const a = iopt.at(i)!;
          for (let d = 0; d < ne; d++) {
            doms[d]!.unmap(a.iova, a.length);
            done++;
          }
        }
      } catch (e) {
        for (let k = 0; k < done; k++) {
          const a = iopt.at(from + Math.floor(k / ne))!;
          doms[k % ne]!.map(a.iova, areaPa(a), a.length, a.prot);
        }
        throw e;
      }
    }
    let bytes = 0;
    for (let i = from; i < to; i++) {
      const a = iopt.at(i)!;
      for (let d = ne; d < doms.length; d++) doms[d]!.unmap(a.iova, a.length);
      a.pages.users--;
      bytes += a.length;
    }
    ioas.iopt.removeSpan(from, to);
    return bytes;
  }

  /**
   * IOMMU_IOAS_COPY: maps the pages behind [srcIova, srcIova + length) of `src` (which
   * must be covered by areas without a gap: ENOENT) into `dst`, at a fixed or
   * allocated IOVA. Write access needs writable source pages (EINVAL). Returns the IOVA.
   */
  ioasCopy(opts: CopyOptions): number {
    const src = this.#ioas(opts.src);
    const dst = this.#ioas(opts.dst);
    const prot = parseProt(opts.prot);
    checkIova(opts.srcIova);
    checkLength(opts.length);
    const last = opts.srcIova + opts.length - 1;
    const [from, to] = src.iopt.span(opts.srcIova, last);
    const pieces: Area[] = [];
    let at = opts.srcIova;
    for (let i = from; i < to; i++) {
      const a = src.iopt.at(i)!;
      if (a.iova > at) break;
      const end = Math.min(a.iova + a.length - 1, last);
      if ((prot & Perm.W) !== 0 && !a.pages.writable) {
        // iopt_get_pages: a writable copy of read-only pages is -EPERM.
        throw new IommuError("EPERM", `copy with write access of read-only pages at ${hex(a.iova)}`, {
          iova: a.iova,
        });
      }
      pieces.push({
        iova: at - opts.srcIova,
        length: end - at + 1,
        pages: a.pages,
        offset: a.offset + (at - a.iova),
        prot,
      });
      at = end + 1;
    }
    if (at <= last) {
      throw new IommuError(
        "ENOENT",
        `[${hex(opts.srcIova)}, ${hex(last)}] of IOAS ${src.id} is not fully mapped`,
        {
          iova: opts.srcIova,
          length: opts.length,
        },
      );
    }
    for (const p of pieces) {
      if (p.length % dst.alignment !== 0 || areaPa(p) % dst.alignment !== 0) {
        throw new IommuError(
          "EINVAL",
          `copied piece ${hex(areaPa(p))}+${hex(p.length)} is not aligned to ${hex(dst.alignment)}`,
        );
      }
    }
    const base = this.#placeArea(dst, opts.dstIova, areaPa(pieces[0]!), opts.length);
    const placed = pieces.map((p) => ({ ...p, iova: base + p.iova }));
    let done = 0;
    try {
      for (const p of placed) {
        this.failNth.point("area");
        mapEverywhere(dst.domains, p.iova, areaPa(p), p.length, p.prot);
        done++;
      }
    } catch (e) {
      for (let i = 0; i < done; i++) for (const d of dst.domains) d.unmap(placed[i]!.iova, placed[i]!.length);
      throw e;
    }
    for (const p of placed) {
      p.pages.users++;
      dst.iopt.insert(p);
    }
    return base;
  }

  /** IOMMU_IOAS_IOVA_RANGES: the usable IOVA ranges (not reserved) and the alignment. */
  ioasIovaRanges(ioasId: number): IovaRanges {
    const ioas = this.#ioas(ioasId);
    return { ranges: complement(ioas.reserved, 0, MAX_IOVA), alignment: ioas.alignment };
  }

  /**
   * IOMMU_IOAS_ALLOW_IOVAS: restricts automatic IOVAs to `ranges` (empty: no
   * restriction) and makes later reservations that intersect them fail. EINVAL for a
   * bad range, EADDRINUSE when one intersects a reserved range.
   */
  ioasAllowIovas(ioasId: number, ranges: readonly IovaRange[]): void {
    const ioas = this.#ioas(ioasId);
    for (const r of ranges) {
      if (
        !Number.isSafeInteger(r.start) ||
        !Number.isSafeInteger(r.last) ||
        r.start < 0 ||
        r.last < r.start
      ) {
        throw new IommuError("EINVAL", `bad allowed range [${r.start}, ${r.last}]`, {
          start: r.start,
          last: r.last,
        });
      }
    }
    const merged = mergeRanges(ranges);
    const saved = ioas.iopt.allowed;
    ioas.iopt.allowed = merged;
    try {
      ioas.iopt.checkLayout(ioas.reserved, 1);
      this.failNth.point("allowed");
    } catch (e) {
      ioas.iopt.allowed = saved;
      throw e;
    }
  }

  /** Areas of an IOAS (copies), ascending: iova, length, pa, prot. */
  ioasAreas(ioasId: number): Array<{ iova: number; length: number; pa: number; prot: number }> {
    return this.#ioas(ioasId).iopt.areas.map((a) => ({
      iova: a.iova,
      length: a.length,
      pa: areaPa(a),
      prot: a.prot,
    }));
  }

  // ---------------------------------------------------------------- layout

  /**
   * Reserved ranges and alignment of an IOAS with its current domains and devices plus
   * `extraDomains` / `extraDevices` (a prospective attach): each domain's aperture
   * complement and page size, each RID-attached device's reserved regions.
   */
  #layout(
    ioas: Ioas,
    extraDomains: readonly Domain[],
    extraDevices: readonly HostDevice[],
  ): {
    reserved: IovaRange[];
    alignment: number;
  } {
    const ranges: IovaRange[] = [];
    let alignment = 1;
    for (const d of [...ioas.domains, ...extraDomains]) {
      if (d.aperture.start > 0) ranges.push({ start: 0, last: d.aperture.start - 1 });
      if (d.aperture.last < MAX_IOVA) ranges.push({ start: d.aperture.last + 1, last: MAX_IOVA });
      const sizes = pageSizesLg2(d.pageSizeBitmap);
      if (sizes.length > 0) alignment = Math.max(alignment, 2 ** sizes[0]!);
    }
    const devices = this.#devices().filter(
      (dev) => dev.ridAttach !== null && pagingOf(dev.ridAttach.hwpt).ioas === ioas,
    );
    for (const dev of [...devices, ...extraDevices]) ranges.push(...dev.backend.reservedRegions(dev.rid));
    return { reserved: mergeRanges(ranges), alignment };
  }

  /** The layout with the additions, checked against the IOAS's areas and allowed ranges (EADDRINUSE). */
  #checkedLayout(ioas: Ioas, extraDomains: readonly Domain[], extraDevices: readonly HostDevice[]) {
    const l = this.#layout(ioas, extraDomains, extraDevices);
    ioas.iopt.checkLayout(l.reserved, l.alignment);
    return l;
  }

  #relayout(ioas: Ioas): void {
    ioas.refreshDomains();
    const l = this.#layout(ioas, [], []);
    ioas.reserved = l.reserved;
    ioas.alignment = l.alignment;
  }

  // ---------------------------------------------------------------- HWPT

  /**
   * IOMMU_HWPT_ALLOC. On an IOAS: a paging HWPT filled with every area (flags
   * nest_parent, dirty_tracking, pasid; vendor data is EOPNOTSUPP). On a nest-parent
   * paging HWPT: a nested HWPT with vendor `data` (none: EINVAL; parent not a nest
   * parent, automatic, of another IOMMU, or nested: EINVAL; flags other than pasid:
   * EOPNOTSUPP). Unknown flags EOPNOTSUPP; a flag the device lacks EOPNOTSUPP.
   */
  hwptAlloc(opts: HwptAllocOptions): number {
    const dev = this.#device(opts.device);
    const flags = parseFlags(opts.flags);
    const pt = this.#objects.get(opts.pt, "ioas", "hwpt-paging", "hwpt-nested");
    const fq =
      opts.faultQueue === undefined
        ? null
        : (this.#objects.get(opts.faultQueue, "fault") as FaultQueueObject);
    const caps = dev.backend.capabilities(dev.rid);
    if (pt.kind === "ioas") {
      const ioas = pt as Ioas;
      if (opts.data !== undefined && opts.data !== null) {
        throw new IommuError("EOPNOTSUPP", "a paging HWPT takes no vendor data");
      }
      if (flags.dirtyTracking && !caps.features.dirtyTracking) {
        throw new IommuError("EOPNOTSUPP", `device ${dev.id} has no dirty tracking`, { device: dev.id });
      }
      if (flags.nestParent && !caps.features.nesting) {
        throw new IommuError("EOPNOTSUPP", `device ${dev.id} has no nesting`, { device: dev.id });
      }
      this.#objects.reserve("hwpt-paging");
      const domain = dev.backend.allocDomain({ type: "paging", rid: dev.rid, flags });
      let layout: { reserved: IovaRange[]; alignment: number };
      try {
        layout = this.#checkedLayout(ioas, [domain], []);
        fillDomain(domain, ioas.iopt.areas);
      } catch (e) {
        domain.free();
        throw e;
      }
      const h = this.#objects.insert(new HwptPaging(this.#objects.nextId, ioas, domain, false, fq));
      ioas.hwpts.push(h);
      ioas.refreshDomains();
      ioas.reserved = layout.reserved;
      ioas.alignment = layout.alignment;
      return h.id;
    }
    if (pt.kind === "hwpt-nested")
      throw new IommuError("EINVAL", `HWPT ${pt.id} is nested: no nesting on nested`, { pt: pt.id });
    const parent = pt as HwptPaging;
    if (opts.data === undefined || opts.data === null) {
      throw new IommuError("EINVAL", "a nested HWPT needs vendor data (IOMMU_HWPT_DATA_NONE)");
    }
    if (flags.nestParent || flags.dirtyTracking) {
      throw new IommuError("EOPNOTSUPP", "a nested HWPT takes only the pasid flag");
    }
    if (parent.auto || !parent.domain.flags.nestParent) {
      throw new IommuError("EINVAL", `HWPT ${parent.id} is not a nest parent`, { pt: parent.id });
    }
    if (parent.domain.backend !== dev.backend) {
      throw new IommuError("EINVAL", `HWPT ${parent.id} belongs to another IOMMU than device ${dev.id}`, {
        pt: parent.id,
      });
    }
    this.#objects.reserve("hwpt-nested");
    const domain = dev.backend.allocDomain({
      type: "nested",
      rid: dev.rid,
      parent: parent.domain,
      data: opts.data,
      flags,
    });
    const h = this.#objects.insert(new HwptNested(this.#objects.nextId, parent, domain, fq));
    parent.children++;
    return h.id;
  }

  #hwpt(id: number): Hwpt {
    return this.#objects.get(id, "hwpt-paging", "hwpt-nested") as Hwpt;
  }

  // ---------------------------------------------------------------- attach

  /**
   * Attaches `pt` (an IOAS, a HWPT) to the attach point `intent` of a device. EBUSY
   * when the point is occupied (use {@link Host.replace}); EOPNOTSUPP for an intent
   * the device does not list; EINVAL for PASID rule violations (see the file comment).
   */
  attach(device: number, intent: IntentSpec, pt: number): AttachOutcome {
    return this.#attach(this.#device(device), toIntent(intent), pt, false);
  }

  /**
   * Replaces what serves an occupied attach point (EINVAL when empty). On failure the
   * old table stays attached. A replaced automatic HWPT that loses its last user is destroyed.
   */
  replace(device: number, intent: IntentSpec, pt: number): AttachOutcome {
    return this.#attach(this.#device(device), toIntent(intent), pt, true);
  }

  #attach(dev: HostDevice, intent: AttachIntent, ptId: number, replace: boolean): AttachOutcome {
    const caps = dev.backend.capabilities(dev.rid);
    assertIntentAllowed(caps, intent);
    const pt = this.#objects.get(ptId, "ioas", "hwpt-paging", "hwpt-nested");
    // iommufd_dirty_tracking: a device without dirty tracking cannot join a dirty HWPT.
    if (
      pt.kind !== "ioas" &&
      pagingOf(pt as Hwpt).domain.flags.dirtyTracking &&
      !caps.features.dirtyTracking
    ) {
      throw new IommuError("EINVAL", `device ${dev.id} cannot track dirty pages for HWPT ${pt.id}`, {
        device: dev.id,
      });
    }
    if (intent.kind === "emulated") return this.#attachEmulated(dev, pt, replace);
    if (intent.kind === "pasid") return this.#attachPasid(dev, intent.pasid, pt, replace);
    const cur = dev.ridAttach;
    if (!replace && cur !== null) {
      throw new IommuError("EBUSY", `device ${dev.id} RID is attached to HWPT ${cur.hwpt.id}`, {
        device: dev.id,
      });
    }
    if (replace && cur === null)
      throw new IommuError("EINVAL", `device ${dev.id} RID is not attached`, { device: dev.id });
    if (intent.kind === "rid-all-pasids" && dev.pasids.size > 0) {
      throw new IommuError("EBUSY", `device ${dev.id} has PASIDs attached`, { device: dev.id });
    }
    const needPasid = dev.pasids.size > 0;
    if (pt.kind === "ioas") {
      if (intent.kind !== "rid") throw new IommuError("EINVAL", "rid-all-pasids needs a HWPT, not an IOAS");
      return { hwpt: this.#attachRidIoas(dev, pt as Ioas, needPasid, cur?.hwpt ?? null) };
    }
    const h = pt as Hwpt;
    if (needPasid && !h.domain.flags.pasid) {
      throw new IommuError(
        "EINVAL",
        `device ${dev.id} has PASIDs attached: HWPT ${h.id} needs the pasid flag`,
        {
          hwpt: h.id,
        },
      );
    }
    if (cur !== null && cur.hwpt === h && cur.kind === intent.kind) return { hwpt: h.id };
    const ioas = pagingOf(h).ioas;
    const moving = cur === null || pagingOf(cur.hwpt).ioas !== ioas;
    if (moving) this.#checkedLayout(ioas, [], [dev]);
    dev.backend.attach(dev.rid, intent, h.domain);
    this.#commitRid(dev, intent.kind, h);
    return { hwpt: h.id };
  }

  /** RID attach to an IOAS: reuse a compatible automatic HWPT, or create one. */
  #attachRidIoas(dev: HostDevice, ioas: Ioas, needPasid: boolean, cur: Hwpt | null): number {
    const moving = cur === null || pagingOf(cur).ioas !== ioas;
    for (const h of ioas.hwpts) {
      if (!h.auto || h.domain.backend !== dev.backend || (needPasid && !h.domain.flags.pasid)) continue;
      if (h === cur) return h.id;
      if (moving) this.#checkedLayout(ioas, [], [dev]);
      try {
        dev.backend.attach(dev.rid, { kind: "rid" }, h.domain);
      } catch (e) {
        // iommufd_device_auto_get_domain: an incompatible domain (EINVAL) means try the next.
        if (e instanceof IommuError && e.code === "EINVAL") continue;
        throw e;
      }
      this.#commitRid(dev, "rid", h);
      return h.id;
    }
    this.#objects.reserve("hwpt-paging");
    const domain = dev.backend.allocDomain({
      type: "paging",
      rid: dev.rid,
      flags: needPasid ? { pasid: true } : {},
    });
    try {
      this.#checkedLayout(ioas, [domain], moving ? [dev] : []);
      fillDomain(domain, ioas.iopt.areas);
    } catch (e) {
      domain.free();
      throw e;
    }
    try {
      dev.backend.attach(dev.rid, { kind: "rid" }, domain);
    } catch (e) {
      unfillDomain(domain, ioas.iopt.areas);
      domain.free();
      throw e;
    }
    const h = this.#objects.insert(new HwptPaging(this.#objects.nextId, ioas, domain, true, null));
    ioas.hwpts.push(h);
    this.#commitRid(dev, "rid", h);
    return h.id;
  }

  #commitRid(dev: HostDevice, kind: "rid" | "rid-all-pasids", h: Hwpt): void {
    const old = dev.ridAttach?.hwpt ?? null;
    dev.ridAttach = { kind, hwpt: h };
    if (old !== h) {
      h.users++;
      if (old !== null) {
        old.users--;
        this.#release(old);
      }
    }
    this.#relayout(pagingOf(h).ioas);
  }

  /** Drops an automatic HWPT nobody uses, and refreshes the layout of the IOAS it read. */
  #release(h: Hwpt): void {
    const ioas = pagingOf(h).ioas;
    if (h.kind === "hwpt-paging" && h.auto && h.users === 0) {
      h.domain.free();
      ioas.hwpts.splice(ioas.hwpts.indexOf(h), 1);
      this.#objects.remove(h.id);
    }
    this.#relayout(ioas);
  }

  #attachPasid(dev: HostDevice, pasid: number | "auto", pt: HostObject, replace: boolean): AttachOutcome {
    if (pt.kind === "ioas")
      throw new IommuError(
        "EINVAL",
        "a PASID attach needs a HWPT allocated with the pasid flag, not an IOAS",
      );
    const h = pt as Hwpt;
    if (!h.domain.flags.pasid)
      throw new IommuError("EINVAL", `HWPT ${h.id} was not allocated with the pasid flag`, { hwpt: h.id });
    const rid = dev.ridAttach;
    if (rid !== null && rid.kind === "rid-all-pasids") {
      throw new IommuError("EBUSY", `device ${dev.id} RID owns every PASID (rid-all-pasids)`, {
        device: dev.id,
      });
    }
    if (rid !== null && !rid.hwpt.domain.flags.pasid) {
      throw new IommuError("EINVAL", `device ${dev.id} RID HWPT ${rid.hwpt.id} is not PASID-capable`, {
        device: dev.id,
      });
    }
    // A backend-assigned PASID (mdev): the device has at most one; "auto" names it.
    const key = pasid === "auto" ? (dev.pasids.keys().next().value ?? null) : pasid;
    const old = key === null ? undefined : dev.pasids.get(key);
    if (!replace && old !== undefined) {
      throw new IommuError("EBUSY", `device ${dev.id} PASID ${key} is attached`, {
        device: dev.id,
        pasid: key,
      });
    }
    if (replace && old === undefined) {
      throw new IommuError("EINVAL", `device ${dev.id} PASID ${String(pasid)} is not attached`, {
        device: dev.id,
      });
    }
    if (old === h) return { hwpt: h.id, pasid: key! };
    const res = dev.backend.attach(dev.rid, { kind: "pasid", pasid }, h.domain);
    const got = res.pasid ?? key;
    if (got === null || got === undefined) throw new Error("backend assigned no PASID");
    if (old !== undefined && got !== key) dev.pasids.delete(key!);
    dev.pasids.set(got, h);
    h.users++;
    if (old !== undefined) {
      old.users--;
      this.#release(old);
    }
    return { hwpt: h.id, pasid: got };
  }

  #attachEmulated(dev: HostDevice, pt: HostObject, replace: boolean): AttachOutcome {
    if (pt.kind !== "ioas")
      throw new IommuError("EINVAL", "an emulated access attaches to an IOAS, not a HWPT");
    const ioas = pt as Ioas;
    const old = dev.access;
    if (!replace && old !== null)
      throw new IommuError("EBUSY", `device ${dev.id} has an access`, { device: dev.id });
    if (replace && old === null)
      throw new IommuError("EINVAL", `device ${dev.id} has no access`, { device: dev.id });
    if (old !== null && old.ioas === ioas) return { hwpt: old.id };
    this.#objects.reserve("access");
    const domain = dev.backend.allocDomain({ type: "paging", rid: dev.rid });
    if (!isEmulatedAccess(domain)) {
      domain.free();
      throw new IommuError("EINVAL", `IOMMU ${dev.iommu} gave no emulated-access domain`, { device: dev.id });
    }
    try {
      this.#checkedLayout(ioas, [domain], []);
      fillDomain(domain, ioas.iopt.areas);
    } catch (e) {
      domain.free();
      throw e;
    }
    try {
      dev.backend.attach(dev.rid, { kind: "emulated" }, domain);
    } catch (e) {
      unfillDomain(domain, ioas.iopt.areas);
      domain.free();
      throw e;
    }
    const acc = this.#objects.insert(new AccessObject(this.#objects.nextId, ioas, dev, domain));
    ioas.accesses.push(acc);
    dev.access = acc;
    this.#relayout(ioas);
    if (old !== null) this.#dropAccess(old);
    return { hwpt: acc.id };
  }

  #dropAccess(acc: AccessObject): void {
    acc.domain.free();
    acc.ioas.accesses.splice(acc.ioas.accesses.indexOf(acc), 1);
    this.#objects.remove(acc.id);
    this.#relayout(acc.ioas);
  }

  /**
   * Detaches whatever serves `intent`; the attach point is blocked afterwards (DMA
   * faults with class `blocked`). Harmless when nothing is attached; EOPNOTSUPP for an
   * intent the device does not list. For an access the
   * backend runs the mdev's unmap callback first and refuses (EBUSY) if pins remain.
   */
  detach(device: number, intent: IntentSpec): void {
    const dev = this.#device(device);
    const it = toIntent(intent);
    if (!dev.backend.capabilities(dev.rid).intents.includes(it.kind)) {
      throw new IommuError("EOPNOTSUPP", `intent ${it.kind} is not supported by device ${dev.id}`, {
        device: dev.id,
      });
    }
    if (it.kind === "emulated") {
      const acc = dev.access;
      if (acc === null) return;
      dev.backend.detach(dev.rid, it);
      dev.access = null;
      this.#dropAccess(acc);
      return;
    }
    if (it.kind === "pasid") {
      const key = it.pasid === "auto" ? (dev.pasids.keys().next().value ?? null) : it.pasid;
      const h = key === null ? undefined : dev.pasids.get(key);
      if (h === undefined) return;
      dev.backend.detach(dev.rid, { kind: "pasid", pasid: key! });
      dev.pasids.delete(key!);
      h.users--;
      this.#release(h);
      return;
    }
    const cur = dev.ridAttach;
    if (cur === null) return;
    dev.backend.detach(dev.rid, { kind: cur.kind });
    dev.ridAttach = null;
    cur.hwpt.users--;
    this.#release(cur.hwpt);
  }

  // ---------------------------------------------------------------- destroy

  /**
   * IOMMU_DESTROY: destroys a device, IOAS, HWPT or fault queue. EBUSY while in use
   * (attached, attached to, referenced by a HWPT, nest parent, parent of an mdev);
   * accesses go away with `detach`, so destroying one is EBUSY. ENOENT for an unknown id.
   */
  destroy(id: number): void {
    const o = this.#objects.get(id);
    const busy = (why: string): never => {
      throw new IommuError("EBUSY", `object ${id} (${o.kind}) is busy: ${why}`, { id });
    };
    switch (o.kind) {
      case "device": {
        const d = o as HostDevice;
        if (d.attached) busy("attached");
        if (d.children > 0) busy("parent of mediated devices");
        d.backend.removeDevice(d.rid);
        if (d.parent !== null) d.parent.children--;
        break;
      }
      case "ioas": {
        const ioas = o as Ioas;
        if (ioas.hwpts.length > 0) busy(`used by HWPT ${ioas.hwpts[0]!.id}`);
        if (ioas.accesses.length > 0) busy(`used by access ${ioas.accesses[0]!.id}`);
        for (const a of ioas.iopt.areas) a.pages.users--;
        break;
      }
      case "hwpt-paging": {
        const h = o as HwptPaging;
        if (h.users > 0) busy("attached");
        if (h.children > 0) busy("parent of nested HWPTs");
        h.domain.free();
        h.ioas.hwpts.splice(h.ioas.hwpts.indexOf(h), 1);
        this.#objects.remove(id);
        this.#relayout(h.ioas);
        return;
      }
      case "hwpt-nested": {
        const h = o as HwptNested;
        if (h.users > 0) busy("attached");
        h.domain.free();
        h.parent.children--;
        break;
      }
      case "access":
        busy("detach the device instead");
        break;
      case "fault": {
        const users = this.#objects
          .values()
          .filter(
            (x) => (x.kind === "hwpt-paging" || x.kind === "hwpt-nested") && (x as Hwpt).faultQueue === o,
          );
        if (users.length > 0) busy(`used by HWPT ${users[0]!.id}`);
        break;
      }
    }
    this.#objects.remove(id);
  }

  // ---------------------------------------------------------------- DMA and faults

  /**
   * The backend a device's DMA goes out through, with the rid and PASID left in
   * `#routeRid` / `#routePasid` (no tuple: the DMA path allocates nothing). An mdev's
   * PASID DMA leaves through its parent.
   */
  #route(dev: HostDevice, pasid: number | null | undefined): Backend {
    if (dev.parent !== null) {
      const p = pasid ?? dev.pasids.keys().next().value;
      if (p !== undefined) {
        this.#routeRid = dev.parent.rid;
        this.#routePasid = p;
        return dev.parent.backend;
      }
      this.#routeRid = dev.rid;
      this.#routePasid = NO_PASID;
      return dev.backend;
    }
    this.#routeRid = dev.rid;
    this.#routePasid = pasid ?? NO_PASID;
    return dev.backend;
  }

  /**
   * A device reads (`length`) or writes (`data`) bytes at an IOVA. Every page is
   * translated first; only if all succeed do the bytes move. A fault is delivered to
   * the device's queue (and its HWPT's fault queue) and returned; nothing moved.
   * EINVAL for a malformed request, EFAULT when a translation leads outside RAM.
   */
  dma(device: number, req: DmaRequest): DmaResult {
    const dev = this.#device(device);
    checkIova(req.iova);
    const write = req.access === "write";
    const data = req.data;
    const length = write ? (data?.length ?? 0) : (req.length ?? 0);
    if (write && data === undefined) throw new IommuError("EINVAL", "a DMA write needs data");
    checkLength(length);
    if (req.iova + length - 1 > MAX_IOVA)
      throw new IommuError("EOVERFLOW", "DMA range overflows", { iova: req.iova });
    const backend = this.#route(dev, req.pasid);
    const rid = this.#routeRid;
    const pasid = this.#routePasid;
    const access = accessFlags(req.access, req.priv === true);
    const eng = this.#dma;
    if (!eng.translate(backend, rid, pasid, req.iova, length, access)) {
      return { ok: false, fault: this.#deliver(dev, pasid, eng.faultIova, access) };
    }
    if (write) {
      eng.write(this.memory, data!);
      return { ok: true, pa: eng.firstPa };
    }
    const out = new Uint8Array(length);
    eng.read(this.memory, out);
    return { ok: true, pa: eng.firstPa, data: out };
  }

  /**
   * The DMA fast path, allocation-free on success: reads into or writes from `buf`
   * (by `access`) at `iova`. Returns the physical address of the first byte, or -1 after
   * delivering a fault (read it with {@link Host.faultsRead}).
   */
  dmaInto(device: number, pasid: number | null, iova: number, access: number, buf: Uint8Array): number {
    const o = this.#objects.find(device);
    if (o === undefined || o.kind !== "device") this.#device(device);
    const dev = o as HostDevice;
    const backend = this.#route(dev, pasid);
    const p = this.#routePasid;
    const eng = this.#dma;
    if (!eng.translate(backend, this.#routeRid, p, iova, buf.length, access)) {
      this.#deliver(dev, p, eng.faultIova, access);
      return -1;
    }
    if (access & Access.WRITE) eng.write(this.memory, buf);
    else eng.read(this.memory, buf);
    return eng.firstPa;
  }

  #deliver(dev: HostDevice, pasid: number, iova: number, access: number): FaultRecord {
    const f = this.#dma.fault!;
    const rec: FaultRecord = {
      device: dev.id,
      pasid: pasid === NO_PASID ? null : pasid,
      iova,
      access: access & Access.WRITE ? "write" : access & Access.EXEC ? "exec" : "read",
      priv: (access & Access.PRIV) !== 0,
      class: f.class,
      recorded: f.recorded,
      vendor: f.vendor,
    };
    this.#faults.push(rec);
    const h =
      pasid === NO_PASID
        ? (dev.ridAttach?.hwpt ?? null)
        : (dev.pasids.get(pasid) ?? dev.ridAttach?.hwpt ?? null);
    h?.faultQueue?.queue.push(rec);
    return rec;
  }

  /** Reads and clears the delivered faults of a device (every device when omitted), oldest first. */
  faultsRead(device?: number): FaultRecord[] {
    if (device !== undefined) this.#device(device);
    return this.#faults.drain(device);
  }

  /** IOMMU_FAULT_QUEUE_ALLOC: a fault queue object for `hwptAlloc({faultQueue})`. */
  faultQueueAlloc(): number {
    this.#objects.reserve("fault");
    return this.#objects.insert(new FaultQueueObject(this.#objects.nextId)).id;
  }

  /** Reads and clears a fault queue object. */
  faultQueueRead(id: number): FaultRecord[] {
    return (this.#objects.get(id, "fault") as FaultQueueObject).queue.drain();
  }

  // ---------------------------------------------------------------- invalidation and dirty tracking

  /**
   * IOMMU_HWPT_INVALIDATE on a nested HWPT: processes vendor entries in order and
   * returns how many were handled (a bad entry throws with `details.handled`). EINVAL on
   * a paging HWPT, EOPNOTSUPP when the domain takes none.
   */
  invalidate(hwptId: number, entries: readonly unknown[]): number {
    const h = this.#hwpt(hwptId);
    if (h.kind !== "hwpt-nested")
      throw new IommuError("EINVAL", `HWPT ${h.id} is not nested`, { hwpt: h.id });
    if (h.domain.invalidate === undefined)
      throw new IommuError("EOPNOTSUPP", `HWPT ${h.id} takes no invalidations`);
    return h.domain.invalidate(entries);
  }

  #dirtyHwpt(hwptId: number): HwptPaging {
    const h = this.#objects.get(hwptId, "hwpt-paging") as HwptPaging;
    if (
      !h.domain.flags.dirtyTracking ||
      h.domain.setDirtyTracking === undefined ||
      h.domain.readDirty === undefined
    ) {
      throw new IommuError("EOPNOTSUPP", `HWPT ${h.id} was not allocated with dirty tracking`, {
        hwpt: h.id,
      });
    }
    return h;
  }

  /** IOMMU_HWPT_SET_DIRTY_TRACKING. EOPNOTSUPP unless allocated with dirty_tracking; ENOENT for a non-paging id. */
  dirtySet(hwptId: number, enable: boolean): void {
    this.#dirtyHwpt(hwptId).domain.setDirtyTracking!(enable);
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP: bit i of byte j = page 8j + i of `pageSize` bytes from
   * `iova`; read and cleared unless `noClear`. EINVAL for a page size that is not a
   * power of two or a range not aligned to it.
   */
  dirtyRead(hwptId: number, opts: DirtyReadOptions): Uint8Array {
    const h = this.#dirtyHwpt(hwptId);
    const ps = opts.pageSize;
    if (!Number.isSafeInteger(ps) || ps <= 0 || lowestBit(ps) !== ps) {
      throw new IommuError("EINVAL", `dirty page size ${ps} is not a power of two`, { pageSize: ps });
    }
    checkIova(opts.iova);
    checkLength(opts.length);
    if (opts.iova % ps !== 0 || opts.length % ps !== 0) {
      throw new IommuError(
        "EINVAL",
        `dirty range ${hex(opts.iova)}+${hex(opts.length)} is not aligned to ${ps}`,
      );
    }
    const pages = opts.length / ps;
    const bitmap = new Uint8Array(Math.ceil(pages / 8));
    h.domain.readDirty!(opts.iova, opts.length, Math.log2(ps), bitmap, opts.noClear === true);
    return bitmap;
  }

  // ---------------------------------------------------------------- emulated access

  #access(device: number): AccessObject {
    const dev = this.#device(device);
    if (dev.access === null)
      throw new IommuError("ENOENT", `device ${dev.id} has no emulated access`, { device: dev.id });
    return dev.access;
  }

  /** iommufd_access_pin_pages: pins the pages of [iova, iova + length); returns their physical addresses. */
  accessPin(device: number, iova: number, length: number, write: boolean): readonly number[] {
    checkIova(iova);
    checkLength(length);
    return this.#access(device).domain.pin(iova, length, write);
  }

  /** iommufd_access_unpin_pages. */
  accessUnpin(device: number, iova: number, length: number): void {
    checkIova(iova);
    checkLength(length);
    this.#access(device).domain.unpin(iova, length);
  }

  /** iommufd_access_rw: reads `length` bytes (returned) or writes `data` through the IOVA; all or nothing. */
  accessRw(device: number, opts: AccessRwOptions): Uint8Array | undefined {
    const acc = this.#access(device);
    checkIova(opts.iova);
    if (opts.write) {
      if (opts.data === undefined) throw new IommuError("EINVAL", "an access write needs data");
      checkLength(opts.data.length);
      acc.domain.write(opts.iova, opts.data);
      return undefined;
    }
    checkLength(opts.length ?? 0);
    return acc.domain.read(opts.iova, opts.length!);
  }

  // ---------------------------------------------------------------- memory

  /** Writes physical memory. EINVAL inside the table region, EFAULT outside RAM. */
  memWrite(pa: number, data: Uint8Array): void {
    if (this.tables.overlaps(pa, data.length)) {
      throw new IommuError("EINVAL", `[${hex(pa)}, +${hex(data.length)}) overlaps the table region`, { pa });
    }
    this.memory.write(pa, data);
  }

  /** Reads physical memory (tables included). EFAULT outside RAM. */
  memRead(pa: number, length: number): Uint8Array {
    checkLength(length);
    return this.memory.read(pa, length);
  }

  // ---------------------------------------------------------------- introspection

  /** The walk of one request, step by step (backend `explain`), routed like a DMA. */
  explain(device: number, req: ExplainRequest): readonly WalkStep[] {
    const dev = this.#device(device);
    const backend = this.#route(dev, req.pasid);
    const rid = this.#routeRid;
    const pasid = this.#routePasid;
    if (backend.explain === undefined)
      throw new IommuError("EOPNOTSUPP", `IOMMU ${backend.name} cannot explain walks`);
    return backend.explain(rid, pasid, BigInt(req.iova), accessFlags(req.access, req.priv === true));
  }

  /** The decoded tables of a device (backend `dump`). */
  dump(device: number): unknown {
    const dev = this.#device(device);
    if (dev.backend.dump === undefined) throw new IommuError("EOPNOTSUPP", `IOMMU ${dev.iommu} cannot dump`);
    return dev.backend.dump(dev.rid);
  }

  /** A plain description of object `id` (ENOENT when unknown). */
  describe(id: number): ObjectInfo {
    return this.#info(this.#objects.get(id));
  }

  /** Plain descriptions of every object, by id. */
  objects(): ObjectInfo[] {
    return this.#objects.values().map((o) => this.#info(o));
  }

  #info(o: HostObject): ObjectInfo {
    switch (o.kind) {
      case "device": {
        const d = o as HostDevice;
        return {
          id: d.id,
          kind: d.kind,
          iommu: d.iommu,
          rid: d.rid,
          pasidBits: d.pasidBits,
          parent: d.parent?.id ?? null,
          ridAttach: d.ridAttach === null ? null : { kind: d.ridAttach.kind, hwpt: d.ridAttach.hwpt.id },
          pasids: [...d.pasids].map(([p, h]): [number, number] => [p, h.id]).sort((a, b) => a[0] - b[0]),
          access: d.access?.id ?? null,
          children: d.children,
          // What the backend itself has on the RID (its domain id), to catch host/backend drift.
          backendRid: backendDomainId(d),
        };
      }
      case "ioas": {
        const i = o as Ioas;
        return {
          id: i.id,
          kind: i.kind,
          areas: i.iopt.areas.map((a) => ({
            iova: a.iova,
            length: a.length,
            pa: areaPa(a),
            prot: a.prot,
            pagesUsers: a.pages.users,
          })),
          allowed: i.iopt.allowed.map((r) => ({ ...r })),
          reserved: i.reserved.map((r) => ({ ...r })),
          alignment: i.alignment,
          hwpts: i.hwpts.map((h) => h.id),
          accesses: i.accesses.map((a) => a.id),
        };
      }
      case "hwpt-paging": {
        const h = o as HwptPaging;
        return {
          id: h.id,
          kind: h.kind,
          ioas: h.ioas.id,
          iommu: h.domain.backend.name,
          format: h.domain.format,
          flags: { ...h.domain.flags },
          auto: h.auto,
          users: h.users,
          children: h.children,
          faultQueue: h.faultQueue?.id ?? null,
        };
      }
      case "hwpt-nested": {
        const h = o as HwptNested;
        return {
          id: h.id,
          kind: h.kind,
          parent: h.parent.id,
          iommu: h.domain.backend.name,
          format: h.domain.format,
          users: h.users,
          faultQueue: h.faultQueue?.id ?? null,
        };
      }
      case "access": {
        const a = o as AccessObject;
        return { id: a.id, kind: a.kind, ioas: a.ioas.id, device: a.device.id, pins: a.domain.pinCount() };
      }
      case "fault": {
        const f = o as FaultQueueObject;
        return { id: f.id, kind: f.kind, pending: f.queue.size };
      }
    }
  }

  /** A deep-equal comparable snapshot: objects, table blocks and memory contents. */
  state(): HostState {
    const stats = this.tables.stats();
    return {
      nextId: this.#objects.nextId,
      iommus: [...this.#iommus.keys()],
      objects: this.objects(),
      pendingFaults: this.#faults.size,
      tableBlocks: this.tables.blocks(),
      tableBytes: stats.bytes,
      memory: this.memory.snapshot(),
    };
  }
}
