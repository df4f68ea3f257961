/** A hand-built SMMU over raw memory: tables written by the test, the hardware model only. */

import type { Backend, Fault, TranslationOutcome } from "@iommu-kit/core";
import { createTranslation, outcomeOf, PhysicalMemory } from "@iommu-kit/core";
import type { EventRecord, SmmuV3Config } from "../src/index.ts";
import {
  decodeEvent,
  encodeCd,
  encodeCommand,
  encodeEvent,
  encodeLeafPte,
  encodeSte,
  encodeTablePte,
  registersFor,
  type SmmuV3Backend,
  smmuv3Backend,
  wordsToBytes,
} from "../src/index.ts";

export const STRTAB = 0x10_0000;
export const EVTQ = 0x20_0000;
export const CMDQ = 0x30_0000;
export const RAM_SIZE = 0x4000_0000;

export interface Rig {
  readonly memory: PhysicalMemory;
  readonly b: SmmuV3Backend;
  ste(sid: number, fields: Record<string, bigint | number>): void;
  cd(at: number, fields: Record<string, bigint | number>): void;
  pte(at: number, desc: bigint): void;
  x(sid: number, ssid: number, iova: number | bigint, access: number): TranslationOutcome;
  fault(sid: number, ssid: number, iova: number | bigint, access: number): Fault;
  events(): EventRecord[];
  cmd(...cmds: [bigint, bigint][]): void;
}

/** Registers of a rig: linear stream table of 2^8 StreamIDs, queues, SMMUEN + EVTQEN + CMDQEN, RECINVSID. */
export function rigRegisters(
  config: SmmuV3Config = {},
  extra: Record<string, bigint> = {},
): Record<string, bigint> {
  return {
    ...registersFor(config),
    STRTAB_BASE: BigInt(STRTAB),
    STRTAB_BASE_CFG: 8n,
    CMDQ_BASE: BigInt(CMDQ) | 6n,
    EVENTQ_BASE: BigInt(EVTQ) | 3n,
    CR0: 0xdn,
    CR2: 2n,
    ...extra,
  };
}

export function rig(config: SmmuV3Config = {}, extra: Record<string, bigint> = {}): Rig {
  const memory = new PhysicalMemory([{ base: 0, size: RAM_SIZE }]);
  const b = smmuv3Backend.fromRegisters!(memory, rigRegisters(config, extra)) as SmmuV3Backend;
  let cmdProd = 0;
  return {
    memory,
    b,
    ste(sid, fields) {
      const w = encodeSte(fields);
      for (let i = 0; i < 8; i++) memory.write64(STRTAB + sid * 64 + i * 8, w[i]!);
    },
    cd(at, fields) {
      const w = encodeCd(fields);
      for (let i = 0; i < 8; i++) memory.write64(at + i * 8, w[i]!);
    },
    pte(at, desc) {
      memory.write64(at, desc);
    },
    x(sid, ssid, iova, access) {
      if (typeof iova === "bigint") return (b as Backend).translateBig!(sid, ssid, iova, access);
      const out = createTranslation();
      return outcomeOf(b.translate(sid, ssid, iova, access, out), out);
    },
    fault(sid, ssid, iova, access) {
      const r = this.x(sid, ssid, iova, access);
      if (r.ok) throw new Error(`expected a fault, got pa 0x${r.pa.toString(16)}`);
      return r.fault;
    },
    events() {
      return b.drainEvents();
    },
    cmd(...cmds) {
      for (const [w0, w1] of cmds) {
        const at = CMDQ + (cmdProd % 64) * 16;
        memory.write64(at, w0);
        memory.write64(at + 8, w1);
        cmdProd = (cmdProd + 1) % 128;
      }
      b.hw.writeRegister("CMDQ_PROD", BigInt(cmdProd));
    },
  };
}

/** A 4K stage-1 CD with TTB0 = ttb (T0SZ 16, IPS 48 bits, AA64, R=1, ASID). */
export function s1Cd(
  ttb: number,
  extra: Record<string, bigint | number> = {},
): Record<string, bigint | number> {
  return { V: 1, T0SZ: 16, TG0: 0, EPD1: 1, IPS: 5, AA64: 1, R: 1, ASID: 7, TTB0: ttb, ...extra };
}

/** A stage-1 STE with a single CD at `cd`. */
export function s1Ste(
  cd: number,
  extra: Record<string, bigint | number> = {},
): Record<string, bigint | number> {
  return { V: 1, Config: 5, S1ContextPtr: cd, ...extra };
}

/** Stage-2 fields: 4K granule, 48-bit IPA from level 0, PS 48 bits, AA64, S2R. */
export function s2Fields(
  ttb: number,
  extra: Record<string, bigint | number> = {},
): Record<string, bigint | number> {
  return { S2VMID: 3, S2T0SZ: 16, S2SL0: 2, S2TG: 0, S2PS: 5, S2AA64: 1, S2R: 1, S2TTB: ttb, ...extra };
}

/**
 * Builds a 4-level 4K stage-1 (or stage-2) chain from `root` mapping `iova` -> `pa`
 * with tables at root + 0x1000, + 0x2000, + 0x3000; `leaf` is the last descriptor's attrs.
 */
export function chain4k(r: Rig, root: number, iova: number, leafDesc: bigint): number[] {
  const idx = [39, 30, 21, 12].map((s) => Math.floor(iova / 2 ** s) % 512);
  const tables = [root, root + 0x1000, root + 0x2000, root + 0x3000];
  for (let l = 0; l < 3; l++) r.pte(tables[l]! + idx[l]! * 8, encodeTablePte(BigInt(tables[l + 1]!)));
  r.pte(tables[3]! + idx[3]! * 8, leafDesc);
  return tables.map((t, l) => t + idx[l]! * 8);
}

export { decodeEvent, encodeCommand, encodeEvent, encodeLeafPte, encodeTablePte, wordsToBytes };

/** The raw bytes an event record with these fields has. */
export function recordBytes(e: Partial<EventRecord> & { id: number }): Uint8Array {
  return wordsToBytes(encodeEvent(e));
}
