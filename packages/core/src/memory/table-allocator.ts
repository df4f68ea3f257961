/**
 * The table allocator: naturally aligned power-of-two blocks (4 KiB up to the region
 * size), zeroed, carved by a buddy system out of a region of physical memory reserved
 * for tables, so user mappings never collide with them. Multi-page blocks serve 64K
 * granule tables, concatenated stage-2 start tables and large stream / CD tables.
 * Every block in use is accounted, so tests can prove an operation leaked nothing.
 */

import { hex, IommuError } from "../errors.ts";
import type { PhysicalMemory } from "./physical-memory.ts";
import { PAGE_LG2 } from "./physical-memory.ts";

/** Blocks and bytes in use. */
export interface AllocatorStats {
  readonly blocks: number;
  readonly bytes: number;
}

/** A buddy allocator of table blocks over a reserved region. */
export class TableAllocator {
  readonly memory: PhysicalMemory;
  readonly base: number;
  readonly size: number;
  /**
   * Free blocks per order (log2 size), as stacks: the block freed last is reused first.
   * Buddies are merged lazily (when no block is big enough), so a table allocated and
   * freed over and over costs a push and a pop, not a split and merge down the orders.
   */
  readonly #free: number[][] = [];
  /** Allocated block address -> order. */
  readonly #used = new Map<number, number>();
  #bytes = 0;

  /**
   * Reserves [base, base + size) of `memory` (page-aligned, all RAM). The region is cut
   * into the largest naturally aligned blocks that fit.
   */
  constructor(memory: PhysicalMemory, base: number, size: number) {
    if (base % 2 ** PAGE_LG2 !== 0 || size % 2 ** PAGE_LG2 !== 0 || size <= 0) {
      throw new IommuError("EINVAL", `table region ${hex(base)}+${hex(size)} is not page-aligned`, {
        base,
        size,
      });
    }
    if (!memory.isRamRange(base, size)) {
      throw new IommuError("EINVAL", `table region ${hex(base)}+${hex(size)} is not all RAM`, { base, size });
    }
    this.memory = memory;
    this.base = base;
    this.size = size;
    for (let order = 0; order <= 52; order++) this.#free.push([]);
    let at = base;
    const end = base + size;
    while (at < end) {
      let order = PAGE_LG2;
      while (at % 2 ** (order + 1) === 0 && at + 2 ** (order + 1) <= end) order++;
      this.#free[order]!.push(at);
      at += 2 ** order;
    }
  }

  /** The order of the smallest free block of at least `order`, or -1. */
  #fit(order: number): number {
    for (let o = order; o <= 52; o++) if (this.#free[o]!.length > 0) return o;
    return -1;
  }

  /** Merges every pair of free buddies, bottom up (the deferred half of `free`). */
  #coalesce(): void {
    for (let order = PAGE_LG2; order < 52; order++) {
      const list = this.#free[order]!;
      if (list.length < 2) continue;
      const size = 2 ** order;
      list.sort((a, b) => a - b);
      const keep: number[] = [];
      for (let i = 0; i < list.length; i++) {
        const b = list[i]!;
        if (b % (size * 2) === 0 && list[i + 1] === b + size && b + 2 * size <= this.base + this.size) {
          this.#free[order + 1]!.push(b);
          i++;
        } else keep.push(b);
      }
      this.#free[order] = keep;
    }
  }

  /** True when [pa, pa + length) overlaps the reserved region. */
  overlaps(pa: number, length: number): boolean {
    return pa < this.base + this.size && pa + length > this.base;
  }

  /**
   * Allocates a zeroed block of 2^sizeLg2 bytes, aligned to its size. An allocation
   * point for failure injection. Throws ENOMEM when no block is free, EINVAL for a
   * size below a page.
   */
  alloc(sizeLg2: number, site = "table"): number {
    if (!Number.isInteger(sizeLg2) || sizeLg2 < PAGE_LG2 || sizeLg2 > 52) {
      throw new IommuError("EINVAL", `table block of 2^${sizeLg2} bytes is not a whole page`, { sizeLg2 });
    }
    this.memory.failNth.point(site);
    let order = this.#fit(sizeLg2);
    if (order < 0) {
      this.#coalesce();
      order = this.#fit(sizeLg2);
    }
    if (order < 0) {
      throw new IommuError("ENOMEM", `no free table block of 2^${sizeLg2} bytes`, { sizeLg2 });
    }
    const block = this.#free[order]!.pop()!;
    while (order > sizeLg2) {
      order--;
      this.#free[order]!.push(block + 2 ** order);
    }
    this.#used.set(block, sizeLg2);
    this.#bytes += 2 ** sizeLg2;
    this.memory.fill(block, 2 ** sizeLg2, 0);
    return block;
  }

  /** Frees a block returned by `alloc`. EINVAL for anything else (double free included). */
  free(pa: number): void {
    const order = this.#used.get(pa);
    if (order === undefined)
      throw new IommuError("EINVAL", `${hex(pa)} is not an allocated table block`, { pa });
    this.#used.delete(pa);
    this.#bytes -= 2 ** order;
    this.memory.fill(pa, 2 ** order, 0);
    this.#free[order]!.push(pa);
  }

  /** log2 size of the allocated block starting at `pa`, or undefined. */
  blockSizeLg2(pa: number): number | undefined {
    return this.#used.get(pa);
  }

  /** Blocks and bytes in use. */
  stats(): AllocatorStats {
    return { blocks: this.#used.size, bytes: this.#bytes };
  }

  /** Allocated blocks as [address, sizeLg2], ascending. */
  blocks(): Array<readonly [number, number]> {
    return [...this.#used.entries()].sort((a, b) => a[0] - b[0]);
  }
}
