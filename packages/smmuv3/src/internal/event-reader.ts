/**
 * The driver's side of the event queue (ARM IHI 0070 7.4; Linux arm_smmu_evtq_thread):
 * consume every record from EVENTQ_CONS up to EVENTQ_PROD, advance EVENTQ_CONS, and
 * acknowledge an overflow by copying EVENTQ_PROD.OVFLG into EVENTQ_CONS.OVACKFLG
 * (queue_sync_cons_ovf; 6.3.30-6.3.31). Decoded records wait in a bounded log until the
 * backend drains them, and each raw record goes to the driver's handler (its
 * arm_smmu_handle_event) once CONS has moved past it, so a handler that makes the SMMU
 * record more events finds the queue consistent. Off the hot path: it runs once per
 * recorded fault.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import type { EventRecord } from "../format/event.ts";
import { decodeEvent } from "../format/event.ts";
import type { RegisterFile } from "../registers.ts";

/** Decoded records kept until drained; later ones are counted in `lost`. */
const EVENT_LOG_MAX = 4096;

/** Consumes the event queue into a log. */
export class EventQueueReader {
  readonly #r: RegisterFile;
  readonly #memory: PhysicalMemory;
  #log: EventRecord[] = [];
  /** Records consumed while the log was full (not kept). */
  lost = 0;
  /** Receives every consumed record's raw words (the driver's event handler), or null. */
  onRecord: ((words: readonly bigint[]) => void) | null = null;

  constructor(regs: RegisterFile, memory: PhysicalMemory) {
    this.#r = regs;
    this.#memory = memory;
  }

  /** The records consumed since the last drain (the queue is consumed first). */
  drain(): EventRecord[] {
    this.consume();
    const out = this.#log;
    this.#log = [];
    return out;
  }

  /** Reads every pending record, moves EVENTQ_CONS to EVENTQ_PROD and acknowledges OVFLG. */
  consume(): void {
    const r = this.#r;
    const base = r.readRegister("EVENTQ_BASE");
    const log2 = Math.min(Number(base & 0x1fn), r.eventqsMax);
    const addr = Number(base & 0x000f_ffff_ffff_ffe0n);
    const size = 2 ** log2;
    const mask = size * 2 - 1;
    const prodReg = Number(r.readRegister("EVENTQ_PROD"));
    const prod = prodReg & mask;
    let cons = Number(r.readRegister("EVENTQ_CONS")) & mask;
    const handler = this.onRecord;
    const raw: bigint[][] = [];
    for (let n = 0; n < size && cons !== prod; n++) {
      const at = addr + (cons & (size - 1)) * 32;
      const w: bigint[] = [];
      for (let i = 0; i < 4; i++) w.push(this.#memory.read64(at + i * 8));
      if (this.#log.length < EVENT_LOG_MAX) this.#log.push(decodeEvent(w));
      else this.lost++;
      if (handler !== null) raw.push(w);
      cons = (cons + 1) & mask;
    }
    // OVACKFLG [31] = OVFLG: we are up to date (Linux queue_sync_cons_ovf).
    r.writeRegister("EVENTQ_CONS", BigInt((cons | (prodReg & 0x8000_0000)) >>> 0));
    if (handler !== null) for (const w of raw) handler(w);
  }
}
