/**
 * The VT-d hardware model: the register interface with the spec's side effects
 * (Intel VT-d spec chapter 10-11: GCMD -> GSTS, SRTP latching RTADDR, CCMD and
 * IOTLB/IVA register-based invalidation, FSTS/FECTL, write-1-to-clear FRCD F bits),
 * the queued-invalidation engine (spec 6.5.2: IQA/IQH/IQT/ICS, 128- and 256-bit
 * descriptors, IQE halting the queue) and primary fault logging (spec 7.2.1).
 * Translation itself is the fast path it extends.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import { field, setField } from "@iommu-kit/core/driver";
import { FastPath } from "./fast-path.ts";
import type { FaultRecord } from "./format/fault-record.ts";
import { encodeFaultRecord } from "./format/fault-record.ts";
import type { InvDescriptor } from "./format/inv-desc.ts";
import { DescType, decodeDescriptorHalves } from "./format/inv-desc.ts";
import type { CapFields, EcapFields } from "./format/registers.ts";
import {
  decodeCap,
  decodeEcap,
  Fectl,
  Fsts,
  Gcmd,
  IQA_DW,
  Iqei,
  Reg,
  VER_VALUE,
} from "./format/registers.ts";

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
const PAGE = 4096;

/** One VT-d remapping unit. */
export class VtdHardware extends FastPath {
  readonly capReg: bigint;
  readonly ecapReg: bigint;
  /** Offset of IVA_REG (IOTLB_REG is at +8). */
  readonly ivaOffset: number;
  /** Offset of the first FRCD_REG. */
  readonly frcdOffset: number;
  /** Number of fault recording registers. */
  readonly nfr: number;

  gcmd = 0;
  gsts = 0;
  rtaddr = 0n;
  ccmd = 0n;
  fsts = 0;
  fectl: number = Fectl.IM;
  fedata = 0;
  feaddr = 0;
  feuaddr = 0;
  iqh = 0n;
  iqt = 0n;
  iqa = 0n;
  ics = 0;
  iectl: number = Fectl.IM;
  iqercd = 0n;
  iva = 0n;
  iotlbReg = 0n;
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

  constructor(memory: PhysicalMemory, o: HardwareOptions) {
    const cap: CapFields = decodeCap(o.cap);
    const ecap: EcapFields = decodeEcap(o.ecap);
    super(memory, cap, ecap, o.haw, o.iotlbSizeLg2 ?? 12);
    this.capReg = o.cap;
    this.ecapReg = o.ecap;
    this.ivaOffset = ecap.iro;
    this.frcdOffset = cap.fro;
    this.nfr = cap.nfr;
    this.frcd = new Array<bigint>(cap.nfr * 2).fill(0n);
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

  /** Reads a register by name (VER, CAP, ECAP, GCMD, GSTS, RTADDR, CCMD, FSTS, FECTL, IQH, IQT, IQA, ICS, IVA, IOTLB...). */
  readNamed(name: string): bigint {
    const n = name.toUpperCase();
    if (n === "GSTS") return BigInt(this.gsts >>> 0);
    if (n === "FSTS") return BigInt(this.fsts >>> 0);
    if (n === "FECTL") return BigInt(this.fectl >>> 0);
    if (n === "ICS") return BigInt(this.ics >>> 0);
    if (n === "IECTL") return BigInt(this.iectl >>> 0);
    if (n === "IVA") return this.iva;
    if (n === "IOTLB") return this.iotlbReg;
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
      this.#fireFault();
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

  #fireFault(): void {
    this.faultInterrupts++;
    this.onFaultEvent?.();
  }

  // ------------------------------------------------------------- fault logging

  /**
   * Primary fault logging (spec 7.2.1): the record goes to the FRCD at the internal
   * next index unless it still holds a pending fault (then PFO is set and the fault is
   * lost); FSTS.FRI names the first pending record, as Linux's handler reads it. A
   * fault from a source-id that already has a pending record is not recorded again
   * (spec 7.2.1: hardware may collapse; QEMU drops it too). Returns true when written.
   */
  override recordFault(rec: FaultRecord): boolean {
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
      else this.#fireFault();
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
      else this.#fireFault();
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
      const pasidBased =
        code === DescType.PASID_IOTLB || code === DescType.PASID_CACHE || code === DescType.PASID_DEV_TLB;
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
