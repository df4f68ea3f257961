/**
 * The driver half: what Linux's arm-smmu-v3 driver does to drive the hardware, done here
 * only through registers and memory. Device reset (arm_smmu_device_reset: stream table,
 * queues, CFGI_ALL + TLBI_NSNH_ALL, SMMUEN; ARM IHI 0070 6.3.9, 6.3.24-6.3.26), command
 * submission through the command queue in memory with a CMD_SYNC at the end
 * (arm_smmu_cmdq_issue_cmdlist; 3.5, 4.7), range TLBIs (arm_smmu_tlb_inv_range_domain
 * with RIL; 4.4.1), the stream table, linear or 2-level with STRTAB_SPLIT 8 (3.3.1-3.3.2),
 * STE writes with word 0 last (arm_smmu_write_entry; 5.2), CD tables, linear or 2-level
 * with 64K leaves (CTXDESC_SPLIT 10; 3.3.3, 5.3-5.4), ASID/VMID allocation, and draining
 * the event queue (7.4). It knows domains only as the tables they own (`TableDomain`);
 * which STE a device needs is the backend's decision.
 */

import type { DomainFlags, PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import { encodeCd, encodeL1Cd } from "./format/cd.ts";
import { CmdError, CmdOp, encodeCommand } from "./format/command.ts";
import type { EventRecord } from "./format/event.ts";
import type { LpaeFormatSpec } from "./format/lpae-pte.ts";
import { Cr0, Cr2, Gbpa, Gerror, paEncoding } from "./format/registers.ts";
import { encodeL1Std } from "./format/ste.ts";
import type { SmmuHw } from "./hardware.ts";
import { EventQueueReader } from "./internal/event-reader.ts";
import { POW2, TWO32 } from "./internal/words.ts";
import type { SmmuV3Config } from "./options.ts";
import { bad } from "./options.ts";

const STRTAB_SPLIT = 8; // Linux STRTAB_SPLIT
const CD_SPLIT = 10; // Linux CTXDESC_SPLIT: 64K leaves (S1Fmt = 2)
/** MAIR Linux programs (io-pgtable-arm: NC 0x44, cacheable 0xff, device 0x04, inner-NC/outer-cache 0xf4). */
const MAIR = 0xf404ff44n;

/** A device's CD table. */
export interface CdTable {
  readonly base: number;
  /** S1CDMax. */
  readonly cdMax: number;
  /** 0 = linear (or a single CD), 2 = 2-level with 64K leaves. */
  readonly fmt: number;
  /** Leaf tables of a 2-level table by L1 index, with the count of valid CDs. */
  readonly leaves: Map<number, { pa: number; used: number }>;
}

/** What the driver keeps per device: its StreamID, SubstreamID width, CD table and stall setting. */
export interface CdOwner {
  readonly rid: number;
  readonly ssidBits: number;
  cd: CdTable | null;
  /** master->stall_enabled: its CDs get CD.S (arm_smmu_make_s1_cd). */
  readonly stall?: boolean;
}

/** What the driver reads of a paging domain: its table and tag (SmmuPagingDomain has all of it). */
export interface TableDomain {
  readonly stage: 1 | 2;
  /** ASID (stage 1) or VMID (stage 2). */
  readonly tagId: number;
  readonly spec: LpaeFormatSpec;
  readonly flags: DomainFlags;
  readonly pt: { readonly root: number };
}

/** The driver of one SMMU. */
export class SmmuDriver {
  readonly hw: SmmuHw;
  readonly memory: PhysicalMemory;
  readonly #tables: TableAllocator | null;
  readonly #asids = new Set<number>();
  readonly #vmids = new Set<number>();
  #cmdqBase = 0;
  // Commands being assembled for #issue: four 32-bit halves each, #cmdN of them.
  #cmdBuf = new Uint32Array(64);
  #cmdN = 0;
  #cmdqLog2 = 0;
  #evtqBase = 0;
  #evtqLog2 = 0;
  #strtab = 0;
  #linear = false;
  readonly #l2 = new Map<number, { pa: number; refs: number }>();
  readonly #evtq: EventQueueReader;

  constructor(hw: SmmuHw, memory: PhysicalMemory, tables: TableAllocator | null) {
    this.hw = hw;
    this.memory = memory;
    this.#tables = tables;
    this.#evtq = new EventQueueReader(hw, memory);
  }

  /** Brings the SMMU up as Linux's arm_smmu_device_reset does: tables, queues, CFGI_ALL, TLBI_NSNH_ALL, SMMUEN. */
  init(config: SmmuV3Config): void {
    const t = this.#tables!;
    const hw = this.hw;
    this.#cmdqLog2 = Math.min(config.cmdQueueLog2 ?? 8, hw.cmdqsMax);
    this.#evtqLog2 = Math.min(config.eventQueueLog2 ?? 7, hw.eventqsMax);
    this.#linear = config.streamTable === "linear" || !hw.twoLevelSt || hw.sidBits <= STRTAB_SPLIT;
    const sidBits = hw.sidBits;
    if (this.#linear && sidBits > 20)
      throw bad("EINVAL", `a linear stream table of 2^${sidBits} STEs is too large`);
    // All three blocks or none (a failed create leaks nothing).
    const taken: number[] = [];
    try {
      taken.push(t.alloc(Math.max(12, this.#cmdqLog2 + 4), "smmuv3 cmdq"));
      taken.push(t.alloc(Math.max(12, this.#evtqLog2 + 5), "smmuv3 eventq"));
      taken.push(
        this.#linear
          ? t.alloc(Math.max(12, sidBits + 6), "smmuv3 strtab")
          : t.alloc(Math.max(12, sidBits - STRTAB_SPLIT + 3), "smmuv3 strtab l1"),
      );
    } catch (e) {
      for (const pa of taken) t.free(pa);
      throw e;
    }
    [this.#cmdqBase, this.#evtqBase, this.#strtab] = taken as [number, number, number];
    if (this.#linear) {
      // Every STE aborts until a device is attached (Linux arm_smmu_init_bypass_stes, disable_bypass).
      for (let sid = 0; sid < 2 ** sidBits; sid++) this.memory.write32(this.#strtab + sid * 64, 1);
      hw.writeRegister("STRTAB_BASE_CFG", BigInt(sidBits));
    } else {
      hw.writeRegister("STRTAB_BASE_CFG", BigInt((1 << 16) | (STRTAB_SPLIT << 6) | sidBits));
    }
    hw.writeRegister("STRTAB_BASE", (1n << 62n) | BigInt(this.#strtab)); // RA [62]
    hw.writeRegister("CMDQ_BASE", (1n << 62n) | BigInt(this.#cmdqBase) | BigInt(this.#cmdqLog2));
    hw.writeRegister("EVENTQ_BASE", (1n << 62n) | BigInt(this.#evtqBase) | BigInt(this.#evtqLog2));
    hw.writeRegister("CR2", BigInt(Cr2.RECINVSID));
    hw.writeRegister("GBPA", BigInt(Gbpa.UPDATE + Gbpa.ABORT));
    hw.writeRegister("CR0", BigInt(Cr0.CMDQEN | Cr0.EVTQEN));
    this.submit([
      encodeCommand({ op: CmdOp.CFGI_STE_RANGE, range: 31 }),
      encodeCommand({ op: CmdOp.TLBI_NSNH_ALL }),
    ]);
    hw.writeRegister("CR0", BigInt(Cr0.CMDQEN | Cr0.EVTQEN | Cr0.SMMUEN));
    const evtq = this.#evtq;
    hw.onEvent = () => evtq.consume(); // the event queue's threaded IRQ
  }

  /**
   * Submits commands through the command queue in memory and a CMDQ_PROD write, with a
   * CMD_SYNC at the end unless `sync` is false, as arm_smmu_cmdq_issue_cmdlist does (Linux
   * sends none after CMD_RESUME: arm_smmu_page_response). EIO if the SMMU stops the queue.
   */
  submit(cmds: readonly (readonly [bigint, bigint])[], sync = true): void {
    this.#cmdN = 0;
    for (const [w0, w1] of cmds) {
      this.#pushCmd(
        Number(w0 & 0xffff_ffffn),
        Number((w0 >> 32n) & 0xffff_ffffn),
        Number(w1 & 0xffff_ffffn),
        Number((w1 >> 32n) & 0xffff_ffffn),
      );
    }
    this.#issue(sync);
  }

  /** Appends one command as its four 32-bit halves (word 0 low, word 0 high, word 1 low, word 1 high). */
  #pushCmd(a: number, b: number, c: number, d: number): void {
    const i = this.#cmdN * 4;
    let buf = this.#cmdBuf;
    if (i + 4 > buf.length) {
      const grown = new Uint32Array(buf.length * 2);
      grown.set(buf);
      this.#cmdBuf = buf = grown;
    }
    buf[i] = a;
    buf[i + 1] = b;
    buf[i + 2] = c;
    buf[i + 3] = d;
    this.#cmdN++;
  }

  /**
   * Appends a TLBI of the address family (4.4.1): `w0` = opcode | NUM [16:12] | SCALE [24:20],
   * `tag` = VMID [15:0] | ASID [31:16] (word 0 high), `f` = LEAF [0] | TTL [9:8] | TG [11:10];
   * ADDR [63:12] from `addr` (an integer double: % and / by 2^32 are exact below 2^64).
   */
  #pushTlbi(w0: number, tag: number, f: number, addr: number): void {
    this.#pushCmd(w0, tag, f | ((addr % TWO32) & 0xffff_f000), Math.floor(addr / TWO32));
  }

  /**
   * Writes the pending commands and a CMD_SYNC to the queue in memory, 32-bit halves at a
   * time, and moves CMDQ_PROD as arm_smmu_cmdq_issue_cmdlist does. EIO if the SMMU stops the queue.
   */
  #issue(sync = true): void {
    if (sync) this.#pushCmd(CmdOp.CMD_SYNC, 0, 0, 0);
    const hw = this.hw;
    const memory = this.memory;
    const buf = this.#cmdBuf;
    const n = this.#cmdN;
    this.#cmdN = 0;
    const size = POW2[this.#cmdqLog2] ?? 2 ** this.#cmdqLog2;
    const mask = size * 2 - 1;
    // An error left by an earlier submitter is recovered first; it is not this call's.
    if (this.#cmdqStopped()) this.#skipErr(size);
    if (this.#cmdqStopped())
      throw new IommuError("EIO", "the command queue is stopped", { cons: hw.cmdqCons });
    let failed: { cerror: number; cons: number } | null = null;
    let i = 0;
    while (i < n) {
      let prod = hw.cmdqProd & mask;
      const cons = hw.cmdqCons & mask;
      let room = size - ((prod - cons + size * 2) & mask);
      // The queue page is looked up once per page of commands (256 of them), not per command.
      let pfn = -1;
      let page: Uint32Array | null = null;
      while (room > 0 && i < n) {
        const at = this.#cmdqBase + (prod & (size - 1)) * 16;
        const p = Math.floor(at / 4096);
        if (p !== pfn) {
          page = memory.writePage(p);
          pfn = p;
        }
        if (page === null) memory.write64(at, 0n); // throws the bus error write64 does
        const w = (at % 4096) >>> 2;
        const k = i * 4;
        page![w] = buf[k]!;
        page![w + 1] = buf[k + 1]!;
        page![w + 2] = buf[k + 2]!;
        page![w + 3] = buf[k + 3]!;
        i++;
        prod = (prod + 1) & mask;
        room--;
      }
      hw.writeCmdqProd(prod);
      if (this.#cmdqStopped()) {
        const cons = hw.cmdqCons;
        if (failed === null) failed = { cerror: (cons >>> 24) & 0x7f, cons: cons & 0xf_ffff };
        this.#skipErr(size);
        if (this.#cmdqStopped()) break; // the same error again (an abort): no endless retry
      }
    }
    if (failed !== null)
      throw new IommuError("EIO", `the SMMU stopped the command queue with CERROR ${failed.cerror}`, failed);
  }

  /** GERROR.CMDQ_ERR is active (GERROR != GERRORN in that bit, 7.1). */
  #cmdqStopped(): boolean {
    const hw = this.hw;
    // A stop always sets CONS.ERR to a non-zero CERROR (6.3.27): no bigint on the common path.
    if (((hw.cmdqCons >>> 24) & 0x7f) === CmdError.NONE) return false;
    return ((hw.readRegister("GERROR") ^ hw.readRegister("GERRORN")) & BigInt(Gerror.CMDQ_ERR)) !== 0n;
  }

  /**
   * arm_smmu_cmdq_skip_err + the GERRORN write of arm_smmu_gerror_handler: CERROR_ILL (or an
   * unknown code) replaces the command at CMDQ_CONS with a CMD_SYNC; CERROR_ABT and
   * CERROR_ATC_INV_SYNC retry as they are; then CMDQ_ERR is acknowledged and the queue resumes
   * from CONS (7.1). One attempt: a command that fails again stays stopped until the next call.
   */
  #skipErr(size: number): void {
    const hw = this.hw;
    const cons = hw.cmdqCons;
    const err = (cons >>> 24) & 0x7f;
    if (err !== CmdError.ABT && err !== CmdError.ATC_INV_SYNC && err !== CmdError.NONE) {
      const at = this.#cmdqBase + (cons & (size - 1)) * 16;
      this.memory.write64(at, BigInt(CmdOp.CMD_SYNC));
      this.memory.write64(at + 8, 0n);
    }
    hw.writeRegister("GERRORN", hw.readRegister("GERROR"));
  }

  // ---------------------------------------------------------------- undo of one host operation

  /** Old 64-bit words of the structures written since begin(), in write order (null: not recording). */
  #journal: { at: number; old: bigint }[] | null = null;

  /** Writes a structure word, remembering the old one while a host operation is recorded. */
  #put(at: number, v: bigint): void {
    if (this.#journal !== null) this.#journal.push({ at, old: this.memory.read64(at) });
    this.memory.write64(at, v);
  }

  /** Starts recording the structure writes of one host operation. */
  begin(): void {
    this.#journal = [];
  }

  /** Ends the recording: the operation completed. */
  commit(): void {
    this.#journal = null;
  }

  /**
   * Undoes the recorded writes (newest first) and drops whatever the SMMU may have cached of
   * the new words (CFGI_STE + CFGI_CD_ALL of `rid`, 4.3): the failed operation leaves the
   * tables as they were. Best effort on the invalidation: it is the queue that just failed.
   */
  rollback(rid: number): void {
    const j = this.#journal;
    this.#journal = null;
    if (j === null) return;
    for (let k = j.length - 1; k >= 0; k--) this.memory.write64(j[k]!.at, j[k]!.old);
    try {
      this.submit([
        encodeCommand({ op: CmdOp.CFGI_STE, sid: rid, leaf: 1 }),
        encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: rid }),
      ]);
    } catch {
      // The queue refused again: the caller reports the first error.
    }
  }

  // ---------------------------------------------------------------- stream table

  /** Makes room for the STE of `rid`: its L2 table in a 2-level stream table (abort STEs). */
  addStream(rid: number): void {
    const t = this.#tables!;
    if (!this.#linear) {
      const l1 = Math.floor(rid / 2 ** STRTAB_SPLIT);
      let l2 = this.#l2.get(l1);
      if (l2 === undefined) {
        const pa = t.alloc(STRTAB_SPLIT + 6, "smmuv3 strtab l2");
        for (let i = 0; i < 2 ** STRTAB_SPLIT; i++) this.memory.write32(pa + i * 64, 1); // abort STEs
        l2 = { pa, refs: 0 };
        this.#l2.set(l1, l2);
        this.#put(this.#strtab + l1 * 8, encodeL1Std(STRTAB_SPLIT + 1, pa));
      }
      l2.refs++;
    }
  }

  /** Frees the L2 table of `rid` when no other device uses it (CFGI_STE of the dropped span). */
  removeStream(rid: number): void {
    if (!this.#linear) {
      const l1 = Math.floor(rid / 2 ** STRTAB_SPLIT);
      const l2 = this.#l2.get(l1)!;
      if (--l2.refs === 0) {
        this.#put(this.#strtab + l1 * 8, 0n);
        this.submit([encodeCommand({ op: CmdOp.CFGI_STE, sid: rid })]);
        this.#tables!.free(l2.pa);
        this.#l2.delete(l1);
      }
    }
  }

  // ---------------------------------------------------------------- ASIDs and VMIDs

  /** Takes a free ASID (stage 1) or VMID (stage 2). */
  allocTag(stage: 1 | 2): number {
    return this.#allocTag(stage === 1 ? this.#asids : this.#vmids, stage === 1 ? "ASID" : "VMID");
  }

  /** Returns a tag taken by allocTag without invalidating (nothing used it). */
  freeTag(stage: 1 | 2, tagId: number): void {
    (stage === 1 ? this.#asids : this.#vmids).delete(tagId);
  }

  #allocTag(set: Set<number>, what: string): number {
    for (let i = 1; i < 65536; i++) {
      if (!set.has(i)) {
        set.add(i);
        return i;
      }
    }
    throw bad("ENOSPC" as "EBUSY", `no free ${what}`);
  }

  /** Releases an ASID/VMID after invalidating everything tagged with it (arm_smmu_domain_free). */
  releaseTag(d: TableDomain): void {
    this.#cmdN = 0;
    if (d.stage === 1) {
      this.#pushCmd(CmdOp.TLBI_NH_ASID, (d.tagId & 0xffff) << 16, 0, 0);
      this.#issue();
      this.#asids.delete(d.tagId);
    } else {
      this.#pushCmd(CmdOp.TLBI_S12_VMALL, d.tagId & 0xffff, 0, 0);
      this.#issue();
      this.#vmids.delete(d.tagId);
    }
  }

  /**
   * Range invalidation of a domain, CMD_SYNC included: Linux's arm_smmu_tlb_inv_range_domain
   * / __arm_smmu_tlb_inv_range (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c) with the
   * commands batched before one CMD_SYNC (arm_smmu_cmdq_batch_add / _submit). With IDR3.RIL,
   * range TLBIs (4.4.1.1): TG from the granule, each command (NUM+1) * 2^SCALE granules, 5
   * bits of the remaining page count at a time, and for a leaf-only change TTL = 4 -
   * ((log2(pgsize) - 3) / (granuleLg2 - 3)), the level of the leaves cleared; a non-leaf
   * one page long is widened to two so NUM = SCALE = 0 never goes out without TTL. Without
   * RIL one TLBI per granule (TG = TTL = 0). `pgsizeLg2` is the size of every leaf cleared
   * (gather->pgsize; -1 unknown: TTL 0) and `leaf` false when tables were freed (the walk
   * caches must go too, as io-pgtable-arm's flush_walk: LEAF = 0).
   */
  invalidateDomainRange(d: TableDomain, iova: number, length: number, pgsizeLg2 = -1, leaf = true): void {
    const g = d.spec.granuleLg2;
    const tg = g === 12 ? 1 : g === 14 ? 2 : 3;
    const gs = POW2[g] ?? 2 ** g; // (the 2^n table: Math.pow is slow here)
    this.#cmdN = 0;
    let pages = Math.ceil(length / gs);
    let at = iova - (iova % gs);
    // Without IDR3.RIL a range TLBI is ILL (4.4.1): one TLBI per granule, or the whole tag past
    // CMDQ_MAX_TLBI_OPS (512) of them, as Linux does without ARM_SMMU_FEAT_RANGE_INV.
    const ril = this.hw.ril;
    const s1 = d.stage === 1;
    const op = s1 ? CmdOp.TLBI_NH_VA : CmdOp.TLBI_S2_IPA;
    const tag = s1 ? (d.tagId & 0xffff) << 16 : d.tagId & 0xffff;
    const lf = leaf ? 1 : 0;
    if (pages > 2 ** 20 || (!ril && pages > 512)) {
      this.#pushCmd(s1 ? CmdOp.TLBI_NH_ASID : CmdOp.TLBI_S12_VMALL, tag, 0, 0);
    } else if (!ril) {
      for (; pages > 0; pages--, at += gs) this.#pushTlbi(op, tag, lf, at);
    } else {
      const t = 4 - (pgsizeLg2 - 3) / (g - 3);
      const ttl = leaf && pgsizeLg2 >= g && Number.isInteger(t) && t >= 1 && t <= 3 ? t : 0;
      const f = lf | (ttl << 8) | (tg << 10);
      if (!leaf && pages % 32 === 1) pages++;
      while (pages > 0) {
        // Each command covers (NUM+1) * 2^SCALE granules: 5 bits of the remaining count.
        let scale = 0;
        while (pages % (POW2[scale + 1] ?? 2 ** (scale + 1)) === 0) scale++;
        const num = Math.floor(pages / (POW2[scale] ?? 2 ** scale)) % 32;
        this.#pushTlbi(op | ((num - 1) << 12) | (scale << 20), tag, f, at);
        const n = num * (POW2[scale] ?? 2 ** scale);
        at += n * gs;
        pages -= n;
      }
    }
    // A nest parent's change reaches every nested S1 entry of its VMID (Linux: TLBI_NH_ALL).
    if (d.stage === 2 && d.flags.nestParent) this.#pushCmd(CmdOp.TLBI_NH_ALL, d.tagId & 0xffff, 0, 0);
    this.#issue();
  }

  // ---------------------------------------------------------------- STE / CD programming

  steAddr(rid: number): number {
    if (this.#linear) return this.#strtab + rid * 64;
    const l2 = this.#l2.get(Math.floor(rid / 2 ** STRTAB_SPLIT))!;
    return l2.pa + (rid % 2 ** STRTAB_SPLIT) * 64;
  }

  /** The stage-2 STE fields of a stage-2 table (5.2). */
  s2Fields(d: TableDomain): Record<string, bigint | number> {
    const g = d.spec.granuleLg2;
    const lvl = d.spec.startLevel;
    return {
      S2VMID: d.tagId,
      S2T0SZ: 64 - d.spec.inputBits,
      S2SL0: g === 12 ? 2 - lvl : 3 - lvl,
      S2IR0: 1,
      S2OR0: 1,
      S2SH0: 3,
      S2TG: g === 12 ? 0 : g === 16 ? 1 : 2,
      S2PS: paEncoding(this.hw.oas),
      S2AA64: 1,
      S2AFFD: 0,
      S2PTW: 1,
      S2HA: d.flags.dirtyTracking ? 1 : 0,
      S2HD: d.flags.dirtyTracking ? 1 : 0,
      S2R: 1,
      S2TTB: d.pt.root,
    };
  }

  /** Writes the STE of `rid`, word 0 (V, Config) last, and invalidates it. */
  writeSte(rid: number, w: readonly bigint[]): void {
    const at = this.steAddr(rid);
    // Word 0 (V, Config) last, so no torn STE is ever valid (arm_smmu_write_entry).
    for (let i = 7; i >= 0; i--) this.#put(at + i * 8, w[i]!);
    this.submit([encodeCommand({ op: CmdOp.CFGI_STE, sid: rid, leaf: 1 })]);
  }

  /** Allocates the device's CD table (and the leaf holding `ssid`, for 2-level); returns what it took. */
  prepareCd(dev: CdOwner, ssids: readonly number[]): number[] {
    const t = this.#tables!;
    const taken: number[] = [];
    try {
      if (dev.cd === null) {
        const cdMax = dev.ssidBits;
        const fmt = cdMax > CD_SPLIT ? 2 : 0;
        const bytesLg2 = fmt === 2 ? cdMax - CD_SPLIT + 3 : cdMax + 6;
        const base = t.alloc(Math.max(12, bytesLg2), "smmuv3 cd table");
        taken.push(base);
        dev.cd = { base, cdMax, fmt, leaves: new Map() };
      }
      const cd = dev.cd;
      if (cd.fmt === 2) {
        for (const ssid of ssids) {
          const l1 = Math.floor(ssid / 2 ** CD_SPLIT);
          if (!cd.leaves.has(l1)) {
            const pa = t.alloc(CD_SPLIT + 6, "smmuv3 cd leaf");
            taken.push(pa);
            cd.leaves.set(l1, { pa, used: 0 });
            this.#put(cd.base + l1 * 8, encodeL1Cd(true, pa));
          }
        }
      }
    } catch (e) {
      this.unprepareCd(dev, taken);
      throw e;
    }
    return taken;
  }

  unprepareCd(dev: CdOwner, taken: readonly number[]): void {
    const cd = dev.cd;
    for (const pa of taken) {
      if (cd !== null && pa === cd.base) {
        dev.cd = null;
      } else if (cd !== null) {
        for (const [l1, leaf] of cd.leaves) {
          if (leaf.pa === pa) {
            cd.leaves.delete(l1);
            this.#put(cd.base + l1 * 8, 0n);
          }
        }
      }
      this.#tables!.free(pa);
    }
  }

  cdAddr(dev: CdOwner, ssid: number): number {
    const cd = dev.cd!;
    if (cd.fmt === 0) return cd.base + ssid * 64;
    const leaf = cd.leaves.get(Math.floor(ssid / 2 ** CD_SPLIT))!;
    return leaf.pa + (ssid % 2 ** CD_SPLIT) * 64;
  }

  writeCd(dev: CdOwner, ssid: number, d: TableDomain | null): void {
    const cd = dev.cd!;
    const at = this.cdAddr(dev, ssid);
    const was = this.memory.read32(at) >>> 31 === 1;
    let w: bigint[];
    if (d === null) w = new Array<bigint>(8).fill(0n);
    else {
      const g = d.spec.granuleLg2;
      w = encodeCd({
        T0SZ: 64 - d.spec.inputBits,
        TG0: g === 12 ? 0 : g === 16 ? 1 : 2,
        IR0: 1,
        OR0: 1,
        SH0: 3,
        EPD1: 1,
        V: 1,
        IPS: paEncoding(this.hw.oas),
        AA64: 1,
        S: dev.stall === true ? 1 : 0, // master->stall_enabled (arm_smmu_make_s1_cd)
        HA: this.hw.httu >= 1 ? 1 : 0,
        HD: d.flags.dirtyTracking ? 1 : 0,
        R: 1,
        A: 1,
        ASET: 1,
        ASID: d.tagId,
        TTB0: d.pt.root,
        MAIR,
      });
    }
    // Word 0 (V) last when installing, first when clearing (arm_smmu_write_cd_entry).
    if (d === null) this.#put(at, 0n);
    for (let i = 7; i >= 1; i--) this.#put(at + i * 8, w[i]!);
    if (d !== null) this.#put(at, w[0]!);
    if (cd.fmt === 2) {
      const leaf = cd.leaves.get(Math.floor(ssid / 2 ** CD_SPLIT))!;
      leaf.used += (d !== null ? 1 : 0) - (was ? 1 : 0);
    }
    this.submit([encodeCommand({ op: CmdOp.CFGI_CD, sid: dev.rid, ssid, leaf: 1 })]);
  }

  /** Frees the CD table of a device whose STE no longer points at it (and was invalidated). */
  freeCd(dev: CdOwner): void {
    const cd = dev.cd;
    if (cd === null) return;
    for (const leaf of cd.leaves.values()) this.#tables!.free(leaf.pa);
    this.#tables!.free(cd.base);
    dev.cd = null;
  }

  /** Frees the CD leaves with no valid CD (CFGI_CD_ALL after each). */
  trimCdLeaves(dev: CdOwner): void {
    const cd = dev.cd;
    if (cd === null) return;
    for (const [l1, leaf] of [...cd.leaves]) {
      if (leaf.used === 0) {
        this.#put(cd.base + l1 * 8, 0n);
        this.submit([encodeCommand({ op: CmdOp.CFGI_CD_ALL, sid: dev.rid })]);
        this.#tables!.free(leaf.pa);
        cd.leaves.delete(l1);
      }
    }
  }

  /** Frees a table block (the undo of an allocation a failed operation made). */
  freeTable(pa: number): void {
    this.#tables!.free(pa);
  }

  /** The handler of each consumed record's raw words (arm_smmu_handle_event), after CONS moved; null: none. */
  setEventHandler(handler: ((words: readonly bigint[]) => void) | null): void {
    this.#evtq.onRecord = handler;
  }

  /** Events the SMMU wrote since the last drain, decoded (the queue is consumed as they arrive). */
  drainEvents(): EventRecord[] {
    return this.#evtq.drain();
  }
}
