/**
 * The SMMUv3 backend: core's contract over the hardware model (`hardware.ts`) and its
 * driver (`driver.ts`). This file is the glue: the device registry, domain allocation,
 * attach / detach as core's intents say them and which STE and CDs each state needs
 * (ARM IHI 0070 5.2, 5.4), translation and explain handed to the hardware, dumps. Every
 * change reaches the hardware as the driver writes it (tables in memory, commands in
 * the command queue); every translation goes through the hardware model. Mapping to the
 * contract: rid = StreamID; `rid` -> STE (stage 1 with CD 0, or stage 2); `pasid` ->
 * CD[SSID]; `rid-all-pasids` -> a nested STE from a vIOMMU's nested domain (`viommu.ts`,
 * `nested.ts`). Recoverable faults: stalls (CD.S, STE.S1STALLD) reach the driver's
 * event handler (`events.ts`) and are answered with CMD_RESUME (`pageResponse`).
 */

import type {
  AttachIntent,
  AttachResult,
  Backend,
  BackendContext,
  BackendFactory,
  CacheCounters,
  Capabilities,
  DeviceSpec,
  Domain,
  DomainRequest,
  IovaRange,
  PageRequest,
  PageResponseCode,
  PhysicalMemory,
  TableAllocator,
  Translation,
  TranslationOutcome,
  Viommu,
  ViommuRequest,
  WalkStep,
} from "@iommu-kit/core";
import { assertIntentAllowed, createTranslation, IommuError, outcomeOf } from "@iommu-kit/core";
import { PageTable } from "@iommu-kit/core/driver";
import { SmmuDomain, SmmuPagingDomain, SmmuSimpleDomain } from "./domain.ts";
import type { CdOwner } from "./driver.ts";
import { SmmuDriver } from "./driver.ts";
import { dumpSmmu } from "./dump.ts";
import type { Vmaster } from "./events.ts";
import { handleEvent, resumeCommand } from "./events.ts";
import type { Command } from "./format/command.ts";
import type { EventRecord } from "./format/event.ts";
import { lpaeFormat, lpaeGeometry } from "./format/lpae-pte.ts";
import { encodeSte, S1Dss, SteConfig } from "./format/ste.ts";
import type { RegisterValues } from "./hardware.ts";
import { SmmuHw } from "./hardware.ts";
import { capabilitiesOf, domainFormats, domainInputBits, granulePageSizes, granules } from "./hw-info.ts";
import { nestedSteWords, SmmuNestedDomain } from "./nested.ts";
import type { SmmuV3Config } from "./options.ts";
import { bad, checkConfig, registersFor, SMMUV3_CONFIG_SCHEMA } from "./options.ts";
import type { ViommuHost } from "./viommu.ts";
import { createViommu, type SmmuViommu } from "./viommu.ts";

export { SmmuDomain, SmmuPagingDomain } from "./domain.ts";
export { SmmuNestedDomain } from "./nested.ts";
export type { SmmuV3Config } from "./options.ts";
export { registersFor, SMMUV3_CONFIG_SCHEMA } from "./options.ts";

/** The software MSI window Linux reserves (MSI_IOVA_BASE 0x8000000, MSI_IOVA_LENGTH 0x100000). */
export const MSI_IOVA_BASE = 0x8000000;
const MSI_IOVA_LENGTH = 0x100000;

/** A device as the backend keeps it: what is attached, its CD table, vmaster and outstanding stalls. */
interface DeviceState extends CdOwner {
  slot: { kind: "rid" | "rid-all-pasids"; domain: SmmuDomain } | null;
  readonly pasids: Map<number, SmmuPagingDomain>;
  /** master->stall_enabled (arm_smmu_probe_device). */
  readonly stall: boolean;
  /** master->vmaster: set by a nested attach that found a vDEVICE (arm_smmu_attach_commit_vmaster). */
  vmaster: Vmaster | null;
  /** STAGs of reported stalls not yet answered. */
  readonly pending: Set<number>;
}

/** The SubstreamID an intent names, if any (what an attach/detach may add to a domain's users). */
function pasidOf(intent: AttachIntent): number | null {
  return intent.kind === "pasid" && typeof intent.pasid === "number" ? intent.pasid : null;
}

/** An SMMUv3 instance: the hardware model plus (unless built from registers) the driver. */
export class SmmuV3Backend implements ViommuHost {
  readonly kind = "smmuv3";
  readonly name: string;
  // `declare`: no field definition (undefined first); the constructor's store creates it,
  // written once, so V8 treats it as constant and folds a hit path through a known backend.
  declare readonly hw: SmmuHw;
  readonly memory: PhysicalMemory;
  readonly #tables: TableAllocator | null;
  readonly #devices = new Map<number, DeviceState>();
  #nextId = 1;
  #nextViommuId = 1;
  readonly #drv: SmmuDriver;
  /** The vIOMMUs of this SMMU. */
  readonly viommus: Set<SmmuViommu> = new Set();

  constructor(
    memory: PhysicalMemory,
    tables: TableAllocator | null,
    name: string,
    registers: RegisterValues,
    tlbLg2: number,
  ) {
    this.name = name;
    this.memory = memory;
    this.#tables = tables;
    this.hw = new SmmuHw(memory, registers, tlbLg2);
    this.#drv = new SmmuDriver(this.hw, memory, tables);
  }
  /** Brings the SMMU up as Linux's arm_smmu_device_reset does: tables, queues, CFGI_ALL, TLBI_NSNH_ALL, SMMUEN. */
  initDriver(config: SmmuV3Config): void {
    this.#drv.init(config);
    this.#drv.setEventHandler((w) => handleEvent(w, (sid) => this.#devices.get(sid)));
  }

  #driver(): TableAllocator {
    if (this.#tables === null)
      throw bad("EOPNOTSUPP", `${this.name} is a hardware-model-only instance (built from registers)`);
    return this.#tables;
  }

  /**
   * Submits commands through the command queue in memory and a CMDQ_PROD write, with a
   * CMD_SYNC at the end, as arm_smmu_cmdq_issue_cmdlist does. EIO if the SMMU stops the queue.
   */
  submit(cmds: readonly (readonly [bigint, bigint])[]): void {
    this.#drv.submit(cmds);
  }

  // ---------------------------------------------------------------- devices

  #device(rid: number): DeviceState {
    const d = this.#devices.get(rid);
    if (d === undefined) throw bad("ENOENT", `no device with rid ${rid}`, { rid });
    return d;
  }

  addDevice(spec: DeviceSpec): void {
    this.#driver();
    const rid = spec.rid;
    if (!Number.isInteger(rid) || rid < 0 || rid >= 2 ** this.hw.sidBits)
      throw bad("EINVAL", `rid ${rid} is outside [0, 2^${this.hw.sidBits})`, { rid });
    if (this.#devices.has(rid)) throw bad("EEXIST", `rid ${rid} is already a device`, { rid });
    if (!Number.isInteger(spec.pasidBits) || spec.pasidBits < 0 || spec.pasidBits > 20)
      throw bad("EINVAL", `pasidBits ${spec.pasidBits} is outside [0, 20]`, { pasidBits: spec.pasidBits });
    const ssidBits = this.hw.s1p ? Math.min(spec.pasidBits, this.hw.ssidBits) : 0;
    // arm_smmu_probe_device: FEAT_STALLS (STALL_MODEL 0b00 / 0b10) and "dma-can-stall", or FEAT_STALL_FORCE.
    const sm = this.hw.stallModel;
    const stall = (sm !== 1 && spec.canStall === true) || sm === 2;
    this.#drv.addStream(rid);
    const dev: DeviceState = {
      rid,
      ssidBits,
      slot: null,
      pasids: new Map(),
      cd: null,
      stall,
      vmaster: null,
      pending: new Set(),
    };
    this.#devices.set(rid, dev);
    this.#writeSte(dev);
  }

  removeDevice(rid: number): void {
    this.#driver();
    const dev = this.#device(rid);
    if (dev.slot !== null || dev.pasids.size > 0)
      throw bad("EBUSY", `rid ${rid} has attached domains`, { rid });
    for (const v of this.viommus)
      if (v.virtId(rid) >= 0) throw bad("EBUSY", `rid ${rid} has a vDEVICE on vIOMMU ${v.id}`, { rid });
    // iopf_queue_remove_device: outstanding page requests are answered INVALID (CMD_RESUME Abort).
    if (dev.pending.size > 0) {
      this.#drv.submit(
        [...dev.pending].map((stag) => resumeCommand(rid, stag, "invalid")),
        false,
      );
      dev.pending.clear();
    }
    this.#devices.delete(rid);
    this.#drv.removeStream(rid);
  }

  capabilities(rid: number): Capabilities {
    return capabilitiesOf(this.hw, this.#device(rid).ssidBits, this.#device(rid).stall);
  }

  reservedRegions(rid: number): readonly IovaRange[] {
    this.#device(rid);
    return [{ start: MSI_IOVA_BASE, last: MSI_IOVA_BASE + MSI_IOVA_LENGTH - 1 }];
  }

  // ---------------------------------------------------------------- domains
  allocDomain(request: DomainRequest): Domain {
    const t = this.#driver();
    const id = this.#nextId;
    if (request.type === "blocked" || request.type === "identity") {
      this.#nextId++;
      return new SmmuSimpleDomain(this, id, request.type);
    }
    if (request.rid !== undefined) this.#device(request.rid);
    const flags = request.flags ?? {};
    // iommufd_hwpt_nested_alloc: no ops->domain_alloc_nested. No Linux release nests an
    // SMMUv3 HWPT directly on a paging parent: nested domains come from a vIOMMU.
    if (request.type === "nested")
      throw bad("EOPNOTSUPP", "SMMUv3 nested domains are allocated on a vIOMMU (Viommu.allocNested)");
    if (request.type !== "paging")
      throw bad("EOPNOTSUPP", `domain type ${(request as { type: string }).type} is not supported`);
    const formats = domainFormats(this.hw);
    let format = request.format;
    if (format === undefined)
      format = flags.nestParent ? formats.find((f) => f.includes("-s2-")) : formats[0];
    if (format === undefined || !formats.includes(format))
      throw bad("EOPNOTSUPP", `format ${format ?? "(stage 2)"} is not supported`, { format: format ?? null });
    const stage = format.includes("-s2-") ? 2 : 1;
    if (flags.nestParent && stage !== 2) throw bad("EOPNOTSUPP", "a nest parent must be a stage-2 table");
    if (flags.pasid && stage !== 1) throw bad("EOPNOTSUPP", "PASID domains must be stage-1 tables");
    if (flags.dirtyTracking && this.hw.httu < 2) throw bad("EOPNOTSUPP", "dirty tracking needs HTTU");
    const g = granules(this.hw).find((x) => format.endsWith(x === 12 ? "-4k" : x === 14 ? "-16k" : "-64k"))!;
    const spec = lpaeGeometry(stage, g, domainInputBits(this.hw, stage, g));
    const fmt = lpaeFormat(spec, flags.dirtyTracking === true);
    const tagId = this.#drv.allocTag(stage);
    let pt: PageTable;
    try {
      pt = new PageTable(fmt, t);
    } catch (e) {
      this.#drv.freeTag(stage, tagId);
      throw e;
    }
    this.#nextId++;
    const sizes = granulePageSizes(g).reduce((b, l) => b | (1n << BigInt(l)), 0n);
    return new SmmuPagingDomain(this, id, spec, flags, pt, fmt, tagId, sizes);
  }

  // ---------------------------------------------------------------- vIOMMU (viommu.ts)

  /** IOMMU_VIOMMU_ALLOC (arm_vsmmu_alloc): see `createViommu` for the rules. */
  allocViommu(request: ViommuRequest): Viommu {
    this.#driver();
    const v = createViommu(this, request, this.#nextViommuId);
    this.#nextViommuId++;
    this.viommus.add(v);
    return v;
  }

  /** @internal ViommuHost: `rid` is a device of this SMMU. */
  hasDevice(rid: number): boolean {
    return this.#devices.has(rid);
  }

  /** @internal ViommuHost: a fresh domain id. */
  takeDomainId(): number {
    return this.#nextId++;
  }

  /** @internal ViommuHost: `v` was freed. */
  viommuFreed(v: SmmuViommu): void {
    this.viommus.delete(v);
  }

  /**
   * arm_smmu_page_response: answers the stall `request.grpid` (its STAG) of device
   * `request.rid` with CMD_RESUME (Retry for "success", Abort for "invalid"), without a
   * CMD_SYNC. ENOENT for an unknown device or a STAG not outstanding for it (never
   * reported, or answered already); EINVAL for a malformed request or code; EIO if the
   * queue refuses it (the stall stays outstanding).
   */
  pageResponse(request: PageRequest, code: PageResponseCode): void {
    this.#driver();
    const r = request as Partial<PageRequest> | null;
    if (typeof r !== "object" || r === null || !Number.isInteger(r.rid) || !Number.isInteger(r.grpid))
      throw bad("EINVAL", "a page response needs the request's rid and grpid");
    if (code !== "success" && code !== "invalid")
      throw bad("EINVAL", `page response code ${String(code)} is not success or invalid`);
    const dev = this.#device(r.rid!);
    const stag = r.grpid!;
    if (!dev.pending.has(stag))
      throw bad("ENOENT", `no stall with STAG ${stag} is outstanding for rid ${dev.rid}`, {
        rid: dev.rid,
        grpid: stag,
      });
    this.#drv.submit([resumeCommand(dev.rid, stag, code)], false);
    dev.pending.delete(stag);
  }

  /** Releases an ASID/VMID after invalidating everything tagged with it (arm_smmu_domain_free). */
  releaseTag(d: SmmuPagingDomain): void {
    this.#drv.releaseTag(d);
  }

  /** Range invalidation of a domain (arm_smmu_tlb_inv_range_domain with RIL), CMD_SYNC included. */
  invalidateDomainRange(
    d: SmmuPagingDomain,
    iova: number,
    length: number,
    pgsizeLg2 = -1,
    leaf = true,
  ): void {
    this.#drv.invalidateDomainRange(d, iova, length, pgsizeLg2, leaf);
  }

  // ---------------------------------------------------------------- STE / CD choice

  #steWords(dev: DeviceState): bigint[] {
    const slot = dev.slot;
    const dom = slot?.domain;
    const s1Ste = (dss: number): bigint[] => {
      const cd = dev.cd!;
      // arm_smmu_make_cdtable_ste: S1STALLD when FEAT_STALLS and the master may not stall.
      return encodeSte({
        S1STALLD: this.hw.stallModel === 0 && !dev.stall ? 1 : 0,
        V: 1,
        Config: SteConfig.S1_TRANS,
        S1Fmt: cd.fmt,
        S1ContextPtr: cd.base,
        S1CDMax: cd.cdMax,
        S1DSS: cd.cdMax > 0 ? dss : 0,
        S1CIR: 1,
        S1COR: 1,
        S1CSH: 3,
      });
    };
    if (dom instanceof SmmuNestedDomain) {
      // arm_smmu_make_nested_domain_ste over the parent's arm_smmu_make_s2_domain_ste.
      const s2 = encodeSte({ V: 1, Config: SteConfig.S2_TRANS, ...this.#drv.s2Fields(dom.parent) });
      return nestedSteWords(dom, s2);
    }
    if (dom instanceof SmmuPagingDomain) {
      if (dom.stage === 2) return encodeSte({ V: 1, Config: SteConfig.S2_TRANS, ...this.#drv.s2Fields(dom) });
      return s1Ste(S1Dss.SSID0);
    }
    const identity = dom?.type === "identity";
    if (dev.pasids.size > 0) return s1Ste(identity ? S1Dss.BYPASS : S1Dss.TERMINATE);
    return encodeSte({ V: 1, Config: identity ? SteConfig.BYPASS : SteConfig.ABORT });
  }

  #writeSte(dev: DeviceState): void {
    this.#drv.writeSte(dev.rid, this.#steWords(dev));
  }

  #needsCd(_dev: DeviceState, slot: DeviceState["slot"], pasids: number): boolean {
    const d = slot?.domain;
    if (d instanceof SmmuPagingDomain) return d.stage === 1 || pasids > 0;
    if (d instanceof SmmuNestedDomain) return false;
    return pasids > 0;
  }
  /** Frees CD leaves with no valid CD, and the whole table when nothing needs it. */
  #trimCd(dev: DeviceState): void {
    if (dev.cd === null) return;
    if (!this.#needsCd(dev, dev.slot, dev.pasids.size)) this.#drv.freeCd(dev);
    else this.#drv.trimCdLeaves(dev);
  }

  // ---------------------------------------------------------------- attach

  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    this.#driver();
    const dev = this.#device(rid);
    return this.#atomic(dev, domain, pasidOf(intent), () => this.#attach(dev, rid, intent, domain));
  }

  /**
   * Runs one attach/detach so that a command-queue error (EIO) leaves everything as before:
   * the STE/CD/L1 words the driver wrote are restored (and re-invalidated), the device's
   * bookkeeping and the domains' users put back, and tables taken for it freed.
   */
  #atomic<T>(dev: DeviceState, domain: Domain | null, pasid: number | null, fn: () => T): T {
    const cd = dev.cd;
    // Only this device's entries of the domains' user sets can change (`rid:pasid` keys):
    // save those, not whole sets, so an attach costs the same with 65,536 users.
    const keys = [`${dev.rid}:-1`, ...[...dev.pasids.keys()].map((p) => `${dev.rid}:${p}`)];
    if (pasid !== null) keys.push(`${dev.rid}:${pasid}`);
    const saved = {
      slot: dev.slot,
      vmaster: dev.vmaster,
      pasids: new Map(dev.pasids),
      cd,
      leaves: cd === null ? [] : [...cd.leaves].map(([k, v]) => [k, { ...v }] as const),
      users: [domain, dev.slot?.domain, ...dev.pasids.values()]
        .filter((d): d is SmmuDomain => d instanceof SmmuDomain)
        .map((d) => [d, keys.filter((k) => d.users.has(k))] as const),
    };
    this.#drv.begin();
    try {
      const out = fn();
      this.#drv.commit();
      return out;
    } catch (e) {
      if (!(e instanceof IommuError) || e.code !== "EIO") {
        this.#drv.commit();
        throw e;
      }
      this.#drv.rollback(dev.rid);
      dev.slot = saved.slot;
      dev.vmaster = saved.vmaster;
      dev.pasids.clear();
      for (const [k, v] of saved.pasids) dev.pasids.set(k, v);
      for (const [d] of saved.users) for (const k of keys) d.users.delete(k);
      for (const [d, u] of saved.users) for (const k of u) d.users.add(k);
      const now = dev.cd;
      if (now !== null && now !== saved.cd)
        this.#drv.freeCd(dev); // a table taken by fn
      else if (now !== null) {
        for (const [k, leaf] of now.leaves)
          if (!saved.leaves.some(([l]) => l === k)) this.#drv.freeTable(leaf.pa);
        now.leaves.clear();
        for (const [k, v] of saved.leaves) now.leaves.set(k, v);
      }
      dev.cd = saved.cd;
      throw e;
    }
  }

  #attach(dev: DeviceState, rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    assertIntentAllowed(this.capabilities(rid), intent);
    if (!(domain instanceof SmmuDomain) || domain.backend !== this)
      throw bad("EINVAL", "the domain belongs to another IOMMU", { rid });
    if (domain.freed) throw bad("EINVAL", `domain ${domain.id} was freed`, { id: domain.id });
    switch (intent.kind) {
      case "rid": {
        if (domain instanceof SmmuNestedDomain)
          throw bad("EINVAL", "a nested domain attaches with rid-all-pasids");
        if (domain instanceof SmmuPagingDomain && domain.stage === 2 && dev.pasids.size > 0)
          throw bad("EINVAL", "PASIDs are attached: the RID needs a stage-1 domain", { rid });
        this.#setSlot(dev, domain.type === "blocked" ? null : { kind: "rid", domain });
        return {};
      }
      case "rid-all-pasids": {
        if (!(domain instanceof SmmuNestedDomain))
          throw bad("EINVAL", "rid-all-pasids needs a nested domain");
        // arm_smmu_attach_dev_nested: the host's SSIDs in use (arm_smmu_ssids_in_use) are EBUSY.
        if (dev.pasids.size > 0) throw bad("EBUSY", "PASIDs are attached to this device", { rid });
        this.#setSlot(dev, { kind: "rid-all-pasids", domain }, this.#prepareVmaster(dev, domain));
        return {};
      }
      case "pasid": {
        const pasid = intent.pasid as number;
        if (pasid === 0) throw bad("EINVAL", "SubstreamID 0 serves the RID (S1DSS=SSID0)", { pasid });
        if (domain.type === "blocked") {
          this.#detach(dev, rid, intent);
          return { pasid };
        }
        if (!(domain instanceof SmmuPagingDomain) || domain.stage !== 1)
          throw bad("EINVAL", "a PASID needs a stage-1 paging domain", { pasid });
        const rd = dev.slot?.domain;
        if (rd instanceof SmmuNestedDomain || (rd instanceof SmmuPagingDomain && rd.stage === 2))
          throw bad("EINVAL", "the RID's domain cannot serve PASIDs", { rid });
        const steChanges = dev.pasids.size === 0;
        this.#drv.prepareCd(dev, [pasid]); // CD table and leaf first: ENOMEM leaves nothing behind
        const old = dev.pasids.get(pasid);
        dev.pasids.set(pasid, domain);
        old?.users.delete(`${rid}:${pasid}`);
        domain.users.add(`${rid}:${pasid}`);
        this.#drv.writeCd(dev, pasid, domain);
        // The first PASID turns an abort/bypass STE into stage 1 (S1DSS terminate/bypass);
        // a stage-1 RID already points at the CD table.
        if (steChanges && !(dev.slot?.domain instanceof SmmuPagingDomain)) this.#writeSte(dev);
        return { pasid };
      }
      default:
        throw bad("EOPNOTSUPP", `intent ${intent.kind} is not supported`);
    }
  }

  /**
   * arm_smmu_attach_prepare_vmaster: a translating (Config stage 1) nested domain needs the
   * device's vDEVICE on its vIOMMU (ENOENT, from iommufd_viommu_get_vdev_id); abort and
   * bypass attach without one (no vmaster). The vmaster's kzalloc is an allocation point.
   */
  #prepareVmaster(dev: DeviceState, d: SmmuNestedDomain): Vmaster | null {
    const vsid = d.viommu.virtId(dev.rid);
    if (vsid < 0) {
      if (d.config === SteConfig.ABORT || d.config === SteConfig.BYPASS) return null;
      throw bad("ENOENT", `rid ${dev.rid} has no vDEVICE on vIOMMU ${d.viommu.id}`, { rid: dev.rid });
    }
    this.memory.failNth.point("arm_smmu_attach_prepare_vmaster");
    return { viommu: d.viommu, vsid };
  }

  #setSlot(dev: DeviceState, slot: DeviceState["slot"], vmaster: Vmaster | null = null): void {
    const needCd = this.#needsCd(dev, slot, dev.pasids.size);
    const s1 = slot?.domain instanceof SmmuPagingDomain && slot.domain.stage === 1;
    if (needCd) this.#drv.prepareCd(dev, s1 ? [0] : []);
    const old = dev.slot;
    dev.slot = slot;
    dev.vmaster = vmaster; // arm_smmu_attach_commit_vmaster: NULL unless a nested attach found a vDEVICE
    old?.domain.users.delete(`${dev.rid}:-1`);
    slot?.domain.users.add(`${dev.rid}:-1`);
    if (s1) this.#drv.writeCd(dev, 0, slot.domain as SmmuPagingDomain);
    else if (dev.cd !== null && old?.domain instanceof SmmuPagingDomain && old.domain.stage === 1 && needCd)
      this.#drv.writeCd(dev, 0, null);
    this.#writeSte(dev);
    this.#trimCd(dev);
  }

  detach(rid: number, intent: AttachIntent): void {
    this.#driver();
    const dev = this.#device(rid);
    this.#atomic(dev, null, pasidOf(intent), () => this.#detach(dev, rid, intent));
  }

  #detach(dev: DeviceState, rid: number, intent: AttachIntent): void {
    if (intent.kind === "pasid") {
      const pasid = intent.pasid;
      if (typeof pasid !== "number") return;
      const d = dev.pasids.get(pasid);
      if (d === undefined) return;
      dev.pasids.delete(pasid);
      d.users.delete(`${rid}:${pasid}`);
      this.#drv.writeCd(dev, pasid, null);
      if (dev.pasids.size === 0 && !(dev.slot?.domain instanceof SmmuPagingDomain)) this.#writeSte(dev);
      this.#trimCd(dev);
      return;
    }
    if (dev.slot === null || dev.slot.kind !== intent.kind) return;
    this.#setSlot(dev, null);
  }

  attached(rid: number, intent: AttachIntent): Domain | null {
    const dev = this.#device(rid);
    if (intent.kind === "pasid")
      return typeof intent.pasid === "number" ? (dev.pasids.get(intent.pasid) ?? null) : null;
    return dev.slot !== null && dev.slot.kind === intent.kind ? dev.slot.domain : null;
  }

  // ---------------------------------------------------------------- translation

  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    return this.hw.translate(rid, pasid, iova, access, out);
  }

  translateBig(rid: number, pasid: number, iova: bigint, access: number): TranslationOutcome {
    const out = createTranslation();
    return outcomeOf(this.hw.translateBigInto(rid, pasid, iova, access, out), out);
  }

  counters(): CacheCounters {
    return this.hw.snapshotCounters();
  }

  flushCaches(): void {
    this.hw.flushCaches();
  }

  explain(rid: number, pasid: number, iova: bigint, access: number): readonly WalkStep[] {
    return this.hw.explain(rid, pasid, iova, access);
  }

  drainEvents(): EventRecord[] {
    return this.#drv.drainEvents();
  }

  dump(rid?: number): unknown {
    const devices = new Map(
      [...this.#devices].map(([sid, dev]) => [
        sid,
        {
          ssids: dev.cd === null ? [] : [0, ...dev.pasids.keys()],
          cdAddr: (ssid: number) => (dev.cd === null ? null : this.#drv.cdAddr(dev, ssid)),
        },
      ]),
    );
    const viommus = [...this.viommus].map((v) => ({
      id: v.id,
      vmid: v.vmid,
      parent: v.parent.id,
      vdevices: [...this.#devices.keys()]
        .filter((r) => v.virtId(r) >= 0)
        .map((r) => ({ rid: r, vsid: v.virtId(r) })),
    }));
    return dumpSmmu(this, devices, viommus, rid);
  }

  /** Decodes a raw command (for tools). */
  static decode(cmd: Command): string {
    return SmmuHw.commandName(cmd.op);
  }
}

/** The registered `smmuv3` backend kind. */
export const smmuv3Backend: BackendFactory = {
  name: "smmuv3",
  description:
    "ARM SMMUv3 (IHI 0070): stream table, STE/CD, VMSAv8-64 stage 1/2/nested, command and event queues",
  configSchema: SMMUV3_CONFIG_SCHEMA,
  registerDefaults: Object.freeze(registersFor()),
  create(ctx: BackendContext, config?: unknown): Backend {
    const c = checkConfig(config);
    const b = new SmmuV3Backend(ctx.memory, ctx.tables, ctx.name, registersFor(c), c.iotlbSizeLg2 ?? 14);
    b.initDriver(c);
    return b;
  },
  fromRegisters(memory: PhysicalMemory, registers: Readonly<Record<string, bigint>>): Backend {
    const regs = { ...registersFor(), ...registers };
    return new SmmuV3Backend(memory, null, "smmuv3-snapshot", regs, 14);
  },
};
