/**
 * Event queue records: 32 bytes, ARM IHI 0070 section 7.3, positions cross-checked with
 * Linux arm-smmu-v3.h (EVTQ_0_ID [7:0], SSV [11], SSID [31:12], SID [63:32]; EVTQ_1_STAG
 * [15:0], STALL [31], PnU [33], InD [34], RnW [35], S2 [39], CLASS [41:40]; EVTQ_2_ADDR
 * [63:0]; EVTQ_3_IPA [51:12] or FetchAddr [51:3]). No lookup levels.
 */

/** Event IDs (7.3, Table 7-3). */
export const EventId = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
  F_VMS_FETCH: 0x25,
} as const;

/** Event names by ID. */
export const EVENT_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(EventId).map(([k, v]) => [v, k]),
);

/** CLASS field (7.3.12): what the SMMU was doing when a stage-2 fault hit. */
export const EventClass = { CD: 0, TT: 1, IN: 2 } as const;

/** Bytes of one event record. */
export const EVENT_BYTES = 32;

/** The fields of an event record. */
export interface EventRecord {
  readonly id: number;
  readonly streamId: number;
  readonly ssv: number;
  readonly substreamId: number;
  readonly stag: number;
  readonly stall: number;
  readonly pnu: number;
  readonly ind: number;
  readonly rnw: number;
  readonly s2: number;
  readonly cls: number;
  /** InputAddr [127:64] of the record (word 2). */
  readonly inputAddr: bigint;
  /** IPA [51:12] (translation-class faults with S2=1) or FetchAddr [51:3] (fetch aborts), word 3. */
  readonly addr: bigint;
}

/** True for the IDs whose word 3 is a FetchAddr [51:3] rather than an IPA [51:12]. */
export function hasFetchAddr(id: number): boolean {
  return id === EventId.F_STE_FETCH || id === EventId.F_CD_FETCH || id === EventId.F_WALK_EABT;
}

/** The four 64-bit words of a record. */
export function encodeEvent(e: Partial<EventRecord> & { id: number }): [bigint, bigint, bigint, bigint] {
  const w0 =
    BigInt(e.id & 0xff) |
    (BigInt(e.ssv ?? 0) << 11n) |
    ((BigInt(e.substreamId ?? 0) & 0xfffffn) << 12n) |
    ((BigInt(e.streamId ?? 0) & 0xffffffffn) << 32n);
  const w1 =
    (BigInt(e.stag ?? 0) & 0xffffn) |
    (BigInt(e.stall ?? 0) << 31n) |
    (BigInt(e.pnu ?? 0) << 33n) |
    (BigInt(e.ind ?? 0) << 34n) |
    (BigInt(e.rnw ?? 0) << 35n) |
    (BigInt(e.s2 ?? 0) << 39n) |
    ((BigInt(e.cls ?? 0) & 3n) << 40n);
  const w2 = BigInt.asUintN(64, e.inputAddr ?? 0n);
  const mask = hasFetchAddr(e.id) ? 0x000f_ffff_ffff_fff8n : 0x000f_ffff_ffff_f000n;
  const w3 = (e.addr ?? 0n) & mask;
  return [w0, w1, w2, w3];
}

/** Decodes a record from its four words. */
export function decodeEvent(w: readonly bigint[]): EventRecord {
  const w0 = w[0] ?? 0n;
  const w1 = w[1] ?? 0n;
  const id = Number(w0 & 0xffn);
  const mask = hasFetchAddr(id) ? 0x000f_ffff_ffff_fff8n : 0x000f_ffff_ffff_f000n;
  return {
    id,
    ssv: Number((w0 >> 11n) & 1n),
    substreamId: Number((w0 >> 12n) & 0xfffffn),
    streamId: Number((w0 >> 32n) & 0xffffffffn),
    stag: Number(w1 & 0xffffn),
    stall: Number((w1 >> 31n) & 1n),
    pnu: Number((w1 >> 33n) & 1n),
    ind: Number((w1 >> 34n) & 1n),
    rnw: Number((w1 >> 35n) & 1n),
    s2: Number((w1 >> 39n) & 1n),
    cls: Number((w1 >> 40n) & 3n),
    inputAddr: w[2] ?? 0n,
    addr: (w[3] ?? 0n) & mask,
  };
}
