/**
 * Context entries: one per device function (devfn = source-id bits 7:0) in the
 * context table a root entry points at. Intel VT-d spec 9.3 (legacy Context Entry,
 * 16 bytes, 256 per table) and 9.4 (Scalable-Mode Context Entry, 32 bytes, 128 per
 * table: devfn 0-127 through the root entry's lower half, 128-255 through the upper).
 * Legacy: P 0, FPD 1, TT 3:2, SLPTPTR 63:12; AW 66:64, DID 87:72. Scalable: P 0,
 * FPD 1, DTE 2, PASIDE 3, PRE 4, PDTS 11:9, PASIDDIRPTR 63:12; RID_PASID 83:64,
 * RID_PRIV 84. Not a paging level: no level numbers apply.
 */

import { field, setField } from "@iommu-kit/core/driver";

/** Bytes of a legacy context entry. */
export const CONTEXT_ENTRY_BYTES = 16;
/** Bytes of a scalable-mode context entry. */
export const SM_CONTEXT_ENTRY_BYTES = 32;

/** Legacy TT values (spec 9.3). */
export const Tt = {
  /** 00b: untranslated requests translated through SLPTPTR; translation requests blocked. */
  TRANSLATE: 0,
  /** 01b: as 00b plus device-TLB (ATS) requests. */
  DEVICE_TLB: 1,
  /** 10b: pass-through (ECAP.PT). */
  PASS_THROUGH: 2,
  /** 11b: reserved. */
  RESERVED: 3,
} as const;

/** A legacy context entry (spec 9.3). */
export interface ContextEntry {
  readonly present: boolean;
  /** Fault processing disable. */
  readonly fpd: boolean;
  /** Translation type ({@link Tt}). */
  readonly tt: number;
  /** Second-stage page-table pointer, 4 KiB aligned. */
  readonly slptptr: number;
  /** Address width: 1 = 39-bit 3-level, 2 = 48-bit 4-level, 3 = 57-bit 5-level. */
  readonly aw: number;
  /** Domain identifier. */
  readonly did: number;
}

/** Encodes a legacy context entry. */
export function encodeContextEntry(e: ContextEntry): [bigint, bigint] {
  let lo = setField(0n, 0, 0, e.present ? 1 : 0);
  lo = setField(lo, 1, 1, e.fpd ? 1 : 0);
  lo = setField(lo, 3, 2, e.tt);
  lo = setField(lo, 63, 12, BigInt(e.slptptr) >> 12n);
  let hi = setField(0n, 2, 0, e.aw);
  hi = setField(hi, 23, 8, e.did);
  return [lo, hi];
}

/** Decodes a legacy context entry; `reserved` for bits 11:4, 71 or 127:88 set. */
export function decodeContextEntry(w: readonly bigint[]): ContextEntry & { readonly reserved: boolean } {
  const lo = w[0] ?? 0n;
  const hi = w[1] ?? 0n;
  return {
    present: field(lo, 0, 0) === 1n,
    fpd: field(lo, 1, 1) === 1n,
    tt: Number(field(lo, 3, 2)),
    slptptr: Number(field(lo, 63, 12) << 12n),
    aw: Number(field(hi, 2, 0)),
    did: Number(field(hi, 23, 8)),
    reserved: field(lo, 11, 4) !== 0n || field(hi, 7, 7) !== 0n || field(hi, 63, 24) !== 0n,
  };
}

/** A scalable-mode context entry (spec 9.4). */
export interface ScalableContextEntry {
  readonly present: boolean;
  readonly fpd: boolean;
  /** Device-TLB enable. */
  readonly dte: boolean;
  /** PASID enable: requests with PASID are processed. */
  readonly paside: boolean;
  /** Page-request enable. */
  readonly pre: boolean;
  /** PASID directory size: 2^(PDTS + 7) entries. */
  readonly pdts: number;
  /** PASID directory pointer, 4 KiB aligned. */
  readonly pasidDirPtr: number;
  /** PASID used for requests without PASID. */
  readonly ridPasid: number;
  /** Privilege of requests without PASID (spec 9.4, RID_PRIV). */
  readonly ridPriv: boolean;
}

/** Encodes a scalable-mode context entry as four 64-bit words. */
export function encodeScalableContextEntry(e: ScalableContextEntry): [bigint, bigint, bigint, bigint] {
  let w0 = setField(0n, 0, 0, e.present ? 1 : 0);
  w0 = setField(w0, 1, 1, e.fpd ? 1 : 0);
  w0 = setField(w0, 2, 2, e.dte ? 1 : 0);
  w0 = setField(w0, 3, 3, e.paside ? 1 : 0);
  w0 = setField(w0, 4, 4, e.pre ? 1 : 0);
  w0 = setField(w0, 11, 9, e.pdts);
  w0 = setField(w0, 63, 12, BigInt(e.pasidDirPtr) >> 12n);
  let w1 = setField(0n, 19, 0, e.ridPasid);
  w1 = setField(w1, 20, 20, e.ridPriv ? 1 : 0);
  return [w0, w1, 0n, 0n];
}

/** Decodes a scalable-mode context entry; `reserved` for bits 8:5, 127:85 or 255:128 set. */
export function decodeScalableContextEntry(
  w: readonly bigint[],
): ScalableContextEntry & { readonly reserved: boolean } {
  const w0 = w[0] ?? 0n;
  const w1 = w[1] ?? 0n;
  return {
    present: field(w0, 0, 0) === 1n,
    fpd: field(w0, 1, 1) === 1n,
    dte: field(w0, 2, 2) === 1n,
    paside: field(w0, 3, 3) === 1n,
    pre: field(w0, 4, 4) === 1n,
    pdts: Number(field(w0, 11, 9)),
    pasidDirPtr: Number(field(w0, 63, 12) << 12n),
    ridPasid: Number(field(w1, 19, 0)),
    ridPriv: field(w1, 20, 20) === 1n,
    reserved:
      field(w0, 8, 5) !== 0n || field(w1, 63, 21) !== 0n || (w[2] ?? 0n) !== 0n || (w[3] ?? 0n) !== 0n,
  };
}
