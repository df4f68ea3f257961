/**
 * The SMMU's stalled transactions (ARM IHI 0070 3.12.2 Stall model, 4.7.1 CMD_RESUME,
 * 4.7.2 CMD_STALL_TERM): a transaction whose stage-1 Translation-related fault stalls
 * (CD.S == 1, STE.S1STALLD == 0, 5.5) is held under a Stall Tag (STAG) that its event
 * record carries, until a CMD_RESUME with the same StreamID and STAG retries or
 * terminates it, a CMD_STALL_TERM terminates every stall of its StreamID, or SMMUEN
 * goes to 0. At most IDR5.STALL_MAX transactions are held (6.3.6).
 *
 * The STAG format is IMPLEMENTATION SPECIFIC (3.12.2): here it is the index of the slot
 * holding the transaction, the lowest free one, so a STAG is never reused while its
 * transaction is held. A held transaction does not retry on its own here (no early
 * retry, 3.12.2.2): after CMD_RESUME(Retry) the requester issues it again, and it is
 * translated as though it had just arrived.
 */

/** Held transactions by STAG. */
export class StallUnit {
  /** StreamID of the transaction held in each slot (STAG), -1 = free. */
  readonly #sid: Float64Array;
  #held = 0;

  constructor(stallMax: number) {
    this.#sid = new Float64Array(Math.max(0, Math.min(stallMax, 65536))).fill(-1);
  }

  /** Transactions held now. */
  get held(): number {
    return this.#held;
  }

  /** The capacity (IDR5.STALL_MAX). */
  get capacity(): number {
    return this.#sid.length;
  }

  /** Holds a transaction of `sid`; returns its STAG, or -1 when STALL_MAX are held already. */
  hold(sid: number): number {
    const s = this.#sid;
    for (let i = 0; i < s.length; i++) {
      if (s[i] === -1) {
        s[i] = sid;
        this.#held++;
        return i;
      }
    }
    return -1;
  }

  /**
   * CMD_RESUME (4.7.1): releases the transaction of (`sid`, `stag`). A STAG that holds
   * nothing, or a transaction of another StreamID, is not affected (the command is a no-op).
   */
  resume(sid: number, stag: number): boolean {
    if (stag >= this.#sid.length || this.#sid[stag] !== sid) return false;
    this.#sid[stag] = -1;
    this.#held--;
    return true;
  }

  /** CMD_STALL_TERM (4.7.2): terminates every transaction of `sid`; returns how many. */
  terminate(sid: number): number {
    let n = 0;
    const s = this.#sid;
    for (let i = 0; i < s.length; i++) {
      if (s[i] === sid) {
        s[i] = -1;
        n++;
      }
    }
    this.#held -= n;
    return n;
  }

  /** SMMUEN 1 -> 0 terminates every stalled transaction (3.12.2). */
  clear(): void {
    this.#sid.fill(-1);
    this.#held = 0;
  }

  /** The StreamID held under `stag`, or -1. */
  sidOf(stag: number): number {
    return this.#sid[stag] ?? -1;
  }
}
