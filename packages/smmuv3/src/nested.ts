/**
 * Nested domains of the SMMUv3 backend, as Linux 6.15's arm-smmu-v3-iommufd.c has them
 * (struct arm_smmu_nested_domain): the guest's STE words 0-1 (a vSTE, ARM IHI 0070 5.2)
 * checked by arm_smmu_validate_vste, allocated only on a vIOMMU
 * (arm_vsmmu_alloc_domain_nested), and the physical STE an attach installs
 * (arm_smmu_make_nested_domain_ste): the guest's stage-1 fields over the stage 2 of the
 * vIOMMU's nest parent, tagged with the vIOMMU's VMID. Invalidation goes through the
 * vIOMMU (`viommu.ts`): the nested domain has no `invalidate` of its own, as its
 * iommu_domain_ops have no cache_invalidate_user (IOMMU_HWPT_INVALIDATE on it is
 * EOPNOTSUPP). This file does not import the vIOMMU: it sees it as a {@link NestedOwner}.
 */

import type { DomainFlags, DomainType } from "@iommu-kit/core";
import type { SmmuDomainHost, SmmuPagingDomain } from "./domain.ts";
import { SmmuDomain } from "./domain.ts";
import { encodeSte, SteConfig } from "./format/ste.ts";
import { bad } from "./options.ts";

/** STRTAB_STE_0_NESTING_ALLOWED: V [0], Config [3:1], S1Fmt [5:4], S1ContextPtr [51:6], S1CDMax [63:59]. */
export const STE0_NESTING_ALLOWED: bigint = 0x1n | 0xen | 0x30n | 0x000f_ffff_ffff_ffc0n | (0x1fn << 59n);
/** STRTAB_STE_1_NESTING_ALLOWED: S1DSS [1:0], S1CIR [3:2], S1COR [5:4], S1CSH [7:6], S1STALLD [27], EATS [29:28]. */
export const STE1_NESTING_ALLOWED: bigint = 0xffn | (1n << 27n) | (3n << 28n);
/** STRTAB_STE_1_EATS [29:28]. */
const STE1_EATS = 3n << 28n;
/** STRTAB_STE_1_MEV [19]: merge events (arm_smmu_make_nested_cd_table_ste sets it against event floods). */
const STE1_MEV = 1n << 19n;

/** What a nested domain needs of the vIOMMU it was allocated on (`SmmuViommu` implements it). */
export interface NestedOwner {
  readonly id: number;
  /** The nest parent whose stage 2 every nested STE of this vIOMMU uses. */
  readonly parent: SmmuPagingDomain;
  /** vsmmu->vmid. */
  readonly vmid: number;
  /** The vSID of device `rid` on this vIOMMU, or -1 (iommufd_viommu_get_vdev_id). */
  virtId(rid: number): number;
  /** A nested domain of this vIOMMU was freed. */
  nestedFreed(d: SmmuNestedDomain): void;
  /** arm_vmaster_report_event: a guest-visible record of a device with vSID `vsid`. */
  report(words: readonly bigint[], vsid: number): void;
}

/** Parses a 64-bit STE word: a bigint or a string BigInt() reads, within [0, 2^64). */
function word(v: unknown, what: string): bigint {
  let w: bigint;
  try {
    if (typeof v !== "bigint" && typeof v !== "string") throw new TypeError();
    w = BigInt(v);
  } catch {
    throw bad("EINVAL", `${what} must be a bigint or a hex string`);
  }
  if (w < 0n || w >= 1n << 64n) throw bad("EINVAL", `${what} ${w} is not a 64-bit value`);
  return w;
}

/**
 * arm_smmu_validate_vste on iommu_hwpt_arm_smmuv3 data `{ ste: [w0, w1] }` (malformed
 * data is EINVAL, as iommu_copy_struct_from_user): V = 0 is an all-zero vSTE (abort);
 * a bit outside STRTAB_STE_{0,1}_NESTING_ALLOWED, a Config other than abort, bypass or
 * stage-1 translate, or EATS other than 0b00 / 0b01 is EIO ("EIO is reserved for
 * invalid STE data"). EATS is then cleared: the host decides ATS.
 */
export function validateVste(data: unknown): [bigint, bigint] {
  const ste = (data as { ste?: unknown } | null)?.ste;
  if (typeof data !== "object" || data === null || !Array.isArray(ste) || ste.length !== 2)
    throw bad("EINVAL", "nested data must be { ste: [w0, w1] }");
  const w0 = word(ste[0], "STE word 0");
  const w1 = word(ste[1], "STE word 1");
  if ((w0 & 1n) === 0n) return [0n, 0n];
  if ((w0 & ~STE0_NESTING_ALLOWED) !== 0n || (w1 & ~STE1_NESTING_ALLOWED) !== 0n)
    throw bad("EIO", "the vSTE sets fields a guest may not control", {
      w0: w0 & ~STE0_NESTING_ALLOWED,
      w1: w1 & ~STE1_NESTING_ALLOWED,
    });
  const cfg = Number((w0 >> 1n) & 7n);
  if (cfg !== SteConfig.ABORT && cfg !== SteConfig.BYPASS && cfg !== SteConfig.S1_TRANS)
    throw bad("EIO", `vSTE Config ${cfg} is not abort, bypass or stage-1 translate`, { config: cfg });
  const eats = Number((w1 & STE1_EATS) >> 28n);
  if (eats !== 0 && eats !== 1) throw bad("EIO", `vSTE EATS ${eats} is neither abort nor full ATS`, { eats });
  return [w0, w1 & ~STE1_EATS];
}

/** A nested domain: a validated vSTE on a vIOMMU (its S1ContextPtr is the guest CD table's IPA). */
export class SmmuNestedDomain extends SmmuDomain {
  readonly type: DomainType = "nested";
  readonly viommu: NestedOwner;
  readonly parent: SmmuPagingDomain;
  /** The validated vSTE words 0 and 1 (EATS cleared; all zero when V was 0). */
  readonly ste: readonly [bigint, bigint];

  constructor(
    backend: SmmuDomainHost,
    id: number,
    viommu: NestedOwner,
    ste: [bigint, bigint],
    flags: DomainFlags,
  ) {
    const parent = viommu.parent;
    super(backend, id, "arm-smmuv3-nested", flags, { start: 0, last: 2 ** 48 - 1 }, parent.pageSizeBitmap);
    this.viommu = viommu;
    this.parent = parent;
    this.ste = ste;
  }

  /** The vSTE's Config (0 = abort when V was 0: validateVste zeroed it). */
  get config(): number {
    return Number((this.ste[0] >> 1n) & 7n);
  }

  protected override release(): void {
    this.viommu.nestedFreed(this);
  }
}

/**
 * arm_smmu_make_nested_domain_ste: the physical STE of a device attached to `d`, given
 * the STE words `s2` of the parent's stage 2 (arm_smmu_make_s2_domain_ste, S2VMID = the
 * vIOMMU's VMID). V = 0 or Config abort: an abort STE (arm_smmu_make_abort_ste); bypass:
 * the stage-2 STE alone; stage-1 translate: Config nested with the guest's word 0 fields
 * and word 1 ORed in, plus MEV (arm_smmu_make_nested_cd_table_ste).
 */
export function nestedSteWords(d: SmmuNestedDomain, s2: readonly bigint[]): bigint[] {
  const [u0, u1] = d.ste;
  const cfg = (u0 & 1n) === 0n ? SteConfig.ABORT : d.config;
  if (cfg === SteConfig.BYPASS) return [...s2];
  if (cfg !== SteConfig.S1_TRANS) return encodeSte({ V: 1, Config: SteConfig.ABORT });
  const w = [...s2];
  w[0] = 1n | (BigInt(SteConfig.NESTED) << 1n) | (u0 & ~0xen);
  w[1] = w[1]! | u1 | STE1_MEV;
  return w;
}
