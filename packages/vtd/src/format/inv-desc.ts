/**
 * Invalidation descriptors of the invalidation queue: 128-bit, or 256-bit when
 * IQA_REG.DW = 1 (the upper 128 bits are then reserved for every type modelled here).
 * Intel VT-d spec 6.5.2 ("Queued Invalidation Interface") and 6.5.2.1-6.5.2.10;
 * field macros cross-checked with Linux drivers/iommu/intel/iommu.h (QI_*). The type
 * is bits 3:0 plus bits 11:9 as type[6:4]. No paging levels apply.
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
  }
  return [lo, hi];
}

/** Why a descriptor is invalid, or null. */
export type DescriptorError = "type" | "reserved" | null;

/**
 * Decodes a descriptor. Returns the error class instead of throwing: an unknown type,
 * a reserved bit set, or a reserved granularity value (hardware reports all as IQE).
 */
export function decodeDescriptor(words: readonly bigint[]): {
  readonly desc: InvDescriptor | null;
  readonly error: DescriptorError;
} {
  const lo = words[0] ?? 0n;
  const hi = words[1] ?? 0n;
  const code = descTypeCode(lo);
  const rsv = RESERVED[code];
  if (rsv === undefined) return { desc: null, error: "type" };
  if ((lo & rsv[0]) !== 0n || (hi & rsv[1]) !== 0n) return { desc: null, error: "reserved" };
  for (let i = 2; i < words.length; i++) if (words[i] !== 0n) return { desc: null, error: "reserved" };
  const g = Number(field(lo, 5, 4));
  const addr = Number(field(hi, 63, 12) << 12n);
  let desc: InvDescriptor;
  switch (code) {
    case DescType.CONTEXT_CACHE:
      if (g === 0) return { desc: null, error: "reserved" };
      desc = {
        type: "context-cache",
        g,
        did: Number(field(lo, 31, 16)),
        sid: Number(field(lo, 47, 32)),
        fm: Number(field(lo, 49, 48)),
      };
      break;
    case DescType.IOTLB:
      if (g === 0) return { desc: null, error: "reserved" };
      desc = {
        type: "iotlb",
        g,
        dw: field(lo, 6, 6) === 1n,
        dr: field(lo, 7, 7) === 1n,
        did: Number(field(lo, 31, 16)),
        addr,
        ih: field(hi, 6, 6) === 1n,
        am: Number(field(hi, 5, 0)),
      };
      break;
    case DescType.DEV_TLB:
      desc = {
        type: "dev-tlb",
        pfsid: Number(field(lo, 15, 12)) | (Number(field(lo, 63, 52)) << 4),
        qdep: Number(field(lo, 20, 16)),
        sid: Number(field(lo, 47, 32)),
        s: field(hi, 0, 0) === 1n,
        addr,
      };
      break;
    case DescType.IEC:
      desc = {
        type: "iec",
        g: field(lo, 4, 4) === 1n,
        im: Number(field(lo, 31, 27)),
        iidx: Number(field(lo, 47, 32)),
      };
      break;
    case DescType.WAIT:
      desc = {
        type: "wait",
        ifl: field(lo, 4, 4) === 1n,
        sw: field(lo, 5, 5) === 1n,
        fn: field(lo, 6, 6) === 1n,
        pd: field(lo, 7, 7) === 1n,
        statusData: Number(field(lo, 63, 32)),
        statusAddr: Number(field(hi, 63, 2) << 2n),
      };
      break;
    case DescType.PASID_IOTLB:
      if (g < 2) return { desc: null, error: "reserved" };
      desc = {
        type: "pasid-iotlb",
        g,
        did: Number(field(lo, 31, 16)),
        pasid: Number(field(lo, 51, 32)),
        addr,
        ih: field(hi, 6, 6) === 1n,
        am: Number(field(hi, 5, 0)),
      };
      break;
    case DescType.PASID_CACHE:
      if (g === 2) return { desc: null, error: "reserved" };
      desc = {
        type: "pasid-cache",
        g,
        did: Number(field(lo, 31, 16)),
        pasid: Number(field(lo, 51, 32)),
      };
      break;
    default:
      desc = {
        type: "pasid-dev-tlb",
        qdep: Number(field(lo, 8, 4)),
        pfsid: Number(field(lo, 15, 12)) | (Number(field(lo, 63, 52)) << 4),
        sid: Number(field(lo, 31, 16)),
        pasid: Number(field(lo, 51, 32)),
        global: field(hi, 0, 0) === 1n,
        s: field(hi, 11, 11) === 1n,
        addr,
      };
  }
  return { desc, error: null };
}
