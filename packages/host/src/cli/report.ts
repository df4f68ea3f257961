/**
 * Report printing for `iommu-kit run`: a human-readable report (capability table,
 * each step with its translation or fault, failures with expected vs actual, cache
 * counters) or `--json`, one JSON line per step: {file, step, op, result | error |
 * fault, expect, pass}.
 */

import type { ViommuRow } from "../scenario/host-adapter.ts";
import type { FaultJson } from "../scenario/matcher.ts";
import { faultLine } from "../scenario/matcher.ts";
import type { CapRow, FileReport, StepRecord } from "../scenario/runner.ts";
import { jsonable } from "../scenario/values.ts";
import { hex, table, termWidth, wrapLine } from "./format.ts";

export { table };

/** The `--json` line of one step. */
export function stepJson(r: StepRecord): string {
  const o = r.outcome;
  const line: Record<string, unknown> = { file: r.file, step: r.step, name: r.label, op: r.op };
  if (o.kind === "error") line.error = o.error;
  else if (o.kind === "fault") line.fault = o.fault;
  else line.result = o.result;
  if (r.expect !== undefined) line.expect = r.expect;
  line.pass = r.pass;
  if (!r.pass) line.mismatches = r.mismatches;
  return JSON.stringify(jsonable(line));
}

/** The capability table. */
export function capTable(rows: readonly CapRow[]): string {
  return table(
    ["device", "iommu", "backend", "rid", "intents", "pasid", "in/out bits", "formats", "flags", "hw info"],
    rows.map((c) => [
      c.device,
      c.iommu,
      c.backend,
      hex(c.rid),
      c.intents.join(","),
      c.maxPasidLog2 === 0
        ? "-"
        : `${c.maxPasidLog2} bits${c.pasidAssignment === "backend" ? " (auto)" : ""}`,
      `${c.inputAddressBits}/${c.outputAddressBits}`,
      // The default format, and how many others (`caps --json` lists them all).
      c.formats.length > 1 ? `${c.formats[0]} +${c.formats.length - 1}` : (c.formats[0] ?? "-"),
      [...c.flags, ...(c.nesting ? ["nesting"] : [])].join(",") || "-",
      c.hwInfo,
    ]),
  );
}

/** The vIOMMU table of `caps`: each vIOMMU, its vendor ids, vDEVICEs (device = virtual id) and vEVENTQs. */
export function viommuTable(rows: readonly ViommuRow[]): string {
  return table(
    ["viommu", "type", "iommu", "parent", "ids", "vdevices", "veventqs"],
    rows.map((v) => [
      v.viommu,
      v.type,
      v.iommu,
      v.hwpt,
      Object.entries(v.vendor)
        .map(([k, x]) => `${k}=${String(x)}`)
        .join(" ") || "-",
      v.vdevices.map((d) => `${d.device}=${hex(d.virtId)}`).join(",") || "-",
      v.veventqs.map((q) => `${q.veventq} (${q.type}, ${q.pending}/${q.depth})`).join(",") || "-",
    ]),
  );
}

/** The vDEVICE of scenario device `device` as `caps --json` shows it, or null. */
export function vdeviceOf(
  rows: readonly ViommuRow[],
  device: string,
): { viommu: string; type: string; virtId: number; vendor: Readonly<Record<string, unknown>> } | null {
  for (const v of rows)
    for (const d of v.vdevices)
      if (d.device === device) return { viommu: v.viommu, type: v.type, virtId: d.virtId, vendor: v.vendor };
  return null;
}

function short(v: unknown): string {
  const s = JSON.stringify(jsonable(v));
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
}

function resultText(r: StepRecord): string {
  const o = r.outcome;
  if (o.kind === "error") return `error ${o.error.message}`;
  if (o.kind === "fault") return `FAULT ${faultLine(o.fault)}${faultWhere(o.fault)}`;
  const res = o.result;
  if (r.op === "dma") {
    const a = r.args;
    const what = `${String(a.access ?? "read")} iova ${String(a.iova)}${a.pasid !== undefined ? ` pasid ${String(a.pasid)}` : ""}`;
    return `${what} -> pa ${String(res.pa)}${res.data !== undefined ? ` data ${short(res.data)}` : ""}`;
  }
  const keys = Object.keys(res);
  return keys.length === 0 ? "ok" : short(res);
}

function faultWhere(f: FaultJson): string {
  const fields = f.fields as Record<string, unknown> | undefined;
  if (fields === undefined) return "";
  const parts = Object.entries(fields)
    .filter(([, v]) => v !== null && v !== undefined)
    .slice(0, 8)
    .map(([k, v]) => `${k}=${String(v)}`);
  return parts.length > 0 ? ` [${parts.join(" ")}]` : "";
}

/** One step's line in the human report (plus expected vs actual when it failed). */
export function stepLine(r: StepRecord): string {
  const mark = r.pass ? "ok  " : "FAIL";
  const head = `${mark} ${String(r.step).padStart(3)} ${r.label}: ${resultText(r)}`;
  if (r.pass) return head;
  const exp = r.expect === undefined ? "  expected: success" : `  expected: ${short(r.expect)}`;
  return [head, exp, ...r.mismatches.map((m) => `    ${m}`)].join("\n");
}

/** The human-readable report of one file, its long lines wrapped to `width`. */
export function humanReport(rep: FileReport, width: number = termWidth()): string {
  return reportLines(rep)
    .split("\n")
    .map((l) => (l.length <= width ? l : wrapLine(l, (/^\s*/.exec(l)?.[0].length ?? 0) + 4, width)))
    .join("\n");
}

function reportLines(rep: FileReport): string {
  const out: string[] = [`== ${rep.file}${rep.name !== rep.file ? ` (${rep.name})` : ""}`];
  if (rep.caps.length > 0) out.push("", "Capabilities", capTable(rep.caps));
  out.push("", "Steps", ...rep.steps.map(stepLine));
  const faults = rep.steps.filter((s) => s.outcome.kind === "fault");
  if (faults.length > 0) {
    out.push("", "Faults");
    for (const s of faults) {
      if (s.outcome.kind === "fault")
        out.push(`  step ${s.step}: ${faultLine(s.outcome.fault)}${faultWhere(s.outcome.fault)}`);
    }
  }
  const cn = Object.entries(rep.counters);
  if (cn.length > 0) {
    out.push(
      "",
      "Cache counters",
      table(
        ["iommu", "iotlb hits", "iotlb misses", "config hits", "config misses", "walks", "invalidations"],
        cn.map(([n, c]) =>
          [n, c.iotlbHits, c.iotlbMisses, c.configHits, c.configMisses, c.walks, c.invalidations].map(String),
        ),
      ),
    );
  }
  const failed = rep.steps.filter((s) => !s.pass);
  out.push(
    "",
    failed.length === 0
      ? `PASS ${rep.file}: ${rep.steps.length} steps`
      : `FAIL ${rep.file}: ${failed.length} of ${rep.steps.length} steps failed (${failed.map((s) => `step ${s.step} ${s.label}`).join("; ")})`,
  );
  return out.join("\n");
}
