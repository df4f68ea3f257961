/**
 * Failure injection at allocation points, in the spirit of iommufd's fail_nth
 * selftests (tools/testing/selftests/iommu/iommufd_fail_nth.c): arm it with N and the
 * N-th allocation point reached afterwards throws ENOMEM. Every operation must then
 * leave state exactly as before; tests sweep N until the operation succeeds.
 */

import { IommuError } from "./errors.ts";

/** A countdown of allocation points. One per memory / host. */
export class FailNth {
  #countdown = -1;
  #points = 0;

  /** Makes the `n`-th allocation point from now (1-based) fail. */
  arm(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`fail_nth needs n >= 1, got ${n}`);
    this.#countdown = n;
  }

  /** Stops injecting. */
  disarm(): void {
    this.#countdown = -1;
  }

  /** True while armed and the failure has not fired yet. */
  get armed(): boolean {
    return this.#countdown > 0;
  }

  /** Allocation points passed since creation. */
  get points(): number {
    return this.#points;
  }

  /** Called at every allocation point; throws ENOMEM when the countdown reaches it. */
  point(site: string): void {
    this.#points++;
    if (this.#countdown > 0 && --this.#countdown === 0) {
      this.#countdown = -1;
      throw new IommuError("ENOMEM", `injected allocation failure at ${site}`, { site });
    }
  }
}
