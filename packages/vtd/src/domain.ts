/**
 * VT-d domains: what a domain of the VT-d backend is (second-stage, first-stage,
 * nested over a second-stage parent, identity, blocked) and the operations the core
 * contract puts on a domain (map / unmap / dirty tracking / user invalidation of a
 * nested domain), as Linux's intel-iommu implements them (drivers/iommu/intel/iommu.c
 * intel_iommu_map_pages / intel_iommu_unmap_pages, dirty tracking
 * intel_iommu_read_and_clear_dirty, nested.c intel_nested_cache_invalidate_user;
 * Intel VT-d spec 3.6-3.8, 6.1, 6.5.2.4). Paging domains are core PageTables in the
 * formats of format/ss-pte.ts and format/fs-pte.ts; levels as generic_pt/fmt/vtdss.h
 * (PTE = 0, PDE = 1, PDPE = 2, PML4E = 3, PML5E = 4). The backend behind a domain is
 * seen through {@link VtdDomainHost}, so this file does not import backend.ts.
 */

import type { Backend, Domain, DomainFlags, DomainType, IovaRange } from "@iommu-kit/core";
import { hex, IommuError, Perm, pageSizeBitmap, parseU64 } from "@iommu-kit/core";
import type { PageTable, UnmapGather } from "@iommu-kit/core/driver";
import { unmapRun } from "@iommu-kit/core/driver";
import type { VtdHardware } from "./hardware.ts";

/** iommu_hwpt_vtd_s1 flags (include/uapi/linux/iommufd.h). */
export const VtdS1Flags = {
  SRE: 1,
  EAFE: 2,
  WPE: 4,
} as const;

/** IOMMU_VTD_INV_FLAGS_LEAF. */
export const VTD_INV_FLAGS_LEAF = 1;

/** Nested-domain data (struct iommu_hwpt_vtd_s1). */
export interface VtdS1Data {
  readonly flags?: number;
  /** GPA of the user's first-stage table. */
  readonly pgtblAddr: number | string;
  readonly addrWidth: 48 | 57;
}

/** One nested invalidation entry (struct iommu_hwpt_vtd_s1_invalidate). */
export interface VtdS1Invalidation {
  readonly addr: number | string;
  /** 0 or U64_MAX = everything. */
  readonly npages: number | string;
  readonly flags?: number;
}

const U64_MAX = (1n << 64n) - 1n;
/** Perm.R | Perm.W as a module-local constant (map's per-call check). */
const PERM_RW: number = Perm.R | Perm.W;

/** What a VT-d domain needs of its backend (VtdBackend implements it). */
export interface VtdDomainHost extends Backend {
  /** The hardware model. */
  readonly hw: VtdHardware;
  /** Host address width. */
  readonly haw: number;
  /** CAP.CM: not-present entries may be cached, so a map invalidates too. */
  readonly cachingMode: boolean;
  readonly scalable: boolean;
  /**
   * Invalidates a changed IOVA range of a paging domain; `ih` is the PSI invalidation
   * hint (no page-table page was freed: cached paging-structure entries may stay).
   */
  flushRange(d: VtdDomain, iova: number, length: number, ih?: boolean): void;
  /** A nested domain's user invalidation. */
  flushNested(d: VtdDomain, all: boolean, addr: bigint, npages: bigint, leaf: boolean): void;
  /** Turns second-stage A/D on or off for a domain's users. */
  setDirtyTracking(d: VtdDomain, enable: boolean): void;
  /** Software walk of a nested domain. */
  nestedToPhys(d: VtdDomain, iova: number): number;
  /** Invalidates everything tagged with a freed domain's DID and recycles the DID. */
  releaseDomain(d: VtdDomain): void;
}

/** What a VT-d domain is: second-stage, first-stage, nested, identity or blocked. */
export type DomainKind = "ss" | "fs" | "nested" | "identity" | "blocked";

/** A domain of a VT-d backend. */
export class VtdDomain implements Domain {
  readonly backend: VtdDomainHost;
  readonly id: number;
  readonly type: DomainType;
  readonly format: string;
  readonly flags: DomainFlags;
  readonly aperture: IovaRange;
  readonly pageSizeBitmap: bigint;
  /** Domain identifier (0 for blocked). */
  readonly did: number;
  readonly kind: DomainKind;
  /** Levels of its table (paging), or of the user's first stage (nested). */
  readonly levels: number;
  readonly table: PageTable | null;
  /** Nested: the second-stage parent and the user's first-stage data. */
  readonly parent: VtdDomain | null;
  readonly s1: { readonly flags: number; readonly pgtbl: number; readonly levels: number } | null;
  /** Attach points holding it: "rid:pasid" (pasid -1 = the RID). */
  readonly users: Set<string> = new Set();
  /** Nested domains built over it. */
  readonly children: Set<VtdDomain> = new Set();
  dirtyTracking = false;
  #freed = false;
  /** What the last unmap changed (iommu_iotlb_gather), reused. */
  readonly #gather: UnmapGather = { pgsizeLg2: -1, freed: false };

  constructor(
    backend: VtdDomainHost,
    id: number,
    init: {
      type: DomainType;
      kind: DomainKind;
      format: string;
      flags: DomainFlags;
      did: number;
      levels: number;
      table: PageTable | null;
      parent: VtdDomain | null;
      s1: { flags: number; pgtbl: number; levels: number } | null;
      pageSizes: number[];
    },
  ) {
    this.backend = backend;
    this.id = id;
    this.type = init.type;
    this.kind = init.kind;
    this.format = init.format;
    this.flags = init.flags;
    this.did = init.did;
    this.levels = init.levels;
    this.table = init.table;
    this.parent = init.parent;
    this.s1 = init.s1;
    this.pageSizeBitmap = pageSizeBitmap(init.pageSizes);
    const bits =
      init.kind === "ss"
        ? 12 + 9 * init.levels
        : init.kind === "fs" || init.kind === "nested"
          ? 11 + 9 * init.levels
          : 0;
    this.aperture = bits === 0 ? { start: 0, last: 0 } : { start: 0, last: Math.min(2 ** bits, 2 ** 53) - 1 };
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#freed;
  }

  #paging(op: string): PageTable {
    if (this.#freed)
      throw new IommuError("EINVAL", `${op} on freed VT-d domain ${this.id}`, { domain: this.id });
    if (this.table === null)
      throw new IommuError("EINVAL", `${op} needs a paging domain, not ${this.type}`, { domain: this.id });
    return this.table;
  }

  map(iova: number, pa: number, length: number, prot: number): void {
    const t = this.#paging("map");
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length <= 0)
      throw new IommuError("EINVAL", `map ${iova}+${length} is not a valid range`, { iova, length });
    if (iova + length - 1 > this.aperture.last)
      throw new IommuError("EINVAL", `map ${hex(iova)}+${hex(length)} is outside the aperture`, {
        iova,
        length,
      });
    if (!Number.isSafeInteger(pa) || pa < 0 || pa + length > 2 ** this.backend.haw)
      throw new IommuError("EINVAL", `map target ${pa} is beyond the host address width`, { pa });
    if ((prot & PERM_RW) === 0)
      throw new IommuError("EINVAL", `map needs read or write permission (prot ${prot})`, { prot });
    t.map(iova, pa, length, prot);
    // Not-present entries are never cached without caching mode (spec 6.1), so a map
    // needs no invalidation unless CAP.CM is set.
    if (this.backend.cachingMode) this.backend.flushRange(this, iova, length);
  }

  unmap(iova: number, length: number): number {
    const t = this.#paging("unmap");
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0)
      throw new IommuError("EINVAL", `unmap ${iova}+${length} is not a valid range`, { iova, length });
    const gather = this.#gather;
    const n = unmapRun(t, iova, length, gather);
    // intel_iommu_tlb_sync: cache_tag_flush_range(domain, start, end, list_empty(&gather->freelist)),
    // one PSI (or DSI) per tag and one wait for the whole unmap (drivers/iommu/intel/iommu.c).
    if (n > 0) this.backend.flushRange(this, iova, length, !gather.freed);
    return n;
  }

  iovaToPhys(iova: number): number {
    if (this.#freed) return -1;
    if (this.kind === "identity") return iova;
    if (this.table !== null) return this.table.lookup(iova)?.pa ?? -1;
    if (this.kind === "nested") return this.backend.nestedToPhys(this, iova);
    return -1;
  }

  free(): void {
    if (this.#freed)
      throw new IommuError("EINVAL", `VT-d domain ${this.id} is already freed`, { domain: this.id });
    if (this.users.size > 0)
      throw new IommuError("EBUSY", `VT-d domain ${this.id} is attached ${this.users.size} time(s)`, {
        domain: this.id,
      });
    if (this.children.size > 0)
      throw new IommuError(
        "EBUSY",
        `VT-d domain ${this.id} is the parent of ${this.children.size} nested domain(s)`,
        {
          domain: this.id,
        },
      );
    this.#freed = true;
    this.table?.destroy();
    this.parent?.children.delete(this);
    this.backend.releaseDomain(this);
  }

  setDirtyTracking(enable: boolean): void {
    this.#paging("setDirtyTracking");
    if (!this.flags.dirtyTracking)
      throw new IommuError("EINVAL", "domain was not allocated with dirty tracking", { domain: this.id });
    this.backend.setDirtyTracking(this, enable);
  }

  readDirty(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void {
    const t = this.#paging("readDirty");
    if (!this.flags.dirtyTracking)
      throw new IommuError("EINVAL", "domain was not allocated with dirty tracking", { domain: this.id });
    const page = 2 ** pageSizeLg2;
    const pages = Math.ceil(length / page);
    if (bitmap.length * 8 < pages)
      throw new IommuError("EINVAL", `bitmap of ${bitmap.length} bytes < ${pages} pages`, { pages });
    let cleared = false;
    t.forEachLeaf(iova, length, (base, sizeLg2, words, w) => {
      if ((words[w]! & (1 << 9)) === 0) return;
      const from = Math.max(base, iova);
      const to = Math.min(base + 2 ** sizeLg2, iova + length);
      for (let p = Math.floor((from - iova) / page); p * page + iova < to; p++)
        bitmap[p >>> 3]! |= 1 << (p & 7);
      if (!noClear) {
        words[w] = (words[w]! & ~(1 << 9)) >>> 0;
        cleared = true;
      }
    });
    if (cleared) this.backend.flushRange(this, iova, length);
  }

  /**
   * Nested domains: processes iommu_hwpt_vtd_s1_invalidate entries in order (PASID-based
   * IOTLB invalidation for every PASID the domain is attached to). Returns the count;
   * a bad entry throws EINVAL with details.handled.
   */
  invalidate(entries: readonly unknown[]): number {
    if (this.kind !== "nested")
      throw new IommuError("EOPNOTSUPP", "only nested VT-d domains take user invalidations", {
        domain: this.id,
      });
    let handled = 0;
    for (const raw of entries) {
      const e = raw as Partial<VtdS1Invalidation> | null;
      let addr: bigint;
      let npages: bigint;
      try {
        if (e === null || typeof e !== "object" || e.addr === undefined || e.npages === undefined) throw 0;
        addr = parseU64(e.addr);
        npages = parseU64(e.npages);
      } catch {
        throw new IommuError("EINVAL", `invalidation entry ${handled} is malformed`, { handled });
      }
      const flags = e.flags ?? 0;
      // Linux intel_nested_cache_invalidate_user: only the LEAF flag, 4K-aligned addresses,
      // and "all" (U64_MAX) only from address 0.
      if (typeof flags !== "number" || (flags & ~VTD_INV_FLAGS_LEAF) !== 0)
        throw new IommuError("EINVAL", `invalidation entry ${handled} has unknown flags ${flags}`, {
          handled,
        });
      if (addr % 4096n !== 0n || (npages === U64_MAX && addr !== 0n))
        throw new IommuError("EINVAL", `invalidation entry ${handled} address ${hex(addr)} is invalid`, {
          handled,
        });
      const all = npages === 0n || npages === U64_MAX;
      this.backend.flushNested(this, all, addr, npages, (flags & VTD_INV_FLAGS_LEAF) !== 0);
      handled++;
    }
    return handled;
  }
}
