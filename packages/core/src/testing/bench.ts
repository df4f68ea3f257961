/**
 * The shape of a benchmark case, shared by every package's `bench/*.bench.ts` and the
 * root runner (`pnpm bench`). Every case runs against a baseline in the same process
 * (a bare Map.get, a hand-written typed-array walk, a raw copy) and is judged by the
 * ratio of their costs, never by absolute time: the machines are noisy.
 */

/** One measured operation and its same-run baseline. */
export interface BenchCase {
  /** What is measured: "iotlb hit (1K pages)". */
  readonly name: string;
  /** What the baseline does: "Map.get, 1K small-int keys". */
  readonly baseline: string;
  /** Highest acceptable ratio (case cost / baseline cost) from the package's issue. */
  readonly target: number;
  /** One operation of the case (state prepared beforehand, outside the timed call). */
  readonly fn: () => void;
  /** One operation of the baseline. */
  readonly baselineFn: () => void;
  /** Fixed iteration count per sample, when the operation is too heavy for time-based runs. */
  readonly iterations?: number;
}

/** What a bench file exports as `cases` (or a function building them, run once). */
export type BenchCases = readonly BenchCase[] | (() => readonly BenchCase[] | Promise<readonly BenchCase[]>);
