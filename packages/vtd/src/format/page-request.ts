/**
 * The page request descriptor: the 256-bit record VT-d hardware writes into the page
 * request queue for each page request it receives (Intel VT-d spec rev 4.x 7.5.1,
 * "Page Request Descriptor"; 7.4.1.1 in rev 3.x, as QEMU's vtd_pri_request_page cites
 * it). Field positions cross-checked with Linux drivers/iommu/intel/prq.c
 * `struct page_req_dsc` and QEMU hw/i386/intel_iommu_internal.h VTD_PRD_*:
 *
 *   qw0: Type 7:0 (= 01h), PP 8 (PASID present), RID 31:16, PASID 51:32,
 *        ERR 52 (execute requested), PMR 53 (privileged mode requested);
 *        15:9 and 63:54 reserved (bit 9 was PDP, private data present, until rev 4).
 *   qw1: RDR 0 (read requested), WRR 1 (write requested), LPIG 2 (last page in
 *        group), PRGI 11:3 (page request group index), ADDR 63:12.
 *   qw2, qw3: private data until rev 4; reserved (written as zero) here.
 *
 * The answer to a page group (the page group response descriptor, type 9h of the
 * invalidation queue) is in inv-desc.ts; its response codes are here. Not a paging
 * structure: no level numbers apply.
 */

import { field, setField } from "@iommu-kit/core/driver";

/** Bytes of one page request descriptor (256 bits). */
export const PAGE_REQUEST_BYTES = 32;

/** The Type field (qw0 7:0) of a page request descriptor. */
export const PAGE_REQUEST_TYPE = 1;

/**
 * Page group response codes (spec 6.5.2 page group response descriptor, PCIe PRG
 * Response Message; Linux iommu.h QI_RESP_*): Success makes the device retry its
 * translation, Invalid Request tells it the page cannot be made available, Response
 * Failure stops its page request interface.
 */
export const PgrpResponse = {
  SUCCESS: 0x0,
  INVALID: 0x1,
  FAILURE: 0xf,
} as const;

/** A decoded (or to-be-encoded) page request descriptor. */
export interface PageRequestDescriptor {
  /** PP: the request carried a PASID. */
  readonly pp: boolean;
  /** Requester ID (source-id, bus << 8 | devfn). */
  readonly rid: number;
  /** PASID (20 bits; meaningful with PP). */
  readonly pasid: number;
  /** ERR: execute requested (only with a PASID). */
  readonly exe: boolean;
  /** PMR: privileged mode requested (only with a PASID). */
  readonly pmr: boolean;
  /** RDR: read access requested. */
  readonly rdr: boolean;
  /** WRR: write access requested. */
  readonly wrr: boolean;
  /** LPIG: last page request of its group. */
  readonly lpig: boolean;
  /** PRGI: page request group index (9 bits). */
  readonly prgi: number;
  /** The page address (bits 63:12; below 2^53 here). */
  readonly addr: number;
}

const TWO32 = 4294967296;

/**
 * Encodes a descriptor as eight 32-bit halves into `out[at..at + 7]` (qw0 bits 31:0,
 * 63:32, qw1 31:0, 63:32, then qw2 and qw3, zero): the bytes hardware writes.
 */
export function encodePageRequestHalves(d: PageRequestDescriptor, out: Uint32Array, at = 0): void {
  out[at] = (PAGE_REQUEST_TYPE | (d.pp ? 0x100 : 0) | ((d.rid & 0xffff) << 16)) >>> 0;
  out[at + 1] = ((d.pasid & 0xfffff) | (d.exe ? 1 << 20 : 0) | (d.pmr ? 1 << 21 : 0)) >>> 0;
  const flags = (d.rdr ? 1 : 0) | (d.wrr ? 2 : 0) | (d.lpig ? 4 : 0) | ((d.prgi & 0x1ff) << 3);
  out[at + 2] = (flags | ((d.addr % TWO32) & 0xfffff000)) >>> 0;
  out[at + 3] = Math.floor(d.addr / TWO32) >>> 0;
  for (let i = 4; i < 8; i++) out[at + i] = 0;
}

/** Encodes a descriptor as four 64-bit words (the slow path of tests and dumps). */
export function encodePageRequest(d: PageRequestDescriptor): [bigint, bigint, bigint, bigint] {
  let qw0 = setField(0n, 7, 0, PAGE_REQUEST_TYPE);
  qw0 = setField(qw0, 8, 8, d.pp ? 1 : 0);
  qw0 = setField(qw0, 31, 16, d.rid);
  qw0 = setField(qw0, 51, 32, d.pasid);
  qw0 = setField(qw0, 52, 52, d.exe ? 1 : 0);
  qw0 = setField(qw0, 53, 53, d.pmr ? 1 : 0);
  let qw1 = setField(0n, 0, 0, d.rdr ? 1 : 0);
  qw1 = setField(qw1, 1, 1, d.wrr ? 1 : 0);
  qw1 = setField(qw1, 2, 2, d.lpig ? 1 : 0);
  qw1 = setField(qw1, 11, 3, d.prgi);
  qw1 = setField(qw1, 63, 12, BigInt(d.addr) >> 12n);
  return [qw0, qw1, 0n, 0n];
}

/**
 * Decodes a descriptor from its 64-bit words (two or four). `type` is qw0 7:0 (01h for
 * a page request); `reserved` is true when a reserved bit is set (qw0 15:9, 63:54, or
 * any bit of qw2 / qw3).
 */
export function decodePageRequest(
  w: readonly bigint[],
): PageRequestDescriptor & { readonly type: number; readonly reserved: boolean } {
  const qw0 = BigInt.asUintN(64, w[0] ?? 0n);
  const qw1 = BigInt.asUintN(64, w[1] ?? 0n);
  return {
    type: Number(field(qw0, 7, 0)),
    pp: field(qw0, 8, 8) === 1n,
    rid: Number(field(qw0, 31, 16)),
    pasid: Number(field(qw0, 51, 32)),
    exe: field(qw0, 52, 52) === 1n,
    pmr: field(qw0, 53, 53) === 1n,
    rdr: field(qw1, 0, 0) === 1n,
    wrr: field(qw1, 1, 1) === 1n,
    lpig: field(qw1, 2, 2) === 1n,
    prgi: Number(field(qw1, 11, 3)),
    addr: Number(field(qw1, 63, 12) << 12n),
    reserved:
      field(qw0, 15, 9) !== 0n ||
      field(qw0, 63, 54) !== 0n ||
      BigInt.asUintN(64, w[2] ?? 0n) !== 0n ||
      BigInt.asUintN(64, w[3] ?? 0n) !== 0n,
  };
}
