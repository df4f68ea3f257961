/**
 * The DMA engine: a device reads or writes bytes at an IOVA. Every page of the range
 * is translated first (through the backend's caches and tables); only when all of
 * them succeed do the bytes move, so a DMA is all or nothing. Contiguous physical
 * runs are merged, and each translation is reused up to the end of the region it
 * covers (`Translation.sizeLg2`), so a 4 KiB DMA through a warm IOTLB costs one
 * lookup and one copy. Allocation-free on success.
 */

import type { Backend, Fault, PhysicalMemory } from "@iommu-kit/core";
import { createTranslation, hex, IommuError } from "@iommu-kit/core";

/** Reusable translation state of DMAs (one per host). */
export class DmaEngine {
  readonly #out = createTranslation();
  #pas = new Float64Array(16);
  #lens = new Float64Array(16);
  #count = 0;
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
    const out = this.#out;
    const end = iova + length;
    let at = iova;
    this.#count = 0;
    while (at < end) {
      if (!backend.translate(rid, pasid, at, access, out)) {
        this.fault = out.fault;
        this.faultIova = at;
        return false;
      }
      const size = 2 ** out.sizeLg2;
      const boundary = at - (at % size) + size;
      const n = Math.min(boundary, end) - at;
      const c = this.#count;
      if (c > 0 && this.#pas[c - 1]! + this.#lens[c - 1]! === out.pa)
        this.#lens[c - 1] = this.#lens[c - 1]! + n;
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

  /** Copies the translated range into `dst` (its length is the range's). All or nothing. */
  read(memory: PhysicalMemory, dst: Uint8Array): void {
    if (this.#count === 1) {
      memory.readInto(this.#pas[0]!, dst);
      return;
    }
    this.#checkRam(memory);
    let off = 0;
    for (let i = 0; i < this.#count; i++) {
      const n = this.#lens[i]!;
      memory.readInto(this.#pas[i]!, dst.subarray(off, off + n));
      off += n;
    }
  }

  /** Copies `src` into the translated range. All or nothing. */
  write(memory: PhysicalMemory, src: Uint8Array): void {
    if (this.#count === 1) {
      memory.write(this.#pas[0]!, src);
      return;
    }
    this.#checkRam(memory);
    let off = 0;
    for (let i = 0; i < this.#count; i++) {
      const n = this.#lens[i]!;
      memory.write(this.#pas[i]!, src.subarray(off, off + n));
      off += n;
    }
  }
}
