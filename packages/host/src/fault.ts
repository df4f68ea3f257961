/**
 * Faults, two ways, as Linux 6.15 splits them:
 *
 * - the host-wide log (`Host.faultsRead`): every non-recoverable fault of a DMA (the
 *   host driver's event log; a nested translation's fault that reached a vEVENTQ is
 *   the guest's, not the host's: arm_smmu_evtq_thread dumps an event only when
 *   arm_smmu_handle_event could not hand it on), and page requests no FAULT object
 *   took (answered Invalid at once);
 * - FAULT objects (IOMMU_FAULT_QUEUE_ALLOC, IOMMUFD_OBJ_FAULT): only recoverable I/O page
 *   faults, the page requests (`Fault.pageRequest`) of a HWPT allocated with
 *   IOMMU_HWPT_FAULT_ID_VALID. iommu_report_device_fault takes nothing else since the
 *   unrecoverable fault reporting left the IOMMU core (Linux 6.7, "iommu: Remove
 *   unrecoverable fault data"); iommufd_fault_iopf_handler queues the group,
 *   iommufd_fault_fops_read hands it out as `struct iommu_hwpt_pgfault` with a cookie,
 *   and iommufd_fault_fops_write (`iommu_hwpt_page_response`) answers it
 *   (iopf_group_response -> the driver's page_response: SMMUv3 CMD_RESUME, VT-d page
 *   group response descriptor). The DMA that raised it is held meanwhile and retried
 *   (success) or failed (invalid) by the answer.
 *
 * Model choices: each backend raises whole groups (SMMUv3 stalls are always last,
 * the VT-d model sets LPIG), so a group is one request; the cookie is assigned when the
 * group is queued (the lowest free from 1, as xa_alloc on an XA_FLAGS_ALLOC1 array; the
 * kernel assigns it at read time) so the held DMA can name it; it is answerable only
 * after it was read, as in the kernel.
 */

import type { AccessName, Backend, Fault, FaultClass, PageRequest, VendorFault } from "@iommu-kit/core";
import { Access, IommuError, NO_PASID } from "@iommu-kit/core";
import type { DeviceRef, HostCtx, HostObject } from "./context.ts";

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

/** IOMMU_PGFAULT_FLAGS_PASID_VALID. */
export const PGFAULT_FLAGS_PASID_VALID = 1;
/** IOMMU_PGFAULT_FLAGS_LAST_PAGE. */
export const PGFAULT_FLAGS_LAST_PAGE = 2;
/** IOMMU_PGFAULT_PERM_PRIV (READ 1, WRITE 2, EXEC 4 are core's Perm bits). */
export const PGFAULT_PERM_PRIV = 8;

/** One page request as read from a FAULT object (struct iommu_hwpt_pgfault). */
export interface PageFaultRecord {
  /** IOMMU_PGFAULT_FLAGS_PASID_VALID (1) | IOMMU_PGFAULT_FLAGS_LAST_PAGE (2). */
  readonly flags: number;
  /** dev_id: the host id of the device. */
  readonly devId: number;
  /** The PASID (0 without PASID_VALID). */
  readonly pasid: number;
  /** Page request group index (SMMUv3 STAG, VT-d PRGI). */
  readonly grpid: number;
  /** IOMMU_PGFAULT_PERM_READ 1 | WRITE 2 | EXEC 4 | PRIV 8. */
  readonly perm: number;
  /** The page-aligned faulting address. */
  readonly addr: number;
  /** Always 0 (iommufd_compose_fault_message). */
  readonly length: number;
  /** Names the group in `Host.faultRespond`. */
  readonly cookie: number;
}

/** iommu_hwpt_page_response. */
export interface PageResponse {
  readonly cookie: number;
  /** IOMMUFD_PAGE_RESP_SUCCESS / IOMMUFD_PAGE_RESP_INVALID. */
  readonly code: "success" | "invalid";
}

/** `Host.describe` of a fault queue. */
export interface FaultQueueInfo {
  readonly id: number;
  readonly kind: "fault";
  /** Groups queued and not read yet (fault->common.deliver). */
  readonly pending: number;
  /** Cookies of groups read and not answered yet (fault->response), ascending. */
  readonly outstanding: readonly number[];
}

/** A DMA held on a page request, re-issued by the answer (the device's retry). */
export interface HeldDma {
  readonly device: number;
  readonly pasid: number | null;
  readonly iova: number;
  /** Core Access flags. */
  readonly access: number;
  /** Bytes to write (writes) or null. */
  readonly data: Uint8Array | null;
  /** Bytes to read (reads). */
  readonly length: number;
}

/** An iopf_group: one page request, who raised it and the DMA waiting on it. */
export interface PageGroup {
  readonly cookie: number;
  /** The device that issued the DMA (dev_id of the record). */
  readonly device: DeviceRef;
  /** The device whose attach point holds `hwpt` (an mdev when its parent issued for its PASID). */
  readonly owner: DeviceRef;
  /** The backend holding the request (the one the DMA went out through). */
  readonly backend: Backend;
  /** The HWPT that served the request (group->attach_handle->domain->iommufd_hwpt). */
  readonly hwpt: HostObject;
  readonly request: PageRequest;
  /** The fault the DMA saw. */
  readonly record: FaultRecord;
  readonly held: HeldDma;
}

/** A numbered fault queue object (IOMMU_FAULT_QUEUE_ALLOC; struct iommufd_fault). */
export class FaultQueueObject implements HostObject {
  readonly kind = "fault" as const;
  readonly id: number;
  /** Queued, not read. */
  readonly deliver: PageGroup[] = [];
  /** Read, not answered: cookie -> group. */
  readonly response: Map<number, PageGroup> = new Map();

  constructor(id: number) {
    this.id = id;
  }

  /** The lowest cookie from 1 that no group holds. */
  nextCookie(): number {
    const used = new Set<number>(this.response.keys());
    for (const g of this.deliver) used.add(g.cookie);
    let c = 1;
    while (used.has(c)) c++;
    return c;
  }

  /** Every group, queued or outstanding. */
  groups(): PageGroup[] {
    return [...this.deliver, ...this.response.values()];
  }
}

/** IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc). */
export function faultQueueAlloc(ctx: HostCtx): number {
  ctx.objects.reserve("fault");
  return ctx.objects.insert(new FaultQueueObject(ctx.objects.nextId)).id;
}

/** The fault queue `id`; ENOENT otherwise (iommufd_get_fault). */
export function getFaultQueue(ctx: HostCtx, id: number): FaultQueueObject {
  return ctx.objects.get(id, "fault") as FaultQueueObject;
}

/** struct iommu_hwpt_pgfault of a group (iommufd_compose_fault_message). */
export function pgfaultOf(g: PageGroup): PageFaultRecord {
  const r = g.request;
  const pasidValid = r.pasid !== NO_PASID;
  return {
    flags: (pasidValid ? PGFAULT_FLAGS_PASID_VALID : 0) | (r.last ? PGFAULT_FLAGS_LAST_PAGE : 0),
    devId: g.device.id,
    pasid: pasidValid ? r.pasid : 0,
    grpid: r.grpid,
    perm: r.perm | (r.priv ? PGFAULT_PERM_PRIV : 0),
    addr: r.addr,
    length: 0,
    cookie: g.cookie,
  };
}

/**
 * read() on the fault fd (iommufd_fault_fops_read): up to `max` groups (all when
 * omitted; 0 reads nothing, as a zero-byte read; EINVAL for a count that is not a
 * non-negative integer, where the kernel's -ESPIPE refuses a size that is no multiple of
 * the record), oldest first; each moves to the response table, answerable by its cookie.
 * ENOENT for an id that is no fault queue.
 */
export function faultQueueRead(ctx: HostCtx, id: number, max?: number): PageFaultRecord[] {
  const fq = getFaultQueue(ctx, id);
  if (max !== undefined && (!Number.isInteger(max) || max < 0))
    throw new IommuError("EINVAL", `read count ${max} is not a non-negative integer`);
  const groups = fq.deliver.splice(0, Math.min(max ?? fq.deliver.length, fq.deliver.length));
  for (const g of groups) fq.response.set(g.cookie, g);
  return groups.map(pgfaultOf);
}

/**
 * write() on the fault fd (iommufd_fault_fops_write): a code other than success or
 * invalid is EINVAL; a cookie naming no group that was read is EINVAL
 * (xa_erase(&fault->response, cookie) finds nothing). The group is answered through the
 * backend (iopf_group_response) and forgotten; returns the group so the caller can
 * retry or fail the DMA held on it.
 */
export function faultRespondGroup(ctx: HostCtx, id: number, resp: PageResponse): PageGroup {
  const fq = getFaultQueue(ctx, id);
  const r = resp as Partial<PageResponse> | null;
  if (typeof r !== "object" || r === null)
    throw new IommuError("EINVAL", "a page response must be an object");
  if (r.code !== "success" && r.code !== "invalid")
    throw new IommuError("EINVAL", `page response code ${JSON.stringify(r.code)} is not success or invalid`);
  const g = typeof r.cookie === "number" ? fq.response.get(r.cookie) : undefined;
  if (g === undefined)
    throw new IommuError(
      "EINVAL",
      `no page request read with cookie ${String(r.cookie)} on fault queue ${id}`,
      {
        cookie: String(r.cookie),
      },
    );
  g.backend.pageResponse!(g.request, r.code);
  fq.response.delete(g.cookie);
  return g;
}

/**
 * Answers Invalid, and forgets, every group of `fq` that `match` selects: iommufd_auto_response_faults
 * (a fault-capable HWPT leaves an attach point) and iommufd_fault_destroy. A request the
 * backend no longer holds (its device went away) is skipped. Returns the groups.
 */
export function autoRespond(fq: FaultQueueObject, match: (g: PageGroup) => boolean): PageGroup[] {
  const out: PageGroup[] = [];
  for (let i = 0; i < fq.deliver.length; ) {
    const g = fq.deliver[i]!;
    if (match(g)) {
      fq.deliver.splice(i, 1);
      out.push(g);
    } else i++;
  }
  for (const [c, g] of [...fq.response]) {
    if (!match(g)) continue;
    fq.response.delete(c);
    out.push(g);
  }
  for (const g of out) {
    try {
      g.backend.pageResponse?.(g.request, "invalid");
    } catch {
      // iopf_group_response has no error either: the request is gone already.
    }
  }
  return out;
}

/** The plain description of a fault queue object. */
export function faultQueueInfo(f: FaultQueueObject): FaultQueueInfo {
  return {
    id: f.id,
    kind: f.kind,
    pending: f.deliver.length,
    outstanding: [...f.response.keys()].sort((a, b) => a - b),
  };
}
