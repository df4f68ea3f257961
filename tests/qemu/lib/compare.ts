/**
 * Comparing one request's two observations (data reached, architectural fault state)
 * with the model's answer, and the disagreement record the classifier judges.
 */

import type { FaultRecordObs, Observed, Predicted, Req } from "./common.ts";
import { hx, signatureAddr } from "./common.ts";

export interface Disagreement {
  readonly arch: "vtd" | "smmuv3";
  readonly config: string;
  readonly gen: string;
  readonly batch: number;
  readonly index: number;
  readonly req: Req;
  readonly kind: "data" | "record";
  readonly model: Predicted;
  readonly qemu: Observed;
  /** Expected data for a read the model translated ("unknown" outside known memory). */
  readonly expected: bigint | "unknown" | null;
  /** What a read of the model's privileged answer (SMMUv3) would deliver. */
  readonly privExpected?: bigint | "unknown";
  readonly mutations: readonly string[];
  /** Classification: a registry id ("qemu:<id>" or "model-bug:<id>") or "unexplained". */
  verdict?: string;
}

function sameRecord(a: FaultRecordObs | null, b: FaultRecordObs | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.code !== b.code || a.sid !== b.sid) return false;
  if (a.addr !== null && b.addr !== null && a.addr !== b.addr) return false;
  if (a.read !== null && b.read !== null && a.read !== b.read) return false;
  for (const k of Object.keys(a.extra)) if (k in b.extra && a.extra[k] !== b.extra[k]) return false;
  return true;
}

/**
 * The disagreements of one request (none when both observations match the model).
 * `expectedAt` gives the word a read of `pa` must deliver, or "unknown".
 */
export function compare(
  m: Predicted,
  o: Observed,
  req: Req,
  expectedAt: (pa: number) => bigint | "unknown",
): { kind: "data" | "record"; expected: bigint | "unknown" | null }[] {
  const out: { kind: "data" | "record"; expected: bigint | "unknown" | null }[] = [];
  if (req.write) {
    const landed = o.landed ?? [];
    const ok = m.pa === null ? landed.length === 0 : landed.length === 1 && landed[0] === m.pa;
    if (!ok) out.push({ kind: "data", expected: null });
  } else {
    if (m.pa === null) {
      // A blocked read delivers zeros (QEMU: the unassigned region reads as 0).
      if (o.data !== 0n) out.push({ kind: "data", expected: 0n });
    } else {
      const want = expectedAt(m.pa);
      if (want !== "unknown" && o.data !== want) out.push({ kind: "data", expected: want });
    }
  }
  if (!sameRecord(m.record, o.record)) out.push({ kind: "record", expected: null });
  return out;
}

/** One line describing a disagreement. */
export function describe(d: Disagreement): string {
  const r = d.req;
  const rec = (x: FaultRecordObs | null): string =>
    x === null
      ? "none"
      : `code ${hx(x.code)} sid ${hx(x.sid)} addr ${hx(x.addr)} ${x.read === null ? "" : x.read ? "read" : "write"}${
          Object.keys(x.extra).length ? ` ${JSON.stringify(x.extra)}` : ""
        }`;
  const data =
    d.qemu.data !== undefined
      ? `data ${hx(d.qemu.data)}${signatureAddr(d.qemu.data) >= 0 ? ` (= pa ${hx(signatureAddr(d.qemu.data))})` : ""}`
      : `landed [${(d.qemu.landed ?? []).map(hx).join(",")}]`;
  return (
    `${d.arch}/${d.config}/${d.gen} batch ${d.batch} #${d.index}: sid ${hx(r.sid)} iova ${hx(r.iova)} ${
      r.write ? "write" : "read"
    } [${d.kind}] model: ${m(d.model)} record ${rec(d.model.record)}; qemu: ${data} record ${rec(d.qemu.record)}` +
    (d.mutations.length ? `; mutations: ${d.mutations.join("; ")}` : "") +
    (d.verdict ? ` => ${d.verdict}` : "")
  );
}

function m(p: Predicted): string {
  return p.pa === null ? `fault ${p.faultName}` : `pa ${hx(p.pa)}`;
}
