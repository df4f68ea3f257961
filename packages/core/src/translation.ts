/**
 * The translate hot path's encoding, decided once for every backend.
 *
 * ```ts
 * const out = createTranslation();               // once, reused for every call
 * if (backend.translate(rid, pasid, iova, Access.WRITE, out)) use(out.pa, out.perm);
 * else report(out.fault);
 * ```
 *
 * - Inputs are plain numbers: `rid` (StreamID / source-id), `pasid` ({@link NO_PASID}
 *   for none), `iova` below 2^53, `access` a set of {@link Access} flags.
 * - The result is written into a caller-owned {@link Translation}: no allocation on
 *   success. `pa` is the physical address of the byte at `iova`; `perm` the {@link Perm}
 *   bits granted (intersected over stages); `sizeLg2` the size of the naturally aligned
 *   region around `iova` that is known to translate contiguously with the same
 *   permissions (the leaf's size, or the smaller stage's in a nested walk), so a DMA
 *   engine can move up to that boundary without asking again.
 * - On a fault `translate` returns false and sets `fault` (faults may allocate).
 * - IOVAs at or above 2^53 go through `translateBig`, which returns a fresh object.
 */

import type { Fault } from "./fault.ts";

/** Reusable result of one translation. */
export interface Translation {
  /** Physical address of the requested byte (valid when the call returned true). */
  pa: number;
  /** Granted {@link Perm} bits. */
  perm: number;
  /** log2 of the contiguous region containing the address (12 for a 4 KiB page). */
  sizeLg2: number;
  /** The fault, when the call returned false; null after a success. */
  fault: Fault | null;
}

/** A fresh, reusable {@link Translation}. */
export function createTranslation(): Translation {
  return { pa: 0, perm: 0, sizeLg2: 0, fault: null };
}

/** The result of a `translateBig` call (allocates; not for the hot path). */
export type TranslationOutcome =
  | { readonly ok: true; readonly pa: number; readonly perm: number; readonly sizeLg2: number }
  | { readonly ok: false; readonly fault: Fault };

/** Snapshot of a {@link Translation} after a call, as an immutable outcome. */
export function outcomeOf(ok: boolean, t: Translation): TranslationOutcome {
  if (ok) return { ok: true, pa: t.pa, perm: t.perm, sizeLg2: t.sizeLg2 };
  if (t.fault === null) throw new Error("translate returned false without a fault");
  return { ok: false, fault: t.fault };
}
