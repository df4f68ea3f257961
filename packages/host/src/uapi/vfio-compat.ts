/**
 * The VFIO type1 container ioctls on an iommufd (drivers/iommu/iommufd/vfio_compat.c,
 * Linux 6.12: iommufd_vfio_ioctl), over the compat IOAS set with IOMMU_VFIO_IOAS.
 * Structs are include/uapi/linux/vfio.h's (little-endian); `argsz` below the
 * version-1 size or unknown flags are EINVAL, no compat IOAS is ENODEV
 * (get_compat_ioas). Ioctls return a value (API version, extension present).
 */

import { type Errno, IommuError } from "@iommu-kit/core";
import type { Host } from "../host.ts";
import type { UapiState, UserMemory } from "./types.ts";

/** `_IO(VFIO_TYPE, VFIO_BASE + n)`. */
const vfio = (n: number): number => (0x3b << 8) | (100 + n);
export const VFIO_GET_API_VERSION: number = vfio(0);
export const VFIO_CHECK_EXTENSION: number = vfio(1);
export const VFIO_SET_IOMMU: number = vfio(2);
export const VFIO_IOMMU_GET_INFO: number = vfio(12);
export const VFIO_IOMMU_MAP_DMA: number = vfio(13);
export const VFIO_IOMMU_UNMAP_DMA: number = vfio(14);
const VFIO_TYPE1_IOMMU = 1;
const VFIO_TYPE1v2_IOMMU = 3;
const VFIO_DMA_CC_IOMMU = 4;
const VFIO_UNMAP_ALL = 9;
const VFIO_DMA_MAP_FLAG_READ = 1;
const VFIO_DMA_MAP_FLAG_WRITE = 2;
const VFIO_DMA_UNMAP_FLAG_ALL = 2;
const VFIO_IOMMU_INFO_PGSIZES = 1;
const VFIO_IOMMU_INFO_CAPS = 2;
const CAP_IOVA_RANGE = 1;
const CAP_DMA_AVAIL = 3;
const PAGE_SIZE = 4096;

/** What a VFIO ioctl sees. */
export interface VfioContext {
  readonly host: Host;
  readonly mem: UserMemory;
  readonly state: UapiState;
}

function ioctlFail(code: keyof typeof Errno, msg: string): never {
  throw new IommuError(code, msg);
}

/** get_compat_ioas: the compat IOAS, ENODEV when none is set (or it was destroyed). */
function compatIoas(c: VfioContext): number {
  const id = c.state.vfioIoas;
  if (id === null || !c.host.objects().some((o) => o.id === id && o.kind === "ioas"))
    ioctlFail("ENODEV", "no compat IOAS");
  return id;
}

/**
 * iommufd_vfio_ioctl: returns the ioctl's value, throws an IommuError, or returns
 * undefined for a number it does not know (ENOTTY).
 */
export function vfioIoctl(c: VfioContext, cmd: number, arg: bigint): number | undefined {
  switch (cmd) {
    case VFIO_GET_API_VERSION:
      return 0; // VFIO_API_VERSION
    case VFIO_CHECK_EXTENSION:
      return checkExtension(c, Number(arg));
    case VFIO_SET_IOMMU: {
      // iommufd_vfio_set_iommu: type1 disables large pages (it may cut mappings), v2 does not.
      const type = Number(arg);
      if (type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) ioctlFail("EINVAL", `iommu type ${type}`);
      const ioas = compatIoas(c);
      if (type === VFIO_TYPE1_IOMMU) {
        c.host.ioasSetLargePages(ioas, false);
        c.state.noHugePages.add(ioas);
      }
      return 0;
    }
    case VFIO_IOMMU_GET_INFO:
      getInfo(c, arg);
      return 0;
    case VFIO_IOMMU_MAP_DMA:
      mapDma(c, arg);
      return 0;
    case VFIO_IOMMU_UNMAP_DMA:
      unmapDma(c, arg);
      return 0;
  }
  return undefined;
}

/** iommufd_vfio_check_extension. */
function checkExtension(c: VfioContext, type: number): number {
  switch (type) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_DMA_CC_IOMMU:
      // iommufd_vfio_cc_iommu: every HWPT enforces coherency (all of ours are coherent).
      compatIoas(c);
      return 1;
  }
  return 0;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** iommufd_vfio_map_dma: a fixed-IOVA map of the compat IOAS. */
function mapDma(c: VfioContext, arg: bigint): void {
  const v = view(c.mem.read(arg, 32));
  const flags = v.getUint32(4, true);
  if (v.getUint32(0, true) < 32 || flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE))
    ioctlFail("EINVAL", "VFIO_IOMMU_MAP_DMA argsz / flags");
  const ioas = compatIoas(c);
  const vaddr = v.getBigUint64(8, true);
  const iova = Number(v.getBigUint64(16, true));
  const size = Number(v.getBigUint64(24, true));
  const prot = `${flags & VFIO_DMA_MAP_FLAG_READ ? "r" : ""}${flags & VFIO_DMA_MAP_FLAG_WRITE ? "w" : ""}`;
  c.host.ioasMap(ioas, { iova, length: size, pa: c.mem.physical(vaddr, size), prot });
}

/**
 * iommufd_vfio_unmap_dma: FLAG_ALL needs iova = size = 0; type1 (large pages off) cuts
 * the areas at the range's ends first (iopt_cut_iova); an empty range is success.
 */
function unmapDma(c: VfioContext, arg: bigint): void {
  const b = c.mem.read(arg, 24);
  const v = view(b);
  const flags = v.getUint32(4, true);
  if (v.getUint32(0, true) < 24 || flags & ~VFIO_DMA_UNMAP_FLAG_ALL)
    ioctlFail("EINVAL", "VFIO_IOMMU_UNMAP_DMA argsz / flags");
  const ioas = compatIoas(c);
  const iova = Number(v.getBigUint64(8, true));
  const size = Number(v.getBigUint64(16, true));
  let unmapped = 0;
  if (flags & VFIO_DMA_UNMAP_FLAG_ALL) {
    if (iova !== 0 || size !== 0) ioctlFail("EINVAL", "UNMAP_FLAG_ALL with a range");
    unmapped = c.host.ioasUnmapAll(ioas);
  } else {
    if (c.state.noHugePages.has(ioas))
      c.host.ioasCutIova(ioas, iova > 0 ? [iova + size - 1, iova - 1] : [iova + size - 1]);
    const info = c.host.describe(ioas);
    const any =
      info.kind === "ioas" && info.areas.some((a) => a.iova < iova + size && iova < a.iova + a.length);
    // iopt_unmap_iova of a range holding nothing unmaps 0 bytes without an error.
    if (any && size > 0) unmapped = c.host.ioasUnmap(ioas, iova, size);
  }
  v.setBigUint64(16, BigInt(unmapped), true);
  c.mem.write(arg, b);
}

/** iommufd_get_pagesizes: the domains' common page sizes, at least PAGE_SIZE and the IOAS alignment. */
function pageSizes(c: VfioContext, ioas: number): bigint {
  const { alignment } = c.host.ioasIovaRanges(ioas);
  let bitmap = (1n << 64n) - 1n;
  const info = c.host.describe(ioas);
  if (info.kind === "ioas") {
    for (const h of info.hwpts) {
      const d = c.host.describe(h);
      if (d.kind !== "hwpt-paging") continue;
      const dev = c.host.objects().find((o) => o.kind === "device" && o.ridAttach?.hwpt === h);
      if (dev !== undefined) bitmap &= c.host.hwInfo(dev.id).caps.pageSizeBitmap;
    }
  }
  const pageMask = ~BigInt(PAGE_SIZE - 1) & ((1n << 64n) - 1n);
  if (bitmap & ~pageMask) bitmap = (bitmap & pageMask) | BigInt(PAGE_SIZE);
  return bitmap > BigInt(alignment) ? bitmap : BigInt(alignment);
}

/** iommufd_vfio_iommu_get_info with the DMA_AVAIL and IOVA_RANGE capabilities. */
function getInfo(c: VfioContext, arg: bigint): void {
  const head = view(c.mem.read(arg, 16));
  const argsz = head.getUint32(0, true);
  if (argsz < 16) ioctlFail("EINVAL", "VFIO_IOMMU_GET_INFO argsz");
  const ioas = compatIoas(c);
  const ranges = c.host.ioasIovaRanges(ioas).ranges;
  // Capabilities in order: dma_avail (12 bytes), iova_range (16 + 16 n), each padded to 8.
  const caps: Uint8Array[] = [];
  const dma = view(new Uint8Array(12));
  dma.setUint16(0, CAP_DMA_AVAIL, true);
  dma.setUint16(2, 1, true);
  dma.setUint32(8, 0xffff_ffff, true);
  caps.push(new Uint8Array(dma.buffer));
  const iov = view(new Uint8Array(16 + 16 * ranges.length));
  iov.setUint16(0, CAP_IOVA_RANGE, true);
  iov.setUint16(2, 1, true);
  iov.setUint32(8, ranges.length, true);
  ranges.forEach((r, i) => {
    iov.setBigUint64(16 + 16 * i, BigInt(r.start), true);
    iov.setBigUint64(
      24 + 16 * i,
      r.last >= Number.MAX_SAFE_INTEGER ? (1n << 64n) - 1n : BigInt(r.last),
      true,
    );
  });
  caps.push(new Uint8Array(iov.buffer));
  let total = 24;
  let lastCap = -1;
  for (const cap of caps) {
    const avail = argsz > total ? argsz - total : 0;
    if (avail >= cap.length) c.mem.write(arg + BigInt(total), cap);
    const size = Math.ceil(cap.length / 8) * 8;
    if (lastCap >= 0 && argsz >= total) {
      const n = view(new Uint8Array(4));
      n.setUint32(0, total, true);
      c.mem.write(arg + BigInt(lastCap + 4), new Uint8Array(n.buffer));
    }
    lastCap = total;
    total += size;
  }
  const info = view(new Uint8Array(24));
  info.setUint32(0, total, true);
  info.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
  info.setBigUint64(8, pageSizes(c, ioas), true);
  info.setUint32(16, argsz >= total ? 24 : 0, true);
  c.mem.write(arg, new Uint8Array(info.buffer).subarray(0, Math.min(argsz, 24)));
}
