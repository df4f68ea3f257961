/**
 * The id -> object table, as iommufd's `struct iommufd_ctx` xarray
 * (drivers/iommu/iommufd/main.c): every object the host hands out (device, IOAS,
 * HWPT, access, fault queue, vIOMMU, vDEVICE, vEVENTQ) has a number, ids start at 1 and are never reused, and
 * an object that something still refers to cannot be destroyed (EBUSY).
 *
 * Atomicity: an id is consumed only when an object is committed with
 * {@link ObjectTable.insert}; every allocation point of an operation comes before
 * that, so a failed operation leaves `nextId` unchanged.
 */

import type { Backend, FailNth, IovaRange, PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";

/** Object kinds, after enum iommufd_object_type (include/linux/iommufd.h). */
export type ObjectKind =
  | "device"
  | "ioas"
  | "hwpt-paging"
  | "hwpt-nested"
  | "access"
  | "fault"
  | "viommu"
  | "vdevice"
  | "veventq";

/** Anything the table holds. */
export interface HostObject {
  readonly id: number;
  readonly kind: ObjectKind;
}

/**
 * What the lower object rules need of a device (device.ts's `HostDevice` has it): the
 * backend and RID to call, and names for messages. Lets hw-pagetable.ts and access.ts
 * take a device without importing device.ts (which imports them).
 */
export interface DeviceRef extends HostObject {
  /** The IOMMU instance name. */
  readonly iommu: string;
  readonly backend: Backend;
  readonly rid: number;
}

/**
 * What every object rule shares, as iommufd's `struct iommufd_ctx` plus the machine:
 * the object table, the physical memory and table region user pages are checked
 * against, and the reserved regions of the devices whose RID reads an IOAS (answered
 * by device.ts, so the IOAS layer knows no devices; iommufd keeps them in the
 * iopt's reserved_itree, iopt_table_enforce_dev_resv_regions).
 */
export interface HostCtx {
  readonly objects: ObjectTable;
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  /** Reserved regions of every device whose RID attach reads IOAS `ioasId` (unmerged). */
  ridRegions(ioasId: number): IovaRange[];
  /** Events the vEVENTQs received (counted by their sinks: a DMA fault that reached one is the guest's). */
  readonly vevents: { reported: number };
}

/** Numbered objects with iommufd's lookup rules (unknown id or wrong kind: ENOENT). */
export class ObjectTable {
  readonly #objects = new Map<number, HostObject>();
  readonly #failNth: FailNth;
  #nextId = 1;
  /** find()'s last answer (id -1: none). */
  #lastId = -1;
  #lastObj: HostObject | undefined = undefined;

  constructor(failNth: FailNth) {
    this.#failNth = failNth;
  }

  /** The id the next committed object gets. */
  get nextId(): number {
    return this.#nextId;
  }

  /** An allocation point for object creation (iommufd_object_alloc): call before any other work. */
  reserve(kind: ObjectKind): void {
    this.#failNth.point(`object ${kind}`);
  }

  /** Commits an object built with the next id. Never fails. */
  insert<T extends HostObject>(obj: T): T {
    if (obj.id !== this.#nextId) throw new Error(`object id ${obj.id} is not the next id ${this.#nextId}`);
    this.#objects.set(obj.id, obj);
    this.#nextId++;
    return obj;
  }

  /** The object `id` of one of `kinds` (any kind when omitted); ENOENT otherwise, like iommufd_get_object. */
  get(id: number, ...kinds: ObjectKind[]): HostObject {
    const o = this.#objects.get(id);
    if (o === undefined || (kinds.length > 0 && !kinds.includes(o.kind))) {
      const want = kinds.length > 0 ? kinds.join(" or ") : "object";
      throw new IommuError("ENOENT", `no ${want} with id ${id}`, { id });
    }
    return o;
  }

  /** The object `id`, or undefined. */
  find(id: number): HostObject | undefined {
    // The last object found answers again without a Map lookup (a device issuing DMA
    // in a loop); ids are never reused, and remove() forgets it.
    if (id === this.#lastId) return this.#lastObj;
    const o = this.#objects.get(id);
    if (o !== undefined) {
      this.#lastId = id;
      this.#lastObj = o;
    }
    return o;
  }

  /** Forgets an object (the caller checked it is unused). */
  remove(id: number): void {
    this.#objects.delete(id);
    if (id === this.#lastId) {
      this.#lastId = -1;
      this.#lastObj = undefined;
    }
  }

  /** Every object, by ascending id. */
  values(): HostObject[] {
    return [...this.#objects.values()].sort((a, b) => a.id - b.id);
  }
}
