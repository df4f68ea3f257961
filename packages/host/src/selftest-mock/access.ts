/**
 * The selftest's access (struct selftest_access over an iommufd_access,
 * drivers/iommu/iommufd/selftest.c + device.c, Linux 6.12) as an emulated-access
 * domain of the mock driver. The host fills it with every area of the IOAS like any
 * domain; it keeps the extents in IOVA order and answers:
 * - pin (iommufd_access_pin_pages): length 0 EINVAL, overflow EOVERFLOW, a hole
 *   ENOENT, a write pin of a read-only area EPERM; pages are PAGE_SIZE (4 KiB).
 * - rw (iommufd_access_rw): byte-granular, same errors, through physical memory.
 * - unmap of a pinned range (iommufd_test_access_unmap): the selftest driver drops
 *   its items covering the range and their pins, then the unmap proceeds.
 * Alignment: PAGE_SIZE when created with MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES
 * (ops->needs_pin_pages), 1 otherwise (iommufd_access_create).
 */

import type {
  Domain,
  DomainFlags,
  DomainType,
  EmulatedAccess,
  IovaRange,
  PhysicalMemory,
} from "@iommu-kit/core";
import { hex, IommuError, Perm } from "@iommu-kit/core";

const PAGE_SIZE = 4096;

interface Extent {
  readonly iova: number;
  readonly length: number;
  readonly pa: number;
  readonly prot: number;
}

/** A selftest access's view of its IOAS. */
export class MockAccessDomain implements Domain, EmulatedAccess {
  readonly backend: Domain["backend"];
  readonly id: number;
  readonly type: DomainType = "paging";
  readonly format = "selftest-access";
  readonly flags: DomainFlags = {};
  readonly aperture: IovaRange = { start: 0, last: Number.MAX_SAFE_INTEGER };
  readonly pageSizeBitmap: bigint;
  readonly #memory: PhysicalMemory;
  readonly #extents: Extent[] = [];
  /** 4 KiB page index -> pin count. */
  readonly #pins = new Map<number, number>();
  /** iommufd_test_access_unmap: told which IOVA range is going away while pinned. */
  onUnmap: ((iova: number, length: number) => void) | null = null;

  constructor(backend: Domain["backend"], id: number, memory: PhysicalMemory, needsPin: boolean) {
    this.backend = backend;
    this.id = id;
    this.#memory = memory;
    this.pageSizeBitmap = needsPin ? BigInt(PAGE_SIZE) : 1n;
  }

  map(iova: number, pa: number, length: number, prot: number): void {
    let i = 0;
    while (i < this.#extents.length && this.#extents[i]!.iova < iova) i++;
    this.#extents.splice(i, 0, { iova, length, pa, prot });
  }

  unmap(iova: number, length: number): number {
    const last = iova + length - 1;
    for (let p = Math.floor(iova / PAGE_SIZE); p <= Math.floor(last / PAGE_SIZE); p++) {
      if (this.#pins.has(p)) {
        this.onUnmap?.(iova, length);
        break;
      }
    }
    // Drop the part of each extent inside the range (an area may have been cut by iopt_cut_iova).
    let done = 0;
    const kept: Extent[] = [];
    for (const e of this.#extents) {
      const s = Math.max(e.iova, iova);
      const t = Math.min(e.iova + e.length - 1, last);
      if (s > t) {
        kept.push(e);
        continue;
      }
      done += t - s + 1;
      if (e.iova < s) kept.push({ ...e, length: s - e.iova });
      if (t < e.iova + e.length - 1)
        kept.push({
          iova: t + 1,
          length: e.iova + e.length - 1 - t,
          pa: e.pa + (t + 1 - e.iova),
          prot: e.prot,
        });
    }
    this.#extents.length = 0;
    this.#extents.push(...kept);
    return done;
  }

  iovaToPhys(iova: number): number {
    const e = this.#extents.find((x) => x.iova <= iova && iova < x.iova + x.length);
    return e === undefined ? -1 : e.pa + (iova - e.iova);
  }

  free(): void {}

  /** The extents covering [iova, iova + length) contiguously, each clipped; ENOENT / EPERM / EINVAL / EOVERFLOW. */
  #cover(iova: number, length: number, write: boolean): { pa: number; length: number }[] {
    if (length === 0) throw new IommuError("EINVAL", "access of 0 bytes");
    if (!Number.isSafeInteger(iova + length - 1)) throw new IommuError("EOVERFLOW", "access overflows");
    const out: { pa: number; length: number }[] = [];
    let at = iova;
    const end = iova + length;
    for (const e of this.#extents) {
      if (e.iova + e.length <= at) continue;
      if (e.iova > at) break;
      // check_area_prot: a write needs IOMMU_WRITE, a read IOMMU_READ.
      if (!(e.prot & (write ? Perm.W : Perm.R)))
        throw new IommuError("EPERM", `area at ${hex(e.iova)} forbids ${write ? "writes" : "reads"}`);
      const stop = Math.min(end, e.iova + e.length);
      out.push({ pa: e.pa + (at - e.iova), length: stop - at });
      at = stop;
      if (at >= end) return out;
    }
    throw new IommuError("ENOENT", `[${hex(iova)}, +${hex(length)}) is not fully mapped`);
  }

  pin(iova: number, length: number, write: boolean): readonly number[] {
    const spans = this.#cover(iova, length, write);
    const first = Math.floor(iova / PAGE_SIZE);
    const last = Math.floor((iova + length - 1) / PAGE_SIZE);
    const pas: number[] = [];
    for (let p = first; p <= last; p++) {
      const pa = this.iovaToPhys(Math.max(p * PAGE_SIZE, iova));
      pas.push(pa - (pa % PAGE_SIZE));
    }
    void spans;
    for (let p = first; p <= last; p++) this.#pins.set(p, (this.#pins.get(p) ?? 0) + 1);
    return pas;
  }

  unpin(iova: number, length: number): void {
    const first = Math.floor(iova / PAGE_SIZE);
    const last = Math.floor((iova + length - 1) / PAGE_SIZE);
    for (let p = first; p <= last; p++) {
      if (!this.#pins.has(p)) throw new IommuError("EINVAL", `page ${hex(p * PAGE_SIZE)} is not pinned`);
    }
    for (let p = first; p <= last; p++) {
      const n = this.#pins.get(p)! - 1;
      if (n === 0) this.#pins.delete(p);
      else this.#pins.set(p, n);
    }
  }

  read(iova: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let o = 0;
    for (const s of this.#cover(iova, length, false)) {
      out.set(this.#memory.read(s.pa, s.length), o);
      o += s.length;
    }
    return out;
  }

  write(iova: number, data: Uint8Array): void {
    let o = 0;
    for (const s of this.#cover(iova, data.length, true)) {
      this.#memory.write(s.pa, data.subarray(o, o + s.length));
      o += s.length;
    }
  }

  pinCount(): number {
    let n = 0;
    for (const c of this.#pins.values()) n += c;
    return n;
  }
}
