/**
 * PASID assignment for the mdevs of one parent device: the lowest PASID >= 1 that no
 * mdev of this backend holds on that parent and that nothing else has attached on the
 * parent. PASID 0 is left alone: on VT-d it is the RID_PASID of scalable mode, and an
 * SMMUv3 SubstreamID 0 is the no-PASID CD when S1DSS says so.
 */

/** Lowest free PASID in [1, limit), or -1. `busy(n)` reports PASIDs taken by others. */
export function lowestFreePasid(
  held: ReadonlySet<number>,
  limit: number,
  busy: (pasid: number) => boolean,
): number {
  for (let n = 1; n < limit; n++) {
    if (!held.has(n) && !busy(n)) return n;
  }
  return -1;
}
