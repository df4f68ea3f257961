/**
 * The DMA engine: a device reads or writes bytes at an IOVA. Every page of the range
 * is translated first (through the backend's caches and tables); only when all of
 * them succeed do the bytes move, so a DMA is all or nothing. Contiguous physical
 * runs are merged, and each translation is reused up to the end of the region it
 * covers (`Translation.sizeLg2`), so a 4 KiB DMA through a warm IOTLB costs one
 * lookup and one copy. The bytes move with `TypedArray.set` over whole runs: one
 * PhysicalMemory.readRange / writeRange per physically contiguous segment, one copy
 * where its pages sit one after another in a memory slab, none per byte. Host.dmaInto
 * copies a DMA inside one page itself, allocation-free.
 */

import type { Backend, Fault, PhysicalMemory, Translation } from "@iommu-kit/core";
import { createTranslation, hex, IommuError } from "@iommu-kit/core";

const PAGE = 4096;
/** 2^n for n < 64 (Math.pow is a call on the hot path). */
const POW2: Float64Array = Float64Array.from({ length: 64 }, (_, n) => 2 ** n);

/** Reusable translation state of DMAs (one per host). */
export class DmaEngine {
  /** The translation of the range's first page (translate's, or the caller's before translateRest). */
  readonly out: Translation = createTranslation();
  #pas = new Float64Array(16);
  #lens = new Float64Array(16);
  #count = 0;
  /** The byte view of the last page copied (the page's words object is its key: pages are stable objects). */
  #viewOf: Uint32Array | null = null;
  #view: Uint8Array = new Uint8Array(0);
  /** The fault of the last failed {@link DmaEngine.translate}. */
  fault: Fault | null = null;
  /** The address that faulted. */
  faultIova = 0;

  /** Physical address of the first byte of the last translated range. */
  get firstPa(): number {
    return this.#pas[0]!;
  }

  /** Number of physically contiguous segments of the last translated range. */
  get segments(): number {
    return this.#count;
  }

  /**
   * Translates every page of [iova, iova + length) for `access` (core Access flags).
   * True when all succeed; false with `fault` / `faultIova` set at the first failure.
   */
  translate(
    backend: Backend,
    rid: number,
    pasid: number,
    iova: number,
    length: number,
    access: number,
  ): boolean {
    if (!backend.translate(rid, pasid, iova, access, this.out)) return this.failed(iova);
    return this.translateRest(backend, rid, pasid, iova, length, access);
  }

  /** Records that the caller's translation of the first page, `iova`, into `out` failed. */
  failed(iova: number): false {
    this.#count = 0;
    this.fault = this.out.fault;
    this.faultIova = iova;
    return false;
  }

  /**
   * translate() past its first page, which the caller translated into `out` (and it
   * succeeded): the rest of [iova, iova + length).
   */
  translateRest(
    backend: Backend,
    rid: number,
    pasid: number,
    iova: number,
    length: number,
    access: number,
  ): boolean {
    const out = this.out;
    const end = iova + length;
    const lg2 = out.sizeLg2;
    // The region's end. Below 2^31 its offset is in the IOVA's low 32 bits (ToInt32 keeps
    // them for an integer below 2^53); past that by floor, not %: a double % is a runtime
    // call in V8.
    let at: number;
    if (lg2 < 31) {
      const size = 1 << lg2;
      at = iova - ((iova | 0) & (size - 1)) + size;
    } else {
      const size = POW2[lg2]!;
      at = Math.floor(iova / size) * size + size;
    }
    this.#pas[0] = out.pa;
    this.#count = 1;
    // The common case: the first translation's region covers the whole range.
    if (at >= end) {
      this.#lens[0] = length;
      return true;
    }
    this.#lens[0] = at - iova;
    while (at < end) {
      if (!backend.translate(rid, pasid, at, access, out)) {
        this.fault = out.fault;
        this.faultIova = at;
        return false;
      }
      const s = POW2[out.sizeLg2]!;
      const boundary = Math.floor(at / s) * s + s;
      const n = Math.min(boundary, end) - at;
      const c = this.#count;
      if (this.#pas[c - 1]! + this.#lens[c - 1]! === out.pa) this.#lens[c - 1] = this.#lens[c - 1]! + n;
      else this.#push(out.pa, n);
      at += n;
    }
    return true;
  }

  #push(pa: number, n: number): void {
    if (this.#count === this.#pas.length) {
      const pas = new Float64Array(this.#count * 2);
      const lens = new Float64Array(this.#count * 2);
      pas.set(this.#pas);
      lens.set(this.#lens);
      this.#pas = pas;
      this.#lens = lens;
    }
    this.#pas[this.#count] = pa;
    this.#lens[this.#count++] = n;
  }

  /** Checks that every segment is RAM before anything moves (EFAULT otherwise). */
  #checkRam(memory: PhysicalMemory): void {
    for (let i = 0; i < this.#count; i++) {
      const pa = this.#pas[i]!;
      const n = this.#lens[i]!;
      if (!memory.isRamRange(pa, n)) {
        throw new IommuError("EFAULT", `DMA reaches [${hex(pa)}, +${hex(n)}), which is not RAM`, {
          pa,
          length: n,
        });
      }
    }
  }

  /** The bytes of a page's words (cached for the last page: no view allocated per DMA). */
  bytes(page: Uint32Array): Uint8Array {
    return page === this.#viewOf ? this.#view : this.#bytes(page);
  }

  #bytes(page: Uint32Array): Uint8Array {
    if (page !== this.#viewOf) {
      this.#viewOf = page;
      this.#view = new Uint8Array(page.buffer, page.byteOffset, PAGE);
    }
    return this.#view;
  }

  /** Copies the translated range into `dst` (its length is the range's). All or nothing. */
  read(memory: PhysicalMemory, dst: Uint8Array): void {
    this.#checkRam(memory);
    let done = 0;
    for (let i = 0; i < this.#count; i++) {
      const n = this.#lens[i]!;
      memory.readRange(this.#pas[i]!, dst, done, n);
      done += n;
    }
  }

  /** Copies `src` into the translated range. All or nothing. */
  write(memory: PhysicalMemory, src: Uint8Array): void {
    this.#checkRam(memory);
    let done = 0;
    for (let i = 0; i < this.#count; i++) {
      const n = this.#lens[i]!;
      memory.writeRange(this.#pas[i]!, src, done, n);
      done += n;
    }
  }
}
