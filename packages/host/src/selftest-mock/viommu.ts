/**
 * The selftest mock driver's vIOMMU (drivers/iommu/iommufd/selftest.c, Linux 6.15):
 * IOMMU_VIOMMU_TYPE_SELFTEST over a mock nest-parent domain (mock_viommu_alloc), its
 * nested domains (mock_viommu_alloc_domain_nested: IOMMU_HWPT_DATA_SELFTEST), the
 * per-device cache invalidation through vDEVICE ids (mock_viommu_cache_invalidate:
 * IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) and the selftest event queue type
 * (IOMMU_VEVENTQ_TYPE_SELFTEST, reported by IOMMU_TEST_OP_TRIGGER_VEVENT).
 */

import type { Domain, DomainFlags, Viommu, ViommuEventSink } from "@iommu-kit/core";
import { hex, IommuError } from "@iommu-kit/core";

/** IOMMU_VIOMMU_TYPE_SELFTEST (iommufd_test.h), by number and by name. */
export const VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
export const SELFTEST = "selftest";
/** IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST: struct iommu_viommu_invalidate_selftest {flags, vdev_id, cache_id}. */
export const VIOMMU_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
/** IOMMU_VEVENTQ_TYPE_SELFTEST: struct iommu_viommu_event_selftest {virt_id}. */
export const VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
/** MOCK_DEV_CACHE_NUM / MOCK_DEV_CACHE_ID_MAX and IOMMU_TEST_DEV_CACHE_DEFAULT. */
export const MOCK_DEV_CACHE_NUM = 4;
export const MOCK_DEV_CACHE_ID_MAX = 3;
export const TEST_DEV_CACHE_DEFAULT = 0xbaddad;
const TEST_INVALIDATE_FLAG_ALL = 1;
const INVALIDATE_SELFTEST_SIZE = 12;

/** What the vIOMMU needs of the mock driver. */
export interface MockViommuHost {
  /** The device's cache words (mock_dev->cache), or undefined for no such device. */
  deviceCache(rid: number): number[] | undefined;
  /** mock_viommu_alloc_domain_nested minus the flags: a nested mock domain on `parent` for this vIOMMU. */
  allocNestedFor(viommu: MockViommu, data: unknown): Domain;
  viommuFreed(v: MockViommu): void;
}

/** Raw entries as the uAPI layer passes them: `{type, bytes}`, or one `{type, bytes: null}` probe. */
interface RawEntry {
  readonly type: number;
  readonly bytes: Uint8Array | null;
}

/**
 * copy_struct_from_user of one `size`-byte struct from `b`: shorter is zero-extended,
 * longer must have an all-zero tail (E2BIG).
 */
function copyStruct(b: Uint8Array, size: number): DataView {
  if (b.length > size && b.subarray(size).some((x) => x !== 0))
    throw new IommuError("E2BIG", `entry of ${b.length} bytes has non-zero bytes past ${size}`);
  const out = new Uint8Array(size);
  out.set(b.subarray(0, Math.min(size, b.length)));
  return new DataView(out.buffer);
}

/** struct mock_viommu. */
export class MockViommu implements Viommu {
  readonly backend: Viommu["backend"];
  readonly id: number;
  readonly type: string = SELFTEST;
  readonly parent: Domain;
  readonly info: Readonly<Record<string, number | string | boolean>> = {};
  readonly #host: MockViommuHost;
  /** viommu->vdevs: virt_id -> rid. */
  readonly #byVirt = new Map<number, number>();
  readonly #byRid = new Map<number, number>();
  readonly #sinks = new Map<string, ViommuEventSink>();
  nested = 0;
  #freed = false;

  constructor(backend: Viommu["backend"], host: MockViommuHost, id: number, parent: Domain) {
    this.backend = backend;
    this.#host = host;
    this.id = id;
    this.parent = parent;
  }

  #live(): void {
    if (this.#freed) throw new IommuError("ENOENT", `mock vIOMMU ${this.id} was freed`);
  }

  /** iommufd_vdevice_alloc_ioctl: a taken virt_id or a device with one is EEXIST. */
  addVdevice(rid: number, virtId: number): void {
    this.#live();
    if (this.#host.deviceCache(rid) === undefined)
      throw new IommuError("EINVAL", `rid ${rid} is not a mock device`);
    if (!Number.isInteger(virtId) || virtId < 0) throw new IommuError("EINVAL", `virt_id ${virtId}`);
    if (this.#byVirt.has(virtId)) throw new IommuError("EEXIST", `virt_id ${virtId} is taken`);
    if (this.#byRid.has(rid)) throw new IommuError("EEXIST", `rid ${rid} has a vDEVICE`);
    this.#byVirt.set(virtId, rid);
    this.#byRid.set(rid, virtId);
  }

  removeVdevice(rid: number): void {
    const v = this.#byRid.get(rid);
    if (v === undefined) throw new IommuError("ENOENT", `rid ${rid} has no vDEVICE`);
    this.#byRid.delete(rid);
    this.#byVirt.delete(v);
  }

  virtId(rid: number): number {
    return this.#byRid.get(rid) ?? -1;
  }

  /** mock_viommu_alloc_domain_nested: any flag but IOMMU_HWPT_FAULT_ID_VALID is EOPNOTSUPP. */
  allocNested(data: unknown, flags: DomainFlags): Domain {
    this.#live();
    const f = flags ?? {};
    if (f.nestParent || f.dirtyTracking || f.pasid)
      throw new IommuError("EOPNOTSUPP", "a nested mock domain takes no allocation flags");
    const d = this.#host.allocNestedFor(this, data);
    this.nested++;
    return d;
  }

  /**
   * mock_viommu_cache_invalidate: an empty array of the selftest type validates the type
   * (0 handled); otherwise iommu_copy_struct_from_full_user_array (another type or an
   * empty array EINVAL, a longer entry with a non-zero tail E2BIG, handled 0), then per
   * entry: unknown flags EOPNOTSUPP, cache_id > MOCK_DEV_CACHE_ID_MAX EINVAL, a vdev_id
   * with no vDEVICE EINVAL; FLAG_ALL clears every cache word of the device, else one.
   * Entries before a bad one stay done (`handled`).
   */
  invalidate(entries: readonly unknown[]): number {
    this.#live();
    const raw = entries as readonly RawEntry[];
    const first = raw[0];
    if (raw.length === 1 && first?.bytes === null) {
      if (first.type === VIOMMU_INVALIDATE_DATA_SELFTEST) return 0;
      throw new IommuError("EINVAL", `invalidation type ${hex(first.type)}`, { handled: 0 });
    }
    if (raw.length === 0) throw new IommuError("EINVAL", "no entries", { handled: 0 });
    const cmds: DataView[] = [];
    for (const e of raw) {
      if (e?.type !== VIOMMU_INVALIDATE_DATA_SELFTEST || e.bytes === null)
        throw new IommuError("EINVAL", `invalidation type ${hex(e?.type ?? -1)}`, { handled: 0 });
      try {
        cmds.push(copyStruct(e.bytes, INVALIDATE_SELFTEST_SIZE));
      } catch (err) {
        if (err instanceof IommuError) throw new IommuError(err.code, err.message, { handled: 0 });
        throw err;
      }
    }
    let done = 0;
    for (const c of cmds) {
      const flags = c.getUint32(0, true);
      const vdevId = c.getUint32(4, true);
      const cacheId = c.getUint32(8, true);
      if (flags & ~TEST_INVALIDATE_FLAG_ALL)
        throw new IommuError("EOPNOTSUPP", `invalidation flags ${hex(flags)}`, { handled: done });
      if (cacheId > MOCK_DEV_CACHE_ID_MAX)
        throw new IommuError("EINVAL", `cache_id ${cacheId}`, { handled: done });
      const rid = this.#byVirt.get(vdevId);
      const cache = rid === undefined ? undefined : this.#host.deviceCache(rid);
      if (cache === undefined) throw new IommuError("EINVAL", `no vDEVICE ${vdevId}`, { handled: done });
      if (flags & TEST_INVALIDATE_FLAG_ALL) cache.fill(0);
      else cache[cacheId] = 0;
      done++;
    }
    return done;
  }

  /** One sink per type (iommufd_veventq_alloc: EEXIST). */
  setEventSink(type: string, sink: ViommuEventSink | null): void {
    this.#live();
    if (sink === null) {
      this.#sinks.delete(type);
      return;
    }
    if (this.#sinks.has(type)) throw new IommuError("EEXIST", `vIOMMU ${this.id} has a ${type} event queue`);
    this.#sinks.set(type, sink);
  }

  /**
   * iommufd_viommu_report_event of IOMMU_VEVENTQ_TYPE_SELFTEST with struct
   * iommu_viommu_event_selftest {virt_id}: EOPNOTSUPP without a vEVENTQ of that type.
   */
  reportSelftest(virtId: number): void {
    const sink = this.#sinks.get(SELFTEST);
    if (sink === undefined || this.#freed)
      throw new IommuError("EOPNOTSUPP", `vIOMMU ${this.id} has no selftest vEVENTQ`);
    const b = new DataView(new ArrayBuffer(4));
    b.setUint32(0, virtId, true);
    sink({ type: SELFTEST, data: new Uint8Array(b.buffer) });
  }

  free(): void {
    this.#live();
    if (this.#byRid.size > 0 || this.nested > 0)
      throw new IommuError("EBUSY", `mock vIOMMU ${this.id} has vDEVICEs or nested domains`);
    this.#freed = true;
    this.#sinks.clear();
    this.#host.viommuFreed(this);
  }
}
