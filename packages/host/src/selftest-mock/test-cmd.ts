/**
 * IOMMU_TEST_CMD of the iommufd selftest (drivers/iommu/iommufd/selftest.c
 * `iommufd_test`, Linux 6.12) over a {@link Host} with a {@link SelftestMockBackend}:
 * struct iommu_test_cmd of iommufd_test.h decoded, each op mapped onto the host's
 * API. The selftest objects (`stdev`) hold an id of the context's id space, as
 * IOMMUFD_OBJ_SELFTEST does; here a placeholder IOAS holds it (the host has no
 * selftest object kind) and IOMMU_DESTROY of it tears the mock device down.
 */

import type { Domain } from "@iommu-kit/core";
import { hex, IommuError } from "@iommu-kit/core";
import type { Host } from "../host.ts";
import type { PageFaultGroup } from "../uapi/eventq.ts";
import type { ExtraIoctl, IoctlContext, UapiExtensions, UserMemory } from "../uapi/types.ts";
import { MockAccessDomain } from "./access.ts";
import {
  DEVICE_ACCESS,
  DEVICE_ACCESS_PIN,
  HW_INFO_SELFTEST_REGVAL,
  HW_INFO_TYPE_SELFTEST,
  MOCK_IO_PAGE_SIZE,
  MockNestedDomain,
  MockPagingDomain,
  type SelftestMockBackend,
  selftestMockFactory,
} from "./backend.ts";
import { MOCK_DEV_CACHE_ID_MAX } from "./viommu.ts";

/** enum of IOMMU_TEST_OP_* (iommufd_test.h). */
export const TestOp = {
  ADD_RESERVED: 1,
  MOCK_DOMAIN: 2,
  MD_CHECK_MAP: 3,
  MD_CHECK_REFS: 4,
  CREATE_ACCESS: 5,
  DESTROY_ACCESS_PAGES: 6,
  ACCESS_PAGES: 7,
  ACCESS_RW: 8,
  SET_TEMP_MEMORY_LIMIT: 9,
  MOCK_DOMAIN_REPLACE: 10,
  ACCESS_REPLACE_IOAS: 11,
  MOCK_DOMAIN_FLAGS: 12,
  DIRTY: 13,
  MD_CHECK_IOTLB: 14,
  TRIGGER_IOPF: 15,
  /** Linux 6.14. */
  DEV_CHECK_CACHE: 16,
  /** Linux 6.15. */
  TRIGGER_VEVENT: 17,
} as const;

/** sizeof(struct iommu_test_cmd) and offsetofend(last). */
export const TEST_CMD_SIZE = 72;
export const TEST_CMD_MIN = 68;
const PAGE_SIZE = 4096;
const MOCK_FLAGS_ACCESS_WRITE = 1;
const MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
const MOCK_ACCESS_RW_WRITE = 1;
const MOCK_ACCESS_RW_SLOW_PATH = 4;
const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1;
const IOMMU_NO_PASID = 0;

/** One selftest access (struct selftest_access): an mdev attached `emulated` to an IOAS. */
export interface SelftestAccess {
  /** The host device (a mock access device) whose emulated access serves it. */
  readonly mdev: number;
  readonly needsPin: boolean;
  ioas: number;
  nextItem: number;
  readonly items: Map<number, { iova: number; length: number }>;
}

/** Services the server gives the selftest layer. */
export interface SelftestServices {
  /** Delivers a group of page requests to fault object `faultId` (iommufd_fault_iopf_handler). */
  pushFault(faultId: number, group: PageFaultGroup): void;
  /** The access behind descriptor `fd` of the caller (iommufd_access_get), or undefined (EBADF). */
  accessByFd(fd: number): SelftestAccess | undefined;
  /** Pins the user pages behind physical [pa, pa + length): EFAULT when they are gone. */
  pin(pa: number, length: number): void;
}

const fail = (
  code: "EINVAL" | "ENOENT" | "EOPNOTSUPP" | "EOVERFLOW" | "ENOMEM" | "EIO" | "EFAULT" | "EBADF",
  m: string,
): never => {
  throw new IommuError(code as "EINVAL", m);
};

/** The selftest side of one open /dev/iommu. */
export class SelftestContext {
  readonly host: Host;
  readonly backend: SelftestMockBackend;
  readonly #svc: SelftestServices;
  /** stdev id -> mock device id. */
  readonly stdevs: Map<number, number> = new Map();
  /** HWPT id -> mock domain (recorded when the HWPT is created). */
  readonly domains: Map<number, Domain> = new Map();
  /** Access id (the host's access object) -> access. */
  readonly accesses: Map<number, SelftestAccess> = new Map();
  #nextRid = 0;
  memoryLimit = 65536;
  /** Responses the mock received (mock_domain_page_response ignores them; kept for tests). */
  readonly responses: Array<{ readonly device: number; readonly grpid: number; readonly code: number }> = [];

  constructor(host: Host, svc: SelftestServices) {
    this.host = host;
    this.#svc = svc;
    if (!host.iommus().some((i) => i.name === "mock")) {
      try {
        host.addIommu("mock", selftestMockFactory.name);
      } catch {
        // Not registered in this host's registry yet.
        throw new Error("register selftestMockFactory in the host's registry first");
      }
    }
    this.backend = host.iommu("mock") as SelftestMockBackend;
  }

  /** The uAPI hooks: IOMMU_TEST_CMD, the selftest hw_info and HWPT data, HWPT bookkeeping. */
  extensions(): UapiExtensions {
    const cmd: ExtraIoctl = { size: TEST_CMD_SIZE, min: TEST_CMD_MIN, run: (c) => this.#run(c) };
    return {
      ioctls: { 160: cmd },
      hwInfo: (host, dev) => {
        if (host.describe(dev).kind !== "device") return undefined;
        const info = host.describe(dev);
        if (info.kind !== "device" || info.iommu !== "mock") return undefined;
        // mock_domain_hw_info: struct iommu_test_hw_info {flags, test_reg}.
        const b = new DataView(new ArrayBuffer(8));
        b.setUint32(4, HW_INFO_SELFTEST_REGVAL, true);
        return { type: HW_INFO_TYPE_SELFTEST, data: new Uint8Array(b.buffer) };
      },
      hwptAllocated: (id) => {
        const d = this.backend.lastDomain;
        if (d !== null) this.domains.set(id, d);
      },
      destroy: (id) => this.#destroyStdev(id),
    };
  }

  #run(c: IoctlContext): void {
    const v = c.cmd;
    const op = v.getUint32(4, true);
    const id = v.getUint32(8, true);
    const q = (o: number): bigint => v.getBigUint64(16 + o, true);
    const w = (o: number): number => v.getUint32(16 + o, true);
    switch (op) {
      case TestOp.ADD_RESERVED: {
        // iommufd_test_add_reserved: length 0 EINVAL, start + length - 1 overflow EOVERFLOW.
        const start = q(0);
        const length = q(8);
        if (length === 0n) fail("EINVAL", "length 0");
        if (start + length - 1n > 0xffff_ffff_ffff_ffffn) fail("EOVERFLOW", "reserved range overflows");
        const last = start + length - 1n;
        const reserve = (
          this.host as unknown as { ioasReserve?: (id: number, r: { start: number; last: number }) => void }
        ).ioasReserve;
        if (reserve === undefined) fail("EOPNOTSUPP", "the host has no ioasReserve");
        reserve!.call(this.host, id, {
          start: Number(start),
          last: last > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(last),
        });
        return;
      }
      case TestOp.MOCK_DOMAIN:
      case TestOp.MOCK_DOMAIN_FLAGS: {
        const flags = op === TestOp.MOCK_DOMAIN_FLAGS ? w(12) : 0;
        // mock_dev_create: unknown device flags EINVAL.
        if (flags & ~7) fail("EINVAL", `mock device flags ${hex(flags)}`);
        const { stdev, idev, hwpt } = this.mockDomain(id, flags);
        v.setUint32(16, stdev, true);
        v.setUint32(20, hwpt, true);
        v.setUint32(24, idev, true);
        c.respond();
        return;
      }
      case TestOp.MOCK_DOMAIN_REPLACE: {
        const idev = this.stdevs.get(id);
        if (idev === undefined) fail("ENOENT", `no selftest object ${id}`);
        const before = new Set(this.host.objects().map((o) => o.id));
        this.backend.lastDomain = null;
        const out = this.host.replace(idev!, "rid", w(0));
        if (!before.has(out.hwpt) && this.backend.lastDomain !== null)
          this.domains.set(out.hwpt, this.backend.lastDomain);
        v.setUint32(16, out.hwpt, true);
        c.respond();
        return;
      }
      case TestOp.MD_CHECK_MAP:
        this.#checkMap(c.mem, id, q(0), q(8), q(16));
        return;
      case TestOp.MD_CHECK_REFS:
        this.#checkRefs(c.mem, q(8), q(0), w(16));
        return;
      case TestOp.MD_CHECK_IOTLB: {
        // iommufd_test_md_check_iotlb: a nested mock HWPT; slot > MAX or mismatch EINVAL.
        const d = this.#nested(id);
        const slot = w(0);
        if (slot > 3 || d.iotlb[slot] !== w(4)) fail("EINVAL", `iotlb[${slot}] = ${d.iotlb[slot]}`);
        return;
      }
      case TestOp.CREATE_ACCESS: {
        const flags = w(4);
        if (flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) fail("EOPNOTSUPP", "access flags");
        const acc = this.createAccess(id, (flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) !== 0);
        c.newFd({ kind: "access", id: acc, offset: 16 });
        return;
      }
      case TestOp.ACCESS_REPLACE_IOAS: {
        const acc = this.#accessFd(id);
        this.backend.lastDomain = null;
        this.host.replace(acc.mdev, "emulated", w(0));
        acc.ioas = w(0);
        this.#watch(acc);
        return;
      }
      case TestOp.ACCESS_PAGES:
        this.#accessPages(c, id);
        return;
      case TestOp.DESTROY_ACCESS_PAGES: {
        const acc = this.#accessFd(id);
        const item = acc.items.get(w(0));
        if (item === undefined) fail("ENOENT", `no access pages ${w(0)}`);
        this.host.accessUnpin(acc.mdev, item!.iova, item!.length);
        acc.items.delete(w(0));
        return;
      }
      case TestOp.ACCESS_RW:
        this.#accessRw(c, id);
        return;
      case TestOp.SET_TEMP_MEMORY_LIMIT:
        // Protects _batch_init(): at least sizeof(unsigned long) + sizeof(u32).
        if (w(0) < 12) fail("EINVAL", "memory limit below 12");
        this.memoryLimit = w(0);
        return;
      case TestOp.DIRTY:
        this.#dirty(c, id);
        return;
      case TestOp.TRIGGER_IOPF:
        this.#triggerIopf(c);
        return;
      case TestOp.DEV_CHECK_CACHE: {
        // iommufd_test_dev_check_cache: cache_id > MOCK_DEV_CACHE_ID_MAX or a mismatch EINVAL.
        const cache = this.backend.deviceCache(this.#mockRid(id));
        const slot = w(0);
        if (slot > MOCK_DEV_CACHE_ID_MAX || cache?.[slot] !== w(4))
          fail("EINVAL", `dev cache[${slot}] = ${cache?.[slot]}, not ${w(4)}`);
        return;
      }
      case TestOp.TRIGGER_VEVENT: {
        // iommufd_test_trigger_vevent: ENOENT unless the device sits on a nested domain of a
        // vIOMMU with a non-zero virt_id; iommufd_viommu_report_event EOPNOTSUPP without a
        // vEVENTQ of IOMMU_VEVENTQ_TYPE_SELFTEST.
        const at = this.backend.deviceViommu(this.#mockRid(w(0)));
        if (at === null || at.vdevId === 0) fail("ENOENT", `device ${w(0)} is on no vIOMMU with a virt_id`);
        at!.viommu.reportSelftest(at!.vdevId);
        return;
      }
    }
    fail("EOPNOTSUPP", `test op ${op}`);
  }

  /**
   * iommufd_test_mock_domain: a selftest object, a mock device bound to the context
   * (the idev) and attached to `pt` (IOAS or HWPT). Ids in the kernel's order.
   */
  mockDomain(pt: number, flags: number): { stdev: number; idev: number; hwpt: number } {
    // The first domain of an IOAS pins every area (iopt_fill_domain -> pin_user_pages): EFAULT if gone.
    const target = this.host.objects().find((o) => o.id === pt);
    if (target?.kind === "ioas" && target.hwpts.length === 0)
      for (const a of target.areas) this.#svc.pin(a.pa, a.length);
    const placeholder = this.host.ioasAlloc();
    let idev: number | undefined;
    try {
      this.backend.nextFlags = flags;
      idev = this.host.addDevice({ iommu: "mock", rid: this.#nextRid++, pasidBits: flags & 4 ? 20 : 0 });
      const before = new Set(this.host.objects().map((o) => o.id));
      this.backend.lastDomain = null;
      const { hwpt } = this.host.attach(idev, "rid", pt);
      if (!before.has(hwpt) && this.backend.lastDomain !== null)
        this.domains.set(hwpt, this.backend.lastDomain);
      this.stdevs.set(placeholder, idev);
      return { stdev: placeholder, idev, hwpt };
    } catch (e) {
      this.backend.nextFlags = 0;
      if (idev !== undefined) this.host.destroy(idev);
      this.host.destroy(placeholder);
      throw e;
    }
  }

  /** IOMMU_DESTROY of a selftest object: detach, unbind, destroy (iommufd_selftest_destroy). */
  #destroyStdev(id: number): boolean {
    const idev = this.stdevs.get(id);
    if (idev === undefined) return false;
    this.host.detach(idev, "rid");
    this.host.destroy(idev);
    this.host.destroy(id);
    this.stdevs.delete(id);
    return true;
  }

  #paging(hwpt: number): MockPagingDomain {
    // get_md_pagetable: a paging HWPT (ENOENT otherwise) whose domain is a mock one (EINVAL).
    const info = this.host.describe(hwpt);
    if (info.kind !== "hwpt-paging") fail("ENOENT", `no paging HWPT ${hwpt}`);
    const d = this.domains.get(hwpt);
    if (!(d instanceof MockPagingDomain)) fail("EINVAL", `HWPT ${hwpt} is not a mock domain`);
    return d as MockPagingDomain;
  }

  #nested(hwpt: number): MockNestedDomain {
    const info = this.host.describe(hwpt);
    if (info.kind !== "hwpt-nested") fail("ENOENT", `no nested HWPT ${hwpt}`);
    const d = this.domains.get(hwpt);
    if (!(d instanceof MockNestedDomain)) fail("EINVAL", `HWPT ${hwpt} is not a nested mock domain`);
    return d as MockNestedDomain;
  }

  /** iommufd_test_md_check_pa: every IO page maps the physical page under the user VA. */
  #checkMap(mem: UserMemory, hwpt: number, iova: bigint, length: bigint, uptr: bigint): void {
    const P = BigInt(MOCK_IO_PAGE_SIZE);
    if (iova % P || length % P || uptr % P || uptr + length > 0xffff_ffff_ffff_ffffn)
      fail("EINVAL", "check_map alignment");
    const d = this.#paging(hwpt);
    const n = Number(length / P);
    for (let i = 0; i < n; i++) {
      const va = uptr + BigInt(i * MOCK_IO_PAGE_SIZE);
      const pa = mem.physical(va, MOCK_IO_PAGE_SIZE);
      const got = d.iovaToPhys(Number(iova) + i * MOCK_IO_PAGE_SIZE);
      if (got !== pa)
        fail(
          "EINVAL",
          `IO page ${hex(Number(iova) + i * MOCK_IO_PAGE_SIZE)} maps ${hex(got)}, not ${hex(pa)}`,
        );
    }
  }

  /**
   * iommufd_test_md_check_refs: each 4 KiB page's pin count. A page is pinned once per
   * iopt_pages that holds it pinned: an area of an IOAS with a domain, or pinned by an access.
   */
  #checkRefs(mem: UserMemory, uptr: bigint, length: bigint, refs: number): void {
    if (length % BigInt(PAGE_SIZE) || uptr % BigInt(PAGE_SIZE)) fail("EINVAL", "check_refs alignment");
    const n = Number(length) / PAGE_SIZE;
    const areas: { pa: number; length: number; weight: number }[] = [];
    for (const o of this.host.objects()) {
      if (o.kind !== "ioas" || (o.hwpts.length === 0 && o.accesses.length === 0)) continue;
      for (const a of o.areas) areas.push({ pa: a.pa, length: a.length, weight: 1 / a.pagesUsers });
    }
    for (let i = 0; i < n; i++) {
      const va = uptr + BigInt(i * PAGE_SIZE);
      const pa = mem.physical(va, PAGE_SIZE);
      // !PageCompound(): a huge page's refcount is not checked.
      if (mem.compound?.(va) === true) continue;
      let pins = 0;
      for (const a of areas) if (a.pa < pa + PAGE_SIZE && pa < a.pa + a.length) pins += a.weight;
      if (Math.round(pins) !== refs) fail("EIO", `page ${hex(pa)} has ${pins} pins, not ${refs}`);
    }
  }

  /**
   * iommufd_test_create_access: an access device of the mock driver attached
   * `emulated` to the IOAS (iommufd_access_create + iommufd_access_attach).
   */
  createAccess(ioas: number, needsPin: boolean): number {
    this.backend.nextFlags = DEVICE_ACCESS | (needsPin ? DEVICE_ACCESS_PIN : 0);
    const dev = this.host.addDevice({ iommu: "mock", rid: this.#nextRid++ });
    try {
      this.backend.lastDomain = null;
      const { hwpt } = this.host.attach(dev, "emulated", ioas);
      const acc: SelftestAccess = { mdev: dev, needsPin, ioas, nextItem: 1, items: new Map() };
      this.#watch(acc);
      this.accesses.set(hwpt, acc);
      return hwpt;
    } catch (e) {
      this.host.destroy(dev);
      throw e;
    }
  }

  /** iommufd_test_access_unmap: an IOAS unmap drops the items (and pins) it covers. */
  #watch(acc: SelftestAccess): void {
    const d = this.backend.lastDomain;
    if (!(d instanceof MockAccessDomain)) return;
    d.onUnmap = (iova, length) => {
      for (const [id, it] of acc.items) {
        if (it.iova < iova + length && iova < it.iova + it.length) {
          d.unpin(it.iova, it.length);
          acc.items.delete(id);
        }
      }
    };
  }

  /** iommufd_test_staccess_release: the access descriptor was closed. */
  destroyAccess(id: number): void {
    const acc = this.accesses.get(id);
    if (acc === undefined) return;
    for (const item of acc.items.values()) {
      try {
        this.host.accessUnpin(acc.mdev, item.iova, item.length);
      } catch {
        // Already unpinned by an IOAS unmap (iommufd_test_access_unmap).
      }
    }
    this.host.detach(acc.mdev, "emulated");
    this.host.destroy(acc.mdev);
    this.accesses.delete(id);
  }

  #accessFd(fd: number): SelftestAccess {
    const acc = this.#svc.accessByFd(fd);
    if (acc === undefined) fail("EBADF", `fd ${fd} is not a selftest access`);
    return acc!;
  }

  /** iommufd_test_access_pages: pin, and check the pages are the ones under uptr. */
  #accessPages(c: IoctlContext, fd: number): void {
    const v = c.cmd;
    const flags = v.getUint32(16, true);
    const iova = Number(v.getBigUint64(24, true));
    const length = Number(v.getBigUint64(32, true));
    const uptr = v.getBigUint64(40, true);
    if (length > 16 * 1024 * 1024) fail("ENOMEM", "access pages > 16 MiB");
    if (flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ)) fail("EOPNOTSUPP", "access pages flags");
    const acc = this.#accessFd(fd);
    if (!acc.needsPin) fail("EOPNOTSUPP", "access was created without NEEDS_PIN_PAGES");
    const pas = this.host.accessPin(acc.mdev, iova, length, (flags & MOCK_FLAGS_ACCESS_WRITE) !== 0);
    if (uptr !== 0n) {
      // iommufd_test_check_pages: the pinned pages are the pages under uptr.
      let va = uptr - BigInt(iova % PAGE_SIZE);
      for (const pa of pas) {
        const want = c.mem.physical(va, 1) - (Number(va) % PAGE_SIZE);
        if (Math.floor(pa / PAGE_SIZE) !== Math.floor(want / PAGE_SIZE)) {
          this.host.accessUnpin(acc.mdev, iova, length);
          fail("EINVAL", "pinned pages differ from uptr");
        }
        va += BigInt(PAGE_SIZE);
      }
    }
    const item = acc.nextItem++;
    acc.items.set(item, { iova, length });
    v.setUint32(20, item, true);
    c.respond();
  }

  /** iommufd_test_access_rw through iommufd_access_rw, the bytes being the process's own. */
  #accessRw(c: IoctlContext, fd: number): void {
    const v = c.cmd;
    const iova = Number(v.getBigUint64(16, true));
    const length = Number(v.getBigUint64(24, true));
    const uptr = v.getBigUint64(32, true);
    const flags = v.getUint32(40, true);
    if (length > 16 * 1024 * 1024) fail("ENOMEM", "access rw > 16 MiB");
    if (flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ))
      fail("EOPNOTSUPP", "access rw flags");
    const acc = this.#accessFd(fd);
    const write = (flags & MOCK_ACCESS_RW_WRITE) !== 0;
    const data = write ? c.mem.read(uptr, length) : undefined;
    // The host reads and writes its physical memory: bring it in line with the process first.
    const spans = this.#spans(acc.ioas, iova, length);
    for (const s of spans) this.#syncIn(c.mem, s.pa, s.length);
    const out = this.host.accessRw(acc.mdev, write ? { iova, write, data: data! } : { iova, length, write });
    if (write) for (const s of spans) this.#syncOut(c.mem, s.pa, s.length);
    else if (length > 0) c.mem.write(uptr, out!);
  }

  /** Physical spans of [iova, iova + length) in an IOAS (possibly several areas). */
  #spans(ioas: number, iova: number, length: number): { pa: number; length: number }[] {
    const info = this.host.describe(ioas);
    if (info.kind !== "ioas") return [];
    const out: { pa: number; length: number }[] = [];
    for (const a of info.areas) {
      const s = Math.max(a.iova, iova);
      const e = Math.min(a.iova + a.length, iova + length);
      if (s < e) out.push({ pa: a.pa + (s - a.iova), length: e - s });
    }
    return out;
  }

  #syncIn(mem: UserMemory, pa: number, length: number): void {
    const va = this.toVa?.(pa);
    if (va === undefined) return;
    try {
      this.host.memWrite(pa, mem.read(va, length));
    } catch {
      // The process that mapped it is gone: the host keeps what it had.
    }
  }

  #syncOut(mem: UserMemory, pa: number, length: number): void {
    const va = this.toVa?.(pa);
    if (va === undefined) return;
    try {
      mem.write(va, this.host.memRead(pa, length));
    } catch {
      // Gone: nothing to write back.
    }
  }

  /** Physical address -> the user VA it backs (set by the server). */
  toVa: ((pa: number) => bigint | undefined) | undefined;

  /** iommufd_test_dirty: marks IO pages under set bits of the user bitmap dirty. */
  #dirty(c: IoctlContext, hwpt: number): void {
    const v = c.cmd;
    const flags = v.getUint32(16, true);
    void flags;
    const iova = v.getBigUint64(24, true);
    const length = v.getBigUint64(32, true);
    const pageSize = v.getBigUint64(40, true);
    const uptr = v.getBigUint64(48, true);
    if (pageSize === 0n || length === 0n || iova % pageSize || length % pageSize || uptr === 0n)
      fail("EINVAL", "dirty arguments");
    const max = Number(length / pageSize);
    if (max > 16 * 1024 * 1024 * 8) fail("EOVERFLOW", "dirty bitmap too large");
    const d = this.#paging(hwpt);
    if (!d.dirtyTracking) fail("EINVAL", "dirty tracking is off");
    const bitmap = c.mem.read(uptr, Math.ceil(max / 8));
    let count = 0;
    const ps = Number(pageSize);
    for (let i = 0; i < max; i++) {
      if (!(bitmap[i >> 3]! & (1 << (i & 7)))) continue;
      // The kernel keys the xarray by cur / page_size here (as selftest.c does).
      count += d.markDirtyIndex((Number(iova) + i * ps) / ps);
    }
    v.setBigUint64(56, BigInt(count), true);
    c.respond();
  }

  /** The mock rid of iommufd device `dev` (iommufd_get_device: ENOENT; not a mock device EINVAL). */
  #mockRid(dev: number): number {
    const info = this.host.objects().find((o) => o.id === dev);
    if (info === undefined || info.kind !== "device") fail("ENOENT", `no device ${dev}`);
    if (info!.kind === "device" && info!.iommu !== "mock") fail("EINVAL", "not a mock device");
    return (info as { rid: number }).rid;
  }

  /**
   * iommufd_test_trigger_iopf + iommu_report_device_fault: one page request (a group of
   * one, LAST_PAGE, PASID_VALID unless IOMMU_NO_PASID) to the fault object of the HWPT on
   * the device's RID (mock_ops.user_pasid_table: a PASID request goes to the RID's domain);
   * none there: dropped. The response goes to mock_domain_page_response (recorded).
   */
  #triggerIopf(c: IoctlContext): void {
    const v = c.cmd;
    const dev = v.getUint32(16, true);
    const pasid = v.getUint32(20, true);
    const grpid = v.getUint32(24, true);
    const perm = v.getUint32(28, true);
    const addr = v.getBigUint64(32, true);
    const info = this.host.describe(dev);
    if (info.kind !== "device") fail("ENOENT", `no device ${dev}`);
    if (info.kind === "device" && info.iommu !== "mock") fail("EINVAL", "not a mock device");
    const hwptId = info.kind === "device" ? (info.ridAttach?.hwpt ?? null) : null;
    if (hwptId === null) return;
    const h = this.host.describe(hwptId);
    const fq = h.kind === "hwpt-paging" || h.kind === "hwpt-nested" ? h.faultQueue : null;
    if (fq === null) return;
    const flags = 2 | (pasid !== IOMMU_NO_PASID ? 1 : 0);
    this.#svc.pushFault(fq, {
      faults: [{ flags, devId: dev, pasid, grpid, perm, addr }],
      respond: (code) => {
        this.responses.push({ device: dev, grpid, code });
      },
    });
  }
}
