/**
 * Page requests, the hardware half of VT-d recoverable faults (Intel VT-d spec rev 4.x
 * 7.5 "Page Request Handling", 7.5.1 the page request descriptor, 7.5.2 the page
 * request queue; 7.4 / 7.4.1.1 in rev 3.x; registers 11.4.11: PQH_REG 0xC0, PQT_REG
 * 0xC8, PQA_REG 0xD0, PRS_REG 0xDC, PECTL_REG 0xE0, PEDATA / PEADDR / PEUADDR
 * 0xE4-0xEC; all RsvdZ unless ECAP.PRS, bit 29). Cross-checked with QEMU's
 * hw/i386/intel_iommu.c (vtd_pri_request_page, vtd_generate_page_request_event,
 * vtd_handle_prs_write / vtd_handle_pectl_write, vtd_process_page_group_response_desc).
 *
 * Which DMA becomes a page request. A device with ATS and PRI first sends a
 * translation request; when its walk meets a not-present or permission condition in
 * the first or second stage of a scalable-mode PASID (or RID_PASID) translation, the
 * IOMMU completes it with R = W = 0 rather than logging a fault, and the device then
 * sends a page request and waits for the page group response before it tries again.
 * The model folds ATS and PRI into one step: the untranslated request that hit such a
 * fault, from a device whose PRI is enabled (`priEnabled`, the device's PCIe PRI
 * Enable bit, set by the driver half as pci_enable_pri) and whose context entry has
 * PRE = 1 (as the context cache holds it), is turned into a page request: one request
 * per group (LPIG = 1), the group index the lowest the device has free. The translate
 * call fails with a fault that is not a fault record (`recorded: false`) and carries
 * `pageRequest` while the group is outstanding.
 *
 * The queue (spec 7.5.2, as QEMU vtd_pri_request_page): PQA 63:12 is the base, PQS 2:0
 * the size (2^(PQS+7) 32-byte descriptors), PQH / PQT offsets in bits 18:5. A request
 * that finds the queue full (PQT + 32 = PQH, mod size) sets PRS.PRO and is not
 * queued; while PRO is set no request is queued and no event is generated. Such a
 * request with LPIG is auto-responded by hardware with Success, so the device retries
 * (Linux's prq_event_thread discards partial groups when it clears PRO for this
 * reason). A queued request sets PRS.PPR; a page request event fires only when PPR and
 * PRO were both clear (PECTL.IP while PECTL.IM masks it; unmasking delivers it). Model
 * choices the spec leaves open: PQH or PQT outside the queue counts as full, and a
 * descriptor write that is not RAM loses the request (QEMU returns -EIO; nothing is
 * queued and nothing answers it). No paging levels apply here.
 */

import type { FaultClass, PageRequest, PhysicalMemory, Translation } from "@iommu-kit/core";
import { Access, hex, makeFault, NO_PASID, Perm } from "@iommu-kit/core";
import { Fr, faultReasonName } from "./format/fault-record.ts";
import type { InvDescriptor } from "./format/inv-desc.ts";
import type { PageRequestDescriptor } from "./format/page-request.ts";
import { encodePageRequestHalves, PAGE_REQUEST_BYTES, PgrpResponse } from "./format/page-request.ts";
import type { EcapFields } from "./format/registers.ts";
import { Fectl, Prs, Reg } from "./format/registers.ts";
import type { CtxInfo } from "./internal/config.ts";

/** What the fast path's fault builder asks before it records a fault (fast-path.ts). */
export interface PageRequester {
  /**
   * Turns the fault `fr` of a request into a page request when the rules above allow:
   * writes `out.fault` and returns true; false leaves the fault to be recorded.
   */
  offer(
    out: Translation,
    fr: number,
    cls: FaultClass,
    sid: number,
    pasid: number,
    iova: number,
    access: number,
  ): boolean;
}

/** The page group response descriptor (inv-desc.ts, type 9h). */
export type PageGroupResponse = Extract<InvDescriptor, { type: "page-group-response" }>;

/** A response a device received for one of its page request groups. */
export interface DeliveredResponse {
  readonly rid: number;
  /** NO_PASID when the response carried none. */
  readonly pasid: number;
  readonly grpid: number;
  /** The response code (PgrpResponse: 0 Success, 1 Invalid Request, 0xF Response Failure). */
  readonly code: number;
  /** True when the IOMMU answered it itself (queue overflow). */
  readonly auto: boolean;
}

/** What became of a page request (the fault's PRQ field). */
export type PageRequestOutcome = "queued" | "overflow" | "lost";

/** Fault reasons whose ATS translation completes with R = W = 0 (not-present / permission, spec 7.1.3). */
const RECOVERABLE: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (const fr of [
    Fr.FS_NOT_PRESENT,
    Fr.NESTED_FS_ROOT_NO_READ,
    Fr.NESTED_FS_NO_READ,
    Fr.NESTED_FS_NO_WRITE,
    Fr.SS_NOT_PRESENT,
    Fr.FS_USER_NOT_ALLOWED,
    Fr.NO_EXECUTE,
    Fr.SM_NO_WRITE,
    Fr.SM_NO_READ,
  ])
    t[fr] = 1;
  return t;
})();

const PAGE = 4096;
/** Page request group indexes a device has (PRGI is 9 bits). */
const PRGIS = 512;
/** Responses kept in `responses` (newest last). */
const LOG_MAX = 256;
const U64 = (1n << 64n) - 1n;
/** PQH / PQT: bits 18:5 (QEMU defines the write mask 0x7ffe0). */
const PQ_OFFSET_MASK = 0x7ffe0n;

/** The page request queue, its registers and the devices' outstanding page requests. */
export class PageRequestUnit implements PageRequester {
  readonly memory: PhysicalMemory;
  /**
   * ECAP.PRS (valid only with ECAP.DT, spec 11.4.3): without it every register here is
   * RsvdZ, nothing is requested and a page group response is an unknown descriptor type.
   */
  readonly present: boolean;
  readonly #contexts: ReadonlyMap<number, CtxInfo>;
  pqh = 0n;
  pqt = 0n;
  pqa = 0n;
  prs = 0;
  pectl: number = Fectl.IM;
  pedata = 0;
  peaddr = 0;
  peuaddr = 0;
  /** Devices whose PRI is enabled (the PCIe PRI Enable bit: device state, set by the driver). */
  readonly priEnabled: Set<number> = new Set();
  /** Outstanding page request groups by source-id * 512 + PRGI (the devices wait on them). */
  readonly #held = new Map<number, PageRequest>();
  /** Responses devices received, newest last (at most 256). */
  readonly responses: DeliveredResponse[] = [];
  /** Page group responses that matched no outstanding group (PCIe: unexpected PRG index). */
  unexpectedResponses = 0;
  /** Page request events delivered (interrupts while PECTL.IM was clear). */
  interrupts = 0;
  /** The driver's page request interrupt handler. */
  onEvent: (() => void) | null = null;
  /** While true no request becomes a page request (translateBig: addresses at or above 2^53). */
  suspended = false;
  /** The group offer() is waiting on, and the code it was answered with (-1: none yet). */
  #watch = -1;
  #watchCode = -1;
  readonly #desc = new Uint32Array(8);

  constructor(memory: PhysicalMemory, ecap: EcapFields, contexts: ReadonlyMap<number, CtxInfo>) {
    this.memory = memory;
    this.present = ecap.prs && ecap.dt;
    this.#contexts = contexts;
  }

  // ---------------------------------------------------------------- registers

  /** The 64-bit register slot at `base` (0xC0-0xE8), or null when the offset is not one of these. */
  read64(base: number): bigint | null {
    if (base < Reg.PQH || base > Reg.PEADDR) return null;
    if (!this.present) return 0n;
    switch (base) {
      case Reg.PQH:
        return this.pqh;
      case Reg.PQT:
        return this.pqt;
      case Reg.PQA:
        return this.pqa;
      case Reg.PRS - 4:
        return BigInt(this.prs) << 32n;
      case Reg.PECTL:
        return BigInt(this.pectl >>> 0) | (BigInt(this.pedata >>> 0) << 32n);
      default:
        return BigInt(this.peaddr >>> 0) | (BigInt(this.peuaddr >>> 0) << 32n);
    }
  }

  /**
   * Writes the 64-bit slot at `base` (`lo` / `hi`: which 32-bit halves the access
   * covered). Returns false when the offset is not one of these registers.
   */
  write64(base: number, v: bigint, lo: boolean, hi: boolean): boolean {
    if (base < Reg.PQH || base > Reg.PEADDR || (base & 7) !== 0) return false;
    if (!this.present) return true;
    const lo32 = Number(v & 0xffffffffn);
    const hi32 = Number((v >> 32n) & 0xffffffffn);
    switch (base) {
      case Reg.PQH:
        this.pqh = v & PQ_OFFSET_MASK;
        return true;
      case Reg.PQT:
        this.pqt = v & PQ_OFFSET_MASK;
        return true;
      case Reg.PQA:
        // PQA 63:12 and PQS 2:0; bits 11:3 are reserved.
        this.pqa = v & ~0xff8n & U64;
        return true;
      case Reg.PRS - 4:
        if (hi) this.#writePrs(hi32);
        return true;
      case Reg.PECTL:
        if (lo) this.#writePectl(lo32);
        if (hi) this.pedata = hi32 >>> 0;
        return true;
      default:
        // PEADDR bits 1:0 are reserved.
        if (lo) this.peaddr = (lo32 & ~3) >>> 0;
        if (hi) this.peuaddr = hi32 >>> 0;
        return true;
    }
  }

  /** PRS, PECTL, PEDATA, PEADDR or PEUADDR by name (32-bit), or null for another name. */
  named(name: string): bigint | null {
    if (name === "PRS") return BigInt(this.present ? this.prs : 0);
    if (name === "PECTL") return BigInt(this.present ? this.pectl >>> 0 : 0);
    if (name === "PEDATA") return BigInt(this.present ? this.pedata : 0);
    if (name === "PEADDR") return BigInt(this.present ? this.peaddr : 0);
    if (name === "PEUADDR") return BigInt(this.present ? this.peuaddr : 0);
    return null;
  }

  #writePrs(v: number): void {
    // PPR and PRO are write-1-to-clear; with both clear the pending interrupt goes (QEMU vtd_handle_prs_write).
    this.prs = (this.prs & ~(v & (Prs.PPR | Prs.PRO))) >>> 0;
    if ((this.prs & (Prs.PPR | Prs.PRO)) === 0) this.pectl = (this.pectl & ~Fectl.IP) >>> 0;
  }

  #writePectl(v: number): void {
    // Only IM is writable; clearing IM with IP set delivers the event and clears IP (spec 7.5, as 7.3.1).
    const wasMasked = (this.pectl & Fectl.IM) !== 0;
    this.pectl = ((this.pectl & ~Fectl.IM) | (v & Fectl.IM)) >>> 0;
    if (wasMasked && !(v & Fectl.IM) && this.pectl & Fectl.IP) {
      this.pectl = (this.pectl & ~Fectl.IP) >>> 0;
      this.#fire();
    }
  }

  /** A page request event, unless PPR or PRO was already set (`old` is PRS before the change). */
  #event(old: number): void {
    if (old & (Prs.PPR | Prs.PRO)) return;
    if (this.pectl & Fectl.IM) this.pectl = (this.pectl | Fectl.IP) >>> 0;
    else this.#fire();
  }

  #fire(): void {
    this.interrupts++;
    this.onEvent?.();
  }

  /** Queue base (PQA 63:12). */
  get queueBase(): number {
    return Number(this.pqa & ~0xfffn);
  }

  /** Descriptors the queue holds: 2^(PQS + 7) (spec 11.4.11, PQA_REG). */
  get queueEntries(): number {
    return 2 ** (Number(this.pqa & 7n) + 7);
  }

  // ------------------------------------------------------------ page requests

  offer(
    out: Translation,
    fr: number,
    cls: FaultClass,
    sid: number,
    pasid: number,
    iova: number,
    access: number,
  ): boolean {
    if (!this.present || this.suspended || RECOVERABLE[fr] !== 1) return false;
    const ctx = this.#contexts.get(sid);
    if (ctx === undefined || ctx.legacy || !ctx.pre || !this.priEnabled.has(sid)) return false;
    const prgi = this.#freePrgi(sid);
    // Every group index outstanding: the device can send no more (the fault stays unrecoverable).
    if (prgi < 0) return false;
    const withPasid = pasid !== NO_PASID;
    const write = (access & Access.WRITE) !== 0;
    // ERR and PMR travel in the PASID prefix: a request without PASID has neither. A fetch is a read (core access.ts).
    const d: PageRequestDescriptor = {
      pp: withPasid,
      rid: sid,
      pasid: withPasid ? pasid : 0,
      exe: withPasid && (access & Access.EXEC) !== 0,
      pmr: withPasid && (access & Access.PRIV) !== 0,
      rdr: !write,
      wrr: write,
      lpig: true,
      prgi,
      addr: iova - (iova % PAGE),
    };
    const req: PageRequest = {
      rid: sid,
      pasid: withPasid ? pasid : NO_PASID,
      addr: d.addr,
      perm: (d.rdr ? Perm.R : 0) | (d.wrr ? Perm.W : 0) | (d.exe ? Perm.X : 0),
      priv: d.pmr,
      grpid: prgi,
      last: true,
    };
    const key = sid * PRGIS + prgi;
    const old = this.prs;
    let outcome: PageRequestOutcome;
    let response = -1;
    if (old & Prs.PRO) {
      outcome = "overflow";
    } else {
      const size = this.queueEntries * PAGE_REQUEST_BYTES;
      const head = Number(this.pqh);
      const tail = Number(this.pqt);
      const next = (tail + PAGE_REQUEST_BYTES) % size;
      if (head >= size || tail >= size || next === head) {
        this.prs = (this.prs | Prs.PRO) >>> 0;
        this.#event(old);
        outcome = "overflow";
      } else if (!this.#write(this.queueBase + tail, d)) {
        outcome = "lost";
      } else {
        outcome = "queued";
        this.#held.set(key, req);
        this.pqt = BigInt(next);
        this.#watch = key;
        this.#watchCode = -1;
        if (!(old & Prs.PPR)) {
          this.prs = (this.prs | Prs.PPR) >>> 0;
          // The driver's handler may run here and answer at once (handle_bad_prq_event).
          this.#event(old);
        }
        response = this.#watchCode;
        this.#watch = -1;
      }
    }
    if (outcome === "overflow") {
      // Auto-response of a request with LPIG: Success, so the device retries later (spec 7.5.2).
      response = PgrpResponse.SUCCESS;
      this.#log({ rid: sid, pasid: req.pasid, grpid: prgi, code: response, auto: true });
    }
    const held = outcome === "queued" && this.#held.get(key) === req;
    const fields = {
      SID: sid,
      PASID: withPasid ? pasid : null,
      ADDR: hex(d.addr),
      PP: d.pp ? 1 : 0,
      RDR: d.rdr ? 1 : 0,
      WRR: d.wrr ? 1 : 0,
      EXE: d.exe ? 1 : 0,
      PMR: d.pmr ? 1 : 0,
      LPIG: 1,
      PRGI: prgi,
      FR: fr,
      PRQ: outcome,
      RESPONSE: response >= 0 ? response : null,
    };
    const vendor =
      outcome === "queued"
        ? { vendor: "intel-vtd", code: fr, name: faultReasonName(fr), fields, raw: this.#bytes() }
        : { vendor: "intel-vtd", code: fr, name: faultReasonName(fr), fields };
    out.fault = makeFault(cls, false, vendor, held ? req : undefined);
    return true;
  }

  #freePrgi(sid: number): number {
    for (let i = 0; i < PRGIS; i++) if (!this.#held.has(sid * PRGIS + i)) return i;
    return -1;
  }

  /** Writes one descriptor (32 bytes, inside one page: the base is 4K aligned, offsets 32-byte). */
  #write(pa: number, d: PageRequestDescriptor): boolean {
    const page = this.memory.writePage(Math.floor(pa / PAGE));
    if (page === null) return false;
    const h = this.#desc;
    encodePageRequestHalves(d, h, 0);
    const w = (pa % PAGE) >>> 2;
    for (let i = 0; i < 8; i++) page[w + i] = h[i]!;
    return true;
  }

  /** The last descriptor written, as its 32 little-endian bytes. */
  #bytes(): Uint8Array {
    const out = new Uint8Array(PAGE_REQUEST_BYTES);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) dv.setUint32(i * 4, this.#desc[i]!, true);
    return out;
  }

  #log(r: DeliveredResponse): void {
    this.responses.push(r);
    if (this.responses.length > LOG_MAX) this.responses.shift();
  }

  /**
   * Delivers a page group response descriptor (the invalidation queue's type 9h) to
   * the device: the outstanding group of (Requester-ID, PRGI) whose PASID matches (PP
   * and PASID, or no PASID) ends with the response code. Any other response is one
   * the device did not expect and ignores (PCIe PRI status UPRGI); the descriptor
   * itself is valid either way.
   */
  respond(r: PageGroupResponse): void {
    const key = r.rid * PRGIS + r.prgi;
    const h = this.#held.get(key);
    const pasid = r.pp ? r.pasid : NO_PASID;
    if (h === undefined || h.pasid !== pasid) {
      this.unexpectedResponses++;
      return;
    }
    this.#held.delete(key);
    this.#log({ rid: r.rid, pasid, grpid: r.prgi, code: r.rc, auto: false });
    if (key === this.#watch) this.#watchCode = r.rc;
  }

  /** The outstanding page request groups, by source-id then group index. */
  heldRequests(): PageRequest[] {
    return [...this.#held.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  }

  /** True while group `grpid` of device `rid` waits for its response. */
  isHeld(rid: number, grpid: number): boolean {
    return this.#held.has(rid * PRGIS + grpid);
  }

  /** Forgets a device's outstanding groups (the device went away). */
  forget(rid: number): void {
    for (let i = 0; i < PRGIS; i++) this.#held.delete(rid * PRGIS + i);
  }
}
