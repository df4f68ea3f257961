/**
 * A bounded, seeded campaign: for each configuration one QEMU process, batches of
 * requests over scenarios from the three generators in turn, both observations per
 * request compared with the model, every disagreement classified against the registry.
 */

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Context, classify } from "./classify.ts";
import type { FaultRecordObs, Image, Observed, Predicted, Req } from "./common.ts";
import { BLANK, get64, Rng, signature, token } from "./common.ts";
import { compare, type Disagreement } from "./compare.ts";
import { QTest } from "./qtest.ts";
import type { SmmuScenario, StLayout } from "./smmu.ts";
import { ARM, armFirmware, decodeEvent, SmmuRig, smmuArgs, smmuPredict, smmuScenario } from "./smmu.ts";
import type { GenName, VtdMode, VtdScenario } from "./vtd.ts";
import { decodeFrcd, VtdRig, vtdArgs, vtdPredict, vtdScenario, X86, x86Firmware } from "./vtd.ts";

export const GENERATORS: readonly GenName[] = ["driver", "random", "hostile"];

export interface Stats {
  readonly config: string;
  /** Requests compared, by generator. */
  readonly requests: Record<string, number>;
  readonly disagreements: Disagreement[];
  readonly seconds: number;
  readonly qemuVersion: string;
}

/** Hook for the self-test: may change the model's answers before comparison. */
export type Tamper = (p: Predicted[], s: { readonly gen: string; readonly batch: number }) => Predicted[];

let fwDir: string | null = null;
function firmwareDir(): string {
  if (fwDir === null) {
    fwDir = mkdtempSync(join(tmpdir(), "iommu-kit-qemu-"));
    writeFileSync(join(fwDir, "bios.bin"), x86Firmware());
    writeFileSync(join(fwDir, "kernel.bin"), armFirmware());
  }
  return fwDir;
}

/** "7.2.22" from `qemu-system-x86_64 --version`. */
export function qemuVersion(binary: string): string {
  const v = execFileSync(binary, ["--version"], { encoding: "utf8" });
  return /version (\d+\.\d+\.\d+)/.exec(v)?.[1] ?? "unknown";
}

/** What differs between the architectures, for the one campaign loop. */
interface Arch<S extends { gen: string; img: Image; reqs: Req[]; mutations: string[] }> {
  readonly arch: "vtd" | "smmuv3";
  readonly config: string;
  readonly binary: string;
  readonly args: string[];
  readonly pool: number;
  readonly poolSize: number;
  /** RAM known to hold zeros unless the image writes it: [lo, hi), minus the scratch area. */
  readonly zeroRam: readonly [number, number];
  readonly scratch: number;
  init(q: QTest): Promise<void>;
  scenario(rng: Rng, gen: GenName, n: number): S;
  predict(s: S): Predicted[];
  /** Runs the requests; per request the edu slot and the fault record QEMU left (or null). */
  run(s: S, tokens: (k: number) => bigint): Promise<{ slot: number; record: FaultRecordObs | null }[]>;
  buffer(e: number): Promise<Buffer>;
  classifyCtx(s: S): Omit<Context, "d" | "batch" | "predicted">;
}

async function campaign<S extends { gen: string; img: Image; reqs: Req[]; mutations: string[] }>(
  a: Arch<S>,
  q: QTest,
  seed: number,
  batches: number,
  perBatch: number,
  tamper?: Tamper,
): Promise<Stats> {
  const t0 = performance.now();
  const requests: Record<string, number> = { driver: 0, random: 0, hostile: 0 };
  const disagreements: Disagreement[] = [];
  const sig = Buffer.alloc(a.poolSize);
  for (let off = 0; off < a.poolSize; off += 8) sig.writeBigUInt64LE(signature(a.pool + off), off);
  const inPool = (pa: number): boolean => pa >= a.pool && pa + 8 <= a.pool + a.poolSize;
  const expectedAt = (img: Image, written: Map<number, bigint>, pa: number): bigint | "unknown" => {
    const w = pa - (pa % 8);
    const t = written.get(w);
    if (t !== undefined) return t;
    if (pa % 8 !== 0) return "unknown";
    if (inPool(w)) return signature(w);
    if (img.has(Math.floor(w / 4096))) return get64(img, w);
    if (w >= a.zeroRam[0] && w < a.zeroRam[1] && !(w >= a.scratch && w < a.scratch + 0x10_0000)) return 0n;
    return "unknown";
  };
  try {
    await a.init(q);
    const rng = new Rng(seed);
    for (let batch = 0; batch < batches; batch++) {
      const gen = GENERATORS[batch % 3]!;
      const s = a.scenario(rng, gen, perBatch);
      // Writes the model sends outside the pool become reads, and so does a second write
      // to one word (it would hide the first token): nothing else is ever overwritten.
      let pred = a.predict(s);
      let changed = false;
      const targets = new Set<number>();
      // Translations QEMU may have cached so far (its IOTLB may serve a later write the
      // model faults): per requester, leaf-aligned IOVA -> leaf-aligned PA, by leaf size.
      const cached: { sid: number; size: number; iova: number; pa: number }[] = [];
      s.reqs.forEach((r, i) => {
        const p = pred[i]!;
        // Where QEMU may write: the model's answer, its privileged one (QEMU treats every
        // SMMUv3 transaction as privileged), or a cached translation of the same leaf.
        const pa = p.pa ?? p.privPa ?? null;
        const maybe = pa === null ? [] : [pa];
        for (const c of cached)
          if (c.sid === r.sid && Math.floor(r.iova / c.size) * c.size === c.iova)
            maybe.push(c.pa + (r.iova % c.size));
        if (r.write && maybe.some((t) => targets.has(t - (t % 8)) || !inPool(t))) {
          r.write = false;
          changed = true;
        } else if (r.write) for (const t of maybe) targets.add(t - (t % 8));
        if (pa !== null) {
          const size = 2 ** (p.pa !== null ? p.sizeLg2 : (p.privSizeLg2 ?? 12));
          cached.push({ sid: r.sid, size, iova: Math.floor(r.iova / size) * size, pa: pa - (r.iova % size) });
        }
      });
      if (changed) pred = a.predict(s);
      if (tamper) pred = tamper(pred, { gen, batch });
      const tok = (k: number): bigint => token(batch, k);
      const raw = await a.run(s, tok);
      const bufs = [await a.buffer(0), await a.buffer(1)];
      const pool = await q.read(a.pool, a.poolSize);
      // Where each token landed in the pool; then the pool gets its signatures back.
      const landed = new Map<bigint, number[]>();
      const restore: string[] = [];
      for (let pg = 0; pg < a.poolSize; pg += 4096) {
        if (pool.compare(sig, pg, pg + 4096, pg, pg + 4096) === 0) continue;
        for (let off = pg; off < pg + 4096; off += 8) {
          if (pool.compare(sig, off, off + 8, off, off + 8) === 0) continue;
          const v = pool.readBigUInt64LE(off);
          const l = landed.get(v) ?? [];
          l.push(a.pool + off);
          landed.set(v, l);
        }
        restore.push(QTest.writeCmd(a.pool + pg, sig.subarray(pg, pg + 4096)));
      }
      if (restore.length) await q.run(restore);
      const written = new Map<number, bigint>();
      const mine: Disagreement[] = [];
      s.reqs.forEach((r, i) => {
        const o = raw[i]!;
        let obs: Observed;
        if (r.write) {
          const t = tok(r.dev * 512 + o.slot);
          const where = landed.get(t) ?? [];
          obs = { landed: where, record: o.record };
          for (const pa of where) written.set(pa, t);
        } else {
          obs = { data: bufs[r.dev]!.readBigUInt64LE(o.slot * 8), record: o.record };
        }
        const m = pred[i]!;
        for (const d of compare(m, obs, r, (pa) => expectedAt(s.img, written, pa))) {
          mine.push({
            arch: a.arch,
            config: a.config,
            gen,
            batch,
            index: i,
            req: { ...r },
            kind: d.kind,
            model: m,
            qemu: obs,
            expected: d.expected,
            ...(m.privPa !== undefined && m.privPa !== null
              ? { privExpected: expectedAt(s.img, written, m.privPa) }
              : {}),
            mutations: s.mutations,
          });
        }
      });
      const reqs = s.reqs.map((r) => ({ ...r }));
      for (const d of mine) classify({ d, batch: reqs, predicted: pred, ...a.classifyCtx(s) });
      disagreements.push(...mine);
      requests[gen]! += s.reqs.length;
    }
  } finally {
    await q.close();
  }
  return {
    config: a.config,
    requests,
    disagreements,
    seconds: (performance.now() - t0) / 1000,
    qemuVersion: qemuVersion(a.binary),
  };
}

/** Runs `batches` batches of `perBatch` requests on one VT-d configuration. */
export async function runVtd(
  mode: VtdMode,
  seed: number,
  batches: number,
  perBatch: number,
  tamper?: Tamper,
): Promise<Stats> {
  const binary = "qemu-system-x86_64";
  const args = vtdArgs(mode, join(firmwareDir(), "bios.bin"));
  const q = new QTest(binary, args);
  const rig = new VtdRig(q);
  const a: Arch<VtdScenario> = {
    arch: "vtd",
    config: `vtd-${mode}`,
    binary,
    args,
    pool: X86.pool,
    poolSize: X86.poolSize,
    zeroRam: [0x10_0000, X86.ramSize],
    scratch: X86.scratch,
    init: () => rig.init(),
    scenario: (rng, gen, n) => vtdScenario(rng, gen, mode, rig.cap, n),
    predict: (s) => vtdPredict(s, rig.cap, rig.ecap),
    run: async (s, tokens) =>
      (await rig.run(s, tokens, BLANK)).map((o) => ({
        slot: o.slot,
        record: o.frcd ? decodeFrcd(o.frcd[0], o.frcd[1]) : null,
      })),
    buffer: (e) => rig.buffer(e),
    classifyCtx: (s) => ({ vtd: { img: s.img, rtaddr: s.rtaddr } }),
  };
  return campaign(a, q, seed, batches, perBatch, tamper);
}

/** Runs `batches` batches of `perBatch` requests on one SMMUv3 configuration. */
export async function runSmmu(
  layout: StLayout,
  seed: number,
  batches: number,
  perBatch: number,
  tamper?: Tamper,
): Promise<Stats> {
  const binary = "qemu-system-aarch64";
  const args = smmuArgs(join(firmwareDir(), "kernel.bin"));
  const q = new QTest(binary, args);
  const rig = new SmmuRig(q);
  const a: Arch<SmmuScenario> = {
    arch: "smmuv3",
    config: `smmuv3-${layout}`,
    binary,
    args,
    pool: ARM.pool,
    poolSize: ARM.poolSize,
    zeroRam: [ARM.ram + 0x100_0000, ARM.ram + ARM.ramSize],
    scratch: ARM.scratch,
    init: () => rig.init(),
    scenario: (rng, gen, n) => smmuScenario(rng, gen, layout, rig.idr, n),
    predict: (s) => smmuPredict(s, rig.idr),
    run: async (s, tokens) =>
      (await rig.run(s, tokens, BLANK)).map((o) => ({
        slot: o.slot,
        // After a fault QEMU's memory core retries the 8-byte DMA as two 4-byte accesses
        // (the unassigned region's access size), each raising its own event: the first
        // event is the request's.
        record: o.records && o.records.length > 0 ? decodeEvent(o.records[0]!) : null,
      })),
    buffer: (e) => rig.buffer(e),
    classifyCtx: (s) => ({ smmu: s }),
  };
  return campaign(a, q, seed, batches, perBatch, tamper);
}
