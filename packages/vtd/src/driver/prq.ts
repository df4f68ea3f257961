/**
 * The driver half of page requests, as Linux 6.15's drivers/iommu/intel/prq.c does it
 * (line numbers as read at torvalds/linux 1a7c3068): intel_iommu_enable_prq (~L288)
 * allocates the queue (PRQ_ORDER 4: 16 pages, 2048 descriptors) and writes PQH = PQT =
 * 0 and PQA = queue | PRQ_ORDER, and the page request interrupt is unmasked (PECTL = 0,
 * as dmar.c dmar_msi_unmask does when request_threaded_irq starts it); Linux calls it
 * at boot for a unit with PASID support and ECAP.PRS (iommu.c init_dmars). The
 * interrupt runs prq_event_thread (~L198): clear PRS.PPR first, walk the descriptors
 * from PQH to PQT, refuse bad ones with handle_bad_prq_event (~L137: an Invalid
 * response when LPIG), drop stop markers, report the rest (intel_prq_report ~L176 ->
 * iommu_report_device_fault: here `pending`), write PQH = PQT, and clear PRS.PRO once
 * the queue is empty. intel_iommu_page_response (~L373) answers a group with the page
 * group response descriptor (QI_PGRP_* of iommu.h: response code, Requester-ID, PASID,
 * PASID present, PRGI) through the invalidation queue and waits (qi_submit_sync). It
 * does not set qw1 bit 2 (LPIG): Reserved since spec rev 4.0 (Linux removed
 * QI_PGRP_LPIG in 2025; 6.15 still set it, and hardware ignores it). Spec sections:
 * Intel VT-d rev 4.x 7.5, 6.5.2 (page group response descriptor). No paging levels.
 */

import type { PageRequest, PageResponseCode, PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { IommuError, NO_PASID, Perm } from "@iommu-kit/core";
import type { InvDescriptor } from "../format/inv-desc.ts";
import { decodePageRequest, PAGE_REQUEST_BYTES, PgrpResponse } from "../format/page-request.ts";
import { Prs, Reg } from "../format/registers.ts";
import type { VtdHardware } from "../hardware.ts";
import { readWords } from "../internal/words.ts";
import type { DriverQueue } from "./queue.ts";

/** Linux PRQ_ORDER: the queue is 2^4 pages. */
export const PRQ_ORDER = 4;
const PRQ_SIZE = 4096 << PRQ_ORDER;
/** Linux PRQ_RING_MASK: byte offsets of whole descriptors inside the queue. */
const PRQ_RING_MASK = PRQ_SIZE - 0x20;
const PRGIS = 512;
/**
 * x86-64 __VIRTUAL_MASK_SHIFT with 4-level paging: is_canonical_address accepts
 * addresses whose bits 63:47 are all equal (the model's host does not use LA57).
 */
const VIRTUAL_MASK_SHIFT = 47n;
/** Refused descriptors kept in `badLog` (newest last). */
const BAD_LOG_MAX = 256;

/** A page request the driver refused (handle_bad_prq_event), with Linux's reason. */
export interface BadPageRequest {
  readonly words: readonly [bigint, bigint];
  readonly reason: string;
}

/** The page request queue of one unit as the driver runs it. */
export class DriverPrq {
  readonly hw: VtdHardware;
  readonly memory: PhysicalMemory;
  readonly queue: DriverQueue;
  /** Physical address of the queue; -1 when the unit has no ECAP.PRS (with DT). */
  readonly base: number;
  /** Reported page requests waiting for pageResponse, by requester id * 512 + group index. */
  readonly pending: Map<number, PageRequest> = new Map();
  /** Descriptors refused by the handler (newest last, at most 256). */
  readonly badLog: BadPageRequest[] = [];
  readonly #hasDevice: (rid: number) => boolean;

  constructor(
    hw: VtdHardware,
    memory: PhysicalMemory,
    tables: TableAllocator,
    queue: DriverQueue,
    hasDevice: (rid: number) => boolean,
  ) {
    this.hw = hw;
    this.memory = memory;
    this.queue = queue;
    this.#hasDevice = hasDevice;
    if (!hw.prq.present) {
      this.base = -1;
      return;
    }
    this.base = tables.alloc(12 + PRQ_ORDER, "vtd page request queue");
    hw.writeRegister(Reg.PQH, 0n);
    hw.writeRegister(Reg.PQT, 0n);
    hw.writeRegister(Reg.PQA, BigInt(this.base) | BigInt(PRQ_ORDER));
    hw.prq.onEvent = () => this.#eventThread();
    hw.writeRegister(Reg.PECTL, 0n, 4);
  }

  /** pci_enable_pri on a device the driver enables page requests for (intel_iommu_probe_device). */
  enablePri(rid: number): void {
    if (this.base >= 0) this.hw.prq.priEnabled.add(rid);
  }

  /** pci_disable_pri when the device goes (intel_iommu_release_device): its groups go with it. */
  disablePri(rid: number): void {
    this.hw.prq.priEnabled.delete(rid);
    this.hw.prq.forget(rid);
    for (let i = 0; i < PRGIS; i++) this.pending.delete(rid * PRGIS + i);
  }

  /** prq_event_thread: drains the queue from PQH to PQT. Bounded by the queue size. */
  #eventThread(): void {
    const hw = this.hw;
    // Clear PPR before reading head and tail, so that a new request raises a new event.
    hw.writeRegister(Reg.PRS, BigInt(Prs.PPR), 4);
    const mask = BigInt(PRQ_RING_MASK);
    const tail = Number(hw.readRegister(Reg.PQT) & mask);
    let head = Number(hw.readRegister(Reg.PQH) & mask);
    for (let n = 0; head !== tail && n < PRQ_SIZE / PAGE_REQUEST_BYTES; n++) {
      // The queue is the driver's own memory (iommu->prq), whatever PQA says now.
      this.#handle(readWords(this.memory, this.base + head, 4) ?? [0n, 0n, 0n, 0n]);
      head = (head + PAGE_REQUEST_BYTES) & PRQ_RING_MASK;
    }
    hw.writeRegister(Reg.PQH, BigInt(tail));
    if (Number(hw.readRegister(Reg.PRS, 4)) & Prs.PRO) {
      const h = hw.readRegister(Reg.PQH) & mask;
      const t = hw.readRegister(Reg.PQT) & mask;
      // iopf_queue_discard_partial has nothing to drop: every group here is one request.
      if (h === t) hw.writeRegister(Reg.PRS, BigInt(Prs.PRO), 4);
    }
  }

  #handle(words: readonly bigint[]): void {
    const d = decodePageRequest(words);
    // A stop marker (LPIG without R or W) needs no response.
    const reason = refusal(words, d, this.#hasDevice);
    if (reason === "stop marker") return;
    if (reason !== null) {
      this.#bad(words, d, reason);
      return;
    }
    const req: PageRequest = {
      rid: d.rid,
      pasid: d.pp ? d.pasid : NO_PASID,
      addr: d.addr,
      perm: (d.rdr ? Perm.R : 0) | (d.wrr ? Perm.W : 0) | (d.exe ? Perm.X : 0),
      priv: d.pmr,
      grpid: d.prgi,
      last: d.lpig,
    };
    this.pending.set(d.rid * PRGIS + d.prgi, req);
  }

  /** handle_bad_prq_event: logs the request and answers its group Invalid when it is the last of it. */
  #bad(words: readonly bigint[], d: ReturnType<typeof decodePageRequest>, reason: string): void {
    this.badLog.push({ words: [words[0]!, words[1]!], reason });
    if (this.badLog.length > BAD_LOG_MAX) this.badLog.shift();
    if (!d.lpig) return;
    try {
      this.queue.submit([
        {
          type: "page-group-response",
          pp: d.pp,
          rc: PgrpResponse.INVALID,
          rid: d.rid,
          pasid: d.pasid,
          prgi: d.prgi,
        },
      ]);
    } catch {
      // Linux ignores qi_submit_sync's result here: a broken invalidation queue (IQE) stays reported in FSTS.
    }
  }

  /**
   * intel_iommu_page_response: answers the reported group of `request` (its rid,
   * grpid and pasid) with Success or Invalid through the invalidation queue, and waits.
   * EINVAL for a malformed request or code; ENOENT when no such group is pending
   * (never reported, already answered, or answered by the driver itself). Atomic: it
   * allocates nothing, and nothing changes when it throws.
   */
  pageResponse(request: PageRequest, code: PageResponseCode): void {
    if (code !== "success" && code !== "invalid")
      throw new IommuError("EINVAL", `page response code ${String(code)} is neither success nor invalid`);
    const r = request as Partial<PageRequest> | null;
    if (r === null || typeof r !== "object")
      throw new IommuError("EINVAL", "a page response needs the page request it answers");
    const { rid, grpid, pasid } = r;
    if (typeof rid !== "number" || !Number.isInteger(rid) || rid < 0 || rid > 0xffff)
      throw new IommuError("EINVAL", `requester id ${String(rid)} is not a 16-bit number`);
    if (typeof grpid !== "number" || !Number.isInteger(grpid) || grpid < 0 || grpid >= PRGIS)
      throw new IommuError("EINVAL", `group index ${String(grpid)} is not a 9-bit number`);
    if (
      typeof pasid !== "number" ||
      (pasid !== NO_PASID && !(Number.isInteger(pasid) && pasid >= 0 && pasid < 2 ** 20))
    )
      throw new IommuError("EINVAL", `PASID ${String(pasid)} is neither NO_PASID nor a 20-bit number`);
    const key = rid * PRGIS + grpid;
    const p = this.pending.get(key);
    if (p === undefined || p.pasid !== pasid)
      throw new IommuError("ENOENT", `no page request group ${grpid} pending for device ${rid}`, {
        rid,
        grpid,
        pasid,
      });
    const desc: InvDescriptor = {
      type: "page-group-response",
      pp: p.pasid !== NO_PASID,
      rc: code === "success" ? PgrpResponse.SUCCESS : PgrpResponse.INVALID,
      rid: p.rid,
      pasid: p.pasid === NO_PASID ? 0 : p.pasid,
      prgi: p.grpid,
    };
    try {
      this.queue.submit([desc]);
    } catch (e) {
      if (e instanceof IommuError) throw e;
      throw new IommuError("EIO", `the page group response did not complete: ${String(e)}`, { rid, grpid });
    }
    this.pending.delete(key);
  }
}

/**
 * Why prq_event_thread does not report a descriptor, in its order of checks (Linux's
 * messages), "stop marker" for one it drops silently, or null to report it.
 */
function refusal(
  words: readonly bigint[],
  d: ReturnType<typeof decodePageRequest>,
  hasDevice: (rid: number) => boolean,
): string | null {
  const top = BigInt.asIntN(64, BigInt.asUintN(64, words[1]!) & ~0xfffn) >> VIRTUAL_MASK_SHIFT;
  if (top !== 0n && top !== -1n) return "Address is not canonical";
  if (d.pmr && (d.rdr || d.wrr)) return "Page request in Privilege Mode";
  if (d.exe && d.rdr) return "Execution request not supported";
  if (d.lpig && !d.rdr && !d.wrr) return "stop marker";
  if (!hasDevice(d.rid)) return "no device with this requester id (device_rbtree_find)";
  return null;
}
