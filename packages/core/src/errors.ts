/**
 * One error class for misuse of the API, with iommufd's errno vocabulary as codes
 * (include/uapi/linux/iommufd.h, "errno convention"). Translation faults are not
 * errors: they are returned values on the hot path (see `translation.ts`).
 */

/** Errno names and their Linux numbers (include/uapi/asm-generic/errno-base.h, errno.h). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  EOVERFLOW: 75,
  EBADFD: 77,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
} as const;

/** An errno name, the `code` of every {@link IommuError}. */
export type ErrnoCode = keyof typeof Errno;

/** Structured context carried by an error: the offending values, by name. */
export type ErrorDetails = Readonly<Record<string, string | number | bigint | boolean | null | undefined>>;

/**
 * The only exception type iommu-kit throws on purpose. `code` says what kind of
 * misuse (iommufd's errno), `details` names the offending values, and the message
 * is one sentence that quotes them. Operations that throw leave state unchanged.
 */
export class IommuError extends Error {
  /** The errno name. */
  readonly code: ErrnoCode;
  /** The Linux errno number for `code`. */
  readonly errno: number;
  /** Offending values by name (iova, length, pasid, id, vendor field...). */
  readonly details: ErrorDetails;

  constructor(code: ErrnoCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = "IommuError";
    this.code = code;
    this.errno = Errno[code];
    this.details = details;
  }
}

/** True when `e` is an {@link IommuError}, optionally of the given code. */
export function isIommuError(e: unknown, code?: ErrnoCode): e is IommuError {
  return e instanceof IommuError && (code === undefined || e.code === code);
}

/** Formats a number as 0x-prefixed hex for messages. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}
