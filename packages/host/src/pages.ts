/**
 * The physical pages behind IOAS areas: iommufd's `struct iopt_pages`
 * (drivers/iommu/iommufd/pages.c) pins user memory once and shares it between every
 * area that maps it (IOMMU_IOAS_COPY). Here the "user memory" is a range of physical
 * RAM: it must be RAM (else EFAULT, as a bad user pointer) and must stay clear of the
 * region reserved for tables (EINVAL), so no mapping can ever reach a page table.
 */

import type { PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { hex, IommuError } from "@iommu-kit/core";

/** A physical range shared by the areas that map it. */
export interface Pages {
  /** Physical address of the first byte. */
  readonly pa: number;
  readonly length: number;
  /** Mapped writable at creation (IOMMU_IOAS_MAP_WRITEABLE); copies may not add write. */
  readonly writable: boolean;
  /** Areas referring to these pages. */
  users: number;
}

/**
 * Checks that [pa, pa + length) may back a user mapping: integers, RAM (EFAULT) and
 * outside the table region (EINVAL). Changes nothing.
 */
export function checkUserRange(
  memory: PhysicalMemory,
  tables: TableAllocator,
  pa: number,
  length: number,
): void {
  if (!Number.isSafeInteger(pa) || pa < 0 || !Number.isSafeInteger(length) || length <= 0) {
    throw new IommuError("EINVAL", `bad physical range ${pa}+${length}`, { pa, length });
  }
  if (tables.overlaps(pa, length)) {
    throw new IommuError("EINVAL", `[${hex(pa)}, +${hex(length)}) overlaps the table region`, { pa, length });
  }
  if (!memory.isRamRange(pa, length)) {
    throw new IommuError("EFAULT", `[${hex(pa)}, +${hex(length)}) is not all RAM`, { pa, length });
  }
}

/** New pages over a checked range, with no users yet. */
export function createPages(pa: number, length: number, writable: boolean): Pages {
  return { pa, length, writable, users: 0 };
}
