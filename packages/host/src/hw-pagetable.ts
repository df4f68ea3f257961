/**
 * HW page tables and accesses, after iommufd's hw_pagetable.c and the access part of
 * device.c: a paging HWPT owns a backend domain filled from one IOAS (every area
 * mapped into it, every later change propagated); a nested HWPT is a user table over
 * a nest-parent paging HWPT; an access is the emulated-table domain of a mediated
 * device attached with intent `emulated`. The IOAS object lives here too, since it
 * is what ties them together (iommufd's ioas.c).
 */

import type { Domain, EmulatedAccess, IovaRange } from "@iommu-kit/core";
import type { HostObject } from "./context.ts";
import type { HostDevice } from "./device.ts";
import type { FaultQueueObject } from "./fault.ts";
import type { Area } from "./io-pagetable.ts";
import { areaPa, IoPagetable } from "./io-pagetable.ts";

/** An IO address space (IOMMU_IOAS_ALLOC). */
export class Ioas implements HostObject {
  readonly kind = "ioas" as const;
  readonly id: number;
  readonly iopt: IoPagetable = new IoPagetable();
  /** Paging HWPTs built from this IOAS (user-allocated and automatic). */
  readonly hwpts: HwptPaging[] = [];
  /** Emulated accesses reading this IOAS. */
  readonly accesses: AccessObject[] = [];
  /** Reserved ranges imposed by domains and attached devices (merged). */
  reserved: IovaRange[] = [];
  /** IOVA alignment: the largest smallest-page-size of the domains (1 without any). */
  alignment = 1;
  /** Every domain changes propagate to: the accesses' first (they may refuse an unmap), then the HWPTs'. */
  domains: Domain[] = [];

  constructor(id: number) {
    this.id = id;
  }

  /** Rebuilds {@link Ioas.domains} after an HWPT or access joined or left. */
  refreshDomains(): void {
    this.domains = [...this.accesses.map((a) => a.domain), ...this.hwpts.map((h) => h.domain)];
  }
}

/** A paging HWPT (IOMMUFD_OBJ_HWPT_PAGING). */
export class HwptPaging implements HostObject {
  readonly kind = "hwpt-paging" as const;
  readonly id: number;
  readonly ioas: Ioas;
  readonly domain: Domain;
  /** Created by an attach to the IOAS; destroyed when its last device leaves. */
  readonly auto: boolean;
  readonly faultQueue: FaultQueueObject | null;
  /** Attach points holding it. */
  users = 0;
  /** Nested HWPTs over it. */
  children = 0;

  constructor(id: number, ioas: Ioas, domain: Domain, auto: boolean, faultQueue: FaultQueueObject | null) {
    this.id = id;
    this.ioas = ioas;
    this.domain = domain;
    this.auto = auto;
    this.faultQueue = faultQueue;
  }
}

/** A nested HWPT (IOMMUFD_OBJ_HWPT_NESTED): a user table walked through `parent`. */
export class HwptNested implements HostObject {
  readonly kind = "hwpt-nested" as const;
  readonly id: number;
  readonly parent: HwptPaging;
  readonly domain: Domain;
  readonly faultQueue: FaultQueueObject | null;
  users = 0;

  constructor(id: number, parent: HwptPaging, domain: Domain, faultQueue: FaultQueueObject | null) {
    this.id = id;
    this.parent = parent;
    this.domain = domain;
    this.faultQueue = faultQueue;
  }
}

/** Either HWPT kind. */
export type Hwpt = HwptPaging | HwptNested;

/** The paging HWPT whose IOAS a HWPT reads (itself, or a nested one's parent). */
export function pagingOf(h: Hwpt): HwptPaging {
  return h.kind === "hwpt-paging" ? h : h.parent;
}

/** An emulated access (IOMMUFD_OBJ_ACCESS) of a mediated device to an IOAS. */
export class AccessObject implements HostObject {
  readonly kind = "access" as const;
  readonly id: number;
  readonly ioas: Ioas;
  readonly device: HostDevice;
  readonly domain: Domain & EmulatedAccess;

  constructor(id: number, ioas: Ioas, device: HostDevice, domain: Domain & EmulatedAccess) {
    this.id = id;
    this.ioas = ioas;
    this.device = device;
    this.domain = domain;
  }
}

/**
 * Maps every area into a fresh domain (iopt_fill_domain); on failure unmaps what it
 * mapped and rethrows, leaving the domain empty.
 */
export function fillDomain(domain: Domain, areas: readonly Area[]): void {
  let done = 0;
  try {
    for (const a of areas) {
      domain.map(a.iova, areaPa(a), a.length, a.prot);
      done++;
    }
  } catch (e) {
    for (let i = 0; i < done; i++) domain.unmap(areas[i]!.iova, areas[i]!.length);
    throw e;
  }
}

/** Unmaps every area from a domain (iopt_unfill_domain). */
export function unfillDomain(domain: Domain, areas: readonly Area[]): void {
  for (const a of areas) domain.unmap(a.iova, a.length);
}

/** Maps one range into every domain in order; on failure unmaps it from the ones done and rethrows. */
export function mapEverywhere(
  domains: readonly Domain[],
  iova: number,
  pa: number,
  length: number,
  prot: number,
): void {
  let done = 0;
  try {
    for (; done < domains.length; done++) domains[done]!.map(iova, pa, length, prot);
  } catch (e) {
    for (let i = 0; i < done; i++) domains[i]!.unmap(iova, length);
    throw e;
  }
}
