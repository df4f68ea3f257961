/**
 * The commands: `run`, `translate`, `explain`, `dump`, `caps`. Each returns its exit
 * status (0 ran / every expectation held, 1 an expectation failed); bad input throws
 * (exit 2). Text and `--json` output go through `format.ts`.
 */

import type { WalkStep } from "@iommu-kit/core";
import { accessFlags, IommuError, NO_PASID } from "@iommu-kit/core";
import type { FileReport } from "../scenario/runner.ts";
import { runScenario } from "../scenario/runner.ts";
import { dumpText } from "./dump-text.ts";
import { ExitCode, UsageError } from "./errors.ts";
import type { StepOut } from "./format.ts";
import { hex, jsonLine, jsonOut, stepOut, table, termWidth, wrapLine } from "./format.ts";
import { progress } from "./images.ts";
import { hostFor, loadPlugins, parseNum, readText, scenarioFrom } from "./input.ts";
import { capTable, humanReport, stepJson, vdeviceOf, viommuTable } from "./report.ts";
import type { SnapshotOpts, TargetOpts } from "./target.ts";
import { PASID_LIMIT, snapshotFrom, targetOf } from "./target.ts";
import { checkOne, outcomeOf, parseRequests, translateOne } from "./translate.ts";

/** `iommu-kit run`. */
export async function cmdRun(
  files: string[],
  opts: { json?: boolean; plugin: string[]; stopOnFailure?: boolean },
): Promise<number> {
  await loadPlugins(opts.plugin, process.cwd());
  const list: (string | undefined)[] = files.length === 0 ? [undefined] : files;
  // Validate every file first: an invalid file is exit 2 before anything runs.
  const loaded = [];
  for (const f of list) loaded.push(await scenarioFrom(f));
  let pass = true;
  for (const [i, { scenario, file, baseDir }] of loaded.entries()) {
    const rep: FileReport = await runScenario(scenario, file, (s) => hostFor(s, file, baseDir), {
      onStep: (r) => {
        if (opts.json) process.stdout.write(`${stepJson(r)}\n`);
        else progress.show(`[${i + 1}/${loaded.length}] ${file}: step ${r.step}/${scenario.steps.length}`);
      },
      stopOnFailure: opts.stopOnFailure === true,
    });
    progress.clear();
    if (!opts.json) process.stdout.write(`${humanReport(rep)}\n\n`);
    if (!rep.pass) pass = false;
  }
  return pass ? ExitCode.OK : ExitCode.FAILED;
}

/** `iommu-kit translate`. */
export async function cmdTranslate(
  opts: SnapshotOpts & { requests?: string; check?: boolean },
): Promise<number> {
  if (opts.requests === undefined && opts.snapshot === undefined)
    throw new UsageError("--requests FILE|- is required (or --snapshot DIR, whose expect.jsonl is used)");
  const snap = await snapshotFrom(opts);
  const file = opts.requests ?? snap.requests;
  if (file === null)
    throw new UsageError(`--snapshot ${opts.snapshot}: no expect.jsonl; give --requests FILE`);
  // Expected fields are allowed in a snapshot's own requests, and checked with --check.
  const allowExpect = opts.check === true || opts.snapshot !== undefined;
  const reqs = parseRequests(readText(file, "requests"), file === "-" ? "stdin" : file, allowExpect);
  const lines: string[] = [];
  let failed = 0;
  for (const [i, r] of reqs.entries()) {
    const out = translateOne(snap.backend, r);
    if (opts.check) {
      const mismatches = checkOne(out, r.expect ?? {});
      if (mismatches.length > 0) failed++;
      lines.push(
        jsonLine({ ...out, pass: mismatches.length === 0, ...(mismatches.length > 0 ? { mismatches } : {}) }),
      );
    } else lines.push(jsonLine(out));
    if (i % 4096 === 4095) progress.show(`${i + 1}/${reqs.length} requests`);
  }
  progress.clear();
  if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`);
  if (!opts.check) return ExitCode.OK;
  process.stderr.write(
    failed === 0
      ? `iommu-kit: all ${reqs.length} requests agree with their expected fields\n`
      : `iommu-kit: ${failed} of ${reqs.length} requests disagree (see "pass": false)\n`,
  );
  return failed === 0 ? ExitCode.OK : ExitCode.FAILED;
}

function accessOpt(v: string | undefined): "read" | "write" | "exec" {
  const a = v ?? "read";
  if (a !== "read" && a !== "write" && a !== "exec")
    throw new UsageError(`--access must be read, write or exec, got ${JSON.stringify(a)}`);
  return a;
}

/** The explain table: one row per step; long raw entries and fields below it. */
export function walkText(steps: readonly StepOut[], width: number = termWidth()): string {
  const inline = (s: StepOut): boolean => (s.raw ?? []).length <= 1;
  const rows = steps.map((s, i) => [
    String(i + 1),
    s.what,
    s.address ?? "-",
    s.index === undefined ? "-" : String(s.index),
    inline(s) ? (s.raw ?? []).join(" ") || "-" : "(below)",
    s.note,
  ]);
  const out = [table(["#", "step", "address", "index", "raw", "result"], rows, width)];
  for (const [i, s] of steps.entries()) {
    if (!inline(s)) out.push(wrapLine(`  ${i + 1} ${s.what} raw: ${(s.raw ?? []).join(" ")}`, 4, width));
    if (s.fields === undefined) continue;
    const fields = Object.entries(s.fields)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(" ");
    out.push(wrapLine(`  ${i + 1} ${s.what}: ${fields}`, 4, width));
  }
  return out.join("\n");
}

/** `iommu-kit explain`. */
export async function cmdExplain(
  file: string | undefined,
  opts: TargetOpts & { iova?: string; access?: string; priv?: boolean },
): Promise<number> {
  if (opts.iova === undefined) throw new UsageError("--iova ADDR is required");
  const iova = parseNum(opts.iova, "--iova");
  const access = accessOpt(opts.access);
  const pasid = opts.pasid === undefined ? NO_PASID : Number(parseNum(opts.pasid, "--pasid", PASID_LIMIT));
  const t = await targetOf(file, opts, true);
  const req = { pasid: pasid === NO_PASID ? null : pasid, iova, access, priv: opts.priv === true };
  let steps: readonly WalkStep[];
  let who: string;
  let kind: string;
  let head: Record<string, unknown>;
  let outcome: Record<string, unknown> = {};
  if (t.kind === "snapshot") {
    const b = t.backend;
    if (b.explain === undefined) throw new UsageError(`backend ${b.kind} cannot explain walks`);
    try {
      steps = b.explain(t.rid!, pasid, iova, accessFlags(access, req.priv));
      const r = { sid: t.rid!, pasid: req.pasid, iova, access, priv: req.priv };
      outcome = outcomeOf(b, { ...r, echo: {}, expect: null, where: "" });
    } catch (e) {
      if (e instanceof IommuError) throw new UsageError(`--sid ${opts.sid}: ${e.message}`);
      throw e;
    }
    kind = b.kind;
    who = `${b.kind} sid ${hex(t.rid!)}`;
    head = { sid: t.rid };
  } else {
    steps = t.host.explain(t.device!, req);
    const r = t.host.routeOf(t.device!, req.pasid);
    const via = r.via === null ? "" : `through ${r.via} pasid ${r.pasid}, `;
    kind = r.backend.kind;
    who = `${t.device} (${via}${r.backend.kind} ${r.backend.name}, rid ${hex(r.rid)})`;
    head = { device: t.device, rid: r.rid };
  }
  const out = steps.map((s) => stepOut(kind, s));
  if (opts.json) {
    process.stdout.write(`${jsonLine({ ...head, ...req, iova: hex(iova), steps: out, ...outcome })}\n`);
  } else {
    const line = `${who}${req.pasid === null ? "" : ` pasid ${req.pasid}`} ${access}${req.priv ? " priv" : ""} iova ${hex(iova)}`;
    process.stdout.write(`${line}\n${walkText(out)}\n`);
  }
  return ExitCode.OK;
}

/** `iommu-kit dump`. */
export async function cmdDump(file: string | undefined, opts: TargetOpts): Promise<number> {
  const t = await targetOf(file, opts, false);
  let tree: unknown;
  if (t.kind === "snapshot") {
    if (t.backend.dump === undefined)
      throw new UsageError(`backend ${t.backend.kind} cannot dump its tables`);
    try {
      tree = jsonOut(t.backend.dump(t.rid));
    } catch (e) {
      if (e instanceof IommuError) throw new UsageError(`--sid ${opts.sid}: ${e.message}`);
      throw e;
    }
  } else {
    tree = jsonOut(t.host.dump(t.device));
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(tree)}\n`);
  else process.stdout.write(dumpText(tree));
  return ExitCode.OK;
}

/** `iommu-kit caps`. */
export async function cmdCaps(
  file: string | undefined,
  opts: { json?: boolean; plugin: string[] },
): Promise<number> {
  await loadPlugins(opts.plugin, process.cwd());
  const { scenario, file: name, baseDir } = await scenarioFrom(file);
  const host = await hostFor(scenario, name, baseDir);
  const rows = host.capTable();
  // The vIOMMUs and vDEVICEs exist once the steps ran (they are iommufd objects).
  await runScenario(scenario, name, async () => host);
  const viommus = host.viommuTable();
  if (opts.json) {
    for (const r of rows)
      process.stdout.write(`${jsonLine({ ...r, vdevice: vdeviceOf(viommus, r.device) })}\n`);
  } else {
    process.stdout.write(`${capTable(rows)}\n`);
    if (viommus.length > 0) process.stdout.write(`\nvIOMMUs\n${viommuTable(viommus)}\n`);
  }
  return ExitCode.OK;
}
