/**
 * SMMUv3 register map and register fields (ARM IHI 0070 chapter 6: 6.2 Table 6-1 for the
 * offsets, 6.3 for the fields), as Linux's arm-smmu-v3.h names them (ARM_SMMU_IDR0...,
 * IDR0_*, CR0_*, GBPA_*, GERROR_*). Constants only; the register file with its side
 * effects is `../registers.ts`.
 */

/** Register offsets (6.2, Table 6-1). EVENTQ_PROD/CONS live in page 1 (+0x10000). */
export const REG_OFFSETS: Readonly<Record<string, number>> = {
  IDR0: 0x00,
  IDR1: 0x04,
  IDR2: 0x08,
  IDR3: 0x0c,
  IDR4: 0x10,
  IDR5: 0x14,
  IIDR: 0x18,
  AIDR: 0x1c,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  STATUSR: 0x40,
  GBPA: 0x44,
  AGBPA: 0x48,
  IRQ_CTRL: 0x50,
  IRQ_CTRLACK: 0x54,
  GERROR: 0x60,
  GERRORN: 0x64,
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0,
  EVENTQ_PROD: 0x100a8,
  EVENTQ_CONS: 0x100ac,
};

/** 64-bit registers. */
export const REG64: ReadonlySet<string> = new Set(["STRTAB_BASE", "CMDQ_BASE", "EVENTQ_BASE"]);

/** SMMU_IDR0 fields (6.3.1). */
export const Idr0 = {
  S2P: 0,
  S1P: 1,
  /** TTF [3:2]: 0b10 = AArch64 tables only. */
  TTF: 2,
  COHACC: 4,
  /** HTTU [7:6]: 0b01 access flag, 0b10 access flag and dirty state. */
  HTTU: 6,
  HYP: 9,
  ATS: 10,
  ASID16: 12,
  PRI: 16,
  VMID16: 18,
  CD2L: 19,
  /** TTENDIAN [22:21]: 0b10 little-endian only. */
  TTENDIAN: 21,
  /** STALL_MODEL [25:24]: 0b00 stall and terminate, 0b01 terminate only, 0b10 stall forced. */
  STALL_MODEL: 24,
  /** ST_LEVEL [28:27]: 0b01 2-level stream tables supported. */
  ST_LEVEL: 27,
} as const;

/** SMMU_IDR1 fields (6.3.2). */
export const Idr1 = { SIDSIZE: 0, SSIDSIZE: 6, PRIQS: 11, EVENTQS: 16, CMDQS: 21 } as const;
/** SMMU_IDR3 fields (6.3.4): HAD [2], RIL [10]. */
export const Idr3 = { HAD: 2, RIL: 10 } as const;
/** SMMU_IDR5 fields (6.3.6): OAS [2:0], GRAN4K [4], GRAN16K [5], GRAN64K [6]. */
export const Idr5 = { OAS: 0, GRAN4K: 4, GRAN16K: 5, GRAN64K: 6 } as const;

/** CR0 bits (6.3.9). */
export const Cr0 = { SMMUEN: 1, PRIQEN: 2, EVTQEN: 4, CMDQEN: 8, ATSCHK: 16 } as const;
/** CR2 bits (6.3.12): E2H [0], RECINVSID [1], PTM [2]. */
export const Cr2 = { E2H: 1, RECINVSID: 2, PTM: 4 } as const;
/** GBPA bits (6.3.14): ABORT [20], UPDATE [31]. */
export const Gbpa = { ABORT: 0x100000, UPDATE: 0x80000000 } as const;
/** GERROR bits (6.3.15): CMDQ_ERR [0], EVTQ_ABT_ERR [2]. */
export const Gerror = { CMDQ_ERR: 1, EVTQ_ABT_ERR: 4 } as const;

/** IPS / S2PS / OAS encodings 0..6 -> bits (6.3.6; 6 = 52 bits). 7 is reserved. */
export const PA_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52];

/** The encoding of an address size in bits (rounded down to a supported one). */
export function paEncoding(bits: number): number {
  let e = 0;
  for (let i = 0; i < PA_BITS.length; i++) if (PA_BITS[i]! <= bits) e = i;
  return e;
}
