/**
 * The shape of a benchmark case, shared by every package's `bench/*.bench.ts` and the
 * root runner (`pnpm bench`). Every case runs against a baseline in the same process
 * (a bare Map.get, a hand-written typed-array walk, a raw copy) and is judged by the
 * ratio of their costs, never by absolute time: the machines are noisy.
 */

import { Perm } from "../access.ts";
import type { Backend } from "../backend.ts";
import { Intent } from "../intent.ts";
import type { TestMemory } from "./memory.ts";
import { createTestMemory } from "./memory.ts";

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
 * A size the runner reports beside the cases (table memory per mapped page), not a
 * speed: measured once, in a process of its own.
 */
export interface BenchMetric {
  /** What is measured: "page-table memory per mapped 4K page (1M pages)". */
  readonly name: string;
  /** The value's unit: "B/page". */
  readonly unit: string;
  /** Highest acceptable value from the package's issue; omitted for a figure reported for scale. */
  readonly target?: number;
  /**
   * Measures the value; `heapBytes` is the runner's heap and ArrayBuffer bytes in use
   * after a full collection (for heap figures; core itself assumes no Node).
   */
  readonly measure: (heapBytes: () => number) => number;
}

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

/** Pages the table metrics map: 1M x 4 KiB (4 GiB), the issues' "at 1M pages". */
const METRIC_PAGES = 2 ** 20;

/**
 * The table-memory metrics, alike for every vendor: 1M contiguous 4 KiB pages (PA one
 * page off the IOVA, so no blocks) mapped into one paging domain attached to one device
 * by RID. Reported per mapped page: the page-table bytes the domain allocated (root
 * included, the attach's configuration not; target 8.1 B), the bytes of physical memory
 * written in all (tables, configuration, queues; target 8.1 B), and, for scale, the JS
 * heap and ArrayBuffer growth of the whole mapping (software state included).
 */
export function tableMemoryMetrics(make: (t: TestMemory) => Backend): BenchMetric[] {
  const build = () => {
    const t = createTestMemory(2 ** 34, 2 ** 30);
    const b = make(t);
    b.addDevice({ rid: 1, pasidBits: 0 });
    return { t, b };
  };
  const mapAll = (b: Backend, attach = true) => {
    const d = b.allocDomain({ type: "paging" });
    d.map(0x40_0000_0000, 0x1000, METRIC_PAGES * 4096, Perm.R | Perm.W);
    if (attach) b.attach(1, Intent.rid, d);
  };
  return [
    {
      name: "page-table memory per mapped 4K page (1M pages)",
      unit: "B/page",
      target: 8.1,
      measure: () => {
        const { t, b } = build();
        const before = t.tables.stats().bytes;
        mapAll(b, false);
        return (t.tables.stats().bytes - before) / METRIC_PAGES;
      },
    },
    {
      name: "physical memory written per mapped 4K page (1M pages; tables, config, queues)",
      unit: "B/page",
      target: 8.1,
      measure: () => {
        const { t, b } = build();
        mapAll(b);
        return (t.memory.residentPages * 4096) / METRIC_PAGES;
      },
    },
    {
      name: "JS heap + ArrayBuffer growth per mapped 4K page (1M pages, reported)",
      unit: "B/page",
      measure: (heapBytes) => {
        const { b } = build();
        const before = heapBytes();
        mapAll(b);
        return (heapBytes() - before) / METRIC_PAGES;
      },
    },
  ];
}
