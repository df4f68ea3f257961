/**
 * Root entries: the 16-byte entries of the root table, one per PCI bus, indexed by
 * bus number (source-id bits 15:8). Intel VT-d spec 9.1 (legacy Root Entry) and 9.2
 * (Scalable-Mode Root Entry). Legacy: P (bit 0), CTP (63:12), bits 127:64 reserved.
 * Scalable: LP (0) / LCTP (63:12) for devfn 0-127 and UP (64) / UCTP (127:76) for
 * devfn 128-255. Not a paging level: no level numbers apply.
 */

import { field, setField } from "@iommu-kit/core/driver";

/** Size of a root entry in bytes. */
export const ROOT_ENTRY_BYTES = 16;

/** A legacy root entry (spec 9.1). */
export interface RootEntry {
  readonly present: boolean;
  /** Context-table pointer, 4 KiB aligned. */
  readonly ctp: number;
}

/** A scalable-mode root entry (spec 9.2). */
export interface ScalableRootEntry {
  readonly lowerPresent: boolean;
  readonly lowerCtp: number;
  readonly upperPresent: boolean;
  readonly upperCtp: number;
}

/** Encodes a legacy root entry as two 64-bit words. */
export function encodeRootEntry(e: RootEntry): [bigint, bigint] {
  let lo = setField(0n, 0, 0, e.present ? 1 : 0);
  lo = setField(lo, 63, 12, BigInt(e.ctp) >> 12n);
  return [lo, 0n];
}

/** Decodes a legacy root entry; `reserved` is true when a reserved bit (11:1, 127:64) is set. */
export function decodeRootEntry(w: readonly bigint[]): RootEntry & { readonly reserved: boolean } {
  const lo = w[0] ?? 0n;
  const hi = w[1] ?? 0n;
  return {
    present: field(lo, 0, 0) === 1n,
    ctp: Number(field(lo, 63, 12) << 12n),
    reserved: field(lo, 11, 1) !== 0n || hi !== 0n,
  };
}

/** Encodes a scalable-mode root entry as two 64-bit words. */
export function encodeScalableRootEntry(e: ScalableRootEntry): [bigint, bigint] {
  let lo = setField(0n, 0, 0, e.lowerPresent ? 1 : 0);
  lo = setField(lo, 63, 12, BigInt(e.lowerCtp) >> 12n);
  let hi = setField(0n, 0, 0, e.upperPresent ? 1 : 0);
  hi = setField(hi, 63, 12, BigInt(e.upperCtp) >> 12n);
  return [lo, hi];
}

/** Decodes a scalable-mode root entry; `reserved` when bits 11:1 or 75:65 are set. */
export function decodeScalableRootEntry(
  w: readonly bigint[],
): ScalableRootEntry & { readonly reserved: boolean } {
  const lo = w[0] ?? 0n;
  const hi = w[1] ?? 0n;
  return {
    lowerPresent: field(lo, 0, 0) === 1n,
    lowerCtp: Number(field(lo, 63, 12) << 12n),
    upperPresent: field(hi, 0, 0) === 1n,
    upperCtp: Number(field(hi, 63, 12) << 12n),
    reserved: field(lo, 11, 1) !== 0n || field(hi, 11, 1) !== 0n,
  };
}
