/**
 * The SMMUv3 IOTLB: core's unified `FastIotlb` with SMMUv3 tags and the invalidation
 * scopes of the TLBI commands (ARM IHI 0070 4.4). A tag packs (VMID, ASID slot): slot 0 =
 * stage-2-only entries (input address is an IPA), slot ASID+1 = stage-1 or nested
 * entries; the core IOTLB groups tags by VMID (groupSpan = 2^17), the unit most TLBIs
 * name. The meta word's vendor bits hold the privileged (2:0) and unprivileged (6:4)
 * permissions and GLOBAL (8): global entries (nG = 0) are cached under the ASID that
 * walked them with that flag, so TLBI_NH_ASID keeps them and TLBI_NH_VA drops them for
 * any ASID. A hit is one hash probe (and the core's micro-TLB in front of it): no
 * allocation, no closure, no BigInt. Only the fast path (`../fast-path.ts`) uses this
 * class; the command queue reaches it through the fast path's TLBI methods.
 */

import { FastIotlb, iotlbMeta } from "@iommu-kit/core/driver";

const PAGE = 4096;
const SLOT_SPAN = 131072; // 2^17 ASID slots per VMID
/** Meta vendor bit: the entry came from a global (nG = 0) stage-1 leaf. */
export const AUX_GLOBAL = 0x100;

/** The IOTLB tag of (VMID, ASID); asid -1 = a stage-2-only entry. */
export function tlbTag(vmid: number, asid: number): number {
  return vmid * SLOT_SPAN + asid + 1;
}

/** IOTLB with SMMUv3 invalidation scopes. Perms pack privileged (bits 2:0) and unprivileged (6:4) grants. */
export class SmmuTlb {
  readonly iotlb: FastIotlb;
  /**
   * VMIDs that may hold global entries (added on insert, forgotten when the IOTLB is
   * empty): without any, TLBI_NH_VA of one ASID is a range invalidation of one tag.
   */
  readonly #globalVmids = new Set<number>();
  /** The tag whose VMID insert added to #globalVmids last (-1: none since the set was emptied). */
  #lastGlobal = -1;

  /** @param micro the micro-TLB array the fast path owns (core's newMicroTlb). */
  constructor(capacityLg2: number, micro?: Float64Array) {
    this.iotlb =
      micro === undefined
        ? new FastIotlb(capacityLg2, SLOT_SPAN)
        : new FastIotlb(capacityLg2, SLOT_SPAN, micro);
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
    // The tag noted last is not noted again (a Set.add per fill otherwise); kept out of
    // line so the common fill stays small enough to inline into the miss path.
    if (global && tag !== this.#lastGlobal) this.#noteGlobal(tag);
    this.iotlb.insert(
      tag,
      vpn,
      pa - (iova - vpn * PAGE),
      iotlbMeta(permPriv | (permUnpriv << 4) | (global ? AUX_GLOBAL : 0), sizeLg2),
    );
  }

  /** Adds the VMID of `tag` to the VMIDs that may hold global entries. */
  #noteGlobal(tag: number): void {
    this.#globalVmids.add(Math.floor(tag / SLOT_SPAN));
    this.#lastGlobal = tag;
  }

  /** TLBI_NSNH_ALL. */
  clear(): number {
    const n = this.iotlb.size;
    this.iotlb.clear();
    return n;
  }

  /** TLBI_S12_VMALL: every entry of the VMID. */
  invalidateVmid(vmid: number): number {
    return this.iotlb.invalidateGroup(vmid);
  }

  /** TLBI_NH_ALL: every stage-1 (and nested) entry of the VMID. */
  invalidateNhAll(vmid: number): number {
    if (!this.iotlb.hasGroup(vmid)) return 0;
    const d = this.iotlb.data;
    return this.iotlb.invalidateWhere(
      (i) => Math.floor(d[i * 4 + 1]! / SLOT_SPAN) === vmid && d[i * 4 + 1]! % SLOT_SPAN !== 0,
    );
  }

  /** TLBI_NH_ASID: non-global entries of (VMID, ASID). */
  invalidateAsid(vmid: number, asid: number): number {
    const tag = tlbTag(vmid, asid);
    if (!this.iotlb.hasTag(tag)) return 0;
    const d = this.iotlb.data;
    return this.iotlb.invalidateWhere((i) => d[i * 4 + 1] === tag && (d[i * 4 + 3]! & AUX_GLOBAL) === 0);
  }

  /**
   * TLBI_NH_VA (asid >= 0: that ASID's entries and global ones) or TLBI_NH_VAA (asid -1:
   * every ASID) whose leaf covers any byte of [addr, addr + length).
   */
  invalidateVa(vmid: number, asid: number, addr: number, length: number): number {
    const t = this.iotlb;
    if (t.size === 0) {
      this.#globalVmids.clear();
      this.#lastGlobal = -1;
    }
    const tag = tlbTag(vmid, asid);
    const end = addr + length;
    // One ASID and no global entries in the VMID: the entries to drop are that tag's.
    if (asid >= 0 && !this.#globalVmids.has(vmid)) return t.invalidateRange(vmid, tag, addr, end);
    const d = t.data;
    return t.invalidateRange(vmid, -1, addr, end, (i) => {
      const e = d[i * 4 + 1]!;
      if (e % SLOT_SPAN === 0) return false; // stage-2-only
      if (asid >= 0 && e !== tag && (d[i * 4 + 3]! & AUX_GLOBAL) === 0) return false;
      return t.covers(i, addr, end);
    });
  }

  /** TLBI_S2_IPA: stage-2-only entries of the VMID covering [ipa, ipa + length). */
  invalidateIpa(vmid: number, ipa: number, length: number): number {
    return this.iotlb.invalidateRange(vmid, tlbTag(vmid, -1), ipa, ipa + length);
  }
}
