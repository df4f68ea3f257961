/**
 * Fault delivery: every DMA fault goes to the issuing device's queue (and to the
 * fault-queue object of the HWPT that served it, when it has one: iommufd's
 * IOMMU_FAULT_QUEUE_ALLOC + IOMMU_HWPT_FAULT_ID_VALID). A record carries what
 * `struct iommu_hwpt_pgfault` carries (device, PASID, address, access) plus the
 * generic class and the vendor's own record.
 */

import type { AccessName, FaultClass, VendorFault } from "@iommu-kit/core";
import type { HostObject } from "./context.ts";

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
