/**
 * Configuration: locating and decoding what a (StreamID, SubstreamID) translates with
 * (ARM IHI 0070 3.3): the stream table, linear or 2-level (3.3.1-3.3.2, L1STD 5.1), the
 * STE (5.2) with every ILLEGAL combination the spec names as C_BAD_STE, the CD table,
 * linear or 2-level (3.3.3-3.3.4, L1CD 5.3), and the CD (5.4) with its C_BAD_CD cases;
 * S1DSS and SubstreamID checks (C_BAD_SUBSTREAMID, F_STREAM_DISABLED); CD fetches of a
 * nested STE walked at stage 2 (CLASS=CD). Plus the configuration cache of 5.x's
 * "configuration structures may be cached": decoded STEs by StreamID and decoded (STE, CD)
 * pairs by `sid * 2^21 + ssid + 1`, kept until a CFGI_* command drops them (4.3), and
 * which of them stall their stage-1 Translation-related faults (CD.S, STE.S1STALLD; 5.5).
 * Off the hot path: it runs on a configuration-cache miss. The fast path keeps its own
 * direct-mapped index in front of this cache and forgets it whenever a drop happens.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { Perm } from "@iommu-kit/core";
import type { Narrator } from "../explain.ts";
import { EVENT_NAMES, EventClass, EventId } from "../format/event.ts";
import { levelShift } from "../format/lpae-pte.ts";
import { PA_BITS } from "../format/registers.ts";
import type { RegisterFile } from "../registers.ts";
import type { Walker } from "../walk.ts";
import {
  MODE_ABORT,
  MODE_BYPASS,
  MODE_TRANSLATE,
  STE_ABORT,
  STE_BYPASS,
  STE_NESTED,
  STE_S1,
  STE_S2,
  SteCfg,
  setQuick,
  TransCfg,
} from "../walk.ts";
import type { FaultScratch } from "./fault.ts";
import { tlbTag } from "./iotlb.ts";
import { hex, POW2, rawWords, TWO32 } from "./words.ts";

/** Config keys per StreamID: key = sid * 2^21 + ssid + 1 (ssid -1 = no SubstreamID). */
export const SID_SPAN = 2097152;

/** Reads, checks and caches STEs and CDs. */
export class ConfigReader {
  readonly #memory: PhysicalMemory;
  readonly #r: RegisterFile;
  readonly #w: Walker;
  readonly #f: FaultScratch;
  readonly #n: Narrator;
  /** Decoded STEs by StreamID. */
  readonly #steCache = new Map<number, SteCfg>();
  /** Decoded configurations by key (see SID_SPAN). */
  readonly cache: Map<number, TransCfg> = new Map();
  /** Configurations whose stage-1 faults stall: CD.S == 1 and STE.S1STALLD == 0 (3.12, 5.5). */
  readonly #stalls = new WeakSet<TransCfg>();

  constructor(
    memory: PhysicalMemory,
    regs: RegisterFile,
    walker: Walker,
    fault: FaultScratch,
    narrator: Narrator,
  ) {
    this.#memory = memory;
    this.#r = regs;
    this.#w = walker;
    this.#f = fault;
    this.#n = narrator;
  }

  /**
   * True when the fault in `f` stalls (3.12.2, 5.5): an F_TRANSLATION, F_ADDR_SIZE,
   * F_ACCESS or F_PERMISSION at stage 1 of a request whose cached configuration has
   * CD.S == 1 under STE.S1STALLD == 0. Stage-2 faults follow STE.S2S, which the driver
   * never sets (not modelled: they terminate). Off the hot path: runs on a fault.
   */
  stallable(f: FaultScratch): boolean {
    if (f.s2 !== 0 || f.id < EventId.F_TRANSLATION || f.id > EventId.F_PERMISSION) return false;
    const cfg = this.cache.get(f.sid * SID_SPAN + f.ssid + 1);
    return cfg !== undefined && this.#stalls.has(cfg);
  }

  /** CFGI_ALL: drops every cached STE and configuration. */
  clear(): void {
    this.#steCache.clear();
    this.cache.clear();
  }

  /** CFGI_STE: the STE of `sid` and every configuration built from it. */
  dropSid(sid: number): void {
    this.#steCache.delete(sid);
    for (const k of this.cache.keys()) if (Math.floor(k / SID_SPAN) === sid) this.cache.delete(k);
  }

  /** CFGI_STE_RANGE: the 2^(range+1) StreamIDs aligned around `sid` (range 31: all, 4.3.2). */
  dropSidRange(sid: number, range: number): void {
    if (range >= 31) {
      this.clear();
      return;
    }
    const span = 2 ** (range + 1);
    const first = sid - (sid % span);
    for (const s of [...this.#steCache.keys()]) if (s >= first && s < first + span) this.dropSid(s);
    for (const key of [...this.cache.keys()]) {
      const s = Math.floor(key / SID_SPAN);
      if (s >= first && s < first + span) this.dropSid(s);
    }
  }

  /** CFGI_CD: one CD of `sid` (SubstreamID 0 also serves non-SSID traffic under S1DSS=SSID0). */
  dropCd(sid: number, ssid: number): void {
    this.cache.delete(sid * SID_SPAN + ssid + 1);
    if (ssid === 0) this.cache.delete(sid * SID_SPAN); // S1DSS=SSID0 serves non-SSID DMA with CD 0
  }

  /** CFGI_CD_ALL: every CD of `sid` (the STE stays). */
  dropCds(sid: number): void {
    for (const k of this.cache.keys()) if (Math.floor(k / SID_SPAN) === sid) this.cache.delete(k);
  }

  #read8(pa: number, out: Uint32Array, words: number): boolean {
    const page = this.#memory.readPage(Math.floor(pa / 4096));
    if (page === null) return false;
    const w = (pa % 4096) >>> 2;
    for (let i = 0; i < words; i++) out[i] = page[w + i]!;
    return true;
  }

  readonly #buf = new Uint32Array(16);

  /** Locates and decodes the STE of `sid` (5.2); null on a fault. */
  #fetchSte(sid: number): SteCfg | null {
    const limit = Math.min(this.#r.strtabLog2, this.#r.sidBits);
    if (sid >= (POW2[limit] ?? 2 ** limit)) {
      this.#n.step("stream table", null, `fault: C_BAD_STREAMID (StreamID >= 2^${limit})`);
      return this.#f.set(EventId.C_BAD_STREAMID, 0, 0, 0, this.#r.recInvSid()) || null;
    }
    let steAddr: number;
    if (this.#r.strtab2l) {
      // 2-level (3.3.2): SPLIT 6/8/10 (reserved values already read as 6, 6.3.25). SPLIT >= LOG2SIZE:
      // one L1STD, StreamID[LOG2SIZE-1:0] indexes its L2 table, so capping at LOG2SIZE is exact.
      const split = Math.min(this.#r.strtabSplit, limit);
      const l1Addr = this.#r.strtabBase + Math.floor(sid / (POW2[split] ?? 2 ** split)) * 8;
      if (!this.#read8(l1Addr, this.#buf, 2)) {
        this.#n.step("L1STD", l1Addr, "fault: F_STE_FETCH");
        return this.#f.set(EventId.F_STE_FETCH, 0, 0, l1Addr, true) || null;
      }
      const lo = this.#buf[0]!;
      const hi = this.#buf[1]!;
      let span = lo & 0x1f;
      if (span > 11) span = 0; // Span 12..31 behave as 0 (5.1)
      span = Math.min(span, split + 1);
      const l2Index = sid % (POW2[split] ?? 2 ** split);
      if (this.#n.steps !== null)
        this.#n.step(
          "L1STD",
          l1Addr,
          span === 0 ? "invalid (Span 0)" : `L2 of 2^${span - 1} STEs`,
          [hex((BigInt(hi) << 32n) | BigInt(lo))],
          { Span: lo & 0x1f },
        );
      if (span === 0 || l2Index >= 2 ** (span - 1)) {
        // Spec: beyond Span is C_BAD_STREAMID (QEMU says C_BAD_STE).
        return this.#f.set(EventId.C_BAD_STREAMID, 0, 0, 0, this.#r.recInvSid()) || null;
      }
      steAddr = (hi & 0xfffff) * TWO32 + (lo >>> 6) * 64 + l2Index * 64;
    } else {
      steAddr = this.#r.strtabBase + sid * 64;
    }
    const w = new Uint32Array(16);
    if (!this.#read8(steAddr, w, 16)) {
      this.#n.step("STE", steAddr, "fault: F_STE_FETCH");
      return this.#f.set(EventId.F_STE_FETCH, 0, 0, steAddr, true) || null;
    }
    const ste = new SteCfg();
    ste.raw = w;
    if ((w[0]! & 1) === 0) return this.#badSte(steAddr, w, "V=0");
    const config = (w[0]! >>> 1) & 7;
    if ((config & 4) === 0) {
      ste.kind = STE_ABORT; // Config 0b0xx: abort, no event (5.2)
      if (this.#n.steps !== null)
        this.#n.step("STE", steAddr, "abort (Config=0b0xx)", rawWords(w, 8), { V: 1, Config: config });
      return ste;
    }
    if (config === 4) {
      ste.kind = STE_BYPASS;
      if (this.#n.steps !== null)
        this.#n.step("STE", steAddr, "bypass", rawWords(w, 8), { V: 1, Config: config });
      return ste;
    }
    const s1 = (config & 1) !== 0;
    const s2 = (config & 2) !== 0;
    if ((s1 && !this.#r.s1p) || (s2 && !this.#r.s2p))
      return this.#badSte(steAddr, w, "stage not implemented");
    ste.kind = s1 && s2 ? STE_NESTED : s1 ? STE_S1 : STE_S2;
    // STRW [95:94] is RES0 without IDR0.Hyp and IGNORED with stage 2; else 0bx1 is ILLEGAL (5.2).
    const strw = (w[2]! >>> 30) & 3;
    if (this.#r.hyp && !s2 && (strw & 1) === 1) return this.#badSte(steAddr, w, `STRW=${strw}`);
    // EATS [93:92] is IGNORED without IDR0.ATS. Full ATS with S2S, split-stage outside nested (5.2).
    const eats = (w[2]! >>> 28) & 3;
    const s2s = ((w[5]! >>> 25) & 1) === 1;
    if (this.#r.ats && s2 && s2s && (eats === 1 || eats === 3))
      return this.#badSte(steAddr, w, "EATS=Full ATS with S2S=1");
    if (this.#r.ats && eats === 2 && (!(s1 && s2) || s2s))
      return this.#badSte(steAddr, w, "EATS=split-stage outside a nested STE");
    if (s1) {
      ste.s1Fmt = (w[0]! >>> 4) & 3;
      if (ste.s1Fmt === 3) ste.s1Fmt = 0; // S1Fmt 0b11: reserved, behaves as 0b00 (5.2)
      ste.ctxPtr = (w[1]! & 0xfffff) * TWO32 + (w[0]! >>> 6) * 64; // S1ContextPtr [51:6]
      // S1CDMax [63:59] is IGNORED without substreams (IDR1.SSIDSIZE = 0), else ILLEGAL above SSIDSIZE.
      ste.cdMax = this.#r.ssidBits === 0 ? 0 : w[1]! >>> 27;
      ste.dss = w[2]! & 3;
      if (ste.dss === 3) ste.dss = 0; // S1DSS 0b11: reserved, behaves as 0b00 (terminate)
      if (ste.cdMax > this.#r.ssidBits)
        return this.#badSte(steAddr, w, `S1CDMax ${ste.cdMax} > SSIDSIZE ${this.#r.ssidBits}`);
      if (ste.cdMax > 0 && ste.s1Fmt !== 0 && !this.#r.cd2l)
        return this.#badSte(steAddr, w, "2-level CD table without IDR0.CD2L");
      // S1STALLD [91] is ILLEGAL unless the stall model is configurable (STALL_MODEL = 0b00).
      if (((w[2]! >>> 27) & 1) === 1 && this.#r.stallModel !== 0)
        return this.#badSte(steAddr, w, "S1STALLD without a configurable stall model");
      if (!s2 && ste.ctxPtr >= 2 ** this.#r.oas) return this.#badSte(steAddr, w, "S1ContextPtr beyond OAS");
    }
    if (this.#r.s2p) ste.vmid = w[4]! & 0xffff; // S2VMID tags stage-1 entries too when S2P=1
    if (s2) {
      const w5 = w[5]!;
      const t0sz = w5 & 0x3f;
      const sl0 = (w5 >>> 6) & 3;
      const tg = (w5 >>> 14) & 3;
      const ps = (w5 >>> 16) & 7;
      if (((w5 >>> 19) & 1) === 0) return this.#badSte(steAddr, w, "S2AA64=0 (AArch32 tables unsupported)");
      if (((w5 >>> 20) & 1) === 1 && this.#r.ttEndian === 2)
        return this.#badSte(steAddr, w, "S2ENDI=1 on a little-endian-only SMMU");
      const g = tg === 0 ? 12 : tg === 1 ? 16 : tg === 2 ? 14 : 0;
      if (g === 0 || !this.#r.granuleOk(g)) return this.#badSte(steAddr, w, `S2TG=${tg}`);
      // eff_S2PS = MIN(S2PS, OAS); a larger or Reserved value behaves as the cap (5.2).
      let psBits = Math.min(ps === 7 ? 56 : PA_BITS[ps]!, this.#r.oas);
      if (g !== 16) psBits = Math.min(psBits, 48);
      const ias = this.#r.oas; // AArch64-only: IAS = OAS (3.4)
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
      if (((w5 >>> 25) & 1) === 1 && this.#r.stallModel === 1)
        return this.#badSte(steAddr, w, "S2S=1 without stall support");
      // STALL_MODEL 0b10 forces stalls: S2S == 0 is ILLEGAL at stage 2 (5.5). Linux 6.15's
      // arm_smmu_make_s2_domain_ste never sets S2S, so its stage-2 STEs fail here.
      if (((w5 >>> 25) & 1) === 0 && this.#r.stallModel === 2)
        return this.#badSte(steAddr, w, "S2S=0 with stalls forced (STALL_MODEL 0b10)");
      const ttb = (w[7]! & 0xfffff) * TWO32 + (w[6]! >>> 4) * 16; // S2TTB [51:4]
      if (ttb >= 2 ** psBits) return this.#badSte(steAddr, w, "S2TTB beyond S2PS");
      // S2TTB is aligned to the (concatenated) start-level table, as CD.TTBx (5.2, VTTBR_EL2.BADDR):
      // 64 bytes only with a 52-bit S2PS, else the table size (16 at least: S2TTB is [51:4]).
      const align = Math.max(psBits === 52 ? 64 : 16, 2 ** (topBits + 3));
      ste.s2g = g;
      ste.s2ias = inBits;
      ste.s2start = start;
      ste.s2ttb = ttb - (ttb % align);
      ste.s2ps = psBits;
      ste.s2affd = ((w5 >>> 21) & 1) === 1;
      // S2HA [56] / S2HD [55]: ILLEGAL beyond IDR0.HTTU; {S2HA,S2HD} = 0b01 behaves as 0b00 (5.2).
      const s2ha = ((w5 >>> 24) & 1) === 1;
      const s2hd = ((w5 >>> 23) & 1) === 1;
      if (s2ha && this.#r.httu === 0) return this.#badSte(steAddr, w, "S2HA=1 without HTTU");
      if (s2hd && this.#r.httu < 2) return this.#badSte(steAddr, w, "S2HD=1 without dirty-state HTTU");
      ste.s2ha = s2ha;
      ste.s2hd = s2ha && s2hd;
      ste.s2r = ((w5 >>> 26) & 1) === 1;
    }
    if (this.#n.steps !== null)
      this.#n.step("STE", steAddr, ["", "", "stage 1", "stage 2", "nested"][ste.kind]!, rawWords(w, 8), {
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
    this.#n.step("STE", steAddr, `fault: C_BAD_STE (${why})`, rawWords(w, 8));
    this.#f.set(EventId.C_BAD_STE, 0, 0, 0, true);
    return null;
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
      if (!this.#w.walkS2(cfgSte, addr, Perm.R, EventClass.CD)) return false;
      pa = this.#w.s2Oa;
    }
    if (!this.#read8(pa, out, words)) {
      this.#n.step(what, pa, `fault: ${EVENT_NAMES[fetchId]}`);
      return this.#f.set(fetchId, 0, 0, pa, true);
    }
    return true;
  }

  /** Decodes the configuration for (sid, ssid); null on a fault (scratch set). */
  load(sid: number, ssid: number, useCache: boolean): TransCfg | null {
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
        this.#n.step("STE", null, "fault: F_STREAM_DISABLED (S1DSS=terminate)");
        return this.#f.set(EventId.F_STREAM_DISABLED, 0, 0, 0, true) || null;
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
        this.#n.step("STE", null, "fault: F_STREAM_DISABLED (SSID 0 with S1DSS=SSID0)");
        return this.#f.set(EventId.F_STREAM_DISABLED, 0, 0, 0, true) || null;
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
      if (this.#n.steps !== null)
        this.#n.step("L1CD", l1Addr, lo & 1 ? "valid" : "invalid", [hex((BigInt(hi) << 32n) | BigInt(lo))]);
      if ((lo & 1) === 0) return this.#badSsid("L1CD.V=0", true);
      cdAddr = (hi & 0xfffff) * TWO32 + (lo >>> 12) * 4096 + (index % 2 ** split) * 64;
    }
    const w = new Uint32Array(16);
    if (!this.#fetchCfgWord(ste, cdAddr, nested, w, 16, EventId.F_CD_FETCH, "CD")) return null;
    return this.#decodeCd(cfg, w, cdAddr);
  }

  /** C_BAD_SUBSTREAMID: records the fault (blocked: as F_STREAM_DISABLED would), returns null. */
  #badSsid(why: string, blocked = false): null {
    this.#n.step("CD table", null, `fault: C_BAD_SUBSTREAMID (${why})`);
    this.#f.set(EventId.C_BAD_SUBSTREAMID, 0, 0, 0, true);
    this.#f.blocked = blocked;
    return null;
  }

  #decodeCd(cfg: TransCfg, w: Uint32Array, cdAddr: number): TransCfg | null {
    const w0 = w[0]!;
    const w1 = w[1]!;
    if (w0 >>> 31 === 0) return this.#badCd(cdAddr, w, "V=0", true);
    if (((w1 >>> 9) & 1) === 0) return this.#badCd(cdAddr, w, "AA64=0 (AArch32 tables unsupported)");
    const bothOff = ((w0 >>> 14) & 1) === 1 && ((w0 >>> 30) & 1) === 1;
    if (!bothOff && ((w0 >>> 15) & 1) === 1 && this.#r.ttEndian === 2)
      return this.#badCd(cdAddr, w, "ENDI=1 on a little-endian-only SMMU");
    const ips = w1 & 7;
    // CD.S [44] (5.5): ILLEGAL with STALL_MODEL 0b01, or 0b00 under STE.S1STALLD == 1;
    // S == 0 is ILLEGAL with STALL_MODEL 0b10 (stalls forced).
    const stall = ((w1 >>> 12) & 1) === 1;
    const s1stalld = ((cfg.ste.raw[2]! >>> 27) & 1) === 1;
    if (stall && this.#r.stallModel === 1) return this.#badCd(cdAddr, w, "S=1 without stall support");
    if (stall && s1stalld) return this.#badCd(cdAddr, w, "S=1 under STE.S1STALLD=1");
    if (!stall && this.#r.stallModel === 2) return this.#badCd(cdAddr, w, "S=0 with stalls forced");
    cfg.epd0 = ((w0 >>> 14) & 1) === 1;
    cfg.epd1 = ((w0 >>> 30) & 1) === 1;
    cfg.t0sz = w0 & 0x3f;
    cfg.t1sz = (w0 >>> 16) & 0x3f;
    const tg0 = (w0 >>> 6) & 3;
    const tg1 = (w0 >>> 22) & 3;
    cfg.tg0 = [12, 16, 14, 0][tg0]!;
    cfg.tg1 = [0, 14, 12, 16][tg1]!;
    // eff_IPS = MIN(IPS, OAS); a larger or Reserved value behaves as the cap (5.4).
    let oa = Math.min(ips === 7 ? 56 : PA_BITS[ips]!, this.#r.oas);
    cfg.ttb0 = (w[3]! & 0xfffff) * TWO32 + (w[2]! >>> 4) * 16;
    cfg.ttb1 = (w[5]! & 0xfffff) * TWO32 + (w[4]! >>> 4) * 16;
    for (const half of [0, 1]) {
      if (half === 0 ? cfg.epd0 : cfg.epd1) continue;
      const tsz = half === 0 ? cfg.t0sz : cfg.t1sz;
      const g = half === 0 ? cfg.tg0 : cfg.tg1;
      const ttb = half === 0 ? cfg.ttb0 : cfg.ttb1;
      if (g === 0 || !this.#r.granuleOk(g))
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
    if (ha && this.#r.httu === 0) return this.#badCd(cdAddr, w, "HA=1 without HTTU");
    if (hd && this.#r.httu < 2) return this.#badCd(cdAddr, w, "HD=1 without dirty-state HTTU");
    cfg.ha = ha;
    cfg.hd = ha && hd;
    cfg.r = ((w1 >>> 13) & 1) === 1;
    cfg.asid = w1 >>> 16;
    cfg.had0 = this.#r.had && ((w[2]! >>> 1) & 1) === 1;
    cfg.had1 = this.#r.had && ((w[4]! >>> 1) & 1) === 1;
    cfg.mode = MODE_TRANSLATE;
    cfg.s1 = true;
    cfg.s2 = cfg.ste.kind === STE_NESTED;
    cfg.tag = tlbTag(cfg.vmid, cfg.asid);
    setQuick(cfg);
    if (stall) this.#stalls.add(cfg);
    if (this.#n.steps !== null)
      this.#n.step("CD", cdAddr, "valid", rawWords(w, 4), {
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
        S: stall,
      });
    return cfg;
  }
  /** C_BAD_CD for the CD at `cdAddr` (words `w`): records the fault, returns null. */
  #badCd(cdAddr: number, w: Uint32Array, why: string, blocked = false): null {
    this.#n.step("CD", cdAddr, `fault: C_BAD_CD (${why})`, rawWords(w, 4));
    this.#f.set(EventId.C_BAD_CD, 0, 0, 0, true);
    this.#f.blocked = blocked;
    return null;
  }
}
