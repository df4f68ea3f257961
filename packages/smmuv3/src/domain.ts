/**
 * The domains of the SMMUv3 backend (core's `Domain` contract): blocked and identity
 * domains (an abort or bypass STE, ARM IHI 0070 5.2), paging domains (a VMSAv8-64 table
 * the driver writes with core's `PageTable`: stage 1 under an ASID in a CD, 5.4, or stage
 * 2 under a VMID in the STE, 5.2); nested domains live in `nested.ts`. Changes go to
 * the hardware through the backend that made them (TLBI + CMD_SYNC after an unmap).
 * Level numbers are the page table's (Arm ARM lookup levels 0-3). The backend is seen
 * through {@link SmmuDomainHost} (which `SmmuV3Backend` implements), so this file does not
 * import backend.ts.
 */

import type { Backend, Domain, DomainFlags, DomainType, IovaRange } from "@iommu-kit/core";
import { hex, Perm } from "@iommu-kit/core";
import type { PageTable, PtFormat, UnmapGather } from "@iommu-kit/core/driver";
import { unmapRun } from "@iommu-kit/core/driver";
import type { LpaeFormatSpec } from "./format/lpae-pte.ts";
import type { SmmuHw } from "./hardware.ts";
import { POW2 } from "./internal/words.ts";
import { bad } from "./options.ts";

/** Perm.R | Perm.W: a mapping must grant one of them. */
const PERM_RW = Perm.R | Perm.W;

/** What an SMMUv3 domain needs of its backend (`SmmuV3Backend` implements it). */
export interface SmmuDomainHost extends Backend {
  /** The hardware model. */
  readonly hw: SmmuHw;
  /**
   * Invalidates a changed IOVA range of a paging domain (TLBI + CMD_SYNC): `pgsizeLg2` the
   * size of every leaf cleared (-1 unknown), `leaf` false when tables were freed.
   */
  invalidateDomainRange(
    d: SmmuPagingDomain,
    iova: number,
    length: number,
    pgsizeLg2?: number,
    leaf?: boolean,
  ): void;
  /** Releases an ASID/VMID after invalidating everything tagged with it (arm_smmu_domain_free). */
  releaseTag(d: SmmuPagingDomain): void;
  /** Submits commands through the command queue, with a CMD_SYNC at the end. */
  submit(cmds: readonly (readonly [bigint, bigint])[]): void;
}

/** Any domain of this backend. */
export abstract class SmmuDomain implements Domain {
  readonly backend: SmmuDomainHost;
  readonly id: number;
  abstract readonly type: DomainType;
  readonly format: string;
  readonly flags: DomainFlags;
  readonly aperture: IovaRange;
  readonly pageSizeBitmap: bigint;
  /** Attach points using this domain ("rid:pasid"). */
  readonly users: Set<string> = new Set();
  freed = false;

  constructor(
    backend: SmmuDomainHost,
    id: number,
    format: string,
    flags: DomainFlags,
    aperture: IovaRange,
    pageSizes: bigint,
  ) {
    this.backend = backend;
    this.id = id;
    this.format = format;
    this.flags = flags;
    this.aperture = aperture;
    this.pageSizeBitmap = pageSizes;
  }

  map(_iova: number, _pa: number, _length: number, _prot: number): void {
    throw bad("EINVAL", `a ${this.type} domain has no page table to map into`);
  }

  unmap(_iova: number, _length: number): number {
    throw bad("EINVAL", `a ${this.type} domain has no page table to unmap from`);
  }

  iovaToPhys(_iova: number): number {
    return -1;
  }

  free(): void {
    if (this.users.size > 0) throw bad("EBUSY", `domain ${this.id} is attached`, { id: this.id });
    if (this.freed) throw bad("EINVAL", `domain ${this.id} was already freed`, { id: this.id });
    this.release();
    this.freed = true;
  }

  protected release(): void {}
}

/** A blocked or identity domain (no table). */
export class SmmuSimpleDomain extends SmmuDomain {
  readonly type: DomainType;
  constructor(backend: SmmuDomainHost, id: number, type: "blocked" | "identity") {
    super(backend, id, "", {}, { start: 0, last: -1 }, 0n);
    this.type = type;
  }
}

/** A paging domain: a stage-1 (ASID) or stage-2 (VMID) VMSAv8-64 table written by the driver. */
export class SmmuPagingDomain extends SmmuDomain {
  readonly type: DomainType = "paging";
  readonly spec: LpaeFormatSpec;
  readonly stage: 1 | 2;
  readonly pt: PageTable;
  readonly ptFormat: PtFormat;
  /** ASID (stage 1) or VMID (stage 2). */
  readonly tagId: number;
  /** What the last unmap changed (iommu_iotlb_gather), reused. */
  readonly #gather: UnmapGather = { pgsizeLg2: -1, freed: false };
  /** vIOMMUs built over this (stage-2) nest parent (each holds it, as iommufd's viommu->hwpt). */
  children = 0;
  dirtyEnabled = false;

  constructor(
    backend: SmmuDomainHost,
    id: number,
    spec: LpaeFormatSpec,
    flags: DomainFlags,
    pt: PageTable,
    fmt: PtFormat,
    tagId: number,
    pageSizes: bigint,
  ) {
    super(backend, id, spec.name, flags, { start: 0, last: 2 ** spec.inputBits - 1 }, pageSizes);
    this.spec = spec;
    this.stage = spec.stage;
    this.pt = pt;
    this.ptFormat = fmt;
    this.tagId = tagId;
    const oas = Math.min(backend.hw.oas, spec.granuleLg2 === 16 ? 52 : 48);
    this.#paLimit = POW2[oas] ?? 2 ** oas;
  }

  /** 2^(output bits a descriptor of this format holds on this SMMU). */
  readonly #paLimit: number;

  override map(iova: number, pa: number, length: number, prot: number): void {
    // One combined test for the common valid call; anything else takes the full checks
    // (same order, same errors) in #checkMap. Passing it implies every check there holds.
    const min = POW2[this.spec.granuleLg2] ?? 2 ** this.spec.granuleLg2;
    if (
      !(
        !this.freed &&
        length > 0 &&
        iova >= 0 &&
        pa >= 0 &&
        iova % min === 0 &&
        pa % min === 0 &&
        length % min === 0 &&
        iova + length - 1 <= this.aperture.last &&
        pa + length <= this.#paLimit &&
        (prot & PERM_RW) !== 0 &&
        Number.isSafeInteger(iova + length) &&
        Number.isSafeInteger(pa + length)
      )
    )
      this.#checkMap(iova, pa, length, prot);
    this.pt.map(iova, pa, length, prot);
    // New entries replace invalid ones: nothing cached to invalidate (the SMMU caches no faults).
  }

  #checkMap(iova: number, pa: number, length: number, prot: number): void {
    this.#live();
    const min = 2 ** this.spec.granuleLg2;
    const details = { iova, pa, length };
    if (
      !Number.isSafeInteger(iova) ||
      !Number.isSafeInteger(pa) ||
      !Number.isSafeInteger(length) ||
      length <= 0
    )
      throw bad("EINVAL", `map ${iova}+${length} -> ${pa}: not a valid range`, details);
    if (iova % min !== 0 || pa % min !== 0 || length % min !== 0)
      throw bad(
        "EINVAL",
        `map ${hex(iova)}+${hex(length)} -> ${hex(pa)} is not ${hex(min)}-aligned`,
        details,
      );
    if (iova < 0 || iova + length - 1 > this.aperture.last)
      throw bad("EINVAL", `map ${hex(iova)}+${hex(length)} is outside the aperture`, details);
    // io-pgtable-arm's arm_lpae_map: `paddr >> cfg->oas` is -ERANGE. The limit is the OAS, and
    // 48 bits for 4K/16K: a 52-bit OA fits a descriptor only with the 64K granule (no LPA2 /
    // CD.DS here; IHI 0070 5.4 IPS, 5.2 S2PS), so a larger PA would be silently truncated.
    if (pa < 0 || pa + length > this.#paLimit)
      throw bad(
        "ERANGE",
        `pa ${hex(pa)}+${hex(length)} is beyond the ${Math.log2(this.#paLimit)}-bit output size`,
        details,
      );
    if ((prot & (Perm.R | Perm.W)) === 0) throw bad("EINVAL", "prot must grant read or write", { prot });
  }

  override unmap(iova: number, length: number): number {
    this.#live();
    const min = POW2[this.spec.granuleLg2] ?? 2 ** this.spec.granuleLg2;
    if (
      !Number.isSafeInteger(iova) ||
      !Number.isSafeInteger(length) ||
      iova % min !== 0 ||
      length % min !== 0 ||
      iova < 0
    )
      throw bad("EINVAL", `unmap ${hex(iova)}+${hex(length)} is not ${hex(min)}-aligned`, { iova, length });
    if (length === 0) return 0;
    const gather = this.#gather;
    const done = unmapRun(this.pt, iova, length, gather);
    // arm_smmu_iotlb_sync: one range invalidation of the gathered range and one CMD_SYNC.
    if (done > 0) this.backend.invalidateDomainRange(this, iova, length, gather.pgsizeLg2, !gather.freed);
    return done;
  }

  override iovaToPhys(iova: number): number {
    if (this.freed || iova < 0 || iova > this.aperture.last) return -1;
    return this.pt.lookup(iova)?.pa ?? -1;
  }

  /** Issues the TLB invalidation a driver issues after changing [iova, iova + length) (range TLBI + CMD_SYNC). */
  invalidateIova(iova: number, length: number): void {
    this.backend.invalidateDomainRange(this, iova, length);
  }

  /**
   * Test aid: rewrites, in memory only, the leaf mapping `iova` to point at `newPa`
   * (same size and attributes), without any invalidation.
   */
  rewriteLeaf(iova: number, newPa: number): void {
    let done = false;
    this.pt.forEachLeaf(iova, 1, (base, sizeLg2, words, wi) => {
      const size = 2 ** sizeLg2;
      const target = newPa - (iova - base);
      if (target % size !== 0) throw bad("EINVAL", "new address is not aligned to the leaf");
      const out = new Uint32Array(2);
      const lo = words[wi]!;
      this.ptFormat.encodeLeaf(target, sizeLg2 === this.spec.granuleLg2 ? 0 : 1, 0, out);
      const addrMaskLo = sizeLg2 >= 32 ? 0 : (2 ** 32 - 2 ** sizeLg2) >>> 0;
      words[wi] =
        ((lo & ~addrMaskLo & ~(this.spec.granuleLg2 === 16 ? 0xf000 : 0)) |
          (out[0]! & addrMaskLo) |
          (this.spec.granuleLg2 === 16 ? out[0]! & 0xf000 : 0)) >>>
        0;
      words[wi + 1] = ((words[wi + 1]! & ~0xffff) | (out[1]! & 0xffff)) >>> 0;
      done = true;
    });
    if (!done) throw bad("ENOENT", `iova ${hex(iova)} is not mapped`);
  }

  setDirtyTracking(enable: boolean): void {
    this.#live();
    if (!this.flags.dirtyTracking) throw bad("EOPNOTSUPP", "domain was not allocated with dirty tracking");
    this.dirtyEnabled = enable;
  }

  readDirty(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void {
    this.#live();
    if (!this.flags.dirtyTracking) throw bad("EOPNOTSUPP", "domain was not allocated with dirty tracking");
    const page = 2 ** pageSizeLg2;
    if (iova % page !== 0 || length % page !== 0) throw bad("EINVAL", "dirty range is not page-aligned");
    if (bitmap.length * 8 < length / page) throw bad("EINVAL", "bitmap too small");
    const fmt = this.ptFormat;
    const out = new Uint32Array(2);
    let cleared = false;
    this.pt.forEachLeaf(iova, length, (base, sizeLg2, words, wi, level) => {
      if (!fmt.isDirty!(words[wi]!, words[wi + 1]!, level)) return;
      const first = Math.max(base, iova);
      const last = Math.min(base + 2 ** sizeLg2, iova + length);
      for (let a = first - ((first - iova) % page); a < last; a += page) {
        const bit = (a - iova) / page;
        bitmap[bit >>> 3]! |= 1 << (bit & 7);
      }
      if (!noClear) {
        fmt.clearDirty!(words[wi]!, words[wi + 1]!, level, out);
        words[wi] = out[0]!;
        words[wi + 1] = out[1]!;
        cleared = true;
      }
    });
    if (cleared) this.invalidateIova(iova, length);
  }

  #live(): void {
    if (this.freed) throw bad("EINVAL", `domain ${this.id} was freed`, { id: this.id });
  }

  protected override release(): void {
    if (this.children > 0) throw bad("EBUSY", `domain ${this.id} is the parent of a vIOMMU`, { id: this.id });
    this.pt.destroy();
    this.backend.releaseTag(this);
  }
}
