/**
 * The SMMUv3 hardware model (ARM IHI 0070), composed from its rooms: the register file
 * (`registers.ts`, chapter 6), the caches and translation path (`fast-path.ts`, over
 * `internal/config.ts` for 3.3 / 5.2 / 5.4 and `walk.ts` for 3.4), and the command and
 * event queues (`queues.ts`, 3.5, chapters 4 and 7), which this class wires to the
 * register writes that start the command queue and to the faults the fast path raises.
 * Everything it knows it reads from physical memory and registers, as hardware does; the
 * driver half (`driver.ts`) talks to it only through registers and memory.
 *
 * Guest-controlled memory is hostile: every loop is bounded by the levels of a walk or
 * the size of a queue, every address is checked against the memory map by `readPage`
 * (null = external abort), and nothing here throws for table contents.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { FastPath } from "./fast-path.ts";
import { CommandQueue, commandName, EventQueue } from "./queues.ts";
import type { RegisterValues } from "./registers.ts";

export type { HwCounters } from "./fast-path.ts";
export type { RegisterValues } from "./registers.ts";

/** The SMMUv3 hardware: registers, structures in memory, caches, queues. */
export class SmmuHw extends FastPath {
  readonly #cmdq: CommandQueue;
  readonly #evtq: EventQueue;

  constructor(memory: PhysicalMemory, registers: RegisterValues, tlbLg2: number) {
    super(memory, registers, tlbLg2);
    this.#cmdq = new CommandQueue(memory, this, this);
    this.#evtq = new EventQueue(memory, this);
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
