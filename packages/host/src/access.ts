/**
 * Emulated accesses, after the access half of iommufd's device.c
 * (iommufd_access_create / _attach / _pin_pages / _unpin_pages / _rw): a mediated
 * device attached with intent `emulated` reads an IOAS through an access object whose
 * domain is the backend's emulated table (no hardware walks it). The access joins the
 * IOAS's domains first, so an unmap reaches it before any HWPT and it may refuse
 * (pins left after the mdev's unmap callback).
 *
 * A device is an {@link AccessHolder} here, so this file does not import device.ts.
 */

import type { AttachIntent, Domain, EmulatedAccess } from "@iommu-kit/core";
import { IommuError, isEmulatedAccess } from "@iommu-kit/core";
import type { DeviceRef, HostCtx, HostObject } from "./context.ts";
import { checkIova, checkLength, checkTransfer, fillDomain, unfillDomain } from "./io-pagetable.ts";
import type { Ioas } from "./ioas.ts";
import { checkedLayout, relayout } from "./ioas.ts";

/** IOMMU access rw through an mdev's emulated access. */
export interface AccessRwOptions {
  readonly iova: number;
  /** Reads: bytes to read. */
  readonly length?: number;
  /** Writes: bytes to write. */
  readonly data?: Uint8Array;
  readonly write: boolean;
}

/** `Host.describe` of an access. */
export interface AccessInfo {
  readonly id: number;
  readonly kind: "access";
  readonly ioas: number;
  readonly device: number;
  /** Pins held. */
  readonly pins: number;
}

/** An emulated access (IOMMUFD_OBJ_ACCESS) of a mediated device to an IOAS. */
export class AccessObject implements HostObject {
  readonly kind = "access" as const;
  readonly id: number;
  readonly ioas: Ioas;
  readonly device: DeviceRef;
  readonly domain: Domain & EmulatedAccess;

  constructor(id: number, ioas: Ioas, device: DeviceRef, domain: Domain & EmulatedAccess) {
    this.id = id;
    this.ioas = ioas;
    this.device = device;
    this.domain = domain;
  }
}

/** A device as the access rules see it: its attach point for an access. */
export interface AccessHolder extends DeviceRef {
  access: AccessObject | null;
}

/**
 * Attaches (or, with `replace`, moves) `dev`'s emulated access to IOAS `pt`
 * (iommufd_access_attach / _replace). EINVAL for a HWPT or a backend without an
 * emulated-access domain, EBUSY / EINVAL for an occupied / empty attach point. The
 * caller checked the intent. A replaced access is dropped after the new one is in.
 */
export function attachEmulated(
  ctx: HostCtx,
  dev: AccessHolder,
  pt: HostObject,
  replace: boolean,
): { readonly hwpt: number } {
  if (pt.kind !== "ioas")
    throw new IommuError("EINVAL", "an emulated access attaches to an IOAS, not a HWPT");
  const ioas = pt as Ioas;
  const old = dev.access;
  if (!replace && old !== null)
    throw new IommuError("EBUSY", `device ${dev.id} has an access`, { device: dev.id });
  if (replace && old === null)
    throw new IommuError("EINVAL", `device ${dev.id} has no access`, { device: dev.id });
  if (old !== null && old.ioas === ioas) return { hwpt: old.id };
  const objects = ctx.objects;
  objects.reserve("access");
  const domain = dev.backend.allocDomain({ type: "paging", rid: dev.rid });
  if (!isEmulatedAccess(domain)) {
    domain.free();
    throw new IommuError("EINVAL", `IOMMU ${dev.iommu} gave no emulated-access domain`, { device: dev.id });
  }
  try {
    checkedLayout(ctx, ioas, [domain], []);
    fillDomain(domain, ioas.iopt.areas);
  } catch (e) {
    domain.free();
    throw e;
  }
  try {
    dev.backend.attach(dev.rid, { kind: "emulated" }, domain);
  } catch (e) {
    unfillDomain(domain, ioas.iopt.areas);
    domain.free();
    throw e;
  }
  const acc = objects.insert(new AccessObject(objects.nextId, ioas, dev, domain));
  ioas.accesses.push(acc);
  dev.access = acc;
  relayout(ctx, ioas);
  if (old !== null) dropAccess(ctx, old);
  return { hwpt: acc.id };
}

/**
 * Detaches `dev`'s access (iommufd_access_detach); harmless without one. The backend
 * runs the mdev's unmap callback first and refuses (EBUSY) if pins remain.
 */
export function detachEmulated(ctx: HostCtx, dev: AccessHolder, intent: AttachIntent): void {
  const acc = dev.access;
  if (acc === null) return;
  dev.backend.detach(dev.rid, intent);
  dev.access = null;
  dropAccess(ctx, acc);
}

/** Frees an access that no device holds any more (iommufd_access_destroy). Never fails. */
function dropAccess(ctx: HostCtx, acc: AccessObject): void {
  acc.domain.free();
  acc.ioas.accesses.splice(acc.ioas.accesses.indexOf(acc), 1);
  ctx.objects.remove(acc.id);
  relayout(ctx, acc.ioas);
}

/** The access of device `device`; ENOENT for an unknown device or one without an access. */
function accessOf(ctx: HostCtx, device: number): AccessObject {
  const dev = ctx.objects.get(device, "device") as AccessHolder;
  if (dev.access === null)
    throw new IommuError("ENOENT", `device ${dev.id} has no emulated access`, { device: dev.id });
  return dev.access;
}

/** iommufd_access_pin_pages: pins [iova, iova + length); returns the physical addresses. */
export function accessPin(
  ctx: HostCtx,
  device: number,
  iova: number,
  length: number,
  write: boolean,
): readonly number[] {
  checkIova(iova);
  checkLength(length);
  return accessOf(ctx, device).domain.pin(iova, length, write);
}

/** iommufd_access_unpin_pages. */
export function accessUnpin(ctx: HostCtx, device: number, iova: number, length: number): void {
  checkIova(iova);
  checkLength(length);
  accessOf(ctx, device).domain.unpin(iova, length);
}

/** iommufd_access_rw: reads `length` bytes (returned) or writes `data` through the IOVA; all or nothing. */
export function accessRw(ctx: HostCtx, device: number, opts: AccessRwOptions): Uint8Array | undefined {
  const acc = accessOf(ctx, device);
  checkIova(opts.iova);
  if (opts.write) {
    if (opts.data === undefined) throw new IommuError("EINVAL", "an access write needs data");
    checkLength(opts.data.length);
    acc.domain.write(opts.iova, opts.data);
    return undefined;
  }
  checkTransfer(opts.length ?? 0);
  return acc.domain.read(opts.iova, opts.length!);
}

/** A domain's caller-buffer read, when it has one (mdev-emulated's `readInto`). */
interface ReadIntoAccess {
  readInto?(iova: number, dst: Uint8Array): void;
}

/**
 * iommufd_access_rw into a caller's buffer: reads `buf.length` bytes at `opts.iova` into
 * `buf`, or writes `buf` there (`opts.write`); all or nothing (on any error `buf` and
 * memory are as before). No allocation on the read path when the access domain copies
 * into a buffer itself (mdev-emulated: whole contiguous runs at a time).
 */
export function accessRwInto(
  ctx: HostCtx,
  device: number,
  opts: Pick<AccessRwOptions, "iova" | "write">,
  buf: Uint8Array,
): void {
  const acc = accessOf(ctx, device);
  checkIova(opts.iova);
  if (!(buf instanceof Uint8Array)) throw new IommuError("EINVAL", "an access needs a Uint8Array buffer");
  checkLength(buf.length);
  const d = acc.domain as Domain & EmulatedAccess & ReadIntoAccess;
  if (opts.write) {
    d.write(opts.iova, buf);
    return;
  }
  if (d.readInto !== undefined) d.readInto(opts.iova, buf);
  else buf.set(d.read(opts.iova, buf.length));
}

/** The plain description of an access. */
export function accessInfo(a: AccessObject): AccessInfo {
  return { id: a.id, kind: a.kind, ioas: a.ioas.id, device: a.device.id, pins: a.domain.pinCount() };
}
