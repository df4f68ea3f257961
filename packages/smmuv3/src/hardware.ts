/**
 * The SMMUv3 hardware model (ARM IHI 0070), composed from its rooms: the register file
 * (`registers.ts`, chapter 6), the caches and translation path (`fast-path.ts`, over
 * `internal/config.ts` for 3.3 / 5.2 / 5.4 and `walk.ts` for 3.4), and the command and
 * event queues (`queues.ts`, 3.5, chapters 4 and 7), which this class wires to the
 * register writes that start the command queue and to the faults the fast path raises,
 * and the stalled transactions (`stall.ts`, 3.12.2) that CMD_RESUME / CMD_STALL_TERM end.
 * Everything it knows it reads from physical memory and registers, as hardware does; the
 * driver half (`driver.ts`) talks to it only through registers and memory.
 *
 * Guest-controlled memory is hostile: every loop is bounded by the levels of a walk or
 * the size of a queue, every address is checked against the memory map by `readPage`
 * (null = external abort), and nothing here throws for table contents.
 */

import type { Fault, PhysicalMemory } from "@iommu-kit/core";
import { FastPath } from "./fast-path.ts";
import type { FaultScratch } from "./internal/fault.ts";
import { eventWords, faultOf, pageRequestOf } from "./internal/fault.ts";
import { CommandQueue, commandName, EventQueue } from "./queues.ts";
import type { RegisterValues } from "./registers.ts";
import { StallUnit } from "./stall.ts";

export type { HwCounters } from "./fast-path.ts";
export type { RegisterValues } from "./registers.ts";

/** The SMMUv3 hardware: registers, structures in memory, caches, queues. */
export class SmmuHw extends FastPath {
  readonly #cmdq: CommandQueue;
  readonly #evtq: EventQueue;
  /** Stalled transactions (3.12.2), at most IDR5.STALL_MAX. */
  readonly stalls: StallUnit;

  constructor(memory: PhysicalMemory, registers: RegisterValues, tlbLg2: number) {
    super(memory, registers, tlbLg2);
    this.#cmdq = new CommandQueue(memory, this, this);
    this.#evtq = new EventQueue(memory, this);
    this.stalls = new StallUnit(this.stallMax);
  }

  /**
   * Stalls a transaction (3.12.2): it takes a STAG, and its record (STALL = 1, STAG) is
   * always written, whatever CD.R says (5.5). With STALL_MAX transactions held already, or
   * an address a page request cannot carry (at or above 2^53), it terminates instead, as
   * an implementation may (3.12). A record the event queue cannot take would be retried
   * when the queue is next writable (3.12.2); here the request fails unrecorded instead.
   * @internal
   */
  protected override holdStall(f: FaultScratch): Fault | null {
    if (f.inputBig !== null && f.inputBig >= 2n ** 53n) return null;
    const stag = this.stalls.hold(f.sid);
    if (stag < 0) return null;
    const words = eventWords(f, stag);
    if (!this.recordEvent(words)) {
      this.stalls.resume(f.sid, stag);
      return faultOf(f, eventWords(f), false);
    }
    return faultOf(f, words, true, stag, pageRequestOf(f, stag));
  }

  /** Register writes; clearing CR0.SMMUEN also terminates every stalled transaction (3.12.2). */
  override writeRegister(name: string, value: bigint): void {
    super.writeRegister(name, value);
    if (name === "CR0" && !this.smmuen && this.stalls.held > 0) this.stalls.clear();
  }

  /** @internal CMD_RESUME (4.7.1): the transaction of (StreamID, STAG) is retried or terminated. */
  resume(sid: number, stag: number): void {
    this.stalls.resume(sid, stag);
  }

  /** @internal CMD_STALL_TERM (4.7.2): every stalled transaction of the StreamID is terminated. */
  stallTerm(sid: number): void {
    this.stalls.terminate(sid);
  }

  /** Event records discarded because the event queue was full. */
  get eventsDropped(): number {
    return this.#evtq.dropped;
  }

  protected override consumeCommands(): void {
    this.#cmdq.consume();
  }

  /**
   * The event queue interrupt (7.4, SMMU_IRQ_CTRL.EVENTQ_IRQEN): called after each record the
   * SMMU writes, so a driver can consume the queue as arm_smmu_evtq_thread does. Null: none.
   */
  onEvent: (() => void) | null = null;

  protected override recordEvent(words: readonly bigint[]): boolean {
    const ok = this.#evtq.write(words);
    if (ok && this.onEvent !== null) this.onEvent();
    return ok;
  }

  /** Name of a command opcode ("CMD_UNKNOWN_0x7f" for others). */
  static commandName(op: number): string {
    return commandName(op);
  }
}
