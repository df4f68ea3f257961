/**
 * The SMMU's queues in memory (ARM IHI 0070 3.5): the command queue it consumes (CMDQ_BASE,
 * CMDQ_PROD/CONS, 6.3.26-6.3.27), executing each command's checks and decoding its fields
 * (chapter 4: CFGI_* 4.3, TLBI_* 4.4 with range invalidation 4.4.1, CMD_SYNC 4.7), and
 * stopping on an error with CMDQ_CONS.ERR and GERROR.CMDQ_ERR until software acknowledges
 * it through GERRORN (7.1, CERROR_ILL / CERROR_ABT); and the event queue it produces into
 * (EVENTQ_BASE, EVENTQ_PROD/CONS, 7.4: full queue -> overflow flag, an abort on the write
 * -> GERROR.EVTQ_ABT_ERR). What a command acts on (configuration cache, IOTLB, micro-TLB)
 * is a `CommandTarget`: the fast path implements it, so this room never sees a cache.
 * Queue pointers carry the wrap bit above the index bits, as the spec's PROD/CONS do.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { CMD_NAMES, CmdError, CmdOp } from "./format/command.ts";
import { Cr0, Gerror } from "./format/registers.ts";
import { hex, POW2, TWO32 } from "./internal/words.ts";
import type { RegisterFile } from "./registers.ts";

/** What commands act on: the caches behind the queue (implemented by the fast path). */
export interface CommandTarget {
  /** The cache counters (`invalidations` counts executed CFGI / TLBI commands). */
  readonly counters: { invalidations: number };
  /** CFGI_STE. */
  cfgiSte(sid: number): void;
  /** CFGI_STE_RANGE (Range 31: everything, CFGI_ALL). */
  cfgiSteRange(sid: number, range: number): void;
  /** CFGI_CD. */
  cfgiCd(sid: number, ssid: number): void;
  /** CFGI_CD_ALL. */
  cfgiCdAll(sid: number): void;
  /** TLBI_NH_ALL. */
  tlbiNhAll(vmid: number): void;
  /** TLBI_NH_ASID. */
  tlbiNhAsid(vmid: number, asid: number): void;
  /** TLBI_NH_VA (asid >= 0) or TLBI_NH_VAA (asid -1) of [addr, addr + length). */
  tlbiNhVa(vmid: number, asid: number, addr: number, length: number): void;
  /** TLBI_S12_VMALL. */
  tlbiS12Vmall(vmid: number): void;
  /** TLBI_S2_IPA of [ipa, ipa + length). */
  tlbiS2Ipa(vmid: number, ipa: number, length: number): void;
  /** TLBI_NSNH_ALL and the EL2 TLBIs. */
  tlbiAll(): void;
  /** CMD_RESUME of the stalled transaction (StreamID, STAG); a mismatch has no effect (4.7.1). */
  resume(sid: number, stag: number): void;
  /** CMD_STALL_TERM: every stalled transaction of the StreamID (4.7.2). */
  stallTerm(sid: number): void;
}

/** The command queue consumer. */
export class CommandQueue {
  readonly #memory: PhysicalMemory;
  readonly #r: RegisterFile;
  readonly #t: CommandTarget;
  // The queue's decoded configuration (CR0.CMDQEN, GERROR.CMDQ_ERR, CMDQ_BASE), redone
  // after any register write (RegisterFile.qStale).
  #on = false;
  #addr = 0;
  #log2 = 0;
  // Range of the TLBI being executed (#tlbiRange).
  #rAt = 0;
  #rLen = 0;

  constructor(memory: PhysicalMemory, regs: RegisterFile, target: CommandTarget) {
    this.#memory = memory;
    this.#r = regs;
    this.#t = target;
  }

  /** Decodes CR0.CMDQEN, GERROR.CMDQ_ERR and CMDQ_BASE for consume(). */
  #decode(): void {
    const r = this.#r;
    r.qStale = false;
    const cr0 = Number(r.reg("CR0"));
    const gerr = Number(r.reg("GERROR") ^ r.reg("GERRORN"));
    // Stopped until software acknowledges a CMDQ_ERR (7.1).
    this.#on = (cr0 & Cr0.CMDQEN) !== 0 && (gerr & Gerror.CMDQ_ERR) === 0;
    const base = r.reg("CMDQ_BASE");
    this.#log2 = Math.min(Number(base & 0x1fn), r.cmdqsMax); // LOG2SIZE [4:0] capped by IDR1.CMDQS
    this.#addr = Number(base & 0x000f_ffff_ffff_ffe0n); // ADDR [51:5]
  }

  /** Consumes commands from CMDQ_CONS up to CMDQ_PROD, stopping at the first error. */
  consume(): void {
    const r = this.#r;
    if (r.qStale) this.#decode();
    if (!this.#on) return;
    const addr = this.#addr;
    const size = POW2[this.#log2] ?? 2 ** this.#log2;
    const ptrMask = size * 2 - 1; // index + wrap bit
    const prod = r.qProd & ptrMask;
    let cons = r.qCons & ptrMask;
    for (let n = 0; n < size && cons !== prod; n++) {
      const at = addr + (cons & (size - 1)) * 16;
      const page = this.#memory.readPage(Math.floor(at / 4096));
      let err: number = CmdError.ABT;
      if (page !== null) {
        const w = (at % 4096) >>> 2;
        err = this.#execute(page[w]!, page[w + 1]!, page[w + 2]!, page[w + 3]!);
      }
      if (err !== CmdError.NONE) {
        // CONS stays on the failing command, ERR [30:24] names the error (6.3.27).
        r.qCons = cons | (err << 24);
        r.setReg("GERROR", r.reg("GERROR") ^ BigInt(Gerror.CMDQ_ERR));
        r.qStale = true;
        return;
      }
      cons = (cons + 1) & ptrMask;
    }
    r.qCons = cons;
  }

  /** Executes one command (its four 32-bit halves); returns a CERROR code. */
  #execute(a: number, b: number, c: number, d: number): number {
    if ((a >>> 10) & 1) return CmdError.ILL; // SSEC: Secure command on the Non-secure queue (4.1.3)
    const op = a & 0xff;
    if (op === CmdOp.CMD_SYNC || op === CmdOp.PREFETCH_CONFIG || op === CmdOp.PREFETCH_ADDR)
      return CmdError.NONE;
    const t = this.#t;
    const r = this.#r;
    // Fields straight from the 32-bit halves (decodeCommandHalves' positions), no allocation.
    const sid = b >>> 0;
    const asid = b >>> 16;
    const tg = (c >>> 10) & 3;
    const vmid = r.s2p ? b & 0xffff : 0;
    const k = t.counters;
    switch (op) {
      case CmdOp.PREFETCH_CONFIG:
      case CmdOp.PREFETCH_ADDR:
      case CmdOp.CMD_SYNC:
        return CmdError.NONE;
      case CmdOp.CFGI_STE:
        k.invalidations++;
        t.cfgiSte(sid);
        return CmdError.NONE;
      case CmdOp.CFGI_STE_RANGE:
        k.invalidations++;
        t.cfgiSteRange(sid, c & 0x1f);
        return CmdError.NONE;
      case CmdOp.CFGI_CD:
        k.invalidations++;
        t.cfgiCd(sid, a >>> 12);
        return CmdError.NONE;
      case CmdOp.CFGI_CD_ALL:
        k.invalidations++;
        t.cfgiCdAll(sid);
        return CmdError.NONE;
      case CmdOp.TLBI_NH_ALL:
      case CmdOp.TLBI_NH_ASID:
      case CmdOp.TLBI_NH_VA:
      case CmdOp.TLBI_NH_VAA: {
        if (!r.s1p) return CmdError.ILL; // stage 1 not implemented
        if (tg !== 0 && !r.ril) return CmdError.ILL;
        k.invalidations++;
        if (op === CmdOp.TLBI_NH_ALL) t.tlbiNhAll(vmid);
        else if (op === CmdOp.TLBI_NH_ASID) t.tlbiNhAsid(vmid, asid);
        else {
          if (this.#tlbiRange(a, c, d))
            t.tlbiNhVa(vmid, op === CmdOp.TLBI_NH_VA ? asid : -1, this.#rAt, this.#rLen);
        }
        return CmdError.NONE;
      }
      case CmdOp.TLBI_S12_VMALL:
        if (!r.s2p) return CmdError.ILL;
        k.invalidations++;
        t.tlbiS12Vmall(vmid);
        return CmdError.NONE;
      case CmdOp.TLBI_S2_IPA: {
        if (!r.s2p) return CmdError.ILL;
        if (tg !== 0 && !r.ril) return CmdError.ILL;
        k.invalidations++;
        if (this.#tlbiRange(a, c, d)) t.tlbiS2Ipa(vmid, this.#rAt, this.#rLen);
        return CmdError.NONE;
      }
      case CmdOp.TLBI_NSNH_ALL:
        k.invalidations++;
        t.tlbiAll();
        return CmdError.NONE;
      case CmdOp.TLBI_EL2_ALL:
      case CmdOp.TLBI_EL2_ASID:
      case CmdOp.TLBI_EL2_VA:
      case CmdOp.TLBI_EL2_VAA:
        if (!r.hyp) return CmdError.ILL;
        k.invalidations++;
        t.tlbiAll();
        return CmdError.NONE;
      case CmdOp.ATC_INV:
        return r.ats ? CmdError.NONE : CmdError.ILL;
      case CmdOp.PRI_RESP:
        return r.pri ? CmdError.NONE : CmdError.ILL;
      case CmdOp.RESUME:
        // StreamID [63:32], STAG word 1 [15:0]; ILL without the Stall model (4.7.1).
        if (r.stallModel === 1) return CmdError.ILL;
        t.resume(sid, c & 0xffff);
        return CmdError.NONE;
      case CmdOp.STALL_TERM:
        if (r.stallModel === 1) return CmdError.ILL;
        t.stallTerm(sid);
        return CmdError.NONE;
      default:
        return CmdError.ILL; // unknown opcode, EL3 TLBIs, CFGI_VMS_PIDM (4.1.2)
    }
  }

  /**
   * The range of a range TLBI (4.4.1) into #rAt / #rLen: TG=0 -> the leaf covering ADDR;
   * else (NUM+1)*2^SCALE granules. False beyond 2^53 (translateBig does not cache there).
   */
  #tlbiRange(a: number, c: number, d: number): boolean {
    if (d >= 2 ** 21) return false;
    const at = d * TWO32 + ((c & 0xfffff000) >>> 0);
    const tg = (c >>> 10) & 3;
    if (tg === 0) {
      this.#rAt = at;
      this.#rLen = 1;
      return true;
    }
    const g = tg === 1 ? 12 : tg === 2 ? 14 : 16;
    this.#rAt = at - (at % (POW2[g] ?? 2 ** g));
    const e = ((a >>> 20) & 0x1f) + g;
    this.#rLen = (((a >>> 12) & 0x1f) + 1) * (POW2[e] ?? 2 ** e);
    return true;
  }
}

/** Name of a command opcode ("CMD_UNKNOWN_0x7f" for others). */
export function commandName(op: number): string {
  return CMD_NAMES[op] ?? `CMD_UNKNOWN_${hex(op)}`;
}

/** The event queue producer. */
export class EventQueue {
  readonly #memory: PhysicalMemory;
  readonly #r: RegisterFile;
  /** Records discarded because the queue was full. */
  dropped = 0;

  constructor(memory: PhysicalMemory, regs: RegisterFile) {
    this.#memory = memory;
    this.#r = regs;
  }

  /** Writes an event record to the event queue; false when it was not recorded. */
  write(words: readonly bigint[]): boolean {
    const r = this.#r;
    const cr0 = Number(r.reg("CR0"));
    if ((cr0 & Cr0.EVTQEN) === 0) return false;
    const base = r.reg("EVENTQ_BASE");
    const log2 = Math.min(Number(base & 0x1fn), r.eventqsMax);
    const addr = Number(base & 0x000f_ffff_ffff_ffe0n);
    const size = 2 ** log2;
    const ptrMask = size * 2 - 1;
    const prodReg = Number(r.reg("EVENTQ_PROD"));
    const prod = prodReg & ptrMask;
    const consReg = Number(r.reg("EVENTQ_CONS"));
    const cons = consReg & ptrMask;
    if ((prod ^ cons) === size) {
      // Full: the record is discarded. EVENTQ_PROD.OVFLG [31] toggles when an overflow begins,
      // that is while OVFLG == EVENTQ_CONS.OVACKFLG; further losses in the same episode leave
      // it, until software acknowledges with OVACKFLG = OVFLG (7.4, 6.3.30-6.3.31).
      this.dropped++;
      if (((prodReg ^ consReg) & 0x8000_0000) === 0)
        r.setReg("EVENTQ_PROD", BigInt((prodReg ^ 0x8000_0000) >>> 0));
      return false;
    }
    const at = addr + (prod & (size - 1)) * 32;
    const page = this.#memory.writePage(Math.floor(at / 4096));
    if (page === null) {
      r.setReg("GERROR", r.reg("GERROR") ^ BigInt(Gerror.EVTQ_ABT_ERR));
      r.qStale = true;
      return false;
    }
    const w = (at % 4096) >>> 2;
    for (let i = 0; i < 4; i++) {
      page[w + 2 * i] = Number(words[i]! & 0xffff_ffffn);
      page[w + 2 * i + 1] = Number(words[i]! >> 32n);
    }
    const next = (prod + 1) & ptrMask;
    r.setReg("EVENTQ_PROD", BigInt(((prodReg & 0x8000_0000) | next) >>> 0));
    return true;
  }
}
