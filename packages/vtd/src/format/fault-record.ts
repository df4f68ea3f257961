/**
 * Fault reasons and the 128-bit fault recording register (FRCD_REG). Intel VT-d spec
 * 7.1.3 (Table "Unrecoverable Fault Conditions": legacy reasons 0x1-0xE, scalable-mode
 * 0x30-0x90) and 11.4.11 (FRCD_REG): FI 63:12, SID 79:64, T2 92, PRIV 93, EXE 94,
 * PP 95, FR 103:96, PV 123:104 (20 bits), AT 125:124, T1 126 (1 = read), F 127.
 * Names are Linux's (drivers/iommu/intel/dmar.c dma_remap_fault_reasons and
 * dma_remap_sm_fault_reasons). No paging levels apply.
 */

import type { FaultClass } from "@iommu-kit/core";
import { field, setField } from "@iommu-kit/core/driver";

/** Fault reason codes used by this model (spec 7.1.3). */
export const Fr = {
  // Legacy mode (TTM = 00b).
  ROOT_NOT_PRESENT: 0x1,
  CONTEXT_NOT_PRESENT: 0x2,
  CONTEXT_INVALID: 0x3,
  BEYOND_AGAW: 0x4,
  NO_WRITE: 0x5,
  NO_READ: 0x6,
  PTE_FETCH: 0x7,
  ROOT_FETCH: 0x8,
  CONTEXT_FETCH: 0x9,
  ROOT_RESERVED: 0xa,
  CONTEXT_RESERVED: 0xb,
  PTE_RESERVED: 0xc,
  TT_BLOCKED: 0xd,
  INTERRUPT_RANGE: 0xe,
  // Scalable mode (TTM = 01b).
  SM_RTA_INVALID: 0x30,
  SM_TTM0_PASID: 0x31,
  SM_ROOT_FETCH: 0x38,
  SM_ROOT_NOT_PRESENT: 0x39,
  SM_ROOT_RESERVED: 0x3a,
  SM_CONTEXT_FETCH: 0x40,
  SM_CONTEXT_NOT_PRESENT: 0x41,
  SM_CONTEXT_RESERVED: 0x42,
  SM_CONTEXT_INVALID: 0x43,
  SM_PASIDE_CLEAR: 0x45,
  SM_PASID_TOO_LARGE: 0x46,
  SM_RID_PASID_ERROR: 0x48,
  SM_PASID_DIR_FETCH: 0x50,
  SM_PASID_DIR_NOT_PRESENT: 0x51,
  SM_PASID_DIR_RESERVED: 0x52,
  SM_PASID_FETCH: 0x58,
  SM_PASID_NOT_PRESENT: 0x59,
  SM_PASID_RESERVED: 0x5a,
  SM_PASID_INVALID: 0x5b,
  SM_SRE_CLEAR: 0x5d,
  FS_FETCH: 0x70,
  FS_NOT_PRESENT: 0x71,
  FS_RESERVED: 0x72,
  FS_ROOT_INVALID: 0x73,
  NESTED_FS_BEYOND: 0x74,
  NESTED_FS_ROOT_NO_READ: 0x75,
  NESTED_FS_NO_READ: 0x76,
  NESTED_FS_NO_WRITE: 0x77,
  SS_FETCH: 0x78,
  SS_NOT_PRESENT: 0x79,
  SS_RESERVED: 0x7a,
  SS_ROOT_INVALID: 0x7b,
  SS_AD_NO_SNOOP: 0x7c,
  FS_NON_CANONICAL: 0x80,
  FS_USER_NOT_ALLOWED: 0x81,
  NO_EXECUTE: 0x82,
  SM_BEYOND_AGAW: 0x83,
  SS_OUTPUT_BEYOND: 0x84,
  SM_NO_WRITE: 0x85,
  SM_NO_READ: 0x86,
  SM_INTERRUPT_RANGE: 0x87,
  FS_AD_NO_SNOOP: 0x90,
} as const;

const LEGACY_NAMES = [
  "Software",
  "Present bit in root entry is clear",
  "Present bit in context entry is clear",
  "Invalid context entry",
  "Access beyond MGAW",
  "PTE Write access is not set",
  "PTE Read access is not set",
  "Next page table ptr is invalid",
  "Root table address invalid",
  "Context table ptr is invalid",
  "non-zero reserved fields in RTP",
  "non-zero reserved fields in CTP",
  "non-zero reserved fields in PTE",
  "PCE for translation request specifies blocking",
  "Translated address in the interrupt address range",
];

const SM_NAMES: Readonly<Record<number, string>> = {
  48: "SM: Invalid Root Table Address",
  49: "SM: TTM 0 for request with PASID",
  50: "SM: TTM 0 for page group request",
  56: "SM: Error attempting to access Root Entry",
  57: "SM: Present bit in Root Entry is clear",
  58: "SM: Non-zero reserved field set in Root Entry",
  64: "SM: Error attempting to access Context Entry",
  65: "SM: Present bit in Context Entry is clear",
  66: "SM: Non-zero reserved field set in the Context Entry",
  67: "SM: Invalid Context Entry",
  68: "SM: DTE field in Context Entry is clear",
  69: "SM: PASID Enable field in Context Entry is clear",
  70: "SM: PASID is larger than the max in Context Entry",
  71: "SM: PRE field in Context-Entry is clear",
  72: "SM: RID_PASID field error in Context-Entry",
  80: "SM: Error attempting to access the PASID Directory Entry",
  81: "SM: Present bit in Directory Entry is clear",
  82: "SM: Non-zero reserved field set in PASID Directory Entry",
  88: "SM: Error attempting to access PASID Table Entry",
  89: "SM: Present bit in PASID Table Entry is clear",
  90: "SM: Non-zero reserved field set in PASID Table Entry",
  91: "SM: Invalid Scalable-Mode PASID Table Entry",
  92: "SM: ERE field is clear in PASID Table Entry",
  93: "SM: SRE field is clear in PASID Table Entry",
  112: "SM: Error attempting to access first-level paging entry",
  113: "SM: Present bit in first-level paging entry is clear",
  114: "SM: Non-zero reserved field set in first-level paging entry",
  115: "SM: Error attempting to access FL-PML4 entry",
  116: "SM: First-level entry address beyond MGAW in Nested translation",
  117: "SM: Read permission error in FL-PML4 entry in Nested translation",
  118: "SM: Read permission error in first-level paging entry in Nested translation",
  119: "SM: Write permission error in first-level paging entry in Nested translation",
  120: "SM: Error attempting to access second-level paging entry",
  121: "SM: Read/Write permission error in second-level paging entry",
  122: "SM: Non-zero reserved field set in second-level paging entry",
  123: "SM: Invalid second-level page table pointer",
  124: "SM: A/D bit update needed in second-level entry when set up in no snoop",
  128: "SM: Address in first-level translation is not canonical",
  129: "SM: U/S set 0 for first-level translation with user privilege",
  130: "SM: No execute permission for request with PASID and ER=1",
  131: "SM: Address beyond the DMA hardware max",
  132: "SM: Second-level entry address beyond the max",
  133: "SM: No write permission for Write/AtomicOp request",
  134: "SM: No read permission for Read/AtomicOp request",
  135: "SM: Invalid address-interrupt address",
  144: "SM: A/D bit update needed in first-level entry when set up in no snoop",
};

/** Linux's text for a fault reason ("Unknown" when it has none). */
export function faultReasonName(fr: number): string {
  if (fr < 0x30) return LEGACY_NAMES[fr] ?? "Unknown";
  return SM_NAMES[fr] ?? "Unknown";
}

/** The generic fault class of a fault reason (DESIGN.md classes). */
export function faultReasonClass(fr: number): FaultClass {
  switch (fr) {
    case Fr.ROOT_NOT_PRESENT:
    case Fr.CONTEXT_NOT_PRESENT:
    case Fr.TT_BLOCKED:
    case Fr.SM_TTM0_PASID:
    case Fr.SM_ROOT_NOT_PRESENT:
    case Fr.SM_CONTEXT_NOT_PRESENT:
    case Fr.SM_PASIDE_CLEAR:
    case Fr.SM_PASID_DIR_NOT_PRESENT:
    case Fr.SM_PASID_NOT_PRESENT:
    case Fr.SM_SRE_CLEAR:
      return "blocked";
    case Fr.PTE_FETCH:
    case Fr.ROOT_FETCH:
    case Fr.CONTEXT_FETCH:
    case Fr.SM_ROOT_FETCH:
    case Fr.SM_CONTEXT_FETCH:
    case Fr.SM_PASID_DIR_FETCH:
    case Fr.SM_PASID_FETCH:
    case Fr.FS_FETCH:
    case Fr.SS_FETCH:
      return "walk-abort";
    case Fr.NO_WRITE:
    case Fr.NO_READ:
    case Fr.FS_USER_NOT_ALLOWED:
    case Fr.NO_EXECUTE:
    case Fr.SM_NO_WRITE:
    case Fr.SM_NO_READ:
    case Fr.NESTED_FS_ROOT_NO_READ:
    case Fr.NESTED_FS_NO_READ:
    case Fr.NESTED_FS_NO_WRITE:
    case Fr.INTERRUPT_RANGE:
    case Fr.SM_INTERRUPT_RANGE:
      return "permission";
    case Fr.BEYOND_AGAW:
    case Fr.SM_BEYOND_AGAW:
    case Fr.FS_NOT_PRESENT:
    case Fr.SS_NOT_PRESENT:
    case Fr.FS_NON_CANONICAL:
      return "translation";
    case Fr.NESTED_FS_BEYOND:
    case Fr.SS_OUTPUT_BEYOND:
      return "address-size";
    case Fr.FS_AD_NO_SNOOP:
    case Fr.SS_AD_NO_SNOOP:
      return "access-flag";
    default:
      return "bad-config";
  }
}

/** A primary fault record (FRCD_REG). */
export interface FaultRecord {
  /** FI: page address of the faulted request (bits 63:12). */
  readonly fi: number;
  readonly sid: number;
  /** T2 (bit 92): 0 for DMA read/write requests. */
  readonly t2: boolean;
  readonly priv: boolean;
  readonly exe: boolean;
  /** PP: a PASID was present. */
  readonly pp: boolean;
  readonly fr: number;
  /** PV: the PASID value (20 bits). */
  readonly pv: number;
  /** AT: address type (0 = untranslated). */
  readonly at: number;
  /** T1 (bit 126): 1 = read request, 0 = write request (with T2 = 0). */
  readonly t1: boolean;
  /** F: fault pending. */
  readonly f: boolean;
}

/** Encodes a fault record as two qwords. */
export function encodeFaultRecord(r: FaultRecord): [bigint, bigint] {
  const lo = setField(0n, 63, 12, BigInt(r.fi) >> 12n);
  let hi = setField(0n, 15, 0, r.sid);
  hi = setField(hi, 28, 28, r.t2 ? 1 : 0);
  hi = setField(hi, 29, 29, r.priv ? 1 : 0);
  hi = setField(hi, 30, 30, r.exe ? 1 : 0);
  hi = setField(hi, 31, 31, r.pp ? 1 : 0);
  hi = setField(hi, 39, 32, r.fr);
  hi = setField(hi, 59, 40, r.pv);
  hi = setField(hi, 61, 60, r.at);
  hi = setField(hi, 62, 62, r.t1 ? 1 : 0);
  hi = setField(hi, 63, 63, r.f ? 1 : 0);
  return [lo, hi];
}

/** Decodes a fault record from two qwords. */
export function decodeFaultRecord(w: readonly bigint[]): FaultRecord {
  const lo = w[0] ?? 0n;
  const hi = w[1] ?? 0n;
  return {
    fi: Number(field(lo, 63, 12) << 12n),
    sid: Number(field(hi, 15, 0)),
    t2: field(hi, 28, 28) === 1n,
    priv: field(hi, 29, 29) === 1n,
    exe: field(hi, 30, 30) === 1n,
    pp: field(hi, 31, 31) === 1n,
    fr: Number(field(hi, 39, 32)),
    pv: Number(field(hi, 59, 40)),
    at: Number(field(hi, 61, 60)),
    t1: field(hi, 62, 62) === 1n,
    f: field(hi, 63, 63) === 1n,
  };
}
