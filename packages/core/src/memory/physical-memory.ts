/**
 * Physical memory: sparse, page-granular, little-endian. Every table lives here and
 * every DMA reaches here.
 *
 * - A memory map of RAM regions (page-aligned, non-overlapping). RAM that was never
 *   written reads as zeros; an address outside every region is a bus error: the
 *   number-returning reads answer -1 (a walker turns that into the spec's
 *   external-abort fault), the byte-range calls throw EFAULT before touching anything.
 * - Pages (4 KiB) are carved from 1 MiB slabs, not one ArrayBuffer each, and exist only
 *   once written. A walker asks for a whole page as a `Uint32Array` (`readPage`) and
 *   reads 64-bit descriptors as two 32-bit halves: no BigInt, no allocation.
 * - Physical addresses are numbers below 2^52 in every supported architecture.
 *
 * Host byte order must be little-endian (checked once at load): typed-array views
 * then match the architectures' little-endian tables.
 */

import { hex, IommuError } from "../errors.ts";
import { FailNth } from "../fail-nth.ts";

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error("iommu-kit needs a little-endian host");
}

/** Page size of the memory model. */
export const PAGE_LG2 = 12;
/** 4096. */
export const PAGE_SIZE: number = 1 << PAGE_LG2;
const PAGE_WORDS = PAGE_SIZE >>> 2;
const SLAB_PAGES = 256;
/** log2 of the runs readRange / writeRange remember. */
const RUNS_LG2 = 3;
const RUNS = 1 << RUNS_LG2;

/** A RAM region of the memory map. */
export interface RamRegion {
  readonly base: number;
  readonly size: number;
  readonly name?: string;
}

/** A page of zeros shared by every never-written RAM page. Read-only by contract. */
const ZERO_PAGE = new Uint32Array(PAGE_WORDS);

/** Options of a {@link PhysicalMemory}. */
export interface PhysicalMemoryOptions {
  /** Failure injection shared with the table allocator and the host. */
  readonly failNth?: FailNth;
}

/** Sparse physical memory over a memory map of RAM regions. */
export class PhysicalMemory {
  /** The RAM regions, sorted by base. */
  readonly regions: readonly RamRegion[];
  /** Failure injection for allocation points that use this memory. */
  readonly failNth: FailNth;
  readonly #pages = new Map<number, Uint32Array>();
  readonly #spare: Uint32Array[] = [];
  /** Where each spare page sits (see #loc), in #spare's order. */
  readonly #spareLoc: number[] = [];
  /** Byte views of the slabs, by serial number. */
  readonly #slabs: Uint8Array[] = [];
  /**
   * Where each resident frame's page sits: slab serial * SLAB_PAGES + slot. Pages of a run
   * sit one after another when their locations do, one Map probe a page (a typed array's
   * .buffer / .byteOffset getters cost several).
   */
  readonly #loc = new Map<number, number>();
  /** The location of the page #newPage returned last. */
  #newLoc = 0;
  #slab: ArrayBuffer | null = null;
  #slabNext = SLAB_PAGES;
  #lastPfn = -1;
  #lastPage: Uint32Array = ZERO_PAGE;
  readonly #starts: Float64Array;
  readonly #ends: Float64Array;
  /**
   * Runs of resident pages found one after another in one slab (readRange / writeRange),
   * direct-mapped by first frame: [first frame, end frame, slab serial, byte offset] each,
   * an empty one [-1, -1, 0, 0]. A copy made of a few runs, repeated, finds each here. A
   * resident frame keeps its page until #discard, which forgets the runs holding it.
   */
  readonly #runs = new Float64Array(RUNS * 4).fill(-1);

  constructor(regions: readonly RamRegion[], options: PhysicalMemoryOptions = {}) {
    const sorted = [...regions].sort((a, b) => a.base - b.base);
    let prevEnd = -1;
    for (const r of sorted) {
      if (!Number.isSafeInteger(r.base) || !Number.isSafeInteger(r.size) || r.base < 0 || r.size <= 0) {
        throw new IommuError("EINVAL", `bad RAM region base ${r.base} size ${r.size}`, {
          base: r.base,
          size: r.size,
        });
      }
      if (r.base % PAGE_SIZE !== 0 || r.size % PAGE_SIZE !== 0) {
        throw new IommuError("EINVAL", `RAM region ${hex(r.base)}+${hex(r.size)} is not page-aligned`, {
          base: r.base,
          size: r.size,
        });
      }
      if (r.base + r.size > 2 ** 52) {
        throw new IommuError("EINVAL", `RAM region ${hex(r.base)}+${hex(r.size)} ends above 2^52`, {
          base: r.base,
        });
      }
      if (r.base < prevEnd) {
        throw new IommuError("EINVAL", `RAM region at ${hex(r.base)} overlaps the one before it`, {
          base: r.base,
        });
      }
      prevEnd = r.base + r.size;
    }
    this.regions = Object.freeze(sorted.map((r) => Object.freeze({ ...r })));
    this.#starts = Float64Array.from(sorted, (r) => r.base);
    this.#ends = Float64Array.from(sorted, (r) => r.base + r.size);
    this.failNth = options.failNth ?? new FailNth();
  }

  /** True when physical address `pa` is RAM. */
  isRam(pa: number): boolean {
    const s = this.#starts;
    let lo = 0;
    let hi = s.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (pa < s[mid]!) hi = mid - 1;
      else if (pa >= this.#ends[mid]!) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /** True when every byte of [pa, pa + length) is RAM (length 0: true). */
  isRamRange(pa: number, length: number): boolean {
    if (!Number.isSafeInteger(pa) || !Number.isSafeInteger(length) || pa < 0 || length < 0) return false;
    if (length === 0) return true;
    let at = pa;
    const end = pa + length;
    while (at < end) {
      const i = this.#regionIndex(at);
      if (i < 0) return false;
      at = this.#ends[i]!;
    }
    return true;
  }

  #regionIndex(pa: number): number {
    const s = this.#starts;
    let lo = 0;
    let hi = s.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (pa < s[mid]!) hi = mid - 1;
      else if (pa >= this.#ends[mid]!) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /**
   * The page with frame number `pfn` for reading: its words, a shared zero page for
   * never-written RAM (do not write into it), or null for a bus error. Hot path.
   */
  readPage(pfn: number): Uint32Array | null {
    if (pfn === this.#lastPfn) return this.#lastPage;
    const p = this.#pages.get(pfn);
    if (p !== undefined) {
      this.#lastPfn = pfn;
      this.#lastPage = p;
      return p;
    }
    return this.isRam(pfn * PAGE_SIZE) ? ZERO_PAGE : null;
  }

  /** The page with frame number `pfn` for writing (created on first use), or null for a bus error. */
  writePage(pfn: number): Uint32Array | null {
    // The one-page cache only ever holds resident pages, so it serves writes too.
    if (pfn === this.#lastPfn && this.#lastPage !== ZERO_PAGE) return this.#lastPage;
    let page = this.#pages.get(pfn);
    if (page === undefined) {
      if (!this.isRam(pfn * PAGE_SIZE)) return null;
      page = this.#newPage();
      this.#pages.set(pfn, page);
      this.#loc.set(pfn, this.#newLoc);
    }
    this.#lastPfn = pfn;
    this.#lastPage = page;
    return page;
  }

  #newPage(): Uint32Array {
    const spare = this.#spare.pop();
    if (spare !== undefined) {
      this.#newLoc = this.#spareLoc.pop()!;
      spare.fill(0);
      return spare;
    }
    if (this.#slabNext === SLAB_PAGES) {
      this.#slab = new ArrayBuffer(SLAB_PAGES * PAGE_SIZE);
      this.#slabs.push(new Uint8Array(this.#slab));
      this.#slabNext = 0;
    }
    this.#newLoc = (this.#slabs.length - 1) * SLAB_PAGES + this.#slabNext;
    return new Uint32Array(this.#slab!, this.#slabNext++ * PAGE_SIZE, PAGE_WORDS);
  }

  /** Reads the 32-bit word at `pa` (4-byte aligned); -1 on a bus error. */
  read32(pa: number): number {
    const page = this.readPage(Math.floor(pa / PAGE_SIZE));
    return page === null ? -1 : page[(pa & 0xfff) >>> 2]!;
  }

  /** Writes the 32-bit word at `pa` (4-byte aligned); false on a bus error. */
  write32(pa: number, value: number): boolean {
    const page = this.writePage(Math.floor(pa / PAGE_SIZE));
    if (page === null) return false;
    page[(pa & 0xfff) >>> 2] = value;
    return true;
  }

  /** Reads the 64-bit little-endian word at `pa` (8-byte aligned). Throws EFAULT on a bus error. Slow path. */
  read64(pa: number): bigint {
    const page = this.readPage(Math.floor(pa / PAGE_SIZE));
    if (page === null) throw busError(pa, 8);
    const i = (pa & 0xfff) >>> 2;
    return (BigInt(page[i + 1]!) << 32n) | BigInt(page[i]!);
  }

  /** Writes the 64-bit little-endian word at `pa` (8-byte aligned). Throws EFAULT on a bus error. */
  write64(pa: number, value: bigint): void {
    const page = this.writePage(Math.floor(pa / PAGE_SIZE));
    if (page === null) throw busError(pa, 8);
    const i = (pa & 0xfff) >>> 2;
    page[i] = Number(value & 0xffffffffn);
    page[i + 1] = Number((value >> 32n) & 0xffffffffn);
  }

  /** Copies [pa, pa + dst.length) into `dst`. Throws EFAULT (nothing copied) unless all of it is RAM. */
  readInto(pa: number, dst: Uint8Array): void {
    this.readRange(pa, dst, 0, dst.length);
  }

  /**
   * Copies the `n` bytes at physical [pa, pa + n) into `dst` at offset `at`: one copy
   * when the range's pages sit one after another in one slab (such runs are remembered,
   * so repeating a copy looks no page up). Throws EINVAL when [at, at + n) is not inside
   * `dst`, EFAULT (nothing copied) unless all of [pa, pa + n) is RAM.
   */
  readRange(pa: number, dst: Uint8Array, at: number, n: number): void {
    this.#copy(pa, dst, at, n, false);
  }

  /**
   * Copies `n` bytes of `src` from offset `at` to physical [pa, pa + n), as readRange.
   * Throws EINVAL when [at, at + n) is not inside `src`, EFAULT (nothing written) unless
   * all of it is RAM.
   */
  writeRange(pa: number, src: Uint8Array, at: number, n: number): void {
    this.#copy(pa, src, at, n, true);
  }

  /** readRange (`write` false) and writeRange (true): `buf`'s span [at, at + n) to or from [pa, pa + n). */
  #copy(pa: number, buf: Uint8Array, at: number, n: number, write: boolean): void {
    checkSpan(buf, at, n);
    if (!this.isRamRange(pa, n)) throw busError(pa, n);
    if (n === 0) return;
    const off = (pa | 0) & (PAGE_SIZE - 1);
    const pfn = (pa - off) / PAGE_SIZE;
    const r = this.#covers(pfn, Math.ceil((off + n) / PAGE_SIZE), write);
    if (r >= 0) {
      const runs = this.#runs;
      const slab = this.#slabs[runs[r + 2]!]!;
      const from = runs[r + 3]! + (pfn - runs[r]!) * PAGE_SIZE + off;
      if (write) slab.set(buf.subarray(at, at + n), from);
      else buf.set(slab.subarray(from, from + n), at);
      return;
    }
    // Page by page: a frame never written reads as zeros (and a write makes it resident).
    let done = 0;
    while (done < n) {
      const a = pa + done;
      const o = a % PAGE_SIZE;
      const k = Math.min(PAGE_SIZE - o, n - done);
      const pfnA = Math.floor(a / PAGE_SIZE);
      const page = write ? this.writePage(pfnA)! : this.#pages.get(pfnA);
      if (page === undefined) buf.fill(0, at + done, at + done + k);
      else if (write)
        new Uint8Array(page.buffer, page.byteOffset + o, k).set(buf.subarray(at + done, at + done + k));
      else buf.set(new Uint8Array(page.buffer, page.byteOffset + o, k), at + done);
      done += k;
    }
  }

  /**
   * The #runs entry (its index) of a run holding frames [pfn, pfn + pages) (RAM), found
   * or made, or -1 when they are not resident one after another in one slab. `write`
   * makes them resident first (writePage), which only RAM frames can fail and the
   * callers checked.
   */
  #covers(pfn: number, pages: number, write: boolean): number {
    const runs = this.#runs;
    const r = (Math.imul(pfn | 0, 0x9e3779b1) >>> (32 - RUNS_LG2)) << 2;
    if (pfn >= runs[r]! && pfn + pages <= runs[r + 1]!) return r;
    const first = this.#where(pfn, write);
    const slot = first % SLAB_PAGES;
    // (a run never leaves its slab; a missing page's location, -1, fails the test too)
    if (first < 0 || slot + pages > SLAB_PAGES) return -1;
    for (let k = 1; k < pages; k++) if (this.#where(pfn + k, write) !== first + k) return -1;
    runs[r] = pfn;
    runs[r + 1] = pfn + pages;
    runs[r + 2] = (first - slot) / SLAB_PAGES;
    runs[r + 3] = slot * PAGE_SIZE;
    return r;
  }

  /** The location of frame `pfn`'s page (see #loc), made resident first when `write`; -1 when it has none. */
  #where(pfn: number, write: boolean): number {
    let l = this.#loc.get(pfn);
    if (l === undefined && write && this.writePage(pfn) !== null) l = this.#loc.get(pfn);
    return l ?? -1;
  }

  /** Reads `length` bytes at `pa`. Throws EFAULT unless all of it is RAM. */
  read(pa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.readInto(pa, out);
    return out;
  }

  /** Writes `data` at `pa`. Throws EFAULT (nothing written) unless all of it is RAM. */
  write(pa: number, data: Uint8Array): void {
    this.writeRange(pa, data, 0, data.length);
  }

  /** Sets [pa, pa + length) to `byte`. Zeroing releases whole pages. Throws EFAULT unless all RAM. */
  fill(pa: number, length: number, byte: number): void {
    if (!this.isRamRange(pa, length)) throw busError(pa, length);
    let done = 0;
    while (done < length) {
      const at = pa + done;
      const off = at % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, length - done);
      const pfn = Math.floor(at / PAGE_SIZE);
      if (byte === 0 && n === PAGE_SIZE) {
        this.#discard(pfn);
      } else if (byte !== 0 || this.#pages.has(pfn)) {
        const page = this.writePage(pfn)!;
        new Uint8Array(page.buffer, page.byteOffset + off, n).fill(byte);
      }
      done += n;
    }
  }

  #discard(pfn: number): void {
    const p = this.#pages.get(pfn);
    if (p === undefined) return;
    this.#pages.delete(pfn);
    this.#spare.push(p);
    this.#spareLoc.push(this.#loc.get(pfn)!);
    this.#loc.delete(pfn);
    if (this.#lastPfn === pfn) this.#lastPfn = -1;
    const runs = this.#runs;
    for (let r = 0; r < runs.length; r += 4)
      if (pfn >= runs[r]! && pfn < runs[r + 1]!) {
        runs[r] = -1;
        runs[r + 1] = -1;
      }
  }

  /** Number of pages that hold written data. */
  get residentPages(): number {
    return this.#pages.size;
  }

  /** Frame numbers of written pages, ascending. */
  residentFrames(): number[] {
    return [...this.#pages.keys()].sort((a, b) => a - b);
  }

  /**
   * A deep copy of the contents (resident pages that are not all zero), for tests that
   * prove an operation changed nothing. Compare two with {@link PhysicalMemory.sameContents}.
   */
  snapshot(): Map<number, Uint8Array> {
    const out = new Map<number, Uint8Array>();
    for (const pfn of this.residentFrames()) {
      const p = this.#pages.get(pfn)!;
      if (p.some((w) => w !== 0))
        out.set(pfn, new Uint8Array(p.buffer.slice(p.byteOffset, p.byteOffset + PAGE_SIZE)));
    }
    return out;
  }

  /** True when two snapshots hold the same bytes. */
  static sameContents(a: Map<number, Uint8Array>, b: Map<number, Uint8Array>): boolean {
    if (a.size !== b.size) return false;
    for (const [pfn, bytes] of a) {
      const other = b.get(pfn);
      if (other === undefined || other.length !== bytes.length) return false;
      for (let i = 0; i < bytes.length; i++) if (bytes[i] !== other[i]) return false;
    }
    return true;
  }
}

/** EINVAL unless [at, at + n) is a span of integers inside `buf`. */
function checkSpan(buf: Uint8Array, at: number, n: number): void {
  if (!(Number.isInteger(at) && Number.isInteger(n) && at >= 0 && n >= 0 && at + n <= buf.length))
    throw new IommuError("EINVAL", `[${at}, +${n}) is not inside a buffer of ${buf.length} bytes`, {
      at,
      length: n,
    });
}

function busError(pa: number, length: number): IommuError {
  return new IommuError("EFAULT", `[${hex(pa)}, +${hex(length)}) is not all RAM (bus error)`, { pa, length });
}
