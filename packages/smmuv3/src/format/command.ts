/**
 * Command queue entries: 16 bytes (two 64-bit words), ARM IHI 0070 chapter 4, field
 * positions cross-checked with Linux arm-smmu-v3.h (CMDQ_0_*, CMDQ_CFGI_*, CMDQ_TLBI_*,
 * CMDQ_SYNC_*). Range TLBI (4.4.1, SMMUv3.2 RIL): NUM [16:12], SCALE [24:20] of word 0;
 * LEAF [0], TTL [9:8], TG [11:10] and the address [63:12] of word 1. No lookup levels
 * here except TTL, which names the VMSAv8-64 level (1..3) of the leaf to invalidate.
 */

/** Command opcodes (4.1, Table 4-1). */
export const CmdOp = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  CFGI_VMS_PIDM: 0x07,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  CMD_SYNC: 0x46,
} as const;

/**
 * CMD_RESUME's response, bits [13:12] of word 0 (4.7.1: Action [12], Abort [13]; Linux
 * CMDQ_RESUME_0_RESP_TERM / _RETRY / _ABORT): retry, or terminate with RAZ/WI or abort.
 */
export const ResumeResp = { TERM: 0, RETRY: 1, ABORT: 2 } as const;

/** CMDQ_CONS.ERR codes (4.4 / 6.3.27). */
export const CmdError = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const;

/** Bytes of one command. */
export const CMD_BYTES = 16;

/** Names of the opcodes, for messages and dumps. */
export const CMD_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(CmdOp).map(([k, v]) => [v, k]),
);

/** A decoded command (every field the opcode family uses; the rest are zero). */
export interface Command {
  readonly op: number;
  /** SSEC (bit 10): Secure command on the Non-secure queue is ILL. */
  readonly ssec: number;
  readonly ssv: number;
  /** CFGI_CD SubstreamID, w0[31:12]. */
  readonly ssid: number;
  readonly sid: number;
  readonly vmid: number;
  readonly asid: number;
  /** Range TLBI NUM [16:12] and SCALE [24:20]. */
  readonly num: number;
  readonly scale: number;
  readonly leaf: number;
  readonly ttl: number;
  readonly tg: number;
  /** CFGI_STE_RANGE Range [4:0] of word 1. */
  readonly range: number;
  /** TLBI address [63:12] of word 1 (bigint: the VA range reaches 2^64). */
  readonly addr: bigint;
  /** CMD_SYNC completion signal CS [13:12]. */
  readonly cs: number;
  /** CMD_RESUME response [13:12] ({@link ResumeResp}). */
  readonly resp: number;
  /** CMD_RESUME STAG, word 1 [15:0]. */
  readonly stag: number;
}

/** Builds a command's two words from fields (omitted = 0). */
export function encodeCommand(c: Partial<Command> & { op: number }): [bigint, bigint] {
  const op = BigInt(c.op & 0xff);
  let w0 = op | (BigInt(c.ssec ?? 0) << 10n) | (BigInt(c.ssv ?? 0) << 11n);
  let w1 = 0n;
  switch (c.op) {
    case CmdOp.CFGI_STE:
    case CmdOp.CFGI_STE_RANGE:
    case CmdOp.CFGI_CD:
    case CmdOp.CFGI_CD_ALL:
    case CmdOp.PREFETCH_CONFIG:
    case CmdOp.PREFETCH_ADDR:
      w0 |= (BigInt(c.ssid ?? 0) & 0xfffffn) << 12n;
      w0 |= (BigInt(c.sid ?? 0) & 0xffffffffn) << 32n;
      w1 = BigInt(c.leaf ?? 0) & 1n;
      if (c.op === CmdOp.CFGI_STE_RANGE) w1 = BigInt(c.range ?? 0) & 0x1fn;
      if (c.op === CmdOp.PREFETCH_ADDR) w1 |= (c.addr ?? 0n) & ~0xfffn;
      break;
    case CmdOp.CMD_SYNC:
      w0 |= BigInt(c.cs ?? 0) << 12n;
      break;
    case CmdOp.RESUME:
    case CmdOp.STALL_TERM:
      // CMD_RESUME: RESP [13:12], StreamID [63:32]; STAG in word 1 [15:0] (4.7.1, 4.7.2).
      if (c.op === CmdOp.RESUME) w0 |= (BigInt(c.resp ?? 0) & 3n) << 12n;
      w0 |= (BigInt(c.sid ?? 0) & 0xffffffffn) << 32n;
      if (c.op === CmdOp.RESUME) w1 = BigInt(c.stag ?? 0) & 0xffffn;
      break;
    default:
      w0 |= (BigInt(c.num ?? 0) & 0x1fn) << 12n;
      w0 |= (BigInt(c.scale ?? 0) & 0x1fn) << 20n;
      w0 |= (BigInt(c.vmid ?? 0) & 0xffffn) << 32n;
      w0 |= (BigInt(c.asid ?? 0) & 0xffffn) << 48n;
      w1 =
        (BigInt(c.leaf ?? 0) & 1n) |
        ((BigInt(c.ttl ?? 0) & 3n) << 8n) |
        ((BigInt(c.tg ?? 0) & 3n) << 10n) |
        ((c.addr ?? 0n) & 0xffff_ffff_ffff_f000n);
      if (c.op === CmdOp.ATC_INV) {
        w0 = op | (BigInt(c.ssv ?? 0) << 11n) | ((BigInt(c.ssid ?? 0) & 0xfffffn) << 12n);
        w0 |= (BigInt(c.sid ?? 0) & 0xffffffffn) << 32n;
      }
  }
  return [w0, w1];
}

/** Decodes a command from its two words, from every family's positions. */
export function decodeCommand(w0: bigint, w1: bigint): Command {
  const lo0 = Number(w0 & 0xffffffffn);
  const hi0 = Number((w0 >> 32n) & 0xffffffffn);
  return decodeCommandHalves(lo0, hi0, Number(w1 & 0xffffffffn), Number((w1 >> 32n) & 0xffffffffn));
}

/** Decodes a command from its four 32-bit words (as read from the queue). */
export function decodeCommandHalves(a: number, b: number, c: number, d: number): Command {
  return {
    op: a & 0xff,
    ssec: (a >>> 10) & 1,
    ssv: (a >>> 11) & 1,
    ssid: a >>> 12,
    sid: b >>> 0,
    vmid: b & 0xffff,
    asid: b >>> 16,
    num: (a >>> 12) & 0x1f,
    scale: (a >>> 20) & 0x1f,
    cs: (a >>> 12) & 3,
    resp: (a >>> 12) & 3,
    stag: c & 0xffff,
    leaf: c & 1,
    ttl: (c >>> 8) & 3,
    tg: (c >>> 10) & 3,
    range: c & 0x1f,
    addr: (BigInt(d >>> 0) << 32n) | BigInt((c & 0xfffff000) >>> 0),
  };
}
