/**
 * The SMMUv3 IOTLB: core's typed-array `Iotlb` with SMMUv3 tags and the invalidation
 * scopes of the TLBI commands (ARM IHI 0070 4.4). A tag packs (VMID, ASID slot): slot 0 =
 * stage-2-only entries (input address is an IPA), slot ASID+1 = stage-1 or nested
 * entries. Global entries (nG = 0) are cached under the ASID that walked them with a
 * flag, so TLBI_NH_ASID keeps them and TLBI_NH_VA drops them for any ASID. A hit is one
 * hash probe: no allocation, no closure, no BigInt. Only the fast path (`../fast-path.ts`)
 * uses this class; the command queue reaches it through the fast path's TLBI methods, so
 * another IOTLB changes this file and the fast path's hit path, nothing else.
 */

import { Iotlb } from "@iommu-kit/core/driver";

const PAGE = 4096;
const SLOT_SPAN = 131072; // 2^17 ASID slots per VMID
/** 2^i for i in [0, 255] (Math.pow is slow on this path). */
const POW2 = Float64Array.from({ length: 256 }, (_, i) => 2 ** i);
/** aux bit: the entry came from a global (nG = 0) stage-1 leaf. */
export const AUX_GLOBAL = 1;

/** The IOTLB tag of (VMID, ASID); asid -1 = a stage-2-only entry. */
export function tlbTag(vmid: number, asid: number): number {
  return vmid * SLOT_SPAN + asid + 1;
}

/** IOTLB with SMMUv3 invalidation scopes. Perms pack privileged (bits 2:0) and unprivileged (6:4) grants. */
export class SmmuTlb {
  readonly iotlb: Iotlb;
  /**
   * VMIDs that may hold global entries (added on insert, forgotten when the IOTLB is
   * empty): without any, TLBI_NH_VA of one ASID is a range invalidation of one tag.
   */
  readonly #globalVmids = new Set<number>();

  constructor(capacityLg2: number) {
    this.iotlb = new Iotlb(capacityLg2);
  }

  /** Entries held. */
  get size(): number {
    return this.iotlb.size;
  }

  /** Slot for (tag, iova) or -1. Hot path. */
  lookup(tag: number, iova: number): number {
    return this.iotlb.lookup(tag, Math.floor(iova / PAGE));
  }

  /** Caches the 4K page of `iova` from a leaf of 2^sizeLg2 whose byte at `iova` is `pa`. */
  insert(
    tag: number,
    iova: number,
    pa: number,
    permPriv: number,
    permUnpriv: number,
    sizeLg2: number,
    global: boolean,
  ): void {
    const vpn = Math.floor(iova / PAGE);
    if (global) this.#globalVmids.add(Math.floor(tag / SLOT_SPAN));
    this.iotlb.insert(
      tag,
      vpn,
      pa - (iova - vpn * PAGE),
      permPriv | (permUnpriv << 4),
      sizeLg2,
      global ? AUX_GLOBAL : 0,
    );
  }

  /** TLBI_NSNH_ALL. */
  clear(): number {
    const n = this.iotlb.size;
    this.iotlb.clear();
    return n;
  }

  /** TLBI_S12_VMALL: every entry of the VMID. */
  invalidateVmid(vmid: number): number {
    const t = this.iotlb.tags;
    return this.iotlb.invalidateWhere((i) => Math.floor(t[i]! / SLOT_SPAN) === vmid);
  }

  /** TLBI_NH_ALL: every stage-1 (and nested) entry of the VMID. */
  invalidateNhAll(vmid: number): number {
    const t = this.iotlb.tags;
    return this.iotlb.invalidateWhere(
      (i) => Math.floor(t[i]! / SLOT_SPAN) === vmid && t[i]! % SLOT_SPAN !== 0,
    );
  }

  /** TLBI_NH_ASID: non-global entries of (VMID, ASID). */
  invalidateAsid(vmid: number, asid: number): number {
    if (this.iotlb.size === 0) return 0;
    const tag = tlbTag(vmid, asid);
    const { tags, aux } = this.iotlb;
    return this.iotlb.invalidateWhere((i) => tags[i] === tag && (aux[i]! & AUX_GLOBAL) === 0);
  }

  /**
   * TLBI_NH_VA (asid >= 0: that ASID's entries and global ones) or TLBI_NH_VAA (asid -1:
   * every ASID) whose leaf covers any byte of [addr, addr + length).
   */
  invalidateVa(vmid: number, asid: number, addr: number, length: number): number {
    if (this.iotlb.size === 0) this.#globalVmids.clear();
    const tag = tlbTag(vmid, asid);
    // One ASID and no global entries in the VMID: the entries to drop are that tag's.
    if (asid >= 0 && !this.#globalVmids.has(vmid)) return this.iotlb.invalidateRange(tag, addr, length);
    const { tags, aux } = this.iotlb;
    return this.#range(addr, length, (i) => {
      const t = tags[i]!;
      if (Math.floor(t / SLOT_SPAN) !== vmid || t % SLOT_SPAN === 0) return false;
      return asid < 0 || t === tag || (aux[i]! & AUX_GLOBAL) !== 0;
    });
  }

  /** TLBI_S2_IPA: stage-2-only entries of the VMID covering [ipa, ipa + length). */
  invalidateIpa(vmid: number, ipa: number, length: number): number {
    return this.iotlb.invalidateRange(tlbTag(vmid, -1), ipa, length);
  }

  #range(addr: number, length: number, match: (slot: number) => boolean): number {
    if (this.iotlb.size === 0) return 0;
    const { vpns, sizes } = this.iotlb;
    const end = addr + length;
    return this.iotlb.invalidateWhere((i) => {
      if (!match(i)) return false;
      const size = POW2[sizes[i]!]!; // sizes are Uint8: always inside the table
      const a = vpns[i]! * PAGE;
      const base = a - (a % size);
      return base < end && base + size > addr;
    });
  }
}
