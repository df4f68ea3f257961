/**
 * The SMMUv3 register file (ARM IHI 0070 chapter 6): every register by name with the
 * spec's write side effects (read-only IDRs, CR0ACK following CR0 (6.3.10), GBPA.UPDATE
 * (6.3.14), IRQ_CTRLACK, CMDQ_CONS and EVENTQ_PROD writable only while their queue is
 * off (6.3.27, 6.3.30)), MMIO access by offset (6.2, 32-bit halves of 64-bit registers),
 * and the decoded ID (6.3.1-6.3.6) and control (6.3.9, 6.3.14, 6.3.24-6.3.25) fields the
 * other rooms read as plain numbers. CMDQ_PROD / CMDQ_CONS are kept as numbers, so a
 * command submission is free of bigint. The hardware class extends this one: writes that
 * start the command queue (CR0, GERRORN, CMDQ_PROD) call `consumeCommands()`, which the
 * hardware overrides to run the queue.
 */

import { IommuError } from "@iommu-kit/core";
import { Cr0, Cr2, Gbpa, PA_BITS, REG_OFFSETS, REG64 } from "./format/registers.ts";

/** Register values a hardware instance starts from (names without the SMMU_ prefix). */
export type RegisterValues = Readonly<Record<string, bigint>>;

/** The register file and its decoded fields. */
export class RegisterFile {
  /** Raw register values. */
  readonly #regs = new Map<string, bigint>();
  // Decoded ID registers.
  s1p: boolean = false;
  s2p: boolean = false;
  httu = 0;
  stallModel = 1;
  /** IDR5.STALL_MAX: stalled transactions the SMMU holds at most (6.3.6). */
  stallMax = 0;
  /** IDR0.COHACC: coherent table and queue accesses (6.3.1). */
  coherent = false;
  /** IDR3.FWB: STE.S2FWB is supported (6.3.4). */
  fwb = false;
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
  // Decoded control registers (read on the hot path).
  /** @internal CR0.SMMUEN. */
  smmuen = false;
  /** @internal GBPA.ABORT. */
  gbpaAbort = false;
  /** @internal STRTAB_BASE.ADDR as the SMMU uses it: aligned to the table (6.3.24). */
  strtabBase = 0;
  /** @internal STRTAB_BASE_CFG.LOG2SIZE. */
  strtabLog2 = 0;
  /** @internal STRTAB_BASE_CFG.SPLIT in effect: 6, 8 or 10 (reserved values behave as 6, 6.3.25). */
  strtabSplit = 0;
  /** @internal STRTAB_BASE_CFG.FMT is 2-level (and IDR0.ST_LEVEL allows it). */
  strtab2l = false;
  /** @internal CMDQ_PROD (the register map's entry is a placeholder). */
  qProd = 0;
  /** @internal CMDQ_CONS, ERR [30:24] included. */
  qCons = 0;
  /** @internal Set by any register write: the command queue redecodes its configuration. */
  qStale = true;

  constructor(registers: RegisterValues) {
    for (const name of Object.keys(REG_OFFSETS)) this.#regs.set(name, 0n);
    for (const [k, v] of Object.entries(registers)) {
      if (REG_OFFSETS[k] === undefined)
        throw new IommuError("EINVAL", `unknown SMMUv3 register ${k}`, { register: k });
      this.#regs.set(k, BigInt.asUintN(REG64.has(k) ? 64 : 32, v));
    }
    // CR0ACK follows CR0 for a snapshot taken of a running SMMU.
    if (registers.CR0ACK === undefined) this.#regs.set("CR0ACK", this.#regs.get("CR0")!);
    // PROD/CONS: RD/WR [19:0]; a snapshot's CONS.ERR is kept only if it is a CERROR code (7.1).
    this.qProd = Number(this.#regs.get("CMDQ_PROD")!) & 0x000f_ffff;
    const cons = Number(this.#regs.get("CMDQ_CONS")!);
    const err = (cons >>> 24) & 0x7f;
    this.qCons = (cons & 0x000f_ffff) | (err <= 3 ? err << 24 : 0);
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
    this.coherent = ((idr0 >>> 4) & 1) !== 0;
    this.fwb = ((idr3 >>> 8) & 1) !== 0;
    this.stallMax = this.stallModel === 1 ? 0 : idr5 >>> 16;
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
    this.smmuen = (cr0 & Cr0.SMMUEN) !== 0;
    this.gbpaAbort = (Number(this.#regs.get("GBPA")!) & Gbpa.ABORT) !== 0;
    const base = this.#regs.get("STRTAB_BASE")!;
    const cfg = Number(this.#regs.get("STRTAB_BASE_CFG")!);
    this.strtabLog2 = cfg & 0x3f; // LOG2SIZE [5:0] (6.3.25)
    // SPLIT [10:6]: 6, 8 or 10; "other values are reserved, behave as 6" (6.3.25).
    const split = (cfg >>> 6) & 0x1f;
    this.strtabSplit = split === 8 || split === 10 ? split : 6;
    // FMT [17:16]: 0b01 2-level (with IDR0.ST_LEVEL); other values behave as linear (6.3.25).
    this.strtab2l = ((cfg >>> 16) & 3) === 1 && this.twoLevelSt;
    // ADDR [51:6] (6.3.24), aligned by the SMMU to the table, from the literal LOG2SIZE:
    // linear ADDR[LOG2SIZE + 5:0] = 0; 2-level ADDR[MAX(5, LOG2SIZE - SPLIT - 1 + 3):0] = 0.
    const alignLg2 = this.strtab2l
      ? Math.max(5, this.strtabLog2 - this.strtabSplit + 2) + 1
      : this.strtabLog2 + 6;
    const addr = Number(base & 0x000f_ffff_ffff_ffc0n);
    this.strtabBase = alignLg2 >= 52 ? 0 : addr - (addr % 2 ** alignLg2);
  }

  /** @internal The raw value of a register the map holds (no CMDQ_PROD / CMDQ_CONS). */
  reg(name: string): bigint {
    return this.#regs.get(name)!;
  }

  /** @internal Sets a register as hardware does (no side effects, no decode). */
  setReg(name: string, value: bigint): void {
    this.#regs.set(name, value);
  }

  /** @internal CR2.RECINVSID: C_BAD_STREAMID is recorded (6.3.12). */
  recInvSid(): boolean {
    return (Number(this.#regs.get("CR2")!) & Cr2.RECINVSID) !== 0;
  }

  /** @internal IDR5.GRANxK for a granule of 2^g bytes. */
  granuleOk(g: number): boolean {
    return g === 12 ? this.gran4k : g === 14 ? this.gran16k : this.gran64k;
  }

  /** Runs the command queue after a write that may start it (the hardware overrides this). */
  protected consumeCommands(): void {}

  /** Reads a register by name (64-bit registers whole). */
  readRegister(name: string): bigint {
    if (name === "CMDQ_PROD") return BigInt(this.qProd);
    if (name === "CMDQ_CONS") return BigInt(this.qCons);
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
    this.qStale = true;
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
        this.consumeCommands();
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
        this.consumeCommands();
        return;
      case "CMDQ_PROD":
        this.writeCmdqProd(Number(v));
        return;
      case "CMDQ_CONS":
        // Software may move CONS only while the queue is disabled (6.3.27).
        // RD [19:0] only: ERR [30:24] is the SMMU's, so it reads a CERROR code (7.1) or 0.
        if ((this.#regs.get("CR0")! & BigInt(Cr0.CMDQEN)) === 0n)
          this.qCons = (this.qCons & 0x7f00_0000) | (Number(v) & 0x000f_ffff);
        return;
      case "STRTAB_BASE":
      case "STRTAB_BASE_CFG":
        // Guarded by SMMUEN: a write while CR0.SMMUEN or CR0ACK.SMMUEN is 1 is IGNORED
        // (SMMUv3.2 and later, 6.3.24-6.3.25), so cached STEs stay those of the table in use.
        if (((this.#regs.get("CR0")! | this.#regs.get("CR0ACK")!) & BigInt(Cr0.SMMUEN)) !== 0n) return;
        this.#regs.set(name, v);
        this.#decodeControl();
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
    out.CMDQ_PROD = BigInt(this.qProd);
    out.CMDQ_CONS = BigInt(this.qCons);
    return out;
  }

  /** CMDQ_PROD as a number (the driver's submission path). */
  get cmdqProd(): number {
    return this.qProd;
  }

  /** CMDQ_CONS as a number (the driver's submission path). */
  get cmdqCons(): number {
    return this.qCons;
  }

  /** writeRegister("CMDQ_PROD", value) for a 32-bit number, without bigint. */
  writeCmdqProd(value: number): void {
    this.qProd = (value >>> 0) & 0x000f_ffff;
    this.consumeCommands();
  }

  /** True when the SMMU translates (CR0.SMMUEN). */
  get enabled(): boolean {
    return this.smmuen;
  }
}
