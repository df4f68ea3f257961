/**
 * The backend contract: what a vendor IOMMU model implements and what the host (or
 * any consumer) calls. Consumer-side interfaces only (rust-vmm/vm-memory DESIGN.md):
 * a backend is *created* by its {@link BackendFactory}; how it lays out its tables is
 * its own business.
 *
 * Required of every backend: devices (add / remove / capabilities), domains
 * (allocate), attach / detach with an {@link AttachIntent}, translate, counters.
 * Required of every domain: map / unmap (paging), free. Everything else is optional
 * and feature-detected (dirty tracking, nested invalidation, explain / dump).
 *
 * Invariants every backend keeps (the conformance suite checks them):
 * - an intent missing from `capabilities(rid).intents` is refused with EOPNOTSUPP
 *   before any state changes;
 * - every throwing call leaves the backend exactly as it was (atomic);
 * - `attach` to an attach point that already has a domain *replaces* it atomically;
 *   `detach` leaves that attach point blocked (DMA faults with class `blocked`);
 * - translations come from the tables in physical memory through the backend's caches,
 *   which stay stale until the invalidation a real driver issues.
 */

import type { Capabilities } from "./capabilities.ts";
import type { PageRequest, PageResponseCode } from "./fault.ts";
import type { AttachIntent } from "./intent.ts";
import type { PhysicalMemory } from "./memory/physical-memory.ts";
import type { TableAllocator } from "./memory/table-allocator.ts";
import type { Translation, TranslationOutcome } from "./translation.ts";

/** A device behind a backend: its requester ID and how wide its PASIDs are. */
export interface DeviceSpec {
  /** StreamID (SMMUv3), source-id = bus:dev.fn (VT-d), or the backend's own device number. */
  readonly rid: number;
  /** PASID width the device itself supports (PCIe PASID capability); 0 = none. */
  readonly pasidBits: number;
  /** The device may use ATS (default false). */
  readonly ats?: boolean;
  /** PCIe Page Request Interface (needs `ats`): the device can send page requests (VT-d PRQ). */
  readonly pri?: boolean;
  /** The device tolerates stalled transactions (firmware "dma-can-stall", SMMUv3 stall model). */
  readonly canStall?: boolean;
  /**
   * For a mediated device: the physical device whose DMA it borrows (its backend and
   * rid). The mdev's PASID attaches go to that device through `backend`'s contract.
   */
  readonly parent?: { readonly backend: Backend; readonly rid: number };
}

/** Domain (page table) types, as iommu_domain types. */
export type DomainType = "paging" | "nested" | "blocked" | "identity";

/** iommufd's IOMMU_HWPT_ALLOC_* flags, by name. */
export interface DomainFlags {
  /** IOMMU_HWPT_ALLOC_NEST_PARENT: may serve as the parent of nested domains. */
  readonly nestParent?: boolean;
  /** IOMMU_HWPT_ALLOC_DIRTY_TRACKING. */
  readonly dirtyTracking?: boolean;
  /** IOMMU_HWPT_ALLOC_PASID: may be attached to PASIDs (and to a RID that has PASIDs attached). */
  readonly pasid?: boolean;
}

/** What to allocate. `rid` names the device it is for (iommufd allocates per device). */
export type DomainRequest =
  | {
      readonly type: "paging";
      readonly rid?: number;
      /** A format from the device's capabilities; omitted = the first (default). */
      readonly format?: string;
      readonly flags?: DomainFlags;
    }
  | {
      readonly type: "nested";
      readonly rid?: number;
      /** A nest-parent paging domain of the same backend. */
      readonly parent: Domain;
      /** Vendor data (SMMUv3 user STE words; VT-d first-stage pointer/width/flags). */
      readonly data: unknown;
      readonly flags?: DomainFlags;
    }
  | { readonly type: "blocked" }
  | { readonly type: "identity" };

/** An inclusive IOVA range. */
export interface IovaRange {
  readonly start: number;
  readonly last: number;
}

/** The outcome of an attach: the PASID used (assigned by the backend for `pasid: "auto"`). */
export interface AttachResult {
  readonly pasid?: number;
}

/** Cache and walk counters, readable at any time (the CLI shows them). */
export interface CacheCounters {
  /** Translations served from the IOTLB. */
  readonly iotlbHits: number;
  /** IOTLB lookups that missed. */
  readonly iotlbMisses: number;
  /** Configuration-cache (STE/CD, context/PASID entry) hits and misses. */
  readonly configHits: number;
  readonly configMisses: number;
  /** Full table walks performed. */
  readonly walks: number;
  /** Invalidation commands / descriptors processed. */
  readonly invalidations: number;
}

/**
 * A page table of one backend. Paging domains are written by the backend in its
 * native format into physical memory; nested domains are user tables walked through
 * a parent paging domain; blocked and identity domains have no table.
 */
export interface Domain {
  readonly backend: Backend;
  /** Unique within its backend. */
  readonly id: number;
  readonly type: DomainType;
  /** The table format ("arm-lpae-s1-4k", "vtd-ss-4lvl", "mdev-interval", ...); "" for blocked/identity. */
  readonly format: string;
  readonly flags: DomainFlags;
  /** IOVAs this domain can map (inclusive). */
  readonly aperture: IovaRange;
  /** Page sizes map() may use (bitmap, bit n = 2^n bytes). The smallest is the IOVA alignment. */
  readonly pageSizeBitmap: bigint;
  /**
   * Maps [iova, iova + length) to [pa, pa + length) with `prot` ({@link Perm} bits),
   * using the largest pages size and alignment allow, and issues the invalidations
   * a driver issues. Throws EINVAL (misaligned, outside aperture, not paging),
   * EEXIST (overlaps a mapping), ENOMEM (table allocation failed); atomic.
   */
  map(iova: number, pa: number, length: number, prot: number): void;
  /**
   * Unmaps [iova, iova + length), freeing emptied tables and invalidating. Returns
   * the bytes unmapped (unmapped holes count nothing). Splitting a larger page is
   * refused with EINVAL.
   */
  unmap(iova: number, length: number): number;
  /** The physical address `iova` maps to in this table, or -1 (a software walk: no caches, no faults). */
  iovaToPhys(iova: number): number;
  /** Releases the domain's tables. EBUSY while attached anywhere. */
  free(): void;
  /** Enables or disables dirty tracking (domains allocated with dirtyTracking). */
  setDirtyTracking?(enable: boolean): void;
  /**
   * Reads dirty state of [iova, iova + length) into `bitmap` (bit i of byte j = page
   * 8j + i of size 2^pageSizeLg2, as IOMMU_HWPT_GET_DIRTY_BITMAP) and clears it
   * unless `noClear`.
   */
  readDirty?(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void;
  /**
   * Nested domains: processes vendor invalidation entries in order and returns how
   * many were handled; on a bad entry throws with `details.handled` set.
   */
  invalidate?(entries: readonly unknown[]): number;
}

/** One step of an explained walk (for `iommu-kit explain`). */
export interface WalkStep {
  /** "STE", "CD", "L1 table", "root entry", "PASID entry", "S2 L2"... */
  readonly what: string;
  /** Physical address of the entry read (null when nothing was read). */
  readonly address: number | null;
  readonly index?: number;
  /** The raw entry, hex, as many 64-bit words as the entry has. */
  readonly raw?: readonly string[];
  /** Decoded fields by the spec's names. */
  readonly fields?: Readonly<Record<string, string | number | boolean>>;
  /** What the step concluded ("table", "block 2M", "fault: F_TRANSLATION (AF=0)"...). */
  readonly note: string;
}

/**
 * A backend: one IOMMU instance (an SMMU, a DMAR unit, an mdev parent).
 */
export interface Backend {
  /** The registered backend name ("smmuv3", "vtd", "mdev-emulated", ...). */
  readonly kind: string;
  /** This instance's name (unique in a host). */
  readonly name: string;
  /** Probes a device behind this IOMMU. EEXIST for a known rid, EINVAL for a rid out of range. */
  addDevice(spec: DeviceSpec): void;
  /** Forgets a device. EBUSY while anything is attached to it. */
  removeDevice(rid: number): void;
  /** The device's capabilities. ENOENT for an unknown rid. */
  capabilities(rid: number): Capabilities;
  /**
   * IOVA ranges the device must never have mapped (MSI windows, the VT-d interrupt
   * range 0xFEE00000-0xFEEFFFFF), as iommu_get_resv_regions reports them.
   */
  reservedRegions(rid: number): readonly IovaRange[];
  /** Allocates a domain. EOPNOTSUPP for an unsupported type/format/flag, EINVAL for bad data. */
  allocDomain(request: DomainRequest): Domain;
  /**
   * Attaches (or atomically replaces) the domain serving `intent` on device `rid`.
   * EOPNOTSUPP when the intent is not in the device's capabilities; EINVAL for a
   * domain of another backend or an incompatible one.
   */
  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult;
  /** Detaches whatever serves `intent`; the attach point is blocked afterwards. Harmless when nothing is attached. */
  detach(rid: number, intent: AttachIntent): void;
  /** The domain serving `intent` on `rid`, or null (blocked). */
  attached(rid: number, intent: AttachIntent): Domain | null;
  /**
   * Translates one request through the caches and tables (see `translation.ts` for
   * the encoding). Never throws for anything a table holds; throws only for misuse.
   */
  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean;
  /** Same, for IOVAs at or above 2^53 (allocates). */
  translateBig?(rid: number, pasid: number, iova: bigint, access: number): TranslationOutcome;
  counters(): CacheCounters;
  /** Drops every cached translation and configuration (as a global invalidation would). */
  flushCaches(): void;
  /** The walk of one request, step by step, without touching caches or recording faults. */
  explain?(rid: number, pasid: number, iova: bigint, access: number): readonly WalkStep[];
  /** The decoded tables of a device (or of every device), as a JSON-able tree. */
  dump?(rid?: number): unknown;
  /**
   * IOMMU_VIOMMU_ALLOC (viommu.ts). EOPNOTSUPP for a type this IOMMU cannot host;
   * EINVAL for a parent that is not a nest-parent paging domain of this backend.
   */
  allocViommu?(request: ViommuRequest): Viommu;
  /**
   * Answers a held request ({@link Fault.pageRequest}) as iommu_page_response does:
   * SMMUv3 CMD_RESUME, VT-d a page group response descriptor. ENOENT when nothing
   * with that group is held for the device.
   */
  pageResponse?(request: PageRequest, code: PageResponseCode): void;
}

/** What a backend factory receives from its host. */
export interface BackendContext {
  /** The physical memory every table lives in and every DMA reaches. */
  readonly memory: PhysicalMemory;
  /** The allocator of table blocks (a region reserved for tables). */
  readonly tables: TableAllocator;
  /** This instance's name. */
  readonly name: string;
  /** Finds another backend instance by name (an mdev parent). */
  readonly lookup?: (name: string) => Backend | undefined;
}

/**
 * A backend kind, registered by name in the {@link BackendRegistry}. `configSchema`
 * is a JSON Schema of `config` for scenario files. `fromRegisters` builds a
 * hardware-model-only instance over an existing memory image and register values (the
 * snapshot path of `iommu-kit translate`).
 */
export interface BackendFactory {
  readonly name: string;
  readonly description: string;
  readonly configSchema?: Readonly<Record<string, unknown>>;
  create(ctx: BackendContext, config?: unknown): Backend;
  /** Register names accepted by `fromRegisters`, with their defaults. */
  readonly registerDefaults?: Readonly<Record<string, bigint>>;
  fromRegisters?(memory: PhysicalMemory, registers: Readonly<Record<string, bigint>>): Backend;
}

/** Counters all zero. */
export const ZERO_COUNTERS: CacheCounters = Object.freeze({
  iotlbHits: 0,
  iotlbMisses: 0,
  configHits: 0,
  configMisses: 0,
  walks: 0,
  invalidations: 0,
});

/**
 * The software access of a domain attached with the `emulated` intent (iommufd's
 * access objects: iommufd_access_pin_pages / unpin_pages / iommufd_access_rw).
 * Implemented by emulated-table domains; detected with {@link isEmulatedAccess}.
 */
export interface EmulatedAccess {
  /**
   * Pins [iova, iova + length) (rounded out to pages) and returns the physical address
   * of each page, in order. EFAULT/ENOENT for an unmapped range, EPERM-like EACCES
   * is reported as EINVAL for a write pin of a read-only mapping; nothing is pinned on error.
   */
  pin(iova: number, length: number, write: boolean): readonly number[];
  /** Drops one pin of every page in the range; EINVAL when a page is not pinned. */
  unpin(iova: number, length: number): void;
  /** Reads bytes through the IOVA (any alignment); all or nothing. */
  read(iova: number, length: number): Uint8Array;
  /** Writes bytes through the IOVA (any alignment); all or nothing. */
  write(iova: number, data: Uint8Array): void;
  /** Total pins held (each page counted once per pin). */
  pinCount(): number;
}

/** True when a domain offers {@link EmulatedAccess}. */
export function isEmulatedAccess(d: Domain): d is Domain & EmulatedAccess {
  const x = d as Partial<EmulatedAccess>;
  return typeof x.pin === "function" && typeof x.unpin === "function" && typeof x.read === "function";
}

// ---------------------------------------------------------------- virtual IOMMUs
// iommufd's vIOMMU / vDEVICE / vEVENTQ (Linux 6.13-6.15, drivers/iommu/iommufd/viommu.c,
// eventq.c): the vIOMMU owns the stage-2 context of one VM (the SMMUv3 VMID), maps virtual
// device ids (vSIDs) to real ones, converts the guest's raw invalidations and reports the
// guest's events with the virtual id in place. In this file because Backend and Viommu
// refer to each other.

/** IOMMU_VIOMMU_TYPE_* by name: "arm-smmuv3" (IOMMU_VIOMMU_TYPE_ARM_SMMUV3), "selftest". */
export type ViommuType = string;

/** IOMMU_VIOMMU_ALLOC: a vIOMMU of `type` over nest-parent `parent`, for the IOMMU behind device `rid`. */
export interface ViommuRequest {
  readonly type: ViommuType;
  readonly rid: number;
  /** A paging domain of this backend allocated with `flags.nestParent`. */
  readonly parent: Domain;
}

/** One guest-visible event, as iommufd_viommu_report_event receives it. */
export interface ViommuEvent {
  /** IOMMU_VEVENTQ_TYPE_* by name ("arm-smmuv3", "selftest"). */
  readonly type: string;
  /** The record as the guest reads it (SMMUv3: the 32-byte event with the vSID in place of the SID). */
  readonly data: Uint8Array;
}

/** Receives a vIOMMU's events of one type (a vEVENTQ). */
export type ViommuEventSink = (event: ViommuEvent) => void;

/**
 * A virtual IOMMU (struct iommufd_viommu). Every throwing call leaves it exactly as it was.
 */
export interface Viommu {
  readonly backend: Backend;
  /** Unique within its backend. */
  readonly id: number;
  readonly type: ViommuType;
  readonly parent: Domain;
  /** Vendor ids it owns, for describe/dump ({ vmid: 5 } on SMMUv3). */
  readonly info: Readonly<Record<string, number | string | boolean>>;
  /**
   * IOMMU_VDEVICE_ALLOC: device `rid` is `virtId` (the vSID) to the guest. EEXIST when
   * `virtId` is taken or the device already has one; EINVAL for a device not behind this
   * vIOMMU's IOMMU or a `virtId` out of range.
   */
  addVdevice(rid: number, virtId: number): void;
  /** Forgets the device's virtual id. ENOENT when it has none. */
  removeVdevice(rid: number): void;
  /** The virtual id of device `rid`, or -1. */
  virtId(rid: number): number;
  /** IOMMU_HWPT_ALLOC with pt_id = this vIOMMU: a nested domain over `parent` (vendor data). */
  allocNested(data: unknown, flags: DomainFlags): Domain;
  /**
   * IOMMU_HWPT_INVALIDATE on the vIOMMU: processes raw vendor entries in order and
   * returns how many were handled; on a bad entry throws with `details.handled` set.
   */
  invalidate(entries: readonly unknown[]): number;
  /** Routes events of `type` to `sink` (a vEVENTQ); null stops them. EEXIST when one is set. */
  setEventSink(type: string, sink: ViommuEventSink | null): void;
  /** Releases the vIOMMU's ids. EBUSY while vdevices or nested domains exist. */
  free(): void;
}
