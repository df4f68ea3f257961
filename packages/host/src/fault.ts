/**
 * Fault delivery: every DMA fault goes to the issuing device's queue (and to the
 * fault-queue object of the HWPT that served it, when it has one: iommufd's
 * IOMMU_FAULT_QUEUE_ALLOC + IOMMU_HWPT_FAULT_ID_VALID). A record carries what
 * `struct iommu_hwpt_pgfault` carries (device, PASID, address, access) plus the
 * generic class and the vendor's own record.
 */

import type { AccessName, Fault, FaultClass, VendorFault } from "@iommu-kit/core";
import { Access, NO_PASID } from "@iommu-kit/core";
import type { HostCtx, HostObject } from "./context.ts";

/** One delivered fault. */
export interface FaultRecord {
  /** Host id of the device that issued the DMA. */
  readonly device: number;
  /** PASID of the request, null without one. */
  readonly pasid: number | null;
  /** The faulting address: the first address of the request's range that failed to translate. */
  readonly iova: number;
  readonly access: AccessName;
  readonly priv: boolean;
  readonly class: FaultClass;
  /** False when the configuration suppresses the record (the request still failed). */
  readonly recorded: boolean;
  readonly vendor: VendorFault;
}

/** `Host.describe` of a fault queue. */
export interface FaultQueueInfo {
  readonly id: number;
  readonly kind: "fault";
  readonly pending: number;
}

/**
 * The record of a failed DMA of device `device` (iommufd_fault_iopf_handler filling
 * struct iommu_hwpt_pgfault): `pasid` NO_PASID for none, `access` core Access flags.
 */
export function faultRecord(
  device: number,
  pasid: number,
  iova: number,
  access: number,
  f: Fault,
): FaultRecord {
  return {
    device,
    pasid: pasid === NO_PASID ? null : pasid,
    iova,
    access: access & Access.WRITE ? "write" : access & Access.EXEC ? "exec" : "read",
    priv: (access & Access.PRIV) !== 0,
    class: f.class,
    recorded: f.recorded,
    vendor: f.vendor,
  };
}

/** Records kept per queue before the oldest are dropped (and counted as lost). */
export const FAULT_QUEUE_DEPTH = 4096;

/** A bounded FIFO of fault records. */
export class FaultQueue {
  readonly #records: FaultRecord[] = [];
  /** Records dropped because the queue was full (IOMMU_VEVENTQ_FLAG_LOST_EVENTS in spirit). */
  lost = 0;

  /** Appends a record, dropping the oldest when full. */
  push(r: FaultRecord): void {
    if (this.#records.length >= FAULT_QUEUE_DEPTH) {
      this.#records.shift();
      this.lost++;
    }
    this.#records.push(r);
  }

  /** Records of `device` (all when omitted), removed from the queue, oldest first. */
  drain(device?: number): FaultRecord[] {
    if (device === undefined) return this.#records.splice(0);
    const out: FaultRecord[] = [];
    let keep = 0;
    for (const r of this.#records) {
      if (r.device === device) out.push(r);
      else this.#records[keep++] = r;
    }
    this.#records.length = keep;
    return out;
  }

  /** Pending records without removing them. */
  peek(): readonly FaultRecord[] {
    return this.#records;
  }

  get size(): number {
    return this.#records.length;
  }
}

/** A numbered fault queue object (IOMMU_FAULT_QUEUE_ALLOC). */
export class FaultQueueObject implements HostObject {
  readonly kind = "fault" as const;
  readonly id: number;
  readonly queue: FaultQueue = new FaultQueue();

  constructor(id: number) {
    this.id = id;
  }
}

/** IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc). */
export function faultQueueAlloc(ctx: HostCtx): number {
  ctx.objects.reserve("fault");
  return ctx.objects.insert(new FaultQueueObject(ctx.objects.nextId)).id;
}

/** Reads and clears fault queue object `id` (read() on the fault fd, iommufd_fault_fops_read); ENOENT otherwise. */
export function faultQueueRead(ctx: HostCtx, id: number): FaultRecord[] {
  return (ctx.objects.get(id, "fault") as FaultQueueObject).queue.drain();
}

/** The plain description of a fault queue object. */
export function faultQueueInfo(f: FaultQueueObject): FaultQueueInfo {
  return { id: f.id, kind: f.kind, pending: f.queue.size };
}
