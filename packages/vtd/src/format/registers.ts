/**
 * The DMA-remapping register set: offsets, CAP_REG / ECAP_REG fields, GCMD/GSTS,
 * RTADDR, CCMD, IOTLB/IVA, FSTS/FECTL, the invalidation-queue and the page-request-queue registers.
 * Intel VT-d Architecture Specification chapter 11 ("Register Descriptions"); bit
 * positions cross-checked with Linux include/linux/intel-iommu.h /
 * drivers/iommu/intel/iommu.h (cap_* and ecap_* macros). Registers have no levels.
 */

import { field, setField } from "@iommu-kit/core/driver";

/** Register offsets (spec 11.4, Table "Address Mapping for Remapping Hardware Registers"). */
export const Reg = {
  VER: 0x00,
  CAP: 0x08,
  ECAP: 0x10,
  GCMD: 0x18,
  GSTS: 0x1c,
  RTADDR: 0x20,
  CCMD: 0x28,
  FSTS: 0x34,
  FECTL: 0x38,
  FEDATA: 0x3c,
  FEADDR: 0x40,
  FEUADDR: 0x44,
  IQH: 0x80,
  IQT: 0x88,
  IQA: 0x90,
  ICS: 0x9c,
  IECTL: 0xa0,
  IQERCD: 0xb0,
  // Page request queue (spec 11.4.11, ECAP.PRS): PQH 18:5, PQT 18:5, PQA 63:12 + PQS 2:0.
  PQH: 0xc0,
  PQT: 0xc8,
  PQA: 0xd0,
  PRS: 0xdc,
  PECTL: 0xe0,
  PEDATA: 0xe4,
  PEADDR: 0xe8,
  PEUADDR: 0xec,
} as const;

/** Width in bytes of each named register (spec 11.4). */
export const REG_WIDTH: Readonly<Record<string, 4 | 8>> = {
  VER: 4,
  CAP: 8,
  ECAP: 8,
  GCMD: 4,
  GSTS: 4,
  RTADDR: 8,
  CCMD: 8,
  FSTS: 4,
  FECTL: 4,
  FEDATA: 4,
  FEADDR: 4,
  FEUADDR: 4,
  IQH: 8,
  IQT: 8,
  IQA: 8,
  ICS: 4,
  IECTL: 4,
  IQERCD: 8,
  PQH: 8,
  PQT: 8,
  PQA: 8,
  PRS: 4,
  PECTL: 4,
  PEDATA: 4,
  PEADDR: 4,
  PEUADDR: 4,
};

/** GCMD_REG / GSTS_REG bits (spec 11.4.4, 11.4.5): command bit n has status bit n. */
export const Gcmd = {
  /** TE / TES: translation enable. */
  TE: 0x80000000,
  /** SRTP / RTPS: set root table pointer. */
  SRTP: 0x40000000,
  /** SFL / FLS (deprecated). */
  SFL: 0x20000000,
  /** EAFL / AFLS. */
  EAFL: 0x10000000,
  /** WBF / WBFS: write buffer flush. */
  WBF: 0x8000000,
  /** QIE / QIES: queued invalidation enable. */
  QIE: 0x4000000,
  /** IRE / IRES: interrupt remapping enable. */
  IRE: 0x2000000,
  /** SIRTP / IRTPS. */
  SIRTP: 0x1000000,
  /** CFI / CFIS. */
  CFI: 0x800000,
} as const;

/** RTADDR_REG.TTM (bits 11:10, spec 11.4.6): translation table mode. */
export const Ttm = {
  LEGACY: 0,
  SCALABLE: 1,
  RESERVED: 2,
  ABORT_DMA: 3,
} as const;

/** FSTS_REG bits (spec 11.4.9.1). FRI is bits 15:8. */
export const Fsts = {
  PFO: 0x1,
  PPF: 0x2,
  IQE: 0x10,
  ICE: 0x20,
  ITE: 0x40,
} as const;

/** FECTL_REG bits (spec 11.4.9.2). */
export const Fectl = {
  IM: 0x80000000,
  IP: 0x40000000,
} as const;

/** PRS_REG bits (spec 11.4.11, page request status): both write-1-to-clear. */
export const Prs = {
  /** PPR: pending page request (hardware set it when it wrote a descriptor). */
  PPR: 0x1,
  /** PRO: page request overflow (a request found the queue full). */
  PRO: 0x2,
} as const;

/** IQA_REG.DW (bit 11): 256-bit descriptors. QS is bits 2:0 (spec 11.4.9.?, "IQA_REG"). */
export const IQA_DW = 0x800;

/** IQERCD_REG.IQEI values (bits 3:0): why the queue halted (spec 11.4.9.8). */
export const Iqei = {
  NONE: 0,
  TAIL_INVALID: 1,
  FETCH_ERROR: 2,
  INVALID_TYPE: 3,
  RESERVED_FIELD: 4,
  INVALID_WIDTH: 5,
  QUEUE_ADDRESS: 6,
} as const;

/** Decoded CAP_REG (spec 11.4.2). */
export interface CapFields {
  /** ND (2:0): number of domains = 2^(4 + 2*ND). */
  readonly nd: number;
  /** CM (7): caching mode. */
  readonly cm: boolean;
  /** SAGAW (12:8): bit 1 = 3-level 39-bit, bit 2 = 4-level 48-bit, bit 3 = 5-level 57-bit. */
  readonly sagaw: number;
  /** MGAW (21:16) + 1: maximum guest address width in bits. */
  readonly mgaw: number;
  /** FRO (33:24) * 16: offset of the first fault recording register. */
  readonly fro: number;
  /** SLLPS (37:34): bit 0 = 2 MiB, bit 1 = 1 GiB second-stage pages. */
  readonly sllps: number;
  /** PSI (39): page-selective invalidation. */
  readonly psi: boolean;
  /** NFR (47:40) + 1: number of fault recording registers. */
  readonly nfr: number;
  /** MAMV (53:48): maximum address mask value. */
  readonly mamv: number;
  /** FS1GP (56): first-stage 1 GiB pages. */
  readonly fs1gp: boolean;
  /** FS5LP (60): first-stage 5-level paging. */
  readonly fs5lp: boolean;
}

/** Decodes CAP_REG. */
export function decodeCap(cap: bigint): CapFields {
  return {
    nd: Number(field(cap, 2, 0)),
    cm: field(cap, 7, 7) === 1n,
    sagaw: Number(field(cap, 12, 8)),
    mgaw: Number(field(cap, 21, 16)) + 1,
    fro: Number(field(cap, 33, 24)) * 16,
    sllps: Number(field(cap, 37, 34)),
    psi: field(cap, 39, 39) === 1n,
    nfr: Number(field(cap, 47, 40)) + 1,
    mamv: Number(field(cap, 53, 48)),
    fs1gp: field(cap, 56, 56) === 1n,
    fs5lp: field(cap, 60, 60) === 1n,
  };
}

/** Encodes CAP_REG from fields (DWD 54 and DRD 55 always set, ZLR 22 set). */
export function encodeCap(f: CapFields): bigint {
  let v = 0n;
  v = setField(v, 2, 0, f.nd);
  v = setField(v, 7, 7, f.cm ? 1 : 0);
  v = setField(v, 12, 8, f.sagaw);
  v = setField(v, 21, 16, f.mgaw - 1);
  v = setField(v, 22, 22, 1);
  v = setField(v, 33, 24, f.fro / 16);
  v = setField(v, 37, 34, f.sllps);
  v = setField(v, 39, 39, f.psi ? 1 : 0);
  v = setField(v, 47, 40, f.nfr - 1);
  v = setField(v, 53, 48, f.mamv);
  v = setField(v, 55, 54, 3);
  v = setField(v, 56, 56, f.fs1gp ? 1 : 0);
  v = setField(v, 60, 60, f.fs5lp ? 1 : 0);
  return v;
}

/** Decoded ECAP_REG (spec 11.4.3). */
export interface EcapFields {
  /** C (0): page-walk coherency. */
  readonly c: boolean;
  /** QI (1): queued invalidation. */
  readonly qi: boolean;
  /** DT (2): device-TLB. */
  readonly dt: boolean;
  /** PT (6): pass-through. */
  readonly pt: boolean;
  /** SC (7): snoop control. */
  readonly sc: boolean;
  /** IRO (17:8) * 16: offset of IVA_REG (IOTLB_REG follows at +8). */
  readonly iro: number;
  /** NEST (26): nested translation. */
  readonly nest: boolean;
  /** PRS (29): page requests (the page request queue registers; valid with DT). */
  readonly prs: boolean;
  /** ERS (30): execute requests. */
  readonly ers: boolean;
  /** SRS (31): supervisor requests. */
  readonly srs: boolean;
  /** EAFS (34): extended accessed flag. */
  readonly eafs: boolean;
  /** PSS (39:35): PASID size supported = PSS + 1 bits. */
  readonly pss: number;
  /** PASID (40): process address space IDs. */
  readonly pasid: boolean;
  /** SMTS (43): scalable-mode translation. */
  readonly smts: boolean;
  /** SSADS (45): second-stage accessed/dirty. */
  readonly ssads: boolean;
  /** SSTS (46): second-stage translation in scalable mode. */
  readonly ssts: boolean;
  /** FSTS (47): first-stage translation. */
  readonly fsts: boolean;
  /** SMPWCS (48): scalable-mode page-walk coherency. */
  readonly smpwcs: boolean;
  /** RPS (49): RID_PASID support. */
  readonly rps: boolean;
}

/** Decodes ECAP_REG. */
export function decodeEcap(e: bigint): EcapFields {
  const b = (n: number): boolean => field(e, n, n) === 1n;
  return {
    c: b(0),
    qi: b(1),
    dt: b(2),
    pt: b(6),
    sc: b(7),
    iro: Number(field(e, 17, 8)) * 16,
    nest: b(26),
    prs: b(29),
    ers: b(30),
    srs: b(31),
    eafs: b(34),
    pss: Number(field(e, 39, 35)),
    pasid: b(40),
    smts: b(43),
    ssads: b(45),
    ssts: b(46),
    fsts: b(47),
    smpwcs: b(48),
    rps: b(49),
  };
}

/** Encodes ECAP_REG from fields (MHMV 23:20 = 0xF). */
export function encodeEcap(f: EcapFields): bigint {
  const bits: Array<[number, boolean]> = [
    [0, f.c],
    [1, f.qi],
    [2, f.dt],
    [6, f.pt],
    [7, f.sc],
    [26, f.nest],
    [29, f.prs],
    [30, f.ers],
    [31, f.srs],
    [34, f.eafs],
    [40, f.pasid],
    [43, f.smts],
    [45, f.ssads],
    [46, f.ssts],
    [47, f.fsts],
    [48, f.smpwcs],
    [49, f.rps],
  ];
  let v = 0n;
  for (const [n, on] of bits) if (on) v |= 1n << BigInt(n);
  v = setField(v, 17, 8, f.iro / 16);
  v = setField(v, 23, 20, 0xf);
  v = setField(v, 39, 35, f.pss);
  return v;
}

/** VER_REG value: major 6, minor 0 (spec 11.4.1: MAX 7:4, MIN 3:0). */
export const VER_VALUE: bigint = 0x60n;
