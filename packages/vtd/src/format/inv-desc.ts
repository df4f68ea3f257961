/**
 * Invalidation descriptors of the invalidation queue: 128-bit, or 256-bit when
 * IQA_REG.DW = 1 (the upper 128 bits are then reserved for every type modelled here).
 * Intel VT-d spec 6.5.2 ("Queued Invalidation Interface") and 6.5.2.1-6.5.2.10;
 * field macros cross-checked with Linux drivers/iommu/intel/iommu.h (QI_*). The type
 * is bits 3:0 plus bits 11:9 as type[6:4]. No paging levels apply.
 *
 * The page group response descriptor (type 9h, spec 6.5.2 "Page Group Response
 * Descriptor", rev 4.x) answers a page request group (format/page-request.ts): qw0 PP 4,
 * Response Code 15:12, Requester-ID 31:16, PASID 51:32; qw1 PRGI 11:3. Reserved: qw0
 * 8:5 (bit 5 was PDP until rev 4) and 63:52, qw1 1:0 and 63:12 (QEMU
 * VTD_INV_DESC_PGRESP_RSVD_LO/HI, 0xfff00000000001e0 / 0xfffffffffffff003). qw1 bit 2
 * was LPIG; it is Reserved since rev 4.0 but existing hardware ignores it (Linux
 * "iommu/vt-d: Remove LPIG from page group response descriptor", 2025), so it is not
 * checked; the upper 128 bits (private data until rev 4) are reserved here.
 */

import { field, setField } from "@iommu-kit/core/driver";

/** Descriptor type codes (spec 6.5.2). */
export const DescType = {
  CONTEXT_CACHE: 1,
  IOTLB: 2,
  DEV_TLB: 3,
  IEC: 4,
  WAIT: 5,
  PASID_IOTLB: 6,
  PASID_CACHE: 7,
  PASID_DEV_TLB: 8,
  PAGE_GROUP_RESPONSE: 9,
} as const;

/** A decoded (or to-be-encoded) descriptor. Numbers are the spec's field values. */
export type InvDescriptor =
  /** G: 1 global, 2 domain-selective, 3 device-selective (FM masks SID function bits). */
  | {
      readonly type: "context-cache";
      readonly g: number;
      readonly did: number;
      readonly sid: number;
      readonly fm: number;
    }
  /** G: 1 global, 2 domain-selective, 3 page-selective-within-domain (ADDR, AM, IH). */
  | {
      readonly type: "iotlb";
      readonly g: number;
      readonly dr: boolean;
      readonly dw: boolean;
      readonly did: number;
      readonly addr: number;
      readonly ih: boolean;
      readonly am: number;
    }
  | {
      readonly type: "dev-tlb";
      readonly sid: number;
      readonly pfsid: number;
      readonly qdep: number;
      readonly s: boolean;
      readonly addr: number;
    }
  | { readonly type: "iec"; readonly g: boolean; readonly im: number; readonly iidx: number }
  | {
      readonly type: "wait";
      /** IF: interrupt on completion. */
      readonly ifl: boolean;
      /** SW: write statusData to statusAddr. */
      readonly sw: boolean;
      readonly fn: boolean;
      readonly pd: boolean;
      readonly statusData: number;
      readonly statusAddr: number;
    }
  /** G: 2 all non-global mappings of DID+PASID, 3 page-selective within PASID. */
  | {
      readonly type: "pasid-iotlb";
      readonly g: number;
      readonly did: number;
      readonly pasid: number;
      readonly addr: number;
      readonly ih: boolean;
      readonly am: number;
    }
  /** G: 0 domain-selective (all PASIDs of DID), 1 PASID-selective, 3 global. */
  | { readonly type: "pasid-cache"; readonly g: number; readonly did: number; readonly pasid: number }
  | {
      readonly type: "pasid-dev-tlb";
      readonly sid: number;
      readonly pasid: number;
      readonly pfsid: number;
      readonly qdep: number;
      readonly global: boolean;
      readonly s: boolean;
      readonly addr: number;
    }
  /** Answers page request group `prgi` of device `rid` with response code `rc` (format/page-request.ts PgrpResponse). */
  | {
      readonly type: "page-group-response";
      /** PP: the response carries `pasid` (the request had one). */
      readonly pp: boolean;
      readonly rc: number;
      readonly rid: number;
      readonly pasid: number;
      readonly prgi: number;
    };

const TYPE_CODE: Readonly<Record<InvDescriptor["type"], number>> = {
  "context-cache": DescType.CONTEXT_CACHE,
  iotlb: DescType.IOTLB,
  "dev-tlb": DescType.DEV_TLB,
  iec: DescType.IEC,
  wait: DescType.WAIT,
  "pasid-iotlb": DescType.PASID_IOTLB,
  "pasid-cache": DescType.PASID_CACHE,
  "pasid-dev-tlb": DescType.PASID_DEV_TLB,
  "page-group-response": DescType.PAGE_GROUP_RESPONSE,
};

/** Reserved-bit masks of (low qword, high qword) per type code. */
const RESERVED: Readonly<Record<number, readonly [bigint, bigint]>> = {
  [DescType.CONTEXT_CACHE]: [mask(8, 6) | mask(15, 12) | mask(63, 50), mask(63, 0)],
  [DescType.IOTLB]: [mask(8, 8) | mask(15, 12) | mask(63, 32), mask(11, 7)],
  [DescType.DEV_TLB]: [mask(8, 4) | mask(31, 21) | mask(51, 48), mask(11, 1)],
  [DescType.IEC]: [mask(8, 5) | mask(26, 12) | mask(63, 48), mask(63, 0)],
  [DescType.WAIT]: [mask(8, 8) | mask(31, 12), mask(1, 0)],
  [DescType.PASID_IOTLB]: [mask(8, 6) | mask(15, 12) | mask(63, 52), mask(11, 7)],
  [DescType.PASID_CACHE]: [mask(8, 6) | mask(15, 12) | mask(63, 52), mask(63, 0)],
  [DescType.PASID_DEV_TLB]: [0n, mask(10, 1)],
  [DescType.PAGE_GROUP_RESPONSE]: [mask(8, 5) | mask(63, 52), mask(1, 0) | mask(63, 12)],
};

function mask(msb: number, lsb: number): bigint {
  return ((1n << BigInt(msb - lsb + 1)) - 1n) << BigInt(lsb);
}

/** The type code of a descriptor's low qword (bits 3:0 | bits 11:9 << 4). */
export function descTypeCode(lo: bigint): number {
  return Number(field(lo, 3, 0)) | (Number(field(lo, 11, 9)) << 4);
}

/** Encodes a descriptor as two qwords (append two zero qwords for a 256-bit queue). */
export function encodeDescriptor(d: InvDescriptor): [bigint, bigint] {
  const code = TYPE_CODE[d.type];
  let lo = setField(0n, 3, 0, code & 0xf);
  lo = setField(lo, 11, 9, code >> 4);
  let hi = 0n;
  switch (d.type) {
    case "context-cache":
      lo = setField(lo, 5, 4, d.g);
      lo = setField(lo, 31, 16, d.did);
      lo = setField(lo, 47, 32, d.sid);
      lo = setField(lo, 49, 48, d.fm);
      break;
    case "iotlb":
      lo = setField(lo, 5, 4, d.g);
      lo = setField(lo, 6, 6, d.dw ? 1 : 0);
      lo = setField(lo, 7, 7, d.dr ? 1 : 0);
      lo = setField(lo, 31, 16, d.did);
      hi = setField(0n, 5, 0, d.am);
      hi = setField(hi, 6, 6, d.ih ? 1 : 0);
      hi = setField(hi, 63, 12, BigInt(d.addr) >> 12n);
      break;
    case "dev-tlb":
      lo = setField(lo, 15, 12, d.pfsid & 0xf);
      lo = setField(lo, 20, 16, d.qdep);
      lo = setField(lo, 47, 32, d.sid);
      lo = setField(lo, 63, 52, d.pfsid >> 4);
      hi = setField(0n, 0, 0, d.s ? 1 : 0);
      hi = setField(hi, 63, 12, BigInt(d.addr) >> 12n);
      break;
    case "iec":
      lo = setField(lo, 4, 4, d.g ? 1 : 0);
      lo = setField(lo, 31, 27, d.im);
      lo = setField(lo, 47, 32, d.iidx);
      break;
    case "wait":
      lo = setField(lo, 4, 4, d.ifl ? 1 : 0);
      lo = setField(lo, 5, 5, d.sw ? 1 : 0);
      lo = setField(lo, 6, 6, d.fn ? 1 : 0);
      lo = setField(lo, 7, 7, d.pd ? 1 : 0);
      lo = setField(lo, 63, 32, d.statusData);
      hi = setField(0n, 63, 2, BigInt(d.statusAddr) >> 2n);
      break;
    case "pasid-iotlb":
      lo = setField(lo, 5, 4, d.g);
      lo = setField(lo, 31, 16, d.did);
      lo = setField(lo, 51, 32, d.pasid);
      hi = setField(0n, 5, 0, d.am);
      hi = setField(hi, 6, 6, d.ih ? 1 : 0);
      hi = setField(hi, 63, 12, BigInt(d.addr) >> 12n);
      break;
    case "pasid-cache":
      lo = setField(lo, 5, 4, d.g);
      lo = setField(lo, 31, 16, d.did);
      lo = setField(lo, 51, 32, d.pasid);
      break;
    case "pasid-dev-tlb":
      lo = setField(lo, 8, 4, d.qdep);
      lo = setField(lo, 15, 12, d.pfsid & 0xf);
      lo = setField(lo, 31, 16, d.sid);
      lo = setField(lo, 51, 32, d.pasid);
      lo = setField(lo, 63, 52, d.pfsid >> 4);
      hi = setField(0n, 0, 0, d.global ? 1 : 0);
      hi = setField(hi, 11, 11, d.s ? 1 : 0);
      hi = setField(hi, 63, 12, BigInt(d.addr) >> 12n);
      break;
    case "page-group-response":
      lo = setField(lo, 4, 4, d.pp ? 1 : 0);
      lo = setField(lo, 15, 12, d.rc);
      lo = setField(lo, 31, 16, d.rid);
      lo = setField(lo, 51, 32, d.pasid);
      hi = setField(0n, 11, 3, d.prgi);
      break;
  }
  return [lo, hi];
}

/**
 * Encodes a descriptor as four 32-bit halves into `out[at..at + 3]`: (low qword bits
 * 31:0, 63:32, high qword bits 31:0, 63:32). The same bytes as encodeDescriptor, without
 * BigInt (the driver half's submission path). Addresses must be below 2^53.
 */
export function encodeDescriptorHalves(d: InvDescriptor, out: Uint32Array | number[], at = 0): void {
  const code = TYPE_CODE[d.type];
  let w0 = (code & 0xf) | ((code >> 4) << 9);
  let w1 = 0;
  let w2 = 0;
  let w3 = 0;
  let addr = 0;
  let hasAddr = false;
  switch (d.type) {
    case "context-cache":
      w0 |= ((d.g & 0x3) << 4) | ((d.did & 0xffff) << 16);
      w1 = (d.sid & 0xffff) | ((d.fm & 0x3) << 16);
      break;
    case "iotlb":
      w0 |= ((d.g & 0x3) << 4) | (d.dw ? 0x40 : 0) | (d.dr ? 0x80 : 0) | ((d.did & 0xffff) << 16);
      w2 = (d.am & 0x3f) | (d.ih ? 0x40 : 0);
      addr = d.addr;
      hasAddr = true;
      break;
    case "dev-tlb":
      w0 |= ((d.pfsid & 0xf) << 12) | ((d.qdep & 0x1f) << 16);
      w1 = (d.sid & 0xffff) | (((d.pfsid >> 4) & 0xfff) << 20);
      w2 = d.s ? 1 : 0;
      addr = d.addr;
      hasAddr = true;
      break;
    case "iec":
      w0 |= (d.g ? 0x10 : 0) | ((d.im & 0x1f) << 27);
      w1 = d.iidx & 0xffff;
      break;
    case "wait":
      w0 |= (d.ifl ? 0x10 : 0) | (d.sw ? 0x20 : 0) | (d.fn ? 0x40 : 0) | (d.pd ? 0x80 : 0);
      w1 = d.statusData;
      w2 = (d.statusAddr % 4294967296) & ~0x3;
      w3 = Math.floor(d.statusAddr / 4294967296);
      break;
    case "pasid-iotlb":
      w0 |= ((d.g & 0x3) << 4) | ((d.did & 0xffff) << 16);
      w1 = d.pasid & 0xfffff;
      w2 = (d.am & 0x3f) | (d.ih ? 0x40 : 0);
      addr = d.addr;
      hasAddr = true;
      break;
    case "pasid-cache":
      w0 |= ((d.g & 0x3) << 4) | ((d.did & 0xffff) << 16);
      w1 = d.pasid & 0xfffff;
      break;
    case "pasid-dev-tlb":
      w0 |= ((d.qdep & 0x1f) << 4) | ((d.pfsid & 0xf) << 12) | ((d.sid & 0xffff) << 16);
      w1 = (d.pasid & 0xfffff) | (((d.pfsid >> 4) & 0xfff) << 20);
      w2 = (d.global ? 1 : 0) | (d.s ? 0x800 : 0);
      addr = d.addr;
      hasAddr = true;
      break;
    case "page-group-response":
      w0 |= (d.pp ? 0x10 : 0) | ((d.rc & 0xf) << 12) | ((d.rid & 0xffff) << 16);
      w1 = d.pasid & 0xfffff;
      w2 = (d.prgi & 0x1ff) << 3;
      break;
  }
  if (hasAddr) {
    // ADDR 63:12 of the high qword.
    w2 |= (addr % 4294967296) & 0xfffff000;
    w3 = Math.floor(addr / 4294967296);
  }
  out[at] = w0 >>> 0;
  out[at + 1] = w1 >>> 0;
  out[at + 2] = w2 >>> 0;
  out[at + 3] = w3 >>> 0;
}

/** Why a descriptor is invalid, or null. */
export type DescriptorError = "type" | "reserved" | null;

/** RESERVED as 32-bit halves [lo 31:0, lo 63:32, hi 31:0, hi 63:32] by type code (null: unknown type). */
const RESERVED32: ReadonlyArray<readonly [number, number, number, number] | null> = Array.from(
  { length: 128 },
  (_, code) => {
    const r = RESERVED[code];
    if (r === undefined) return null;
    const half = (v: bigint, shift: bigint): number => Number((v >> shift) & 0xffffffffn);
    return [half(r[0], 0n), half(r[0], 32n), half(r[1], 0n), half(r[1], 32n)] as const;
  },
);

/**
 * Decodes a descriptor. Returns the error class instead of throwing: an unknown type,
 * a reserved bit set, or a reserved granularity value (hardware reports all as IQE).
 */
export function decodeDescriptor(words: readonly bigint[]): {
  readonly desc: InvDescriptor | null;
  readonly error: DescriptorError;
} {
  const lo = BigInt.asUintN(64, words[0] ?? 0n);
  const hi = BigInt.asUintN(64, words[1] ?? 0n);
  const halves = [Number(lo & 0xffffffffn), Number(lo >> 32n), Number(hi & 0xffffffffn), Number(hi >> 32n)];
  const r = decodeDescriptorHalves(halves, 4);
  // Bits above the 128-bit descriptor (a 256-bit queue) are all reserved.
  if (r.error === null) for (let i = 2; i < words.length; i++) if (words[i] !== 0n) return RESERVED_ERROR;
  return r;
}

const RESERVED_ERROR = { desc: null, error: "reserved" } as const;

/**
 * decodeDescriptor on 32-bit halves: `w[0..n)` (n = 4 for a 128-bit descriptor, 8 for
 * 256-bit), each half the little-endian 32 bits (low qword bits 31:0, 63:32, high
 * qword 31:0, 63:32, then the upper 128 bits). No BigInt (the hardware model's queue).
 */
export function decodeDescriptorHalves(
  w: ArrayLike<number>,
  n: number,
): {
  readonly desc: InvDescriptor | null;
  readonly error: DescriptorError;
} {
  const w0 = w[0]!;
  const w1 = w[1]!;
  const w2 = w[2]!;
  const w3 = w[3]!;
  const code = (w0 & 0xf) | (((w0 >>> 9) & 0x7) << 4);
  const rsv = RESERVED32[code];
  if (rsv === null || rsv === undefined) return { desc: null, error: "type" };
  if ((w0 & rsv[0]) !== 0 || (w1 & rsv[1]) !== 0 || (w2 & rsv[2]) !== 0 || (w3 & rsv[3]) !== 0)
    return { desc: null, error: "reserved" };
  for (let i = 4; i < n; i++) if (w[i] !== 0) return { desc: null, error: "reserved" };
  const g = (w0 >>> 4) & 0x3;
  // ADDR 63:12 of the high qword (below 2^64; exact below 2^53).
  const addr = (w3 >>> 0) * 4294967296 + ((w2 & 0xfffff000) >>> 0);
  let desc: InvDescriptor;
  switch (code) {
    case DescType.CONTEXT_CACHE:
      if (g === 0) return { desc: null, error: "reserved" };
      desc = {
        type: "context-cache",
        g,
        did: w0 >>> 16,
        sid: w1 & 0xffff,
        fm: (w1 >>> 16) & 0x3,
      };
      break;
    case DescType.IOTLB:
      if (g === 0) return { desc: null, error: "reserved" };
      desc = {
        type: "iotlb",
        g,
        dw: (w0 & 0x40) !== 0,
        dr: (w0 & 0x80) !== 0,
        did: w0 >>> 16,
        addr,
        ih: (w2 & 0x40) !== 0,
        am: w2 & 0x3f,
      };
      break;
    case DescType.DEV_TLB:
      desc = {
        type: "dev-tlb",
        pfsid: ((w0 >>> 12) & 0xf) | ((w1 >>> 20) << 4),
        qdep: (w0 >>> 16) & 0x1f,
        sid: w1 & 0xffff,
        s: (w2 & 0x1) !== 0,
        addr,
      };
      break;
    case DescType.IEC:
      desc = {
        type: "iec",
        g: (w0 & 0x10) !== 0,
        im: (w0 >>> 27) & 0x1f,
        iidx: w1 & 0xffff,
      };
      break;
    case DescType.WAIT:
      desc = {
        type: "wait",
        ifl: (w0 & 0x10) !== 0,
        sw: (w0 & 0x20) !== 0,
        fn: (w0 & 0x40) !== 0,
        pd: (w0 & 0x80) !== 0,
        statusData: w1 >>> 0,
        statusAddr: (w3 >>> 0) * 4294967296 + ((w2 & ~0x3) >>> 0),
      };
      break;
    case DescType.PASID_IOTLB:
      if (g < 2) return { desc: null, error: "reserved" };
      desc = {
        type: "pasid-iotlb",
        g,
        did: w0 >>> 16,
        pasid: w1 & 0xfffff,
        addr,
        ih: (w2 & 0x40) !== 0,
        am: w2 & 0x3f,
      };
      break;
    case DescType.PASID_CACHE:
      if (g === 2) return { desc: null, error: "reserved" };
      desc = {
        type: "pasid-cache",
        g,
        did: w0 >>> 16,
        pasid: w1 & 0xfffff,
      };
      break;
    case DescType.PAGE_GROUP_RESPONSE:
      desc = {
        type: "page-group-response",
        pp: (w0 & 0x10) !== 0,
        rc: (w0 >>> 12) & 0xf,
        rid: w0 >>> 16,
        pasid: w1 & 0xfffff,
        prgi: (w2 >>> 3) & 0x1ff,
      };
      break;
    default:
      desc = {
        type: "pasid-dev-tlb",
        qdep: (w0 >>> 4) & 0x1f,
        pfsid: ((w0 >>> 12) & 0xf) | ((w1 >>> 20) << 4),
        sid: w0 >>> 16,
        pasid: w1 & 0xfffff,
        global: (w2 & 0x1) !== 0,
        s: (w2 & 0x800) !== 0,
        addr,
      };
  }
  return { desc, error: null };
}
