/**
 * The iommufd selftest's mock driver as a backend (drivers/iommu/iommufd/selftest.c,
 * Linux 6.12; the vIOMMU of 6.15 in `viommu.ts`): mock devices, the mock paging domain and
 * the nested mock domain.
 *
 * - Mock paging domain (mock_domain_alloc_paging): an IO page of MOCK_IO_PAGE_SIZE =
 *   PAGE_SIZE / 2 = 2048 bytes, aperture [MOCK_APERTURE_START, MOCK_APERTURE_LAST] =
 *   [1 << 24, (1 << 31) - 1]; a device flagged MOCK_FLAGS_DEVICE_HUGE_IOVA gets the
 *   huge variant that also maps MOCK_HUGE_PAGE_SIZE = 512 * 2048. The table is a map
 *   from IO page number to physical address plus the MOCK_PFN_*_IOVA marks and the
 *   dirty bit (selftest.c's `pfns` xarray).
 * - Nested mock domain (mock_domain_alloc_nested): IOMMU_HWPT_DATA_SELFTEST data
 *   `{iotlb}` copied into all MOCK_NESTED_DOMAIN_IOTLB_NUM = 4 IOTLB slots;
 *   invalidations of type IOMMU_HWPT_INVALIDATE_DATA_SELFTEST clear one slot or all
 *   (mock_domain_cache_invalidate_user).
 * - Devices: flags MOCK_FLAGS_DEVICE_NO_DIRTY (no dirty tracking: a dirty domain is
 *   EOPNOTSUPP, attach to one EINVAL), _HUGE_IOVA, and _PASID (a later selftest flag
 *   the Debian 6.12 tests already use: PASID width MOCK_PASID_WIDTH = 20).
 */

import type {
  AttachIntent,
  AttachResult,
  Backend,
  BackendFactory,
  CacheCounters,
  Capabilities,
  DeviceSpec,
  Domain,
  DomainFlags,
  DomainRequest,
  DomainType,
  IovaRange,
  PageRequest,
  PageResponseCode,
  PhysicalMemory,
  Translation,
  Viommu,
  ViommuRequest,
} from "@iommu-kit/core";
import { Access, hex, IommuError, NO_PASID, Perm, permNeeded } from "@iommu-kit/core";
import { MockAccessDomain } from "./access.ts";
import type { MockViommuHost } from "./viommu.ts";
import { MOCK_DEV_CACHE_NUM, MockViommu, SELFTEST, TEST_DEV_CACHE_DEFAULT } from "./viommu.ts";

/** MOCK_IO_PAGE_SIZE: PAGE_SIZE / 2. */
export const MOCK_IO_PAGE_SIZE = 2048;
/** MOCK_HUGE_PAGE_SIZE: 512 IO pages. */
export const MOCK_HUGE_PAGE_SIZE: number = 512 * 2048;
export const MOCK_APERTURE_START: number = 1 << 24;
export const MOCK_APERTURE_LAST: number = 2 ** 31 - 1;
export const MOCK_PASID_WIDTH = 20;
export const MOCK_NESTED_DOMAIN_IOTLB_NUM = 4;
export const MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3;
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1;
export const MOCK_FLAGS_DEVICE_HUGE_IOVA = 2;
export const MOCK_FLAGS_DEVICE_PASID = 4;
/** Internal device flag: the device is a selftest access (IOMMU_TEST_OP_CREATE_ACCESS), not a mock device. */
export const DEVICE_ACCESS: number = 1 << 16;
/** Internal device flag: the access was created with MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES. */
export const DEVICE_ACCESS_PIN: number = 1 << 17;
/** IOMMU_HWPT_DATA_SELFTEST. */
export const HWPT_DATA_SELFTEST = 0xdead;
/** IOMMU_HWPT_INVALIDATE_DATA_SELFTEST. */
export const HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const TEST_INVALIDATE_FLAG_ALL = 1;
/** IOMMU_HW_INFO_TYPE_SELFTEST. */
export const HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
/** IOMMU_HW_INFO_SELFTEST_REGVAL. */
export const HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;

/** Raw vendor data as the uAPI layer passes it. */
export interface RawVendorData {
  readonly type: number;
  readonly bytes: Uint8Array;
}

/** One IO page of a mock domain: physical address and dirty mark. */
export interface MockEntry {
  pa: number;
  prot: number;
  dirty: boolean;
  /** MOCK_PFN_HUGE_IOVA: mapped as part of a MOCK_HUGE_PAGE_SIZE page. */
  huge: boolean;
}

interface MockDev {
  readonly flags: number;
  rid: Domain | null;
  readonly pasids: Map<number, Domain>;
  /** mock_dev->cache, IOMMU_TEST_DEV_CACHE_DEFAULT at mock_dev_create. */
  readonly cache: number[];
  /** mock_dev->viommu / vdev_id: set by attaching a nested domain of a vIOMMU (mock_domain_nop_attach). */
  viommu: MockViommu | null;
  vdevId: number;
}

/** A mock paging domain (struct mock_iommu_domain). */
export class MockPagingDomain implements Domain {
  readonly backend: SelftestMockBackend;
  readonly id: number;
  readonly type: DomainType = "paging";
  readonly format = "selftest-mock";
  readonly flags: DomainFlags;
  readonly aperture: IovaRange = { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST };
  readonly pageSizeBitmap: bigint;
  /** IO page number -> entry (the `pfns` xarray). */
  readonly entries: Map<number, MockEntry> = new Map();
  dirtyTracking = false;
  users = 0;

  constructor(backend: SelftestMockBackend, id: number, flags: DomainFlags, huge: boolean) {
    this.backend = backend;
    this.id = id;
    this.flags = flags;
    this.pageSizeBitmap = BigInt(MOCK_IO_PAGE_SIZE) | (huge ? BigInt(MOCK_HUGE_PAGE_SIZE) : 0n);
  }

  /** mock_domain_map_pages: every IO page must be free (EEXIST) and inside the aperture. */
  map(iova: number, pa: number, length: number, prot: number): void {
    if (iova % MOCK_IO_PAGE_SIZE || length % MOCK_IO_PAGE_SIZE || pa % MOCK_IO_PAGE_SIZE)
      throw new IommuError("EINVAL", `mock map ${hex(iova)}+${hex(length)} is not 2 KiB aligned`);
    if (iova < this.aperture.start || iova + length - 1 > this.aperture.last)
      throw new IommuError("EINVAL", `mock map ${hex(iova)}+${hex(length)} is outside the aperture`);
    const first = iova / MOCK_IO_PAGE_SIZE;
    const n = length / MOCK_IO_PAGE_SIZE;
    for (let i = 0; i < n; i++) {
      if (this.entries.has(first + i))
        throw new IommuError("EEXIST", `mock IO page ${hex(iova + i * MOCK_IO_PAGE_SIZE)} is mapped`);
    }
    // iommu_pgsize: a huge page where IOVA, PA and the rest of the length allow it.
    const hugeOk = (this.pageSizeBitmap & BigInt(MOCK_HUGE_PAGE_SIZE)) !== 0n;
    const per = MOCK_HUGE_PAGE_SIZE / MOCK_IO_PAGE_SIZE;
    for (let i = 0; i < n; ) {
      const off = i * MOCK_IO_PAGE_SIZE;
      const huge =
        hugeOk &&
        (iova + off) % MOCK_HUGE_PAGE_SIZE === 0 &&
        (pa + off) % MOCK_HUGE_PAGE_SIZE === 0 &&
        length - off >= MOCK_HUGE_PAGE_SIZE;
      const run = huge ? per : 1;
      for (let k = 0; k < run; k++, i++) {
        this.entries.set(first + i, { pa: pa + i * MOCK_IO_PAGE_SIZE, prot, dirty: false, huge });
      }
    }
  }

  /** mock_domain_unmap_pages. */
  unmap(iova: number, length: number): number {
    const first = Math.floor(iova / MOCK_IO_PAGE_SIZE);
    const n = Math.ceil(length / MOCK_IO_PAGE_SIZE);
    let done = 0;
    for (let i = 0; i < n; i++) if (this.entries.delete(first + i)) done += MOCK_IO_PAGE_SIZE;
    return done;
  }

  iovaToPhys(iova: number): number {
    const e = this.entries.get(Math.floor(iova / MOCK_IO_PAGE_SIZE));
    return e === undefined ? -1 : e.pa + (iova % MOCK_IO_PAGE_SIZE);
  }

  free(): void {
    if (this.users > 0) throw new IommuError("EBUSY", `mock domain ${this.id} is attached`);
    this.entries.clear();
  }

  /** mock_domain_set_dirty_tracking. */
  setDirtyTracking(enable: boolean): void {
    this.dirtyTracking = enable;
  }

  /**
   * mock_domain_read_and_clear_dirty: walks IO pages (a huge entry stands for its whole
   * MOCK_HUGE_PAGE_SIZE page, mock_test_and_clear_dirty over the page from its head)
   * and records [cur, cur + pgsize) in the bitmap (iommu_dirty_bitmap_record).
   */
  readDirty(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void {
    const ps = 2 ** pageSizeLg2;
    const end = iova + length;
    const nbits = bitmap.length * 8;
    for (let cur = iova; cur < end; ) {
      const e = this.entries.get(Math.floor(cur / MOCK_IO_PAGE_SIZE));
      if (e === undefined) {
        cur += MOCK_IO_PAGE_SIZE;
        continue;
      }
      const pgsize = e.huge ? MOCK_HUGE_PAGE_SIZE : MOCK_IO_PAGE_SIZE;
      const head = cur - (cur % pgsize);
      let dirty = false;
      for (let a = head; a < head + pgsize - 1; a += MOCK_IO_PAGE_SIZE) {
        const x = this.entries.get(a / MOCK_IO_PAGE_SIZE);
        if (x === undefined || !x.dirty) continue;
        dirty = true;
        if (!noClear) x.dirty = false;
      }
      if (dirty) {
        const last = Math.min(Math.floor((cur + pgsize - 1 - iova) / ps), nbits - 1);
        for (let bit = Math.floor((cur - iova) / ps); bit <= last; bit++) bitmap[bit >> 3]! |= 1 << (bit & 7);
      }
      cur += pgsize;
    }
  }

  /** IOMMU_TEST_OP_DIRTY: marks the entry at xarray index `index` dirty; 1 when there was one. */
  markDirtyIndex(index: number): number {
    const e = this.entries.get(index);
    if (e === undefined) return 0;
    e.dirty = true;
    return 1;
  }
}

/** A nested mock domain (struct mock_iommu_domain_nested). */
export class MockNestedDomain implements Domain {
  readonly backend: SelftestMockBackend;
  readonly id: number;
  readonly type: DomainType = "nested";
  readonly format = "selftest-mock-nested";
  readonly flags: DomainFlags = {};
  readonly aperture: IovaRange;
  readonly pageSizeBitmap: bigint;
  readonly parent: MockPagingDomain;
  readonly iotlb: number[];
  /** mock_nested->mock_viommu: the vIOMMU it was allocated on (6.13+), or null (nested on the parent HWPT). */
  readonly viommu: MockViommu | null;
  users = 0;

  constructor(
    backend: SelftestMockBackend,
    id: number,
    parent: MockPagingDomain,
    iotlb: number,
    viommu: MockViommu | null = null,
  ) {
    this.backend = backend;
    this.id = id;
    this.parent = parent;
    this.viommu = viommu;
    this.aperture = parent.aperture;
    this.pageSizeBitmap = parent.pageSizeBitmap;
    this.iotlb = new Array<number>(MOCK_NESTED_DOMAIN_IOTLB_NUM).fill(iotlb);
  }

  map(): void {
    throw new IommuError("EINVAL", "a nested mock domain is not mapped by the host");
  }

  unmap(): number {
    return 0;
  }

  iovaToPhys(iova: number): number {
    return this.parent.iovaToPhys(iova);
  }

  free(): void {
    if (this.users > 0) throw new IommuError("EBUSY", `nested mock domain ${this.id} is attached`);
    if (this.viommu !== null) this.viommu.nested--;
  }

  /**
   * mock_domain_cache_invalidate_user: the array type must be
   * IOMMU_HWPT_INVALIDATE_DATA_SELFTEST (EINVAL); each entry is copied with
   * iommu_copy_struct_from_user_array (shorter or longer than the struct EINVAL); unknown
   * flags EOPNOTSUPP; iotlb_id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX EINVAL. Entries
   * before a bad one stay done; the error carries `handled`.
   */
  invalidate(entries: readonly unknown[]): number {
    let done = 0;
    const stop = (code: "EINVAL" | "EOPNOTSUPP", msg: string): never => {
      throw new IommuError(code, msg, { handled: done });
    };
    for (const raw of entries) {
      const e = raw as RawVendorData | { readonly type: number; readonly bytes: null };
      if (e.type !== HWPT_INVALIDATE_DATA_SELFTEST) stop("EINVAL", `invalidation type ${hex(e.type)}`);
      if (e.bytes === null) continue;
      const b = e.bytes;
      // __iommu_copy_struct_from_user_array: entry_len below min_last or above the struct EINVAL.
      if (b.length !== 8) stop("EINVAL", `invalidation entry of ${b.length} bytes`);
      const d = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const flags = d.getUint32(0, true);
      const id = d.getUint32(4, true);
      if (flags & ~TEST_INVALIDATE_FLAG_ALL) stop("EOPNOTSUPP", `invalidation flags ${hex(flags)}`);
      if (id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX) stop("EINVAL", `iotlb_id ${id}`);
      if (flags & TEST_INVALIDATE_FLAG_ALL) this.iotlb.fill(0);
      else this.iotlb[id] = 0;
      done++;
    }
    return done;
  }
}

/**
 * __mock_domain_alloc_nested's data: IOMMU_HWPT_DATA_SELFTEST only (EOPNOTSUPP), exactly
 * struct iommu_hwpt_selftest {iotlb} (4 bytes, EINVAL otherwise).
 */
function nestedIotlb(raw: unknown): number {
  const data = raw as Partial<RawVendorData> | null;
  if (data?.type !== HWPT_DATA_SELFTEST || !(data.bytes instanceof Uint8Array))
    throw new IommuError("EOPNOTSUPP", `data type ${typeof data?.type === "number" ? hex(data.type) : "?"}`);
  // __iommu_copy_struct_from_user: shorter than min_last or longer than the struct is EINVAL.
  if (data.bytes.length !== 4) throw new IommuError("EINVAL", "selftest HWPT data is not 4 bytes");
  return new DataView(data.bytes.buffer, data.bytes.byteOffset, 4).getUint32(0, true);
}

/** The PASID of a pasid intent (the caller picks it: the mock assigns none). */
function pasidOf(intent: AttachIntent): number {
  if (intent.kind !== "pasid" || typeof intent.pasid !== "number")
    throw new IommuError("EINVAL", "the mock needs an explicit PASID");
  return intent.pasid;
}

/** The mock driver: devices by rid, the selftest's domains. */
export class SelftestMockBackend implements Backend, MockViommuHost {
  readonly kind = "selftest-mock";
  readonly name: string;
  readonly #devices = new Map<number, MockDev>();
  /** Device flags set before {@link SelftestMockBackend.addDevice} (MOCK_DOMAIN_FLAGS). */
  nextFlags = 0;
  /** The domain allocated last (the selftest layer ties it to the HWPT id the host returns). */
  lastDomain: Domain | null = null;
  #nextDomain = 1;
  #nextViommu = 1;

  readonly #memory: PhysicalMemory;

  constructor(name: string, memory: PhysicalMemory) {
    this.name = name;
    this.#memory = memory;
  }

  addDevice(spec: DeviceSpec): void {
    if (this.#devices.has(spec.rid)) throw new IommuError("EEXIST", `mock device ${spec.rid} exists`);
    this.#devices.set(spec.rid, {
      flags: this.nextFlags,
      rid: null,
      pasids: new Map(),
      cache: new Array<number>(MOCK_DEV_CACHE_NUM).fill(TEST_DEV_CACHE_DEFAULT),
      viommu: null,
      vdevId: 0,
    });
    this.nextFlags = 0;
  }

  #dev(rid: number): MockDev {
    const d = this.#devices.get(rid);
    if (d === undefined) throw new IommuError("ENOENT", `no mock device ${rid}`);
    return d;
  }

  /** The MOCK_FLAGS_DEVICE_* of a device. */
  deviceFlags(rid: number): number {
    return this.#dev(rid).flags;
  }

  removeDevice(rid: number): void {
    const d = this.#dev(rid);
    if (d.rid !== null || d.pasids.size > 0) throw new IommuError("EBUSY", `mock device ${rid} is attached`);
    this.#devices.delete(rid);
  }

  capabilities(rid: number): Capabilities {
    const d = this.#dev(rid);
    const pasid = (d.flags & MOCK_FLAGS_DEVICE_PASID) !== 0;
    return {
      intents: d.flags & DEVICE_ACCESS ? ["emulated"] : pasid ? ["rid", "pasid"] : ["rid"],
      maxPasidLog2: pasid ? MOCK_PASID_WIDTH : 0,
      pasidAssignment: "caller",
      inputAddressBits: 32,
      outputAddressBits: 52,
      pageSizeBitmap:
        BigInt(MOCK_IO_PAGE_SIZE) |
        (d.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA ? BigInt(MOCK_HUGE_PAGE_SIZE) : 0n),
      formats: ["selftest-mock"],
      features: {
        // mock_domain_capable: IOMMU_CAP_DIRTY_TRACKING unless MOCK_FLAGS_DEVICE_NO_DIRTY.
        dirtyTracking: (d.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) === 0,
        pasidExec: false,
        pasidPriv: false,
        atsNotSupported: false,
        nesting: true,
        coherent: true,
      },
      hwInfo: { type: "none" },
    };
  }

  reservedRegions(): readonly IovaRange[] {
    return [];
  }

  /** mock_domain_alloc_user / mock_domain_alloc_paging / mock_domain_alloc_nested. */
  allocDomain(request: DomainRequest): Domain {
    if (request.type === "blocked" || request.type === "identity")
      throw new IommuError("EOPNOTSUPP", `mock has no ${request.type} domain object`);
    const dev = request.rid === undefined ? undefined : this.#dev(request.rid);
    if (request.type === "nested") {
      const parent = request.parent;
      if (!(parent instanceof MockPagingDomain) || parent.backend !== this)
        throw new IommuError("EINVAL", "nested mock domain needs a mock parent");
      this.lastDomain = new MockNestedDomain(this, this.#nextDomain++, parent, nestedIotlb(request.data));
      return this.lastDomain;
    }
    if (dev !== undefined && dev.flags & DEVICE_ACCESS) {
      this.lastDomain = new MockAccessDomain(
        this,
        this.#nextDomain++,
        this.#memory,
        (dev.flags & DEVICE_ACCESS_PIN) !== 0,
      );
      return this.lastDomain;
    }
    const flags = request.flags ?? {};
    if (flags.dirtyTracking && dev !== undefined && dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY)
      throw new IommuError("EOPNOTSUPP", "device has no dirty tracking");
    const huge = dev !== undefined && (dev.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0;
    this.lastDomain = new MockPagingDomain(this, this.#nextDomain++, { ...flags }, huge);
    return this.lastDomain;
  }

  /**
   * mock_viommu_alloc: IOMMU_VIOMMU_TYPE_SELFTEST only (EOPNOTSUPP), for a mock device
   * (ENOENT) over a mock paging domain of this driver (EINVAL; the nest-parent flag is
   * iommufd_viommu_alloc_ioctl's check).
   */
  allocViommu(request: ViommuRequest): Viommu {
    if (request.type !== SELFTEST) throw new IommuError("EOPNOTSUPP", `mock vIOMMU type ${request.type}`);
    this.#dev(request.rid);
    const parent = request.parent;
    if (!(parent instanceof MockPagingDomain) || parent.backend !== this)
      throw new IommuError("EINVAL", "a mock vIOMMU needs a mock parent domain");
    return new MockViommu(this, this, this.#nextViommu++, parent);
  }

  /** @internal MockViommuHost: mock_dev->cache. */
  deviceCache(rid: number): number[] | undefined {
    return this.#devices.get(rid)?.cache;
  }

  /** @internal MockViommuHost: __mock_domain_alloc_nested with mock_viommu and its s2_parent. */
  allocNestedFor(viommu: MockViommu, data: unknown): Domain {
    const iotlb = nestedIotlb(data);
    this.lastDomain = new MockNestedDomain(
      this,
      this.#nextDomain++,
      viommu.parent as MockPagingDomain,
      iotlb,
      viommu,
    );
    return this.lastDomain;
  }

  /** @internal MockViommuHost. */
  viommuFreed(_v: MockViommu): void {}

  /** mock_dev->viommu and vdev_id (IOMMU_TEST_OP_TRIGGER_VEVENT), or null. */
  deviceViommu(rid: number): { readonly viommu: MockViommu; readonly vdevId: number } | null {
    const d = this.#dev(rid);
    return d.viommu === null ? null : { viommu: d.viommu, vdevId: d.vdevId };
  }

  /** mock_domain_page_response: the mock has nothing to resume. */
  pageResponse(_request: PageRequest, _code: PageResponseCode): void {}

  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    const d = this.#dev(rid);
    if (domain instanceof MockAccessDomain) {
      d.rid = domain;
      return {};
    }
    if (
      !(domain instanceof MockPagingDomain || domain instanceof MockNestedDomain) ||
      domain.backend !== this
    )
      throw new IommuError("EINVAL", "not a mock domain of this driver");
    // mock_domain_nop_attach: a device without dirty tracking cannot join a dirty domain.
    const paging = domain instanceof MockNestedDomain ? domain.parent : domain;
    if (paging.flags.dirtyTracking && d.flags & MOCK_FLAGS_DEVICE_NO_DIRTY)
      throw new IommuError("EINVAL", "device has no dirty tracking");
    if (intent.kind === "pasid") {
      const p = pasidOf(intent);
      const old = d.pasids.get(p);
      if (old !== undefined) (old as MockPagingDomain).users--;
      d.pasids.set(p, domain);
      domain.users++;
      return { pasid: p };
    }
    // mock_domain_nop_attach: a nested domain of a vIOMMU needs the device's vDEVICE
    // (iommufd_viommu_get_vdev_id, ENOENT) and records the vIOMMU and virt_id.
    const viommu = domain instanceof MockNestedDomain ? domain.viommu : null;
    const vdevId = viommu === null ? 0 : viommu.virtId(rid);
    if (vdevId < 0) throw new IommuError("ENOENT", `device ${rid} has no vDEVICE on vIOMMU ${viommu!.id}`);
    if (d.rid !== null) (d.rid as MockPagingDomain).users--;
    d.rid = domain;
    domain.users++;
    d.viommu = viommu;
    d.vdevId = vdevId;
    return {};
  }

  detach(rid: number, intent: AttachIntent): void {
    const d = this.#dev(rid);
    if (intent.kind === "pasid") {
      const p = pasidOf(intent);
      const old = d.pasids.get(p);
      if (old !== undefined) (old as MockPagingDomain).users--;
      d.pasids.delete(p);
      return;
    }
    if (d.rid !== null && !(d.rid instanceof MockAccessDomain)) (d.rid as MockPagingDomain).users--;
    d.rid = null;
    d.viommu = null;
    d.vdevId = 0;
  }

  attached(rid: number, intent: AttachIntent): Domain | null {
    const d = this.#dev(rid);
    return intent.kind === "pasid" ? (d.pasids.get(pasidOf(intent)) ?? null) : d.rid;
  }

  /** A DMA through the device's domain: the mock's table, no caches. */
  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    const d = this.#devices.get(rid);
    const dom = d === undefined ? null : pasid === NO_PASID ? d.rid : (d.pasids.get(pasid) ?? null);
    const paging = dom instanceof MockNestedDomain ? dom.parent : (dom as MockPagingDomain | null);
    const e = paging?.entries.get(Math.floor(iova / MOCK_IO_PAGE_SIZE));
    if (
      paging === null ||
      paging === undefined ||
      e === undefined ||
      (e.prot & permNeeded(access)) !== permNeeded(access)
    ) {
      out.fault = {
        class: paging === null ? "blocked" : "translation",
        recorded: true,
        vendor: { vendor: "selftest-mock", code: 1, name: "MOCK_FAULT", fields: { rid, iova: hex(iova) } },
      };
      return false;
    }
    if (access & Access.WRITE && paging.dirtyTracking) e.dirty = true;
    out.pa = e.pa + (iova % MOCK_IO_PAGE_SIZE);
    out.perm = e.prot & (Perm.R | Perm.W);
    out.sizeLg2 = 11;
    out.fault = null;
    return true;
  }

  counters(): CacheCounters {
    return { iotlbHits: 0, iotlbMisses: 0, configHits: 0, configMisses: 0, walks: 0, invalidations: 0 };
  }

  flushCaches(): void {}
}

/** The registry entry: `host.addIommu(name, "selftest-mock")`. */
export const selftestMockFactory: BackendFactory = {
  name: "selftest-mock",
  description: "the iommufd selftest's mock driver (drivers/iommu/iommufd/selftest.c, Linux 6.12)",
  create: (ctx) => new SelftestMockBackend(ctx.name, ctx.memory),
};
