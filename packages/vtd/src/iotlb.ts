/**
 * The VT-d IOTLB: core's FastIotlb with VT-d's tag scheme and invalidation rules
 * (Intel VT-d spec 6.2.2 tagging, 6.5.2.3 IOTLB invalidation, 6.5.2.4 PASID-based
 * IOTLB invalidation). Tags are DID * 2^20 + PASID (RID_PASID for requests without
 * PASID in scalable mode, 0 in legacy mode), grouped by DID. Entries are 4 KiB pages
 * of a leaf of any level; in generic_pt terms (drivers/iommu/generic_pt/fmt/vtdss.h)
 * level 0 = 4 KiB PTE, 1 = 2 MiB PDE, 2 = 1 GiB PDPE, and the leaf size in the meta
 * word is 12 + 9 * level. The micro-TLB serves requests without PASID under the tag
 * with RID_PRIV folded in (see microKey). Off the hit path except microKey.
 */

import { FastIotlb, iotlbMeta } from "@iommu-kit/core/driver";
import { Kind } from "./walk.ts";

/** Tags are DID * 2^20 + PASID: PASIDs are 20 bits (spec 3.4.3). */
export const PASID_SPAN = 1048576;

/**
 * VT-d's bits of an IOTLB meta word (core's IotlbMeta holds the leaf size in 31:26):
 * user perm (2:0), supervisor perm (5:3), write-needs-walk (6, a D bit to set), kind (9:7).
 */
export const Meta = {
  SUP_SHIFT: 3,
  WRITE_WALK: 64,
  KIND_SHIFT: 7,
  /** Core's leaf-size field (IotlbMeta.SIZE_SHIFT), restated for the hot path. */
  SIZE_SHIFT: 26,
} as const;

/** The IOTLB of one VT-d unit (core's FastIotlb, grouped by DID). */
export type VtdIotlb = FastIotlb;

/** A VT-d IOTLB of 2^capacityLg2 slots, with `micro` (core's newMicroTlb) as its micro-TLB when given. */
export function createIotlb(capacityLg2: number, micro?: Float64Array): VtdIotlb {
  return micro === undefined
    ? new FastIotlb(capacityLg2, PASID_SPAN)
    : new FastIotlb(capacityLg2, PASID_SPAN, micro);
}

/**
 * The meta word of a filled entry. Nested entries carry SCAN: a page-selective IOTLB
 * invalidation names a GPA, which cannot be matched against their IOVA, so it drops
 * them all (spec 6.5.2.3) and a page probe would miss them.
 */
export function fillMeta(
  permUser: number,
  permSup: number,
  writeWalk: boolean,
  kind: number,
  sizeLg2: number,
): number {
  const vendor =
    permUser | (permSup << Meta.SUP_SHIFT) | (writeWalk ? Meta.WRITE_WALK : 0) | (kind << Meta.KIND_SHIFT);
  return iotlbMeta(vendor, sizeLg2, kind === Kind.NESTED);
}

/**
 * The micro-TLB key of requests without PASID: the IOTLB tag (an integer) plus 0.5 for
 * supervisor requests (RID_PRIV), so one lookup also selects which rights apply.
 */
export function microKey(tag: number, priv: boolean): number {
  return priv ? tag + 0.5 : tag;
}

/** The micro-TLB meta of an entry for one privilege: that privilege's rights in 2:0. */
export function microMeta(meta: number, priv: boolean): number {
  return (meta & ~63) | (priv ? (meta >>> Meta.SUP_SHIFT) & 7 : meta & 7);
}

/**
 * IOTLB invalidation (spec 6.5.2.3): global, domain-selective, or page-selective
 * within a domain for [addr, addr + 2^(12+am)). Page-selective drops second-stage
 * entries whose leaf covers the range and every nested entry of the domain (their
 * IOVAs cannot be matched against a GPA); first-stage entries need the PASID-based
 * invalidation. Returns the entries dropped.
 */
export function invalidateIotlb(
  t: VtdIotlb,
  g: "global" | "domain" | "page",
  did: number,
  addr: number,
  am: number,
): number {
  if (g === "global") {
    const n = t.size;
    t.clear();
    return n;
  }
  if (g === "domain") return t.invalidateGroup(did);
  const start = addr;
  const end = addr + 2 ** (12 + am);
  return t.invalidateRange(did, -1, start, end, (i) => {
    const kind = (t.meta(i) >>> Meta.KIND_SHIFT) & 7;
    if (kind === Kind.NESTED) return true;
    if (kind !== Kind.SECOND_STAGE) return false;
    return t.covers(i, start, end);
  });
}

/**
 * PASID-based IOTLB invalidation (spec 6.5.2.4): first-stage and nested entries of
 * (DID, PASID), all of them or those whose leaf covers [addr, addr + 2^(12+am)).
 */
export function invalidatePasidIotlb(
  t: VtdIotlb,
  g: "pasid" | "page",
  did: number,
  pasid: number,
  addr: number,
  am: number,
): number {
  const tag = did * PASID_SPAN + pasid;
  if (!t.hasTag(tag)) return 0;
  const start = addr;
  const end = addr + 2 ** (12 + am);
  const match = (i: number): boolean => {
    if (t.tag(i) !== tag) return false;
    const kind = (t.meta(i) >>> Meta.KIND_SHIFT) & 7;
    if (kind !== Kind.FIRST_STAGE && kind !== Kind.NESTED) return false;
    return g === "pasid" || t.covers(i, start, end);
  };
  return g === "pasid" ? t.invalidateWhere(match) : t.invalidateRange(did, tag, start, end, match);
}
