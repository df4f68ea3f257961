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
 * `faultQueueAlloc` IOMMU_FAULT_QUEUE_ALLOC (`faultQueueRead` / `faultRespond` read and
 * write its fd), `viommuAlloc` IOMMU_VIOMMU_ALLOC, `vdeviceAlloc` IOMMU_VDEVICE_ALLOC,
 * `veventqAlloc` IOMMU_VEVENTQ_ALLOC (`veventqRead` reads its fd), `destroy` IOMMU_DESTROY.
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
 *   the result says which. Its DMA is issued by its parent with that PASID, and
 *   only that one (another PASID is blocked by the mdev backend). The parent's own
 *   attach of that PASID is EBUSY, and it counts as a PASID for the parent's RID rule.
 * - `emulated` attaches an mdev to an IOAS (not a HWPT): the result's `hwpt` is the
 *   id of the access object; `accessPin` / `accessUnpin` / `accessRw` use it.
 *
 * This file is the facade only: each rule lives in the file of its iommufd object
 * (ioas.ts, device.ts, hw-pagetable.ts, access.ts, fault.ts, viommu.ts, vdevice.ts,
 * veventq.ts; device-dma.ts for DMA),
 * all sharing one `HostCtx` (context.ts). The IOMMU instances (iommufd's main.c
 * registry of drivers, in spirit) stay here.
 */

import type { Backend, BackendRegistry, CacheCounters, FailNth, IovaRange, WalkStep } from "@iommu-kit/core";
import { defaultRegistry, hex, IommuError, PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import type { AccessRwOptions } from "./access.ts";
import { accessPin, accessRw, accessUnpin } from "./access.ts";
import type { HostCtx } from "./context.ts";
import { ObjectTable } from "./context.ts";
import type { ObjectInfo } from "./describe.ts";
import { describeObject } from "./describe.ts";
import { destroyObject } from "./destroy.ts";
import type { AttachOutcome, DeviceOptions, HwInfoResult, IntentSpec, MdevOptions } from "./device.ts";
import {
  allDevices,
  attachDevice,
  bindDevice,
  detachDevice,
  getDevice,
  hwInfo,
  ridRegions,
  toIntent,
} from "./device.ts";
import type { DmaRequest, DmaResult, ExplainRequest } from "./device-dma.ts";
import { DeviceDma } from "./device-dma.ts";
import type { FaultRecord, PageFaultRecord, PageResponse } from "./fault.ts";
import { faultQueueAlloc, faultQueueRead } from "./fault.ts";
import type { HostOptions, HostState } from "./host-options.ts";
import { DEFAULT_RAM, DEFAULT_TABLES } from "./host-options.ts";
import type { DirtyReadOptions, HwptAllocOptions } from "./hw-pagetable.ts";
import { dirtyRead, dirtySet, hwptAlloc, hwptInvalidate } from "./hw-pagetable.ts";
import { checkTransfer } from "./io-pagetable.ts";
import type { CopyOptions, IovaRanges, MapOptions } from "./ioas.ts";
import {
  ioasAlloc,
  ioasAllowIovas,
  ioasAreas,
  ioasCopy,
  ioasCutIova,
  ioasIovaRanges,
  ioasMap,
  ioasReserve,
  ioasSetLargePages,
  ioasUnmap,
  ioasUnmapAll,
} from "./ioas.ts";
import { addMdevDevice } from "./mdev.ts";
import { loadBackend } from "./registry.ts";
import type { VdeviceAllocOptions } from "./vdevice.ts";
import { vdeviceAlloc } from "./vdevice.ts";
import type { VeventqAllocOptions, VeventRecord } from "./veventq.ts";
import { veventqAlloc, veventqRead } from "./veventq.ts";
import type { ViommuAllocOptions } from "./viommu.ts";
import { viommuAlloc } from "./viommu.ts";

export type { AccessInfo, AccessRwOptions } from "./access.ts";
export type { ObjectInfo } from "./describe.ts";
export type {
  AttachOutcome,
  DeviceInfo,
  DeviceOptions,
  HwInfoResult,
  IntentSpec,
  MdevOptions,
} from "./device.ts";
export type { DmaRequest, DmaResult, ExplainRequest } from "./device-dma.ts";
export type { FaultQueueInfo, PageFaultRecord, PageResponse } from "./fault.ts";
export type { HostOptions, HostState } from "./host-options.ts";
export { DEFAULT_RAM, DEFAULT_TABLES } from "./host-options.ts";
export type {
  DirtyReadOptions,
  HwptAllocOptions,
  HwptFlag,
  HwptNestedInfo,
  HwptPagingInfo,
} from "./hw-pagetable.ts";
export type { AreaInfo, CopyOptions, IoasInfo, IovaRanges, MapOptions, ProtSpec } from "./ioas.ts";
export type { VdeviceAllocOptions, VdeviceInfo } from "./vdevice.ts";
export type { VeventqAllocOptions, VeventqInfo, VeventRecord } from "./veventq.ts";
export type { ViommuAllocOptions, ViommuInfo } from "./viommu.ts";

/** iommufd in miniature. See the file comment for the rules. */
export class Host {
  /** The physical memory every table lives in and every DMA reaches. */
  readonly memory: PhysicalMemory;
  /** The allocator of table blocks. */
  readonly tables: TableAllocator;
  /** Where backends are found. */
  readonly registry: BackendRegistry;
  readonly #iommus = new Map<string, Backend>();
  readonly #ctx: HostCtx;
  readonly #dma: DeviceDma;
  readonly #mdevBackend: string;

  constructor(options: HostOptions = {}) {
    const ram = options.ram ?? DEFAULT_RAM;
    const t = options.tables ?? DEFAULT_TABLES;
    const covered = ram.some((r) => r.base <= t.base && t.base + t.size <= r.base + r.size);
    this.memory = new PhysicalMemory(
      covered ? ram : [...ram, { base: t.base, size: t.size, name: "tables" }],
    );
    this.tables = new TableAllocator(this.memory, t.base, t.size);
    this.registry = options.registry ?? defaultRegistry;
    const ctx: HostCtx = {
      objects: new ObjectTable(this.memory.failNth),
      memory: this.memory,
      tables: this.tables,
      ridRegions: (ioasId: number) => ridRegions(ctx, ioasId),
      vevents: { reported: 0 },
    };
    this.#ctx = ctx;
    this.#dma = new DeviceDma(ctx);
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

  // ---------------------------------------------------------------- devices (device.ts)

  /** Adds a device behind an IOMMU; returns its object id. EEXIST / EINVAL from the backend for a bad rid. */
  addDevice(opts: DeviceOptions): number {
    return bindDevice(this.#ctx, this.iommu(opts.iommu), opts);
  }

  /**
   * Adds a mediated device on a parent device; returns its object id. Its IOMMU is an
   * mdev backend instance (created as "mdev" from `mdevBackend` when none exists; the
   * built-in mdev-emulated is registered first when the registry lacks it). EINVAL
   * when `iommu` names an instance that is not of kind `mdevBackend` (a VT-d unit is
   * no mdev backend).
   */
  addMdev(opts: MdevOptions): number {
    const iommus = this.#iommus;
    return addMdevDevice(
      {
        ctx: this.#ctx,
        registry: this.registry,
        iommus,
        mdevBackend: this.#mdevBackend,
        addIommu: (name, backendName) => this.addIommu(name, backendName),
      },
      opts,
    );
  }

  /** Ids of every device, ascending. */
  deviceIds(): number[] {
    return allDevices(this.#ctx).map((d) => d.id);
  }

  /** IOMMU_GET_HW_INFO: capability flags, PASID width and the vendor block of a device. */
  hwInfo(device: number): HwInfoResult {
    return hwInfo(getDevice(this.#ctx, device));
  }

  // ---------------------------------------------------------------- IOAS (ioas.ts)

  /** IOMMU_IOAS_ALLOC: a new, empty IO address space. */
  ioasAlloc(): number {
    return ioasAlloc(this.#ctx);
  }

  /**
   * IOMMU_IOAS_MAP: maps [pa, pa + length) at a fixed or allocated IOVA and into every
   * domain of the IOAS. Returns the IOVA. EINVAL (alignment, reserved, bad prot, table
   * region), EEXIST (overlap), EOVERFLOW, ENOSPC (no room), EFAULT (not RAM), ENOMEM.
   */
  ioasMap(ioasId: number, opts: MapOptions): number {
    return ioasMap(this.#ctx, ioasId, opts);
  }

  /**
   * IOMMU_IOAS_UNMAP: unmaps every area inside [iova, iova + length), which must cover
   * whole areas (ENOENT for a partial cover or nothing mapped). Returns the bytes
   * unmapped. An emulated access still pinning the range after its unmap callback
   * makes it EBUSY.
   */
  ioasUnmap(ioasId: number, iova: number, length: number): number {
    return ioasUnmap(this.#ctx, ioasId, iova, length);
  }

  /** IOMMU_IOAS_UNMAP of everything (0..U64_MAX); 0 when nothing is mapped. */
  ioasUnmapAll(ioasId: number): number {
    return ioasUnmapAll(this.#ctx, ioasId);
  }

  /**
   * IOMMU_IOAS_COPY: maps the pages behind [srcIova, srcIova + length) of `src` (which
   * must be covered by areas without a gap: ENOENT) into `dst`, at a fixed or
   * allocated IOVA. Write access needs writable source pages (EPERM). Returns the IOVA.
   */
  ioasCopy(opts: CopyOptions): number {
    return ioasCopy(this.#ctx, opts);
  }

  /** IOMMU_IOAS_IOVA_RANGES: the usable IOVA ranges (not reserved) and the alignment. */
  ioasIovaRanges(ioasId: number): IovaRanges {
    return ioasIovaRanges(this.#ctx, ioasId);
  }

  /** iopt_reserve_iova for no owner (the selftest's ADD_RESERVED): EADDRINUSE over an area or allowed range. */
  ioasReserve(ioasId: number, range: IovaRange): void {
    ioasReserve(this.#ctx, ioasId, range);
  }
  /** iopt_cut_iova: splits the areas holding each IOVA so one ends there (VFIO type1 partial unmap); EINVAL unaligned. */
  ioasCutIova(ioasId: number, iovas: readonly number[]): void {
    ioasCutIova(this.#ctx, ioasId, iovas);
  }
  /** IOMMU_OPTION_HUGE_PAGES (iopt_{dis,en}able_large_pages): off = PAGE_SIZE alignment; EINVAL / EADDRINUSE. */
  ioasSetLargePages(ioasId: number, enable: boolean): void {
    ioasSetLargePages(this.#ctx, ioasId, enable);
  }

  /**
   * IOMMU_IOAS_ALLOW_IOVAS: restricts automatic IOVAs to `ranges` (empty: no
   * restriction) and makes later reservations that intersect them fail. EINVAL for a
   * bad range, EADDRINUSE when one intersects a reserved range.
   */
  ioasAllowIovas(ioasId: number, ranges: readonly IovaRange[]): void {
    ioasAllowIovas(this.#ctx, ioasId, ranges);
  }

  /** Areas of an IOAS (copies), ascending: iova, length, pa, prot. */
  ioasAreas(ioasId: number): Array<{ iova: number; length: number; pa: number; prot: number }> {
    return ioasAreas(this.#ctx, ioasId);
  }

  // ---------------------------------------------------------------- HWPT (hw-pagetable.ts)

  /**
   * IOMMU_HWPT_ALLOC. On an IOAS: a paging HWPT filled with every area (flags
   * nest_parent, dirty_tracking, pasid; vendor data is EOPNOTSUPP). On a nest-parent
   * paging HWPT: a nested HWPT with vendor `data` (none: EOPNOTSUPP; parent not a nest
   * parent, automatic, of another IOMMU, or nested: EINVAL; flags other than pasid:
   * EOPNOTSUPP; SMMUv3 refuses this form, EOPNOTSUPP: use a vIOMMU). On a vIOMMU: a
   * nested HWPT through `Viommu.allocNested` (a device of another IOMMU EINVAL; any flag
   * or no data EOPNOTSUPP). `faultQueue` (IOMMU_HWPT_FAULT_ID_VALID, ENOENT for no fault
   * queue) on either type receives its page requests. Unknown or missing-feature flags
   * EOPNOTSUPP; a `pt` naming no IOAS/HWPT/vIOMMU EINVAL.
   */
  hwptAlloc(opts: HwptAllocOptions): number {
    return hwptAlloc(this.#ctx, getDevice(this.#ctx, opts.device), opts);
  }

  // ---------------------------------------------------------------- vIOMMU, vDEVICE, vEVENTQ (viommu.ts, vdevice.ts, veventq.ts)

  /**
   * IOMMU_VIOMMU_ALLOC: a vIOMMU of `type` over the nest-parent paging HWPT `hwpt` for
   * the IOMMU behind `device`. ENOENT for an unknown device or a `hwpt` that is no
   * paging HWPT; EINVAL unless it is a nest parent; EOPNOTSUPP for an IOMMU without
   * vIOMMUs or for a type it cannot host ("default" included). The parent is EBUSY
   * while the vIOMMU holds it.
   */
  viommuAlloc(opts: ViommuAllocOptions): number {
    return viommuAlloc(this.#ctx, opts, (id) => getDevice(this.#ctx, id));
  }

  /**
   * IOMMU_VDEVICE_ALLOC: device `device` is `virtId` (the SMMUv3 vSID) on vIOMMU
   * `viommu`. EINVAL for a virtId outside [0, 2^32 - 1] or a device not behind the
   * vIOMMU's IOMMU; ENOENT for unknown ids; EEXIST for a taken virtId or a device that
   * has a vDEVICE. The device cannot be destroyed while it has one (EBUSY).
   */
  vdeviceAlloc(opts: VdeviceAllocOptions): number {
    return vdeviceAlloc(this.#ctx, opts, (id) => getDevice(this.#ctx, id));
  }

  /**
   * IOMMU_VEVENTQ_ALLOC: the vIOMMU's event queue of `type`, keeping at most `depth`
   * unread records. EOPNOTSUPP for a type that is no IOMMU_VEVENTQ_TYPE_* ("default"
   * included); EINVAL for depth 0 (or one that is no u32); ENOENT for an unknown vIOMMU;
   * EEXIST when it has one of that type.
   */
  veventqAlloc(opts: VeventqAllocOptions): number {
    return veventqAlloc(this.#ctx, opts);
  }

  /**
   * read() on a vEVENTQ: up to `max` records (all when omitted), oldest first, each with
   * its header (flags, sequence number); a LOST_EVENTS record (flags 1, no data) marks
   * where events were lost to a full queue. ENOENT for an id that is no vEVENTQ.
   */
  veventqRead(id: number, max?: number): VeventRecord[] {
    return veventqRead(this.#ctx, id, max);
  }

  // ---------------------------------------------------------------- attach (device.ts, access.ts)

  /**
   * Attaches `pt` (an IOAS, a HWPT) to the attach point `intent` of a device. EBUSY
   * when the point is occupied (use {@link Host.replace}); EOPNOTSUPP for an intent
   * the device does not list; EINVAL for PASID rule violations (see the file comment).
   */
  attach(device: number, intent: IntentSpec, pt: number): AttachOutcome {
    return attachDevice(this.#ctx, getDevice(this.#ctx, device), toIntent(intent), pt, false);
  }

  /**
   * Replaces what serves an occupied attach point (EINVAL when empty). On failure the
   * old table stays attached. A replaced automatic HWPT that loses its last user is destroyed.
   */
  replace(device: number, intent: IntentSpec, pt: number): AttachOutcome {
    return attachDevice(this.#ctx, getDevice(this.#ctx, device), toIntent(intent), pt, true);
  }

  /**
   * Detaches whatever serves `intent`; the attach point is blocked afterwards (DMA
   * faults with class `blocked`). Harmless when nothing is attached; EOPNOTSUPP for an
   * intent the device does not list. For an access the
   * backend runs the mdev's unmap callback first and refuses (EBUSY) if pins remain.
   */
  detach(device: number, intent: IntentSpec): void {
    const dev = getDevice(this.#ctx, device);
    detachDevice(this.#ctx, dev, toIntent(intent));
  }

  // ---------------------------------------------------------------- destroy

  /**
   * IOMMU_DESTROY: destroys a device, IOAS, HWPT, fault queue, vIOMMU, vDEVICE or
   * vEVENTQ. EBUSY while in use (attached, attached to, referenced by a HWPT, nest
   * parent, held by a vIOMMU, parent of an mdev, a device with a vDEVICE, a vIOMMU with
   * vDEVICEs, nested HWPTs or vEVENTQs); accesses go away with `detach`, so destroying
   * one is EBUSY. ENOENT for an unknown id.
   */
  destroy(id: number): void {
    destroyObject(this.#ctx, id);
  }

  // ---------------------------------------------------------------- DMA and faults (device-dma.ts, fault.ts)

  /**
   * A device reads (`length`) or writes (`data`) bytes at an IOVA. Every page is
   * translated first; only if all succeed do the bytes move. A fault is returned and
   * nothing moved: a page request on a HWPT with a fault queue holds the DMA
   * (`pending`, `cookie`: answer it with {@link Host.faultRespond}); a nested fault a
   * vEVENTQ took is the guest's; anything else goes to the host-wide log
   * ({@link Host.faultsRead}).
   * EINVAL for a malformed request (bad IOVA, PASID over 20 bits), E2BIG for a read above
   * MAX_TRANSFER (64 MiB), EFAULT when a translation leads outside RAM.
   */
  dma(device: number, req: DmaRequest): DmaResult {
    return this.#dma.dma(device, req);
  }

  /**
   * The DMA fast path, allocation-free on success: reads into or writes from `buf`
   * (by `access`) at `iova`. Returns the physical address of the first byte, or -1 after
   * delivering a fault (read it with {@link Host.faultsRead}; a page request a FAULT object
   * holds keeps a copy of a write's bytes for the retry). EINVAL / EOVERFLOW as `dma`.
   */
  dmaInto(device: number, pasid: number | null, iova: number, access: number, buf: Uint8Array): number {
    return this.#dma.dmaInto(device, pasid, iova, access, buf);
  }

  /** Reads and clears the delivered faults of a device (every device when omitted), oldest first. */
  faultsRead(device?: number): FaultRecord[] {
    if (device !== undefined) getDevice(this.#ctx, device);
    return this.#dma.faults.drain(device);
  }

  /** IOMMU_FAULT_QUEUE_ALLOC: a fault queue object for `hwptAlloc({faultQueue})`. */
  faultQueueAlloc(): number {
    return faultQueueAlloc(this.#ctx);
  }

  /**
   * read() on a fault queue's fd: up to `max` page requests (all when omitted) as
   * `struct iommu_hwpt_pgfault`, oldest first; each becomes answerable by its cookie.
   * ENOENT for an id that is no fault queue.
   */
  faultQueueRead(id: number, max?: number): PageFaultRecord[] {
    return faultQueueRead(this.#ctx, id, max);
  }

  /**
   * write() on a fault queue's fd (iommu_hwpt_page_response): answers the group read
   * with `cookie` through the backend (SMMUv3 CMD_RESUME, VT-d page group response) and
   * returns the results of the DMAs held on it: retried after success (and possibly
   * held again), failed after invalid. EINVAL for a bad code or a cookie no read group has.
   */
  faultRespond(id: number, resp: PageResponse): DmaResult[] {
    return this.#dma.respond(id, resp);
  }

  // ---------------------------------------------------------------- invalidation and dirty tracking (hw-pagetable.ts)

  /**
   * IOMMU_HWPT_INVALIDATE on a nested HWPT (vendor entries) or a vIOMMU (raw guest
   * commands: SMMUv3 `[w0, w1]`, vSIDs translated, the VMID applied): processes them in
   * order and returns how many were handled (an error carries the count in
   * `details.handled`). ENOENT for any other id (a paging HWPT too, as up to Linux 6.12;
   * 6.13+ says EINVAL for an object of another kind), EOPNOTSUPP when the domain takes none.
   */
  invalidate(hwptId: number, entries: readonly unknown[]): number {
    return hwptInvalidate(this.#ctx, hwptId, entries);
  }

  /** IOMMU_HWPT_SET_DIRTY_TRACKING. EOPNOTSUPP unless allocated with dirty_tracking; ENOENT for a non-paging id. */
  dirtySet(hwptId: number, enable: boolean): void {
    dirtySet(this.#ctx, hwptId, enable);
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP: bit i of byte j = page 8j + i of `pageSize` bytes from
   * `iova`; read and cleared unless `noClear`. EINVAL for a page size that is not a
   * power of two or a range not aligned to it.
   */
  dirtyRead(hwptId: number, opts: DirtyReadOptions): Uint8Array {
    return dirtyRead(this.#ctx, hwptId, opts);
  }

  // ---------------------------------------------------------------- emulated access (access.ts)

  /** iommufd_access_pin_pages: pins the pages of [iova, iova + length); returns their physical addresses. */
  accessPin(device: number, iova: number, length: number, write: boolean): readonly number[] {
    return accessPin(this.#ctx, device, iova, length, write);
  }

  /** iommufd_access_unpin_pages. */
  accessUnpin(device: number, iova: number, length: number): void {
    accessUnpin(this.#ctx, device, iova, length);
  }

  /** iommufd_access_rw: reads `length` bytes (returned) or writes `data` through the IOVA; all or nothing. */
  accessRw(device: number, opts: AccessRwOptions): Uint8Array | undefined {
    return accessRw(this.#ctx, device, opts);
  }

  // ---------------------------------------------------------------- memory

  /** Writes physical memory. EINVAL inside the table region, EFAULT outside RAM. */
  memWrite(pa: number, data: Uint8Array): void {
    if (this.tables.overlaps(pa, data.length)) {
      throw new IommuError("EINVAL", `[${hex(pa)}, +${hex(data.length)}) overlaps the table region`, { pa });
    }
    this.memory.write(pa, data);
  }

  /** Reads physical memory (tables included). EFAULT outside RAM, E2BIG above `MAX_TRANSFER` bytes. */
  memRead(pa: number, length: number): Uint8Array {
    checkTransfer(length);
    return this.memory.read(pa, length);
  }

  // ---------------------------------------------------------------- introspection

  /** The walk of one request, step by step (backend `explain`), routed like a DMA. */
  explain(device: number, req: ExplainRequest): readonly WalkStep[] {
    return this.#dma.explain(device, req);
  }

  /** The decoded tables of a device (backend `dump`). */
  dump(device: number): unknown {
    const dev = getDevice(this.#ctx, device);
    if (dev.backend.dump === undefined) throw new IommuError("EOPNOTSUPP", `IOMMU ${dev.iommu} cannot dump`);
    return dev.backend.dump(dev.rid);
  }

  /** A plain description of object `id` (ENOENT when unknown). */
  describe(id: number): ObjectInfo {
    return describeObject(this.#ctx.objects.get(id));
  }

  /** Plain descriptions of every object, by id. */
  objects(): ObjectInfo[] {
    return this.#ctx.objects.values().map(describeObject);
  }

  /** A deep-equal comparable snapshot: objects, table blocks and memory contents. */
  state(): HostState {
    const stats = this.tables.stats();
    return {
      nextId: this.#ctx.objects.nextId,
      iommus: [...this.#iommus.keys()],
      objects: this.objects(),
      pendingFaults: this.#dma.faults.size,
      tableBlocks: this.tables.blocks(),
      tableBytes: stats.bytes,
      memory: this.memory.snapshot(),
    };
  }
}
