/**
 * The VT-d hardware model's queues: queued invalidation (Intel VT-d spec 6.5.2:
 * IQA/IQH/IQT/ICS, 128- and 256-bit descriptors, IQE halting the queue at the
 * offending descriptor, 6.5.2.8 wait descriptors, 10.4.23-10.4.27) and primary fault
 * logging into the fault recording registers (spec 7.2.1, 7.3.1, 11.4.9.1). Each
 * executed descriptor calls the cache invalidations of fast-path.ts (context 6.5.2.1,
 * IOTLB 6.5.2.3, PASID-based IOTLB 6.5.2.4, PASID cache 6.5.2.2); a page group
 * response (type 9h, spec 6.5.2) is delivered to the device through the page request
 * unit of prq.ts. The register file on top is hardware.ts. Table levels play no part
 * here (generic_pt/fmt/vtdss.h: PTE = 0 ... PML5E = 4).
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { field } from "@iommu-kit/core/driver";
import { FastPath } from "./fast-path.ts";
import type { FaultRecord } from "./format/fault-record.ts";
import { encodeFaultRecord } from "./format/fault-record.ts";
import type { InvDescriptor } from "./format/inv-desc.ts";
import { DescType, decodeDescriptorHalves } from "./format/inv-desc.ts";
import type { CapFields, EcapFields } from "./format/registers.ts";
import { Fectl, Fsts, Gcmd, IQA_DW, Iqei } from "./format/registers.ts";
import { PageRequestUnit } from "./prq.ts";

const PAGE = 4096;

/** The invalidation queue and fault recording of one unit, over its caches. */
export class VtdQueues extends FastPath {
  /** Number of fault recording registers. */
  readonly nfr: number;
  gsts = 0;
  fsts = 0;
  fectl: number = Fectl.IM;
  iqh = 0n;
  iqt = 0n;
  iqa = 0n;
  ics = 0;
  iectl: number = Fectl.IM;
  iqercd = 0n;
  /** FRCD registers, two 64-bit words each. */
  readonly frcd: bigint[];
  /** Fault events delivered (interrupts that fired while unmasked). */
  faultInterrupts = 0;
  /** Invalidation-completion interrupts delivered. */
  completionInterrupts = 0;
  /** Called when a fault event interrupt fires (the driver's handler). */
  onFaultEvent: (() => void) | null = null;
  /** Internal index of the FRCD the next fault goes to (spec 7.2.1). */
  #nextFrcd = 0;
  /** Descriptors processed by the queue, by type code (for tests and dumps). */
  readonly descriptorCounts: Map<number, number> = new Map();
  /** The page request queue and the devices' outstanding page requests (prq.ts). */
  readonly prq: PageRequestUnit;

  constructor(memory: PhysicalMemory, cap: CapFields, ecap: EcapFields, haw: number, iotlbSizeLg2: number) {
    super(memory, cap, ecap, haw, iotlbSizeLg2);
    this.nfr = cap.nfr;
    this.frcd = new Array<bigint>(cap.nfr * 2).fill(0n);
    this.prq = new PageRequestUnit(memory, ecap, this.contextCache);
    if (this.prq.present) this.pageRequester = this.prq;
  }

  /** Delivers a fault event interrupt (FECTL.IM clear): counts it and calls the driver's handler. */
  fireFault(): void {
    this.faultInterrupts++;
    this.onFaultEvent?.();
  }

  // ------------------------------------------------------------- fault logging

  /**
   * Primary fault logging (spec 7.2.1): the record goes to the FRCD at the internal
   * next index unless it still holds a pending fault (then PFO is set and the fault is
   * lost); FSTS.FRI names the first pending record, as Linux's handler reads it. A
   * fault from a source-id that already has a pending record is not recorded again
   * (spec 7.2.1: hardware may collapse; QEMU drops it too). While FSTS.PFO is set no
   * fault is recorded at all, free FRCD or not, until software clears PFO (spec 7.2.1;
   * QEMU vtd_report_frcd_fault checks PFO first too). Returns true when written.
   */
  override recordFault(rec: FaultRecord): boolean {
    if (this.fsts & Fsts.PFO) return false;
    for (let i = 0; i < this.nfr; i++) {
      const hi = this.frcd[i * 2 + 1]!;
      if (hi >> 63n && Number(hi & 0xffffn) === rec.sid) return false;
    }
    const idx = this.#nextFrcd < this.nfr ? this.#nextFrcd : 0;
    if (this.frcd[idx * 2 + 1]! >> 63n) {
      this.fsts = (this.fsts | Fsts.PFO) >>> 0;
      return false;
    }
    const pending = (this.fsts & (Fsts.PPF | Fsts.PFO | Fsts.IQE)) !== 0;
    const [lo, hi] = encodeFaultRecord(rec);
    this.frcd[idx * 2] = lo;
    this.frcd[idx * 2 + 1] = hi;
    this.#nextFrcd = (idx + 1) % this.nfr;
    // FRI names the record of the first pending fault: set when PPF goes from 0 to 1 (spec 11.4.9.1).
    if (!(this.fsts & Fsts.PPF)) this.fsts = ((this.fsts & ~0xff00) | (idx << 8)) >>> 0;
    this.fsts = (this.fsts | Fsts.PPF) >>> 0;
    // A fault event is generated only when no earlier status was pending (spec 7.3.1).
    if (!pending) {
      if (this.fectl & Fectl.IM) this.fectl = (this.fectl | Fectl.IP) >>> 0;
      else this.fireFault();
    }
    return true;
  }

  /** The pending fault records (F = 1), in register order. */
  pendingFaults(): Array<{ index: number; words: [bigint, bigint] }> {
    const out: Array<{ index: number; words: [bigint, bigint] }> = [];
    for (let i = 0; i < this.nfr; i++) {
      const hi = this.frcd[i * 2 + 1]!;
      if (hi >> 63n) out.push({ index: i, words: [this.frcd[i * 2]!, hi] });
    }
    return out;
  }

  // --------------------------------------------------------- invalidation queue

  /** Descriptor size in bytes (16, or 32 with IQA.DW). */
  get descriptorBytes(): number {
    this.#decodeIqa();
    return this.#iqaBytes;
  }

  /** Entries the queue holds: 2^(QS+8) 128-bit or 2^(QS+7) 256-bit descriptors. */
  get queueEntries(): number {
    this.#decodeIqa();
    return this.#iqaEntries;
  }

  /** Queue base address (IQA 63:12). */
  get queueBase(): number {
    this.#decodeIqa();
    return this.#iqaBase;
  }

  /** IQA as last decoded (the register is a public field: re-decoded whenever it changes). */
  #iqaSeen = -1n;
  #iqaBytes = 16;
  #iqaEntries = 256;
  #iqaBase = 0;

  #decodeIqa(): void {
    const iqa = this.iqa;
    if (iqa === this.#iqaSeen) return;
    this.#iqaBytes = iqa & BigInt(IQA_DW) ? 32 : 16;
    this.#iqaEntries = (2 ** Number(iqa & 7n) * 4096) / this.#iqaBytes;
    this.#iqaBase = Number(field(iqa, 63, 12) << 12n);
    this.#iqaSeen = iqa;
  }

  /**
   * The driver half's IQT write (writeRegister(Reg.IQT, tailBytes) without the generic
   * 64-bit register decode): latches the tail and processes the queue when QIE is set.
   */
  writeQueueTail(tailBytes: number): void {
    const bytes = tailBytes & 0x7fff0;
    this.iqt = this.#iqtSeen = this.#offsetBig(bytes);
    this.#iqtBytes = bytes;
    if (this.gsts & Gcmd.QIE) this.processQueue();
  }

  /** One fetched descriptor as 32-bit halves (up to 256 bits). */
  readonly #desc = new Uint32Array(8);

  #queueError(iqei: number): void {
    this.fsts = (this.fsts | Fsts.IQE) >>> 0;
    this.iqercd = BigInt(iqei);
    if (!(this.fsts & (Fsts.PPF | Fsts.PFO))) {
      if (this.fectl & Fectl.IM) this.fectl = (this.fectl | Fectl.IP) >>> 0;
      else this.fireFault();
    }
  }

  /**
   * Processes descriptors from IQH to IQT (spec 6.5.2). Stops with FSTS.IQE (IQH left
   * at the offending descriptor) on an invalid tail, a fetch error, an unknown type,
   * a reserved field, or a 256-bit-only type in a 128-bit queue. Bounded by the queue
   * size: never loops.
   */
  processQueue(): void {
    if (this.fsts & Fsts.IQE) return;
    const size = this.descriptorBytes;
    const entries = this.queueEntries;
    const tailBytes = this.iqt === this.#iqtSeen ? this.#iqtBytes : Number(this.iqt & 0x7fff0n);
    if (size === 32 && !this.ecap.smts) {
      this.#queueError(Iqei.INVALID_WIDTH);
      return;
    }
    if (tailBytes % size !== 0 || tailBytes / size >= entries) {
      this.#queueError(Iqei.TAIL_INVALID);
      return;
    }
    const tail = tailBytes / size;
    // IQH as this loop last wrote it, without a BigInt operation, unless it was written since.
    let head = (this.iqh === this.#iqhSeen ? this.#iqhBytes : Number(this.iqh & 0x7fff0n)) / size;
    if (!Number.isInteger(head) || head >= entries) head = 0;
    const base = this.queueBase;
    const halves = this.#desc;
    const nHalves = size / 4;
    for (let n = 0; head !== tail && n < entries; n++) {
      const at = base + head * size;
      for (let i = 0; i < nHalves; i += 2) {
        const pa = at + i * 4;
        const page = this.memory.isRam(pa) ? this.memory.readPage(Math.floor(pa / PAGE)) : null;
        if (page === null) {
          this.iqh = BigInt(head * size);
          this.#queueError(Iqei.FETCH_ERROR);
          return;
        }
        const w = (pa & 0xfff) >>> 2;
        halves[i] = page[w]!;
        halves[i + 1] = page[w + 1]!;
      }
      const code = (halves[0]! & 0xf) | (((halves[0]! >>> 9) & 0x7) << 4);
      // Without ECAP.PRS there are no page group responses: an unknown type (spec 6.5.2). The
      // page group response is 256-bit only, as the PASID-based types (rev 3+ scalable mode).
      if (code === DescType.PAGE_GROUP_RESPONSE && !this.prq.present) {
        this.iqh = BigInt(head * size);
        this.#queueError(Iqei.INVALID_TYPE);
        return;
      }
      const pasidBased =
        code === DescType.PASID_IOTLB ||
        code === DescType.PASID_CACHE ||
        code === DescType.PASID_DEV_TLB ||
        code === DescType.PAGE_GROUP_RESPONSE;
      if (size === 16 && pasidBased) {
        this.iqh = BigInt(head * size);
        this.#queueError(Iqei.INVALID_WIDTH);
        return;
      }
      const { desc, error } = decodeDescriptorHalves(halves, nHalves);
      if (desc === null) {
        this.iqh = BigInt(head * size);
        this.#queueError(error === "type" ? Iqei.INVALID_TYPE : Iqei.RESERVED_FIELD);
        return;
      }
      if (!this.#execute(desc)) {
        this.iqh = BigInt(head * size);
        this.#queueError(Iqei.RESERVED_FIELD);
        return;
      }
      this.descriptorCounts.set(code, (this.descriptorCounts.get(code) ?? 0) + 1);
      head = (head + 1) % entries;
      this.#setIqh(head * size);
    }
  }

  /** IQH / IQT as last written here, and their byte offsets (compared by value before use). */
  #iqhSeen = 0n;
  #iqhBytes = 0;
  #iqtSeen = 0n;
  #iqtBytes = 0;
  /** BigInt(offset) by offset / 16: queue offsets repeat, so the registers are written without allocating. */
  readonly #offsets: bigint[] = [];

  #offsetBig(bytes: number): bigint {
    let b = this.#offsets[bytes >>> 4];
    if (b === undefined) {
      b = BigInt(bytes);
      this.#offsets[bytes >>> 4] = b;
    }
    return b;
  }

  #setIqh(bytes: number): void {
    this.iqh = this.#iqhSeen = this.#offsetBig(bytes);
    this.#iqhBytes = bytes;
  }

  /** Executes one decoded descriptor; false when a field value is invalid. */
  #execute(d: InvDescriptor): boolean {
    switch (d.type) {
      case "context-cache":
        if (d.g === 1) this.invalidateContext("global");
        else if (d.g === 2) this.invalidateContext("domain", d.did);
        else this.invalidateContext("device", d.did, d.sid, d.fm);
        return true;
      case "iotlb":
        if (d.g === 1) this.invalidateIotlb("global");
        else if (d.g === 2) this.invalidateIotlb("domain", d.did);
        else {
          if (d.am > this.cap.mamv || d.addr % 2 ** (12 + d.am) !== 0) return false;
          this.invalidateIotlb("page", d.did, d.addr, d.am);
        }
        return true;
      case "pasid-iotlb":
        if (d.g === 2) this.invalidatePasidIotlb("pasid", d.did, d.pasid);
        else {
          if (d.am > this.cap.mamv || d.addr % 2 ** (12 + d.am) !== 0) return false;
          this.invalidatePasidIotlb("page", d.did, d.pasid, d.addr, d.am);
        }
        return true;
      case "pasid-cache":
        if (d.g === 0) this.invalidatePasidCache("domain", d.did);
        else if (d.g === 1) this.invalidatePasidCache("pasid", d.did, d.pasid);
        else this.invalidatePasidCache("global");
        return true;
      case "dev-tlb":
      case "pasid-dev-tlb":
      case "iec":
        // No device-TLB or interrupt-entry cache is modelled: accepted and counted.
        this.invalidations++;
        return true;
      case "page-group-response":
        this.prq.respond(d);
        return true;
      case "wait":
        if (d.sw && !this.memory.write32(d.statusAddr, d.statusData)) return false;
        if (d.ifl) {
          this.ics |= 1;
          if (this.iectl & Fectl.IM) this.iectl = (this.iectl | Fectl.IP) >>> 0;
          else this.completionInterrupts++;
        }
        return true;
    }
  }
}
