/**
 * What a backend gives the conformance suite (`runConformance`).
 */

import type { Backend, DeviceSpec, Domain } from "../backend.ts";
import type { IntentKind } from "../intent.ts";
import type { PhysicalMemory } from "../memory/physical-memory.ts";
import type { TableAllocator } from "../memory/table-allocator.ts";

/** A fresh backend and what the suite needs to poke at it. */
export interface ConformanceSetup {
  readonly backend: Backend;
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  /**
   * Devices the suite adds with `backend.addDevice` (it adds them itself). Give at least
   * one; include a PASID-capable one when the backend supports `pasid`.
   */
  readonly devices: readonly DeviceSpec[];
  /** RAM the suite may map and DMA into (outside the table region), page-aligned, >= 64 MiB. */
  readonly ram: { readonly base: number; readonly size: number };
  /**
   * Rewrites, in memory only, the leaf that maps `iova` in `domain` so it points at
   * `newPa` (same size and permissions), WITHOUT any invalidation: the suite then
   * checks that cached translations stay stale.
   */
  rewriteLeaf(domain: Domain, iova: number, newPa: number): void;
  /** Issues the invalidation a driver issues after changing that leaf (TLBI / IOTLB PSI...). */
  invalidateLeaf(domain: Domain, iova: number): void;
}

/** A named way to build fresh setups. */
export interface ConformanceFactory {
  /** Shown in test names. */
  readonly name: string;
  /** Called once per test: a fresh memory, allocator and backend. */
  setup(): ConformanceSetup;
  /** The table format of paging domains the suite allocates (default: the device's first). */
  readonly pagingFormat?: string;
  /**
   * Builds the domain the suite attaches for an intent kind, when a plain paging domain
   * is not right: `rid-all-pasids` needs vendor nested data, so backends listing it
   * must supply this (return undefined to let the suite allocate a paging domain).
   */
  domainFor?(setup: ConformanceSetup, device: DeviceSpec, kind: IntentKind): Domain | undefined;
}

/** The bits of a test runner the suite needs (vitest, jest, node:test, mocha all fit). */
export interface TestApi {
  describe(name: string, body: () => void): void;
  it(name: string, body: () => void | Promise<void>): void;
}
