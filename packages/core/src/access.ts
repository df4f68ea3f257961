/**
 * Request flags and granted permissions: small bit sets, so the hot path passes
 * and returns plain integers.
 */

/**
 * Request flags of one DMA transaction. Exactly one of READ / WRITE; EXEC marks an
 * instruction fetch (a read: set READ with it); PRIV a privileged (supervisor)
 * request. SMMUv3 event records carry these as RnW / InD / PnU; VT-d as the
 * request type and the Execute/Privileged-mode bits.
 */
export const Access = {
  READ: 1,
  WRITE: 2,
  EXEC: 4,
  PRIV: 8,
} as const;

/** Permissions a translation grants (intersection over every stage). */
export const Perm = {
  R: 1,
  W: 2,
  X: 4,
} as const;

/** Mapping protection for `Domain.map`: the same bits as {@link Perm}. */
export type Prot = number;

/** Read, write or instruction fetch, as the CLI and scenario files name them. */
export type AccessName = "read" | "write" | "exec";

/** Request flags for an access name, with the privileged bit when `priv`. */
export function accessFlags(name: AccessName, priv = false): number {
  const base = name === "write" ? Access.WRITE : name === "exec" ? Access.READ | Access.EXEC : Access.READ;
  return priv ? base | Access.PRIV : base;
}

/** The access name of request flags. */
export function accessName(flags: number): AccessName {
  if (flags & Access.WRITE) return "write";
  return flags & Access.EXEC ? "exec" : "read";
}

/** The permission bit a request needs: W for writes, X for fetches, R otherwise. */
export function permNeeded(flags: number): number {
  if (flags & Access.WRITE) return Perm.W;
  return flags & Access.EXEC ? Perm.X | Perm.R : Perm.R;
}

/** "r", "w", "x" letters of a permission set, in that order ("" for none). */
export function permString(perm: number): string {
  return (perm & Perm.R ? "r" : "") + (perm & Perm.W ? "w" : "") + (perm & Perm.X ? "x" : "");
}

/** Parses "r", "w", "rw", "rx", "rwx"... into permission bits; throws RangeError on other letters. */
export function parsePerm(s: string): number {
  let p = 0;
  for (const c of s) {
    if (c === "r") p |= Perm.R;
    else if (c === "w") p |= Perm.W;
    else if (c === "x") p |= Perm.X;
    else throw new RangeError(`bad permission letter ${JSON.stringify(c)} in ${JSON.stringify(s)}`);
  }
  return p;
}
