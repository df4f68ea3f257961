/**
 * The options and the comparable state snapshot of a `Host` (host.ts), and the default
 * memory layout.
 */

import type { BackendRegistry, RamRegion } from "@iommu-kit/core";
import type { ObjectInfo } from "./describe.ts";

/** Default RAM: [0, 4 GiB). */
export const DEFAULT_RAM: readonly RamRegion[] = [{ base: 0, size: 2 ** 32, name: "ram" }];
/** Default table region: 256 MiB just above the default RAM. */
export const DEFAULT_TABLES: { readonly base: number; readonly size: number } = {
  base: 2 ** 32,
  size: 2 ** 28,
};

/** Options of a `Host`. */
export interface HostOptions {
  /** RAM regions (default {@link DEFAULT_RAM}). */
  readonly ram?: readonly RamRegion[];
  /** The region table pages come from (default {@link DEFAULT_TABLES}); added as RAM when no region covers it. */
  readonly tables?: { readonly base: number; readonly size: number };
  /** Where backends are found by name (default core's `defaultRegistry`). */
  readonly registry?: BackendRegistry;
  /** The backend that hosts mediated devices when `addMdev` names none (default "mdev-emulated"). */
  readonly mdevBackend?: string;
}

/** A deep-equal comparable snapshot of everything the host owns (for atomicity tests). */
export interface HostState {
  readonly nextId: number;
  readonly iommus: readonly string[];
  readonly objects: readonly ObjectInfo[];
  readonly pendingFaults: number;
  readonly tableBlocks: ReadonlyArray<readonly [number, number]>;
  readonly tableBytes: number;
  /** Non-zero pages of physical memory (tables and data). */
  readonly memory: Map<number, Uint8Array>;
}
