/**
 * The driver half's queues: how the driver brings a unit up and talks to it, as
 * Linux's intel-iommu does (drivers/iommu/intel/dmar.c dmar_enable_qi,
 * qi_submit_sync, dmar_fault; iommu.c iommu_enable_translation): root table pointer
 * and SRTP, the register-based global invalidations before queued invalidation is on,
 * the invalidation queue in memory with a wait descriptor per batch (Intel VT-d spec
 * 6.5.2, 6.5.2.8, 10.4.23-10.4.27), and the fault-event handler that drains the primary
 * fault recording registers (spec 7.2.1, 10.4.14). Table levels play no part here (see
 * generic_pt/fmt/vtdss.h for the walk's: PTE = 0 ... PML5E = 4).
 */

import type { PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { hex } from "@iommu-kit/core";
import type { InvDescriptor } from "../format/inv-desc.ts";
import { encodeDescriptorHalves } from "../format/inv-desc.ts";
import { Fsts, Gcmd, IQA_DW, Reg } from "../format/registers.ts";
import type { VtdHardware } from "../hardware.ts";
import { writeWords } from "../internal/words.ts";

/** The low half of a wait descriptor with SW and FN set (type 5h; spec 6.5.2.8, Linux QI_IWD_STATUS_WRITE | QI_IWD_FENCE). */
const WAIT_SW_FN = 0x5 | 0x20 | 0x40;

/** Fault records the handler keeps (newest last). */
const FAULT_LOG_MAX = 256;

/** The driver's invalidation queue, root table and fault handler on one unit. */
export class DriverQueue {
  readonly memory: PhysicalMemory;
  readonly hw: VtdHardware;
  /** Physical address of the root table. */
  readonly root: number;
  /** Fault records the driver's handler drained (newest last, at most 256). */
  readonly faultLog: Array<readonly [bigint, bigint]> = [];
  readonly #queue: number;
  readonly #status: number;
  #tail = 0;
  #seq = 0;
  #gcmd = 0;
  /** Scratch for one descriptor's 32-bit halves. */
  readonly #halves = new Uint32Array(4);

  /** Allocates the root table, queue and wait-status pages, and enables QI, faults and translation. */
  constructor(hw: VtdHardware, memory: PhysicalMemory, tables: TableAllocator, scalable: boolean) {
    this.hw = hw;
    this.memory = memory;
    this.root = tables.alloc(12, "vtd root table");
    this.#queue = tables.alloc(12, "vtd invalidation queue");
    this.#status = tables.alloc(12, "vtd wait status");
    // Root table pointer with TTM (legacy 00b / scalable 01b), then SRTP (spec 10.4.6).
    hw.writeRegister(Reg.RTADDR, BigInt(this.root) | (scalable ? 1n << 10n : 0n));
    this.#writeGcmd(Gcmd.SRTP);
    // Global context-cache and IOTLB invalidation through the registers before QI (Linux iommu_flush_*).
    hw.writeRegister(Reg.CCMD, (1n << 63n) | (1n << 61n));
    hw.writeRegister(hw.ivaOffset + 8, (1n << 63n) | (1n << 60n));
    // Invalidation queue: one page, 256-bit descriptors in scalable mode (Linux dmar_enable_qi).
    hw.writeRegister(Reg.IQA, BigInt(this.#queue) | (scalable ? BigInt(IQA_DW) : 0n));
    hw.writeRegister(Reg.IQT, 0n);
    this.#gcmd |= Gcmd.QIE;
    this.#writeGcmd(0);
    // Fault events unmasked; the handler drains the records (Linux dmar_fault).
    hw.onFaultEvent = () => this.#serviceFaults();
    hw.writeRegister(Reg.FECTL, 0n, 4);
    this.#gcmd |= Gcmd.TE;
    this.#writeGcmd(0);
  }

  #writeGcmd(oneShot: number): void {
    this.hw.writeRegister(Reg.GCMD, BigInt((this.#gcmd | oneShot) >>> 0), 4);
  }

  /**
   * The fault handler, as Linux's dmar_fault: read FSTS; unless PPF or PFO is set there
   * is nothing to do; from FSTS.FRI on (wrapping at NFR), read each FRCD while its F is
   * set, log it and clear F (write 1 to bit 127); then clear PFO (and the read-only PPF)
   * in FSTS so recording resumes (spec 7.2.1, 11.4.9.1, 11.4.11).
   */
  #serviceFaults(): void {
    const hw = this.hw;
    const fsts = Number(hw.readRegister(Reg.FSTS, 4));
    if ((fsts & (Fsts.PFO | Fsts.PPF)) === 0) return;
    let index = (fsts >>> 8) & 0xff;
    if (index >= hw.nfr) index = 0;
    for (let n = 0; n < hw.nfr; n++) {
      const at = hw.frcdOffset + index * 16;
      const hi = hw.readRegister(at + 8, 8);
      if (hi >> 63n === 0n) break;
      this.faultLog.push([hw.readRegister(at, 8), hi]);
      if (this.faultLog.length > FAULT_LOG_MAX) this.faultLog.shift();
      hw.writeRegister(at + 12, 1n << 31n, 4);
      index = (index + 1) % hw.nfr;
    }
    hw.writeRegister(Reg.FSTS, BigInt(Fsts.PFO | Fsts.PPF), 4);
  }

  /**
   * Batched descriptors as 32-bit halves, four per 128-bit descriptor (Linux's struct
   * qi_batch: qi_batch_add_iotlb / qi_batch_add_piotlb append, qi_batch_flush_descs
   * submits them with one wait descriptor).
   */
  #batch = new Uint32Array(64);
  #batchN = 0;

  /** Appends one 128-bit descriptor as its halves (low qword 31:0, 63:32, high qword 31:0, 63:32). */
  add(w0: number, w1: number, w2: number, w3: number): void {
    let b = this.#batch;
    const i = this.#batchN * 4;
    if (i + 4 > b.length) {
      const grown = new Uint32Array(b.length * 2);
      grown.set(b);
      this.#batch = b = grown;
    }
    b[i] = w0;
    b[i + 1] = w1;
    b[i + 2] = w2;
    b[i + 3] = w3;
    this.#batchN++;
  }

  /** Appends one descriptor given as an object (the slow, general form of {@link DriverQueue.add}). */
  addDesc(d: InvDescriptor): void {
    const h = this.#halves;
    encodeDescriptorHalves(d, h, 0);
    this.add(h[0]!, h[1]!, h[2]!, h[3]!);
  }

  /** Submits descriptors and a wait descriptor, then checks completion (spec 6.5.2.8). */
  submit(descs: readonly InvDescriptor[]): void {
    this.#batchN = 0;
    for (const d of descs) this.addDesc(d);
    this.flush();
  }

  /**
   * Writes the batched descriptors straight into the queue page with a wait descriptor
   * (SW = 1, FN = 1, status data = a sequence number) after each queue's worth, moves IQT,
   * and checks the status write (Linux qi_submit_sync; spec 6.5.2.8). An empty batch
   * submits the wait alone. Throws when the unit reports IQE.
   */
  flush(): void {
    const hw = this.hw;
    const size = hw.descriptorBytes;
    const entries = hw.queueEntries;
    const per = entries - 2;
    const n = this.#batchN;
    this.#batchN = 0;
    const b = this.#batch;
    const status = this.#status;
    const statusLo = (status % 4294967296) & ~0x3;
    const statusHi = Math.floor(status / 4294967296);
    let i = 0;
    for (;;) {
      const end = Math.min(n, i + per);
      this.#seq = (this.#seq + 1) >>> 0;
      for (let k = i; k < end; k++)
        this.#put(b[4 * k]!, b[4 * k + 1]!, b[4 * k + 2]!, b[4 * k + 3]!, size, entries);
      // inv_wait_dsc: type 5, SW (bit 5), FN (bit 6), status data 63:32, status address 127:66.
      this.#put(WAIT_SW_FN, this.#seq, statusLo, statusHi, size, entries);
      i = end > i ? end : i + 1;
      hw.writeQueueTail(this.#tail * size);
      if (hw.fsts & Fsts.IQE || this.memory.read32(status) !== this.#seq) {
        throw new Error(`VT-d invalidation queue error (FSTS ${hex(hw.fsts)}, IQERCD ${hex(hw.iqercd)})`);
      }
      if (i >= n) break;
    }
  }

  /** Writes one descriptor's halves at the queue tail (zero upper half in a 256-bit queue) and advances it. */
  #put(w0: number, w1: number, w2: number, w3: number, size: number, entries: number): void {
    const at = this.#queue + this.#tail * size;
    const page = this.memory.writePage(Math.floor(at / 4096));
    if (page === null) {
      // Not RAM: the 64-bit path reports the bus error.
      const lo = (BigInt(w1 >>> 0) << 32n) | BigInt(w0 >>> 0);
      const hi = (BigInt(w3 >>> 0) << 32n) | BigInt(w2 >>> 0);
      writeWords(this.memory, at, size === 32 ? [lo, hi, 0n, 0n] : [lo, hi]);
    } else {
      const w = (at & 0xfff) >>> 2;
      page[w] = w0;
      page[w + 1] = w1;
      page[w + 2] = w2;
      page[w + 3] = w3;
      if (size === 32) page.fill(0, w + 4, w + 8);
    }
    this.#tail = (this.#tail + 1) % entries;
  }
}
