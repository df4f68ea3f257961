/**
 * The driver half's device and domain programming, as Linux's intel-iommu does it
 * (drivers/iommu/intel/iommu.c domain_context_mapping, context_present_cache_flush,
 * cache.c cache_tag_flush_range; pasid.c intel_pasid_setup_*, intel_pasid_tear_down_entry,
 * intel_pasid_setup_dirty_tracking): root / context entries (Intel VT-d spec 9.1-9.4),
 * the PASID directory and PASID table entries (spec 9.5-9.6), domain identifiers, and
 * the invalidation descriptors a careful driver submits after each change (spec 6.5.2,
 * 6.5.3.3), through the queue of driver/queue.ts. Table levels: the paging tables are
 * core PageTables (levels as generic_pt/fmt/vtdss.h: PTE = 0 ... PML5E = 4); here only
 * their roots and widths (AW = levels - 2) are written.
 */

import type { Capabilities, DeviceSpec, PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import type { VtdDomain } from "../domain.ts";
import { VtdS1Flags } from "../domain.ts";
import { encodeContextEntry, encodeScalableContextEntry, Tt } from "../format/context-entry.ts";
import type { InvDescriptor } from "../format/inv-desc.ts";
import type { PasidEntry } from "../format/pasid-entry.ts";
import { EMPTY_PASID_ENTRY, encodePasidDirEntry, encodePasidEntry, Pgtt } from "../format/pasid-entry.ts";
import { encodeRootEntry, encodeScalableRootEntry } from "../format/root-entry.ts";
import type { VtdHardware } from "../hardware.ts";
import { capabilitiesFor, pageRequestsEnabled } from "../hw-info.ts";
import { writeWords } from "../internal/words.ts";
import { DriverPrq } from "./prq.ts";
import { DriverQueue } from "./queue.ts";

// Descriptor type codes and granularities (spec 6.5.2.3-6.5.2.4, Linux QI_IOTLB_GRAN /
// QI_GRAN_*), module-local: the invalidation path writes descriptor halves from them.
const DESC_IOTLB = 0x2;
const DESC_PASID_IOTLB = 0x6;
/** IOTLB G: 2 = domain-selective (DMA_TLB_DSI_FLUSH), 3 = page-selective (DMA_TLB_PSI_FLUSH). */
const IOTLB_DSI = 2;
const IOTLB_PSI = 3;
/** PASID-based IOTLB G: 2 = PASID-selective (QI_GRAN_NONG_PASID), 3 = page-selective (QI_GRAN_PSI_PASID). */
const PIOTLB_PASID = 2;
const PIOTLB_PSI = 3;

/** PASID of requests without PASID in scalable mode (the context entry's RID_PASID). */
export const RID_PASID = 0;
const MAX_DID = 65535;

/** A device as the driver knows it. */
export interface Device {
  readonly spec: DeviceSpec;
  readonly caps: Capabilities;
  /** Scalable mode: PASID directory and its size. */
  readonly dirPa: number;
  readonly pdts: number;
  /** PASID tables by directory index. */
  readonly pasidTables: Map<number, number>;
  rid: VtdDomain | null;
  readonly pasids: Map<number, VtdDomain>;
}

/** The driver half of one VT-d unit: its queue, devices, domain identifiers and entry writes. */
export class VtdDriver {
  readonly memory: PhysicalMemory;
  readonly hw: VtdHardware;
  readonly tables: TableAllocator;
  readonly scalable: boolean;
  readonly haw: number;
  /** The invalidation queue, root table and fault handler. */
  readonly queue: DriverQueue;
  /** The page request queue and its handler (driver/prq.ts). */
  readonly prq: DriverPrq;
  readonly devices: Map<number, Device> = new Map();
  /** Context tables by bus (legacy) or bus * 2 + upper (scalable). */
  readonly #contextTables = new Map<number, number>();
  #nextDid = 1;
  readonly #freeDids: number[] = [];
  /** flushRange's PASIDs of one domain (reused). */
  readonly #pasidScratch: number[] = [];

  /** Brings the unit up (root table, queued invalidation, fault events, translation). */
  constructor(
    hw: VtdHardware,
    memory: PhysicalMemory,
    tables: TableAllocator,
    scalable: boolean,
    haw: number,
  ) {
    this.hw = hw;
    this.memory = memory;
    this.tables = tables;
    this.scalable = scalable;
    this.haw = haw;
    this.queue = new DriverQueue(hw, memory, tables, scalable);
    this.prq = new DriverPrq(hw, memory, tables, this.queue, (rid) => this.devices.has(rid));
  }

  addDevice(spec: DeviceSpec): void {
    const tables = this.tables;
    if (!Number.isInteger(spec.rid) || spec.rid < 0 || spec.rid > 0xffff)
      throw new IommuError("EINVAL", `VT-d source-id ${spec.rid} is not a 16-bit number`, { rid: spec.rid });
    if (this.devices.has(spec.rid))
      throw new IommuError("EEXIST", `VT-d device ${spec.rid} exists`, { rid: spec.rid });
    if (!Number.isInteger(spec.pasidBits) || spec.pasidBits < 0 || spec.pasidBits > 20)
      throw new IommuError("EINVAL", `pasidBits ${spec.pasidBits} is not in [0, 20]`, {
        pasidBits: spec.pasidBits,
      });
    const caps = capabilitiesFor(
      this.hw.cap,
      this.hw.ecap,
      this.hw.capReg,
      this.hw.ecapReg,
      this.haw,
      this.scalable,
      spec,
    );
    const bus = spec.rid >>> 8;
    const devfn = spec.rid & 0xff;
    const key = this.scalable ? bus * 2 + (devfn >= 128 ? 1 : 0) : bus;
    const fresh: number[] = [];
    let ctxTable = this.#contextTables.get(key);
    let dirPa = 0;
    let pdts = 0;
    try {
      if (ctxTable === undefined) {
        ctxTable = tables.alloc(12, "vtd context table");
        fresh.push(ctxTable);
      }
      if (this.scalable) {
        // A directory entry covers 64 PASIDs; PDTS gives 2^(PDTS+7) entries (spec 9.4).
        const dirEntries = 2 ** Math.max(0, Math.max(caps.maxPasidLog2, 1) - 6);
        pdts = Math.max(0, Math.ceil(Math.log2(dirEntries)) - 7);
        dirPa = tables.alloc(Math.max(12, pdts + 10), "vtd PASID directory");
        fresh.push(dirPa);
      }
    } catch (e) {
      for (const pa of fresh) tables.free(pa);
      throw e;
    }
    if (!this.#contextTables.has(key)) {
      this.#contextTables.set(key, ctxTable);
      this.#writeRootEntry(bus);
    }
    const dev: Device = { spec, caps, dirPa, pdts, pasidTables: new Map(), rid: null, pasids: new Map() };
    this.devices.set(spec.rid, dev);
    if (this.scalable) {
      // Present context entry, blocked through an empty PASID directory (RID_PASID 0).
      // Linux 6.15 pasid.c context_entry_set_pasid_table: DTE for ATS, PRE for pri_supported
      // (ATS on a unit with ECAP.PRS, intel_iommu_probe_device).
      const ats = spec.ats === true && this.hw.ecap.dt;
      const words = encodeScalableContextEntry({
        present: true,
        fpd: false,
        dte: ats,
        paside: caps.maxPasidLog2 > 0,
        pre: ats && spec.pri === true && this.hw.ecap.prs,
        pdts,
        pasidDirPtr: dirPa,
        ridPasid: RID_PASID,
        ridPriv: false,
      });
      writeWords(this.memory, ctxTable + (devfn & 0x7f) * 32, words);
    }
    // Linux context_present_cache_flush: device-selective context-cache invalidation.
    this.queue.submit([{ type: "context-cache", g: 3, did: 0, sid: spec.rid, fm: 0 }]);
    // intel_iommu_probe_device: pci_enable_pri when ATS is on and PASID is (hw-info.ts).
    if (pageRequestsEnabled(this.hw.ecap, this.scalable, spec)) this.prq.enablePri(spec.rid);
  }

  #writeRootEntry(bus: number): void {
    const at = this.queue.root + bus * 16;
    if (this.scalable) {
      const lower = this.#contextTables.get(bus * 2);
      const upper = this.#contextTables.get(bus * 2 + 1);
      writeWords(
        this.memory,
        at,
        encodeScalableRootEntry({
          lowerPresent: lower !== undefined,
          lowerCtp: lower ?? 0,
          upperPresent: upper !== undefined,
          upperCtp: upper ?? 0,
        }),
      );
    } else {
      writeWords(this.memory, at, encodeRootEntry({ present: true, ctp: this.#contextTables.get(bus)! }));
    }
  }

  device(rid: number): Device {
    const d = this.devices.get(rid);
    if (d === undefined) throw new IommuError("ENOENT", `no VT-d device with rid ${rid}`, { rid });
    return d;
  }

  ctxEntryPa(rid: number): number {
    const bus = rid >>> 8;
    const devfn = rid & 0xff;
    if (this.scalable)
      return this.#contextTables.get(bus * 2 + (devfn >= 128 ? 1 : 0))! + (devfn & 0x7f) * 32;
    return this.#contextTables.get(bus)! + devfn * 16;
  }

  removeDevice(rid: number): void {
    const d = this.device(rid);
    if (d.rid !== null || d.pasids.size > 0)
      throw new IommuError("EBUSY", `VT-d device ${rid} is attached`, { rid });
    writeWords(this.memory, this.ctxEntryPa(rid), this.scalable ? [0n, 0n, 0n, 0n] : [0n, 0n]);
    this.queue.submit([
      { type: "context-cache", g: 3, did: 0, sid: rid, fm: 0 },
      ...(this.scalable ? [{ type: "pasid-cache", g: 3, did: 0, pasid: 0 } as const] : []),
    ]);
    for (const pa of d.pasidTables.values()) this.tables.free(pa);
    if (this.scalable) this.tables.free(d.dirPa);
    this.prq.disablePri(rid);
    this.devices.delete(rid);
  }

  allocDid(): number {
    const reused = this.#freeDids.pop();
    if (reused !== undefined) return reused;
    if (this.#nextDid > MAX_DID) throw new IommuError("ENOSPC", "no free VT-d domain identifier");
    return this.#nextDid++;
  }

  /** Called by VtdDomain.free: invalidates everything tagged with its DID and recycles the DID. */
  releaseDomain(d: VtdDomain): void {
    if (d.did === 0) return;
    const descs: InvDescriptor[] = [
      { type: "iotlb", g: 2, dr: true, dw: true, did: d.did, addr: 0, ih: false, am: 0 },
    ];
    if (this.scalable) descs.push({ type: "pasid-cache", g: 0, did: d.did, pasid: 0 });
    this.queue.submit(descs);
    this.#freeDids.push(d.did);
  }

  setRid(dev: Device, dom: VtdDomain | null): void {
    const old = dev.rid;
    if (old === dom) return;
    if (this.scalable) {
      this.#writePasidEntry(dev, RID_PASID, dom, old);
    } else {
      const words = dom === null ? [0n, 0n] : this.#legacyContext(dev, dom);
      writeWords(this.memory, this.ctxEntryPa(dev.spec.rid), words);
      // Context change: device-selective context cache, then the old domain's IOTLB (spec 6.5.3.3).
      const descs: InvDescriptor[] = [
        { type: "context-cache", g: 3, did: old?.did ?? 0, sid: dev.spec.rid, fm: 0 },
      ];
      if (old !== null && old.did !== 0)
        descs.push({ type: "iotlb", g: 2, dr: true, dw: true, did: old.did, addr: 0, ih: false, am: 0 });
      if (dev.spec.ats === true) descs.push(devTlbAll(dev.spec.rid));
      this.queue.submit(descs);
    }
    old?.users.delete(`${dev.spec.rid}:-1`);
    dom?.users.add(`${dev.spec.rid}:-1`);
    dev.rid = dom;
  }

  #legacyContext(dev: Device, dom: VtdDomain): bigint[] {
    const ats = dev.spec.ats === true && this.hw.ecap.dt;
    if (dom.kind === "identity") {
      const aw = this.hw.cap.sagaw & 8 ? 3 : this.hw.cap.sagaw & 4 ? 2 : 1;
      return encodeContextEntry({
        present: true,
        fpd: false,
        tt: Tt.PASS_THROUGH,
        slptptr: 0,
        aw,
        did: dom.did,
      });
    }
    return encodeContextEntry({
      present: true,
      fpd: false,
      tt: ats ? Tt.DEVICE_TLB : Tt.TRANSLATE,
      slptptr: dom.table!.root,
      aw: dom.levels - 2,
      did: dom.did,
    });
  }

  setPasid(dev: Device, pasid: number, dom: VtdDomain | null): void {
    const old = dev.pasids.get(pasid) ?? null;
    if (old === dom) return;
    this.#writePasidEntry(dev, pasid, dom, old);
    old?.users.delete(`${dev.spec.rid}:${pasid}`);
    if (dom === null) dev.pasids.delete(pasid);
    else {
      dom.users.add(`${dev.spec.rid}:${pasid}`);
      dev.pasids.set(pasid, dom);
    }
  }

  /** Writes the PASID entry of `pasid` for `dom` (null = blocked) and invalidates as Linux's pasid.c does. */
  #writePasidEntry(dev: Device, pasid: number, dom: VtdDomain | null, old: VtdDomain | null): void {
    const dirIndex = pasid >>> 6;
    let table = dev.pasidTables.get(dirIndex);
    if (table === undefined) {
      if (dom === null) return;
      table = this.tables.alloc(12, "vtd PASID table");
      dev.pasidTables.set(dirIndex, table);
      writeWords(this.memory, dev.dirPa + dirIndex * 8, [
        encodePasidDirEntry({ present: true, fpd: false, tablePtr: table }),
      ]);
    }
    const entry = dom === null ? EMPTY_PASID_ENTRY : this.#pasidEntry(dom);
    writeWords(this.memory, table + (pasid & 0x3f) * 64, encodePasidEntry(entry));
    const descs: InvDescriptor[] = [];
    if (old !== null) {
      // pasid_cache PASID-selective for the old DID, then its translations (Linux intel_pasid_tear_down_entry).
      descs.push({ type: "pasid-cache", g: 1, did: old.did, pasid });
      if (old.kind === "fs" || old.kind === "nested")
        descs.push({ type: "pasid-iotlb", g: 2, did: old.did, pasid, addr: 0, ih: false, am: 0 });
      else descs.push({ type: "iotlb", g: 2, dr: true, dw: true, did: old.did, addr: 0, ih: false, am: 0 });
      if (dev.spec.ats === true)
        descs.push(pasid === RID_PASID ? devTlbAll(dev.spec.rid) : pasidDevTlbAll(dev.spec.rid, pasid));
    }
    if (descs.length > 0) this.queue.submit(descs);
  }

  #pasidEntry(dom: VtdDomain): PasidEntry {
    const pwsnp = this.hw.ecap.smpwcs;
    const base = { ...EMPTY_PASID_ENTRY, present: true, did: dom.did, pwsnp };
    switch (dom.kind) {
      case "identity":
        return { ...base, pgtt: Pgtt.PASS_THROUGH, aw: this.hw.cap.sagaw & 4 ? 2 : 1, sre: true };
      case "ss":
        return {
          ...base,
          pgtt: Pgtt.SECOND_STAGE,
          aw: dom.levels - 2,
          ssptptr: dom.table!.root,
          ssade: dom.dirtyTracking,
          sre: true,
        };
      case "fs":
        return {
          ...base,
          pgtt: Pgtt.FIRST_STAGE,
          aw: 2,
          fsptptr: dom.table!.root,
          fspm: dom.levels === 5 ? 1 : 0,
          sre: true,
        };
      default: {
        const p = dom.parent!;
        const s1 = dom.s1!;
        return {
          ...base,
          pgtt: Pgtt.NESTED,
          aw: p.levels - 2,
          ssptptr: p.table!.root,
          ssade: p.dirtyTracking,
          fsptptr: s1.pgtbl,
          fspm: s1.levels === 5 ? 1 : 0,
          sre: (s1.flags & VtdS1Flags.SRE) !== 0,
          eafe: (s1.flags & VtdS1Flags.EAFE) !== 0,
          wpe: (s1.flags & VtdS1Flags.WPE) !== 0,
        };
      }
    }
  }

  /** The (DID, PASID) tags a domain's translations carry, and the ATS source-ids behind it. */
  #tagsOf(d: VtdDomain): { pasids: number[]; ats: InvDescriptor[] } {
    const pasids = new Set<number>();
    const ats: InvDescriptor[] = [];
    for (const u of d.users) {
      const [r, p] = u.split(":").map(Number) as [number, number];
      pasids.add(p < 0 ? (this.scalable ? RID_PASID : 0) : p);
      if (this.devices.get(r)?.spec.ats === true) ats.push(p < 0 ? devTlbAll(r) : pasidDevTlbAll(r, p));
    }
    return { pasids: [...pasids], ats };
  }

  /**
   * Invalidates a changed IOVA range of a paging domain as Linux's cache_tag_flush_range
   * does (drivers/iommu/intel/cache.c): the smallest naturally aligned block covering the
   * range (calculate_psi_aligned_address), one page-selective IOTLB invalidation of it per
   * tag (cache_tag_flush_iotlb: qi_desc_iotlb for second stage, qi_desc_piotlb per PASID
   * for first stage), or a domain-selective (PASID-selective) one once the mask exceeds
   * CAP.MAMV (`mask > cap_max_amask_val`); then the device-TLBs, and one wait descriptor
   * for the whole batch (qi_batch_flush_descs). The descriptors go into the queue as
   * 32-bit halves: no descriptor objects on this path.
   */
  flushRange(d: VtdDomain, iova: number, length: number, ih = false): void {
    const am = psiAm(iova, length);
    const psi = am <= this.hw.cap.mamv;
    const block = psi ? 4096 * 2 ** am : 0;
    const addr = psi ? Math.floor(iova / block) * block : 0;
    // High qword: ADDR 63:12, IH 6, AM 5:0; the DSI fallback clears all three (cache_tag_flush_iotlb).
    const w2 = psi ? ((addr % 4294967296) & 0xfffff000) | (ih ? 0x40 : 0) | am : 0;
    const w3 = psi ? Math.floor(addr / 4294967296) : 0;
    const g = psi ? IOTLB_PSI : IOTLB_DSI;
    const q = this.queue;
    if (d.kind === "ss") {
      // IOTLB invalidation (spec 6.5.2.3): type 2h, G 5:4, DW 6, DR 7, DID 31:16.
      q.add(DESC_IOTLB | (g << 4) | 0xc0 | ((d.did & 0xffff) << 16), 0, w2, w3);
      // Nested domains over this parent cache IOVA -> HPA through it.
      for (const c of d.children)
        q.add(DESC_IOTLB | (IOTLB_DSI << 4) | 0xc0 | ((c.did & 0xffff) << 16), 0, 0, 0);
    } else {
      // PASID-based IOTLB invalidation (spec 6.5.2.4): type 6h, G 5:4 (2 = PASID, 3 = page), DID 31:16, PASID 51:32.
      const pg = psi ? PIOTLB_PSI : PIOTLB_PASID;
      // The PASIDs tagging the domain's entries, each once (as #tagsOf, without its Set).
      const seen = this.#pasidScratch;
      seen.length = 0;
      for (const u of d.users) {
        const p = Number(u.slice(u.indexOf(":") + 1));
        const pasid = p < 0 ? (this.scalable ? RID_PASID : 0) : p;
        if (seen.includes(pasid)) continue;
        seen.push(pasid);
        q.add(DESC_PASID_IOTLB | (pg << 4) | ((d.did & 0xffff) << 16), pasid & 0xfffff, w2, w3);
      }
    }
    this.#addAts(d);
    for (const c of d.children) this.#addAts(c);
    q.flush();
  }

  /** Batches the device-TLB invalidations of `d`'s ATS users (per unmap: no Set, no split). */
  #addAts(d: VtdDomain): void {
    for (const u of d.users) {
      const colon = u.indexOf(":");
      const r = Number(u.slice(0, colon));
      if (this.devices.get(r)?.spec.ats !== true) continue;
      const p = Number(u.slice(colon + 1));
      this.queue.addDesc(p < 0 ? devTlbAll(r) : pasidDevTlbAll(r, p));
    }
  }

  /** Nested user invalidation: PASID-based IOTLB for every PASID the domain serves. */
  flushNested(d: VtdDomain, all: boolean, addr: bigint, npages: bigint, leaf: boolean): void {
    const descs: InvDescriptor[] = [];
    const { pasids, ats } = this.#tagsOf(d);
    let am = 0;
    while (1n << BigInt(am) < npages) am++;
    const start = Number(addr - (addr % (1n << BigInt(12 + am))));
    for (const pasid of pasids) {
      descs.push(
        all || am > this.hw.cap.mamv || addr >= 2n ** 53n
          ? { type: "pasid-iotlb", g: 2, did: d.did, pasid, addr: 0, ih: false, am: 0 }
          : { type: "pasid-iotlb", g: 3, did: d.did, pasid, addr: start, ih: leaf, am },
      );
    }
    descs.push(...ats);
    this.queue.submit(descs);
  }

  /** Turns second-stage A/D on or off in every PASID entry using the domain (Linux intel_pasid_setup_dirty_tracking). */
  setDirtyTracking(d: VtdDomain, enable: boolean): void {
    if (d.dirtyTracking === enable) return;
    d.dirtyTracking = enable;
    const users = [...d.users, ...[...d.children].flatMap((c) => [...c.users])];
    for (const u of users) {
      const [r, p] = u.split(":").map(Number) as [number, number];
      const dev = this.devices.get(r)!;
      const pasid = p < 0 ? RID_PASID : p;
      const holder = p < 0 ? dev.rid! : dev.pasids.get(p)!;
      const table = dev.pasidTables.get(pasid >>> 6)!;
      writeWords(this.memory, table + (pasid & 0x3f) * 64, encodePasidEntry(this.#pasidEntry(holder)));
      this.queue.submit([
        { type: "pasid-cache", g: 1, did: holder.did, pasid },
        { type: "iotlb", g: 2, dr: true, dw: true, did: holder.did, addr: 0, ih: false, am: 0 },
      ]);
    }
  }
}

function pasidDevTlbAll(sid: number, pasid: number): InvDescriptor {
  // PASID-based device-TLB invalidation of everything (Linux qi_flush_dev_iotlb_pasid, spec 6.5.2.7).
  return {
    type: "pasid-dev-tlb",
    sid,
    pasid,
    pfsid: sid,
    qdep: 0,
    global: false,
    s: true,
    addr: 0x7ffffffffffff000,
  };
}

function devTlbAll(sid: number): InvDescriptor {
  // Device-TLB invalidation of the whole range: ADDR with S = 1 and bit 63 clear (spec 6.5.2.5).
  return { type: "dev-tlb", sid, pfsid: sid, qdep: 0, s: true, addr: 0x7ffffffffffff000 };
}

/** The smallest naturally aligned power-of-two block (addr, AM) covering [iova, iova + length). */
export function psiRange(iova: number, length: number): { addr: number; am: number } {
  const am = psiAm(iova, length);
  const block = 4096 * 2 ** am;
  return { addr: Math.floor(iova / block) * block, am };
}

/** The AM of {@link psiRange} alone (no result object, for the flush path). */
export function psiAm(iova: number, length: number): number {
  // Halve both page numbers until they meet (no 2 ** am per step).
  let first = Math.floor(iova / 4096);
  let last = Math.floor((iova + Math.max(length, 1) - 1) / 4096);
  let am = 0;
  while (first !== last) {
    first = Math.floor(first / 2);
    last = Math.floor(last / 2);
    am++;
  }
  return am;
}
