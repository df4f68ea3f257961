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

/**
 * One entry of a bench file's cases: the case, or a function building it (the runner
 * measures each case in a process of its own and builds only that one).
 */
export type BenchEntry = BenchCase | (() => BenchCase);

/** What a bench file exports as `cases` (or a function building them, run once). */
export type BenchCases =
  | readonly BenchEntry[]
  | (() => readonly BenchEntry[] | Promise<readonly BenchEntry[]>);

/**
 * The baseline map the issues name ("a bare Map.get with small-integer keys on a map of
 * the same entry count"): keys 0..n-1, each mapping to key * 4096.
 */
export function smallIntMap(n: number): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < n; i++) m.set(i, i * 4096);
  return m;
}

/** What {@link mapRunCase} needs from a vendor. */
export interface MapRunCaseOptions {
  readonly name: string;
  /**
   * One existing leaf-table page per window (a 4 KiB-granule table kept alive by a page
   * mapped elsewhere in it): each timed map fills its first 256 entries.
   */
  readonly windows: readonly Uint32Array[];
  /** Maps 256 contiguous 4 KiB pages, from PA 0x4000_0000, at the start of window `w`. */
  readonly map: (w: number) => void;
  /** The low and high words of the leaf for PA 0 with the mapped permissions (the baseline's template). */
  readonly leaf: readonly [number, number];
  readonly target?: number;
}

/**
 * The issues' "map of 256 contiguous 4K pages vs writing the same 256 descriptors
 * directly", alike for every vendor: each call maps into a leaf table that already
 * exists, as a driver extending a mapping does, while the baseline writes the same 256
 * descriptors into a page of its own. When the windows run out, both sides wipe what
 * they wrote with a native fill (the same amortized cost on both sides).
 */
export function mapRunCase(o: MapRunCaseOptions): BenchCase {
  const n = o.windows.length;
  const scratch = o.windows.map(() => new Uint32Array(1024));
  const [lo, hi] = o.leaf;
  let i = 0;
  let j = 0;
  return {
    name: o.name,
    baseline: "write the same 256 descriptors directly",
    ...(o.target !== undefined ? { target: o.target } : {}),
    fn: () => {
      if (i === n) {
        for (const t of o.windows) t.fill(0, 0, 512);
        i = 0;
      }
      o.map(i++);
    },
    baselineFn: () => {
      if (j === n) {
        for (const t of scratch) t.fill(0, 0, 512);
        j = 0;
      }
      writeLeaves(scratch[j++]!, lo, hi);
    },
  };
}

/** The baseline's work: 256 leaves from PA 0x4000_0000 (a plain function, so every case shares one compiled loop). */
function writeLeaves(page: Uint32Array, lo: number, hi: number): void {
  for (let k = 0; k < 256; k++) {
    page[2 * k] = (0x4000_0000 + k * 4096) | lo;
    page[2 * k + 1] = hi;
  }
}
