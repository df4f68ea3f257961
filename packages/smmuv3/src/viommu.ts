/**
 * The SMMUv3 vIOMMU (IOMMU_VIOMMU_TYPE_ARM_SMMUV3), core's `Viommu` as Linux 6.15 builds
 * it (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c, drivers/iommu/iommufd/viommu.c):
 *
 * - allocation (arm_vsmmu_alloc): over a stage-2 nest-parent paging domain of this SMMU,
 *   whose VMID it uses (`vsmmu->vmid = s2_parent->s2_cfg.vmid`: 6.15 allocates no VMID
 *   of its own, "FIXME Move VMID allocation from the S2 domain allocation to here");
 * - vDEVICEs (iommufd_vdevice_alloc_ioctl): a device's virtual StreamID (vSID);
 * - nested domains (arm_vsmmu_alloc_domain_nested, `nested.ts`);
 * - the guest's raw commands (arm_vsmmu_cache_invalidate, arm_vsmmu_convert_user_cmd): the
 *   VMID forced on TLBI_NH_*, TLBI_NSNH_ALL turned into TLBI_NH_ALL, the vSID of
 *   CFGI_CD / CFGI_CD_ALL / ATC_INV turned into the StreamID (arm_vsmmu_vsid_to_sid),
 *   issued through the command queue in batches of CMDQ_BATCH_ENTRIES - 1 with a CMD_SYNC;
 * - the guest's events (arm_vmaster_report_event): the 32-byte record with the vSID in
 *   place of the StreamID, to the vEVENTQ sink of type "arm-smmuv3".
 *
 * Allocation points (kzalloc / kcalloc in Linux) go through the memory's FailNth, so
 * fail_nth sweeps reach them; every throwing call leaves the vIOMMU as it was. This file
 * sees the backend as a {@link ViommuHost} (it does not import backend.ts).
 */

import type {
  DomainFlags,
  PhysicalMemory,
  Viommu,
  ViommuEventSink,
  ViommuRequest,
  ViommuType,
} from "@iommu-kit/core";
import { hex, IommuError } from "@iommu-kit/core";
import type { SmmuDomainHost } from "./domain.ts";
import { SmmuPagingDomain } from "./domain.ts";
import { CmdError, CmdOp } from "./format/command.ts";
import { wordsToBytes } from "./format/fields.ts";
import { SmmuNestedDomain, validateVste } from "./nested.ts";
import { bad } from "./options.ts";

/** IOMMU_VIOMMU_TYPE_ARM_SMMUV3 and IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, by name. */
export const ARM_SMMUV3 = "arm-smmuv3";
/** CMDQ_BATCH_ENTRIES (BITS_PER_LONG on arm64) - 1: the guest commands one issue carries. */
const BATCH = 63;
/** CMDQ_TLBI_0_VMID [47:32] and CMDQ_CFGI_0_SID [63:32] of word 0. */
const VMID_MASK = 0xffffn << 32n;
const LOW32 = 0xffff_ffffn;

/** What a vIOMMU needs of its SMMU (`SmmuV3Backend` implements it). */
export interface ViommuHost extends SmmuDomainHost {
  readonly memory: PhysicalMemory;
  /** The SMMU's vIOMMUs (a device has one vDEVICE among all of them). */
  readonly viommus: ReadonlySet<SmmuViommu>;
  /** True when `rid` is a device behind this SMMU. */
  hasDevice(rid: number): boolean;
  /** A fresh domain id. */
  takeDomainId(): number;
  /** The vIOMMU was freed. */
  viommuFreed(v: SmmuViommu): void;
}

/** Throws ENOMEM at a FailNth point with `handled` added (an invalidation's count). */
function allocPoint(host: ViommuHost, site: string, extra: Record<string, number> = {}): void {
  try {
    host.memory.failNth.point(site);
  } catch (e) {
    if (e instanceof IommuError) throw new IommuError(e.code, e.message, { ...e.details, ...extra });
    throw e;
  }
}

/** Parses one guest command `[w0, w1]` (bigints or strings BigInt() reads, 64 bits each); null if malformed. */
function parseCmd(e: unknown): [bigint, bigint] | null {
  if (!Array.isArray(e) || e.length !== 2) return null;
  const out: bigint[] = [];
  for (const v of e) {
    if (typeof v !== "bigint" && typeof v !== "string") return null;
    let w: bigint;
    try {
      w = BigInt(v);
    } catch {
      return null;
    }
    if (w < 0n || w >= 1n << 64n) return null;
    out.push(w);
  }
  return [out[0]!, out[1]!];
}

/**
 * IOMMU_VIOMMU_ALLOC of type "arm-smmuv3" (iommufd_viommu_alloc_ioctl + arm_vsmmu_alloc,
 * in their order): ENOENT for a device not behind this SMMU; EINVAL unless `parent` is a
 * live nest-parent paging domain; EOPNOTSUPP for another type or without
 * ARM_SMMU_FEAT_NESTING (stage 1 and stage 2); EINVAL for a parent of another SMMU;
 * EOPNOTSUPP unless the SMMU is coherent (arm_smmu_master_canwbs) or has S2FWB.
 */
export function createViommu(host: ViommuHost, request: ViommuRequest, id: number): SmmuViommu {
  const r = request as Partial<ViommuRequest> | null;
  if (typeof r !== "object" || r === null) throw bad("EINVAL", "a vIOMMU request must be an object");
  const { rid, parent, type } = r;
  if (typeof rid !== "number" || !host.hasDevice(rid))
    throw bad("ENOENT", `no device with rid ${rid} behind ${host.name}`, { rid: String(rid) });
  if (!(parent instanceof SmmuPagingDomain) || parent.freed || !parent.flags.nestParent || parent.stage !== 2)
    throw bad("EINVAL", "a vIOMMU needs a live nest-parent paging domain");
  if (typeof type !== "string") throw bad("EINVAL", "the vIOMMU type must be a string");
  if (type !== ARM_SMMUV3) throw bad("EOPNOTSUPP", `vIOMMU type ${type} is not supported`, { type });
  const hw = host.hw;
  if (!hw.s1p || !hw.s2p) throw bad("EOPNOTSUPP", "the SMMU does not implement nesting (S1P and S2P)");
  if (parent.backend !== host) throw bad("EINVAL", "the nest parent belongs to another SMMU", { rid });
  if (!hw.coherent && !hw.fwb)
    throw bad(
      "EOPNOTSUPP",
      "neither coherent (IDR0.COHACC) nor S2FWB (IDR3.FWB): the guest could bypass caches",
    );
  allocPoint(host, "arm_vsmmu_alloc");
  parent.children++;
  return new SmmuViommu(host, id, parent);
}

/** A vIOMMU of one SMMU over one nest parent. */
export class SmmuViommu implements Viommu {
  readonly backend: ViommuHost;
  readonly id: number;
  readonly type: ViommuType = ARM_SMMUV3;
  readonly parent: SmmuPagingDomain;
  /** vsmmu->vmid: the nest parent's VMID. */
  readonly vmid: number;
  readonly info: Readonly<Record<string, number | string | boolean>>;
  /** vSID -> StreamID (the xarray viommu->vdevs). */
  readonly #bySid = new Map<number, number>();
  /** StreamID -> vSID. */
  readonly #byRid = new Map<number, number>();
  #nested = 0;
  readonly #sinks = new Map<string, ViommuEventSink>();
  #freed = false;

  constructor(host: ViommuHost, id: number, parent: SmmuPagingDomain) {
    this.backend = host;
    this.id = id;
    this.parent = parent;
    this.vmid = parent.tagId;
    this.info = Object.freeze({ vmid: this.vmid, parent: parent.id });
  }

  #live(): void {
    if (this.#freed) throw bad("EINVAL", `vIOMMU ${this.id} was freed`, { id: this.id });
  }

  /**
   * IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl, in its order): EINVAL for a vSID
   * that is not a 32-bit StreamID (6.15 takes any unsigned long, but the vSID of
   * arm_vsmmu_vsid_to_sid and of the event record is 32 bits) or a device not behind this
   * SMMU; EEXIST for a device that has a vDEVICE already (the idev->vdev check of later
   * kernels; 6.15 lets one device have two) or a vSID taken on this vIOMMU (xa_cmpxchg).
   */
  addVdevice(rid: number, virtId: number): void {
    this.#live();
    if (!Number.isInteger(virtId) || virtId < 0 || virtId >= 2 ** 32)
      throw bad("EINVAL", `vSID ${virtId} is not a 32-bit value`, { virtId: String(virtId) });
    if (!Number.isInteger(rid) || !this.backend.hasDevice(rid))
      throw bad("EINVAL", `rid ${rid} is not a device behind ${this.backend.name}`, { rid: String(rid) });
    for (const v of this.backend.viommus)
      if (v.virtId(rid) >= 0)
        throw bad("EEXIST", `rid ${rid} already has vSID ${v.virtId(rid)} on vIOMMU ${v.id}`, { rid });
    allocPoint(this.backend, "iommufd_vdevice_alloc");
    if (this.#bySid.has(virtId))
      throw bad("EEXIST", `vSID ${hex(virtId)} is taken on vIOMMU ${this.id}`, { virtId });
    this.#bySid.set(virtId, rid);
    this.#byRid.set(rid, virtId);
  }

  /**
   * iommufd_vdevice_destroy: forgets the vSID. ENOENT when the device has none here. A
   * device attached to a nested domain keeps reporting events with the vSID its attach
   * saw (6.15's vmaster is not told); commands naming the vSID are EIO from now on.
   */
  removeVdevice(rid: number): void {
    this.#live();
    const vsid = this.#byRid.get(rid);
    if (vsid === undefined) throw bad("ENOENT", `rid ${rid} has no vDEVICE on vIOMMU ${this.id}`, { rid });
    this.#byRid.delete(rid);
    this.#bySid.delete(vsid);
  }

  /** The vSID of `rid`, or -1 (iommufd_viommu_get_vdev_id). */
  virtId(rid: number): number {
    return this.#byRid.get(rid) ?? -1;
  }

  /** The number of vDEVICEs. */
  get vdevices(): number {
    return this.#byRid.size;
  }

  /**
   * IOMMU_HWPT_ALLOC on this vIOMMU (iommufd_viommu_alloc_hwpt_nested +
   * arm_vsmmu_alloc_domain_nested): any flag is EOPNOTSUPP; the data is checked by
   * arm_smmu_validate_vste (EINVAL malformed, EIO invalid STE data).
   */
  allocNested(data: unknown, flags: DomainFlags): SmmuNestedDomain {
    this.#live();
    const f = (flags ?? {}) as DomainFlags;
    if (f.nestParent || f.dirtyTracking || f.pasid)
      throw bad("EOPNOTSUPP", "a nested SMMUv3 domain takes no allocation flags");
    const ste = validateVste(data);
    allocPoint(this.backend, "arm_vsmmu_alloc_domain_nested");
    const d = new SmmuNestedDomain(this.backend, this.backend.takeDomainId(), this, ste, {});
    this.#nested++;
    return d;
  }

  /** @internal A nested domain of this vIOMMU was freed. */
  nestedFreed(_d: SmmuNestedDomain): void {
    this.#nested--;
  }

  /**
   * arm_vsmmu_convert_user_cmd, in place: the VMID forced, or the vSID replaced by the
   * StreamID. Returns false for a command a guest may not issue (-EIO).
   */
  #convert(c: [bigint, bigint]): boolean {
    const vmid = BigInt(this.vmid) << 32n;
    switch (Number(c[0] & 0xffn)) {
      case CmdOp.TLBI_NSNH_ALL:
        c[0] = BigInt(CmdOp.TLBI_NH_ALL) | vmid;
        c[1] = 0n;
        return true;
      case CmdOp.TLBI_NH_VA:
      case CmdOp.TLBI_NH_VAA:
      case CmdOp.TLBI_NH_ALL:
      case CmdOp.TLBI_NH_ASID:
        c[0] = (c[0] & ~VMID_MASK) | vmid;
        return true;
      case CmdOp.ATC_INV:
      case CmdOp.CFGI_CD:
      case CmdOp.CFGI_CD_ALL: {
        const sid = this.#bySid.get(Number(c[0] >> 32n));
        if (sid === undefined) return false; // arm_vsmmu_vsid_to_sid: -EIO
        c[0] = (c[0] & LOW32) | (BigInt(sid) << 32n);
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * IOMMU_HWPT_INVALIDATE on the vIOMMU with IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 entries
   * (raw commands `[w0, w1]`), as arm_vsmmu_cache_invalidate does: every entry is read
   * first (malformed: EINVAL, handled 0); the kcalloc failing is ENOMEM with entry_num
   * left as passed (handled = entries.length); then each command is converted and every
   * 63 of them, and the last ones, issued with a CMD_SYNC. A command that cannot be
   * converted is EIO with handled = its index, and the converted commands since the last
   * issue are not issued (the kernel's `goto out`). A command the SMMU finds illegal
   * (CERROR_ILL) is skipped by the driver (arm_smmu_cmdq_skip_err) and the batch
   * completes; a queue that stays stopped is EIO with handled = the batch's last index
   * (the kernel's `cur--`). Returns the number handled.
   */
  invalidate(entries: readonly unknown[]): number {
    this.#live();
    if (!Array.isArray(entries)) throw new IommuError("EINVAL", "entries must be an array", { handled: 0 });
    if (entries.length === 0) return 0;
    allocPoint(this.backend, "arm_vsmmu_cache_invalidate", { handled: entries.length });
    const cmds: [bigint, bigint][] = [];
    for (let i = 0; i < entries.length; i++) {
      const c = parseCmd(entries[i]);
      if (c === null)
        throw new IommuError("EINVAL", `entry ${i} is not a command [w0, w1] of 64-bit words`, {
          handled: 0,
          index: i,
        });
      cmds.push(c);
    }
    let last = 0;
    let cur = 0;
    while (cur < cmds.length) {
      const op = Number(cmds[cur]![0] & 0xffn);
      if (!this.#convert(cmds[cur]!))
        throw new IommuError("EIO", `guest command ${cur} (${hex(op)}) cannot be issued for this vIOMMU`, {
          handled: cur,
          op,
        });
      cur++;
      if (cur !== cmds.length && cur - last !== BATCH) continue;
      this.#issue(cmds.slice(last, cur), cur - 1);
      last = cur;
    }
    return cmds.length;
  }

  /** Issues one batch; a command the SMMU skipped (CERROR_ILL) still completes it. */
  #issue(batch: [bigint, bigint][], lastIndex: number): void {
    const hw = this.backend.hw;
    try {
      this.backend.submit(batch);
    } catch (e) {
      if (!(e instanceof IommuError) || e.code !== "EIO") throw e;
      const running = ((hw.cmdqCons >>> 24) & 0x7f) === CmdError.NONE;
      if (e.details.cerror === CmdError.ILL && running) return;
      throw new IommuError("EIO", e.message, { ...e.details, handled: lastIndex });
    }
  }

  /**
   * IOMMU_VEVENTQ_ALLOC / destroy for `type`: one sink per type (EEXIST when one is set,
   * iommufd_veventq_alloc); null removes it. Only "arm-smmuv3" records are reported.
   */
  setEventSink(type: string, sink: ViommuEventSink | null): void {
    this.#live();
    if (typeof type !== "string" || type === "")
      throw bad("EINVAL", "an event queue type must be a non-empty string");
    if (type === "default") throw bad("EOPNOTSUPP", "IOMMU_VEVENTQ_TYPE_DEFAULT is not a queue type");
    if (sink === null) {
      this.#sinks.delete(type);
      return;
    }
    if (typeof sink !== "function") throw bad("EINVAL", "an event sink must be a function");
    if (this.#sinks.has(type)) throw bad("EEXIST", `vIOMMU ${this.id} has a ${type} event queue`, { type });
    this.#sinks.set(type, sink);
  }

  /**
   * @internal arm_vmaster_report_event: the record with EVTQ_0_SID [63:32] replaced by
   * `vsid`, as the guest reads it, to the "arm-smmuv3" sink (none set: dropped, as
   * iommufd_viommu_report_event without a vEVENTQ). A sink that throws loses its record;
   * the SMMU goes on.
   */
  report(words: readonly bigint[], vsid: number): void {
    const sink = this.#sinks.get(ARM_SMMUV3);
    if (sink === undefined || this.#freed) return;
    const w = [(words[0]! & LOW32) | (BigInt(vsid) << 32n), words[1]!, words[2]!, words[3]!];
    try {
      sink({ type: ARM_SMMUV3, data: wordsToBytes(w) });
    } catch {
      // The vEVENTQ's consumer failed: nothing the SMMU can do about it.
    }
  }

  /**
   * IOMMU_DESTROY of the vIOMMU: EBUSY while vDEVICEs, nested domains or event queues
   * hold it (each holds viommu->obj.users); then it releases its nest parent.
   */
  free(): void {
    this.#live();
    if (this.#byRid.size > 0 || this.#nested > 0 || this.#sinks.size > 0)
      throw bad("EBUSY", `vIOMMU ${this.id} has vDEVICEs, nested domains or event queues`, {
        id: this.id,
        vdevices: this.#byRid.size,
        nested: this.#nested,
        eventQueues: this.#sinks.size,
      });
    this.#freed = true;
    this.parent.children--;
    this.backend.viommuFreed(this);
  }
}
