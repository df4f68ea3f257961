/**
 * The VT-d hardware model's register file (Intel VT-d spec chapter 10, 11.4): reads
 * and writes of 4 or 8 bytes with the spec's side effects: GCMD -> GSTS (SRTP latching
 * RTADDR, TE, QIE), CCMD and IOTLB/IVA register-based invalidation (spec 6.5.1,
 * 10.4.7-10.4.8), FSTS write-1-to-clear and FECTL/IECTL masking, FRCD F bits; the
 * page request registers 0xC0-0xEC go to prq.ts. The queued-invalidation engine and
 * fault recording it builds on are in queues.ts, the
 * caches and walks below that in fast-path.ts (levels as generic_pt/fmt/vtdss.h:
 * PTE = 0 ... PML5E = 4).
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import { field, setField } from "@iommu-kit/core/driver";
import type { CapFields, EcapFields } from "./format/registers.ts";
import { decodeCap, decodeEcap, Fectl, Fsts, Gcmd, Reg, VER_VALUE } from "./format/registers.ts";
import { VtdQueues } from "./queues.ts";

/** Options of a hardware model instance. */
export interface HardwareOptions {
  readonly cap: bigint;
  readonly ecap: bigint;
  /** Host address width in bits (from the DMAR table, not a register). */
  readonly haw: number;
  /** log2 of IOTLB slots. */
  readonly iotlbSizeLg2?: number;
}

const U64 = (1n << 64n) - 1n;

/** One VT-d remapping unit. */
export class VtdHardware extends VtdQueues {
  readonly capReg: bigint;
  readonly ecapReg: bigint;
  /** Offset of IVA_REG (IOTLB_REG is at +8). */
  readonly ivaOffset: number;
  /** Offset of the first FRCD_REG. */
  readonly frcdOffset: number;

  gcmd = 0;
  rtaddr = 0n;
  ccmd = 0n;
  fedata = 0;
  feaddr = 0;
  feuaddr = 0;
  iva = 0n;
  iotlbReg = 0n;

  constructor(memory: PhysicalMemory, o: HardwareOptions) {
    const cap: CapFields = decodeCap(o.cap);
    const ecap: EcapFields = decodeEcap(o.ecap);
    super(memory, cap, ecap, o.haw, o.iotlbSizeLg2 ?? 12);
    this.capReg = o.cap;
    this.ecapReg = o.ecap;
    this.ivaOffset = ecap.iro;
    this.frcdOffset = cap.fro;
  }

  // ---------------------------------------------------------------- registers

  /** Reads a register (4 or 8 bytes at a 4-aligned offset). Unknown offsets read 0. */
  readRegister(offset: number, size: 4 | 8 = 8): bigint {
    const base = offset & ~7;
    const v = this.#read64(base);
    if (size === 8) return v;
    return offset & 4 ? v >> 32n : v & 0xffffffffn;
  }

  #read64(base: number): bigint {
    switch (base) {
      case Reg.VER:
        return VER_VALUE;
      case Reg.CAP:
        return this.capReg;
      case Reg.ECAP:
        return this.ecapReg;
      case Reg.GCMD:
        // GCMD reads as 0 (spec 11.4.4); GSTS is the high half.
        return BigInt(this.gsts >>> 0) << 32n;
      case Reg.RTADDR:
        return this.rtaddr;
      case Reg.CCMD:
        return this.ccmd;
      case 0x30:
        return BigInt(this.fsts >>> 0) << 32n;
      case 0x38:
        return BigInt(this.fectl >>> 0) | (BigInt(this.fedata >>> 0) << 32n);
      case 0x40:
        return BigInt(this.feaddr >>> 0) | (BigInt(this.feuaddr >>> 0) << 32n);
      case Reg.IQH:
        return this.iqh;
      case Reg.IQT:
        return this.iqt;
      case Reg.IQA:
        return this.iqa;
      case 0x98:
        return BigInt(this.ics >>> 0) << 32n;
      case 0xa0:
        return BigInt(this.iectl >>> 0);
      case Reg.IQERCD:
        return this.iqercd;
    }
    const pr = this.prq.read64(base);
    if (pr !== null) return pr;
    if (base === this.ivaOffset) return this.iva;
    if (base === this.ivaOffset + 8) return this.iotlbReg;
    const f = base - this.frcdOffset;
    if (f >= 0 && f < this.nfr * 16) return this.frcd[f >>> 3]!;
    return 0n;
  }

  /** Writes a register (4 or 8 bytes), with the spec's side effects. */
  writeRegister(offset: number, value: bigint, size: 4 | 8 = 8): void {
    const base = offset & ~7;
    let v = BigInt.asUintN(64, value);
    if (size === 4) {
      v &= 0xffffffffn;
      const old = this.#read64(base);
      v = offset & 4 ? (old & 0xffffffffn) | (v << 32n) : (old & ~0xffffffffn & U64) | v;
    }
    // 32-bit registers inside a 64-bit slot: pick the written half.
    const lo32 = Number(v & 0xffffffffn);
    const hi32 = Number(v >> 32n);
    switch (base) {
      case Reg.GCMD:
        if (size === 8 || (offset & 4) === 0) this.#writeGcmd(lo32);
        return;
      case Reg.RTADDR:
        this.rtaddr = v;
        return;
      case Reg.CCMD:
        this.#writeCcmd(v);
        return;
      case 0x30:
        if (size === 8 || offset & 4) this.#writeFsts(hi32);
        return;
      case 0x38:
        if (size === 8 || (offset & 4) === 0) this.#writeFectl(lo32);
        if (size === 8 || offset & 4) this.fedata = hi32;
        return;
      case 0x40:
        if (size === 8 || (offset & 4) === 0) this.feaddr = lo32;
        if (size === 8 || offset & 4) this.feuaddr = hi32;
        return;
      case Reg.IQT:
        this.iqt = v & 0x7fff0n;
        if (this.gsts & Gcmd.QIE) this.processQueue();
        return;
      case Reg.IQA:
        this.iqa = v & ~0x7f8n & U64;
        return;
      case 0x98:
        if (size === 8 || offset & 4) this.ics &= ~(hi32 & 1);
        return;
      case 0xa0:
        if (size === 8 || (offset & 4) === 0) this.#writeIectl(lo32);
        return;
    }
    if (this.prq.write64(base, v, size === 8 || (offset & 4) === 0, size === 8 || (offset & 4) !== 0)) return;
    if (base === this.ivaOffset) {
      this.iva = v;
      return;
    }
    if (base === this.ivaOffset + 8) {
      this.#writeIotlbReg(v);
      return;
    }
    const f = base - this.frcdOffset;
    if (f >= 0 && f < this.nfr * 16 && (f & 8) !== 0) {
      // FRCD: F (bit 127) is write-1-to-clear; everything else is read-only (spec 11.4.11).
      const i = f >>> 3;
      if (v >> 63n) this.frcd[i] = this.frcd[i]! & ~(1n << 63n);
      this.#updatePpf();
    }
  }

  /**
   * Reads a register by name (VER, CAP, ECAP, GCMD, GSTS, RTADDR, CCMD, FSTS, FECTL, IQH,
   * IQT, IQA, ICS, IVA, IOTLB, PQH, PQT, PQA, PRS, PECTL, PEDATA, PEADDR, PEUADDR...).
   */
  readNamed(name: string): bigint {
    const n = name.toUpperCase();
    if (n === "GSTS") return BigInt(this.gsts >>> 0);
    if (n === "FSTS") return BigInt(this.fsts >>> 0);
    if (n === "FECTL") return BigInt(this.fectl >>> 0);
    if (n === "ICS") return BigInt(this.ics >>> 0);
    if (n === "IECTL") return BigInt(this.iectl >>> 0);
    if (n === "IVA") return this.iva;
    if (n === "IOTLB") return this.iotlbReg;
    const pr = this.prq.named(n);
    if (pr !== null) return pr;
    const off = (Reg as Record<string, number>)[n];
    if (off === undefined) throw new IommuError("EINVAL", `unknown VT-d register ${name}`, { name });
    return this.readRegister(off, 8);
  }

  #writeGcmd(v: number): void {
    this.gcmd = v >>> 0;
    // TE: enable/disable translation (spec 10.4.4).
    if (v & Gcmd.TE) this.gsts |= Gcmd.TE;
    else this.gsts &= ~Gcmd.TE;
    this.enabled = (this.gsts & Gcmd.TE) !== 0;
    // SRTP: latch RTADDR; RTPS reports completion. Caches are not flushed by hardware.
    if (v & Gcmd.SRTP) {
      this.rta = Number(field(this.rtaddr, 63, 12) << 12n);
      this.ttm = Number(field(this.rtaddr, 11, 10));
      this.gsts |= Gcmd.SRTP;
    }
    if (v & Gcmd.QIE) {
      if (!(this.gsts & Gcmd.QIE)) this.iqh = 0n;
      this.gsts |= Gcmd.QIE;
    } else {
      this.gsts &= ~Gcmd.QIE;
    }
    for (const b of [Gcmd.IRE, Gcmd.CFI]) {
      if (v & b) this.gsts |= b;
      else this.gsts &= ~b;
    }
    if (v & Gcmd.SIRTP) this.gsts |= Gcmd.SIRTP;
    this.gsts >>>= 0;
  }

  #writeCcmd(v: bigint): void {
    this.ccmd = v;
    if (!(v >> 63n)) return;
    // CCMD (spec 11.4.7): CIRG 62:61 (1 global, 2 domain, 3 device), FM 33:32, SID 31:16, DID 15:0.
    const cirg = Number(field(v, 62, 61));
    if (cirg === 1) this.invalidateContext("global");
    else if (cirg === 2) this.invalidateContext("domain", Number(field(v, 15, 0)));
    else if (cirg === 3)
      this.invalidateContext(
        "device",
        Number(field(v, 15, 0)),
        Number(field(v, 31, 16)),
        Number(field(v, 33, 32)),
      );
    // ICC clears when done; CAIG (60:59) reports the granularity performed (0 = not done).
    let out = setField(v, 63, 63, 0);
    out = setField(out, 60, 59, cirg);
    this.ccmd = out;
  }

  #writeIotlbReg(v: bigint): void {
    this.iotlbReg = v;
    if (!(v >> 63n)) return;
    // IOTLB_REG (spec 11.4.8.1): IIRG 61:60 (1 global, 2 domain, 3 page), DID 47:32; IVA: ADDR 63:12, IH 6, AM 5:0.
    const iirg = Number(field(v, 61, 60));
    const did = Number(field(v, 47, 32));
    let done = iirg;
    if (iirg === 1) this.invalidateIotlb("global");
    else if (iirg === 2) this.invalidateIotlb("domain", did);
    else if (iirg === 3) {
      const am = Number(field(this.iva, 5, 0));
      const addr = Number(field(this.iva, 63, 12) << 12n);
      if (am > this.cap.mamv || !this.cap.psi || addr % 2 ** (12 + am) !== 0) done = 0;
      else this.invalidateIotlb("page", did, addr, am);
    }
    let out = setField(v, 63, 63, 0);
    out = setField(out, 58, 57, done);
    this.iotlbReg = out;
  }

  #writeFsts(v: number): void {
    // W1C: PFO, IQE, ICE, ITE (spec 11.4.9.1). PPF and FRI are read-only.
    const w1c = Fsts.PFO | Fsts.IQE | Fsts.ICE | Fsts.ITE;
    const wasIqe = (this.fsts & Fsts.IQE) !== 0;
    this.fsts = (this.fsts & ~(v & w1c)) >>> 0;
    this.#updatePpf();
    if (wasIqe && !(this.fsts & Fsts.IQE) && this.gsts & Gcmd.QIE) {
      this.iqercd = 0n;
      this.processQueue();
    }
  }

  #writeFectl(v: number): void {
    const wasMasked = (this.fectl & Fectl.IM) !== 0;
    this.fectl = ((this.fectl & ~Fectl.IM) | (v & Fectl.IM)) >>> 0;
    // Unmasking with an interrupt pending delivers it (spec 7.3.1).
    if (wasMasked && !(v & Fectl.IM) && this.fectl & Fectl.IP) {
      this.fectl = (this.fectl & ~Fectl.IP) >>> 0;
      this.fireFault();
    }
  }

  #writeIectl(v: number): void {
    const wasMasked = (this.iectl & Fectl.IM) !== 0;
    this.iectl = ((this.iectl & ~Fectl.IM) | (v & Fectl.IM)) >>> 0;
    if (wasMasked && !(v & Fectl.IM) && this.iectl & Fectl.IP) {
      this.iectl = (this.iectl & ~Fectl.IP) >>> 0;
      this.completionInterrupts++;
    }
  }

  #updatePpf(): void {
    let any = false;
    for (let i = 0; i < this.nfr; i++) if (this.frcd[i * 2 + 1]! >> 63n) any = true;
    if (any) this.fsts |= Fsts.PPF;
    else this.fsts &= ~Fsts.PPF;
    this.fsts >>>= 0;
  }
}
