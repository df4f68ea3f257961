#!/usr/bin/env node
/// <reference types="node" />
/**
 * `iommu-kit`: runs scenario files, translates requests against a memory snapshot,
 * explains a walk step by step, dumps decoded tables and prints capability tables.
 * Exit status: 0 success, 1 a failed expectation (run) or an error, 2 bad input.
 */

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Backend, BackendFactory, WalkStep } from "@iommu-kit/core";
import { accessFlags, NO_PASID } from "@iommu-kit/core";
import { Command, CommanderError, Option } from "commander";
import { DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME } from "../scenario/default-scenario.ts";
import type { ScenarioHost } from "../scenario/host.ts";
import { createScenarioHost } from "../scenario/host.ts";
import type { Scenario } from "../scenario/load.ts";
import { loadScenario, ScenarioError, validateScenario } from "../scenario/load.ts";
import type { FileReport } from "../scenario/runner.ts";
import { runScenario } from "../scenario/runner.ts";
import { jsonable } from "../scenario/values.ts";
import { findFactory, loadPlugin } from "./backends.ts";
import { dumpText } from "./dump-text.ts";
import { ExitCode, UsageError } from "./errors.ts";
import { capTable, humanReport, stepJson, table } from "./report.ts";
import type { Segment } from "./snapshot.ts";
import { memoryFromSegments, parseMemoryArg, parseRegisters, segmentsOf } from "./snapshot.ts";
import { parseRequests, snapshotBackend, translateOne } from "./translate.ts";

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function readText(file: string, what: string): string {
  try {
    return file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(
      `cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

function readJson(file: string, what: string): unknown {
  const text = readText(file, what);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${what} ${file}: not valid JSON (${(e as Error).message})`);
  }
}

async function loadPlugins(plugins: readonly string[], base: string): Promise<void> {
  for (const p of plugins) await loadPlugin(p, base);
}

/** Loads and validates one scenario file (or the default one), with its plugins registered. */
async function scenarioFrom(
  file: string | undefined,
): Promise<{ scenario: Scenario; file: string; baseDir: string }> {
  if (file === undefined) {
    return {
      scenario: validateScenario(DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME),
      file: DEFAULT_SCENARIO_NAME,
      baseDir: process.cwd(),
    };
  }
  const text = readText(file, "scenario");
  const first = loadScenario(text, file);
  await loadPlugins(first.plugins ?? [], resolve(file, ".."));
  // Validate backend configs against each backend's configSchema.
  const schemas: Record<string, Readonly<Record<string, unknown>> | undefined> = {};
  for (const [i, m] of (first.iommus ?? []).entries()) {
    try {
      schemas[m.backend] = (await findFactory(m.backend)).configSchema;
    } catch (e) {
      throw new ScenarioError(file, `/iommus/${i}/backend`, (e as Error).message);
    }
  }
  return { scenario: loadScenario(text, file, schemas), file, baseDir: resolve(file, "..") };
}

const progress = {
  active: false,
  show(msg: string): void {
    if (!process.stderr.isTTY) return;
    process.stderr.write(`\r\x1b[K${msg}`);
    this.active = true;
  },
  clear(): void {
    if (this.active) process.stderr.write("\r\x1b[K");
    this.active = false;
  },
};

async function cmdRun(
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
    const rep: FileReport = await runScenario(scenario, file, (s) => createScenarioHost(s, { baseDir }), {
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

interface SnapshotOpts {
  arch?: string;
  memory: string[];
  regs?: string;
  plugin: string[];
}

async function snapshotFrom(opts: SnapshotOpts): Promise<Backend> {
  await loadPlugins(opts.plugin, process.cwd());
  if (opts.arch === undefined)
    throw new UsageError("--arch NAME is required (a backend name: smmuv3, vtd, ...)");
  if (opts.memory.length === 0) throw new UsageError("--memory FILE[@BASE] is required");
  const factory = await findFactory(opts.arch);
  if (factory.fromRegisters === undefined || factory.registerDefaults === undefined) {
    throw new UsageError(`backend ${factory.name} cannot load snapshots (no fromRegisters)`);
  }
  const segments: Segment[] = [];
  for (const m of opts.memory) {
    const { file, base } = parseMemoryArg(m);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(file);
    } catch (e) {
      throw new UsageError(
        `cannot read memory image ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    segments.push(...segmentsOf(bytes, file, base));
  }
  const memory = memoryFromSegments(segments);
  const regs = parseRegisters(
    opts.regs === undefined ? {} : readJson(opts.regs, "--regs"),
    factory.registerDefaults,
    opts.regs ?? "--regs",
  );
  try {
    return snapshotBackend(factory, memory, regs);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${factory.name}: cannot use these registers: ${(e as Error).message}`);
  }
}

async function cmdTranslate(
  opts: SnapshotOpts & { requests?: string; listRegisters?: boolean },
): Promise<number> {
  if (opts.listRegisters) {
    await loadPlugins(opts.plugin, process.cwd());
    if (opts.arch === undefined) throw new UsageError("--list-registers needs --arch NAME");
    process.stdout.write(`${registerLines(await findFactory(opts.arch))}\n`);
    return ExitCode.OK;
  }
  if (opts.requests === undefined) throw new UsageError("--requests FILE|- is required");
  const backend = await snapshotFrom(opts);
  const reqs = parseRequests(
    readText(opts.requests, "requests"),
    opts.requests === "-" ? "stdin" : opts.requests,
  );
  const lines: string[] = [];
  for (const [i, r] of reqs.entries()) {
    lines.push(JSON.stringify(translateOne(backend, r)));
    if (i % 4096 === 4095) progress.show(`${i + 1}/${reqs.length} requests`);
  }
  progress.clear();
  if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`);
  return ExitCode.OK;
}

function parseNum(v: string, what: string): bigint {
  if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(v))
    throw new UsageError(`${what} ${JSON.stringify(v)} is not hex (0x...) or decimal`);
  return BigInt(v);
}

function accessOpt(v: string | undefined): "read" | "write" | "exec" {
  const a = v ?? "read";
  if (a !== "read" && a !== "write" && a !== "exec")
    throw new UsageError(`--access must be read, write or exec, got ${a}`);
  return a;
}

interface TargetOpts extends SnapshotOpts {
  sid?: string;
  device?: string;
  pasid?: string;
  json?: boolean;
}

/** What explain/dump work on: a snapshot backend, or a scenario host after its steps ran. */
type Target =
  | { readonly kind: "snapshot"; readonly backend: Backend; readonly rid: number | undefined }
  | { readonly kind: "scenario"; readonly host: ScenarioHost; readonly device: string | undefined };

function isSnapshot(opts: TargetOpts): boolean {
  return opts.arch !== undefined || opts.memory.length > 0 || opts.regs !== undefined;
}

async function targetOf(file: string | undefined, opts: TargetOpts, needDevice: boolean): Promise<Target> {
  if (isSnapshot(opts)) {
    if (file !== undefined)
      throw new UsageError("give a scenario FILE or a snapshot (--arch/--memory/--regs), not both");
    if (opts.device !== undefined)
      throw new UsageError("--device names a scenario device; use --sid with a snapshot");
    const backend = await snapshotFrom(opts);
    if (opts.sid === undefined && needDevice) throw new UsageError("--sid N is required with a snapshot");
    return {
      kind: "snapshot",
      backend,
      rid: opts.sid === undefined ? undefined : Number(parseNum(opts.sid, "--sid")),
    };
  }
  if (opts.sid !== undefined)
    throw new UsageError("--sid is for snapshots; use --device NAME with a scenario");
  await loadPlugins(opts.plugin, process.cwd());
  const { scenario, file: name, baseDir } = await scenarioFrom(file);
  const devices = (scenario.devices ?? []).map((d) => d.name);
  if (opts.device === undefined && needDevice) {
    throw new UsageError(`--device NAME is required (devices: ${devices.join(", ") || "none"})`);
  }
  if (opts.device !== undefined && !devices.includes(opts.device)) {
    throw new UsageError(
      `no device named ${opts.device} in ${name} (devices: ${devices.join(", ") || "none"})`,
    );
  }
  const host = await createScenarioHost(scenario, { baseDir });
  await runScenario(scenario, name, async () => host);
  return { kind: "scenario", host, device: opts.device };
}

function walkText(steps: readonly WalkStep[]): string {
  // Short raw descriptors fit the table; long ones (STE, CD, PASID entries) go below it.
  const inline = (s: WalkStep): boolean => (s.raw ?? []).length <= 1;
  const rows = steps.map((s, i) => [
    String(i + 1),
    s.what,
    s.address === null ? "-" : `0x${s.address.toString(16)}`,
    s.index === undefined ? "-" : String(s.index),
    inline(s) ? (s.raw ?? []).join(" ") || "-" : "(below)",
    s.note,
  ]);
  const out = [table(["#", "step", "address", "index", "raw", "result"], rows)];
  for (const [i, s] of steps.entries()) {
    if (!inline(s)) out.push(`  ${i + 1} ${s.what} raw: ${(s.raw ?? []).join(" ")}`);
    if (s.fields === undefined || Object.keys(s.fields).length === 0) continue;
    const fields = Object.entries(s.fields)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(" ");
    out.push(`  ${i + 1} ${s.what}: ${fields}`);
  }
  return out.join("\n");
}

async function cmdExplain(
  file: string | undefined,
  opts: TargetOpts & { iova?: string; access?: string; priv?: boolean },
): Promise<number> {
  if (opts.iova === undefined) throw new UsageError("--iova ADDR is required");
  const iova = parseNum(opts.iova, "--iova");
  const access = accessOpt(opts.access);
  const pasid = opts.pasid === undefined ? NO_PASID : Number(parseNum(opts.pasid, "--pasid"));
  const t = await targetOf(file, opts, true);
  const req = { pasid: pasid === NO_PASID ? null : pasid, iova, access, priv: opts.priv === true };
  let steps: readonly WalkStep[];
  let who: string;
  if (t.kind === "snapshot") {
    if (t.backend.explain === undefined)
      throw new UsageError(`backend ${t.backend.kind} cannot explain walks`);
    steps = t.backend.explain(t.rid!, pasid, iova, accessFlags(access, req.priv));
    who = `${t.backend.kind} sid 0x${t.rid!.toString(16)}`;
  } else {
    steps = t.host.explain(t.device!, req);
    const r = t.host.routeOf(t.device!, req.pasid);
    const via = r.via === null ? "" : `through ${r.via} pasid ${r.pasid}, `;
    who = `${t.device} (${via}${r.backend.kind} ${r.backend.name}, rid 0x${r.rid.toString(16)})`;
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(jsonable({ ...req, iova: `0x${iova.toString(16)}`, steps }))}\n`);
  } else {
    const head = `${who}${req.pasid === null ? "" : ` pasid ${req.pasid}`} ${access}${req.priv ? " priv" : ""} iova 0x${iova.toString(16)}`;
    process.stdout.write(`${head}\n${walkText(steps)}\n`);
  }
  return ExitCode.OK;
}

async function cmdDump(file: string | undefined, opts: TargetOpts): Promise<number> {
  const t = await targetOf(file, opts, false);
  let tree: unknown;
  if (t.kind === "snapshot") {
    if (t.backend.dump === undefined)
      throw new UsageError(`backend ${t.backend.kind} cannot dump its tables`);
    tree = jsonable(t.backend.dump(t.rid));
  } else {
    tree = jsonable(t.host.dump(t.device));
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(tree)}\n`);
  else process.stdout.write(dumpText(tree));
  return ExitCode.OK;
}

async function cmdCaps(
  file: string | undefined,
  opts: { json?: boolean; plugin: string[] },
): Promise<number> {
  await loadPlugins(opts.plugin, process.cwd());
  const { scenario, baseDir } = await scenarioFrom(file);
  const host = await createScenarioHost(scenario, { baseDir });
  const rows = host.capTable();
  if (opts.json) for (const r of rows) process.stdout.write(`${JSON.stringify(jsonable(r))}\n`);
  else process.stdout.write(`${capTable(rows)}\n`);
  return ExitCode.OK;
}

function snapshotOptions(c: Command): Command {
  return c
    .option("--arch <name>", "backend of the snapshot (smmuv3, vtd, or a plugin's)")
    .option(
      "--memory <file[@base]>",
      "memory image: raw at BASE (0x hex or decimal, default 0), or an ELF core's PT_LOAD segments; repeatable",
      collect,
      [],
    )
    .option(
      "--regs <file>",
      "JSON object of register names (no prefix/suffix) to values (numbers or 0x hex strings)",
    );
}

const PLUGIN = new Option("--plugin <module>", "load backends from a module (path or package); repeatable")
  .argParser(collect)
  .default([]);

/** This package's version (its package.json ships next to dist/ and src/). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/** Builds the command-line program (commands, options, help). */
function program(): Command {
  const p = new Command()
    .name("iommu-kit")
    .description(
      "IOMMU models faithful to the bit: run scenarios, translate against snapshots, explain walks, dump tables.",
    )
    .version(packageVersion())
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  p.command("run")
    .description("run scenario files (JSON or YAML); with no file, the built-in default scenario")
    .argument("[files...]", "scenario files")
    .option("--json", "one JSON line per step: {file, step, op, result|error|fault, expect, pass}")
    .option("--stop-on-failure", "stop a file at its first failing step")
    .addOption(PLUGIN)
    .addHelpText(
      "after",
      "\nExit status: 0 every expectation held, 1 one failed (the report names file and step), 2 an invalid file.",
    )
    .action(async (files: string[], o) => {
      process.exitCode = await cmdRun(files, o);
    });
  snapshotOptions(
    p
      .command("translate")
      .description("translate requests against a snapshot (memory images + register values)"),
  )
    .option("--list-registers", "print the backend's register names and defaults, then exit")
    .option(
      "--requests <file|->",
      'JSONL requests: {"sid", "pasid": N|null, "iova": "0x...", "access": "read"|"write"|"exec", "priv"}',
    )
    .addOption(PLUGIN)
    .addHelpText("after", () => registerHelp())
    .action(async (o) => {
      process.exitCode = await cmdTranslate(o);
    });
  snapshotOptions(
    p
      .command("explain")
      .description(
        "explain the walk of one request, level by level, for a scenario (after its steps) or a snapshot",
      ),
  )
    .argument("[file]", "scenario file (default: the built-in scenario)")
    .option("--device <name>", "scenario device")
    .option("--sid <n>", "snapshot StreamID / source-id")
    .option("--pasid <n>", "PASID (omit for none)")
    .option("--iova <addr>", "input address")
    .option("--access <kind>", "read, write or exec", "read")
    .option("--priv", "privileged request")
    .option("--json", "JSON output")
    .addOption(PLUGIN)
    .action(async (file: string | undefined, o) => {
      process.exitCode = await cmdExplain(file, o);
    });
  snapshotOptions(
    p.command("dump").description("the decoded tables of a device (or all) for a scenario or a snapshot"),
  )
    .argument("[file]", "scenario file (default: the built-in scenario)")
    .option("--device <name>", "scenario device (default: every device of its IOMMU)")
    .option("--sid <n>", "snapshot StreamID / source-id (default: all)")
    .option("--json", "JSON output")
    .addOption(PLUGIN)
    .action(async (file: string | undefined, o) => {
      process.exitCode = await cmdDump(file, o);
    });
  p.command("caps")
    .description("the capability table of every device of a scenario (default: the built-in scenario)")
    .argument("[file]", "scenario file")
    .option("--json", "one JSON line per device")
    .addOption(PLUGIN)
    .action(async (file: string | undefined, o) => {
      process.exitCode = await cmdCaps(file, o);
    });
  return p;
}

/**
 * The backends this package ships with, found from its own package.json (every
 * `@iommu-kit/*` dependency but core): the host names no vendor in its code.
 */
async function builtinFactories(): Promise<BackendFactory[]> {
  const out: BackendFactory[] = [];
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      dependencies?: Record<string, string>;
    };
    for (const dep of Object.keys(pkg.dependencies ?? {})) {
      const m = /^@iommu-kit\/([a-z][a-z0-9-]*)$/.exec(dep);
      if (m === null || m[1] === "core") continue;
      try {
        out.push(await findFactory(m[1]!));
      } catch {
        // A dependency without a backend factory.
      }
    }
  } catch {
    // No package.json next to the build: nothing to list.
  }
  return out;
}

let registerTable = "";

function registerHelp(): string {
  return [
    "",
    "Register names (the spec's, without prefix or suffix) and the defaults missing ones take:",
    registerTable || "  (run `iommu-kit translate --arch NAME --list-registers`)",
    "",
    'Output: each request echoed with "pa" and "perm" (r/w/x letters), or "fault":',
    "  {class, name, code, recorded}; code = SMMUv3 event ID / VT-d fault reason, null when none is raised.",
    "Exit status: 0 when it ran (faults are results), 2 for bad input.",
  ].join("\n");
}

/** `  name: A=0x0 B=0x1 ...`, wrapped for --help. */
function registerSummary(f: BackendFactory): string {
  const lines: string[] = [];
  let line = `  ${f.name}:`;
  for (const [k, v] of Object.entries(f.registerDefaults ?? {})) {
    const item = ` ${k}=0x${v.toString(16)}`;
    if (line.length + item.length > 100) {
      lines.push(line);
      line = `   `;
    }
    line += item;
  }
  lines.push(line);
  return lines.join("\n");
}

function registerLines(f: BackendFactory): string {
  const regs = Object.entries(f.registerDefaults ?? {}).map(([k, v]) => `${k}=0x${v.toString(16)}`);
  return `  ${f.name}:\n${regs.map((r) => `    ${r}`).join("\n") || "    (no snapshot support)"}`;
}

async function main(argv: readonly string[]): Promise<void> {
  try {
    if (argv.includes("translate") && (argv.includes("--help") || argv.includes("-h"))) {
      registerTable = (await builtinFactories())
        .filter((f) => f.registerDefaults !== undefined)
        .map(registerSummary)
        .join("\n");
    }
    await program().parseAsync(argv as string[]);
  } catch (e) {
    progress.clear();
    if (e instanceof CommanderError) {
      // Help and version exit 0; usage errors were printed by commander.
      process.exitCode = e.exitCode === 0 ? 0 : ExitCode.INVALID;
      return;
    }
    if (e instanceof UsageError || e instanceof ScenarioError) {
      process.stderr.write(`iommu-kit: ${e.message}\n`);
      process.exitCode = ExitCode.INVALID;
      return;
    }
    process.stderr.write(`iommu-kit: ${(e as Error).message ?? String(e)}\n`);
    process.exitCode = ExitCode.FAILED;
  }
}

// A closed pipe (`iommu-kit run --json | head`) ends the output quietly.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});

await main(process.argv);
