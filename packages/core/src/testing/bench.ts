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
  /**
   * Highest acceptable ratio (case cost / baseline cost) from the package's issue;
   * omitted for a case reported for scale only.
   */
  readonly target?: number;
  /** One operation of the case (state prepared beforehand, outside the timed call). */
  readonly fn: () => void;
  /** One operation of the baseline. */
  readonly baselineFn: () => void;
  /** Fixed iteration count per sample, when the operation is too heavy for time-based runs. */
  readonly iterations?: number;
}

/** What a bench file exports as `cases` (or a function building them, run once). */
export type BenchCases = readonly BenchCase[] | (() => readonly BenchCase[] | Promise<readonly BenchCase[]>);

/**
 * The baseline map the issues name ("a bare Map.get with small-integer keys on a map of
 * the same entry count"): keys 0..n-1, each mapping to key * 4096.
 */
export function smallIntMap(n: number): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < n; i++) m.set(i, i * 4096);
  return m;
}
