/**
 * A bounded, seeded campaign: for each configuration one QEMU process, batches of
 * requests over scenarios from the three generators in turn, both observations per
 * request compared with the model, every disagreement classified against the registry.
 */

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Image, Observed, Predicted } from "./common.ts";
import { BLANK, get64, Rng, signature, token } from "./common.ts";
import { classify } from "./classify.ts";
import { compare, type Disagreement } from "./compare.ts";
import { QTest } from "./qtest.ts";
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
  }
  return fwDir;
}

/** "7.2.22" from `qemu-system-x86_64 --version`. */
export function qemuVersion(binary: string): string {
  const v = execFileSync(binary, ["--version"], { encoding: "utf8" });
  return /version (\d+\.\d+\.\d+)/.exec(v)?.[1] ?? "unknown";
}

/** The pool as it must be between batches: every word its signature. */
const POOL_SIG: Buffer = (() => {
  const b = Buffer.alloc(X86.poolSize);
  for (let off = 0; off < X86.poolSize; off += 8) b.writeBigUInt64LE(signature(X86.pool + off), off);
  return b;
})();

/** What a read of `pa` must deliver given the image, the pool and the writes so far. */
function expectedAt(img: Image, written: Map<number, bigint>, pa: number): bigint | "unknown" {
  const w = pa - (pa % 8);
  const t = written.get(w);
  if (t !== undefined) return t;
  if (pa % 8 !== 0) return "unknown";
  if (w >= X86.pool && w < X86.pool + X86.poolSize) return signature(w);
  if (img.has(Math.floor(w / 4096))) return get64(img, w);
  if (w >= 0x10_0000 && w < X86.ramSize && !(w >= X86.scratch && w < X86.scratch + 0x10_0000)) return 0n;
  return "unknown";
}

/** Runs `batches` batches of `perBatch` requests on one VT-d configuration. */
export async function runVtd(
  mode: VtdMode,
  seed: number,
  batches: number,
  perBatch: number,
  tamper?: Tamper,
): Promise<Stats> {
  const t0 = performance.now();
  const bin = "qemu-system-x86_64";
  const q = new QTest(bin, vtdArgs(mode, join(firmwareDir(), "bios.bin")));
  const rig = new VtdRig(q);
  const requests: Record<string, number> = { driver: 0, random: 0, hostile: 0 };
  const disagreements: Disagreement[] = [];
  try {
    await rig.init();
    const rng = new Rng(seed);
    let tQemu = 0;
    let tPool = 0;
    for (let batch = 0; batch < batches; batch++) {
      const gen = GENERATORS[batch % 3]!;
      const s: VtdScenario = vtdScenario(rng, gen, mode, rig.cap, perBatch);
      // Writes the model sends outside the pool become reads: nothing else is overwritten.
      let pred = vtdPredict(s, rig.cap, rig.ecap);
      let changed = false;
      const targets = new Set<number>();
      s.reqs.forEach((r, i) => {
        const pa = pred[i]!.pa;
        // Two writes to one word would hide the first token: the second becomes a read.
        if (r.write && pa !== null && (targets.has(pa - (pa % 8)) || !(pa >= X86.pool && pa + 8 <= X86.pool + X86.poolSize))) {
          r.write = false;
          changed = true;
        } else if (r.write && pa !== null) targets.add(pa - (pa % 8));
      });
      if (changed) pred = vtdPredict(s, rig.cap, rig.ecap);
      if (tamper) pred = tamper(pred, { gen, batch });
      const tok = (k: number): bigint => token(batch, k);
      const tq = performance.now();
      const raw = await rig.run(s, batch, tok, BLANK);
      tQemu += performance.now() - tq;
      const bufs = [await rig.buffer(0), await rig.buffer(1)];
      const tp = performance.now();
      const pool = await q.read(X86.pool, X86.poolSize);
      // Where each token landed in the pool; then the pool gets its signatures back.
      const landed = new Map<bigint, number[]>();
      const restore: string[] = [];
      for (let pg = 0; pg < X86.poolSize; pg += 4096) {
        if (pool.compare(POOL_SIG, pg, pg + 4096, pg, pg + 4096) === 0) continue;
        for (let off = pg; off < pg + 4096; off += 8) {
          if (pool.compare(POOL_SIG, off, off + 8, off, off + 8) === 0) continue;
          const v = pool.readBigUInt64LE(off);
          const l = landed.get(v) ?? [];
          l.push(X86.pool + off);
          landed.set(v, l);
        }
        restore.push(QTest.writeCmd(X86.pool + pg, POOL_SIG.subarray(pg, pg + 4096)));
      }
      if (restore.length) await q.run(restore);
      tPool += performance.now() - tp;
      const written = new Map<number, bigint>();
      s.reqs.forEach((r, i) => {
        const o = raw[i]!;
        const e = r.dev;
        const record = o.frcd ? decodeFrcd(o.frcd[0], o.frcd[1]) : null;
        let obs: Observed;
        if (r.write) {
          const t = tok(e * 512 + o.slot);
          const where = landed.get(t) ?? [];
          obs = { landed: where, record };
          for (const pa of where) written.set(pa, t);
        } else {
          obs = { data: bufs[e]!.readBigUInt64LE(o.slot * 8), record };
        }
        const m = pred[i]!;
        for (const d of compare(m, obs, r, (pa) => expectedAt(s.img, written, pa))) {
          disagreements.push({
            arch: "vtd",
            config: mode,
            gen,
            batch,
            index: i,
            req: { ...r },
            kind: d.kind,
            model: m,
            qemu: obs,
            expected: d.expected,
            mutations: s.mutations,
          });
        }
      });
      const reqs = s.reqs.map((r) => ({ ...r }));
      for (const d of disagreements) if (d.batch === batch && d.verdict === undefined) classify({ d, batch: reqs, predicted: pred, vtd: s });
      requests[gen]! += s.reqs.length;
    }
    if (process.env.QDEBUG === "time") console.log({ tQemu, tPool, total: performance.now() - t0 });
  } finally {
    await q.close();
  }
  return {
    config: `vtd-${mode}`,
    requests,
    disagreements,
    seconds: (performance.now() - t0) / 1000,
    qemuVersion: qemuVersion(bin),
  };
}
