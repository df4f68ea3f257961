/**
 * The SMMUv3 hardware model (ARM IHI 0070): registers with their side effects, the
 * stream table, STE and CD decoding with the spec's configuration errors, the
 * VMSAv8-64 walker for stage 1, stage 2 and nested, the command queue consumer and the
 * event queue producer, the configuration cache and the IOTLB. Everything it knows
 * it reads from physical memory and registers, as hardware does; the driver half
 * (backend.ts) talks to it only through registers and memory.
 *
 * Guest-controlled memory is hostile: every loop is bounded by the levels of a walk
 * or the size of a queue, every address is checked against the memory map by
 * `readPage` (null = external abort), and nothing here throws for table contents.
 */

import type { Fault, FaultClass, PhysicalMemory, Translation, WalkStep } from "@iommu-kit/core";
import { Access, IommuError, makeFault, Perm } from "@iommu-kit/core";
import type { Iotlb } from "@iommu-kit/core/driver";
import { SmmuTlb, tlbTag } from "../fast-path.ts";
import { CMD_NAMES, CmdError, CmdOp } from "../format/command.ts";
import { EVENT_NAMES, EventClass, EventId, encodeEvent } from "../format/event.ts";
import { wordsToBytes } from "../format/fields.ts";
import { blockAllowed, levelShift } from "../format/lpae-pte.ts";
import { Cr0, Cr2, Gbpa, Gerror, PA_BITS, REG_OFFSETS, REG64 } from "./regs.ts";

const TWO32 = 4294967296;
/** 2^i for i in [0, 127] (an index outside reads undefined: callers fall back to `2 ** i`). */
const POW2 = Float64Array.from({ length: 128 }, (_, i) => 2 ** i);
const SID_SPAN = 2097152; // 2^21: config key = sid * 2^21 + ssid + 1
const MICRO_MASK = 1023;
// Access flags as literals for the hit path (core's Access.WRITE / EXEC / PRIV).
const A_WRITE = 2;
const A_EXEC = 4;
const A_PRIV = 8;

/** Translation modes of a decoded configuration. */
const MODE_ABORT = 0;
const MODE_BYPASS = 1;
const MODE_TRANSLATE = 2;

/** STE.Config kinds after decoding. */
const STE_ABORT = 0;
const STE_BYPASS = 1;
const STE_S1 = 2;
const STE_S2 = 3;
const STE_NESTED = 4;

/** The default of SteCfg.raw until a fetch sets the words read (shared, never written). */
const NO_WORDS = new Uint32Array(16);

/** A decoded STE (5.2). */
class SteCfg {
  kind: number = STE_ABORT;
  s1Fmt = 0;
  ctxPtr = 0;
  cdMax = 0;
  dss = 0;
  vmid = 0;
  s2g = 12;
  s2ias = 48;
  s2start = 0;
  s2ttb = 0;
  s2ps = 48;
  s2affd = false;
  s2ha = false;
  s2hd = false;
  s2r = false;
  raw: Uint32Array = NO_WORDS;
}

/** The default of a TransCfg's STE until #loadCfg sets the fetched one (shared, never written). */
const NO_STE = new SteCfg();

/** A decoded (STE, CD) pair: what one (StreamID, SubstreamID) translates with. */
export class TransCfg {
  mode: number = MODE_ABORT;
  s1 = false;
  s2 = false;
  tag = 0;
  vmid = 0;
  asid = 0;
  sid = 0;
  ssid = -1;
  ste: SteCfg = NO_STE;
  // Stage 1 (CD, 5.4).
  t0sz = 16;
  tg0 = 12;
  epd0 = false;
  ttb0 = 0;
  t1sz = 16;
  tg1 = 12;
  epd1 = true;
  ttb1 = 0;
  ips = 48;
  affd = false;
  ha = false;
  hd = false;
  had0 = false;
  had1 = false;
  wxn = false;
  uwxn = false;
  pan = false;
  tbi = 0;
  r = false;
}

/** Register values a hardware instance starts from (names without the SMMU_ prefix). */
export type RegisterValues = Readonly<Record<string, bigint>>;

/** The hardware's cache and walk counters. */
export interface HwCounters {
  iotlbHits: number;
  iotlbMisses: number;
  configHits: number;
  configMisses: number;
  walks: number;
  invalidations: number;
}

function classOf(id: number): FaultClass {
  switch (id) {
    case EventId.F_TRANSLATION:
      return "translation";
    case EventId.F_PERMISSION:
      return "permission";
    case EventId.F_ADDR_SIZE:
      return "address-size";
    case EventId.F_ACCESS:
      return "access-flag";
    case EventId.F_STE_FETCH:
    case EventId.F_CD_FETCH:
    case EventId.F_WALK_EABT:
      return "walk-abort";
    case EventId.F_STREAM_DISABLED:
      return "blocked";
    default:
      return "bad-config";
  }
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/**
 * log2 of the entries one Contiguous hint [52] spans (DDI 0487 D8.7.1): 4K granule 16 at
 * every level; 16K 128 at level 3 and 32 at level 2; 64K 32. The walk reports (and the
 * IOTLB caches) the whole run as one region; a misprogrammed run is the spec's
 * CONSTRAINED UNPREDICTABLE, here each page still translates through its own descriptor.
 */
function contiguousLg2(g: number, lvl: number): number {
  if (g === 12) return 4;
  if (g === 14) return lvl === 3 ? 7 : 5;
  return 5;
}
const CLASS_NAMES = ["CD", "TT", "IN", "RES"];

/** The SMMUv3 hardware: registers, structures in memory, caches. */
export class SmmuHw {
  readonly memory: PhysicalMemory;
  readonly tlb: SmmuTlb;
  /** Cache and walk counters. */
  readonly counters: HwCounters = {
    iotlbHits: 0,
    iotlbMisses: 0,
    configHits: 0,
    configMisses: 0,
    walks: 0,
    invalidations: 0,
  };
  /** Raw register values. */
  readonly #regs = new Map<string, bigint>();
  // Decoded ID registers.
  s1p: boolean = false;
  s2p: boolean = false;
  httu = 0;
  stallModel = 1;
  ttEndian = 2;
  ats = false;
  hyp = false;
  pri = false;
  twoLevelSt = false;
  cd2l = true;
  sidBits = 16;
  ssidBits = 20;
  oas = 48;
  gran4k = true;
  gran16k = true;
  gran64k = true;
  ril = true;
  had = true;
  cmdqsMax = 19;
  eventqsMax = 19;
  // Decoded control registers (hot path).
  #enabled = false;
  #gbpaAbort = false;
  #strtabBase = 0;
  #strtabLog2 = 0;
  #strtabSplit = 0;
  #strtab2l = false;
  // Config caches.
  readonly #steCache = new Map<number, SteCfg>();
  readonly #cfgCache = new Map<number, TransCfg>();
  #lastKey = -2;
  #lastCfg: TransCfg = new TransCfg();
  // Direct-mapped front of the config cache (slot = StreamID mod size, non-SSID and SSID alike).
  /** Per slot [key, IOTLB tag] side by side (one cache line per lookup); key -1 = empty. */
  #slotKT: Float64Array = new Float64Array(0);
  #slotCfgs: TransCfg[] = [];
  /** IOTLB tag of (sid, no SSID) indexed by the StreamID itself (sid <= #slotMask: no aliasing), -1 unknown. */
  #ridTag: Float64Array = new Float64Array(0);
  #lastTag = -1;
  #slotMask = 0;
  readonly #iotlb: Iotlb;
  // Micro-TLB in front of the IOTLB (as a TBU's): direct-mapped by 4K page, emptied by every TLBI.
  // Entry i is [vpn, tag, pa of the page, perms | sizeLg2 << 8] at 4i (one cache line); vpn -1 = empty.
  readonly #micro: Float64Array = new Float64Array((MICRO_MASK + 1) * 4).fill(-1);
  // CMDQ_PROD / CMDQ_CONS live here as numbers (the #regs entries are placeholders), and the
  // command queue's decoded configuration (CR0.CMDQEN, GERROR.CMDQ_ERR, CMDQ_BASE), redone
  // after any other register write: a submission is then free of bigint.
  #cmdqProd = 0;
  #cmdqCons = 0;
  #qStale = true;
  #qOn = false;
  #qAddr = 0;
  #qLog2 = 0;
  /** False while the micro-TLB holds nothing (a TLBI then skips emptying it). */
  #uLive = false;
  // Range of the TLBI being executed (#tlbiRange).
  #rAt = 0;
  #rLen = 0;
  /** IOTLB hits served by the fast path (each is also a config-cache hit). */
  #fastHits = 0;
  // Fault scratch.
  #fId = 0;
  #fS2 = 0;
  #fCls = 0;
  #fAddr = 0;
  #fRecord = false;
  #fBlocked = false;
  #fSid = 0;
  #fSsid = -1;
  #fInput = 0;
  #fInputBig: bigint | null = null;
  #fAccess = 0;
  // Walk results.
  #oa = 0;
  #lg2 = 12;
  #permP = 0;
  #permU = 0;
  #global = false;
  #s2Oa = 0;
  #s2Lg2 = 12;
  #s2Perm = 0;
  // explain(): collect steps, change nothing.
  #trace: WalkStep[] | null = null;
  /** Events written to the queue, oldest first, kept for callers that do not drain the queue. */
  eventsDropped = 0;

  constructor(memory: PhysicalMemory, registers: RegisterValues, tlbLg2: number) {
    this.memory = memory;
    this.tlb = new SmmuTlb(tlbLg2);
    this.#iotlb = this.tlb.iotlb;
    for (const name of Object.keys(REG_OFFSETS)) this.#regs.set(name, 0n);
    for (const [k, v] of Object.entries(registers)) {
      if (REG_OFFSETS[k] === undefined)
        throw new IommuError("EINVAL", `unknown SMMUv3 register ${k}`, { register: k });
      this.#regs.set(k, BigInt.asUintN(REG64.has(k) ? 64 : 32, v));
    }
    // CR0ACK follows CR0 for a snapshot taken of a running SMMU.
    if (registers.CR0ACK === undefined) this.#regs.set("CR0ACK", this.#regs.get("CR0")!);
    this.#cmdqProd = Number(this.#regs.get("CMDQ_PROD")!);
    this.#cmdqCons = Number(this.#regs.get("CMDQ_CONS")!);
    this.#decodeIdrs();
    this.#decodeControl();
  }

  #decodeIdrs(): void {
    const idr0 = Number(this.#regs.get("IDR0")!);
    const idr1 = Number(this.#regs.get("IDR1")!);
    const idr3 = Number(this.#regs.get("IDR3")!);
    const idr5 = Number(this.#regs.get("IDR5")!);
    this.s2p = (idr0 & 1) !== 0;
    this.s1p = (idr0 & 2) !== 0;
    this.httu = (idr0 >>> 6) & 3;
    this.hyp = ((idr0 >>> 9) & 1) !== 0;
    this.ats = ((idr0 >>> 10) & 1) !== 0;
    this.pri = ((idr0 >>> 16) & 1) !== 0;
    this.ttEndian = (idr0 >>> 21) & 3;
    this.stallModel = (idr0 >>> 24) & 3;
    this.twoLevelSt = ((idr0 >>> 27) & 3) === 1;
    this.cd2l = ((idr0 >>> 19) & 1) === 1;
    this.sidBits = idr1 & 0x3f;
    this.ssidBits = (idr1 >>> 6) & 0x1f;
    this.eventqsMax = (idr1 >>> 16) & 0x1f;
    this.cmdqsMax = (idr1 >>> 21) & 0x1f;
    this.had = ((idr3 >>> 2) & 1) !== 0;
    this.ril = ((idr3 >>> 10) & 1) !== 0;
    this.oas = PA_BITS[Math.min(idr5 & 7, 6)]!;
    this.gran4k = ((idr5 >>> 4) & 1) !== 0;
    this.gran16k = ((idr5 >>> 5) & 1) !== 0;
    this.gran64k = ((idr5 >>> 6) & 1) !== 0;
  }

  #decodeControl(): void {
    const cr0 = Number(this.#regs.get("CR0")!);
    this.#enabled = (cr0 & Cr0.SMMUEN) !== 0;
    this.#gbpaAbort = (Number(this.#regs.get("GBPA")!) & Gbpa.ABORT) !== 0;
    const base = this.#regs.get("STRTAB_BASE")!;
    this.#strtabBase = Number(base & 0x000f_ffff_ffff_ffc0n); // ADDR [51:6] (6.3.24)
    const cfg = Number(this.#regs.get("STRTAB_BASE_CFG")!);
    this.#strtabLog2 = cfg & 0x3f; // LOG2SIZE [5:0] (6.3.25)
    this.#strtabSplit = (cfg >>> 6) & 0x1f; // SPLIT [10:6]
    this.#strtab2l = ((cfg >>> 16) & 3) === 1 && this.twoLevelSt; // FMT [17:16]
  }

  // ---------------------------------------------------------------- registers

  /** Reads a register by name (64-bit registers whole). */
  readRegister(name: string): bigint {
    if (name === "CMDQ_PROD") return BigInt(this.#cmdqProd);
    if (name === "CMDQ_CONS") return BigInt(this.#cmdqCons);
    const v = this.#regs.get(name);
    if (v === undefined)
      throw new IommuError("EINVAL", `unknown SMMUv3 register ${name}`, { register: name });
    return v;
  }

  /** Writes a register by name, with the spec's side effects. Read-only registers ignore writes. */
  writeRegister(name: string, value: bigint): void {
    if (!this.#regs.has(name))
      throw new IommuError("EINVAL", `unknown SMMUv3 register ${name}`, { register: name });
    const v = BigInt.asUintN(REG64.has(name) ? 64 : 32, value);
    this.#qStale = true;
    switch (name) {
      case "IDR0":
      case "IDR1":
      case "IDR2":
      case "IDR3":
      case "IDR4":
      case "IDR5":
      case "IIDR":
      case "AIDR":
      case "CR0ACK":
      case "GERROR":
      case "STATUSR":
      case "IRQ_CTRLACK":
      case "AGBPA":
        return;
      case "CR0":
        this.#regs.set("CR0", v);
        this.#regs.set("CR0ACK", v & 0x1dfn); // CR0ACK mirrors CR0 once the update is done (6.3.10)
        this.#decodeControl();
        this.#consumeCmdq();
        return;
      case "IRQ_CTRL":
        this.#regs.set(name, v);
        this.#regs.set("IRQ_CTRLACK", v);
        return;
      case "GBPA":
        // UPDATE [31] applies the other fields and self-clears (6.3.14).
        if (v & 0x8000_0000n) this.#regs.set("GBPA", v & 0x7fff_ffffn);
        this.#decodeControl();
        return;
      case "GERRORN":
        this.#regs.set(name, v);
        this.#consumeCmdq();
        return;
      case "CMDQ_PROD":
        this.writeCmdqProd(Number(v));
        return;
      case "CMDQ_CONS":
        // Software may move CONS only while the queue is disabled (6.3.27).
        if ((this.#regs.get("CR0")! & BigInt(Cr0.CMDQEN)) === 0n) this.#cmdqCons = Number(v);
        return;
      case "EVENTQ_PROD":
        if ((this.#regs.get("CR0")! & BigInt(Cr0.EVTQEN)) === 0n) this.#regs.set(name, v);
        return;
      default:
        this.#regs.set(name, v);
        this.#decodeControl();
    }
  }

  /** MMIO read at a register offset (4 or 8 bytes). Unknown offsets read as zero (RAZ). */
  mmioRead(offset: number, size: 4 | 8): bigint {
    for (const [name, off] of Object.entries(REG_OFFSETS)) {
      if (off === offset)
        return size === 4 ? this.readRegister(name) & 0xffff_ffffn : this.readRegister(name);
      if (REG64.has(name) && off + 4 === offset && size === 4) return this.readRegister(name) >> 32n;
    }
    return 0n;
  }

  /** MMIO write at a register offset (4 or 8 bytes); unknown offsets are ignored (WI). */
  mmioWrite(offset: number, size: 4 | 8, value: bigint): void {
    for (const [name, off] of Object.entries(REG_OFFSETS)) {
      if (off === offset) {
        if (REG64.has(name) && size === 4) {
          const old = this.readRegister(name);
          this.writeRegister(name, (old & ~0xffff_ffffn) | (value & 0xffff_ffffn));
        } else this.writeRegister(name, value);
        return;
      }
      if (REG64.has(name) && off + 4 === offset && size === 4) {
        const old = this.readRegister(name);
        this.writeRegister(name, (old & 0xffff_ffffn) | ((value & 0xffff_ffffn) << 32n));
        return;
      }
    }
  }

  /** Every register by name. */
  registers(): Record<string, bigint> {
    const out = Object.fromEntries(this.#regs);
    out.CMDQ_PROD = BigInt(this.#cmdqProd);
    out.CMDQ_CONS = BigInt(this.#cmdqCons);
    return out;
  }

  // ---------------------------------------------------------------- caches

  /** Drops every cached configuration and translation (CFGI_ALL + TLBI_NSNH_ALL). */
  flushCaches(): void {
    this.#steCache.clear();
    this.#cfgCache.clear();
    this.#forget();
    this.tlb.clear();
    this.#micro.fill(-1);
    this.#uLive = false;
  }

  /** Forgets the fast indexes into the config cache (the cache itself is edited by the caller). */
  #forget(): void {
    this.#lastKey = -2;
    this.#slotKT.fill(-1);
    this.#ridTag.fill(-1);
  }

  #dropSid(sid: number): void {
    this.#steCache.delete(sid);
    for (const k of this.#cfgCache.keys()) if (Math.floor(k / SID_SPAN) === sid) this.#cfgCache.delete(k);
    this.#forget();
  }

  #dropCd(sid: number, ssid: number): void {
    this.#cfgCache.delete(sid * SID_SPAN + ssid + 1);
    if (ssid === 0) this.#cfgCache.delete(sid * SID_SPAN); // S1DSS=SSID0 serves non-SSID DMA with CD 0
    this.#forget();
  }

  #dropCds(sid: number): void {
    for (const k of this.#cfgCache.keys()) if (Math.floor(k / SID_SPAN) === sid) this.#cfgCache.delete(k);
    this.#forget();
  }

  // ---------------------------------------------------------------- command queue

  /** CMDQ_PROD as a number (the driver's submission path). */
  get cmdqProd(): number {
    return this.#cmdqProd;
  }

  /** CMDQ_CONS as a number (the driver's submission path). */
  get cmdqCons(): number {
    return this.#cmdqCons;
  }

  /** writeRegister("CMDQ_PROD", value) for a 32-bit number, without bigint. */
  writeCmdqProd(value: number): void {
    this.#cmdqProd = (value >>> 0) & 0x000f_ffff;
    this.#consumeCmdq();
  }

  /** Decodes CR0.CMDQEN, GERROR.CMDQ_ERR and CMDQ_BASE for #consumeCmdq. */
  #decodeCmdq(): void {
    this.#qStale = false;
    const cr0 = Number(this.#regs.get("CR0")!);
    const gerr = Number(this.#regs.get("GERROR")! ^ this.#regs.get("GERRORN")!);
    // Stopped until software acknowledges a CMDQ_ERR (7.1).
    this.#qOn = (cr0 & Cr0.CMDQEN) !== 0 && (gerr & Gerror.CMDQ_ERR) === 0;
    const base = this.#regs.get("CMDQ_BASE")!;
    this.#qLog2 = Math.min(Number(base & 0x1fn), this.cmdqsMax); // LOG2SIZE [4:0] capped by IDR1.CMDQS
    this.#qAddr = Number(base & 0x000f_ffff_ffff_ffe0n); // ADDR [51:5]
  }

  #consumeCmdq(): void {
    if (this.#qStale) this.#decodeCmdq();
    if (!this.#qOn) return;
    const addr = this.#qAddr;
    const size = POW2[this.#qLog2] ?? 2 ** this.#qLog2;
    const ptrMask = size * 2 - 1; // index + wrap bit
    const prod = this.#cmdqProd & ptrMask;
    let cons = this.#cmdqCons & ptrMask;
    for (let n = 0; n < size && cons !== prod; n++) {
      const at = addr + (cons & (size - 1)) * 16;
      const page = this.memory.readPage(Math.floor(at / 4096));
      let err: number = CmdError.ABT;
      if (page !== null) {
        const w = (at % 4096) >>> 2;
        err = this.#execute(page[w]!, page[w + 1]!, page[w + 2]!, page[w + 3]!);
      }
      if (err !== CmdError.NONE) {
        // CONS stays on the failing command, ERR [30:24] names the error (6.3.27).
        this.#cmdqCons = cons | (err << 24);
        this.#regs.set("GERROR", this.#regs.get("GERROR")! ^ BigInt(Gerror.CMDQ_ERR));
        this.#qStale = true;
        return;
      }
      cons = (cons + 1) & ptrMask;
    }
    this.#cmdqCons = cons;
  }

  /** Executes one command; returns a CERROR code. */
  #execute(a: number, b: number, c: number, d: number): number {
    if ((a >>> 10) & 1) return CmdError.ILL; // SSEC: Secure command on the Non-secure queue (4.1.3)
    const op = a & 0xff;
    if (op === CmdOp.CMD_SYNC || op === CmdOp.PREFETCH_CONFIG || op === CmdOp.PREFETCH_ADDR)
      return CmdError.NONE;
    if (op >= CmdOp.TLBI_NH_ALL && op <= CmdOp.TLBI_NSNH_ALL && this.#uLive) {
      this.#micro.fill(-1); // every TLBI empties the micro-TLB
      this.#uLive = false;
    }
    // Fields straight from the 32-bit halves (decodeCommandHalves' positions), no allocation.
    const sid = b >>> 0;
    const asid = b >>> 16;
    const tg = (c >>> 10) & 3;
    const vmid = this.s2p ? b & 0xffff : 0;
    const k = this.counters;
    switch (op) {
      case CmdOp.PREFETCH_CONFIG:
      case CmdOp.PREFETCH_ADDR:
      case CmdOp.CMD_SYNC:
        return CmdError.NONE;
      case CmdOp.CFGI_STE:
        k.invalidations++;
        this.#dropSid(sid);
        return CmdError.NONE;
      case CmdOp.CFGI_STE_RANGE: {
        k.invalidations++;
        const rng = c & 0x1f;
        if (rng >= 31) {
          this.#steCache.clear();
          this.#cfgCache.clear();
          this.#forget();
          return CmdError.NONE;
        }
        const span = 2 ** (rng + 1);
        const first = sid - (sid % span);
        for (const s of [...this.#steCache.keys()]) if (s >= first && s < first + span) this.#dropSid(s);
        for (const key of [...this.#cfgCache.keys()]) {
          const s = Math.floor(key / SID_SPAN);
          if (s >= first && s < first + span) this.#dropSid(s);
        }
        return CmdError.NONE;
      }
      case CmdOp.CFGI_CD:
        k.invalidations++;
        this.#dropCd(sid, a >>> 12);
        return CmdError.NONE;
      case CmdOp.CFGI_CD_ALL:
        k.invalidations++;
        this.#dropCds(sid);
        return CmdError.NONE;
      case CmdOp.TLBI_NH_ALL:
      case CmdOp.TLBI_NH_ASID:
      case CmdOp.TLBI_NH_VA:
      case CmdOp.TLBI_NH_VAA: {
        if (!this.s1p) return CmdError.ILL; // stage 1 not implemented
        if (tg !== 0 && !this.ril) return CmdError.ILL;
        k.invalidations++;
        if (op === CmdOp.TLBI_NH_ALL) this.tlb.invalidateNhAll(vmid);
        else if (op === CmdOp.TLBI_NH_ASID) this.tlb.invalidateAsid(vmid, asid);
        else {
          if (this.#tlbiRange(a, c, d))
            this.tlb.invalidateVa(vmid, op === CmdOp.TLBI_NH_VA ? asid : -1, this.#rAt, this.#rLen);
        }
        return CmdError.NONE;
      }
      case CmdOp.TLBI_S12_VMALL:
        if (!this.s2p) return CmdError.ILL;
        k.invalidations++;
        this.tlb.invalidateVmid(vmid);
        return CmdError.NONE;
      case CmdOp.TLBI_S2_IPA: {
        if (!this.s2p) return CmdError.ILL;
        if (tg !== 0 && !this.ril) return CmdError.ILL;
        k.invalidations++;
        if (this.#tlbiRange(a, c, d)) this.tlb.invalidateIpa(vmid, this.#rAt, this.#rLen);
        return CmdError.NONE;
      }
      case CmdOp.TLBI_NSNH_ALL:
        k.invalidations++;
        this.tlb.clear();
        return CmdError.NONE;
      case CmdOp.TLBI_EL2_ALL:
      case CmdOp.TLBI_EL2_ASID:
      case CmdOp.TLBI_EL2_VA:
      case CmdOp.TLBI_EL2_VAA:
        if (!this.hyp) return CmdError.ILL;
        k.invalidations++;
        this.tlb.clear();
        return CmdError.NONE;
      case CmdOp.ATC_INV:
        return this.ats ? CmdError.NONE : CmdError.ILL;
      case CmdOp.PRI_RESP:
        return this.pri ? CmdError.NONE : CmdError.ILL;
      case CmdOp.RESUME:
      case CmdOp.STALL_TERM:
        return this.stallModel === 1 ? CmdError.ILL : CmdError.NONE;
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

  /** Name of a command opcode ("CMD_UNKNOWN_0x7f" for others). */
  static commandName(op: number): string {
    return CMD_NAMES[op] ?? `CMD_UNKNOWN_${hex(op)}`;
  }

  // ---------------------------------------------------------------- event queue

  /** Writes an event record to the event queue; false when it was not recorded. */
  #writeEvent(words: readonly bigint[]): boolean {
    const cr0 = Number(this.#regs.get("CR0")!);
    if ((cr0 & Cr0.EVTQEN) === 0) return false;
    const base = this.#regs.get("EVENTQ_BASE")!;
    const log2 = Math.min(Number(base & 0x1fn), this.eventqsMax);
    const addr = Number(base & 0x000f_ffff_ffff_ffe0n);
    const size = 2 ** log2;
    const ptrMask = size * 2 - 1;
    const prodReg = Number(this.#regs.get("EVENTQ_PROD")!);
    const prod = prodReg & ptrMask;
    const cons = Number(this.#regs.get("EVENTQ_CONS")!) & ptrMask;
    if ((prod ^ cons) === size) {
      // Full: the record is discarded and EVENTQ_PROD.OVFLG [31] toggles (7.4.1).
      this.eventsDropped++;
      this.#regs.set("EVENTQ_PROD", BigInt((prodReg ^ 0x8000_0000) >>> 0));
      return false;
    }
    const at = addr + (prod & (size - 1)) * 32;
    const page = this.memory.writePage(Math.floor(at / 4096));
    if (page === null) {
      this.#regs.set("GERROR", this.#regs.get("GERROR")! ^ BigInt(Gerror.EVTQ_ABT_ERR));
      this.#qStale = true;
      return false;
    }
    const w = (at % 4096) >>> 2;
    for (let i = 0; i < 4; i++) {
      page[w + 2 * i] = Number(words[i]! & 0xffff_ffffn);
      page[w + 2 * i + 1] = Number(words[i]! >> 32n);
    }
    const next = (prod + 1) & ptrMask;
    this.#regs.set("EVENTQ_PROD", BigInt(((prodReg & 0x8000_0000) | next) >>> 0));
    return true;
  }

  // ---------------------------------------------------------------- faults

  #setFault(id: number, s2: number, cls: number, addr: number, record: boolean): false {
    this.#fId = id;
    this.#fS2 = s2;
    this.#fCls = cls;
    this.#fAddr = addr;
    this.#fRecord = record;
    this.#fBlocked = false;
    return false;
  }

  #step(
    what: string,
    address: number | null,
    note: string,
    raw?: readonly string[],
    fields?: Record<string, string | number | boolean>,
  ): void {
    if (this.#trace === null) return;
    this.#trace.push({
      what,
      address,
      note,
      ...(raw === undefined ? {} : { raw }),
      ...(fields === undefined ? {} : { fields }),
    });
  }

  /** Builds (and records, unless explaining) the fault of the current scratch. */
  #raise(): Fault {
    const id = this.#fId;
    const translationClass = id >= EventId.F_TRANSLATION && id <= EventId.F_PERMISSION;
    const walkEabt = id === EventId.F_WALK_EABT;
    const withAccess = translationClass || walkEabt;
    const a = this.#fAccess;
    const input = this.#fInputBig ?? BigInt(this.#fInput);
    const ssv = this.#fSsid >= 0 ? 1 : 0;
    const words = encodeEvent({
      id,
      streamId: this.#fSid,
      ssv,
      substreamId: ssv ? this.#fSsid : 0,
      rnw: withAccess ? (a & Access.WRITE ? 0 : 1) : 0,
      ind: withAccess ? (a & Access.EXEC ? 1 : 0) : 0,
      pnu: withAccess ? (a & Access.PRIV ? 1 : 0) : 0,
      s2: withAccess ? this.#fS2 : 0,
      cls: withAccess ? this.#fCls : 0,
      inputAddr: withAccess ? input : 0n,
      addr: BigInt(this.#fAddr),
    });
    const recorded = this.#trace === null && this.#fRecord ? this.#writeEvent(words) : false;
    const fields: Record<string, string | number | bigint | boolean | null> = {
      StreamID: this.#fSid,
      SSV: ssv,
      SubstreamID: ssv ? this.#fSsid : 0,
    };
    if (withAccess) {
      fields.RnW = a & Access.WRITE ? 0 : 1;
      fields.InD = a & Access.EXEC ? 1 : 0;
      fields.PnU = a & Access.PRIV ? 1 : 0;
      fields.S2 = this.#fS2;
      fields.CLASS = CLASS_NAMES[this.#fCls]!;
      fields.InputAddr = hex(input);
    }
    if (id === EventId.F_STE_FETCH || id === EventId.F_CD_FETCH || walkEabt)
      fields.FetchAddr = hex(this.#fAddr);
    else if (translationClass && this.#fS2) fields.IPA = hex(this.#fAddr - (this.#fAddr % 4096));
    return makeFault(this.#fBlocked ? "blocked" : classOf(id), recorded, {
      vendor: "arm-smmuv3",
      code: id,
      name: EVENT_NAMES[id] ?? `EVENT_${hex(id)}`,
      fields,
      raw: wordsToBytes(words),
    });
  }

  #blockedFault(name: string): Fault {
    return makeFault("blocked", false, {
      vendor: "arm-smmuv3",
      code: null,
      name,
      fields: { StreamID: this.#fSid, SSV: this.#fSsid >= 0 ? 1 : 0, SubstreamID: Math.max(this.#fSsid, 0) },
    });
  }

  // ---------------------------------------------------------------- configuration

  #read8(pa: number, out: Uint32Array, words: number): boolean {
    const page = this.memory.readPage(Math.floor(pa / 4096));
    if (page === null) return false;
    const w = (pa % 4096) >>> 2;
    for (let i = 0; i < words; i++) out[i] = page[w + i]!;
    return true;
  }

  readonly #buf = new Uint32Array(16);

  /** Locates and decodes the STE of `sid` (5.2); null on a fault. */
  #fetchSte(sid: number): SteCfg | null {
    const limit = Math.min(this.#strtabLog2, this.sidBits);
    if (sid >= (POW2[limit] ?? 2 ** limit)) {
      this.#step("stream table", null, `fault: C_BAD_STREAMID (StreamID >= 2^${limit})`);
      return this.#setFault(EventId.C_BAD_STREAMID, 0, 0, 0, this.#recInvSid()) || null;
    }
    let steAddr: number;
    if (this.#strtab2l) {
      // 2-level (3.3.2): SPLIT 6/8/10; other values behave as the nearest smaller one. We cap at LOG2SIZE.
      const split = Math.min(this.#strtabSplit >= 10 ? 10 : this.#strtabSplit >= 8 ? 8 : 6, limit);
      const l1Addr = this.#strtabBase + Math.floor(sid / (POW2[split] ?? 2 ** split)) * 8;
      if (!this.#read8(l1Addr, this.#buf, 2)) {
        this.#step("L1STD", l1Addr, "fault: F_STE_FETCH");
        return this.#setFault(EventId.F_STE_FETCH, 0, 0, l1Addr, true) || null;
      }
      const lo = this.#buf[0]!;
      const hi = this.#buf[1]!;
      let span = lo & 0x1f;
      if (span > 11) span = 0; // Span 12..31 behave as 0 (5.1)
      span = Math.min(span, split + 1);
      const l2Index = sid % (POW2[split] ?? 2 ** split);
      if (this.#trace !== null)
        this.#step(
          "L1STD",
          l1Addr,
          span === 0 ? "invalid (Span 0)" : `L2 of 2^${span - 1} STEs`,
          [hex((BigInt(hi) << 32n) | BigInt(lo))],
          { Span: lo & 0x1f },
        );
      if (span === 0 || l2Index >= 2 ** (span - 1)) {
        // Spec: beyond Span is C_BAD_STREAMID (QEMU says C_BAD_STE).
        return this.#setFault(EventId.C_BAD_STREAMID, 0, 0, 0, this.#recInvSid()) || null;
      }
      steAddr = (hi & 0xfffff) * TWO32 + (lo >>> 6) * 64 + l2Index * 64;
    } else {
      steAddr = this.#strtabBase + sid * 64;
    }
    const w = new Uint32Array(16);
    if (!this.#read8(steAddr, w, 16)) {
      this.#step("STE", steAddr, "fault: F_STE_FETCH");
      return this.#setFault(EventId.F_STE_FETCH, 0, 0, steAddr, true) || null;
    }
    const ste = new SteCfg();
    ste.raw = w;
    if ((w[0]! & 1) === 0) return this.#badSte(steAddr, w, "V=0");
    const config = (w[0]! >>> 1) & 7;
    if ((config & 4) === 0) {
      ste.kind = STE_ABORT; // Config 0b0xx: abort, no event (5.2)
      if (this.#trace !== null)
        this.#step("STE", steAddr, "abort (Config=0b0xx)", this.#rawWords(w, 8), { V: 1, Config: config });
      return ste;
    }
    if (config === 4) {
      ste.kind = STE_BYPASS;
      if (this.#trace !== null)
        this.#step("STE", steAddr, "bypass", this.#rawWords(w, 8), { V: 1, Config: config });
      return ste;
    }
    const s1 = (config & 1) !== 0;
    const s2 = (config & 2) !== 0;
    if ((s1 && !this.s1p) || (s2 && !this.s2p)) return this.#badSte(steAddr, w, "stage not implemented");
    ste.kind = s1 && s2 ? STE_NESTED : s1 ? STE_S1 : STE_S2;
    // STRW [95:94] is RES0 without IDR0.Hyp and IGNORED with stage 2; else 0bx1 is ILLEGAL (5.2).
    const strw = (w[2]! >>> 30) & 3;
    if (this.hyp && !s2 && (strw & 1) === 1) return this.#badSte(steAddr, w, `STRW=${strw}`);
    // EATS [93:92] is IGNORED without IDR0.ATS. Full ATS with S2S, split-stage outside nested (5.2).
    const eats = (w[2]! >>> 28) & 3;
    const s2s = ((w[5]! >>> 25) & 1) === 1;
    if (this.ats && s2 && s2s && (eats === 1 || eats === 3))
      return this.#badSte(steAddr, w, "EATS=Full ATS with S2S=1");
    if (this.ats && eats === 2 && (!(s1 && s2) || s2s))
      return this.#badSte(steAddr, w, "EATS=split-stage outside a nested STE");
    if (s1) {
      ste.s1Fmt = (w[0]! >>> 4) & 3;
      if (ste.s1Fmt === 3) ste.s1Fmt = 0; // S1Fmt 0b11: reserved, behaves as 0b00 (5.2)
      ste.ctxPtr = (w[1]! & 0xfffff) * TWO32 + (w[0]! >>> 6) * 64; // S1ContextPtr [51:6]
      // S1CDMax [63:59] is IGNORED without substreams (IDR1.SSIDSIZE = 0), else ILLEGAL above SSIDSIZE.
      ste.cdMax = this.ssidBits === 0 ? 0 : w[1]! >>> 27;
      ste.dss = w[2]! & 3;
      if (ste.dss === 3) ste.dss = 0; // S1DSS 0b11: reserved, behaves as 0b00 (terminate)
      if (ste.cdMax > this.ssidBits)
        return this.#badSte(steAddr, w, `S1CDMax ${ste.cdMax} > SSIDSIZE ${this.ssidBits}`);
      if (ste.cdMax > 0 && ste.s1Fmt !== 0 && !this.cd2l)
        return this.#badSte(steAddr, w, "2-level CD table without IDR0.CD2L");
      // S1STALLD [91] is ILLEGAL unless the stall model is configurable (STALL_MODEL = 0b00).
      if (((w[2]! >>> 27) & 1) === 1 && this.stallModel !== 0)
        return this.#badSte(steAddr, w, "S1STALLD without a configurable stall model");
      if (!s2 && ste.ctxPtr >= 2 ** this.oas) return this.#badSte(steAddr, w, "S1ContextPtr beyond OAS");
    }
    if (this.s2p) ste.vmid = w[4]! & 0xffff; // S2VMID tags stage-1 entries too when S2P=1
    if (s2) {
      const w5 = w[5]!;
      const t0sz = w5 & 0x3f;
      const sl0 = (w5 >>> 6) & 3;
      const tg = (w5 >>> 14) & 3;
      const ps = (w5 >>> 16) & 7;
      if (((w5 >>> 19) & 1) === 0) return this.#badSte(steAddr, w, "S2AA64=0 (AArch32 tables unsupported)");
      if (((w5 >>> 20) & 1) === 1 && this.ttEndian === 2)
        return this.#badSte(steAddr, w, "S2ENDI=1 on a little-endian-only SMMU");
      const g = tg === 0 ? 12 : tg === 1 ? 16 : tg === 2 ? 14 : 0;
      if (g === 0 || !this.#granuleOk(g)) return this.#badSte(steAddr, w, `S2TG=${tg}`);
      // eff_S2PS = MIN(S2PS, OAS); a larger or Reserved value behaves as the cap (5.2).
      let psBits = Math.min(ps === 7 ? 56 : PA_BITS[ps]!, this.oas);
      if (g !== 16) psBits = Math.min(psBits, 48);
      const ias = this.oas; // AArch64-only: IAS = OAS (3.4)
      if (t0sz > 39 || t0sz < 64 - Math.min(ias, g === 16 ? 52 : 48))
        return this.#badSte(steAddr, w, `S2T0SZ=${t0sz}`);
      // Start level from S2SL0 (D8.2): 4K 0/1/2 = L2/L1/L0; 16K/64K 0/1/2/3 = L3/L2/L1/L0.
      let start: number;
      if (g === 12) start = sl0 === 3 ? -1 : 2 - sl0;
      else start = 3 - sl0;
      if (start < 0 || (g === 16 && start === 0)) return this.#badSte(steAddr, w, `S2SL0=${sl0}`);
      const inBits = 64 - t0sz;
      const topBits = inBits - levelShift(g, start);
      // At least one index bit at the start level, at most 16 concatenated tables.
      if (topBits < 1 || topBits > g - 3 + 4)
        return this.#badSte(steAddr, w, `S2SL0=${sl0} inconsistent with S2T0SZ=${t0sz}`);
      if (((w5 >>> 25) & 1) === 1 && this.stallModel === 1)
        return this.#badSte(steAddr, w, "S2S=1 without stall support");
      const ttb = (w[7]! & 0xfffff) * TWO32 + (w[6]! >>> 4) * 16; // S2TTB [51:4]
      if (ttb >= 2 ** psBits) return this.#badSte(steAddr, w, "S2TTB beyond S2PS");
      const align = Math.max(64, 2 ** (topBits + 3));
      ste.s2g = g;
      ste.s2ias = inBits;
      ste.s2start = start;
      ste.s2ttb = ttb - (ttb % align);
      ste.s2ps = psBits;
      ste.s2affd = ((w5 >>> 21) & 1) === 1;
      // S2HA [56] / S2HD [55]: ILLEGAL beyond IDR0.HTTU; {S2HA,S2HD} = 0b01 behaves as 0b00 (5.2).
      const s2ha = ((w5 >>> 24) & 1) === 1;
      const s2hd = ((w5 >>> 23) & 1) === 1;
      if (s2ha && this.httu === 0) return this.#badSte(steAddr, w, "S2HA=1 without HTTU");
      if (s2hd && this.httu < 2) return this.#badSte(steAddr, w, "S2HD=1 without dirty-state HTTU");
      ste.s2ha = s2ha;
      ste.s2hd = s2ha && s2hd;
      ste.s2r = ((w5 >>> 26) & 1) === 1;
    }
    if (this.#trace !== null)
      this.#step("STE", steAddr, ["", "", "stage 1", "stage 2", "nested"][ste.kind]!, this.#rawWords(w, 8), {
        V: 1,
        Config: config,
        ...(s1
          ? { S1Fmt: ste.s1Fmt, S1ContextPtr: hex(ste.ctxPtr), S1CDMax: ste.cdMax, S1DSS: ste.dss }
          : {}),
        ...(s2
          ? {
              S2VMID: ste.vmid,
              S2T0SZ: 64 - ste.s2ias,
              S2TG: ste.s2g,
              StartLevel: ste.s2start,
              S2TTB: hex(ste.s2ttb),
              S2R: ste.s2r,
            }
          : {}),
      });
    return ste;
  }

  /** C_BAD_STE for the STE at `steAddr` (words `w`): records the fault, returns null. */
  #badSte(steAddr: number, w: Uint32Array, why: string): null {
    this.#step("STE", steAddr, `fault: C_BAD_STE (${why})`, this.#rawWords(w, 8));
    this.#setFault(EventId.C_BAD_STE, 0, 0, 0, true);
    return null;
  }

  #rawWords(w: Uint32Array, n: number): string[] {
    const out: string[] = [];
    for (let i = 0; i < n; i++)
      out.push(`0x${w[2 * i + 1]!.toString(16).padStart(8, "0")}${w[2 * i]!.toString(16).padStart(8, "0")}`);
    return out;
  }

  #recInvSid(): boolean {
    return (Number(this.#regs.get("CR2")!) & Cr2.RECINVSID) !== 0;
  }

  #granuleOk(g: number): boolean {
    return g === 12 ? this.gran4k : g === 14 ? this.gran16k : this.gran64k;
  }

  /** Reads 8 bytes (a descriptor) at an IPA (nested) or PA; null on a fault. */
  #fetchCfgWord(
    cfgSte: SteCfg,
    addr: number,
    nested: boolean,
    out: Uint32Array,
    words: number,
    fetchId: number,
    what: string,
  ): boolean {
    let pa = addr;
    if (nested) {
      if (!this.#walkS2(cfgSte, addr, Perm.R, EventClass.CD)) return false;
      pa = this.#s2Oa;
    }
    if (!this.#read8(pa, out, words)) {
      this.#step(what, pa, `fault: ${EVENT_NAMES[fetchId]}`);
      return this.#setFault(fetchId, 0, 0, pa, true);
    }
    return true;
  }

  /** Decodes the configuration for (sid, ssid); null on a fault (scratch set). */
  #loadCfg(sid: number, ssid: number, useCache: boolean): TransCfg | null {
    let ste = useCache ? this.#steCache.get(sid) : undefined;
    if (ste === undefined) {
      const fetched = this.#fetchSte(sid);
      if (fetched === null) return null;
      ste = fetched;
      if (useCache) this.#steCache.set(sid, ste);
    }
    const cfg = new TransCfg();
    cfg.sid = sid;
    cfg.ssid = ssid;
    cfg.ste = ste;
    cfg.vmid = ste.vmid;
    switch (ste.kind) {
      case STE_ABORT:
        cfg.mode = MODE_ABORT;
        return cfg;
      case STE_BYPASS:
        if (ssid >= 0) return this.#badSsid("stage 1 not enabled");
        cfg.mode = MODE_BYPASS;
        return cfg;
      case STE_S2:
        if (ssid >= 0) return this.#badSsid("stage 1 not enabled");
        cfg.mode = MODE_TRANSLATE;
        cfg.s2 = true;
        cfg.tag = tlbTag(cfg.vmid, -1);
        return cfg;
    }
    const nested = ste.kind === STE_NESTED;
    let index = 0;
    if (ste.cdMax === 0) {
      if (ssid >= 0) return this.#badSsid("S1CDMax=0");
    } else if (ssid < 0) {
      if (ste.dss === 0) {
        this.#step("STE", null, "fault: F_STREAM_DISABLED (S1DSS=terminate)");
        return this.#setFault(EventId.F_STREAM_DISABLED, 0, 0, 0, true) || null;
      }
      if (ste.dss === 1) {
        // S1DSS=bypass: stage 1 bypassed, stage 2 (if any) still applies.
        cfg.mode = nested ? MODE_TRANSLATE : MODE_BYPASS;
        cfg.s2 = nested;
        cfg.tag = tlbTag(cfg.vmid, -1);
        return cfg;
      }
    } else {
      if (ssid >= 2 ** ste.cdMax) return this.#badSsid(`SSID >= 2^S1CDMax (${ste.cdMax})`);
      if (ste.dss === 2 && ssid === 0) {
        // S1DSS=0b10 reserves substream 0 for non-SSID traffic (5.2): F_STREAM_DISABLED.
        this.#step("STE", null, "fault: F_STREAM_DISABLED (SSID 0 with S1DSS=SSID0)");
        return this.#setFault(EventId.F_STREAM_DISABLED, 0, 0, 0, true) || null;
      }
      index = ssid;
    }
    let cdAddr = ste.ctxPtr + index * 64;
    if (ste.cdMax > 0 && ste.s1Fmt !== 0) {
      const split = ste.s1Fmt === 1 ? 6 : 10; // 4K / 64K leaf tables of CDs (5.2 S1Fmt)
      const l1Addr = ste.ctxPtr + Math.floor(index / 2 ** split) * 8;
      if (!this.#fetchCfgWord(ste, l1Addr, nested, this.#buf, 2, EventId.F_CD_FETCH, "L1CD")) return null;
      const lo = this.#buf[0]!;
      const hi = this.#buf[1]!;
      if (this.#trace !== null)
        this.#step("L1CD", l1Addr, lo & 1 ? "valid" : "invalid", [hex((BigInt(hi) << 32n) | BigInt(lo))]);
      if ((lo & 1) === 0) return this.#badSsid("L1CD.V=0", true);
      cdAddr = (hi & 0xfffff) * TWO32 + (lo >>> 12) * 4096 + (index % 2 ** split) * 64;
    }
    const w = new Uint32Array(16);
    if (!this.#fetchCfgWord(ste, cdAddr, nested, w, 16, EventId.F_CD_FETCH, "CD")) return null;
    return this.#decodeCd(cfg, w, cdAddr);
  }

  /** C_BAD_SUBSTREAMID: records the fault (blocked: as F_STREAM_DISABLED would), returns null. */
  #badSsid(why: string, blocked = false): null {
    this.#step("CD table", null, `fault: C_BAD_SUBSTREAMID (${why})`);
    this.#setFault(EventId.C_BAD_SUBSTREAMID, 0, 0, 0, true);
    this.#fBlocked = blocked;
    return null;
  }

  #decodeCd(cfg: TransCfg, w: Uint32Array, cdAddr: number): TransCfg | null {
    const w0 = w[0]!;
    const w1 = w[1]!;
    if (w0 >>> 31 === 0) return this.#badCd(cdAddr, w, "V=0", true);
    if (((w1 >>> 9) & 1) === 0) return this.#badCd(cdAddr, w, "AA64=0 (AArch32 tables unsupported)");
    const bothOff = ((w0 >>> 14) & 1) === 1 && ((w0 >>> 30) & 1) === 1;
    if (!bothOff && ((w0 >>> 15) & 1) === 1 && this.ttEndian === 2)
      return this.#badCd(cdAddr, w, "ENDI=1 on a little-endian-only SMMU");
    const ips = w1 & 7;
    if (((w1 >>> 12) & 1) === 1 && this.stallModel === 1)
      return this.#badCd(cdAddr, w, "S=1 without stall support");
    cfg.epd0 = ((w0 >>> 14) & 1) === 1;
    cfg.epd1 = ((w0 >>> 30) & 1) === 1;
    cfg.t0sz = w0 & 0x3f;
    cfg.t1sz = (w0 >>> 16) & 0x3f;
    const tg0 = (w0 >>> 6) & 3;
    const tg1 = (w0 >>> 22) & 3;
    cfg.tg0 = [12, 16, 14, 0][tg0]!;
    cfg.tg1 = [0, 14, 12, 16][tg1]!;
    // eff_IPS = MIN(IPS, OAS); a larger or Reserved value behaves as the cap (5.4).
    let oa = Math.min(ips === 7 ? 56 : PA_BITS[ips]!, this.oas);
    cfg.ttb0 = (w[3]! & 0xfffff) * TWO32 + (w[2]! >>> 4) * 16;
    cfg.ttb1 = (w[5]! & 0xfffff) * TWO32 + (w[4]! >>> 4) * 16;
    for (const half of [0, 1]) {
      if (half === 0 ? cfg.epd0 : cfg.epd1) continue;
      const tsz = half === 0 ? cfg.t0sz : cfg.t1sz;
      const g = half === 0 ? cfg.tg0 : cfg.tg1;
      const ttb = half === 0 ? cfg.ttb0 : cfg.ttb1;
      if (g === 0 || !this.#granuleOk(g))
        return this.#badCd(cdAddr, w, `TG${half}=${half === 0 ? tg0 : tg1}`);
      if (tsz < 16 || tsz > 39) return this.#badCd(cdAddr, w, `T${half}SZ=${tsz}`);
      const halfOa = g === 16 ? oa : Math.min(oa, 48);
      if (ttb >= 2 ** halfOa) return this.#badCd(cdAddr, w, `TTB${half} beyond IPS`);
    }
    // 52-bit OAs need the 64K granule (LPA); 4K/16K descriptors reach 48 bits.
    if (!(cfg.tg0 === 16 && !cfg.epd0) && !(cfg.tg1 === 16 && !cfg.epd1)) oa = Math.min(oa, 48);
    cfg.ips = oa;
    cfg.affd = ((w1 >>> 3) & 1) === 1;
    cfg.wxn = ((w1 >>> 4) & 1) === 1;
    cfg.uwxn = ((w1 >>> 5) & 1) === 1;
    cfg.tbi = (w1 >>> 6) & 3;
    cfg.pan = ((w1 >>> 8) & 1) === 1;
    // HA [43] / HD [42] (5.4): ILLEGAL beyond IDR0.HTTU; {HD,HA} = 0b10 behaves as 0b00.
    const ha = ((w1 >>> 11) & 1) === 1;
    const hd = ((w1 >>> 10) & 1) === 1;
    if (ha && this.httu === 0) return this.#badCd(cdAddr, w, "HA=1 without HTTU");
    if (hd && this.httu < 2) return this.#badCd(cdAddr, w, "HD=1 without dirty-state HTTU");
    cfg.ha = ha;
    cfg.hd = ha && hd;
    cfg.r = ((w1 >>> 13) & 1) === 1;
    cfg.asid = w1 >>> 16;
    cfg.had0 = this.had && ((w[2]! >>> 1) & 1) === 1;
    cfg.had1 = this.had && ((w[4]! >>> 1) & 1) === 1;
    cfg.mode = MODE_TRANSLATE;
    cfg.s1 = true;
    cfg.s2 = cfg.ste.kind === STE_NESTED;
    cfg.tag = tlbTag(cfg.vmid, cfg.asid);
    if (this.#trace !== null)
      this.#step("CD", cdAddr, "valid", this.#rawWords(w, 4), {
        ASID: cfg.asid,
        T0SZ: cfg.t0sz,
        TG0: cfg.tg0,
        EPD0: cfg.epd0,
        T1SZ: cfg.t1sz,
        EPD1: cfg.epd1,
        IPS: cfg.ips,
        TTB0: hex(cfg.ttb0),
        TTB1: hex(cfg.ttb1),
        AFFD: cfg.affd,
        HA: cfg.ha,
        HD: cfg.hd,
        R: cfg.r,
      });
    return cfg;
  }
  /** C_BAD_CD for the CD at `cdAddr` (words `w`): records the fault, returns null. */
  #badCd(cdAddr: number, w: Uint32Array, why: string, blocked = false): null {
    this.#step("CD", cdAddr, `fault: C_BAD_CD (${why})`, this.#rawWords(w, 4));
    this.#setFault(EventId.C_BAD_CD, 0, 0, 0, true);
    this.#fBlocked = blocked;
    return null;
  }

  // ---------------------------------------------------------------- walks

  /** Stage-2 walk of `ipa` needing `need` perms; sets #s2Oa/#s2Lg2/#s2Perm or the fault (S2=1, `cls`). */
  #walkS2(ste: SteCfg, ipa: number, need: number, cls: number): boolean {
    const rec = ste.s2r;
    if (ipa >= (POW2[ste.s2ias] ?? 2 ** ste.s2ias)) {
      this.#step("S2", null, `fault: F_TRANSLATION (IPA beyond 2^${ste.s2ias})`);
      return this.#setFault(EventId.F_TRANSLATION, 1, cls, ipa, rec);
    }
    const g = ste.s2g;
    const ps = POW2[ste.s2ps] ?? 2 ** ste.s2ps;
    let table = ste.s2ttb;
    for (let lvl = ste.s2start; lvl <= 3; lvl++) {
      const shift = levelShift(g, lvl);
      const bits = lvl === ste.s2start ? ste.s2ias - shift : g - 3;
      const idx = Math.floor(ipa / (POW2[shift] ?? 2 ** shift)) % (POW2[bits] ?? 2 ** bits);
      const da = table + idx * 8;
      const page = this.memory.readPage(Math.floor(da / 4096));
      if (page === null) {
        this.#step(`S2 L${lvl}`, da, "fault: F_WALK_EABT");
        return this.#setFault(EventId.F_WALK_EABT, 1, cls, da, true);
      }
      const wi = (da % 4096) >>> 2;
      const lo = page[wi]!;
      const hi = page[wi + 1]!;
      if (this.#trace !== null)
        this.#step(
          `S2 L${lvl}`,
          da,
          (lo & 1) === 0 ? "invalid" : (lo & 2) !== 0 && lvl < 3 ? "table" : "leaf",
          [`0x${hi.toString(16).padStart(8, "0")}${lo.toString(16).padStart(8, "0")}`],
        );
      if (
        (lo & 1) === 0 ||
        (lvl === 3 && (lo & 2) === 0) ||
        (lvl < 3 && (lo & 2) === 0 && !blockAllowed(g, lvl))
      ) {
        return this.#setFault(EventId.F_TRANSLATION, 1, cls, ipa, rec);
      }
      let addr = (hi & 0xffff) * TWO32;
      if (g === 16 && ste.s2ps > 48) addr += ((lo >>> 12) & 0xf) * 2 ** 48; // LPA: OA[51:48] in [15:12]
      if (lvl < 3 && (lo & 2) !== 0) {
        table = addr + (lo >>> g) * (POW2[g] ?? 2 ** g);
        if (table >= ps) return this.#setFault(EventId.F_ADDR_SIZE, 1, cls, ipa, rec);
        continue;
      }
      const oa = addr + (lo >>> shift) * (POW2[shift] ?? 2 ** shift);
      if (oa >= ps) return this.#setFault(EventId.F_ADDR_SIZE, 1, cls, ipa, rec);
      let lo2 = lo;
      if ((lo & 0x400) === 0) {
        if (ste.s2ha && this.#trace === null)
          lo2 |= 0x400; // hardware access flag update (HTTU)
        else if (!ste.s2affd) return this.#setFault(EventId.F_ACCESS, 1, cls, ipa, rec);
      }
      let perm =
        ((lo2 >>> 6) & 1 ? Perm.R : 0) | ((lo2 >>> 7) & 1 ? Perm.W : 0) | ((hi >>> 22) & 1 ? 0 : Perm.X);
      if (
        (need & Perm.W) !== 0 &&
        (perm & Perm.W) === 0 &&
        ste.s2hd &&
        ((hi >>> 19) & 1) === 1 &&
        this.#trace === null
      ) {
        lo2 |= 0x80; // DBM: writable-clean becomes dirty (S2AP[1] = 1)
        perm |= Perm.W;
      }
      if ((perm & need) !== need) return this.#setFault(EventId.F_PERMISSION, 1, cls, ipa, rec);
      if (lo2 !== lo) {
        const wp = this.memory.writePage(Math.floor(da / 4096));
        if (wp !== null) wp[wi] = lo2;
      }
      this.#s2Oa = oa + (ipa % (POW2[shift] ?? 2 ** shift));
      this.#s2Lg2 = (hi >>> 20) & 1 ? shift + contiguousLg2(g, lvl) : shift;
      this.#s2Perm = perm;
      return true;
    }
    return this.#setFault(EventId.F_TRANSLATION, 1, cls, ipa, rec);
  }

  /**
   * Stage-1 walk of `va` (an offset below 2^(64-TxSZ) in the selected half) for `access`;
   * then stage 2 of the output when nested. Sets #oa/#lg2/#permP/#permU/#global.
   */
  #walkS1(cfg: TransCfg, half: number, va: number, access: number, need: number): boolean {
    const rec = cfg.r;
    const tsz = half === 0 ? cfg.t0sz : cfg.t1sz;
    const g = half === 0 ? cfg.tg0 : cfg.tg1;
    const had = half === 0 ? cfg.had0 : cfg.had1;
    const inBits = 64 - tsz;
    const start = 4 - Math.ceil((inBits - g) / (g - 3));
    const topBits = inBits - levelShift(g, start);
    const ttb0 = half === 0 ? cfg.ttb0 : cfg.ttb1;
    let table = ttb0 - (ttb0 % Math.max(64, POW2[topBits + 3] ?? 2 ** (topBits + 3)));
    const oaLimit = POW2[cfg.ips] ?? 2 ** cfg.ips;
    const nested = cfg.s2;
    let apTable = 0;
    let uxnTable = 0;
    let pxnTable = 0;
    for (let lvl = start; lvl <= 3; lvl++) {
      const shift = levelShift(g, lvl);
      const bits = lvl === start ? topBits : g - 3;
      const idx = Math.floor(va / (POW2[shift] ?? 2 ** shift)) % (POW2[bits] ?? 2 ** bits);
      const dIpa = table + idx * 8;
      let da = dIpa;
      if (nested) {
        if (!this.#walkS2(cfg.ste, dIpa, Perm.R, EventClass.TT)) return false;
        da = this.#s2Oa;
      }
      const page = this.memory.readPage(Math.floor(da / 4096));
      if (page === null) {
        this.#step(`S1 L${lvl}`, da, "fault: F_WALK_EABT");
        return this.#setFault(EventId.F_WALK_EABT, 0, EventClass.TT, da, true);
      }
      const wi = (da % 4096) >>> 2;
      const lo = page[wi]!;
      const hi = page[wi + 1]!;
      if (this.#trace !== null)
        this.#step(
          `S1 L${lvl}`,
          da,
          (lo & 1) === 0 ? "invalid" : (lo & 2) !== 0 && lvl < 3 ? "table" : `leaf 2^${shift}`,
          [`0x${hi.toString(16).padStart(8, "0")}${lo.toString(16).padStart(8, "0")}`],
          { index: idx },
        );
      if (
        (lo & 1) === 0 ||
        (lvl === 3 && (lo & 2) === 0) ||
        (lvl < 3 && (lo & 2) === 0 && !blockAllowed(g, lvl))
      ) {
        return this.#setFault(EventId.F_TRANSLATION, 0, EventClass.IN, 0, rec);
      }
      let addr = (hi & 0xffff) * TWO32;
      if (g === 16 && cfg.ips > 48) addr += ((lo >>> 12) & 0xf) * 2 ** 48;
      if (lvl < 3 && (lo & 2) !== 0) {
        table = addr + (lo >>> g) * (POW2[g] ?? 2 ** g);
        if (table >= oaLimit) return this.#setFault(EventId.F_ADDR_SIZE, 0, EventClass.IN, 0, rec);
        if (!had) {
          pxnTable |= (hi >>> 27) & 1; // PXNTable [59]
          uxnTable |= (hi >>> 28) & 1; // UXNTable [60]
          apTable |= (hi >>> 29) & 3; // APTable [62:61]
        }
        continue;
      }
      const oa = addr + (lo >>> shift) * (POW2[shift] ?? 2 ** shift);
      if (oa >= oaLimit) return this.#setFault(EventId.F_ADDR_SIZE, 0, EventClass.IN, 0, rec);
      let lo2 = lo;
      if ((lo & 0x400) === 0) {
        if (cfg.ha && this.#trace === null) lo2 |= 0x400;
        else if (!cfg.affd) return this.#setFault(EventId.F_ACCESS, 0, EventClass.IN, 0, rec);
      }
      // AP[2:1] (D8.4.1): AP[1] = EL0 access, AP[2] = read-only; APTable[1] no write, APTable[0] no EL0.
      const el0 = ((lo2 >>> 6) & 1) === 1 && (apTable & 1) === 0;
      let ro = ((lo2 >>> 7) & 1) === 1 || (apTable & 2) !== 0;
      if (
        ro &&
        (access & Access.WRITE) !== 0 &&
        cfg.hd &&
        ((hi >>> 19) & 1) === 1 &&
        (apTable & 2) === 0 &&
        this.#trace === null
      ) {
        lo2 &= ~0x80; // DBM: writable-clean becomes dirty (AP[2] = 0)
        ro = false;
      }
      const pxn = ((hi >>> 21) & 1) | pxnTable;
      const uxn = ((hi >>> 22) & 1) | uxnTable;
      const w = ro ? 0 : Perm.W;
      // EL1 may not execute EL0-writable memory (D8.4.3); WXN makes writable memory XN.
      let permP = Perm.R | w | (pxn || (el0 && !ro) || (cfg.wxn && !ro) ? 0 : Perm.X);
      if (cfg.pan && el0) permP &= Perm.X; // PAN: no privileged data access to EL0 memory
      const permU = el0
        ? Perm.R | w | (uxn || (cfg.wxn && !ro) ? 0 : Perm.X) // UWXN is IGNORED for VMSAv8-64 (5.4)
        : uxn
          ? 0
          : Perm.X;
      const perm = access & Access.PRIV ? permP : permU;
      if ((perm & need) !== need) return this.#setFault(EventId.F_PERMISSION, 0, EventClass.IN, 0, rec);
      if (lo2 !== lo) {
        const wp = this.memory.writePage(Math.floor(da / 4096));
        if (wp !== null) wp[wi] = lo2;
      }
      const out = oa + (va % (POW2[shift] ?? 2 ** shift));
      this.#global = ((lo2 >>> 11) & 1) === 0;
      const region = (hi >>> 20) & 1 ? shift + contiguousLg2(g, lvl) : shift;
      if (nested) {
        if (!this.#walkS2(cfg.ste, out, need, EventClass.IN)) return false;
        this.#oa = this.#s2Oa;
        this.#lg2 = Math.min(region, this.#s2Lg2);
        this.#permP = permP & this.#s2Perm;
        this.#permU = permU & this.#s2Perm;
      } else {
        this.#oa = out;
        this.#lg2 = region;
        this.#permP = permP;
        this.#permU = permU;
      }
      return true;
    }
    return this.#setFault(EventId.F_TRANSLATION, 0, EventClass.IN, 0, rec);
  }

  // ---------------------------------------------------------------- translate

  /** The configuration of (sid, ssid) through the config cache; null on a fault. */
  #config(sid: number, ssid: number): TransCfg | null {
    const key = sid * SID_SPAN + ssid + 1;
    if (key === this.#lastKey) {
      this.counters.configHits++;
      return this.#lastCfg;
    }
    // (a slot hit becomes the last-used config below)
    let cfg =
      this.#slotKT[(sid & this.#slotMask) * 2] === key
        ? this.#slotCfgs[sid & this.#slotMask]
        : this.#cfgCache.get(key);
    if (cfg !== undefined) {
      this.counters.configHits++;
    } else {
      this.counters.configMisses++;
      const loaded = this.#loadCfg(sid, ssid, true);
      if (loaded === null) return null;
      cfg = loaded;
      this.#cfgCache.set(key, cfg);
    }
    const tag = cfg.mode === MODE_TRANSLATE ? cfg.tag : -1;
    this.#lastKey = key;
    this.#lastCfg = cfg;
    this.#lastTag = tag;
    if (this.#slotMask === 0) {
      const n = 2 ** Math.min(Math.max(this.sidBits, 4), 16);
      this.#slotKT = new Float64Array(2 * n).fill(-1);
      this.#slotCfgs = new Array<TransCfg>(n).fill(cfg);
      this.#ridTag = new Float64Array(n).fill(-1);
      this.#slotMask = n - 1;
    }
    if (ssid === -1 && sid <= this.#slotMask) this.#ridTag[sid] = tag;
    const slot = sid & this.#slotMask;
    this.#slotKT[slot * 2] = key;
    this.#slotKT[slot * 2 + 1] = tag;
    this.#slotCfgs[slot] = cfg;
    return cfg;
  }

  /**
   * Translates one request (core's hot-path encoding). The IOTLB hit path does one key
   * compare, one hash probe and a few typed-array reads.
   */
  translate(sid: number, ssid: number, iova: number, access: number, out: Translation): boolean {
    // Kept small so it inlines into callers: the config's tag (last used, else the StreamID's
    // slot) and a micro-TLB hit; the rest (main IOTLB, walk) is #translateMiss.
    if (this.#enabled && iova >= 0) {
      let tag: number;
      // No SSID: the StreamID indexes its tag directly (undefined for a bad sid: slow path).
      if (ssid === -1 && sid <= this.#slotMask) tag = this.#ridTag[sid]!;
      else {
        const key = sid * SID_SPAN + ssid + 1;
        tag = this.#lastTag;
        if (key !== this.#lastKey) {
          const at = (sid & this.#slotMask) * 2;
          tag = this.#slotKT[at] === key ? this.#slotKT[at + 1]! : -1;
        }
      }
      const vpn = Math.floor(iova / 4096);
      const u = this.#micro;
      const x = (vpn & MICRO_MASK) * 4;
      if (tag >= 0 && u[x] === vpn && u[x + 1] === tag) {
        const packed = u[x + 3]!;
        const perm = access & A_PRIV ? packed & 7 : (packed >>> 4) & 0xf;
        const need = access & A_WRITE ? 2 : access & A_EXEC ? 4 : 1; // Perm.W / X / R
        if ((perm & need) === need) {
          this.#fastHits++;
          out.pa = u[x + 2]! + (iova - vpn * 4096);
          out.perm = perm;
          out.sizeLg2 = packed >>> 8;
          out.fault = null;
          return true;
        }
      }
    }
    return this.#translateMiss(sid, ssid, iova, access, out);
  }

  /** translate() past a micro-TLB hit. */
  #translateMiss(sid: number, ssid: number, iova: number, access: number, out: Translation): boolean {
    if (this.#enabled) {
      // The IOTLB tag of a translating config: by StreamID without an SSID, else the last
      // one used, else the StreamID's slot.
      let tag = -1;
      if (ssid === -1 && sid <= this.#slotMask) tag = this.#ridTag[sid] ?? -1;
      else {
        const key = sid * SID_SPAN + ssid + 1;
        if (key === this.#lastKey) tag = this.#lastTag;
        else {
          const at = (sid & this.#slotMask) * 2;
          if (this.#slotKT[at] === key) tag = this.#slotKT[at + 1]!;
        }
      }
      // (a negative iova would alias the IOTLB's empty-slot marker: leave misuse to the slow path)
      if (tag >= 0 && iova >= 0) {
        const vpn = Math.floor(iova / 4096);
        const need = access & A_WRITE ? 2 : access & A_EXEC ? 4 : 1; // Perm.W / X / R
        // Micro-TLB first (direct-mapped by page), then the main IOTLB.
        const u = this.#micro;
        const x = (vpn & MICRO_MASK) * 4;
        if (u[x] === vpn && u[x + 1] === tag) {
          const packed = u[x + 3]!;
          const perm = access & A_PRIV ? packed & 7 : (packed >>> 4) & 0xf;
          if ((perm & need) === need) {
            this.#fastHits++;
            out.pa = u[x + 2]! + (iova - vpn * 4096);
            out.perm = perm;
            out.sizeLg2 = packed >>> 8;
            out.fault = null;
            return true;
          }
        }
        const iotlb = this.#iotlb;
        const slot = iotlb.lookup(tag, vpn);
        if (slot >= 0) {
          const packed = iotlb.perms[slot]!;
          const perm = access & A_PRIV ? packed & 7 : packed >>> 4;
          if ((perm & need) === need) {
            this.#fastHits++;
            this.#uLive = true;
            u[x] = vpn;
            u[x + 1] = tag;
            u[x + 2] = iotlb.pas[slot]!;
            u[x + 3] = (packed & 0xff) | (iotlb.sizes[slot]! << 8);
            out.pa = iotlb.pas[slot]! + (iova - vpn * 4096);
            out.perm = perm;
            out.sizeLg2 = iotlb.sizes[slot]!;
            out.fault = null;
            return true;
          }
        }
      }
    }
    return this.#translateSlow(sid, ssid, iova, null, access, out);
  }

  /** Translates an address of any width (TTB1 VAs); never uses the IOTLB. */
  translateBigInto(sid: number, ssid: number, iova: bigint, access: number, out: Translation): boolean {
    return this.#translateSlow(sid, ssid, 0, iova, access, out);
  }

  #translateSlow(
    sid: number,
    ssid: number,
    iova: number,
    big: bigint | null,
    access: number,
    out: Translation,
  ): boolean {
    if (!Number.isInteger(sid) || sid < 0 || sid >= TWO32)
      throw new RangeError(`StreamID ${sid} is not a 32-bit value`);
    if (!Number.isInteger(ssid) || ssid < -1 || ssid >= 2 ** 20)
      throw new RangeError(`SubstreamID ${ssid} is not -1 or a 20-bit value`);
    if (big === null && (!Number.isSafeInteger(iova) || iova < 0))
      throw new RangeError(`iova ${iova} is not below 2^53`);
    if (big !== null && (big < 0n || big >= 1n << 64n))
      throw new RangeError(`iova ${big} is not a 64-bit value`);
    this.#fSid = sid;
    this.#fSsid = ssid;
    this.#fInput = iova;
    this.#fInputBig = big;
    this.#fAccess = access;
    const need = access & Access.WRITE ? Perm.W : access & Access.EXEC ? Perm.X : Perm.R;
    if (!this.#enabled) {
      // SMMUEN=0: GBPA decides (6.3.14).
      if (this.#gbpaAbort) {
        out.fault = this.#blockedFault("GBPA_ABORT");
        return false;
      }
      return this.#bypass(iova, big, out, false);
    }
    const cfg = this.#trace !== null ? this.#loadCfg(sid, ssid, false) : this.#config(sid, ssid);
    if (cfg === null) {
      out.fault = this.#raise();
      return false;
    }
    if (cfg.mode === MODE_ABORT) {
      out.fault = this.#blockedFault("STE_ABORT");
      return false;
    }
    if (cfg.mode === MODE_BYPASS) return this.#bypass(iova, big, out, true);
    // Input address: stage 1 selects TTB0/TTB1 from the top bits (3.4.1, D8.1.4).
    let half = 0;
    let va = iova;
    if (cfg.s1) {
      if (big === null) {
        // A number is below 2^53: VA[55] = 0, so only TTB0's range (or the gap above it) applies.
        if (cfg.epd0 || va >= (POW2[64 - cfg.t0sz] ?? 2 ** (64 - cfg.t0sz))) {
          this.#step("S1", null, "fault: F_TRANSLATION (EPD0, or above TTB0's range)");
          return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
        }
      } else {
        // VA[55] selects the half; with TBIx the top byte is replaced by VA[55]'s sign extension.
        const upper = ((big >> 55n) & 1n) === 1n;
        const tbi = upper ? cfg.tbi & 2 : cfg.tbi & 1;
        let top = tbi ? BigInt.asUintN(56, big) : big;
        if (tbi && upper) top |= 0xffn << 56n;
        if (top < 1n << BigInt(64 - cfg.t0sz)) {
          va = Number(top);
          if (cfg.epd0) return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
        } else if (top >= (1n << 64n) - (1n << BigInt(64 - cfg.t1sz))) {
          if (cfg.epd1) return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
          half = 1;
          va = Number(top & ((1n << BigInt(64 - cfg.t1sz)) - 1n));
        } else {
          this.#step("S1", null, "fault: F_TRANSLATION (between the TTB0 and TTB1 ranges)");
          return this.#fail(EventId.F_TRANSLATION, cfg.r, out);
        }
      }
    } else {
      // Stage 1 bypassed: the input must fit the IAS (3.4.3), then it is the IPA.
      if (big !== null) {
        if (big >= 1n << BigInt(this.oas)) return this.#fail(EventId.F_ADDR_SIZE, false, out);
        va = Number(big);
      } else if (iova >= (POW2[this.oas] ?? 2 ** this.oas))
        return this.#fail(EventId.F_ADDR_SIZE, false, out);
    }
    this.counters.iotlbMisses++;
    this.counters.walks++;
    let ok: boolean;
    if (cfg.s1) ok = this.#walkS1(cfg, half, va, access, need);
    else {
      ok = this.#walkS2(cfg.ste, va, need, EventClass.IN);
      if (ok) {
        this.#oa = this.#s2Oa;
        this.#lg2 = this.#s2Lg2;
        this.#permP = this.#s2Perm;
        this.#permU = this.#s2Perm;
        this.#global = false;
      }
    }
    if (!ok) {
      if (this.#fId >= EventId.F_TRANSLATION && this.#fS2 === 0 && this.#fId !== EventId.F_WALK_EABT)
        this.#fAddr = 0;
      out.fault = this.#raise();
      return false;
    }
    if (this.#trace === null && big === null) {
      this.tlb.insert(cfg.tag, iova, this.#oa, this.#permP, this.#permU, this.#lg2, this.#global);
    }
    out.pa = this.#oa;
    out.perm = access & Access.PRIV ? this.#permP : this.#permU;
    out.sizeLg2 = this.#lg2;
    out.fault = null;
    return true;
  }

  #fail(id: number, record: boolean, out: Translation): false {
    this.#setFault(id, 0, EventClass.IN, 0, record);
    out.fault = this.#raise();
    return false;
  }

  /** Bypass: the input is the output; beyond the OAS it is an address-size fault (no PA there). */
  #bypass(iova: number, big: bigint | null, out: Translation, record: boolean): boolean {
    if (big !== null) {
      if (big >= 1n << BigInt(this.oas)) return this.#fail(EventId.F_ADDR_SIZE, record, out);
      iova = Number(big);
    } else if (iova >= (POW2[this.oas] ?? 2 ** this.oas)) return this.#fail(EventId.F_ADDR_SIZE, record, out);
    out.pa = iova;
    out.perm = Perm.R | Perm.W | Perm.X;
    out.sizeLg2 = 12;
    out.fault = null;
    return true;
  }

  /** The walk of one request, step by step, without touching caches, memory or the event queue. */
  explain(sid: number, ssid: number, iova: bigint, access: number): WalkStep[] {
    const steps: WalkStep[] = [];
    this.#trace = steps;
    const out: Translation = { pa: 0, perm: 0, sizeLg2: 0, fault: null };
    const saved = { ...this.counters };
    try {
      const ok = this.#translateSlow(sid, ssid, 0, iova, access, out);
      steps.push({
        what: "result",
        address: ok ? out.pa : null,
        note: ok
          ? `pa ${hex(out.pa)} perm ${out.perm} size 2^${out.sizeLg2}`
          : `fault: ${out.fault?.vendor.name} (${out.fault?.class})`,
      });
    } finally {
      this.#trace = null;
      Object.assign(this.counters, saved);
    }
    return steps;
  }

  /** The decoded STE (and CD when stage 1 is on) of a StreamID, for dumps; no caches touched. */
  describe(sid: number, ssid = -1): WalkStep[] {
    const steps: WalkStep[] = [];
    this.#trace = steps;
    try {
      this.#fSid = sid;
      this.#fSsid = ssid;
      this.#loadCfg(sid, ssid, false);
    } finally {
      this.#trace = null;
    }
    return steps;
  }

  /** The counters, with the fast path's hits folded in. */
  snapshotCounters(): HwCounters {
    const c = this.counters;
    return { ...c, iotlbHits: c.iotlbHits + this.#fastHits, configHits: c.configHits + this.#fastHits };
  }

  /** True when the SMMU translates (CR0.SMMUEN). */
  get enabled(): boolean {
    return this.#enabled;
  }
}
