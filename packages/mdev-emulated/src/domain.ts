/**
 * An emulated-table domain: the page table a mediated device's parent driver reads in
 * software, with iommufd's access operations on it (drivers/iommu/iommufd/device.c:
 * iommufd_access_pin_pages / _unpin_pages / _rw, and io_pagetable.c's unmap, which calls
 * every access's unmap callback before it removes pinned pages).
 *
 * Errors follow the kernel where it has an answer: zero length EINVAL, an IOVA no
 * mapping covers ENOENT (iommufd_access_pin_pages: `!iopt_area_contig_done` -> -ENOENT),
 * a permission the mapping lacks EINVAL (the kernel's -EPERM, check_area_prot; core has
 * no EPERM code), a range that wraps past 2^53 EOVERFLOW. Unlike the kernel's
 * iommufd_access_rw, a read or write that fails part-way changes nothing: every page is
 * checked before the first byte moves.
 */

import type { Domain, DomainFlags, EmulatedAccess, IovaRange, PhysicalMemory } from "@iommu-kit/core";
import { hex, IommuError, Perm, pageSizeBitmap } from "@iommu-kit/core";
import { copyIn, copyOut } from "./fast-path.ts";
import {
  chunkOf,
  EmulatedTable,
  EntryBit,
  entryPa,
  IOVA_LIMIT,
  LEAF_SIZES_LG2,
  leafLg2,
  PAGE,
  PAGE_LG2,
  PERM_MASK,
  pageOffset,
  sizeBits,
  slotOf,
} from "./format/emulated-table.ts";
import { MDEV_FORMAT } from "./hw-info.ts";

/** A mediated device attached to a domain with the `emulated` intent. */
export interface AccessUser {
  readonly rid: number;
  /** Runs the mdev's unmap callback for [iova, iova + length). */
  notifyUnmap(iova: number, length: number): void;
}

/** What a domain needs from its backend. */
export interface DomainHost {
  readonly memory: PhysicalMemory;
  /** Drops cached translations of `domain` that cover [iova, iova + length). */
  invalidateRange(domain: Domain, iova: number, length: number): void;
  /** Drops every cached translation of `domain`. */
  invalidateDomain(domain: Domain): void;
}

/** Grows to the largest rw seen; holds the physical page of each IOVA page of one rw. */
let scratchPas = new Float64Array(64);

function pasFor(pages: number): Float64Array {
  if (scratchPas.length < pages) scratchPas = new Float64Array(Math.max(pages, scratchPas.length * 2));
  return scratchPas;
}

/** The largest leaf (log2) that `iova`, `pa` and `length` allow. */
function leafFor(iova: number, pa: number, length: number): number {
  for (let i = LEAF_SIZES_LG2.length - 1; i > 0; i--) {
    const size = 2 ** LEAF_SIZES_LG2[i]!;
    if (iova % size === 0 && pa % size === 0 && length >= size) return LEAF_SIZES_LG2[i]!;
  }
  return PAGE_LG2;
}

function freedError(op: string, id: number): never {
  throw new IommuError("EINVAL", `${op} on freed mdev-emulated domain ${id}`, { id });
}

/** Throws for a pin/unpin/rw range that is not [iova, iova + length) with integers, length > 0, below 2^53. */
function rangeError(op: string, iova: number, length: number): never {
  if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length <= 0) {
    throw new IommuError("EINVAL", `${op}: bad range ${iova}+${length}`, { iova, length });
  }
  throw new IommuError("EOVERFLOW", `${op}: ${hex(iova)}+${hex(length)} wraps`, { iova, length });
}

/** Throws for the page at `at` with entry `e`: not mapped, lacking `need`, or not RAM. */
function accessError(op: string, at: number, e: number, need: number): never {
  if (e === 0) throw new IommuError("ENOENT", `${op}: iova ${hex(at)} is not mapped`, { iova: at });
  if ((e & need) !== need) {
    // iommufd answers -EPERM here (iopt_access_pages / iommufd_access_rw: check_area_prot).
    throw new IommuError("EPERM", `${op}: the mapping at ${hex(at)} does not allow this access`, {
      iova: at,
      reason: "permission",
    });
  }
  const pa = entryPa(e);
  throw new IommuError("EFAULT", `${op}: iova ${hex(at)} maps ${hex(pa)}, which is not RAM`, {
    iova: at,
    pa,
  });
}

/** A paging domain in the "mdev-emulated" format with software access. */
export class EmulatedDomain implements Domain, EmulatedAccess {
  readonly backend: Domain["backend"];
  readonly id: number;
  readonly type = "paging" as const;
  readonly format: string = MDEV_FORMAT;
  readonly flags: DomainFlags;
  readonly aperture: IovaRange = Object.freeze({ start: 0, last: IOVA_LIMIT - 1 });
  readonly pageSizeBitmap: bigint = pageSizeBitmap(LEAF_SIZES_LG2);
  /** The emulated table. Writing it directly bypasses cache invalidation (a test hook). */
  readonly table: EmulatedTable = new EmulatedTable();
  /** Mediated devices attached with the `emulated` intent, in attach order. */
  readonly users: Set<AccessUser> = new Set();
  readonly #host: DomainHost;
  #tracking = false;
  #freed = false;

  constructor(backend: Domain["backend"], host: DomainHost, id: number, flags: DomainFlags) {
    this.backend = backend;
    this.#host = host;
    this.id = id;
    this.flags = Object.freeze({ ...flags });
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#freed;
  }

  /** Dirty tracking currently enabled. */
  get tracking(): boolean {
    return this.#tracking;
  }

  #live(op: string): void {
    if (this.#freed) freedError(op, this.id);
  }

  map(iova: number, pa: number, length: number, prot: number): void {
    this.#live("map");
    for (const [name, v] of [
      ["iova", iova],
      ["pa", pa],
      ["length", length],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0 || v % PAGE !== 0) {
        throw new IommuError("EINVAL", `map: ${name} ${v} is not a page-aligned address`, {
          iova,
          pa,
          length,
        });
      }
    }
    if (length === 0) throw new IommuError("EINVAL", "map: zero length", { iova, length });
    if (iova + length > IOVA_LIMIT) {
      throw new IommuError("EINVAL", `map ${hex(iova)}+${hex(length)} is outside the aperture`, {
        iova,
        length,
      });
    }
    if (pa + length > 2 ** 52) {
      throw new IommuError("EINVAL", `map: pa ${hex(pa)}+${hex(length)} is beyond 2^52`, { pa, length });
    }
    if (!Number.isInteger(prot) || (prot & ~PERM_MASK) !== 0) {
      throw new IommuError("EINVAL", `map: prot ${prot} has bits other than R/W/X`, { prot });
    }
    if (this.table.anyPresent(iova, iova + length)) {
      throw new IommuError("EEXIST", `map ${hex(iova)}+${hex(length)} overlaps a mapping`, { iova, length });
    }
    // The chunks the map creates are its allocations (fail_nth sweeps reach here).
    this.#host.memory.failNth.point("mdev-emulated map");
    let off = 0;
    while (off < length) {
      const leaf = leafFor(iova + off, pa + off, length - off);
      const bits = prot | sizeBits(leaf);
      const end = off + 2 ** leaf;
      for (; off < end; off += PAGE) this.table.set(iova + off, pa + off, bits);
    }
  }

  /**
   * Unmaps [iova, iova + length). Pinned pages in the range first make every attached
   * mdev's unmap callback run over the pinned span; if pins remain, EBUSY and nothing
   * is unmapped. Returns the bytes unmapped.
   */
  unmap(iova: number, length: number): number {
    this.#live("unmap");
    if (length <= 0) return 0;
    if (
      !Number.isSafeInteger(iova) ||
      !Number.isSafeInteger(length) ||
      iova < 0 ||
      pageOffset(iova) !== 0 ||
      pageOffset(length) !== 0
    ) {
      throw new IommuError("EINVAL", `unmap ${iova}+${length} is not page-aligned`, { iova, length });
    }
    const end = Math.min(iova + length, IOVA_LIMIT);
    this.#checkSplit(iova, end);
    if (this.#pinnedSpan(iova, end)) {
      const [first, last] = this.#span;
      for (const u of [...this.users]) u.notifyUnmap(first, last - first);
      if (this.#pinnedSpan(iova, end)) {
        const [f, l] = this.#span;
        throw new IommuError(
          "EBUSY",
          `unmap: [${hex(f)}, ${hex(l)}) is still pinned after the unmap callbacks`,
          {
            iova: f,
            length: l - f,
          },
        );
      }
    }
    let pages = 0;
    const t = this.table;
    t.forEachPresent(iova, end, (at) => {
      t.clear(at);
      pages++;
    });
    if (pages > 0) this.#host.invalidateRange(this, iova, end - iova);
    return pages * PAGE;
  }

  /** EINVAL when [start, end) cuts a 2 MiB or 1 GiB leaf. */
  #checkSplit(start: number, end: number): void {
    for (const at of [start, end - PAGE]) {
      const f = this.table.flagsAt(at);
      if ((f & EntryBit.V) === 0) continue;
      const size = 2 ** leafLg2(f);
      const base = at - (at % size);
      if (base < start || base + size > end) {
        throw new IommuError(
          "EINVAL",
          `unmap ${hex(start)}..${hex(end)} would split the ${hex(size)} leaf at ${hex(base)}`,
          {
            iova: base,
          },
        );
      }
    }
  }

  /** First pinned page and one past the last pinned page found by {@link #pinnedSpan}. */
  readonly #span: [number, number] = [0, 0];

  #pinnedSpan(start: number, end: number): boolean {
    if (this.table.pins === 0) return false;
    let first = -1;
    let last = -1;
    const t = this.table;
    t.forEachPresent(start, end, (at) => {
      if (t.pinsAt(at) > 0) {
        if (first < 0) first = at;
        last = at + PAGE;
      }
    });
    this.#span[0] = first;
    this.#span[1] = last;
    return first >= 0;
  }

  iovaToPhys(iova: number): number {
    if (this.#freed || !(iova >= 0 && iova < IOVA_LIMIT)) return -1;
    return this.table.lookup(iova);
  }

  free(): void {
    this.#live("free");
    if (this.users.size > 0) {
      throw new IommuError(
        "EBUSY",
        `mdev-emulated domain ${this.id} is attached to ${this.users.size} mdev(s)`,
        {
          id: this.id,
        },
      );
    }
    if (this.table.pins > 0) {
      throw new IommuError("EBUSY", `mdev-emulated domain ${this.id} holds ${this.table.pins} pin(s)`, {
        id: this.id,
      });
    }
    this.#freed = true;
    this.table.reset();
    this.#host.invalidateDomain(this);
  }

  setDirtyTracking(enable: boolean): void {
    this.#live("setDirtyTracking");
    if (!this.flags.dirtyTracking) {
      throw new IommuError("EINVAL", `domain ${this.id} was not allocated with dirty tracking`, {
        id: this.id,
      });
    }
    // iopt_set_dirty_tracking clears stale dirty state when tracking is switched on.
    if (enable && !this.#tracking) this.#clearDirty(0, IOVA_LIMIT);
    this.#tracking = enable;
  }

  #clearDirty(start: number, end: number): void {
    let any = false;
    this.table.forEachPresent(start, end, (_at, c, s) => {
      if (c[s]! & EntryBit.D) {
        c[s] = c[s]! - EntryBit.D;
        any = true;
      }
    });
    // Cached entries remember "already dirty"; they must walk again to re-mark.
    if (any) this.#host.invalidateRange(this, start, end - start);
  }

  readDirty(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void {
    this.#live("readDirty");
    if (!this.flags.dirtyTracking) {
      throw new IommuError("EINVAL", `domain ${this.id} was not allocated with dirty tracking`, {
        id: this.id,
      });
    }
    if (!Number.isInteger(pageSizeLg2) || pageSizeLg2 < 0 || pageSizeLg2 > 52) {
      throw new IommuError("EINVAL", `readDirty: bad page size 2^${pageSizeLg2}`, { pageSizeLg2 });
    }
    const ps = 2 ** pageSizeLg2;
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length <= 0) {
      throw new IommuError("EINVAL", `readDirty: bad range ${iova}+${length}`, { iova, length });
    }
    if (iova % ps !== 0 || length % ps !== 0) {
      throw new IommuError(
        "EINVAL",
        `readDirty: ${hex(iova)}+${hex(length)} is not aligned to 2^${pageSizeLg2}`,
        {
          iova,
          length,
        },
      );
    }
    const pages = length / ps;
    if (bitmap.length * 8 < pages) {
      throw new IommuError("EINVAL", `readDirty: bitmap of ${bitmap.length} bytes < ${pages} pages`, {
        pages,
      });
    }
    const end = Math.min(iova + length, IOVA_LIMIT);
    const start = iova - pageOffset(iova);
    let cleared = false;
    this.table.forEachPresent(start, end, (at, c, s) => {
      if ((c[s]! & EntryBit.D) === 0) return;
      const from = Math.max(at, iova);
      const to = Math.min(at + PAGE, end);
      for (let p = Math.floor((from - iova) / ps); p <= Math.floor((to - 1 - iova) / ps); p++) {
        bitmap[p >>> 3]! |= 1 << (p & 7);
      }
      if (!noClear) {
        c[s] = c[s]! - EntryBit.D;
        cleared = true;
      }
    });
    if (cleared) this.#host.invalidateRange(this, start, end - start);
  }

  /** Checks [start, end) for pin/unpin/rw; returns the first page and page count or throws. */
  #range(op: string, iova: number, length: number): number {
    // Integers with iova >= 0, length > 0 and iova + length <= 2^53 - 1 pass; rangeError sorts out the rest.
    if (!(iova >= 0 && length > 0 && iova + length <= Number.MAX_SAFE_INTEGER) || Math.floor(iova) !== iova) {
      rangeError(op, iova, length);
    }
    if (Math.floor(length) !== length) rangeError(op, iova, length);
    return Math.ceil((pageOffset(iova) + length) / PAGE);
  }

  /**
   * Checks every page of [iova, iova + length) is mapped with `need` and, when `ram`,
   * backed by RAM; fills `pas` with the physical pages. Throws ENOENT / EINVAL / EFAULT.
   */
  #resolve(
    op: string,
    iova: number,
    pages: number,
    need: number,
    ram: boolean,
    pas: Float64Array | null,
  ): void {
    const first = iova - pageOffset(iova);
    const memory = this.#host.memory;
    const t = this.table;
    // One chunk lookup per 2 MiB of contiguous IOVA, not one per page.
    let key = -1;
    let c: ReturnType<typeof t.chunk>;
    for (let i = 0; i < pages; i++) {
      const at = first + i * PAGE;
      if (at >= IOVA_LIMIT) c = undefined;
      else if (chunkOf(at) !== key) {
        key = chunkOf(at);
        c = t.chunk(key);
      }
      const e = c === undefined ? 0 : c[slotOf(at)]!;
      const pa = entryPa(e);
      if (e === 0 || (e & need) !== need || (ram && !memory.isRam(pa))) accessError(op, at, e, need);
      if (pas !== null) pas[i] = pa;
    }
  }

  pin(iova: number, length: number, write: boolean): readonly number[] {
    this.#live("pin");
    const pages = this.#range("pin", iova, length);
    // check_area_prot: a write pin needs W, any other pin R.
    const need = write ? Perm.W : Perm.R;
    const first = iova - pageOffset(iova);
    const mark = write && this.#tracking;
    const t = this.table;
    if (pages === 1) {
      // The common single-page pin: one lookup, no scratch.
      const c = first < IOVA_LIMIT ? t.chunk(chunkOf(first)) : undefined;
      const s = slotOf(first);
      const e = c === undefined ? 0 : c[s]!;
      if (e === 0 || (e & need) !== need) accessError("pin", first, e, need);
      t.addPin(first, 1);
      if (mark && (e & EntryBit.D) === 0) c![s] = e + EntryBit.D;
      return [entryPa(e)];
    }
    this.#resolve("pin", iova, pages, need, false, null);
    const out: number[] = [];
    for (let i = 0; i < pages; i++) {
      const at = first + i * PAGE;
      const c = t.chunk(chunkOf(at))!;
      const s = slotOf(at);
      t.addPin(at, 1);
      if (mark && (c[s]! & EntryBit.D) === 0) c[s] = c[s]! + EntryBit.D;
      out.push(entryPa(c[s]!));
    }
    return out;
  }

  unpin(iova: number, length: number): void {
    this.#live("unpin");
    const pages = this.#range("unpin", iova, length);
    const first = iova - pageOffset(iova);
    const t = this.table;
    for (let i = 0; i < pages; i++) {
      if (t.pinsAt(first + i * PAGE) === 0) {
        throw new IommuError("EINVAL", `unpin: iova ${hex(first + i * PAGE)} is not pinned`, {
          iova: first + i * PAGE,
        });
      }
    }
    for (let i = 0; i < pages; i++) {
      const at = first + i * PAGE;
      t.addPin(at, -1);
    }
  }

  /** Drops every pin of every page in [iova, iova + length); returns how many (the ready-made mdev's callback). */
  releasePins(iova: number, length: number): number {
    if (this.#freed || this.table.pins === 0 || !(length > 0)) return 0;
    const start = Math.max(0, iova - pageOffset(iova));
    const end = Math.min(IOVA_LIMIT, iova + length);
    let dropped = 0;
    const t = this.table;
    t.forEachPresent(start, end, (at) => {
      const n = t.pinsAt(at);
      if (n > 0) {
        t.addPin(at, -n);
        dropped += n;
      }
    });
    return dropped;
  }

  pinCount(): number {
    return this.table.pins;
  }

  read(iova: number, length: number): Uint8Array {
    this.#live("read");
    this.#range("read", iova, length);
    const out = new Uint8Array(length);
    this.readInto(iova, out);
    return out;
  }

  /** Reads `dst.length` bytes at `iova` into `dst` (no allocation); all or nothing. */
  readInto(iova: number, dst: Uint8Array): void {
    this.#live("read");
    const pages = this.#range("read", iova, dst.length);
    const pas = pasFor(pages);
    this.#resolve("read", iova, pages, Perm.R, true, pas);
    copyOut(this.#host.memory, pas, iova, dst);
  }

  write(iova: number, data: Uint8Array): void {
    this.#live("write");
    const pages = this.#range("write", iova, data.length);
    const pas = pasFor(pages);
    this.#resolve("write", iova, pages, Perm.W, true, pas);
    copyIn(this.#host.memory, pas, iova, data);
    if (this.#tracking) {
      const first = iova - pageOffset(iova);
      for (let i = 0; i < pages; i++) {
        const at = first + i * PAGE;
        const c = this.table.chunk(chunkOf(at))!;
        const s = slotOf(at);
        if ((c[s]! & EntryBit.D) === 0) c[s] = c[s]! + EntryBit.D;
      }
    }
  }
}
