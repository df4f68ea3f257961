/**
 * The mdev-emulated backend: mediated devices (slices of a parent device) with no IOMMU
 * of their own. One instance serves any number of mdevs on any parents.
 *
 * - `emulated` intent: the mdev's DMA is done by its parent driver in software through
 *   an emulated-table domain (`domain.ts`), translated here by `fast-path.ts`.
 * - `pasid` intent (when the parent lists `pasid`): the domain is the parent backend's
 *   own, attached on (parent rid, a PASID this backend assigns) through the core
 *   contract only; translations with that PASID are the parent's.
 *
 * Replacing or detaching an emulated domain follows iommufd_access_change_ioas
 * (drivers/iommu/iommufd/device.c): the mdev's unmap callback runs over the whole old
 * table first, so a well-behaved driver drops its pins. Where the kernel would carry on
 * with pins still held (and WARN later), this model refuses with EBUSY and keeps the old
 * attachment, so the accounting stays exact.
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
  PhysicalMemory,
  Translation,
  TranslationOutcome,
  WalkStep,
} from "@iommu-kit/core";
import {
  assertIntentAllowed,
  createTranslation,
  hex,
  Intent,
  IommuError,
  NO_PASID,
  outcomeOf,
} from "@iommu-kit/core";
import type { AccessUser, DomainHost } from "./domain.ts";
import { EmulatedDomain } from "./domain.ts";
import { EmulatedFastPath } from "./fast-path.ts";
import {
  CHUNK_SPAN,
  chunkOf,
  EntryBit,
  entryFlags,
  entryPa,
  IOVA_LIMIT,
  PAGE,
  PERM_MASK,
  pageOffset,
  slotOf,
} from "./format/emulated-table.ts";
import { MdevFaultCode, mdevFault } from "./format/fault.ts";
import { MDEV_FORMAT, mdevCapabilities } from "./hw-info.ts";
import { lowestFreePasid } from "./internal/pasid-pool.ts";

/** An mdev's unmap callback: called with a range of the attached table about to be unmapped. */
export type UnmapCallback = (iova: number, length: number) => void;

/** Options of {@link mdevEmulatedBackend}'s `create`. */
export interface MdevEmulatedConfig {
  /** log2 of the software IOTLB's slot count (4..20, default 12). */
  readonly iotlbSizeLg2?: number;
}

/** The parent of an mdev, as DeviceSpec.parent names it. */
interface Parent {
  readonly backend: Backend;
  readonly rid: number;
}

class Mdev implements AccessUser {
  readonly rid: number;
  readonly parent: Parent | null;
  readonly caps: Capabilities;
  /** The emulated domain it reads through, or null (blocked). */
  emulated: EmulatedDomain | null = null;
  /** Assigned PASID on the parent, or -1. */
  pasid = -1;
  /** The parent's domain it attached on that PASID (null: none). */
  pasidDomain: Domain | null = null;
  /** null: the ready-made behaviour (drop every pin in the range). */
  callback: UnmapCallback | null = null;

  constructor(rid: number, parent: Parent | null, caps: Capabilities) {
    this.rid = rid;
    this.parent = parent;
    this.caps = caps;
  }

  notifyUnmap(iova: number, length: number): void {
    if (this.callback !== null) this.callback(iova, length);
    else this.emulated?.releasePins(iova, length);
  }
}

/** The backend. Build it with {@link mdevEmulatedBackend}. */
export class MdevEmulatedBackend implements Backend, DomainHost {
  readonly kind = "mdev-emulated";
  readonly name: string;
  readonly memory: PhysicalMemory;
  readonly #mdevs = new Map<number, Mdev>();
  readonly #fast: EmulatedFastPath;
  #nextDomain = 1;
  #invalidations = 0;
  #lastRid = -1;
  #last: Mdev | undefined = undefined;

  constructor(ctx: BackendContext, config: MdevEmulatedConfig = {}) {
    const lg2 = config.iotlbSizeLg2 ?? 12;
    if (!Number.isInteger(lg2) || lg2 < 4 || lg2 > 20) {
      throw new IommuError("EINVAL", `iotlbSizeLg2 ${lg2} is outside [4, 20]`, { iotlbSizeLg2: lg2 });
    }
    this.name = ctx.name;
    this.memory = ctx.memory;
    this.#fast = new EmulatedFastPath(lg2);
  }

  #mdev(rid: number): Mdev {
    const m = this.#mdevs.get(rid);
    if (m === undefined) throw new IommuError("ENOENT", `no mdev with rid ${rid}`, { rid });
    return m;
  }

  /**
   * Adds an mdev. `parent` (optional) names the physical device whose DMA it borrows;
   * the parent must already be known to its backend. `pasidBits` is ignored: the PASID
   * width is the parent's.
   */
  addDevice(spec: DeviceSpec): void {
    if (!Number.isInteger(spec.rid) || spec.rid < 0 || spec.rid > 0xffff_ffff) {
      throw new IommuError("EINVAL", `mdev rid ${spec.rid} is not a 32-bit number`, { rid: spec.rid });
    }
    if (this.#mdevs.has(spec.rid))
      throw new IommuError("EEXIST", `mdev ${spec.rid} exists`, { rid: spec.rid });
    const parent = spec.parent ?? null;
    if (parent !== null && parent.backend === this) {
      throw new IommuError("EINVAL", "an mdev cannot be its own backend's child", { rid: spec.rid });
    }
    const parentCaps = parent === null ? null : parent.backend.capabilities(parent.rid);
    const m = new Mdev(
      spec.rid,
      parent === null ? null : { backend: parent.backend, rid: parent.rid },
      mdevCapabilities(parentCaps),
    );
    this.#mdevs.set(spec.rid, m);
  }

  removeDevice(rid: number): void {
    const m = this.#mdev(rid);
    if (m.emulated !== null || m.pasid >= 0)
      throw new IommuError("EBUSY", `mdev ${rid} is attached`, { rid });
    this.#mdevs.delete(rid);
    if (this.#lastRid === rid) this.#lastRid = -1;
  }

  capabilities(rid: number): Capabilities {
    return this.#mdev(rid).caps;
  }

  reservedRegions(rid: number): readonly IovaRange[] {
    this.#mdev(rid);
    return [];
  }

  allocDomain(request: DomainRequest): Domain {
    if (request.type !== "paging") {
      throw new IommuError("EOPNOTSUPP", `mdev-emulated has no ${request.type} domains`, {
        type: request.type,
      });
    }
    const m = request.rid === undefined ? null : this.#mdev(request.rid);
    const flags = request.flags ?? {};
    if (flags.pasid) {
      // A PASID table is the parent's own format, allocated by the parent's backend.
      if (m === null || m.parent === null || !m.caps.intents.includes("pasid")) {
        throw new IommuError(
          "EOPNOTSUPP",
          "a PASID domain needs the rid of an mdev whose parent has PASIDs",
          {
            rid: request.rid,
          },
        );
      }
      if (request.format === MDEV_FORMAT) {
        throw new IommuError("EOPNOTSUPP", `format ${MDEV_FORMAT} cannot serve a PASID`, {
          format: request.format,
        });
      }
      return m.parent.backend.allocDomain({ ...request, rid: m.parent.rid });
    }
    if (request.format !== undefined && request.format !== MDEV_FORMAT) {
      throw new IommuError(
        "EOPNOTSUPP",
        `mdev-emulated has no format ${request.format} without flags.pasid`,
        {
          format: request.format,
        },
      );
    }
    if (flags.nestParent) throw new IommuError("EOPNOTSUPP", "an emulated table cannot be a nest parent");
    return new EmulatedDomain(this, this, this.#nextDomain++, flags);
  }

  #own(domain: Domain): EmulatedDomain {
    if (!(domain instanceof EmulatedDomain) || domain.backend !== this) {
      throw new IommuError("EINVAL", `domain ${domain.id} is not an emulated table of ${this.name}`, {
        id: domain.id,
      });
    }
    if (domain.freed) throw new IommuError("EINVAL", `domain ${domain.id} is freed`, { id: domain.id });
    return domain;
  }

  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    const m = this.#mdev(rid);
    assertIntentAllowed(m.caps, intent);
    if (intent.kind === "emulated") {
      const dom = this.#own(domain);
      if (m.emulated === dom) return {};
      if (m.emulated !== null) {
        this.#letGo(m, m.emulated);
        m.emulated.users.delete(m);
      }
      dom.users.add(m);
      m.emulated = dom;
      return {};
    }
    // assertIntentAllowed leaves only `pasid: "auto"` here, on an mdev with a PASID-capable parent.
    const parent = m.parent!;
    if (domain.backend !== parent.backend) {
      throw new IommuError("EINVAL", `a PASID domain of mdev ${rid} must come from its parent's backend`, {
        id: domain.id,
      });
    }
    const pasid = m.pasid >= 0 ? m.pasid : this.#assignPasid(m, parent);
    parent.backend.attach(parent.rid, Intent.pasid(pasid), domain);
    m.pasid = pasid;
    m.pasidDomain = domain;
    return { pasid };
  }

  #assignPasid(m: Mdev, parent: Parent): number {
    const held = new Set<number>();
    for (const o of this.#mdevs.values()) {
      if (
        o.pasid >= 0 &&
        o.parent !== null &&
        o.parent.backend === parent.backend &&
        o.parent.rid === parent.rid
      ) {
        held.add(o.pasid);
      }
    }
    const n = lowestFreePasid(
      held,
      2 ** m.caps.maxPasidLog2,
      (p) => parent.backend.attached(parent.rid, Intent.pasid(p)) !== null,
    );
    if (n < 0) {
      throw new IommuError("ENOSPC", `no free PASID on parent ${parent.backend.name}:${parent.rid}`, {
        rid: m.rid,
      });
    }
    return n;
  }

  /** Runs the mdev's callback over the whole old table; EBUSY (nothing changed) if its pins stay. */
  #letGo(m: Mdev, dom: EmulatedDomain): void {
    if (dom.table.pins === 0) return;
    m.notifyUnmap(0, IOVA_LIMIT);
    if (dom.table.pins > 0 && dom.users.size === 1) {
      throw new IommuError(
        "EBUSY",
        `mdev ${m.rid} still holds ${dom.table.pins} pin(s) on domain ${dom.id}`,
        {
          rid: m.rid,
          id: dom.id,
        },
      );
    }
  }

  detach(rid: number, intent: AttachIntent): void {
    const m = this.#mdev(rid);
    if (intent.kind === "emulated") {
      const dom = m.emulated;
      if (dom === null) return;
      this.#letGo(m, dom);
      dom.users.delete(m);
      m.emulated = null;
      return;
    }
    if (intent.kind !== "pasid" || m.pasid < 0 || m.parent === null) return;
    if (intent.pasid !== "auto" && intent.pasid !== m.pasid) return;
    // Only what this mdev attached goes: a domain the parent's driver put on that PASID
    // since is the parent's own (iommu_detach_device_pasid takes the domain it removes).
    if (m.parent.backend.attached(m.parent.rid, Intent.pasid(m.pasid)) === m.pasidDomain)
      m.parent.backend.detach(m.parent.rid, Intent.pasid(m.pasid));
    m.pasid = -1;
    m.pasidDomain = null;
  }

  attached(rid: number, intent: AttachIntent): Domain | null {
    const m = this.#mdev(rid);
    if (intent.kind === "emulated") return m.emulated;
    if (intent.kind !== "pasid" || m.pasid < 0 || m.parent === null) return null;
    if (intent.pasid !== "auto" && intent.pasid !== m.pasid) return null;
    return m.parent.backend.attached(m.parent.rid, Intent.pasid(m.pasid));
  }

  /** The PASID assigned to mdev `rid` on its parent, or null. */
  assignedPasid(rid: number): number | null {
    const p = this.#mdev(rid).pasid;
    return p < 0 ? null : p;
  }

  /**
   * Sets mdev `rid`'s unmap callback (iommufd_access_ops.unmap). It runs when pinned
   * pages of its emulated table are unmapped, or the table is replaced or detached;
   * it should unpin what it holds in the range. `null` restores the ready-made one,
   * which drops every pin in the range.
   */
  setUnmapCallback(rid: number, callback: UnmapCallback | null): void {
    this.#mdev(rid).callback = callback;
  }

  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    let m = this.#last;
    if (rid !== this.#lastRid) {
      m = this.#mdevs.get(rid);
      if (m === undefined) {
        out.fault = mdevFault(MdevFaultCode.MDEV_BLOCKED, rid, pasid, iova, access);
        return false;
      }
      this.#lastRid = rid;
      this.#last = m;
    }
    const mdev = m!;
    if (pasid !== NO_PASID) {
      if (pasid === mdev.pasid && mdev.parent !== null) {
        return mdev.parent.backend.translate(mdev.parent.rid, pasid, iova, access, out);
      }
      out.fault = mdevFault(MdevFaultCode.MDEV_BLOCKED, rid, pasid, iova, access);
      return false;
    }
    const dom = mdev.emulated;
    if (dom === null) {
      out.fault = mdevFault(MdevFaultCode.MDEV_BLOCKED, rid, pasid, iova, access);
      return false;
    }
    return this.#fast.translate(dom, rid, pasid, iova, access, out);
  }

  translateBig(rid: number, pasid: number, iova: bigint, access: number): TranslationOutcome {
    const out = createTranslation();
    if (iova < 0n || iova > BigInt(Number.MAX_SAFE_INTEGER)) {
      out.fault = mdevFault(MdevFaultCode.MDEV_BEYOND_APERTURE, rid, pasid, IOVA_LIMIT, access);
      return outcomeOf(false, out);
    }
    return outcomeOf(this.translate(rid, pasid, Number(iova), access, out), out);
  }

  /** Drops cached translations of `domain` covering [iova, iova + length) (a driver's invalidation). */
  invalidateRange(domain: Domain, iova: number, length: number): void {
    this.#invalidations++;
    this.#fast.tlb.invalidateRange(domain.id, -1, iova, iova + length);
  }

  /** Drops every cached translation of `domain`. */
  invalidateDomain(domain: Domain): void {
    this.#invalidations++;
    this.#fast.tlb.invalidateTag(domain.id);
  }

  flushCaches(): void {
    this.#invalidations++;
    this.#fast.tlb.clear();
  }

  counters(): CacheCounters {
    const f = this.#fast;
    return {
      iotlbHits: f.hits,
      iotlbMisses: f.misses,
      configHits: 0,
      configMisses: 0,
      walks: f.walks,
      invalidations: this.#invalidations,
    };
  }

  explain(rid: number, pasid: number, iova: bigint, access: number): readonly WalkStep[] {
    const m = this.#mdevs.get(rid);
    if (m === undefined) return [{ what: "mdev", address: null, note: `blocked: no mdev ${rid}` }];
    if (pasid !== NO_PASID) {
      if (pasid !== m.pasid || m.parent === null) {
        return [
          { what: "mdev", address: null, note: `blocked: PASID ${pasid} is not assigned to mdev ${rid}` },
        ];
      }
      const head: WalkStep = {
        what: "mdev",
        address: null,
        note: `PASID ${pasid} -> parent ${m.parent.backend.name} rid ${m.parent.rid}`,
      };
      return [head, ...(m.parent.backend.explain?.(m.parent.rid, pasid, iova, access) ?? [])];
    }
    const dom = m.emulated;
    if (dom === null) return [{ what: "mdev", address: null, note: "blocked: no emulated table attached" }];
    if (iova >= BigInt(IOVA_LIMIT)) {
      return [{ what: "emulated table", address: null, note: "fault: MDEV_BEYOND_APERTURE (iova >= 2^48)" }];
    }
    const va = Number(iova);
    const key = chunkOf(va);
    const chunk = dom.table.chunks.get(key);
    const steps: WalkStep[] = [
      {
        what: "chunk directory",
        address: null,
        index: key,
        note: chunk === undefined ? "fault: MDEV_UNMAPPED (no chunk)" : "chunk",
      },
    ];
    if (chunk === undefined) return steps;
    const s = slotOf(va);
    const e = chunk[s]!;
    const f = entryFlags(e);
    const present = e !== 0;
    steps.push({
      what: "page entry",
      address: null,
      index: s,
      fields: {
        V: present,
        R: (f & EntryBit.R) !== 0,
        W: (f & EntryBit.W) !== 0,
        X: (f & EntryBit.X) !== 0,
        D: (f & EntryBit.D) !== 0,
        pa: hex(entryPa(e)),
        pins: dom.table.pinsAt(va),
      },
      note: present ? `page 4K -> ${hex(entryPa(e) + pageOffset(va))}` : "fault: MDEV_UNMAPPED",
    });
    return steps;
  }

  dump(rid?: number): unknown {
    const out: Record<string, unknown> = {};
    for (const [r, m] of this.#mdevs) {
      if (rid !== undefined && r !== rid) continue;
      out[String(r)] = {
        parent: m.parent === null ? null : { backend: m.parent.backend.name, rid: m.parent.rid },
        pasid: m.pasid < 0 ? null : m.pasid,
        emulated: m.emulated === null ? null : { domain: m.emulated.id, mappings: mappingRuns(m.emulated) },
      };
    }
    return out;
  }
}

/** Contiguous runs of a table with the same permissions, as [iova, pa, length, perm] hex strings. */
function mappingRuns(dom: EmulatedDomain): { iova: string; pa: string; length: string; perm: number }[] {
  const runs: { iova: number; pa: number; length: number; perm: number }[] = [];
  const keys = [...dom.table.chunks.keys()].sort((a, b) => a - b);
  for (const k of keys) {
    dom.table.forEachPresent(k * CHUNK_SPAN, (k + 1) * CHUNK_SPAN, (at, c, s) => {
      const perm = entryFlags(c[s]!) & PERM_MASK;
      const pa = entryPa(c[s]!);
      const prev = runs[runs.length - 1];
      if (
        prev !== undefined &&
        prev.iova + prev.length === at &&
        prev.pa + prev.length === pa &&
        prev.perm === perm
      ) {
        prev.length += PAGE;
      } else {
        runs.push({ iova: at, pa, length: PAGE, perm });
      }
    });
  }
  return runs.map((r) => ({ iova: hex(r.iova), pa: hex(r.pa), length: hex(r.length), perm: r.perm }));
}

/** The factory, registered as "mdev-emulated". `config`: {@link MdevEmulatedConfig}. */
export const mdevEmulatedBackend: BackendFactory = {
  name: "mdev-emulated",
  description:
    "Mediated devices without an IOMMU: an emulated page table (pin, read/write through an IOVA) and PASID attach through a parent device.",
  configSchema: {
    type: "object",
    additionalProperties: false,
    properties: { iotlbSizeLg2: { type: "integer", minimum: 4, maximum: 20, default: 12 } },
  },
  create: (ctx: BackendContext, config?: unknown): Backend =>
    new MdevEmulatedBackend(ctx, (config ?? {}) as MdevEmulatedConfig),
};
