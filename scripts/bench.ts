/**
 * `pnpm bench [--package NAME]... [--filter TEXT] [--quick]`: runs every package's
 * bench/*.bench.ts cases against their same-run baselines (tinybench), prints a table,
 * marks every case over its target and writes bench/results.json:
 * { machine: { cpu, cpus, node, v8, platform, arch, date }, rounds, processes,
 *   results: [{ package, name, opsPerSec, baseline, baselineOpsPerSec, ratio, ratioMin,
 *   ratioMax, target }], metrics: [{ package, name, value, unit, target }] }
 * where ratio = baseline ops/s / case ops/s (the case's cost relative to its baseline).
 * A bench file's `metrics` (sizes such as table bytes per mapped page) are measured once
 * each, in a process of its own run with --expose-gc.
 *
 * Fast operations are run in calibrated batches inside each tinybench task so the
 * timer's own cost does not swamp them. Case and baseline are interleaved in one
 * process: each round times both in 5 short runs each (2 with --quick), alternating
 * which goes first. A case runs 21 rounds (5 with --quick) in all, spread over 5
 * processes (1 with --quick), and its ratio is
 * the median of all its rounds' ratios (each round's pair ran back to back, so load that
 * drifts between rounds cancels); ops/s are the medians of the rounds. ratioMin /
 * ratioMax are the extremes over the rounds.
 *
 * Tasks are timed by the process's CPU time (process.cpuUsage, user + system), so the
 * time a shared machine gives other processes does not count against either side;
 * `--wall` times by performance.now instead. results.json names the clock.
 *
 * Every case runs in processes of its own (this script with `--child FILE INDEX
 * FIRST COUNT`), as JMH forks per benchmark: closures made by one helper share type feedback
 * in V8, so in one process the cases measured earlier left a later case's code (and its
 * baseline's) compiled for other objects, and a case's ratio depended on its place in
 * the list (measured: 1.46 first, 3.04 after five others). A process's own state still
 * matters (a 64 KiB Buffer.copy ran at 1.34M/s in most processes and 1.84M/s in one,
 * the buffers' placement), hence several processes per case. A child builds only its
 * case (an entry may be a function building it) and prints its rounds.
 *
 * The processes run in passes: pass f runs the f-th process of every case, so a case's
 * processes are a whole pass (minutes) apart. Load on a shared machine comes in bursts of
 * seconds; back to back, one burst could cover all of a case's rounds, spread out it
 * covers one process's share, which the median outvotes.
 */

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { BenchCase, BenchCases, BenchMetric } from "@iommu-kit/core/testing";
import { Bench } from "tinybench";

interface Row {
  package: string;
  name: string;
  opsPerSec: number;
  baseline: string;
  baselineOpsPerSec: number;
  ratio: number;
  ratioMin: number;
  ratioMax: number;
  target: number | null;
}

const args = process.argv.slice(2);
const packages: string[] = [];
let filter = "";
let quick = false;
let wall = false;
/** Set in a child: the bench file and the index of the one case it measures. */
let child: { file: string; index: number; first: number; rounds: number } | null = null;
/** Set in a metric child: the bench file and the index of the one metric it measures. */
let metricChild: { file: string; index: number } | null = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === "--metric") {
    metricChild = { file: args[++i] ?? "", index: Number(args[++i]) };
    continue;
  }
  if (a === "--child") {
    child = {
      file: args[++i] ?? "",
      index: Number(args[++i]),
      first: Number(args[++i]),
      rounds: Number(args[++i]),
    };
    continue;
  }
  if (a === "--package" || a === "-p") packages.push(args[++i] ?? "");
  else if (a === "--filter" || a === "-f") filter = args[++i] ?? "";
  else if (a === "--quick") quick = true;
  else if (a === "--wall") wall = true;
  else if (a === "--help" || a === "-h") {
    console.log("usage: pnpm bench [--package NAME]... [--filter TEXT] [--quick] [--wall]");
    process.exit(0);
  } else if (!a.startsWith("-")) packages.push(a);
  else {
    console.error(`bench: unknown option ${a}`);
    process.exit(2);
  }
}

const root = new URL("..", import.meta.url).pathname;
const rounds = quick ? 5 : 21;
/** Processes per case; their rounds add up to `rounds`. */
const forks = quick ? 1 : 5;
/** The process's CPU time in milliseconds (microsecond resolution). */
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const clock = wall
  ? undefined
  : { fn: cpuMs, fromMs: (ms: number) => ms, toMs: (v: number | bigint) => Number(v), name: "cpuUsage" };
/** Time per task per round; warmup runs in the first round only. */
const timeMs = quick ? 60 : 100;
/** Short runs per round, each side timed in each (see measure). */
const SLICES = quick ? 2 : 5;

function batchFor(fn: () => void): number {
  // Grow the batch until one batch takes >= 0.5 ms, judged by the fastest of three
  // trials after 50 ms of warm-up: a JIT compile or a GC pause inside a single trial
  // ended the growth early, and about half the processes then timed an IOTLB hit in
  // batches of 128, where the timer's own cost per batch halved its rate (110M/s, not
  // 210M/s; with synchronous compilation every process did).
  const warm = performance.now() + 50;
  while (performance.now() < warm) for (let i = 0; i < 64; i++) fn();
  for (let k = 1; ; k *= 2) {
    let best = Number.POSITIVE_INFINITY;
    for (let t = 0; t < 3; t++) {
      const t0 = performance.now();
      for (let i = 0; i < k; i++) fn();
      best = Math.min(best, performance.now() - t0);
    }
    if (best >= 0.5 || k >= 1 << 24) return k;
  }
}

/** One process's rounds of a case: ops/s of each side and their ratio, per round. */
interface Rounds {
  caseRuns: number[];
  baseRuns: number[];
  ratios: number[];
}

/** Distinguishes each batch loop's source (see batchLoop). */
let loopId = 0;

/**
 * `() => { for (k times) fn() }` compiled afresh, with its own type feedback: the source
 * carries a serial number, since V8 caches `new Function` by source text and identical
 * sources would share one compiled function.
 */
function batchLoop(fn: () => void, k: number): () => void {
  const make = new Function(
    "fn",
    "k",
    `return function batchLoop${loopId++}() { for (let i = 0; i < k; i++) fn(); };`,
  ) as (f: () => void, n: number) => () => void;
  return make(fn, k);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Times `n` rounds of case and baseline; round r (from `first`) runs the baseline first when even. */
async function measure(c: BenchCase, first: number, n: number): Promise<Rounds> {
  const fixed = c.iterations;
  const kc = fixed === undefined ? batchFor(c.fn) : 1;
  // Baselines are batched even for fixed-iteration cases: a raw copy can be too fast to time alone.
  const kb = batchFor(c.baselineFn);
  // Each side's batch loop is a function of its own (not one closure shared by every
  // case), so its call of the operation sees one target in every case: no case is timed
  // through a call site that earlier cases left polymorphic.
  const caseLoop = batchLoop(c.fn, kc);
  const baseLoop = batchLoop(c.baselineFn, kb);
  const caseRuns: number[] = [];
  const baseRuns: number[] = [];
  const ratios: number[] = [];
  for (let r = first; r < first + n; r++) {
    // A round is SLICES short runs of both sides, alternating which goes first, so that
    // case and baseline are timed under the same machine conditions: load on a shared
    // machine comes and goes within a round, and two 100 ms runs back to back did not
    // see the same share of it (a fixed-iteration case runs once per round).
    const slices = fixed === undefined ? SLICES : 1;
    let caseMs = 0;
    let caseOps = 0;
    let baseMs = 0;
    let baseOps = 0;
    for (let sl = 0; sl < slices; sl++) {
      const bench = new Bench(
        fixed === undefined
          ? {
              time: timeMs / slices,
              warmup: r === first && sl === 0,
              ...(clock ? { timestampProvider: clock } : {}),
            }
          : { time: 0, iterations: fixed, warmup: false, ...(clock ? { timestampProvider: clock } : {}) },
      );
      if ((r + sl) % 2 === 0) {
        bench.add("baseline", baseLoop);
        bench.add("case", caseLoop);
      } else {
        bench.add("case", caseLoop);
        bench.add("baseline", baseLoop);
      }
      await bench.run();
      for (const t of bench.tasks) {
        const res = t.result as { latency?: { samplesCount: number }; totalTime?: number } | undefined;
        const ms = res?.totalTime;
        const runs = res?.latency?.samplesCount;
        if (ms === undefined || runs === undefined || !(ms > 0))
          throw new Error(`${c.name}: task ${t.name} produced no timing`);
        if (t.name === "case") {
          caseMs += ms;
          caseOps += runs * kc;
        } else {
          baseMs += ms;
          baseOps += runs * kb;
        }
      }
    }
    const co = (1000 * caseOps) / caseMs;
    const bo = (1000 * baseOps) / baseMs;
    caseRuns.push(co);
    baseRuns.push(bo);
    ratios.push(bo / co);
  }
  return { caseRuns, baseRuns, ratios };
}

/** What a child prints as its last stdout line. */
interface ChildReport {
  count: number;
  /** The file's metric count. */
  metrics?: number;
  name?: string;
  baseline?: string;
  target?: number | null;
  rounds?: Rounds;
}

async function runChild(file: string, index: number, first: number, n: number): Promise<void> {
  const mod = (await import(pathToFileURL(file).href)) as {
    cases?: BenchCases;
    metrics?: readonly BenchMetric[];
  };
  const cases =
    mod.cases === undefined ? [] : typeof mod.cases === "function" ? await mod.cases() : mod.cases;
  const entry = cases[index];
  const report: ChildReport = { count: cases.length, metrics: mod.metrics?.length ?? 0 };
  // n = 0: only the count (the parent enumerating a file's cases).
  if (entry !== undefined && n > 0) {
    const c = typeof entry === "function" ? entry() : entry;
    report.name = c.name;
    report.baseline = c.baseline;
    report.target = c.target ?? null;
    if (filter === "" || c.name.includes(filter)) report.rounds = await measure(c, first, n);
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

if (child !== null) {
  await runChild(child.file, child.index, child.first, child.rounds);
  process.exit(0);
}

/** What a metric child prints as its last stdout line. */
interface MetricReport {
  name: string;
  unit: string;
  target: number | null;
  value: number;
}

if (metricChild !== null) {
  const mod = (await import(pathToFileURL(metricChild.file).href)) as { metrics?: readonly BenchMetric[] };
  const m = mod.metrics?.[metricChild.index];
  const gc = (globalThis as { gc?: () => void }).gc;
  if (m === undefined || gc === undefined) process.exit(1);
  const heapBytes = (): number => {
    gc();
    const u = process.memoryUsage();
    return u.heapUsed + u.arrayBuffers;
  };
  const value = m.measure(heapBytes);
  const report: MetricReport = { name: m.name, unit: m.unit, target: m.target ?? null, value };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}

/** Measures metric `index` of `file` in a fresh process with --expose-gc. */
function spawnMetric(file: string, index: number): MetricReport {
  const r = spawnSync(
    process.execPath,
    [...process.execArgv, "--expose-gc", new URL(import.meta.url).pathname, "--metric", file, String(index)],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 24 },
  );
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || last === "")
    throw new Error(`bench: ${file} metric ${index} failed (exit ${r.status})`);
  return JSON.parse(last) as MetricReport;
}

/** Runs rounds [first, first + n) of case `index` of `file` in a fresh process (same node flags, so the same loader). */
function spawnCase(file: string, index: number, first: number, n: number): ChildReport {
  const pass = [
    ...(quick ? ["--quick"] : []),
    ...(wall ? ["--wall"] : []),
    ...(filter !== "" ? ["--filter", filter] : []),
  ];
  const r = spawnSync(
    process.execPath,
    [
      ...process.execArgv,
      new URL(import.meta.url).pathname,
      "--child",
      file,
      String(index),
      String(first),
      String(n),
      ...pass,
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 24 },
  );
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || last === "")
    throw new Error(`bench: ${file} case ${index} failed (exit ${r.status})`);
  return JSON.parse(last) as ChildReport;
}

/** One case of one bench file, its rounds pooled over its processes. */
interface Slot {
  pkg: string;
  file: string;
  index: number;
  pooled: Rounds;
  rep: ChildReport | null;
}

const pkgDirs = readdirSync(join(root, "packages")).filter(
  (d) => packages.length === 0 || packages.includes(d),
);
if (pkgDirs.length === 0) {
  console.error(`bench: no package matches ${packages.join(", ")}`);
  process.exit(2);
}
const slots: Slot[] = [];
/** Each file's metric count (from its count report). */
const metricFiles: Array<{ pkg: string; file: string; count: number }> = [];
for (const pkg of pkgDirs) {
  const dir = join(root, "packages", pkg, "bench");
  if (!existsSync(dir)) continue;
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".bench.ts"))
    .sort()) {
    const { count, metrics = 0 } = spawnCase(join(dir, file), 0, 0, 0);
    if (metrics > 0) metricFiles.push({ pkg, file: join(dir, file), count: metrics });
    for (let index = 0; index < count; index++)
      slots.push({
        pkg,
        file: join(dir, file),
        index,
        pooled: { caseRuns: [], baseRuns: [], ratios: [] },
        rep: null,
      });
  }
}
// Pass f runs every case's f-th process: a case's processes sit a whole pass apart, so a
// burst of load on a shared machine (seconds long) reaches one process of a case, a
// minority of its rounds, instead of all of them.
for (let f = 0; f < forks; f++) {
  // Rounds split as evenly as they go: 21 over 3 processes is 7 each.
  const first = Math.floor((rounds * f) / forks);
  const n = Math.floor((rounds * (f + 1)) / forks) - first;
  for (const [k, slot] of slots.entries()) {
    // A case the filter left out in the first pass is not spawned again.
    if (slot.rep !== null && slot.rep.rounds === undefined) continue;
    process.stderr.write(`  pass ${f + 1}/${forks}: case ${k + 1}/${slots.length} (${slot.pkg}) ...\r`);
    const rep = spawnCase(slot.file, slot.index, first, n);
    slot.rep = rep;
    if (rep.rounds === undefined) continue;
    slot.pooled.caseRuns.push(...rep.rounds.caseRuns);
    slot.pooled.baseRuns.push(...rep.rounds.baseRuns);
    slot.pooled.ratios.push(...rep.rounds.ratios);
  }
}
const metricRows: Array<MetricReport & { package: string }> = [];
for (const { pkg, file, count } of metricFiles)
  for (let index = 0; index < count; index++) {
    process.stderr.write(`  metric ${index + 1}/${count} (${pkg}) ...${" ".repeat(40)}\r`);
    const m = spawnMetric(file, index);
    if (filter === "" || m.name.includes(filter))
      metricRows.push({ package: pkg, ...m, value: Number(m.value.toFixed(3)) });
  }
process.stderr.write(`${" ".repeat(100)}\r`);
const rows: Row[] = [];
for (const { pkg, pooled, rep } of slots) {
  if (rep === null || pooled.ratios.length === 0) continue;
  rows.push({
    package: pkg,
    name: rep.name!,
    opsPerSec: Math.round(median(pooled.caseRuns)),
    baseline: rep.baseline!,
    baselineOpsPerSec: Math.round(median(pooled.baseRuns)),
    ratio: Number(median(pooled.ratios).toFixed(3)),
    ratioMin: Number(Math.min(...pooled.ratios).toFixed(3)),
    ratioMax: Number(Math.max(...pooled.ratios).toFixed(3)),
    target: rep.target ?? null,
  });
}

const machine = {
  cpu: cpus()[0]?.model ?? "unknown",
  cpus: cpus().length,
  node: process.version,
  v8: process.versions.v8,
  platform: process.platform,
  arch: process.arch,
  date: new Date().toISOString(),
  clock: wall ? "performance.now" : "process.cpuUsage",
};
const fmt = (n: number): string =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0);
const w = Math.max(10, ...rows.map((r) => r.name.length));
console.log(
  `${"package".padEnd(14)} ${"case".padEnd(w)} ${"ops/s".padStart(9)} ${"base ops/s".padStart(11)} ${"ratio".padStart(7)} ${"range".padStart(11)} ${"target".padStart(7)}`,
);
let over = 0;
for (const r of rows) {
  const bad = r.target !== null && r.ratio > r.target;
  if (bad) over++;
  console.log(
    `${r.package.padEnd(14)} ${r.name.padEnd(w)} ${fmt(r.opsPerSec).padStart(9)} ${fmt(r.baselineOpsPerSec).padStart(11)} ${r.ratio.toFixed(2).padStart(7)} ${`${r.ratioMin.toFixed(2)}-${r.ratioMax.toFixed(2)}`.padStart(11)} ${(r.target === null ? "-" : r.target.toFixed(2)).padStart(7)}${bad ? "  OVER TARGET" : ""}`,
  );
}
if (metricRows.length > 0) {
  const mw = Math.max(10, ...metricRows.map((r) => r.name.length));
  console.log(
    `\n${"package".padEnd(14)} ${"metric".padEnd(mw)} ${"value".padStart(9)} unit    ${"target".padStart(7)}`,
  );
  for (const m of metricRows) {
    const bad = m.target !== null && m.value > m.target;
    if (bad) over++;
    console.log(
      `${m.package.padEnd(14)} ${m.name.padEnd(mw)} ${m.value.toFixed(3).padStart(9)} ${m.unit.padEnd(7)} ${(m.target === null ? "-" : m.target.toFixed(2)).padStart(7)}${bad ? "  OVER TARGET" : ""}`,
    );
  }
}
mkdirSync(join(root, "bench"), { recursive: true });
writeFileSync(
  join(root, "bench", "results.json"),
  `${JSON.stringify({ machine, rounds, processes: forks, results: rows, metrics: metricRows }, null, 2)}\n`,
);
console.log(
  `\n${machine.cpu} x${machine.cpus}, node ${machine.node}; median of ${rounds} rounds in ${forks} process(es) per case, clock ${machine.clock}`,
);
console.log(
  `${rows.length} case(s), ${metricRows.length} metric(s), ${over} over target; wrote bench/results.json`,
);
